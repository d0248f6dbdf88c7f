"""Policies and operator policies: the management API's /api/policies and
/api/operator-policies endpoints, what they do to queues and exchanges as a
pika application observes it, how they show in /api/queues, /api/exchanges and
the definitions, who may set them, and that they survive a restart (checked
against RabbitMQ 3.10's rabbitmq_management, classic queues).

What RabbitMQ 3.10 answers (the assertions below):

* A policy is ``{"vhost", "name", "pattern", "apply-to", "definition",
  "priority"}``; ``apply-to`` defaults to ``"all"``, ``priority`` to ``0``.
  Listings are sorted by priority (ascending), then vhost and name.
  PUT creates with 201 and updates with 204 (also when nothing changed), both
  with an empty body; DELETE is 204.  A missing policy is 404 ``{"error":
  "Object Not Found", "reason": "Not Found"}`` for GET and DELETE, and so is a
  listing of a missing vhost; a PUT into a missing vhost is 404 ``{"error":
  "not_found", "reason": "vhost_not_found"}``.  Operator policies
  (/api/operator-policies) have the same shape and codes and a namespace of
  their own.
* Validation: 400 ``bad_request``, nothing stored.  The reason is ``Validation
  failed\\n\\n`` + one line per failed check, each ending in ``\\n`` (unknown
  keys, then the pattern); among the definition's values only the first bad
  one (in key order) is reported.  Erlang terms are printed as such
  (``<<"abc">>`` for a string); for *policies* the reason is HTML-escaped
  (``&lt;&lt;"abc"&gt;&gt;``), for *operator policies* it is not.  Missing
  ``pattern``/``definition`` is ``[{key_missing,pattern}]`` (not "Validation
  failed"); a body that is not JSON is ``not_json``.
* Operator policies accept only ``message-ttl, expires, max-length,
  max-length-bytes, max-in-memory-length, max-in-memory-bytes,
  delivery-limit``; anything else (``dead-letter-exchange``, ``overflow``,
  ``alternate-exchange``, ...) is refused as "not recognised policy settings".
* Effects: a queue gets the highest-priority matching policy (pattern: an
  unanchored regex on the name; ``apply-to`` queues / exchanges / all) and
  nothing of the others (definitions are not merged).  For numeric limits
  (max-length, message-ttl, expires) the lower of the queue argument and the
  policy wins; for dead-letter-exchange and overflow the queue argument wins;
  an exchange's own ``alternate-exchange`` argument wins over the policy's.
  The highest-priority matching operator policy is merged in: for keys both
  set, the lower value wins.  RabbitMQ applies a new or changed policy to
  existing queues asynchronously, so the tests poll.
* /api/queues/V/Q has ``policy`` (name or ``null``), ``operator_policy`` (name
  or ``null``) and ``effective_policy_definition`` (the merged definition, ``{}``
  without policies).  RabbitMQ puts these keys in only after a statistics
  round (every 5 s), so the tests poll for them.  /api/exchanges/V/X has
  ``policy`` (the name) only when a policy applies; the key is absent otherwise.
* Permissions: listings (/api/policies, /api/policies/V and the operator
  variants) need any management tag and show only vhosts the user has a
  permission entry on (a single other vhost is 401 ``User not authorised to
  access virtual host``); GET of one policy, PUT and DELETE need the
  policymaker (or administrator) tag *and* a permission entry on the vhost,
  else 401 ``User not authorised to access object``; one operator policy (GET,
  PUT, DELETE) needs the administrator tag, else 401 ``Not administrator
  user``.  Users without a management tag get ``Not management user``.
  Administrators need no permission entry on the vhost.
* Definitions: policies are exported under ``policies`` as the API shows them
  (the per-vhost export keeps ``vhost`` in each entry); operator policies go
  into ``parameters`` as ``{"vhost", "component": "operator_policy", "name",
  "value": {"pattern", "definition", "priority", "apply-to"}}``.  Importing
  both creates them (missing priority / apply-to of a policy default to 0 /
  all); the per-vhost import puts policies into the path's vhost.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

import pika
import pika.exceptions
import pytest

from brokerctl import pika_params
from mgmt import Mgmt, poll, q
from queue_helpers import (drain, drain_bodies, get_wait, message_count, publish, try_publish,
                           wait_count, wait_until)

STATS_TIMEOUT = 30.0  # RabbitMQ shows a queue's policy after its next statistics round (5 s)

NOT_FOUND = {"error": "Object Not Found", "reason": "Not Found"}
VHOST_NOT_FOUND = {"error": "not_found", "reason": "vhost_not_found"}
VHOST_REFUSED = {"error": "not_authorised", "reason": "User not authorised to access virtual host"}
OBJECT_REFUSED = {"error": "not_authorised", "reason": "User not authorised to access object"}
NOT_ADMIN = {"error": "not_authorised", "reason": "Not administrator user"}
NOT_MANAGEMENT = {"error": "not_authorised", "reason": "Not management user"}

POLICIES, OPERATOR_POLICIES = "policies", "operator-policies"


def bad_request(reason) -> dict:
    return {"error": "bad_request", "reason": reason}


def failed(*lines: str) -> dict:
    """400 body of a failed validation: one line per failed check."""
    return bad_request("Validation failed\n\n" + "".join(line + "\n" for line in lines))


def escape(text: str) -> str:
    """RabbitMQ HTML-escapes the validation reasons of (user) policies."""
    return text.replace("<", "&lt;").replace(">", "&gt;")


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


def path_of(vhost: str, name: Optional[str] = None, kind: str = POLICIES) -> str:
    path = f"/api/{kind}/{q(vhost)}"
    return path if name is None else f"{path}/{q(name)}"


def policy_body(pattern: str, definition: dict, apply_to: Optional[str] = None,
                priority: Optional[Any] = None) -> dict:
    body: dict = {"pattern": pattern, "definition": definition}
    if apply_to is not None:
        body["apply-to"] = apply_to
    if priority is not None:
        body["priority"] = priority
    return body


def set_policy(mgmt, vhost, name, pattern, definition, apply_to=None, priority=None, kind=POLICIES):
    r = mgmt.put(path_of(vhost, name, kind), policy_body(pattern, definition, apply_to, priority))
    assert r.status in (201, 204), (r.status, r.body)
    return r


def set_operator_policy(mgmt, vhost, name, pattern, definition, apply_to=None, priority=None):
    return set_policy(mgmt, vhost, name, pattern, definition, apply_to, priority, kind=OPERATOR_POLICIES)


def expected(vhost, name, pattern, definition, apply_to="all", priority=0) -> dict:
    return {"vhost": vhost, "name": name, "pattern": pattern, "apply-to": apply_to,
            "definition": definition, "priority": priority}




def queue_entry(mgmt, vhost, name) -> dict:
    r = mgmt.get(f"/api/queues/{q(vhost)}/{q(name)}")
    assert r.status == 200, (r.status, r.body)
    return r.body


def wait_queue_policy(mgmt, vhost, name, policy, operator_policy=None) -> dict:
    """Polls /api/queues/V/Q until it shows these policy names (None: no
    policy); returns the entry.  This is also how the tests wait for RabbitMQ
    to apply a policy to an existing queue."""
    return poll(lambda: queue_entry(mgmt, vhost, name),
                lambda e: "policy" in e and (e["policy"], e["operator_policy"]) == (policy, operator_policy),
                what=f"queue {name!r} to show policy {policy!r} / operator policy {operator_policy!r}")


def exchange_entry(mgmt, vhost, name) -> dict:
    r = mgmt.get(f"/api/exchanges/{q(vhost)}/{q(name)}")
    assert r.status == 200, (r.status, r.body)
    return r.body


def wait_exchange_policy(mgmt, vhost, name, policy) -> dict:
    return poll(lambda: exchange_entry(mgmt, vhost, name), lambda e: e.get("policy") == policy,
                what=f"exchange {name!r} to show policy {policy!r}")


def wait_queue_gone(mgmt, vhost, name, timeout=5.0) -> float:
    """Polls the management API (which does not count as using the queue)
    until the queue is gone; returns when (monotonic)."""
    wait_until(lambda: mgmt.get(f"/api/queues/{q(vhost)}/{q(name)}").status == 404, timeout,
               what=f"queue {name!r} to be deleted")
    return time.monotonic()


def as_user(mgmt, user) -> Mgmt:
    return mgmt.as_user(user.name, user.password)


@pytest.fixture
def vconn(pika_connect, vhost):
    """The admin's pika connection to the test's vhost."""
    return pika_connect(virtual_host=vhost)


@pytest.fixture
def vch(vconn):
    """A confirm-mode channel in the test's vhost."""
    channel = vconn.channel()
    channel.confirm_delivery()
    return channel


def publish_n(ch, queue, n, prefix="m"):
    for i in range(n):
        publish(ch, queue, f"{prefix}{i}")


def still_there_after(ch, queue, count, seconds):
    """The queue holds ``count`` messages now and ``seconds`` later (nothing expired)."""
    assert message_count(ch, queue) == count
    time.sleep(seconds)
    return message_count(ch, queue) == count


# --- the API: shapes, codes ------------------------------------------------------------

@pytest.mark.parametrize("kind", [POLICIES, OPERATOR_POLICIES])
def test_policy_lifecycle_and_defaults(mgmt, vhost, kind):
    path = path_of(vhost, "p1", kind)
    assert_status(mgmt.get(path_of(vhost, kind=kind)), 200, [])
    assert_status(mgmt.get(path), 404, NOT_FOUND)

    assert_empty(mgmt.put(path, {"pattern": "^a", "definition": {"message-ttl": 1000}}), 201)
    result = mgmt.get(path)
    assert_status(result, 200, expected(vhost, "p1", "^a", {"message-ttl": 1000}))
    # the same PUT again, and a changed one: 204
    assert_empty(mgmt.put(path, {"pattern": "^a", "definition": {"message-ttl": 1000}}), 204)
    assert_empty(mgmt.put(path, policy_body("^b", {"max-length": 5, "expires": 60000}, "queues", 7)), 204)
    changed = expected(vhost, "p1", "^b", {"max-length": 5, "expires": 60000}, "queues", 7)
    assert_status(mgmt.get(path), 200, changed)
    assert_empty(mgmt.put(path_of(vhost, "p2", kind), policy_body("x", {"max-length": 1}, "exchanges", -3)), 201)
    second = expected(vhost, "p2", "x", {"max-length": 1}, "exchanges", -3)

    assert_empty(mgmt.put(path_of(vhost, "a3", kind), policy_body("y", {"max-length": 2}, None, 7)), 201)
    third = expected(vhost, "a3", "y", {"max-length": 2}, "all", 7)

    # listings are sorted by priority (ascending), then vhost and name
    assert_status(mgmt.get(path_of(vhost, kind=kind)), 200, [second, third, changed])
    everywhere = [p for p in mgmt.get(f"/api/{kind}").body if p["vhost"] == vhost]
    assert everywhere == [second, third, changed]

    assert_empty(mgmt.delete(path), 204)
    assert_status(mgmt.get(path), 404, NOT_FOUND)
    assert_status(mgmt.delete(path), 404, NOT_FOUND)
    assert_status(mgmt.get(path_of(vhost, kind=kind)), 200, [second, third])
    assert_empty(mgmt.delete(path_of(vhost, "p2", kind)), 204)
    assert_empty(mgmt.delete(path_of(vhost, "a3", kind)), 204)
    assert_status(mgmt.get(path_of(vhost, kind=kind)), 200, [])


def test_policies_and_operator_policies_are_separate(mgmt, vhost):
    set_policy(mgmt, vhost, "same", "^a", {"max-length": 1})
    assert_status(mgmt.get(path_of(vhost, "same", OPERATOR_POLICIES)), 404, NOT_FOUND)
    assert_empty(mgmt.put(path_of(vhost, "same", OPERATOR_POLICIES),
                          policy_body("^b", {"max-length": 2})), 201)
    assert mgmt.get(path_of(vhost, kind=POLICIES)).body == [expected(vhost, "same", "^a", {"max-length": 1})]
    assert mgmt.get(path_of(vhost, kind=OPERATOR_POLICIES)).body == \
        [expected(vhost, "same", "^b", {"max-length": 2})]
    assert_empty(mgmt.delete(path_of(vhost, "same", OPERATOR_POLICIES)), 204)
    assert mgmt.get(path_of(vhost, "same")).status == 200


@pytest.mark.parametrize("kind", [POLICIES, OPERATOR_POLICIES])
def test_missing_vhost(mgmt, uid, kind):
    missing = f"{uid}.missing"
    assert_status(mgmt.get(path_of(missing, kind=kind)), 404, NOT_FOUND)
    assert_status(mgmt.get(path_of(missing, "p", kind)), 404, NOT_FOUND)
    assert_status(mgmt.put(path_of(missing, "p", kind), policy_body("^a", {"max-length": 1})), 404,
                  VHOST_NOT_FOUND)
    assert_status(mgmt.delete(path_of(missing, "p", kind)), 404, NOT_FOUND)


# --- validation ------------------------------------------------------------------------

# (body, reason lines) -- reasons before escaping
INVALID = [
    ({"pattern": "^a", "definition": {"bogus": 1}},
     ['[{<<"bogus">>,1}] are not recognised policy settings']),
    ({"pattern": "^a", "definition": {"message-ttl": 1000, "bogus": 1, "other": "x"}},
     ['[{<<"bogus">>,1},{<<"other">>,<<"x">>}] are not recognised policy settings']),
    ({"pattern": "^a", "definition": {"message-ttl": "abc"}}, ['<<"abc">> is not a valid message TTL']),
    ({"pattern": "^a", "definition": {"message-ttl": -1}}, ["-1 is not a valid message TTL"]),
    ({"pattern": "^a", "definition": {"message-ttl": 1.5}}, ["1.5 is not a valid message TTL"]),
    ({"pattern": "^a", "definition": {"max-length": -1}}, ["-1 is not a valid maximum length"]),
    ({"pattern": "^a", "definition": {"max-length": "5"}}, ['<<"5">> is not a valid maximum length']),
    ({"pattern": "^a", "definition": {"max-length": True}}, ["true is not a valid maximum length"]),
    ({"pattern": "^a", "definition": {"max-length-bytes": -1}}, ["-1 is not a valid maximum length in bytes"]),
    ({"pattern": "^a", "definition": {"expires": 0}}, ["0 is not a valid queue expiry"]),
    ({"pattern": "^a", "definition": {"expires": -5}}, ["-5 is not a valid queue expiry"]),
    # only the first bad value, in key order (max-length < message-ttl)
    ({"pattern": "^a", "definition": {"message-ttl": -1, "max-length": -1}}, ["-1 is not a valid maximum length"]),
    ({"pattern": "^a", "definition": {"overflow": "bogus"}}, ['<<"bogus">> is not a valid overflow value']),
    ({"pattern": "^a", "definition": {"dead-letter-exchange": 5}}, ["5 is not a valid dead letter exchange name"]),
    ({"pattern": "^a", "definition": {"dead-letter-exchange": "x", "dead-letter-routing-key": 5}},
     ["5 is not a valid dead letter routing key"]),
    ({"pattern": "^a", "definition": {"alternate-exchange": 5}}, ["5 is not a valid alternate exchange name"]),
    ({"pattern": "^a", "definition": {"queue-mode": "bogus"}}, ['<<"bogus">> is not a valid queue-mode value']),
    ({"pattern": "^a", "definition": {}}, ["no policy provided"]),
    ({"pattern": "^a", "apply-to": "bogus", "definition": {"max-length": 1}},
     ["apply-to 'bogus' unrecognised; should be 'queues', 'exchanges' or 'all'"]),
    ({"pattern": "^a", "definition": {"max-length": 1}, "priority": "x"},
     ['priority should be a number, actually was <<"x">>']),
    ({"pattern": "^a", "definition": {"max-length": 1}, "priority": "5"},
     ['priority should be a number, actually was <<"5">>']),
    ({"pattern": "^a", "definition": {"max-length": 1}, "priority": None},
     ["priority should be a number, actually was null"]),
    ({"pattern": 5, "definition": {"max-length": 1}}, ["pattern should be a binary but was 5"]),
    ({"pattern": "(a", "definition": {"max-length": 1}},
     ['pattern should be regular expression but is invalid: {"missing )",2}']),
    # several failed checks: one line each
    ({"pattern": "(a", "definition": {"bogus": 1}},
     ['[{<<"bogus">>,1}] are not recognised policy settings',
      'pattern should be regular expression but is invalid: {"missing )",2}']),
]
INVALID_IDS = ["unknown-key", "unknown-keys", "ttl-string", "ttl-negative", "ttl-float", "max-length-negative",
               "max-length-string", "max-length-bool", "max-length-bytes-negative", "expires-zero",
               "expires-negative", "first-bad-value", "overflow", "dlx-not-string", "dlrk-not-string",
               "ae-not-string", "queue-mode", "empty-definition", "apply-to", "priority-string",
               "priority-numeric-string", "priority-null", "pattern-not-string", "pattern-regex",
               "two-checks"]


@pytest.mark.parametrize("body,lines", INVALID, ids=INVALID_IDS)
def test_invalid_policy(mgmt, vhost, body, lines):
    path = path_of(vhost, "bad")
    assert_status(mgmt.put(path, body), 400, failed(*(escape(line) for line in lines)))
    assert_status(mgmt.get(path), 404, NOT_FOUND)
    # an existing policy is left as it was
    set_policy(mgmt, vhost, "bad", "^keep", {"max-length": 9})
    assert_status(mgmt.put(path, body), 400, failed(*(escape(line) for line in lines)))
    assert mgmt.get(path).body == expected(vhost, "bad", "^keep", {"max-length": 9})


@pytest.mark.parametrize("body,lines", [
    ({"pattern": "^a", "definition": {"bogus": 1}}, ['[{<<"bogus">>,1}] are not recognised policy settings']),
    ({"pattern": "^a", "definition": {"message-ttl": "abc"}}, ['<<"abc">> is not a valid message TTL']),
    ({"pattern": "^a", "definition": {"max-length": -1}}, ["-1 is not a valid maximum length"]),
    ({"pattern": "^a", "definition": {}}, ["no policy provided"]),
    ({"pattern": "^a", "apply-to": "bogus", "definition": {"max-length": 1}},
     ["apply-to 'bogus' unrecognised; should be 'queues', 'exchanges' or 'all'"]),
    ({"pattern": "^a", "definition": {"max-length": 1}, "priority": "x"},
     ['priority should be a number, actually was <<"x">>']),
    ({"pattern": "(a", "definition": {"max-length": 1}},
     ['pattern should be regular expression but is invalid: {"missing )",2}']),
], ids=["unknown-key", "ttl-string", "max-length-negative", "empty-definition", "apply-to", "priority",
        "pattern-regex"])
def test_invalid_operator_policy_reasons_are_not_escaped(mgmt, vhost, body, lines):
    path = path_of(vhost, "bad", OPERATOR_POLICIES)
    assert_status(mgmt.put(path, body), 400, failed(*lines))
    assert_status(mgmt.get(path), 404, NOT_FOUND)


@pytest.mark.parametrize("kind", [POLICIES, OPERATOR_POLICIES])
def test_malformed_policy_bodies(mgmt, vhost, kind):
    path = path_of(vhost, "bad", kind)
    assert_status(mgmt.put(path, {"pattern": "^a"}), 400, bad_request("[{key_missing,definition}]"))
    assert_status(mgmt.put(path, {"definition": {"max-length": 1}}), 400, bad_request("[{key_missing,pattern}]"))
    assert_status(mgmt.put(path, {}), 400, bad_request("[{key_missing,pattern},{key_missing,definition}]"))
    assert_status(mgmt.request_raw("PUT", path, data=b"not json"), 400, bad_request("not_json"))
    # an invalid regex: PCRE's message (pretty-printed by Erlang when long)
    result = mgmt.put(path, {"pattern": "[", "definition": {"max-length": 1}})
    assert result.status == 400 and result.body["error"] == "bad_request"
    assert result.body["reason"].startswith(
        "Validation failed\n\npattern should be regular expression but is invalid: {")
    assert "missing terminating ] for character class" in result.body["reason"]
    assert_status(mgmt.get(path), 404, NOT_FOUND)


def test_accepted_definitions(mgmt, vhost):
    """Boundary values RabbitMQ accepts, and other body keys being ignored."""
    path = path_of(vhost, "ok")
    for definition in ({"max-length": 0}, {"message-ttl": 0}, {"expires": 1}, {"max-length-bytes": 0},
                       {"dead-letter-routing-key": "k"}, {"overflow": "drop-head"}, {"overflow": "reject-publish"},
                       {"overflow": "reject-publish-dlx"}, {"queue-mode": "lazy"}, {"queue-mode": "default"},
                       {"alternate-exchange": "ae"}, {"dead-letter-exchange": ""}):
        assert mgmt.put(path, {"pattern": "", "definition": definition}).status in (201, 204), definition
        assert mgmt.get(path).body == expected(vhost, "ok", "", definition)
    assert_empty(mgmt.put(path, {"pattern": "^a", "definition": {"max-length": 1}, "priority": -3,
                                 "vhost": "elsewhere", "name": "other", "extra": True}), 204)
    assert mgmt.get(path).body == expected(vhost, "ok", "^a", {"max-length": 1}, priority=-3)
    assert [p["name"] for p in mgmt.get(path_of(vhost)).body] == ["ok"]


POLICY_KEYS = {  # key: a valid value
    "message-ttl": 5, "expires": 5, "max-length": 5, "max-length-bytes": 5, "max-in-memory-length": 5,
    "max-in-memory-bytes": 5, "delivery-limit": 5, "dead-letter-exchange": "x", "dead-letter-routing-key": "x",
    "alternate-exchange": "x", "overflow": "reject-publish", "queue-mode": "lazy",
    "queue-master-locator": "min-masters", "queue-version": 2,
}
OPERATOR_POLICY_KEYS = {"message-ttl", "expires", "max-length", "max-length-bytes", "max-in-memory-length",
                        "max-in-memory-bytes", "delivery-limit"}


def test_keys_accepted_by_policies_and_operator_policies(mgmt, vhost):
    for key, value in POLICY_KEYS.items():
        body = {"pattern": "^never$", "definition": {key: value}}
        r = mgmt.put(path_of(vhost, key), body)
        assert r.status == 201, (key, r.status, r.body)
        r = mgmt.put(path_of(vhost, key, OPERATOR_POLICIES), body)
        if key in OPERATOR_POLICY_KEYS:
            assert r.status == 201, (key, r.status, r.body)
        else:
            value_term = f'<<"{value}">>' if isinstance(value, str) else str(value)
            assert_status(r, 400, failed(f'[{{<<"{key}">>,{value_term}}}] are not recognised policy settings'))
    assert sorted(p["name"] for p in mgmt.get(path_of(vhost, kind=OPERATOR_POLICIES)).body) == \
        sorted(OPERATOR_POLICY_KEYS)
    # keys RabbitMQ 3.10 does not know (without plugins): refused by both
    for key, value, term in (("consumer-timeout", 5, "5"), ("single-active-consumer", True, "true"),
                             ("federation-upstream", "u", '<<"u">>'), ("x-message-ttl", 5, "5")):
        line = f'[{{<<"{key}">>,{term}}}] are not recognised policy settings'
        body = {"pattern": "^never$", "definition": {key: value}}
        assert_status(mgmt.put(path_of(vhost, "unknown"), body), 400, failed(escape(line)))
        assert_status(mgmt.put(path_of(vhost, "unknown", OPERATOR_POLICIES), body), 400, failed(line))


def test_operator_policy_refuses_dead_letter_exchange(mgmt, vhost):
    body = {"pattern": "^a", "definition": {"dead-letter-exchange": "dlx", "max-length": 3}}
    assert_status(mgmt.put(path_of(vhost, "op", OPERATOR_POLICIES), body), 400,
                  failed('[{<<"dead-letter-exchange">>,<<"dlx">>}] are not recognised policy settings'))
    assert mgmt.get(path_of(vhost, "op", OPERATOR_POLICIES)).status == 404


# --- effects on queues ------------------------------------------------------------------

def test_message_ttl_policy_on_a_queue_declared_after_it(mgmt, vhost, vch):
    set_policy(mgmt, vhost, "ttl", "^ttl\\.", {"message-ttl": 300})
    vch.queue_declare("ttl.after")
    vch.queue_declare("other")
    t0 = time.monotonic()
    publish_n(vch, "ttl.after", 3)
    publish_n(vch, "other", 3)
    assert message_count(vch, "ttl.after") == 3
    gone = wait_count(vch, "ttl.after", 0)
    assert gone - t0 >= 0.3
    assert message_count(vch, "other") == 3
    entry = wait_queue_policy(mgmt, vhost, "ttl.after", "ttl")
    assert entry["effective_policy_definition"] == {"message-ttl": 300}
    assert entry["arguments"] == {}  # a policy is not a queue argument


def test_message_ttl_policy_on_a_queue_declared_before_it(mgmt, vhost, vch):
    vch.queue_declare("ttl.before")
    publish(vch, "ttl.before", "old")
    set_policy(mgmt, vhost, "ttl", "^ttl\\.", {"message-ttl": 300})
    wait_queue_policy(mgmt, vhost, "ttl.before", "ttl")
    # a message enqueued before the policy keeps its (lack of) expiry
    assert still_there_after(vch, "ttl.before", 1, 0.5)
    assert drain_bodies(vch, "ttl.before") == ["old"]
    t0 = time.monotonic()
    publish_n(vch, "ttl.before", 3)
    assert wait_count(vch, "ttl.before", 0) - t0 >= 0.3


def test_max_length_policy_drops_the_head(mgmt, vhost, vch):
    dead = "dead"
    vch.queue_declare(dead)
    set_policy(mgmt, vhost, "len", "^limited$",
               {"max-length": 2, "dead-letter-exchange": "", "dead-letter-routing-key": dead})
    vch.queue_declare("limited")
    results = [try_publish(vch, "limited", f"m{i}") for i in range(5)]
    assert results == ["ack"] * 5
    assert message_count(vch, "limited") == 2
    wait_count(vch, dead, 3)
    deaths = [(b.decode(), p.headers["x-death"][0]["reason"]) for _m, p, b in drain(vch, dead)]
    assert deaths == [("m0", "maxlen"), ("m1", "maxlen"), ("m2", "maxlen")]
    assert drain_bodies(vch, "limited") == ["m3", "m4"]


def test_max_length_policy_on_an_existing_queue(mgmt, vhost, vch):
    vch.queue_declare("limited")
    publish_n(vch, "limited", 4, "old")
    set_policy(mgmt, vhost, "len", "^limited$", {"max-length": 2})
    # applying the limit trims the queue from the head
    wait_count(vch, "limited", 2, timeout=STATS_TIMEOUT)
    wait_queue_policy(mgmt, vhost, "limited", "len")
    publish(vch, "limited", "new")
    assert drain_bodies(vch, "limited") == ["old3", "new"]


@pytest.mark.parametrize("argument,policy", [(5, 2), (2, 5)], ids=["policy-lower", "argument-lower"])
def test_lower_max_length_of_argument_and_policy_wins(mgmt, vhost, vch, argument, policy):
    set_policy(mgmt, vhost, "len", "^limited$", {"max-length": policy})
    vch.queue_declare("limited", arguments={"x-max-length": argument})
    publish_n(vch, "limited", 6)
    assert message_count(vch, "limited") == 2
    assert drain_bodies(vch, "limited") == ["m4", "m5"]
    entry = wait_queue_policy(mgmt, vhost, "limited", "len")
    # the effective definition is the policy's alone (arguments are not in it)
    assert entry["effective_policy_definition"] == {"max-length": policy}
    assert entry["arguments"] == {"x-max-length": argument}


@pytest.mark.parametrize("argument,policy", [(300, 60000), (60000, 300)], ids=["argument-lower", "policy-lower"])
def test_lower_message_ttl_of_argument_and_policy_wins(mgmt, vhost, vch, argument, policy):
    set_policy(mgmt, vhost, "ttl", "^q$", {"message-ttl": policy})
    vch.queue_declare("q", arguments={"x-message-ttl": argument})
    t0 = time.monotonic()
    publish(vch, "q", "m")
    gone = wait_count(vch, "q", 0)
    assert 0.3 <= gone - t0 < 10


@pytest.mark.parametrize("argument,policy,outcome", [
    (None, "reject-publish", "nack"),
    ("reject-publish", "drop-head", "nack"),
    ("drop-head", "reject-publish", "drop"),
], ids=["policy-only", "argument-reject-wins", "argument-drop-head-wins"])
def test_queue_overflow_argument_wins_over_policy(mgmt, vhost, vch, argument, policy, outcome):
    set_policy(mgmt, vhost, "len", "^limited$", {"max-length": 1, "overflow": policy})
    vch.queue_declare("limited", arguments={"x-overflow": argument} if argument else None)
    assert try_publish(vch, "limited", "first") == "ack"
    second = try_publish(vch, "limited", "second")
    if outcome == "nack":
        assert second == "nack"
        assert drain_bodies(vch, "limited") == ["first"]
    else:
        assert second == "ack"
        assert drain_bodies(vch, "limited") == ["second"]


def test_policy_dead_letters_expired_messages(mgmt, vhost, vch):
    vch.queue_declare("dead")
    set_policy(mgmt, vhost, "dlx", "^src$",
               {"message-ttl": 200, "dead-letter-exchange": "", "dead-letter-routing-key": "dead"})
    vch.queue_declare("src")
    publish(vch, "src", "m", headers={"h": 1})
    _m, props, body = get_wait(vch, "dead")
    assert body == b"m" and props.headers["h"] == 1
    assert [(d["reason"], d["queue"], d["exchange"], d["routing-keys"]) for d in props.headers["x-death"]] == \
        [("expired", "src", "", ["src"])]
    assert message_count(vch, "src") == 0


def test_queue_dead_letter_exchange_argument_wins_over_policy(mgmt, vhost, vch):
    for name in ("arg", "pol"):
        vch.exchange_declare(f"{name}.dlx", "fanout")
        vch.queue_declare(f"{name}.dead")
        vch.queue_bind(f"{name}.dead", f"{name}.dlx")
    set_policy(mgmt, vhost, "dlx", "^src", {"message-ttl": 200, "dead-letter-exchange": "pol.dlx"})
    vch.queue_declare("src.arg", arguments={"x-dead-letter-exchange": "arg.dlx"})
    vch.queue_declare("src.pol")
    publish(vch, "src.arg", "to-arg")
    publish(vch, "src.pol", "to-pol")
    wait_count(vch, "arg.dead", 1)
    wait_count(vch, "pol.dead", 1)
    assert drain_bodies(vch, "arg.dead") == ["to-arg"]
    assert drain_bodies(vch, "pol.dead") == ["to-pol"]


def test_expires_policy_deletes_an_unused_queue(mgmt, vhost, vch):
    set_policy(mgmt, vhost, "exp", "^tmp\\.", {"expires": 400})
    t0 = time.monotonic()
    vch.queue_declare("tmp.a")
    publish(vch, "tmp.a", "m")
    vch.queue_declare("kept")
    gone = wait_queue_gone(mgmt, vhost, "tmp.a")
    assert gone - t0 >= 0.4
    assert mgmt.get(f"/api/queues/{q(vhost)}/kept").status == 200


def test_expires_policy_on_an_existing_queue(mgmt, vhost, vch):
    vch.queue_declare("tmp.b")
    set_policy(mgmt, vhost, "exp", "^tmp\\.", {"expires": 300})
    wait_queue_gone(mgmt, vhost, "tmp.b", timeout=STATS_TIMEOUT)


def test_policy_applying_to_exchanges_leaves_queues_alone(mgmt, vhost, vch):
    set_policy(mgmt, vhost, "xonly", "^same$", {"max-length": 1}, apply_to="exchanges")
    vch.queue_declare("same")
    vch.exchange_declare("same", "fanout")
    publish_n(vch, "same", 3)
    assert message_count(vch, "same") == 3
    assert wait_queue_policy(mgmt, vhost, "same", None)["effective_policy_definition"] == {}
    assert exchange_entry(mgmt, vhost, "same")["policy"] == "xonly"


def test_policy_applying_to_queues_leaves_exchanges_alone(mgmt, vhost, vch):
    vch.exchange_declare("ae", "fanout")
    vch.queue_declare("ae.q")
    vch.queue_bind("ae.q", "ae")
    set_policy(mgmt, vhost, "qonly", "^x$", {"alternate-exchange": "ae"}, apply_to="queues")
    vch.exchange_declare("x", "direct")
    assert "policy" not in exchange_entry(mgmt, vhost, "x")
    with pytest.raises(pika.exceptions.UnroutableError):
        vch.basic_publish("x", "nowhere", b"m", mandatory=True)
    assert message_count(vch, "ae.q") == 0


def test_highest_priority_policy_wins_and_definitions_are_not_merged(mgmt, vhost, vch):
    set_policy(mgmt, vhost, "low", "^q", {"max-length": 1, "message-ttl": 200}, priority=1)
    set_policy(mgmt, vhost, "high", "^q\\.", {"max-length": 3}, priority=2)
    vch.queue_declare("q.a")
    publish_n(vch, "q.a", 5)
    # high's max-length, and nothing of low's message-ttl
    assert still_there_after(vch, "q.a", 3, 0.5)
    entry = wait_queue_policy(mgmt, vhost, "q.a", "high")
    assert entry["effective_policy_definition"] == {"max-length": 3}
    # raising low's priority makes it the queue's policy
    set_policy(mgmt, vhost, "low", "^q", {"max-length": 1, "message-ttl": 200}, priority=5)
    entry = wait_queue_policy(mgmt, vhost, "q.a", "low")
    assert entry["effective_policy_definition"] == {"max-length": 1, "message-ttl": 200}
    publish(vch, "q.a", "new")
    wait_count(vch, "q.a", 0)


def test_pattern_is_an_unanchored_regex(mgmt, vhost, vch):
    set_policy(mgmt, vhost, "mid", "mid+le", {"max-length": 1})
    for name in ("a.middle.b", "middle", "x.midddle", "mile", "MIDDLE"):
        vch.queue_declare(name)
        publish_n(vch, name, 3)
    assert {name: message_count(vch, name) for name in ("a.middle.b", "middle", "x.midddle", "mile", "MIDDLE")} \
        == {"a.middle.b": 1, "middle": 1, "x.midddle": 1, "mile": 3, "MIDDLE": 3}


def test_deleting_the_policy_ends_its_effect(mgmt, vhost, vch):
    set_policy(mgmt, vhost, "ttl", "^q$", {"message-ttl": 200})
    vch.queue_declare("q")
    publish(vch, "q", "m")
    wait_count(vch, "q", 0)
    wait_queue_policy(mgmt, vhost, "q", "ttl")
    assert_empty(mgmt.delete(path_of(vhost, "ttl")), 204)
    entry = wait_queue_policy(mgmt, vhost, "q", None)
    assert entry["effective_policy_definition"] == {}
    publish(vch, "q", "kept")
    assert still_there_after(vch, "q", 1, 0.5)


def test_alternate_exchange_policy(mgmt, vhost, vch):
    for name in ("ae1", "ae2"):
        vch.exchange_declare(name, "fanout")
        vch.queue_declare(f"{name}.q")
        vch.queue_bind(f"{name}.q", name)
    vch.exchange_declare("x.before", "direct")
    set_policy(mgmt, vhost, "ae", "^x\\.", {"alternate-exchange": "ae1"})
    vch.exchange_declare("x.after", "direct")
    vch.exchange_declare("x.own", "direct", arguments={"alternate-exchange": "ae2"})
    wait_exchange_policy(mgmt, vhost, "x.before", "ae")
    for x in ("x.before", "x.after", "x.own"):
        vch.basic_publish(x, "nowhere", x.encode(), mandatory=True)  # routed to an AE: not returned
    wait_count(vch, "ae1.q", 2)
    assert sorted(drain_bodies(vch, "ae1.q")) == ["x.after", "x.before"]
    # the exchange's own alternate-exchange argument wins over the policy's
    assert drain_bodies(vch, "ae2.q") == ["x.own"]
    assert exchange_entry(mgmt, vhost, "x.own")["policy"] == "ae"
    # deleting the policy: unroutable again
    assert_empty(mgmt.delete(path_of(vhost, "ae")), 204)
    poll(lambda: exchange_entry(mgmt, vhost, "x.after"), lambda e: "policy" not in e,
         what="x.after to lose its policy")
    with pytest.raises(pika.exceptions.UnroutableError):
        vch.basic_publish("x.after", "nowhere", b"m", mandatory=True)


# --- how the management API shows them ----------------------------------------------------

def test_queue_and_exchange_entries_without_policies(mgmt, vhost, vch):
    vch.queue_declare("q")
    vch.exchange_declare("x", "topic")
    entry = wait_queue_policy(mgmt, vhost, "q", None)
    assert entry["operator_policy"] is None
    assert entry["effective_policy_definition"] == {}
    listed = next(e for e in poll(lambda: mgmt.get(f"/api/queues/{q(vhost)}").body,
                                  lambda es: "policy" in es[0], what="policy keys in the listing"))
    assert (listed["policy"], listed["operator_policy"], listed["effective_policy_definition"]) == (None, None, {})
    assert "policy" not in exchange_entry(mgmt, vhost, "x")
    assert not [e for e in mgmt.get(f"/api/exchanges/{q(vhost)}").body if "policy" in e]


def test_queue_and_exchange_entries_with_policies(mgmt, vhost, vch):
    set_policy(mgmt, vhost, "pol", "^obj$", {"max-length": 7, "message-ttl": 60000})
    set_operator_policy(mgmt, vhost, "op", "^obj$", {"max-length": 9, "expires": 100000})
    vch.queue_declare("obj")
    vch.exchange_declare("obj", "fanout")
    entry = wait_queue_policy(mgmt, vhost, "obj", "pol", "op")
    assert entry["effective_policy_definition"] == {"max-length": 7, "message-ttl": 60000, "expires": 100000}
    listed = next(e for e in mgmt.get(f"/api/queues/{q(vhost)}").body if e["name"] == "obj")
    assert (listed["policy"], listed["operator_policy"]) == ("pol", "op")
    assert listed["effective_policy_definition"] == entry["effective_policy_definition"]
    # exchanges show the (user) policy only
    x = exchange_entry(mgmt, vhost, "obj")
    assert x["policy"] == "pol" and "operator_policy" not in x
    assert next(e for e in mgmt.get(f"/api/exchanges/{q(vhost)}").body if e["name"] == "obj")["policy"] == "pol"


# --- operator policies ----------------------------------------------------------------------

def test_operator_policy_alone(mgmt, vhost, vch):
    set_operator_policy(mgmt, vhost, "op", "^q$", {"max-length": 2})
    vch.queue_declare("q")
    publish_n(vch, "q", 5)
    assert drain_bodies(vch, "q") == ["m3", "m4"]
    entry = wait_queue_policy(mgmt, vhost, "q", None, "op")
    assert entry["effective_policy_definition"] == {"max-length": 2}


@pytest.mark.parametrize("policy,operator", [
    ({"message-ttl": 60000, "max-length": 2}, {"message-ttl": 300, "max-length": 9}),
    ({"message-ttl": 300, "max-length": 9}, {"message-ttl": 60000, "max-length": 2}),
], ids=["operator-ttl-lower", "policy-ttl-lower"])
def test_operator_policy_merges_lower_values(mgmt, vhost, vch, policy, operator):
    set_policy(mgmt, vhost, "pol", "^q$", policy)
    set_operator_policy(mgmt, vhost, "op", "^q$", operator)
    vch.queue_declare("q")
    t0 = time.monotonic()
    publish_n(vch, "q", 5)
    assert message_count(vch, "q") == 2
    gone = wait_count(vch, "q", 0)
    assert gone - t0 >= 0.3
    entry = wait_queue_policy(mgmt, vhost, "q", "pol", "op")
    assert entry["effective_policy_definition"] == {"message-ttl": 300, "max-length": 2}


def test_operator_policy_on_an_existing_queue_and_queue_arguments(mgmt, vhost, vch):
    queues = {"q.arg-lower": {"x-max-length": 1}, "q.op-lower": {"x-max-length": 5}, "q.plain": None}
    for name, args in queues.items():
        vch.queue_declare(name, arguments=args)
    set_operator_policy(mgmt, vhost, "op", "^q\\.", {"max-length": 3})
    for name in queues:
        wait_queue_policy(mgmt, vhost, name, None, "op")
        publish_n(vch, name, 6)
    # the lower of the queue argument and the operator policy
    assert {name: message_count(vch, name) for name in queues} == {"q.arg-lower": 1, "q.op-lower": 3, "q.plain": 3}


def test_highest_priority_operator_policy_applies(mgmt, vhost, vch):
    set_operator_policy(mgmt, vhost, "op.low", "^q", {"max-length": 1, "message-ttl": 200}, priority=0)
    set_operator_policy(mgmt, vhost, "op.high", "^q", {"max-length": 3}, priority=10)
    vch.queue_declare("q")
    publish_n(vch, "q", 5)
    assert still_there_after(vch, "q", 3, 0.5)
    entry = wait_queue_policy(mgmt, vhost, "q", None, "op.high")
    assert entry["effective_policy_definition"] == {"max-length": 3}


def test_operator_policy_applying_to_exchanges_leaves_queues_alone(mgmt, vhost, vch):
    set_operator_policy(mgmt, vhost, "op", "^q$", {"max-length": 1}, apply_to="exchanges")
    vch.queue_declare("q")
    publish_n(vch, "q", 3)
    assert message_count(vch, "q") == 3
    assert wait_queue_policy(mgmt, vhost, "q", None)["effective_policy_definition"] == {}


# --- permissions ----------------------------------------------------------------------------

def check_access(api, vhost, own, seen_policies, seen_operator_policies, *, listing, one, write, op_one):
    """``listing``: expected (status, body) of /api/policies/V (and of the
    operator variant); ``one``/``write``: status and body of GET / PUT+DELETE
    of one policy; ``op_one`` of one operator policy.  ``own``: a name for the
    user's own writes."""
    status, body = listing
    r = api.get(path_of(vhost))
    assert_status(r, status, seen_policies if body == "all" else body)
    r = api.get(path_of(vhost, kind=OPERATOR_POLICIES))
    assert_status(r, status, seen_operator_policies if body == "all" else body)
    # the listings of every vhost: only the vhosts the user may see
    for kind, seen in ((POLICIES, seen_policies), (OPERATOR_POLICIES, seen_operator_policies)):
        everywhere = api.get(f"/api/{kind}")
        if body == NOT_MANAGEMENT:
            assert_status(everywhere, 401, NOT_MANAGEMENT)
        else:
            assert everywhere.status == 200
            assert [p for p in everywhere.body if p["vhost"] == vhost] == (seen if status == 200 else [])

    status, body = one
    assert_status(api.get(path_of(vhost, "p")), status, seen_policies[0] if body == "it" else body)
    status, body = write
    new = policy_body("^never$", {"max-length": 1})
    if status == 200:
        assert_empty(api.put(path_of(vhost, own), new), 201)
        assert_empty(api.put(path_of(vhost, own), new), 204)
        assert_empty(api.delete(path_of(vhost, own)), 204)
    else:
        assert_status(api.put(path_of(vhost, own), new), status, body)
        assert_status(api.delete(path_of(vhost, "p")), status, body)
    status, body = op_one
    if status == 200:
        assert_status(api.get(path_of(vhost, "op", OPERATOR_POLICIES)), 200, seen_operator_policies[0])
        assert_empty(api.put(path_of(vhost, own, OPERATOR_POLICIES), new), 201)
        assert_empty(api.delete(path_of(vhost, own, OPERATOR_POLICIES)), 204)
    else:
        assert_status(api.get(path_of(vhost, "op", OPERATOR_POLICIES)), status, body)
        assert_status(api.put(path_of(vhost, own, OPERATOR_POLICIES), new), status, body)
        assert_status(api.delete(path_of(vhost, "op", OPERATOR_POLICIES)), status, body)


OK = (200, None)
ACCESS = {  # tag: (with a permission entry on the vhost, without one)
    "": (dict(listing=(401, NOT_MANAGEMENT), one=(401, NOT_MANAGEMENT), write=(401, NOT_MANAGEMENT),
              op_one=(401, NOT_MANAGEMENT)),) * 2,
    "management": (dict(listing=(200, "all"), one=(401, OBJECT_REFUSED), write=(401, OBJECT_REFUSED),
                        op_one=(401, NOT_ADMIN)),
                   dict(listing=(401, VHOST_REFUSED), one=(401, OBJECT_REFUSED), write=(401, OBJECT_REFUSED),
                        op_one=(401, NOT_ADMIN))),
    "monitoring": (dict(listing=(200, "all"), one=(401, OBJECT_REFUSED), write=(401, OBJECT_REFUSED),
                        op_one=(401, NOT_ADMIN)),
                   dict(listing=(401, VHOST_REFUSED), one=(401, OBJECT_REFUSED), write=(401, OBJECT_REFUSED),
                        op_one=(401, NOT_ADMIN))),
    "policymaker": (dict(listing=(200, "all"), one=(200, "it"), write=OK, op_one=(401, NOT_ADMIN)),
                    dict(listing=(401, VHOST_REFUSED), one=(401, OBJECT_REFUSED), write=(401, OBJECT_REFUSED),
                         op_one=(401, NOT_ADMIN))),
    "administrator": (dict(listing=(200, "all"), one=(200, "it"), write=OK, op_one=OK),) * 2,
}


@pytest.mark.parametrize("permitted", [True, False], ids=["with-permissions", "without-permissions"])
@pytest.mark.parametrize("tag", list(ACCESS), ids=["no-tags", "management", "monitoring", "policymaker",
                                                   "administrator"])
def test_who_may_read_and_set_policies(mgmt, user_factory, vhost, tag, permitted):
    set_policy(mgmt, vhost, "p", "^never$", {"max-length": 5}, apply_to="queues")
    set_operator_policy(mgmt, vhost, "op", "^never$", {"max-length": 6})
    policies = mgmt.get(path_of(vhost)).body
    operator_policies = mgmt.get(path_of(vhost, kind=OPERATOR_POLICIES)).body
    u = user_factory(tags=tag)
    if permitted:
        mgmt.set_permissions(vhost, u.name)
    expect = ACCESS[tag][0 if permitted else 1]
    check_access(as_user(mgmt, u), vhost, f"own.{tag or 'none'}", policies, operator_policies, **expect)
    # nothing changed unless the user could write
    assert mgmt.get(path_of(vhost)).body == policies
    assert mgmt.get(path_of(vhost, kind=OPERATOR_POLICIES)).body == operator_policies


def test_policymaker_sets_a_policy_that_takes_effect(mgmt, user_factory, vhost, vch):
    """The policymaker case of test_management_objects'
    test_policymaker_may_set_policies_management_may_not, with its effect."""
    pm, mg = user_factory(tags="policymaker"), user_factory(tags="management")
    for u in (pm, mg):
        mgmt.set_permissions(vhost, u.name)
    policy = {"pattern": "^limited$", "definition": {"max-length": 1}, "apply-to": "queues"}
    assert_status(as_user(mgmt, mg).put(path_of(vhost, "p1"), policy), 401, OBJECT_REFUSED)
    assert_empty(as_user(mgmt, pm).put(path_of(vhost, "p1"), policy), 201)
    vch.queue_declare("limited")
    publish_n(vch, "limited", 3)
    assert drain_bodies(vch, "limited") == ["m2"]
    assert_empty(as_user(mgmt, pm).delete(path_of(vhost, "p1")), 204)


# --- definitions ------------------------------------------------------------------------------

def test_definitions_export(mgmt, vhost):
    set_policy(mgmt, vhost, "p1", "^a", {"message-ttl": 1000, "max-length": 7}, apply_to="queues", priority=3)
    set_policy(mgmt, vhost, "p2", "^x", {"alternate-exchange": "amq.fanout"}, apply_to="exchanges")
    set_operator_policy(mgmt, vhost, "op", "^a", {"expires": 100000})
    policies = [expected(vhost, "p1", "^a", {"message-ttl": 1000, "max-length": 7}, "queues", 3),
                expected(vhost, "p2", "^x", {"alternate-exchange": "amq.fanout"}, "exchanges", 0)]
    op_param = {"vhost": vhost, "component": "operator_policy", "name": "op",
                "value": {"pattern": "^a", "definition": {"expires": 100000}, "priority": 0, "apply-to": "all"}}

    d = mgmt.get("/api/definitions").body
    assert sorted((p for p in d["policies"] if p["vhost"] == vhost), key=lambda p: p["name"]) == policies
    assert [p for p in d["parameters"] if p["vhost"] == vhost] == [op_param]
    assert not [p for p in d["policies"] if p["vhost"] == vhost and p["name"] == "op"]

    dv = mgmt.get(f"/api/definitions/{q(vhost)}").body
    # unlike the queues, exchanges and bindings, the per-vhost export keeps "vhost" in each entry
    assert sorted(dv["policies"], key=lambda p: p["name"]) == policies
    assert dv["parameters"] == [op_param]


def test_definitions_import(mgmt, uid, vhost_factory, pika_connect):
    vh = f"{uid}.imported"
    doc = {
        "vhosts": [{"name": vh}],
        "policies": [
            {"vhost": vh, "name": "full", "pattern": "^full$", "apply-to": "queues",
             "definition": {"max-length": 2}, "priority": 4},
            # priority and apply-to may be left out
            {"vhost": vh, "name": "short", "pattern": "^short$", "definition": {"max-length": 1}},
        ],
        "parameters": [
            {"vhost": vh, "component": "operator_policy", "name": "op",
             "value": {"pattern": "^full$", "definition": {"message-ttl": 60000}, "priority": 1,
                       "apply-to": "queues"}},
        ],
    }
    try:
        assert_empty(mgmt.post("/api/definitions", doc), 204)
        assert_empty(mgmt.post("/api/definitions", doc), 204)  # idempotent
        assert mgmt.get(path_of(vh)).body == [
            expected(vh, "short", "^short$", {"max-length": 1}, "all", 0),
            expected(vh, "full", "^full$", {"max-length": 2}, "queues", 4)]
        assert mgmt.get(path_of(vh, kind=OPERATOR_POLICIES)).body == [
            expected(vh, "op", "^full$", {"message-ttl": 60000}, "queues", 1)]
        ch = pika_connect(virtual_host=vh).channel()
        ch.confirm_delivery()
        for name in ("full", "short"):
            ch.queue_declare(name)
            publish_n(ch, name, 4)
        assert (message_count(ch, "full"), message_count(ch, "short")) == (2, 1)
        entry = wait_queue_policy(mgmt, vh, "full", "full", "op")
        assert entry["effective_policy_definition"] == {"max-length": 2, "message-ttl": 60000}
    finally:
        mgmt.delete_vhost(vh, missing_ok=True)

    # the per-vhost import puts policies into the vhost of the path
    target = vhost_factory(".target")
    name = f"{uid}.moved"
    doc = {"policies": [{"vhost": "/", "name": name, "pattern": "^never$", "definition": {"expires": 60000},
                         "priority": 2, "apply-to": "queues"}]}
    try:
        assert_empty(mgmt.post(f"/api/definitions/{q(target)}", doc), 204)
        assert mgmt.get(path_of(target)).body == [
            expected(target, name, "^never$", {"expires": 60000}, "queues", 2)]
        assert mgmt.get(path_of("/", name)).status == 404
    finally:
        mgmt.delete(path_of("/", name))


def test_definitions_import_of_an_invalid_policy(mgmt, vhost):
    doc = {"policies": [{"vhost": vhost, "name": "bad", "pattern": "^a", "definition": {"bogus": 3}}]}
    assert_status(mgmt.post("/api/definitions", doc), 400, bad_request(
        escape(f'Validation failed\n\n[{{<<"bogus">>,3}}] are not recognised policy settings\n ({vhost}/bad)')))
    assert mgmt.get(path_of(vhost, "bad")).status == 404


# --- restart --------------------------------------------------------------------------------------

@pytest.mark.timeout(240)  # RabbitMQ takes a while to boot, twice
def test_policies_survive_a_restart(broker_factory):
    node = broker_factory.start()
    api = Mgmt(node.mgmt_url, "guest", "guest")
    wait_until(lambda: _reachable(api), 60, what="the management API")
    vh = "pol.restart"
    api.create_vhost(vh)
    api.set_permissions(vh, "guest")
    set_policy(api, vh, "len", "^durable\\.", {"max-length": 2}, apply_to="queues", priority=1)
    set_operator_policy(api, vh, "op", "^durable\\.", {"message-ttl": 60000})
    params = pika_params(node.broker, virtual_host=vh)
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("durable.q", durable=True)
    conn.close()

    node.restart()
    wait_until(lambda: _reachable(api), 60, what="the management API after the restart")
    assert api.get(path_of(vh)).body == [expected(vh, "len", "^durable\\.", {"max-length": 2}, "queues", 1)]
    assert api.get(path_of(vh, kind=OPERATOR_POLICIES)).body == [
        expected(vh, "op", "^durable\\.", {"message-ttl": 60000})]
    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        for i in range(5):
            ch.basic_publish("", "durable.q", f"m{i}".encode(), pika.BasicProperties(delivery_mode=2))
        assert ch.queue_declare("durable.q", passive=True).method.message_count == 2
        entry = wait_queue_policy(api, vh, "durable.q", "len", "op")
        assert entry["effective_policy_definition"] == {"max-length": 2, "message-ttl": 60000}
    finally:
        conn.close()


def _reachable(api) -> bool:
    try:
        return api.get("/api/whoami").status == 200
    except OSError:
        return False


def test_deleting_a_vhost_deletes_its_policies(mgmt, uid):
    vh = f"{uid}.gone"
    mgmt.create_vhost(vh)
    try:
        set_policy(mgmt, vh, "p", "^a", {"max-length": 1})
        set_operator_policy(mgmt, vh, "op", "^a", {"max-length": 1})
        mgmt.delete_vhost(vh)
        assert not [p for p in mgmt.get("/api/policies").body if p["vhost"] == vh]
        assert not [p for p in mgmt.get("/api/operator-policies").body if p["vhost"] == vh]
        mgmt.create_vhost(vh)
        assert_status(mgmt.get(path_of(vh)), 200, [])
        assert_status(mgmt.get(path_of(vh, kind=OPERATOR_POLICIES)), 200, [])
    finally:
        mgmt.delete_vhost(vh, missing_ok=True)


def test_policy_names_are_path_segments(mgmt, vhost):
    name = "a b/c%d.é"
    assert_empty(mgmt.put(path_of(vhost, name), policy_body("^a", {"max-length": 1})), 201)
    assert_status(mgmt.get(path_of(vhost, name)), 200, expected(vhost, name, "^a", {"max-length": 1}))
    assert [p["name"] for p in mgmt.get(path_of(vhost)).body] == [name]
    assert_empty(mgmt.delete(path_of(vhost, name)), 204)
