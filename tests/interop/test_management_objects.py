"""The management HTTP API's topology and message endpoints: exchanges,
queues, bindings, basic.get and publish over HTTP, channels and consumers,
definitions, health checks, paging and what each user tag may see (checked
against RabbitMQ 3.10's rabbitmq_management).

What RabbitMQ 3.10 answers (the assertions below):

* Exchanges: an entry has ``name, vhost, type, durable, auto_delete,
  internal, arguments, user_who_performed_action`` (the creating user;
  ``rmq-internal`` for predeclared ones); a fresh vhost has ``""`` (the
  default exchange, also reachable as ``amq.default`` in paths),
  ``amq.direct, amq.fanout, amq.headers, amq.match, amq.topic`` and the
  internal ``amq.rabbitmq.trace``, all durable.  PUT creates with 201, an
  equivalent PUT is 204 (both with an empty body); missing body fields
  default to ``direct``, not durable, not auto-delete, not internal.  An
  inequivalent PUT is 400 ``bad_request`` with the AMQP text ``inequivalent
  arg 'type' for exchange 'X' in vhost 'V': received 'direct' but current is
  'topic'``.  ``amq.*`` names: PUT of a new one, DELETE of a predeclared one
  (and of ``amq.default``) are 401 ``{"error": "not_authorised", "reason":
  "Access refused."}``; an equivalent PUT of an existing one is 204.
  ``?if-unused=true`` on a source of bindings is 400 ``exchange 'X' in vhost
  'V' in use``; being only a *destination* does not count as used.
* Queues: PUT is 201/204 (default: not durable); the stats keys
  (``messages, messages_ready, messages_unacknowledged, consumers, state,
  memory, policy, ...``) appear once RabbitMQ has collected statistics (every
  5 s), so the tests poll.  Integers in JSON arguments become AMQP ``long``
  (signed 64-bit); RabbitMQ compares argument *type classes*, so an int32 from
  pika is equivalent.  DELETE ``?if-empty=true`` / ``?if-unused=true`` fail
  with 400 ``queue 'Q' in vhost 'V' not empty`` / ``... in use``.
  ``DELETE .../contents`` purges (204).  (RabbitMQ 3.10 answers that one
  with 406 to ``Accept: application/json``; tools send ``*/*`` or no Accept,
  so the test does too.)
* Bindings: POST is 201 with an empty body and a ``Location`` ending in
  ``/{properties_key}`` (relative, ``QUEUE/PROPS``); POSTing the same binding
  again is 201 and adds nothing.  An entry has exactly ``source, vhost,
  destination, destination_type, routing_key, arguments, properties_key``.
  ``properties_key`` is the routing key, form-encoded (``quote_plus``, ``~``
  as ``%7E``; ``~`` alone for the empty key), plus ``~`` and a 6-character
  base64url hash of the arguments when there are any (``k~ZKgNZg``).
  Queue binding listings include the default exchange's binding (source
  ``""``, routing key = queue name).
* ``POST .../get``: an array of ``payload_bytes, redelivered, exchange,
  routing_key, message_count, properties, payload, payload_encoding``;
  ``message_count`` is what is left after that message; ``properties`` is
  ``[]`` (an empty *array*) for a message without properties; ``auto``
  encoding gives ``string`` for valid UTF-8 and ``base64`` otherwise, after
  truncating to ``truncate`` bytes.
* ``POST .../publish``: 200 ``{"routed": true|false}``; JSON integers in
  headers arrive as AMQP ``long`` ('l'), strings as longstr ('S'), floats as
  doubles ('d'), booleans 't', arrays 'A', objects 'F'.  Errors the broker
  raises on the channel come back as 400 ``bad_request`` with the AMQP text
  (``404 NOT_FOUND - no exchange 'X' in vhost 'V'``).
* Definitions: GET /api/definitions has ``rabbit_version, rabbitmq_version,
  product_name, product_version, users, vhosts, permissions,
  topic_permissions, parameters, global_parameters, policies, queues,
  exchanges, bindings``; predeclared exchanges, default bindings and
  exclusive queues are left out.  POST is 204 and idempotent; the per-vhost
  variant puts everything into the vhost of the path.
* Health checks: 200 ``{"status": "ok"}`` (port and protocol checks add
  ``port`` / ``protocol``), failures 503 ``{"status": "failed", "reason":
  "No active listener", ...}``.
* Paging (``page`` given): ``{filtered_count, item_count, items, page,
  page_count, page_size, total_count}``; ``name`` filters case-insensitively
  (a substring, or a regex with ``use_regex=true``); errors are 400.
* Visibility: ``management``, ``policymaker`` and ``monitoring`` users see
  queues, exchanges and bindings only in vhosts they have a permission entry
  on (other vhosts: 401 ``User not authorised to access virtual host``);
  monitoring users see every connection, channel and consumer, management
  users only their own.

Tests whose names contain ``slow`` wait for RabbitMQ's periodic statistics
(up to STATS_TIMEOUT; typically 5-10 s each against RabbitMQ).
"""

from __future__ import annotations

import datetime
import re
import time
import urllib.parse
import uuid
from typing import Any, Callable

import pika
import pika.exceptions
import pytest

import brokerctl
from mgmt import SHA256, password_hash, poll, q
from queue_helpers import capture_raw_properties, get_wait, pump_until, typed_headers, wait_until


NOT_FOUND = {"error": "Object Not Found", "reason": "Not Found"}
ACCESS_REFUSED = {"error": "not_authorised", "reason": "Access refused."}
VHOST_REFUSED = {"error": "not_authorised", "reason": "User not authorised to access virtual host"}
NOT_ADMIN = {"error": "not_authorised", "reason": "Not administrator user"}
NOT_MANAGEMENT = {"error": "not_authorised", "reason": "Not management user"}
VHOST_NOT_FOUND = {"error": "not_found", "reason": "vhost_not_found"}
ANY = {"Accept": "*/*"}  # what curl sends

EXCHANGE_KEYS = {"name", "vhost", "type", "durable", "auto_delete", "internal", "arguments",
                 "user_who_performed_action"}
QUEUE_KEYS = {"name", "vhost", "durable", "auto_delete", "exclusive", "arguments", "type", "node"}
QUEUE_STATS_KEYS = {"messages", "messages_ready", "messages_unacknowledged", "consumers", "state",
                    "policy", "memory"}
BINDING_KEYS = {"source", "vhost", "destination", "destination_type", "routing_key", "arguments",
                "properties_key"}
GET_KEYS = {"payload_bytes", "redelivered", "exchange", "routing_key", "message_count", "properties",
            "payload", "payload_encoding"}
PAGE_KEYS = {"filtered_count", "item_count", "items", "page", "page_count", "page_size", "total_count"}
PREDECLARED = {  # name: (type, internal)
    "": ("direct", False),
    "amq.direct": ("direct", False),
    "amq.fanout": ("fanout", False),
    "amq.headers": ("headers", False),
    "amq.match": ("headers", False),
    "amq.rabbitmq.trace": ("topic", True),
    "amq.topic": ("topic", False),
}
HASHED_KEY = re.compile(r"^k~[A-Za-z0-9_-]{6}$")


def bad_request(reason) -> dict:
    return {"error": "bad_request", "reason": reason}


def is_json(result) -> bool:
    return (result.headers.get("Content-Type") or "").startswith("application/json")


def assert_status(result, status, body=None):
    assert result.status == status, (result.status, result.body)
    if body is not None:
        assert result.body == body
        assert is_json(result)


def assert_empty(result, status):
    assert result.status == status, (result.status, result.body)
    assert result.raw == b""




def by_name(items) -> dict:
    return {item["name"]: item for item in items}


def strip_keys(binding: dict, *keys) -> dict:
    return {k: v for k, v in binding.items() if k not in keys}


def props_key(routing_key: str) -> str:
    """The properties_key of a binding without arguments."""
    if routing_key == "":
        return "~"
    return urllib.parse.quote_plus(routing_key).replace("~", "%7E")


def mgmt_port(mgmt) -> int:
    return urllib.parse.urlsplit(mgmt.base_url).port or 15672


@pytest.fixture
def vconnect(pika_connect, vhost):
    """A pika connection of the admin to the test's vhost."""
    return lambda: pika_connect(virtual_host=vhost)


@pytest.fixture
def vch(vconnect):
    """A confirm-mode channel of the admin in the test's vhost."""
    channel = vconnect().channel()
    channel.confirm_delivery()
    return channel


def put_queue(mgmt, vhost, name, body=None):
    r = mgmt.put(f"/api/queues/{q(vhost)}/{q(name)}", {} if body is None else body)
    assert r.status in (201, 204), r.body
    return r


def put_exchange(mgmt, vhost, name, type_="direct", **extra):
    r = mgmt.put(f"/api/exchanges/{q(vhost)}/{q(name)}", dict({"type": type_}, **extra))
    assert r.status in (201, 204), r.body
    return r


def bind(mgmt, vhost, source, queue, routing_key="", arguments=None, dest="q"):
    r = mgmt.post(f"/api/bindings/{q(vhost)}/e/{q(source)}/{dest}/{q(queue)}",
                  {"routing_key": routing_key, "arguments": arguments or {}})
    assert r.status == 201, r.body
    return r


def queue_stats(mgmt, vhost, name) -> Callable[[], dict]:
    return lambda: mgmt.get(f"/api/queues/{q(vhost)}/{q(name)}").body


# --- exchanges ------------------------------------------------------------------------

def test_exchanges_of_a_fresh_vhost(mgmt, vhost):
    result = mgmt.get(f"/api/exchanges/{q(vhost)}")
    assert result.status == 200 and is_json(result)
    entries = by_name(result.body)
    assert {n: (e["type"], e["internal"]) for n, e in entries.items()} == PREDECLARED
    for e in result.body:
        assert set(e) >= EXCHANGE_KEYS, e
        assert (e["vhost"], e["durable"], e["auto_delete"], e["arguments"]) == (vhost, True, False, {})
        assert isinstance(e["user_who_performed_action"], str)
    # /api/exchanges lists every vhost's
    everywhere = [e for e in mgmt.get("/api/exchanges").body if e["vhost"] == vhost]
    assert sorted(e["name"] for e in everywhere) == sorted(PREDECLARED)
    # the default exchange by its path alias
    result = mgmt.get(f"/api/exchanges/{q(vhost)}/amq.default")
    assert result.status == 200
    assert (result.body["name"], result.body["type"], result.body["vhost"]) == ("", "direct", vhost)
    result = mgmt.get(f"/api/exchanges/{q(vhost)}/amq.topic")
    assert result.status == 200 and set(result.body) >= EXCHANGE_KEYS
    assert (result.body["name"], result.body["type"]) == ("amq.topic", "topic")


def test_exchange_lifecycle(mgmt, vhost, uid, vch):
    name = f"{uid}.x"
    path = f"/api/exchanges/{q(vhost)}/{q(name)}"
    body = {"type": "topic", "durable": True, "auto_delete": False, "internal": False, "arguments": {}}
    assert_empty(mgmt.put(path, body), 201)
    result = mgmt.get(path)
    assert result.status == 200 and is_json(result)
    got = result.body
    assert set(got) >= EXCHANGE_KEYS
    assert {k: got[k] for k in ("name", "vhost", "type", "durable", "auto_delete", "internal", "arguments")} == \
        {"name": name, "vhost": vhost, "type": "topic", "durable": True, "auto_delete": False,
         "internal": False, "arguments": {}}
    assert got["user_who_performed_action"] == mgmt.user
    # it is a real exchange: an equivalent AMQP declare is fine
    vch.exchange_declare(name, "topic", durable=True)
    vch.exchange_declare(name, passive=True)
    # equivalent again: 204
    assert_empty(mgmt.put(path, body), 204)
    listing = by_name(mgmt.get(f"/api/exchanges/{q(vhost)}").body)
    assert listing[name]["type"] == "topic" and set(listing[name]) >= EXCHANGE_KEYS
    # inequivalent
    assert_status(mgmt.put(path, dict(body, type="direct")), 400, bad_request(
        f"inequivalent arg 'type' for exchange '{name}' in vhost '{vhost}': "
        "received 'direct' but current is 'topic'"))
    assert_status(mgmt.put(path, dict(body, durable=False)), 400, bad_request(
        f"inequivalent arg 'durable' for exchange '{name}' in vhost '{vhost}': "
        "received 'false' but current is 'true'"))
    # delete
    assert_empty(mgmt.delete(path), 204)
    assert_status(mgmt.get(path), 404, NOT_FOUND)
    assert_status(mgmt.delete(path), 404, NOT_FOUND)
    assert name not in by_name(mgmt.get(f"/api/exchanges/{q(vhost)}").body)


def test_exchange_put_defaults(mgmt, vhost, uid):
    path = f"/api/exchanges/{q(vhost)}/{q(uid)}"
    assert_empty(mgmt.put(path + ".f", {"type": "fanout"}), 201)
    got = mgmt.get(path + ".f").body
    assert (got["type"], got["durable"], got["auto_delete"], got["internal"], got["arguments"]) == \
        ("fanout", False, False, False, {})
    # no type at all: direct
    assert_empty(mgmt.put(path + ".none", {}), 201)
    assert mgmt.get(path + ".none").body["type"] == "direct"
    assert_status(mgmt.put(path + ".bad", {"type": "nosuch"}), 400,
                  bad_request("unknown exchange type 'nosuch'"))
    assert_status(mgmt.get(path + ".bad"), 404, NOT_FOUND)
    # arguments are kept as given
    assert_empty(mgmt.put(path + ".ae", {"type": "direct", "arguments": {"alternate-exchange": "amq.fanout"}}), 201)
    assert mgmt.get(path + ".ae").body["arguments"] == {"alternate-exchange": "amq.fanout"}


def test_exchange_delete_if_unused(mgmt, vhost, uid):
    src, dst, queue = f"{uid}.src", f"{uid}.dst", f"{uid}.q"
    put_exchange(mgmt, vhost, src, "direct")
    put_exchange(mgmt, vhost, dst, "fanout")
    put_queue(mgmt, vhost, queue)
    bind(mgmt, vhost, src, queue, "k")
    result = mgmt.delete(f"/api/exchanges/{q(vhost)}/{q(src)}?if-unused=true")
    assert_status(result, 400, bad_request(f"exchange '{src}' in vhost '{vhost}' in use"))
    assert mgmt.get(f"/api/exchanges/{q(vhost)}/{q(src)}").status == 200
    # only being the destination of an exchange-to-exchange binding is not "used"
    bind(mgmt, vhost, src, dst, "e", dest="e")
    assert_empty(mgmt.delete(f"/api/exchanges/{q(vhost)}/{q(dst)}?if-unused=true"), 204)
    assert mgmt.get(f"/api/bindings/{q(vhost)}/e/{q(src)}/e/{q(dst)}").body == []
    # unbound, the source goes too
    assert_empty(mgmt.delete(f"/api/bindings/{q(vhost)}/e/{q(src)}/q/{q(queue)}/k"), 204)
    assert_empty(mgmt.delete(f"/api/exchanges/{q(vhost)}/{q(src)}?if-unused=true"), 204)
    assert_status(mgmt.get(f"/api/exchanges/{q(vhost)}/{q(src)}"), 404, NOT_FOUND)


def test_reserved_exchange_names(mgmt, vhost, uid):
    base = f"/api/exchanges/{q(vhost)}"
    assert_status(mgmt.put(f"{base}/amq.{q(uid)}", {"type": "direct"}), 401, ACCESS_REFUSED)
    assert_status(mgmt.get(f"{base}/amq.{q(uid)}"), 404, NOT_FOUND)
    # redeclaring a predeclared one equivalently is allowed
    assert_empty(mgmt.put(f"{base}/amq.direct", {"type": "direct", "durable": True}), 204)
    assert_status(mgmt.delete(f"{base}/amq.direct"), 401, ACCESS_REFUSED)
    assert_status(mgmt.delete(f"{base}/amq.default"), 401, ACCESS_REFUSED)
    assert mgmt.get(f"{base}/amq.direct").status == 200
    assert sorted(by_name(mgmt.get(base).body)) == sorted(PREDECLARED)


def test_exchanges_missing(mgmt, vhost, uid):
    assert_status(mgmt.get(f"/api/exchanges/{q(vhost)}/{q(uid)}"), 404, NOT_FOUND)
    assert_status(mgmt.delete(f"/api/exchanges/{q(vhost)}/{q(uid)}"), 404, NOT_FOUND)
    missing_vhost = f"{vhost}.missing"
    assert_status(mgmt.get(f"/api/exchanges/{q(missing_vhost)}"), 404, NOT_FOUND)
    assert_status(mgmt.get(f"/api/exchanges/{q(missing_vhost)}/amq.direct"), 404, NOT_FOUND)
    assert_status(mgmt.put(f"/api/exchanges/{q(missing_vhost)}/{q(uid)}", {"type": "direct"}), 404,
                  VHOST_NOT_FOUND)


# --- queues ---------------------------------------------------------------------------

def test_queue_put_and_arguments(mgmt, vhost, uid, vconnect):
    name = f"{uid}.q"
    path = f"/api/queues/{q(vhost)}/{q(name)}"
    body = {"durable": True, "arguments": {"x-message-ttl": 1000}}
    assert_empty(mgmt.put(path, body), 201)
    result = mgmt.get(path)
    assert result.status == 200 and is_json(result)
    got = result.body
    assert set(got) >= QUEUE_KEYS
    assert {k: got[k] for k in ("name", "vhost", "durable", "auto_delete", "exclusive", "arguments", "type")} == \
        {"name": name, "vhost": vhost, "durable": True, "auto_delete": False, "exclusive": False,
         "arguments": {"x-message-ttl": 1000}, "type": "classic"}
    assert isinstance(got["node"], str) and got["node"]
    assert_empty(mgmt.put(path, body), 204)
    prefix = f"inequivalent arg '%s' for queue '{name}' in vhost '{vhost}': "
    assert_status(mgmt.put(path, {"durable": True, "arguments": {"x-message-ttl": 2000}}), 400,
                  bad_request(prefix % "x-message-ttl" + "received '2000' but current is '1000'"))
    assert_status(mgmt.put(path, {"durable": False, "arguments": {"x-message-ttl": 1000}}), 400,
                  bad_request(prefix % "durable" + "received 'false' but current is 'true'"))
    # the type RabbitMQ gives a JSON integer shows in this text: a (signed 64-bit) long
    assert_status(mgmt.put(path, {"durable": True}), 400, bad_request(
        prefix % "x-message-ttl" + "received none but current is the value '1000' of type 'long'"))

    # over AMQP, pika sends the int as a signed 32-bit int: equivalent
    conn = vconnect()
    ch = conn.channel()
    ok = ch.queue_declare(name, durable=True, arguments={"x-message-ttl": 1000})
    assert ok.method.queue == name
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare(name, durable=True, arguments={"x-message-ttl": 1001})
    assert (info.value.reply_code, info.value.reply_text) == (
        406, "PRECONDITION_FAILED - " + prefix % "x-message-ttl" + "received '1001' but current is '1000'")

    # and the other way round: declared over AMQP with an int32, PUT with a JSON int
    other = f"{uid}.amqp"
    ch = conn.channel()
    ch.queue_declare(other, arguments={"x-max-length": 5})
    assert_empty(mgmt.put(f"/api/queues/{q(vhost)}/{q(other)}", {"arguments": {"x-max-length": 5}}), 204)
    assert mgmt.get(f"/api/queues/{q(vhost)}/{q(other)}").body["arguments"] == {"x-max-length": 5}

    # validation of known arguments
    bad = f"{uid}.bad"
    assert_status(mgmt.put(f"/api/queues/{q(vhost)}/{q(bad)}", {"arguments": {"x-message-ttl": "abc"}}), 400,
                  bad_request(f"invalid arg 'x-message-ttl' for queue '{bad}' in vhost '{vhost}': "
                              "\"expected integer, got longstr\""))
    assert_status(mgmt.get(f"/api/queues/{q(vhost)}/{q(bad)}"), 404, NOT_FOUND)


def test_queue_put_defaults_and_argument_shapes(mgmt, vhost, uid):
    path = f"/api/queues/{q(vhost)}/{q(uid)}"
    assert_empty(mgmt.put(path, {}), 201)
    got = mgmt.get(path).body
    assert (got["durable"], got["auto_delete"], got["exclusive"], got["arguments"]) == (False, False, False, {})
    args = {"x-custom": 5, "x-s": "str", "x-b": True, "x-f": 1.5, "x-l": [1, "a"], "x-t": {"a": 1}}
    assert_empty(mgmt.put(path + ".args", {"durable": True, "arguments": args}), 201)
    assert mgmt.get(path + ".args").body["arguments"] == args
    listing = mgmt.get(f"/api/queues/{q(vhost)}").body
    assert by_name(listing)[uid + ".args"]["arguments"] == args


def test_queue_counts_slow(mgmt, vhost, uid, vconnect):
    """publish 5, deliver 2 without acking: the counts in the queue's entry
    (RabbitMQ updates them every 5 s, hence the polling)."""
    name = f"{uid}.q"
    put_queue(mgmt, vhost, name, {"durable": True})
    conn = vconnect()
    pub = conn.channel()
    pub.confirm_delivery()
    for i in range(5):
        pub.basic_publish("", name, f"m{i}".encode())
    cons = conn.channel()
    cons.basic_qos(prefetch_count=2)
    delivered = []
    cons.basic_consume(name, lambda _ch, method, _p, _b: delivered.append(method.delivery_tag))
    pump_until(conn, lambda: len(delivered) == 2)

    def counts(entry):
        return tuple(entry[k] for k in ("messages", "messages_ready", "messages_unacknowledged", "consumers"))

    got = poll(queue_stats(mgmt, vhost, name), lambda e: counts(e) == (5, 3, 2, 1),
               what="counts (5, 3, 2, 1)")
    assert set(got) >= QUEUE_KEYS | QUEUE_STATS_KEYS
    assert got["state"] == "running"
    assert got["policy"] is None
    assert isinstance(got["memory"], int) and got["memory"] >= 0
    assert isinstance(got["node"], str)
    # the same in the listings
    entry = by_name(mgmt.get(f"/api/queues/{q(vhost)}").body)[name]
    assert counts(entry) == (5, 3, 2, 1) and set(entry) >= QUEUE_KEYS | QUEUE_STATS_KEYS
    entry = next(e for e in mgmt.get("/api/queues").body if (e["vhost"], e["name"]) == (vhost, name))
    assert counts(entry) == (5, 3, 2, 1)
    # columns: only the keys asked for
    listing = mgmt.get(f"/api/queues/{q(vhost)}?columns=name,messages").body
    assert listing == [{"name": name, "messages": 5}]
    assert mgmt.get(f"/api/queues/{q(vhost)}/{q(name)}?columns=name,messages").body == {"name": name, "messages": 5}

    for tag in delivered:
        cons.basic_ack(tag)
    pump_until(conn, lambda: len(delivered) == 4)
    poll(queue_stats(mgmt, vhost, name), lambda e: counts(e) == (3, 1, 2, 1), what="counts (3, 1, 2, 1)")


def test_queue_delete_conditions(mgmt, vhost, uid, vconnect):
    full, used = f"{uid}.full", f"{uid}.used"
    conn = vconnect()
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare(full)
    ch.basic_publish("", full, b"x")
    ch.queue_declare(used)
    cancelled = []
    cons = conn.channel()
    cons.add_on_cancel_callback(lambda frame: cancelled.append(frame))
    cons.basic_consume(used, lambda *a: None)

    assert_status(mgmt.delete(f"/api/queues/{q(vhost)}/{q(full)}?if-empty=true"), 400,
                  bad_request(f"queue '{full}' in vhost '{vhost}' not empty"))
    assert_status(mgmt.delete(f"/api/queues/{q(vhost)}/{q(used)}?if-unused=true"), 400,
                  bad_request(f"queue '{used}' in vhost '{vhost}' in use"))
    assert mgmt.get(f"/api/queues/{q(vhost)}/{q(full)}").status == 200
    assert mgmt.get(f"/api/queues/{q(vhost)}/{q(used)}").status == 200
    # the conditions that hold do not stop the delete
    assert_empty(mgmt.delete(f"/api/queues/{q(vhost)}/{q(full)}?if-unused=true"), 204)
    assert_empty(mgmt.delete(f"/api/queues/{q(vhost)}/{q(used)}?if-empty=true"), 204)
    pump_until(conn, lambda: cancelled, what="basic.cancel for the deleted queue's consumer")
    for name in (full, used):
        assert_status(mgmt.get(f"/api/queues/{q(vhost)}/{q(name)}"), 404, NOT_FOUND)
        assert_status(mgmt.delete(f"/api/queues/{q(vhost)}/{q(name)}"), 404, NOT_FOUND)


def test_queue_purge(mgmt, vhost, uid, vch):
    name = f"{uid}.q"
    vch.queue_declare(name)
    for i in range(3):
        vch.basic_publish("", name, b"x")
    assert vch.queue_declare(name, passive=True).method.message_count == 3
    assert_empty(mgmt.delete(f"/api/queues/{q(vhost)}/{q(name)}/contents", headers=ANY), 204)
    assert vch.queue_declare(name, passive=True).method.message_count == 0
    assert_status(mgmt.delete(f"/api/queues/{q(vhost)}/{q(name)}.missing/contents", headers=ANY), 404, NOT_FOUND)


def test_queues_missing_and_reserved(mgmt, vhost, uid):
    base = f"/api/queues/{q(vhost)}"
    assert_status(mgmt.get(f"{base}/{q(uid)}"), 404, NOT_FOUND)
    assert_status(mgmt.delete(f"{base}/{q(uid)}"), 404, NOT_FOUND)
    assert_status(mgmt.put(f"{base}/amq.{q(uid)}", {}), 401, ACCESS_REFUSED)
    missing_vhost = f"{vhost}.missing"
    assert_status(mgmt.get(f"/api/queues/{q(missing_vhost)}"), 404, NOT_FOUND)
    assert_status(mgmt.put(f"/api/queues/{q(missing_vhost)}/{q(uid)}", {}), 404, VHOST_NOT_FOUND)
    assert mgmt.get(base).body == []


def test_exclusive_queue_of_another_connection(mgmt, vhost, uid, vconnect):
    name = f"{uid}.excl"
    vconnect().channel().queue_declare(name, exclusive=True)
    got = mgmt.get(f"/api/queues/{q(vhost)}/{q(name)}")
    assert got.status == 200 and got.body["exclusive"] is True
    locked = bad_request(
        f"cannot obtain exclusive access to locked queue '{name}' in vhost '{vhost}'. It could be "
        "originally declared on another connection or the exclusive property value does not match "
        "that of the original declaration.")
    assert_status(mgmt.put(f"/api/queues/{q(vhost)}/{q(name)}", {}), 400, locked)
    assert_status(mgmt.delete(f"/api/queues/{q(vhost)}/{q(name)}"), 400, locked)
    assert mgmt.get(f"/api/queues/{q(vhost)}/{q(name)}").status == 200


# --- bindings -------------------------------------------------------------------------

def test_binding_lifecycle(mgmt, vhost, uid):
    x, queue = f"{uid}.x", f"{uid}.q"
    put_exchange(mgmt, vhost, x, "topic")
    put_queue(mgmt, vhost, queue)
    base = f"/api/bindings/{q(vhost)}/e/{q(x)}/q/{q(queue)}"
    result = mgmt.post(base, {"routing_key": "k", "arguments": {}})
    assert_empty(result, 201)
    assert (result.headers.get("Location") or "").endswith("/k"), result.headers.get("Location")
    # the same binding again: still one
    assert_empty(mgmt.post(base, {"routing_key": "k", "arguments": {}}), 201)
    expected = {"source": x, "vhost": vhost, "destination": queue, "destination_type": "queue",
                "routing_key": "k", "arguments": {}, "properties_key": "k"}
    result = mgmt.get(base)
    assert result.status == 200 and is_json(result)
    assert result.body == [expected]
    result = mgmt.get(f"{base}/k")
    assert result.status == 200 and result.body == expected
    assert_status(mgmt.get(f"{base}/other"), 404, NOT_FOUND)
    assert_empty(mgmt.delete(f"{base}/k"), 204)
    assert_status(mgmt.get(f"{base}/k"), 404, NOT_FOUND)
    assert_status(mgmt.delete(f"{base}/k"), 404, NOT_FOUND)
    assert mgmt.get(base).body == []


def test_binding_properties_keys(mgmt, vhost, uid):
    x, queue = f"{uid}.x", f"{uid}.q"
    put_exchange(mgmt, vhost, x, "topic")
    put_queue(mgmt, vhost, queue)
    base = f"/api/bindings/{q(vhost)}/e/{q(x)}/q/{q(queue)}"
    plain = {"": "~", "k": "k", "k.*": "k.%2A", "a~b": "a%7Eb", "a b/c%": "a+b%2Fc%25", "a.#": "a.%23"}
    for key in plain:
        bind(mgmt, vhost, x, queue, key)
        assert props_key(key) == plain[key]
    with_args = [{"x-a": 1}, {"x-a": 2}, {"x-b": 1}]
    for args in with_args:
        bind(mgmt, vhost, x, queue, "k", args)
    bind(mgmt, vhost, x, queue, "k", {"x-a": 1})  # the same one again
    listing = mgmt.get(base).body
    assert all(set(b) == BINDING_KEYS for b in listing)
    assert len(listing) == len(plain) + len(with_args)
    keys = {(b["routing_key"], tuple(sorted(b["arguments"].items()))): b["properties_key"] for b in listing}
    for key, pk in plain.items():
        assert keys[(key, ())] == pk
    hashed = [keys[("k", tuple(sorted(a.items())))] for a in with_args]
    assert all(HASHED_KEY.match(pk) for pk in hashed), hashed
    assert len(set(hashed)) == len(hashed)
    # every properties_key addresses its binding (percent-encoded as a path segment,
    # as tools do)
    for b in listing:
        got = mgmt.get(f"{base}/{q(b['properties_key'])}")
        assert got.status == 200 and got.body == b, b
    for b in listing:
        assert_empty(mgmt.delete(f"{base}/{q(b['properties_key'])}"), 204)
    assert mgmt.get(base).body == []


def test_binding_arguments_hash_is_stable(mgmt, vhost, uid):
    """The same arguments give the same properties_key on another exchange/queue."""
    x1, x2, q1, q2 = f"{uid}.x1", f"{uid}.x2", f"{uid}.q1", f"{uid}.q2"
    for x in (x1, x2):
        put_exchange(mgmt, vhost, x)
    for queue in (q1, q2):
        put_queue(mgmt, vhost, queue)
    bind(mgmt, vhost, x1, q1, "k", {"x-a": 1, "x-b": "s"})
    r = bind(mgmt, vhost, x2, q2, "k", {"x-b": "s", "x-a": 1})
    pk1 = mgmt.get(f"/api/bindings/{q(vhost)}/e/{q(x1)}/q/{q(q1)}").body[0]["properties_key"]
    pk2 = mgmt.get(f"/api/bindings/{q(vhost)}/e/{q(x2)}/q/{q(q2)}").body[0]["properties_key"]
    assert pk1 == pk2 and HASHED_KEY.match(pk1)
    assert (r.headers.get("Location") or "").endswith("/" + pk2)


def test_exchange_to_exchange_binding(mgmt, vhost, uid, vch):
    src, dst, queue = f"{uid}.src", f"{uid}.dst", f"{uid}.q"
    put_exchange(mgmt, vhost, src, "direct")
    put_exchange(mgmt, vhost, dst, "fanout")
    put_queue(mgmt, vhost, queue)
    bind(mgmt, vhost, dst, queue, "")
    base = f"/api/bindings/{q(vhost)}/e/{q(src)}/e/{q(dst)}"
    result = mgmt.post(base, {"routing_key": "r", "arguments": {}})
    assert_empty(result, 201)
    assert (result.headers.get("Location") or "").endswith("/r")
    expected = {"source": src, "vhost": vhost, "destination": dst, "destination_type": "exchange",
                "routing_key": "r", "arguments": {}, "properties_key": "r"}
    assert mgmt.get(base).body == [expected]
    assert mgmt.get(f"{base}/r").body == expected
    assert mgmt.get(f"/api/exchanges/{q(vhost)}/{q(src)}/bindings/source").body == [expected]
    assert mgmt.get(f"/api/exchanges/{q(vhost)}/{q(src)}/bindings/destination").body == []
    assert mgmt.get(f"/api/exchanges/{q(vhost)}/{q(dst)}/bindings/destination").body == [expected]
    to_queue = {"source": dst, "vhost": vhost, "destination": queue, "destination_type": "queue",
                "routing_key": "", "arguments": {}, "properties_key": "~"}
    assert mgmt.get(f"/api/exchanges/{q(vhost)}/{q(dst)}/bindings/source").body == [to_queue]
    # it routes
    vch.basic_publish(src, "r", b"via e2e", mandatory=True)
    _m, _p, body = get_wait(vch, queue)
    assert body == b"via e2e"
    assert_empty(mgmt.delete(f"{base}/r"), 204)
    assert mgmt.get(base).body == []
    with pytest.raises(pika.exceptions.UnroutableError):
        vch.basic_publish(src, "r", b"not any more", mandatory=True)


def test_binding_listings_include_the_default_binding(mgmt, vhost, uid):
    x, queue = f"{uid}.x", f"{uid}.q"
    put_exchange(mgmt, vhost, x, "direct")
    put_queue(mgmt, vhost, queue)
    bind(mgmt, vhost, x, queue, "k")
    default = {"source": "", "vhost": vhost, "destination": queue, "destination_type": "queue",
               "routing_key": queue, "arguments": {}, "properties_key": props_key(queue)}
    explicit = {"source": x, "vhost": vhost, "destination": queue, "destination_type": "queue",
                "routing_key": "k", "arguments": {}, "properties_key": "k"}
    result = mgmt.get(f"/api/queues/{q(vhost)}/{q(queue)}/bindings")
    assert result.status == 200 and is_json(result)
    assert sorted(result.body, key=lambda b: b["source"]) == [default, explicit]
    result = mgmt.get(f"/api/bindings/{q(vhost)}")
    assert sorted(result.body, key=lambda b: b["source"]) == [default, explicit]
    mine = [b for b in mgmt.get("/api/bindings").body if b["vhost"] == vhost]
    assert sorted(mine, key=lambda b: b["source"]) == [default, explicit]
    # the default exchange's listing does not show it as a source binding
    assert mgmt.get(f"/api/exchanges/{q(vhost)}/{q(x)}/bindings/source").body == [explicit]
    assert_status(mgmt.get(f"/api/bindings/{q(vhost + '.missing')}"), 404, NOT_FOUND)


def test_binding_errors(mgmt, vhost, uid):
    x, queue = f"{uid}.x", f"{uid}.q"
    put_exchange(mgmt, vhost, x)
    put_queue(mgmt, vhost, queue)
    body = {"routing_key": "k", "arguments": {}}
    assert_status(mgmt.post(f"/api/bindings/{q(vhost)}/e/{q(x)}.missing/q/{q(queue)}", body), 404,
                  {"error": "not_found", "reason": f"no exchange '{x}.missing' in vhost '{vhost}'"})
    assert_status(mgmt.post(f"/api/bindings/{q(vhost)}/e/{q(x)}/q/{q(queue)}.missing", body), 404,
                  {"error": "not_found", "reason": f"no queue '{queue}.missing' in vhost '{vhost}'"})
    # the default exchange's bindings are not to be touched
    assert_status(mgmt.post(f"/api/bindings/{q(vhost)}/e/amq.default/q/{q(queue)}", body), 401, ACCESS_REFUSED)
    assert_status(mgmt.delete(f"/api/bindings/{q(vhost)}/e/amq.default/q/{q(queue)}/{q(queue)}"), 401,
                  ACCESS_REFUSED)
    assert_status(mgmt.delete(f"/api/bindings/{q(vhost)}/e/{q(x)}/q/{q(queue)}/k"), 404, NOT_FOUND)


def test_headers_binding_arguments_from_json(mgmt, vhost, uid, vch):
    """JSON ints in binding arguments (AMQP longs) match the int32 header pika sends."""
    queue = f"{uid}.q"
    put_queue(mgmt, vhost, queue)
    args = {"x-match": "all", "h": 1, "s": "v"}
    bind(mgmt, vhost, "amq.headers", queue, "", args)
    listing = mgmt.get(f"/api/bindings/{q(vhost)}/e/amq.headers/q/{q(queue)}").body
    assert [b["arguments"] for b in listing] == [args]
    vch.basic_publish("amq.headers", "", b"match", pika.BasicProperties(headers={"h": 1, "s": "v"}),
                      mandatory=True)
    _m, _p, body = get_wait(vch, queue)
    assert body == b"match"
    with pytest.raises(pika.exceptions.UnroutableError):
        vch.basic_publish("amq.headers", "", b"no", pika.BasicProperties(headers={"h": 2, "s": "v"}),
                          mandatory=True)


# --- basic.get over HTTP ---------------------------------------------------------------

def http_get(mgmt, vhost, queue, count, ackmode, encoding="auto", truncate=50000):
    result = mgmt.post(f"/api/queues/{q(vhost)}/{q(queue)}/get",
                       {"count": count, "ackmode": ackmode, "encoding": encoding, "truncate": truncate})
    assert result.status == 200 and is_json(result), (result.status, result.body)
    assert all(set(m) == GET_KEYS for m in result.body), result.body
    return result.body


def test_get_messages(mgmt, vhost, uid, vch):
    queue = f"{uid}.q"
    vch.queue_declare(queue)
    vch.queue_bind(queue, "amq.direct", "rk")
    vch.basic_publish("amq.direct", "rk", b"hello", pika.BasicProperties(
        content_type="text/plain", delivery_mode=2, headers={"a": 1, "s": "x"}))
    vch.basic_publish("", queue, b"\x00\xff\xfe")
    vch.basic_publish("", queue, "héllo".encode())

    first = {"payload_bytes": 5, "redelivered": False, "exchange": "amq.direct", "routing_key": "rk",
             "message_count": 2,
             "properties": {"content_type": "text/plain", "delivery_mode": 2, "headers": {"a": 1, "s": "x"}},
             "payload": "hello", "payload_encoding": "string"}
    second = {"payload_bytes": 3, "redelivered": False, "exchange": "", "routing_key": queue,
              "message_count": 1, "properties": [], "payload": "AP/+", "payload_encoding": "base64"}
    third = {"payload_bytes": 6, "redelivered": False, "exchange": "", "routing_key": queue,
             "message_count": 0, "properties": [], "payload": "héllo", "payload_encoding": "string"}
    assert http_get(mgmt, vhost, queue, 2, "ack_requeue_true") == [first, second]

    # requeued: redelivered, same order; base64 and truncation (before encoding)
    got = http_get(mgmt, vhost, queue, 10, "ack_requeue_true", encoding="base64", truncate=2)
    assert [(m["redelivered"], m["payload"], m["payload_encoding"], m["payload_bytes"], m["message_count"])
            for m in got] == [(True, "aGU=", "base64", 5, 2), (True, "AP8=", "base64", 3, 1),
                              (False, "aMM=", "base64", 6, 0)]
    got = http_get(mgmt, vhost, queue, 1, "ack_requeue_true", truncate=2)
    assert (got[0]["payload"], got[0]["payload_encoding"]) == ("he", "string")

    red = {"redelivered": True}
    assert http_get(mgmt, vhost, queue, 1, "reject_requeue_true") == [dict(first, **red)]
    assert http_get(mgmt, vhost, queue, 2, "ack_requeue_false") == [dict(first, **red), dict(second, **red)]
    wait_until(lambda: vch.queue_declare(queue, passive=True).method.message_count == 1,
               what="one message left")
    assert http_get(mgmt, vhost, queue, 5, "reject_requeue_false") == [dict(third, **red)]
    wait_until(lambda: vch.queue_declare(queue, passive=True).method.message_count == 0,
               what="an empty queue")
    assert http_get(mgmt, vhost, queue, 5, "ack_requeue_true") == []

    result = mgmt.post(f"/api/queues/{q(vhost)}/{q(queue)}.missing/get",
                       {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": 50000})
    assert_status(result, 404, {"error": "not_found",
                                "reason": f"NOT_FOUND - no queue '{queue}.missing' in vhost '{vhost}'"})


def test_get_properties_shapes(mgmt, vhost, uid, vch, broker):
    queue = f"{uid}.q"
    vch.queue_declare(queue)
    props = pika.BasicProperties(
        content_type="application/json", content_encoding="gzip", delivery_mode=1, priority=3,
        correlation_id="c1", reply_to="r", expiration="60000", message_id="m1", timestamp=1700000000,
        type="t", user_id=broker.user, app_id="app",
        headers={"i": 5, "s": "str", "b": False, "neg": -7, "big": 2 ** 40,
                 "nested": {"a": [1, "b"]}, "ts": datetime.datetime(2024, 1, 2, 3, 4, 5)})
    vch.basic_publish("", queue, b"{}", props)
    [msg] = http_get(mgmt, vhost, queue, 1, "ack_requeue_false")
    assert msg["properties"] == {
        "content_type": "application/json", "content_encoding": "gzip", "delivery_mode": 1, "priority": 3,
        "correlation_id": "c1", "reply_to": "r", "expiration": "60000", "message_id": "m1",
        "timestamp": 1700000000, "type": "t", "user_id": broker.user, "app_id": "app",
        "headers": {"i": 5, "s": "str", "b": False, "neg": -7, "big": 2 ** 40, "nested": {"a": [1, "b"]},
                    "ts": 1704164645},
    }
    assert (msg["payload"], msg["payload_encoding"]) == ("{}", "string")


# --- publish over HTTP -----------------------------------------------------------------

def http_publish(mgmt, vhost, exchange, body):
    return mgmt.post(f"/api/exchanges/{q(vhost)}/{q(exchange)}/publish", body)


def test_publish_routed(mgmt, vhost, uid, vch, monkeypatch):
    capture_raw_properties(monkeypatch)
    x, queue = f"{uid}.x", f"{uid}.q"
    put_exchange(mgmt, vhost, x, "topic")
    put_queue(mgmt, vhost, queue)
    bind(mgmt, vhost, x, queue, "k")
    body = {"properties": {"delivery_mode": 2, "headers": {"a": 1}}, "routing_key": "k",
            "payload": "hello", "payload_encoding": "string"}
    result = http_publish(mgmt, vhost, x, body)
    assert result.status == 200 and is_json(result)
    assert result.body == {"routed": True}
    assert http_publish(mgmt, vhost, x, dict(body, routing_key="nomatch")).body == {"routed": False}
    method, props, payload = get_wait(vch, queue)
    assert payload == b"hello"
    assert (method.exchange, method.routing_key, method.redelivered) == (x, "k", False)
    assert props.delivery_mode == 2
    assert props.headers == {"a": 1}
    assert typed_headers(props) == [("a", "l", 1)]
    assert props.content_type is None and props.message_id is None
    assert vch.basic_get(queue, auto_ack=True) == (None, None, None)


def test_publish_properties_base64_and_default_exchange(mgmt, vhost, uid, vch, monkeypatch, broker):
    capture_raw_properties(monkeypatch)
    queue = f"{uid}.q"
    put_queue(mgmt, vhost, queue)
    properties = {"content_type": "application/octet-stream", "content_encoding": "gzip", "priority": 3,
                  "correlation_id": "c1", "reply_to": "r", "expiration": "60000", "message_id": "m1",
                  "timestamp": 1700000000, "type": "t", "user_id": broker.user, "app_id": "app",
                  "delivery_mode": 1,
                  "headers": {"i": 1, "s": "x", "f": 1.5, "b": True, "l": [1, "a"], "t": {"z": 1},
                              "big": 2 ** 40, "neg": -5}}
    result = http_publish(mgmt, vhost, "amq.default", {"properties": properties, "routing_key": queue,
                                                       "payload": "AAECA/8=", "payload_encoding": "base64"})
    assert (result.status, result.body) == (200, {"routed": True})
    method, props, payload = get_wait(vch, queue)
    assert payload == b"\x00\x01\x02\x03\xff"
    assert (method.exchange, method.routing_key) == ("", queue)
    assert (props.content_type, props.content_encoding, props.priority, props.correlation_id, props.reply_to,
            props.expiration, props.message_id, props.timestamp, props.type, props.user_id, props.app_id,
            props.delivery_mode) == \
        ("application/octet-stream", "gzip", 3, "c1", "r", "60000", "m1", 1700000000, "t", broker.user,
         "app", 1)
    types = {key: (tag, value) for key, tag, value in typed_headers(props)}
    assert types.pop("f")[0] == "d"  # a double (pika's decoder truncates its value)
    assert types == {
        "i": ("l", 1), "s": ("S", "x"), "b": ("t", True), "l": ("A", [("l", 1), ("S", "a")]),
        "t": ("F", [("z", "l", 1)]), "big": ("l", 2 ** 40), "neg": ("l", -5),
    }
    # the same through HTTP basic.get: the float is back
    http_publish(mgmt, vhost, "amq.default", {"properties": properties, "routing_key": queue,
                                              "payload": "hi", "payload_encoding": "string"})
    wait_until(lambda: vch.queue_declare(queue, passive=True).method.message_count == 1, what="the message")
    [msg] = http_get(mgmt, vhost, queue, 1, "ack_requeue_false")
    assert msg["properties"]["headers"] == properties["headers"]
    assert (msg["exchange"], msg["routing_key"], msg["payload"]) == ("", queue, "hi")


def test_publish_without_properties(mgmt, vhost, uid, vch):
    queue = f"{uid}.q"
    put_queue(mgmt, vhost, queue)
    result = http_publish(mgmt, vhost, "amq.default", {"properties": {}, "routing_key": queue,
                                                       "payload": "plain", "payload_encoding": "string"})
    assert result.body == {"routed": True}
    method, props, payload = get_wait(vch, queue)
    assert payload == b"plain"
    assert (props.delivery_mode, props.headers, props.content_type) == (None, None, None)


def test_publish_errors(mgmt, vhost, uid, broker):
    queue = f"{uid}.q"
    put_queue(mgmt, vhost, queue)
    ok = {"properties": {}, "routing_key": queue, "payload": "x", "payload_encoding": "string"}
    assert_status(http_publish(mgmt, vhost, f"{uid}.missing", ok), 400,
                  bad_request(f"404 NOT_FOUND - no exchange '{uid}.missing' in vhost '{vhost}'"))
    result = http_publish(mgmt, vhost, "amq.default", dict(ok, properties={"user_id": f"{broker.user}.other"}))
    assert_status(result, 400, bad_request(
        f"406 PRECONDITION_FAILED - user_id property set to '{broker.user}.other' but authenticated "
        f"user was '{broker.user}'"))
    result = http_publish(mgmt, vhost, "amq.default", dict(ok, payload="!!!", payload_encoding="base64"))
    assert result.status == 400 and result.body["error"] == "bad_request"
    assert http_publish(mgmt, vhost, "amq.default", ok).body == {"routed": True}


# --- channels and consumers ------------------------------------------------------------

def test_channels_and_consumers_slow(mgmt, vhost, uid, pika_connect, broker):
    conn = pika_connect(virtual_host=vhost)
    q1, q2 = f"{uid}.q1", f"{uid}.q2"
    ch1 = conn.channel()
    ch1.confirm_delivery()
    ch1.basic_qos(prefetch_count=7)
    ch1.queue_declare(q1)
    for _ in range(5):
        ch1.basic_publish("", q1, b"x")
    ch1.basic_consume(q1, lambda *a: None, consumer_tag=f"{uid}.ctag", arguments={"x-priority": 5})
    ch2 = conn.channel()
    ch2.tx_select()
    ch2.queue_declare(q2)
    ch2.basic_consume(q2, lambda *a: None, auto_ack=True, exclusive=True, consumer_tag=f"{uid}.ctag2")
    conn.process_data_events(0.2)

    def mine():
        return [c for c in mgmt.get("/api/channels").body if c.get("vhost") == vhost]

    channels = poll(mine, lambda cs: len(cs) == 2 and {c["number"]: (c["consumer_count"], c["messages_unacknowledged"])
                                                          for c in cs} == {1: (1, 5), 2: (1, 0)},
                    what="both channels with their consumers")
    chans = {c["number"]: c for c in channels}
    conn_name = chans[1]["connection_details"]["name"]
    assert isinstance(conn_name, str) and conn_name
    for number, c in chans.items():
        assert set(c) >= {"name", "connection_details", "number", "user", "vhost", "consumer_count",
                          "messages_unacknowledged", "prefetch_count", "confirm", "transactional", "node",
                          "state"}
        assert c["name"] == f"{conn_name} ({number})"
        assert c["connection_details"]["name"] == conn_name
        assert c["connection_details"]["peer_host"] == "127.0.0.1" or broker.external
        assert isinstance(c["connection_details"]["peer_port"], int)
        assert (c["user"], c["vhost"]) == (broker.user, vhost)
    assert (chans[1]["prefetch_count"], chans[1]["confirm"], chans[1]["transactional"]) == (7, True, False)
    assert (chans[2]["prefetch_count"], chans[2]["confirm"], chans[2]["transactional"]) == (0, False, True)

    # the connection's channels, and one channel by name
    listing = mgmt.get(f"/api/connections/{q(conn_name)}/channels").body
    assert sorted(c["number"] for c in listing) == [1, 2]
    one = mgmt.get(f"/api/channels/{q(conn_name + ' (1)')}")
    assert one.status == 200 and one.body["number"] == 1 and one.body["prefetch_count"] == 7
    assert sorted(c["number"] for c in mgmt.get(f"/api/vhosts/{q(vhost)}/channels").body) == [1, 2]

    consumers = mgmt.get(f"/api/consumers/{q(vhost)}").body
    by_tag = {c["consumer_tag"]: c for c in consumers}
    assert set(by_tag) == {f"{uid}.ctag", f"{uid}.ctag2"}
    c1, c2 = by_tag[f"{uid}.ctag"], by_tag[f"{uid}.ctag2"]
    for c in (c1, c2):
        assert set(c) >= {"consumer_tag", "queue", "channel_details", "ack_required", "prefetch_count",
                          "exclusive", "arguments", "active"}
        assert set(c["channel_details"]) >= {"name", "number", "connection_name", "peer_host", "peer_port",
                                             "user", "node"}
        assert c["channel_details"]["connection_name"] == conn_name
        assert c["channel_details"]["user"] == broker.user
        assert c["active"] is True
    assert c1["queue"] == {"name": q1, "vhost": vhost}
    assert c1["channel_details"]["name"] == f"{conn_name} (1)" and c1["channel_details"]["number"] == 1
    assert (c1["ack_required"], c1["prefetch_count"], c1["exclusive"], c1["arguments"]) == \
        (True, 7, False, {"x-priority": 5})
    assert c2["queue"] == {"name": q2, "vhost": vhost}
    assert (c2["ack_required"], c2["prefetch_count"], c2["exclusive"], c2["arguments"]) == (False, 0, True, {})
    everywhere = {c["consumer_tag"] for c in mgmt.get("/api/consumers").body
                  if c["queue"]["vhost"] == vhost}
    assert everywhere == set(by_tag)
    assert_status(mgmt.get(f"/api/consumers/{q(vhost + '.missing')}"), 404, NOT_FOUND)


# --- definitions -------------------------------------------------------------------------

DEFINITIONS_KEYS = {"rabbit_version", "rabbitmq_version", "product_name", "product_version", "users",
                    "vhosts", "permissions", "topic_permissions", "parameters", "global_parameters",
                    "policies", "queues", "exchanges", "bindings"}
VHOST_DEFINITIONS_KEYS = {"rabbit_version", "parameters", "policies", "queues", "exchanges", "bindings"}


def test_definitions_export(mgmt, vhost, uid, user, vconnect):
    x, queue = f"{uid}.x", f"{uid}.q"
    put_exchange(mgmt, vhost, x, "fanout", durable=True, arguments={"alternate-exchange": "amq.fanout"})
    put_queue(mgmt, vhost, queue, {"durable": True, "arguments": {"x-max-length": 10}})
    bind(mgmt, vhost, x, queue, "k", {"x-a": 1})
    mgmt.set_permissions(vhost, user.name, "^c", "^w", "^r")
    mgmt.set_topic_permissions(vhost, user.name, "amq.topic", "^a", "^b")
    vconnect().channel().queue_declare(f"{uid}.exclusive", exclusive=True)

    result = mgmt.get("/api/definitions")
    assert result.status == 200 and is_json(result)
    d = result.body
    assert set(d) == DEFINITIONS_KEYS
    for key in ("rabbit_version", "rabbitmq_version", "product_name", "product_version"):
        assert isinstance(d[key], str) and d[key], key
    for key in DEFINITIONS_KEYS - {"rabbit_version", "rabbitmq_version", "product_name", "product_version"}:
        assert isinstance(d[key], list), key

    assert [e for e in d["queues"] if e["vhost"] == vhost] == [
        {"name": queue, "vhost": vhost, "durable": True, "auto_delete": False, "arguments": {"x-max-length": 10}}]
    assert [e for e in d["exchanges"] if e["vhost"] == vhost] == [
        {"name": x, "vhost": vhost, "type": "fanout", "durable": True, "auto_delete": False, "internal": False,
         "arguments": {"alternate-exchange": "amq.fanout"}}]
    assert [e for e in d["bindings"] if e["vhost"] == vhost] == [
        {"source": x, "vhost": vhost, "destination": queue, "destination_type": "queue", "routing_key": "k",
         "arguments": {"x-a": 1}}]
    assert not [e for e in d["exchanges"] if e["name"] == "" or e["name"].startswith("amq.")]
    assert not [e for e in d["bindings"] if e["source"] == ""]
    assert {"user": user.name, "vhost": vhost, "configure": "^c", "write": "^w", "read": "^r"} in d["permissions"]
    assert {"user": user.name, "vhost": vhost, "exchange": "amq.topic", "write": "^a", "read": "^b"} \
        in d["topic_permissions"]
    assert vhost in [v["name"] for v in d["vhosts"]]
    me = next(u for u in d["users"] if u["name"] == user.name)
    assert set(me) >= {"name", "password_hash", "hashing_algorithm", "tags"}
    assert (me["hashing_algorithm"], me["tags"]) == (SHA256, [])
    assert me["password_hash"] == mgmt.get(f"/api/users/{q(user.name)}").body["password_hash"]
    admin = next(u for u in d["users"] if u["name"] == mgmt.user)
    assert "administrator" in admin["tags"]

    result = mgmt.get(f"/api/definitions/{q(vhost)}")
    assert result.status == 200 and is_json(result)
    dv = result.body
    assert set(dv) == VHOST_DEFINITIONS_KEYS
    assert dv["queues"] == [{"name": queue, "durable": True, "auto_delete": False, "arguments": {"x-max-length": 10}}]
    assert dv["exchanges"] == [{"name": x, "type": "fanout", "durable": True, "auto_delete": False,
                                "internal": False, "arguments": {"alternate-exchange": "amq.fanout"}}]
    assert dv["bindings"] == [{"source": x, "destination": queue, "destination_type": "queue", "routing_key": "k",
                               "arguments": {"x-a": 1}}]
    assert (dv["parameters"], dv["policies"]) == ([], [])
    assert_status(mgmt.get(f"/api/definitions/{q(vhost + '.missing')}"), 400, bad_request("vhost_not_found"))


def test_definitions_import(mgmt, uid, pika_connect, broker):
    vh, name, password = f"{uid}.vh", f"{uid}.user", f"pw-{uuid.uuid4().hex[:8]}"
    x, queue = f"{uid}.x", f"{uid}.q"
    hashed = password_hash(password)
    doc = {
        "vhosts": [{"name": vh}],
        "users": [{"name": name, "password_hash": hashed, "hashing_algorithm": SHA256, "tags": ["management"]}],
        "permissions": [{"user": name, "vhost": vh, "configure": ".*", "write": ".*", "read": ".*"}],
        "queues": [{"name": queue, "vhost": vh, "durable": True, "auto_delete": False,
                    "arguments": {"x-message-ttl": 60000}}],
        "exchanges": [{"name": x, "vhost": vh, "type": "topic", "durable": True, "auto_delete": False,
                       "internal": False, "arguments": {}}],
        "bindings": [{"source": x, "vhost": vh, "destination": queue, "destination_type": "queue",
                      "routing_key": "a.#", "arguments": {}}],
    }
    try:
        assert_empty(mgmt.post("/api/definitions", doc), 204)
        assert_empty(mgmt.post("/api/definitions", doc), 204)  # idempotent
        assert mgmt.get(f"/api/vhosts/{q(vh)}").status == 200
        # like PUT /api/vhosts, the import gives the importing user full permissions on the new vhost
        assert {"vhost": vh, "user": mgmt.user, "configure": ".*", "write": ".*", "read": ".*"} in \
            mgmt.get(f"/api/vhosts/{q(vh)}/permissions").body
        u = mgmt.get(f"/api/users/{q(name)}").body
        assert (u["password_hash"], u["hashing_algorithm"], u["tags"]) == (hashed, SHA256, ["management"])
        assert mgmt.get(f"/api/permissions/{q(vh)}/{q(name)}").body == \
            {"user": name, "vhost": vh, "configure": ".*", "write": ".*", "read": ".*"}
        got = mgmt.get(f"/api/queues/{q(vh)}/{q(queue)}").body
        assert (got["durable"], got["arguments"]) == (True, {"x-message-ttl": 60000})
        assert mgmt.get(f"/api/exchanges/{q(vh)}/{q(x)}").body["type"] == "topic"
        assert [b["routing_key"] for b in mgmt.get(f"/api/bindings/{q(vh)}/e/{q(x)}/q/{q(queue)}").body] == ["a.#"]
        assert mgmt.as_user(name, password).get("/api/whoami").body == {"name": name, "tags": ["management"]}
        # and they work over AMQP, as the imported user
        conn = pika_connect(credentials=pika.PlainCredentials(name, password), virtual_host=vh)
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish(x, "a.b", b"imported", mandatory=True)
        _m, _p, body = get_wait(ch, queue)
        assert body == b"imported"
        assert ch.queue_declare(queue, durable=True, arguments={"x-message-ttl": 60000}).method.queue == queue
    finally:
        mgmt.delete_vhost(vh, missing_ok=True)
        mgmt.delete_user(name, missing_ok=True)


def test_vhost_definitions_import(mgmt, vhost, uid, vch):
    x, queue = f"{uid}.x", f"{uid}.q"
    doc = {
        "queues": [{"name": queue, "durable": True, "auto_delete": False, "arguments": {}},
                   # a vhost named in an entry is ignored: everything goes into the path's vhost
                   {"name": queue + ".2", "vhost": "/", "durable": True, "auto_delete": False, "arguments": {}}],
        "exchanges": [{"name": x, "type": "fanout", "durable": True, "auto_delete": False, "internal": False,
                       "arguments": {}}],
        "bindings": [{"source": x, "destination": queue, "destination_type": "queue", "routing_key": "",
                      "arguments": {}}],
    }
    assert_empty(mgmt.post(f"/api/definitions/{q(vhost)}", doc), 204)
    dv = mgmt.get(f"/api/definitions/{q(vhost)}").body
    assert sorted(e["name"] for e in dv["queues"]) == [queue, queue + ".2"]
    assert [e["name"] for e in dv["exchanges"]] == [x]
    assert dv["bindings"] == [{"source": x, "destination": queue, "destination_type": "queue", "routing_key": "",
                               "arguments": {}}]
    assert mgmt.get(f"/api/queues/%2F/{q(queue + '.2')}").status == 404
    vch.basic_publish(x, "", b"fanned", mandatory=True)
    _m, _p, body = get_wait(vch, queue)
    assert body == b"fanned"
    assert_status(mgmt.post(f"/api/definitions/{q(vhost + '.missing')}", doc), 404, VHOST_NOT_FOUND)


def test_definitions_import_errors(mgmt, vhost, uid):
    assert_empty(mgmt.post("/api/definitions", {}), 204)
    result = mgmt.request_raw("POST", "/api/definitions", data=b"{not json")
    assert_status(result, 400, bad_request("failed_to_parse_json"))
    result = mgmt.post("/api/definitions", {"queues": [{"name": uid, "vhost": vhost + ".missing", "durable": True,
                                                        "auto_delete": False, "arguments": {}}]})
    assert result.status == 400 and result.body["error"] == "bad_request"


# --- health checks -----------------------------------------------------------------------

def test_aliveness_test(mgmt, vhost):
    result = mgmt.get(f"/api/aliveness-test/{q(vhost)}")
    assert result.status == 200 and is_json(result)
    assert result.body == {"status": "ok"}
    assert_status(mgmt.get(f"/api/aliveness-test/{q(vhost + '.missing')}"), 404, NOT_FOUND)


@pytest.mark.parametrize("check", ["alarms", "local-alarms", "virtual-hosts"])
def test_health_checks(mgmt, check):
    result = mgmt.get(f"/api/health/checks/{check}")
    assert result.status == 200 and is_json(result)
    assert result.body == {"status": "ok"}


def test_health_check_port_listener(mgmt, broker):
    result = mgmt.get(f"/api/health/checks/port-listener/{broker.port}")
    assert result.status == 200 and is_json(result)
    assert result.body == {"status": "ok", "port": broker.port}
    port = mgmt_port(mgmt)
    assert mgmt.get(f"/api/health/checks/port-listener/{port}").body == {"status": "ok", "port": port}
    unused = brokerctl.free_port()
    while unused in (broker.port, port):
        unused = brokerctl.free_port()
    result = mgmt.get(f"/api/health/checks/port-listener/{unused}")
    assert result.status == 503 and is_json(result)
    body = result.body
    assert set(body) == {"status", "reason", "missing", "ports"}
    assert (body["status"], body["reason"], body["missing"]) == ("failed", "No active listener", unused)
    assert all(isinstance(p, int) for p in body["ports"])
    assert {broker.port, port} <= set(body["ports"])
    assert_status(mgmt.get("/api/health/checks/port-listener/abc"), 400, bad_request("Invalid port"))


def test_health_check_protocol_listener(mgmt):
    for name in ("amqp", "amqp091", "amqp0-9-1"):
        result = mgmt.get(f"/api/health/checks/protocol-listener/{name}")
        assert result.status == 200 and is_json(result), name
        assert result.body == {"status": "ok", "protocol": "amqp"}, name
    assert mgmt.get("/api/health/checks/protocol-listener/http").body == {"status": "ok", "protocol": "http"}
    result = mgmt.get("/api/health/checks/protocol-listener/mqtt")
    assert result.status == 503 and is_json(result)
    body = result.body
    assert set(body) == {"status", "reason", "missing", "protocols"}
    assert (body["status"], body["reason"], body["missing"]) == ("failed", "No active listener", "mqtt")
    assert {"amqp", "http"} <= set(body["protocols"])


# --- paging, columns, filters, sorting ----------------------------------------------------

PAGING_QUEUES = ["pg.a1", "pg.b2", "pg.c3", "pg.a4", "other"]


@pytest.fixture
def paged_vhost(mgmt, vhost):
    for name in PAGING_QUEUES:
        put_queue(mgmt, vhost, name, {"durable": name != "other"})
    return vhost


def test_paging_shape(mgmt, paged_vhost):
    vh = q(paged_vhost)
    result = mgmt.get(f"/api/queues/{vh}?page=1&page_size=2&name=&use_regex=false&sort=name&sort_reverse=true")
    assert result.status == 200 and is_json(result)
    body = result.body
    assert set(body) == PAGE_KEYS
    assert {k: body[k] for k in PAGE_KEYS - {"items"}} == \
        {"filtered_count": 5, "item_count": 2, "page": 1, "page_count": 3, "page_size": 2, "total_count": 5}
    assert [i["name"] for i in body["items"]] == ["pg.c3", "pg.b2"]
    assert all(set(i) >= QUEUE_KEYS for i in body["items"])
    body = mgmt.get(f"/api/queues/{vh}?page=3&page_size=2&sort=name&sort_reverse=true&columns=name").body
    assert body == {"filtered_count": 5, "item_count": 1, "items": [{"name": "other"}], "page": 3,
                    "page_count": 3, "page_size": 2, "total_count": 5}
    # default page size: 100
    body = mgmt.get(f"/api/queues/{vh}?page=1&columns=name&sort=name").body
    assert (body["page_size"], body["page_count"], body["item_count"]) == (100, 1, 5)
    assert [i["name"] for i in body["items"]] == sorted(PAGING_QUEUES)
    # without page: a plain list (page_size and name alone do nothing)
    body = mgmt.get(f"/api/queues/{vh}?page_size=2&name=pg.a&columns=name").body
    assert isinstance(body, list) and sorted(i["name"] for i in body) == sorted(PAGING_QUEUES)
    # nothing matches: page 1 is empty, with page_count 0
    body = mgmt.get(f"/api/queues/{vh}?page=1&page_size=10&name=zzz&columns=name").body
    assert body == {"filtered_count": 0, "item_count": 0, "items": [], "page": 1, "page_count": 0,
                    "page_size": 10, "total_count": 5}
    # exchanges page the same way
    body = mgmt.get(f"/api/exchanges/{vh}?page=1&page_size=3&columns=name,type&sort=name").body
    assert {k: body[k] for k in PAGE_KEYS - {"items"}} == \
        {"filtered_count": 7, "item_count": 3, "page": 1, "page_count": 3, "page_size": 3, "total_count": 7}
    assert body["items"] == [{"name": "", "type": "direct"}, {"name": "amq.direct", "type": "direct"},
                             {"name": "amq.fanout", "type": "fanout"}]


def test_paging_across_vhosts(mgmt, paged_vhost):
    body = mgmt.get("/api/queues?page=1&page_size=100&columns=name,vhost&sort=name&name=" +
                    urllib.parse.quote("^pg\\.", safe="") + "&use_regex=true").body
    mine = [i for i in body["items"] if i["vhost"] == paged_vhost]
    assert [i["name"] for i in mine] == ["pg.a1", "pg.a4", "pg.b2", "pg.c3"]
    assert all(set(i) == {"name", "vhost"} for i in body["items"])
    assert body["total_count"] >= 5 and body["filtered_count"] >= 4


def test_name_filters(mgmt, paged_vhost):
    vh = q(paged_vhost)

    def names(query):
        body = mgmt.get(f"/api/queues/{vh}?page=1&page_size=100&columns=name&sort=name&{query}").body
        assert body["filtered_count"] == len(body["items"]) and body["total_count"] == 5
        return [i["name"] for i in body["items"]]

    assert names("name=pg.a") == ["pg.a1", "pg.a4"]
    assert names("name=PG.A") == ["pg.a1", "pg.a4"]  # case-insensitive
    assert names("name=pg.a&use_regex=false") == ["pg.a1", "pg.a4"]
    regex = urllib.parse.quote("^pg\\.[ab]", safe="")
    assert names(f"name={regex}&use_regex=true") == ["pg.a1", "pg.a4", "pg.b2"]
    assert names(f"name={regex}&use_regex=false") == []  # taken literally
    assert names(f"name={urllib.parse.quote('^PG', safe='')}&use_regex=true") == ["pg.a1", "pg.a4", "pg.b2", "pg.c3"]
    assert names("name=&use_regex=true") == sorted(PAGING_QUEUES)


def test_columns_and_sorting(mgmt, paged_vhost):
    vh = q(paged_vhost)
    body = mgmt.get(f"/api/queues/{vh}?columns=name,durable&sort=name").body
    assert body == [{"name": n, "durable": n != "other"} for n in sorted(PAGING_QUEUES)]
    body = mgmt.get(f"/api/queues/{vh}?columns=name&sort=name&sort_reverse=true").body
    assert body == [{"name": n} for n in sorted(PAGING_QUEUES, reverse=True)]
    body = mgmt.get(f"/api/queues/{vh}/pg.a1?columns=name,durable").body
    assert body == {"name": "pg.a1", "durable": True}
    body = mgmt.get(f"/api/exchanges/{vh}?columns=name&sort=name").body
    assert body == [{"name": n} for n in sorted(PREDECLARED)]


def test_columns_with_stats_slow(mgmt, paged_vhost):
    """``messages`` is a statistics key: RabbitMQ lists it once collected."""
    vh = q(paged_vhost)
    body = poll(lambda: mgmt.get(f"/api/queues/{vh}?columns=name,messages&sort=name").body,
                lambda b: all("messages" in i for i in b), what="messages in every queue")
    assert body == [{"name": n, "messages": 0} for n in sorted(PAGING_QUEUES)]
    body = mgmt.get(f"/api/queues/{vh}?page=1&page_size=2&columns=name,messages&sort=name").body
    assert body["items"] == [{"name": "other", "messages": 0}, {"name": "pg.a1", "messages": 0}]


def test_bad_paging_parameters(mgmt, paged_vhost):
    vh = q(paged_vhost)

    def invalid(page, size):
        return {"error": "invalid_pagination_parameters",
                "reason": f"Invalid pagination parameters: page number {page}, page size {size}"}

    assert_status(mgmt.get(f"/api/queues/{vh}?page=0&page_size=2"), 400, invalid(0, 2))
    assert_status(mgmt.get(f"/api/queues/{vh}?page=-1&page_size=2"), 400, invalid(-1, 2))
    assert_status(mgmt.get(f"/api/queues/{vh}?page=1&page_size=0"), 400, invalid(1, 0))
    assert_status(mgmt.get(f"/api/queues/{vh}?page=1&page_size=501"), 400, invalid(1, 501))
    assert mgmt.get(f"/api/queues/{vh}?page=1&page_size=500").status == 200
    assert_status(mgmt.get(f"/api/queues/{vh}?page=4&page_size=2"), 400, {
        "error": "page_out_of_range", "reason": "Page out of range, page: 4 page size: 2, len: 5"})
    assert_status(mgmt.get(f"/api/queues/{vh}?page=2&page_size=10&name=zzz"), 400, {
        "error": "page_out_of_range", "reason": "Page out of range, page: 2 page size: 10, len: 0"})
    unparsable = bad_request("Pagination parameters are invalid")
    assert_status(mgmt.get(f"/api/queues/{vh}?page=abc&page_size=2"), 400, unparsable)
    assert_status(mgmt.get(f"/api/queues/{vh}?page=1&page_size=abc"), 400, unparsable)
    assert_status(mgmt.get(f"/api/queues/{vh}?page=1&name=%28&use_regex=true"), 400, unparsable)


# --- who sees what -----------------------------------------------------------------------

@pytest.fixture
def three_vhosts(mgmt, vhost_factory):
    """(granted, empty, other): a queue in each; users get full permissions on
    granted, an entry with empty patterns on empty, nothing on other."""
    vhs = vhost_factory(".granted"), vhost_factory(".empty"), vhost_factory(".other")
    for vh in vhs:
        put_queue(mgmt, vh, "q")
    return vhs


def grant(mgmt, user, granted, empty):
    mgmt.set_permissions(granted, user.name)
    mgmt.set_permissions(empty, user.name, "", "", "")


@pytest.mark.parametrize("tag", ["management", "policymaker", "monitoring"])
def test_vhost_scoped_visibility(mgmt, user_factory, three_vhosts, tag):
    granted, empty, other = three_vhosts
    u = user_factory(tags=tag)
    grant(mgmt, u, granted, empty)
    api = mgmt.as_user(u.name, u.password)
    ours = set(three_vhosts)

    status, listing = api.get("/api/queues")
    assert status == 200
    assert sorted(e["vhost"] for e in listing if e["vhost"] in ours) == sorted([granted, empty])
    assert {(e["vhost"], e["name"]) for e in listing} == {(granted, "q"), (empty, "q")}
    assert {e["vhost"] for e in api.get("/api/exchanges").body} == {granted, empty}
    assert {e["vhost"] for e in api.get("/api/bindings").body} == {granted, empty}
    for vh in (granted, empty):
        assert [e["name"] for e in api.get(f"/api/queues/{q(vh)}").body] == ["q"]
        assert api.get(f"/api/queues/{q(vh)}/q").status == 200
        assert sorted(e["name"] for e in api.get(f"/api/exchanges/{q(vh)}").body) == sorted(PREDECLARED)
    for path in (f"/api/queues/{q(other)}", f"/api/queues/{q(other)}/q", f"/api/exchanges/{q(other)}",
                 f"/api/exchanges/{q(other)}/amq.direct", f"/api/bindings/{q(other)}",
                 f"/api/queues/{q(other)}/q/bindings", f"/api/aliveness-test/{q(other)}"):
        assert_status(api.get(path), 401, VHOST_REFUSED)
    assert_status(api.put(f"/api/queues/{q(other)}/new", {}), 401, VHOST_REFUSED)
    assert_status(api.delete(f"/api/queues/{q(other)}/q"), 401, VHOST_REFUSED)
    assert_status(api.post(f"/api/queues/{q(other)}/q/get",
                           {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"}), 401, VHOST_REFUSED)
    assert_status(http_publish(api, other, "amq.default", {"properties": {}, "routing_key": "q", "payload": "x",
                                                          "payload_encoding": "string"}), 401, VHOST_REFUSED)
    assert_status(api.get(f"/api/queues/{q(other + '.missing')}"), 404, NOT_FOUND)
    for path in ("/api/users", "/api/definitions", f"/api/definitions/{q(granted)}"):
        assert_status(api.get(path), 401, NOT_ADMIN)

    # in the vhost with empty patterns: visible, but AMQP permissions still apply
    assert_status(api.put(f"/api/queues/{q(empty)}/new", {}), 401, ACCESS_REFUSED)
    result = http_publish(api, empty, "amq.default", {"properties": {}, "routing_key": "q", "payload": "x",
                                                      "payload_encoding": "string"})
    assert_status(result, 400, bad_request(
        f"403 ACCESS_REFUSED - access to exchange 'amq.default' in vhost '{empty}' refused for user '{u.name}'"))
    # and with full permissions the user may manage the topology over HTTP
    assert_empty(api.put(f"/api/queues/{q(granted)}/new", {}), 201)
    assert http_publish(api, granted, "amq.default", {"properties": {}, "routing_key": "new", "payload": "x",
                                                      "payload_encoding": "string"}).body == {"routed": True}
    assert_empty(api.delete(f"/api/queues/{q(granted)}/new"), 204)


def test_policymaker_may_set_policies_management_may_not(mgmt, user_factory, vhost):
    pm, mg = user_factory(tags="policymaker"), user_factory(tags="management")
    for u in (pm, mg):
        mgmt.set_permissions(vhost, u.name)
    policy = {"pattern": "^never-matches$", "definition": {"max-length": 5}, "apply-to": "queues"}
    path = f"/api/policies/{q(vhost)}/p1"
    try:
        assert_status(mgmt.as_user(mg.name, mg.password).put(path, policy), 401,
                      {"error": "not_authorised", "reason": "User not authorised to access object"})
        assert_empty(mgmt.as_user(pm.name, pm.password).put(path, policy), 201)
    finally:
        mgmt.delete(path)


def test_user_without_tags_sees_nothing(mgmt, user, vhost):
    mgmt.set_permissions(vhost, user.name)
    api = mgmt.as_user(user.name, user.password)
    for path in ("/api/queues", f"/api/queues/{q(vhost)}", "/api/exchanges", "/api/bindings", "/api/channels",
                 "/api/consumers", f"/api/aliveness-test/{q(vhost)}"):
        assert_status(api.get(path), 401, NOT_MANAGEMENT)


def test_connection_visibility_slow(mgmt, user_factory, vhost, pika_connect, connect_as, broker):
    """monitoring users see every connection, channel and consumer; management
    users only their own (RabbitMQ lists channels and consumers after a
    statistics round)."""
    mon, mg = user_factory(tags="monitoring"), user_factory(tags="management")
    for u in (mon, mg):
        mgmt.set_permissions(vhost, u.name)
    admin_conn = pika_connect(virtual_host=vhost)
    ch = admin_conn.channel()
    ch.queue_declare("admin.q")
    ch.basic_consume("admin.q", lambda *a: None, consumer_tag="admin.tag")
    own_conn = connect_as(mg, vhost)
    own_ch = own_conn.channel()
    own_ch.queue_declare("mg.q")
    own_ch.basic_consume("mg.q", lambda *a: None, consumer_tag="mg.tag")

    def users_of(api, path):
        return sorted(e["user"] if "user" in e else e["channel_details"]["user"]
                      for e in api.get(path).body
                      if e.get("vhost", (e.get("queue") or {}).get("vhost")) == vhost)

    everyone = sorted([broker.user, mg.name])
    for path in ("/api/connections", "/api/channels", "/api/consumers"):
        poll(lambda: users_of(mgmt, path), lambda users: users == everyone, what=f"both users in {path}")
    mon_api, mg_api = mgmt.as_user(mon.name, mon.password), mgmt.as_user(mg.name, mg.password)
    for path in ("/api/connections", "/api/channels", "/api/consumers", f"/api/consumers/{q(vhost)}",
                 f"/api/vhosts/{q(vhost)}/channels"):
        assert users_of(mon_api, path) == everyone, path
        assert users_of(mg_api, path) == [mg.name], path
