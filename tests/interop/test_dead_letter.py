"""Dead-letter exchanges (x-dead-letter-exchange, x-dead-letter-routing-key)
and the x-death header, as a pika application observes them.

Checked against RabbitMQ 3.10 (classic queues; see rabbitmq-as-warren.sh).
What RabbitMQ does, and these tests pin:

* Reasons: `rejected` (basic.reject / basic.nack with requeue=false, nack
  multiple included), `expired` (message TTL), `maxlen` (x-max-length /
  x-max-length-bytes overflow).  requeue=true never dead-letters; neither do
  queue.purge, queue.delete or x-expires.
* The dead-lettered copy is a new message: published to the DLX with the
  routing key x-dead-letter-routing-key if set, else with the message's own
  routing keys (including its CC *and BCC* keys); its `expiration` property
  is removed, every other property and header is kept, and RabbitMQ adds
  x-death (an array of tables, one per (queue, reason)) plus, on the first
  death only, x-first-death-reason/-queue/-exchange.
* With x-dead-letter-routing-key set, the CC header is removed from the copy.
* Wire layout (AMQP field types): count is a signed 64-bit int ('l'), time a
  timestamp ('T', whole seconds), the rest long strings ('S'), routing-keys an
  array of long strings.  A first death's entry is written in the order count,
  reason, queue, time, exchange, routing-keys[, original-expiration]; an entry
  written when x-death already exists (new or updated) has its keys sorted.
  The top-level headers table comes out sorted by key.  An updated entry keeps
  its first time/exchange/routing-keys; only count goes up.
* Entry order: the new/updated entry goes first; the others are regrouped,
  which *reverses* them when there are two or more (so with three or more
  distinct entries the array is not most-recent-first).
* Cycles: a message that would be dead-lettered into a queue it already died
  in is dropped unless one of the deaths since then was a rejection.
* A DLX that does not exist (looked up at dead-letter time): the message is
  dropped silently, the queue and channel go on working.
"""

from __future__ import annotations

import datetime
import time

import pika
import pika.exceptions
import pytest

from queue_helpers import (capture_raw_properties, drain, drain_bodies, get_wait, message_count,
                           publish, pump_until, typed_headers, wait_count, wait_until)


def dlx_args(target, exchange=""):
    args = {"x-dead-letter-exchange": exchange}
    if target is not None:
        args["x-dead-letter-routing-key"] = target
    return args


def queue(ch, cleanup, name, **args):
    cleanup.queue(name)
    ch.queue_declare(name, arguments=args or None)
    return name


def reject_one(ch, q, how="reject"):
    method, props, body = get_wait(ch, q, auto_ack=False)
    if how == "reject":
        ch.basic_reject(method.delivery_tag, requeue=False)
    else:
        ch.basic_nack(method.delivery_tag, requeue=False)
    return method, props, body


def deaths(props):
    return [(d["queue"], d["reason"], d["count"]) for d in props.headers["x-death"]]


def assert_recent(ts, slack=5):
    assert isinstance(ts, datetime.datetime)
    assert ts.tzinfo == datetime.timezone.utc  # pika decodes AMQP timestamps to aware UTC datetimes
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - ts).total_seconds()) < slack


# --- reasons and the x-death header as pika decodes it ----------------------

@pytest.mark.parametrize("how", ["reject", "nack"])
def test_rejected_message_is_dead_lettered_with_x_death(ch, cleanup, uid, how):
    dead = queue(ch, cleanup, f"{uid}.dead")
    q = queue(ch, cleanup, f"{uid}.q", **dlx_args(dead))
    publish(ch, q, "m")
    reject_one(ch, q, how)
    method, props, body = get_wait(ch, dead)
    assert body == b"m"
    assert (method.exchange, method.routing_key, method.redelivered) == ("", dead, False)
    assert message_count(ch, q) == 0
    xd = props.headers["x-death"]
    assert isinstance(xd, list) and len(xd) == 1
    entry = xd[0]
    assert set(entry) == {"count", "reason", "queue", "time", "exchange", "routing-keys"}
    assert entry["count"] == 1 and isinstance(entry["count"], int) and not isinstance(entry["count"], bool)
    assert entry["reason"] == "rejected"
    assert entry["queue"] == q
    assert entry["exchange"] == ""
    assert entry["routing-keys"] == [q]
    assert_recent(entry["time"])
    assert props.headers["x-first-death-reason"] == "rejected"
    assert props.headers["x-first-death-queue"] == q
    assert props.headers["x-first-death-exchange"] == ""
    assert set(props.headers) == {"x-death", "x-first-death-reason", "x-first-death-queue",
                                  "x-first-death-exchange"}


def test_nack_multiple_dead_letters_every_message_in_order(ch, cleanup, uid):
    dead = queue(ch, cleanup, f"{uid}.dead")
    q = queue(ch, cleanup, f"{uid}.q", **dlx_args(dead))
    for i in range(4):
        publish(ch, q, str(i))
    tags = [ch.basic_get(q)[0].delivery_tag for _ in range(3)]
    ch.basic_nack(tags[-1], multiple=True, requeue=False)
    wait_count(ch, dead, 3)
    got = drain(ch, dead)
    assert [b.decode() for _m, _p, b in got] == ["0", "1", "2"]
    assert all(deaths(p) == [(q, "rejected", 1)] for _m, p, _b in got)
    assert drain_bodies(ch, q) == ["3"]


def test_rejected_by_a_consumer(conn, ch, cleanup, uid):
    dead = queue(ch, cleanup, f"{uid}.dead")
    q = queue(ch, cleanup, f"{uid}.q", **dlx_args(dead))
    cch = conn.channel()
    seen = []

    def on_message(c, m, _p, b):
        seen.append(b)
        if b == b"bad":
            c.basic_reject(m.delivery_tag, requeue=False)
        else:
            c.basic_nack(m.delivery_tag, requeue=False)

    cch.basic_consume(q, on_message)
    publish(ch, q, "bad")
    publish(ch, q, "worse")
    pump_until(conn, lambda: len(seen) == 2)
    wait_count(ch, dead, 2)
    got = drain(ch, dead)
    assert [b for _m, _p, b in got] == [b"bad", b"worse"]
    assert all(deaths(p) == [(q, "rejected", 1)] for _m, p, _b in got)


def test_requeue_true_does_not_dead_letter(ch, cleanup, uid):
    dead = queue(ch, cleanup, f"{uid}.dead")
    q = queue(ch, cleanup, f"{uid}.q", **dlx_args(dead))
    publish(ch, q, "a")
    publish(ch, q, "b")
    m1 = ch.basic_get(q)[0]
    m2 = ch.basic_get(q)[0]
    ch.basic_reject(m1.delivery_tag, requeue=True)
    ch.basic_nack(m2.delivery_tag, requeue=True)
    wait_count(ch, q, 2)  # (RabbitMQ may answer a declare before it has handled the nacks)
    time.sleep(0.1)
    assert message_count(ch, dead) == 0


def test_purge_and_delete_do_not_dead_letter(ch, cleanup, uid):
    dead = queue(ch, cleanup, f"{uid}.dead")
    q = queue(ch, cleanup, f"{uid}.q", **dlx_args(dead))
    publish(ch, q, "purged")
    assert ch.queue_purge(q).method.message_count == 1
    publish(ch, q, "deleted")
    assert ch.queue_delete(q).method.message_count == 1
    time.sleep(0.2)
    assert message_count(ch, dead) == 0


def test_expired_message_x_death(ch, cleanup, uid):
    dead = queue(ch, cleanup, f"{uid}.dead")
    q = queue(ch, cleanup, f"{uid}.q", **dlx_args(dead))
    publish(ch, q, "m", expiration="100", headers={"k": "v"})
    _m, props, body = get_wait(ch, dead)
    entry = props.headers["x-death"][0]
    assert set(entry) == {"count", "reason", "queue", "time", "exchange", "routing-keys",
                          "original-expiration"}
    assert (entry["reason"], entry["queue"], entry["count"]) == ("expired", q, 1)
    assert entry["original-expiration"] == "100"
    assert props.expiration is None
    assert props.headers["k"] == "v"
    assert props.headers["x-first-death-reason"] == "expired"


def test_maxlen_x_death(ch, cleanup, uid):
    dead = queue(ch, cleanup, f"{uid}.dead")
    q = queue(ch, cleanup, f"{uid}.q", **dlx_args(dead), **{"x-max-length": 1})
    publish(ch, q, "old", expiration="60000")
    publish(ch, q, "new")
    _m, props, body = get_wait(ch, dead)
    assert body == b"old"
    assert deaths(props) == [(q, "maxlen", 1)]
    assert props.headers["x-death"][0]["original-expiration"] == "60000"
    assert props.headers["x-first-death-reason"] == "maxlen"
    assert drain_bodies(ch, q) == ["new"]


def test_properties_and_headers_are_kept_expiration_removed(ch, cleanup, uid):
    dlx = cleanup.exchange(f"{uid}.dlx")
    ch.exchange_declare(dlx, "fanout")
    dead = queue(ch, cleanup, f"{uid}.dead")
    ch.queue_bind(dead, dlx)
    q = queue(ch, cleanup, f"{uid}.q", **{"x-dead-letter-exchange": dlx})
    props = dict(content_type="text/plain", content_encoding="utf-8", delivery_mode=2, priority=3,
                 correlation_id="corr", reply_to="replies", expiration="60000", message_id="mid",
                 timestamp=1234567890, type="kind", user_id="guest", app_id="app",
                 headers={"str": "v", "int": 7, "list": ["a", 1], "table": {"x": "y"}, "bool": True})
    publish(ch, q, b"\x00body\xff", **props)
    reject_one(ch, q)
    method, got, body = get_wait(ch, dead)
    assert body == b"\x00body\xff"
    assert (method.exchange, method.routing_key) == (dlx, q)
    assert got.expiration is None
    for name, value in props.items():
        if name not in ("expiration", "headers"):
            assert getattr(got, name) == value, name
    for name, value in props["headers"].items():
        assert got.headers[name] == value, name
    assert got.headers["x-death"][0]["original-expiration"] == "60000"


# --- routing ---------------------------------------------------------------

def test_routing_key_with_and_without_x_dead_letter_routing_key(ch, cleanup, uid):
    dlx = cleanup.exchange(f"{uid}.dlx")
    ch.exchange_declare(dlx, "direct")
    by_orig = queue(ch, cleanup, f"{uid}.by-orig")
    by_new = queue(ch, cleanup, f"{uid}.by-new")
    ch.queue_bind(by_orig, dlx, "orig-key")
    ch.queue_bind(by_new, dlx, "new-key")
    src_keep = queue(ch, cleanup, f"{uid}.keep", **{"x-dead-letter-exchange": dlx})
    src_set = queue(ch, cleanup, f"{uid}.set", **dlx_args("new-key", dlx))
    pub = cleanup.exchange(f"{uid}.pub")
    ch.exchange_declare(pub, "direct")
    ch.queue_bind(src_keep, pub, "orig-key")
    ch.queue_bind(src_set, pub, "orig-key")
    publish(ch, "orig-key", "m", exchange=pub)  # lands in both sources
    reject_one(ch, src_keep)
    reject_one(ch, src_set)
    wait_until(lambda: message_count(ch, by_orig) == 1 and message_count(ch, by_new) == 1,
               what="both dead letters")
    (m1, p1, _), = drain(ch, by_orig)
    (m2, p2, _), = drain(ch, by_new)
    assert (m1.exchange, m1.routing_key) == (dlx, "orig-key")
    assert (m2.exchange, m2.routing_key) == (dlx, "new-key")
    # x-death records the routing keys the message was *published* with, and
    # the exchange it was published to, either way
    for p, src in ((p1, src_keep), (p2, src_set)):
        entry = p.headers["x-death"][0]
        assert (entry["queue"], entry["exchange"], entry["routing-keys"]) == (src, pub, ["orig-key"])
        assert p.headers["x-first-death-exchange"] == pub


def test_dead_letter_to_default_exchange(ch, cleanup, uid):
    target = queue(ch, cleanup, f"{uid}.target")
    # with a routing key: straight to the queue of that name
    q1 = queue(ch, cleanup, f"{uid}.q1", **dlx_args(target))
    publish(ch, q1, "with-key")
    reject_one(ch, q1)
    method, props, body = get_wait(ch, target)
    assert (body, method.exchange, method.routing_key) == (b"with-key", "", target)
    # without one: the message's own routing key names the queue; here it was
    # published to amq.direct with the target queue's name as key
    q2 = queue(ch, cleanup, f"{uid}.q2", **dlx_args(None))
    ch.queue_bind(q2, "amq.direct", target)
    publish(ch, target, "own-key", exchange="amq.direct")
    reject_one(ch, q2)
    method, props, body = get_wait(ch, target)
    assert (body, method.exchange, method.routing_key) == (b"own-key", "", target)
    entry = props.headers["x-death"][0]
    assert (entry["exchange"], entry["routing-keys"], entry["queue"]) == ("amq.direct", [target], q2)


def test_cc_and_bcc_headers(ch, cleanup, uid):
    """CC stays on the copy and its keys route it, unless x-dead-letter-routing-key
    is set (then CC is removed and only that key routes).  BCC, stripped from
    the message at publish, still routes the copy (surprising, but RabbitMQ
    keeps the BCC keys among the message's routing keys) and is not listed in
    x-death's routing-keys."""
    dlx = cleanup.exchange(f"{uid}.dlx")
    ch.exchange_declare(dlx, "direct")
    targets = {}
    for key in ("src-key", "cc-key", "bcc-key", "new-key"):
        targets[key] = queue(ch, cleanup, f"{uid}.to-{key}")
        ch.queue_bind(targets[key], dlx, key)
    pub = cleanup.exchange(f"{uid}.pub")
    ch.exchange_declare(pub, "direct")
    keep = queue(ch, cleanup, f"{uid}.keep", **{"x-dead-letter-exchange": dlx})
    ch.queue_bind(keep, pub, "src-key")
    headers = {"CC": ["cc-key"], "BCC": ["bcc-key"], "h": "v"}
    publish(ch, "src-key", "m1", exchange=pub, headers=headers)
    _m, original, _b = reject_one(ch, keep)
    assert original.headers == {"CC": ["cc-key"], "h": "v"}  # BCC never reaches a consumer
    for key in ("src-key", "cc-key", "bcc-key"):
        method, props, body = get_wait(ch, targets[key])
        assert body == b"m1"
        assert method.routing_key == "src-key"  # the first routing key is reported
        assert props.headers["CC"] == ["cc-key"]
        assert "BCC" not in props.headers
        assert props.headers["x-death"][0]["routing-keys"] == ["src-key", "cc-key"]
    assert message_count(ch, targets["new-key"]) == 0

    reset = queue(ch, cleanup, f"{uid}.reset", **dlx_args("new-key", dlx))
    ch.queue_bind(reset, pub, "reset-key")
    publish(ch, "reset-key", "m2", exchange=pub, headers=headers)
    reject_one(ch, reset)
    method, props, body = get_wait(ch, targets["new-key"])
    assert (body, method.routing_key) == (b"m2", "new-key")
    assert "CC" not in props.headers and "BCC" not in props.headers
    assert props.headers["h"] == "v"
    assert props.headers["x-death"][0]["routing-keys"] == ["reset-key", "cc-key"]
    time.sleep(0.1)
    for key in ("src-key", "cc-key", "bcc-key"):
        assert message_count(ch, targets[key]) == 0


def test_missing_dead_letter_exchange_drops_silently(conn, ch, cleanup, uid):
    missing = f"{uid}.missing-dlx"
    q = queue(ch, cleanup, f"{uid}.q", **{"x-dead-letter-exchange": missing, "x-max-length": 2})
    for body in ("a", "b", "c"):  # 'a' overflows (maxlen) into the missing DLX
        publish(ch, q, body)
    assert message_count(ch, q) == 2
    reject_one(ch, q)  # 'b' rejected into it
    publish(ch, q, "short", expiration="50")
    reject_one(ch, q)  # 'c'
    wait_count(ch, q, 0)  # 'short' expired into it
    # the queue and the channel go on working
    publish(ch, q, "still-works")
    assert drain_bodies(ch, q) == ["still-works"]
    assert ch.is_open and conn.is_open
    # the DLX is looked up when a message dies: declaring it later makes it work
    cleanup.exchange(missing)
    ch.exchange_declare(missing, "fanout")
    dead = queue(ch, cleanup, f"{uid}.dead")
    ch.queue_bind(dead, missing)
    publish(ch, q, "late")
    reject_one(ch, q)
    _m, props, body = get_wait(ch, dead)
    assert body == b"late" and deaths(props) == [(q, "rejected", 1)]


def test_invalid_dead_letter_arguments(conn, uid):
    q = f"{uid}.q"
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
        conn.channel().queue_declare(q, arguments={"x-dead-letter-routing-key": "rk"})
    assert (raised.value.reply_code, raised.value.reply_text) == (
        406, f"PRECONDITION_FAILED - invalid arg 'x-dead-letter-routing-key' for queue '{q}' "
             "in vhost '/': routing_key_but_no_dlx_defined")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
        conn.channel().queue_declare(q, arguments={"x-dead-letter-exchange": 5})
    assert (raised.value.reply_code, raised.value.reply_text) == (
        406, f"PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' "
             f"in queue '{q}' in vhost '/'")


# --- repeated deaths -----------------------------------------------------------

def test_retry_loop_counts_rise(ch, cleanup, uid):
    """work rejects -> retry (TTL) expires -> work: after N rounds x-death has
    two entries, each with count N, the most recent first."""
    work, retry = f"{uid}.work", f"{uid}.retry"
    queue(ch, cleanup, work, **dlx_args(retry))
    queue(ch, cleanup, retry, **dlx_args(work), **{"x-message-ttl": 50})
    publish(ch, work, "job", headers={"attempt": "original"})
    _m, props, _b = reject_one(ch, work)
    assert props.headers == {"attempt": "original"}
    rounds = 3
    first_times = None
    for n in range(1, rounds + 1):
        method, props, body = get_wait(ch, work, auto_ack=False)
        assert body == b"job" and not method.redelivered
        assert method.routing_key == work
        assert deaths(props) == [(retry, "expired", n), (work, "rejected", n)]
        times = [d["time"] for d in props.headers["x-death"]]
        if first_times is None:
            first_times = times
            # make the next deaths happen in a later wall-clock second
            time.sleep(1.05 - time.time() % 1)
        else:
            # updating an entry only bumps its count: time stays the first one
            assert times == first_times
        for d, rk in zip(props.headers["x-death"], ([retry], [work])):
            assert d["exchange"] == "" and d["routing-keys"] == rk
        assert props.headers["x-first-death-reason"] == "rejected"
        assert props.headers["x-first-death-queue"] == work
        assert props.headers["x-first-death-exchange"] == ""
        assert props.headers["attempt"] == "original"
        if n < rounds:
            ch.basic_reject(method.delivery_tag, requeue=False)
        else:
            ch.basic_ack(method.delivery_tag)
    assert message_count(ch, work) == 0 and message_count(ch, retry) == 0


def test_rejected_message_cycling_to_its_own_queue_is_not_dropped(ch, cleanup, uid):
    q = f"{uid}.q"
    queue(ch, cleanup, q, **dlx_args(q))
    publish(ch, q, "m")
    for n in range(1, 4):
        reject_one(ch, q)
        method, props, body = get_wait(ch, q, auto_ack=False)
        assert body == b"m"
        assert deaths(props) == [(q, "rejected", n)]
        ch.basic_nack(method.delivery_tag, requeue=True)
    wait_count(ch, q, 1)


def test_expired_message_cycling_to_its_own_queue_is_dropped(ch, cleanup, uid):
    q = f"{uid}.q"
    queue(ch, cleanup, q, **dlx_args(q), **{"x-message-ttl": 100})
    publish(ch, q, "m")
    wait_count(ch, q, 0)
    # dropped, not looped: the queue stays empty
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        assert message_count(ch, q) == 0
        time.sleep(0.02)


def test_expiry_cycle_through_two_queues_is_dropped(ch, cleanup, uid):
    a, b = f"{uid}.a", f"{uid}.b"
    queue(ch, cleanup, a, **dlx_args(b), **{"x-message-ttl": 100})
    queue(ch, cleanup, b, **dlx_args(a), **{"x-message-ttl": 400})
    publish(ch, a, "m")
    wait_count(ch, b, 1)  # a -> b happens: b is not in the message's x-death yet
    wait_count(ch, b, 0)
    # b -> a would close a cycle of expiries only: dropped
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        assert message_count(ch, a) == 0 and message_count(ch, b) == 0
        time.sleep(0.02)


def test_rejection_then_expiry_in_the_same_queue_is_dropped(ch, cleanup, uid):
    """The cycle check looks at the deaths since the message last died in the
    target queue: a rejection further back does not save it."""
    q = f"{uid}.q"
    queue(ch, cleanup, q, **dlx_args(q), **{"x-message-ttl": 300})
    publish(ch, q, "m")
    reject_one(ch, q)
    method, props, _b = get_wait(ch, q, auto_ack=False)
    assert deaths(props) == [(q, "rejected", 1)]
    ch.basic_nack(method.delivery_tag, requeue=True)
    time.sleep(0.35)
    wait_count(ch, q, 0)  # expired into itself: dropped, not looped
    deadline = time.monotonic() + 0.4
    while time.monotonic() < deadline:
        assert message_count(ch, q) == 0
        time.sleep(0.02)


def test_three_distinct_deaths_order(ch, cleanup, uid):
    """Surprising but RabbitMQ 3.10: with three entries x-death is not
    most-recent-first.  Writing a death regroups the existing entries, which
    reverses them, then puts the new entry first: q1 rejected, q2 expired,
    q3 rejected gives [q3, q1, q2]."""
    q1, q2, q3, q4 = (f"{uid}.q{i}" for i in range(1, 5))
    queue(ch, cleanup, q1, **dlx_args(q2))
    queue(ch, cleanup, q2, **dlx_args(q3), **{"x-message-ttl": 50})
    queue(ch, cleanup, q3, **dlx_args(q4))
    queue(ch, cleanup, q4)
    publish(ch, q1, "m")
    reject_one(ch, q1)
    _m, props, _b = reject_one(ch, q3)
    assert deaths(props) == [(q2, "expired", 1), (q1, "rejected", 1)]
    _m, props, _b = get_wait(ch, q4)
    assert deaths(props) == [(q3, "rejected", 1), (q1, "rejected", 1), (q2, "expired", 1)]
    assert props.headers["x-first-death-queue"] == q1


# --- the wire layout -------------------------------------------------------------

def strip_times(fields, times):
    """Replaces every 'time' timestamp in a typed x-death layout by 'TIME',
    collecting the values."""
    out = []
    for key, tag, value in fields:
        if key == "time" and tag == "T":
            times.append(value)
            value = "TIME"
        elif tag == "A":
            value = [(t, strip_times(v, times) if t == "F" else v) for t, v in value]
        out.append((key, tag, value))
    return out


def test_x_death_wire_layout_first_death(ch, cleanup, uid, monkeypatch):
    capture_raw_properties(monkeypatch)
    dead = queue(ch, cleanup, f"{uid}.dead")
    q = queue(ch, cleanup, f"{uid}.q", **dlx_args(dead))
    publish(ch, q, "m", expiration="60000", headers={"z": 1, "a": "x", "M": ["l"]})
    _m, original, _b = reject_one(ch, q)
    # as published: the client's order and types
    assert typed_headers(original) == [("z", "I", 1), ("a", "S", "x"), ("M", "A", [("S", "l")])]
    _m, props, _b = get_wait(ch, dead)
    times = []
    layout = strip_times(typed_headers(props), times)
    assert layout == [
        ("M", "A", [("S", "l")]),
        ("a", "S", "x"),
        ("x-death", "A", [("F", [
            ("count", "l", 1),
            ("reason", "S", "rejected"),
            ("queue", "S", q),
            ("time", "T", "TIME"),
            ("exchange", "S", ""),
            ("routing-keys", "A", [("S", q)]),
            ("original-expiration", "S", "60000"),
        ])]),
        ("x-first-death-exchange", "S", ""),
        ("x-first-death-queue", "S", q),
        ("x-first-death-reason", "S", "rejected"),
        ("z", "I", 1),
    ]
    assert len(times) == 1 and abs(times[0] - time.time()) < 5


def test_x_death_wire_layout_later_deaths(ch, cleanup, uid, monkeypatch):
    capture_raw_properties(monkeypatch)
    work, retry = f"{uid}.work", f"{uid}.retry"
    queue(ch, cleanup, work, **dlx_args(retry))
    queue(ch, cleanup, retry, **dlx_args(work), **{"x-message-ttl": 300})
    publish(ch, work, "job")
    reject_one(ch, work)
    method, props, _b = get_wait(ch, work, auto_ack=False)
    sorted_expired = lambda n: ("F", [  # noqa: E731 - written when x-death existed: keys sorted
        ("count", "l", n),
        ("exchange", "S", ""),
        ("queue", "S", retry),
        ("reason", "S", "expired"),
        ("routing-keys", "A", [("S", retry)]),
        ("time", "T", "TIME"),
    ])
    first_rejected = ("F", [  # the first death, in the order it was written
        ("count", "l", 1),
        ("reason", "S", "rejected"),
        ("queue", "S", work),
        ("time", "T", "TIME"),
        ("exchange", "S", ""),
        ("routing-keys", "A", [("S", work)]),
    ])
    sorted_rejected = ("F", [
        ("count", "l", 2),
        ("exchange", "S", ""),
        ("queue", "S", work),
        ("reason", "S", "rejected"),
        ("routing-keys", "A", [("S", work)]),
        ("time", "T", "TIME"),
    ])
    first_death_headers = [
        ("x-first-death-exchange", "S", ""),
        ("x-first-death-queue", "S", work),
        ("x-first-death-reason", "S", "rejected"),
    ]
    assert strip_times(typed_headers(props), []) == [
        ("x-death", "A", [sorted_expired(1), first_rejected])] + first_death_headers
    ch.basic_reject(method.delivery_tag, requeue=False)
    _m, props, _b = get_wait(ch, retry, auto_ack=False)  # caught before it expires
    assert strip_times(typed_headers(props), []) == [
        ("x-death", "A", [sorted_rejected, sorted_expired(1)])] + first_death_headers
