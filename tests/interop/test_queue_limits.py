"""Queue length limits (x-max-length, x-max-length-bytes) and the overflow
behaviours (x-overflow), as a pika application observes them.

Checked against RabbitMQ 3.10 (classic queues; see rabbitmq-as-warren.sh).
What RabbitMQ does, and these tests pin:

* Only ready messages count, towards both limits: delivered-but-unacked
  messages do not.  x-max-length-bytes counts message bodies only (not
  properties or headers).
* drop-head (the default): the message is enqueued, then messages are dropped
  from the head until the queue is within its limits; dropped messages are
  dead-lettered with reason `maxlen`.  The publish is confirmed (basic.ack).
  Requeueing over the limit drops from the head too, i.e. the requeued
  messages themselves.
* reject-publish: a publish that would exceed a limit is refused: basic.nack
  with confirms, silently dropped without; never dead-lettered.  Requeueing
  may take the queue over its limit (nothing is dropped).
* reject-publish-dlx: like reject-publish (nacked with confirms, dropped
  without) *and* the refused message is dead-lettered with reason `maxlen`.
* x-max-length=0: with drop-head / reject-publish-dlx nothing stays in the
  queue; a consumer that can take a message at once still gets it under
  drop-head, but reject-publish(-dlx) refuses every publish even then.
"""

from __future__ import annotations

import time

import pika.exceptions
import pytest

from queue_helpers import (drain, drain_bodies, get_wait, message_count, publish, pump,
                           pump_until, try_publish, wait_count)


def setup_queues(ch, cleanup, uid, dead_letter=True, **limits):
    """A limited queue (dead-lettering into a '.dead' queue unless told
    otherwise): (queue, dead) names; dead is None without dead-lettering."""
    args = dict(limits)
    dead = None
    if dead_letter:
        dead = cleanup.queue(f"{uid}.dead")
        ch.queue_declare(dead)
        args.update({"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead})
    q = cleanup.queue(f"{uid}.q")
    assert ch.queue_declare(q, arguments=args).method.message_count == 0
    return q, dead


def dead_letters(ch, dead):
    """Bodies and (reason, queue) of the first x-death entry, draining dead."""
    out = []
    for _m, props, body in drain(ch, dead):
        xd = props.headers["x-death"]
        out.append((body.decode(), xd[0]["reason"], xd[0]["queue"], len(xd)))
    return out


def declare_count(ch, q, args):
    """Message count from a full (non-passive) redeclare's declare-ok."""
    return ch.queue_declare(q, arguments=args).method.message_count


# --- drop-head --------------------------------------------------------------------

@pytest.mark.parametrize("overflow", [None, "drop-head"], ids=["default", "drop-head"])
def test_max_length_drop_head_counts_after_each_publish(ch, cleanup, uid, overflow):
    limits = {"x-max-length": 3}
    if overflow:
        limits["x-overflow"] = overflow
    q, dead = setup_queues(ch, cleanup, uid, **limits)
    counts, results = [], []
    for i in range(5):
        results.append(try_publish(ch, q, str(i)))
        counts.append(message_count(ch, q))
    assert results == ["ack"] * 5
    assert counts == [1, 2, 3, 3, 3]
    wait_count(ch, dead, 2)
    assert dead_letters(ch, dead) == [("0", "maxlen", q, 1), ("1", "maxlen", q, 1)]
    assert drain_bodies(ch, q) == ["2", "3", "4"]


def test_max_length_drop_head_without_dlx_discards_oldest(ch, cleanup, uid):
    q, _ = setup_queues(ch, cleanup, uid, dead_letter=False, **{"x-max-length": 2})
    for i in range(4):
        publish(ch, q, str(i))
    assert message_count(ch, q) == 2
    assert drain_bodies(ch, q) == ["2", "3"]


def test_max_length_bytes_counts_bodies_only(ch, cleanup, uid):
    q, dead = setup_queues(ch, cleanup, uid, **{"x-max-length-bytes": 10})
    counts = []
    # bodies of 5 + 4 bytes fit; big headers and properties do not count
    for body in ("12345", "6789"):
        publish(ch, q, body, headers={"pad": "x" * 500}, correlation_id="c" * 200)
        counts.append(message_count(ch, q))
    publish(ch, q, "ab")  # 11 bytes: the head (5 bytes) goes
    counts.append(message_count(ch, q))
    publish(ch, q, "")  # an empty body takes no room
    counts.append(message_count(ch, q))
    publish(ch, q, "0123456789")  # drops from the head until within the limit
    counts.append(message_count(ch, q))
    assert counts == [1, 2, 2, 3, 2]
    wait_count(ch, dead, 3)
    assert [d[:2] for d in dead_letters(ch, dead)] == [
        ("12345", "maxlen"), ("6789", "maxlen"), ("ab", "maxlen")]
    # exactly at the limit (0 + 10 bytes) is within it
    assert drain_bodies(ch, q) == ["", "0123456789"]


def test_max_length_bytes_single_message_over_the_limit(ch, cleanup, uid):
    q, dead = setup_queues(ch, cleanup, uid, **{"x-max-length-bytes": 4})
    assert try_publish(ch, q, "too-big") == "ack"
    assert message_count(ch, q) == 0
    _m, props, body = get_wait(ch, dead)
    assert body == b"too-big" and props.headers["x-death"][0]["reason"] == "maxlen"


def test_both_limits_whichever_is_hit_first(ch, cleanup, uid):
    q, dead = setup_queues(ch, cleanup, uid, **{"x-max-length": 3, "x-max-length-bytes": 6})
    for body in ("aa", "bb", "cc"):
        publish(ch, q, body)
    assert message_count(ch, q) == 3
    publish(ch, q, "d")  # length limit
    assert message_count(ch, q) == 3
    publish(ch, q, "eeee")  # bytes: bb cc d eeee = 9 > 6, drop bb, cc -> d eeee
    assert message_count(ch, q) == 2
    wait_count(ch, dead, 3)
    assert [d[0] for d in dead_letters(ch, dead)] == ["aa", "bb", "cc"]
    assert drain_bodies(ch, q) == ["d", "eeee"]


def test_drop_head_requeue_over_the_limit_drops_the_requeued_message(ch, cleanup, uid):
    q, dead = setup_queues(ch, cleanup, uid, **{"x-max-length": 2})
    publish(ch, q, "a")
    publish(ch, q, "b")
    taken = ch.basic_get(q)[0]  # 'a' is unacked: the queue has room again
    publish(ch, q, "c")
    assert message_count(ch, q) == 2  # b c
    assert dead_letters(ch, dead) == []
    ch.basic_nack(taken.delivery_tag, requeue=True)
    # 'a' goes back to the head (a b c), over the limit: the head is dropped
    _m, props, body = get_wait(ch, dead)
    assert body == b"a" and props.headers["x-death"][0]["reason"] == "maxlen"
    assert message_count(ch, q) == 2
    assert drain_bodies(ch, q) == ["b", "c"]


# --- unacked messages do not count -------------------------------------------------

@pytest.mark.parametrize("limit", [{"x-max-length": 2}, {"x-max-length-bytes": 2}],
                         ids=["max-length", "max-length-bytes"])
def test_unacked_messages_do_not_count(ch, cleanup, uid, limit):
    q, dead = setup_queues(ch, cleanup, uid, **limit, **{"x-overflow": "reject-publish"})
    assert [try_publish(ch, q, body) for body in ("a", "b", "c")] == ["ack", "ack", "nack"]
    tags = [ch.basic_get(q)[0].delivery_tag for _ in range(2)]  # a, b now unacked
    assert message_count(ch, q) == 0
    assert [try_publish(ch, q, body) for body in ("d", "e", "f")] == ["ack", "ack", "nack"]
    assert message_count(ch, q) == 2
    # requeueing the unacked ones takes the queue over its limit: allowed
    ch.basic_nack(tags[-1], multiple=True, requeue=True)
    wait_count(ch, q, 4)
    assert try_publish(ch, q, "g") == "nack"
    assert drain_bodies(ch, q) == ["a", "b", "d", "e"]
    assert dead_letters(ch, dead) == []


# --- reject-publish ---------------------------------------------------------------

def test_reject_publish_nacks_with_confirms_and_does_not_dead_letter(ch, cleanup, uid):
    q, dead = setup_queues(ch, cleanup, uid, **{"x-max-length": 2, "x-overflow": "reject-publish"})
    results, counts = [], []
    for i in range(4):
        results.append(try_publish(ch, q, str(i)))
        counts.append(message_count(ch, q))
    assert results == ["ack", "ack", "nack", "nack"]
    assert counts == [1, 2, 2, 2]
    assert ch.is_open
    time.sleep(0.1)
    assert message_count(ch, dead) == 0
    # room again once a message is consumed
    ch.basic_get(q, auto_ack=True)
    assert try_publish(ch, q, "4") == "ack"
    assert try_publish(ch, q, "5") == "nack"
    assert drain_bodies(ch, q) == ["1", "4"]


def test_reject_publish_without_confirms_drops_silently(conn, ch, cleanup, uid):
    q, dead = setup_queues(ch, cleanup, uid, **{"x-max-length": 2, "x-overflow": "reject-publish"})
    plain = conn.channel()
    for i in range(4):
        publish(plain, q, str(i))
    assert plain.is_open and conn.is_open
    # switch the same channel to confirms: once its next publish is settled
    # the queue has dealt with all the earlier ones
    plain.confirm_delivery()
    assert try_publish(plain, q, "marker") == "nack"
    assert message_count(ch, q) == 2
    assert drain_bodies(ch, q) == ["0", "1"]
    assert message_count(ch, dead) == 0


def test_reject_publish_bytes(ch, cleanup, uid):
    q, _ = setup_queues(ch, cleanup, uid, dead_letter=False,
                        **{"x-max-length-bytes": 10, "x-overflow": "reject-publish"})
    assert [try_publish(ch, q, b) for b in ("12345", "6789", "ab", "", "x")] == \
        ["ack", "ack", "nack", "ack", "ack"]
    assert message_count(ch, q) == 4
    assert drain_bodies(ch, q) == ["12345", "6789", "", "x"]


def test_reject_publish_mandatory_is_nacked_not_returned(ch, cleanup, uid):
    q, _ = setup_queues(ch, cleanup, uid, dead_letter=False,
                        **{"x-max-length": 1, "x-overflow": "reject-publish"})
    ch.basic_publish("", q, b"fits", mandatory=True)
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", q, b"refused", mandatory=True)  # routed, so no basic.return
    assert drain_bodies(ch, q) == ["fits"]


# --- reject-publish-dlx ---------------------------------------------------------

def test_reject_publish_dlx_nacks_and_dead_letters(ch, cleanup, uid):
    q, dead = setup_queues(ch, cleanup, uid, **{"x-max-length": 2, "x-overflow": "reject-publish-dlx"})
    results, counts = [], []
    for i in range(4):
        results.append(try_publish(ch, q, str(i), headers={"n": i}))
        counts.append(message_count(ch, q))
    # RabbitMQ 3.10: the refused publish is nacked AND its message dead-lettered
    assert results == ["ack", "ack", "nack", "nack"]
    assert counts == [1, 2, 2, 2]
    wait_count(ch, dead, 2)
    got = drain(ch, dead)
    assert [b.decode() for _m, _p, b in got] == ["2", "3"]
    for i, (method, props, _b) in zip((2, 3), got):
        assert props.headers["n"] == i
        assert [(d["reason"], d["queue"], d["count"]) for d in props.headers["x-death"]] == [
            ("maxlen", q, 1)]
        assert props.headers["x-first-death-reason"] == "maxlen"
        assert (method.exchange, method.routing_key) == ("", dead)
    assert drain_bodies(ch, q) == ["0", "1"]  # the queue keeps the old ones


def test_reject_publish_dlx_without_confirms_dead_letters(conn, ch, cleanup, uid):
    q, dead = setup_queues(ch, cleanup, uid, **{"x-max-length": 1, "x-overflow": "reject-publish-dlx"})
    plain = conn.channel()
    for i in range(3):
        publish(plain, q, str(i))
    assert plain.is_open
    plain.confirm_delivery()
    assert try_publish(plain, q, "3") == "nack"
    wait_count(ch, dead, 3)
    assert [d[:2] for d in dead_letters(ch, dead)] == [("1", "maxlen"), ("2", "maxlen"), ("3", "maxlen")]
    assert drain_bodies(ch, q) == ["0"]


def test_reject_publish_dlx_without_dlx_just_rejects(ch, cleanup, uid):
    q, _ = setup_queues(ch, cleanup, uid, dead_letter=False,
                        **{"x-max-length": 1, "x-overflow": "reject-publish-dlx"})
    assert [try_publish(ch, q, str(i)) for i in range(3)] == ["ack", "nack", "nack"]
    assert drain_bodies(ch, q) == ["0"]


# --- declare-ok counts, x-max-length = 0 ---------------------------------------------

def test_declare_ok_counts_through_publish_get_ack_requeue(ch, cleanup, uid):
    args = {"x-max-length": 3, "x-overflow": "reject-publish"}
    q = cleanup.queue(f"{uid}.q")
    assert declare_count(ch, q, args) == 0
    steps = []
    for i in range(4):
        try_publish(ch, q, str(i))
        steps.append(declare_count(ch, q, args))
    m1 = ch.basic_get(q)[0]
    steps.append(declare_count(ch, q, args))
    m2 = ch.basic_get(q)[0]
    steps.append(declare_count(ch, q, args))
    ch.basic_ack(m1.delivery_tag)
    steps.append(declare_count(ch, q, args))
    ch.basic_reject(m2.delivery_tag, requeue=True)
    assert steps == [1, 2, 3, 3, 2, 1, 1]
    # RabbitMQ answers queue.declare ahead of pending acks/rejects: poll
    wait_count(ch, q, 2)
    assert declare_count(ch, q, args) == 2
    assert ch.queue_purge(q).method.message_count == 2
    assert declare_count(ch, q, args) == 0


@pytest.mark.parametrize("overflow", ["drop-head", "reject-publish", "reject-publish-dlx"])
def test_max_length_zero_without_consumer(ch, cleanup, uid, overflow):
    q, dead = setup_queues(ch, cleanup, uid, **{"x-max-length": 0, "x-overflow": overflow})
    result = try_publish(ch, q, "m")
    assert result == ("ack" if overflow == "drop-head" else "nack")
    assert message_count(ch, q) == 0
    if overflow == "reject-publish":
        time.sleep(0.1)
        assert message_count(ch, dead) == 0
    else:
        _m, props, body = get_wait(ch, dead)
        assert body == b"m" and props.headers["x-death"][0]["reason"] == "maxlen"


@pytest.mark.parametrize("overflow", ["drop-head", "reject-publish", "reject-publish-dlx"])
def test_max_length_zero_with_ready_consumer(conn, ch, cleanup, uid, overflow):
    q, dead = setup_queues(ch, cleanup, uid, **{"x-max-length": 0, "x-overflow": overflow})
    got = []
    cch = conn.channel()
    cch.basic_consume(q, lambda _c, _m, _p, b: got.append(b.decode()), auto_ack=True)
    result = try_publish(ch, q, "m")
    if overflow == "drop-head":
        # handed straight to the waiting consumer, never held in the queue
        assert result == "ack"
        pump_until(conn, lambda: got)
        assert got == ["m"]
        assert message_count(ch, dead) == 0
    else:
        # the limit is checked before delivery is even attempted
        assert result == "nack"
        pump(conn, 0.2)
        assert got == []
        expected = 1 if overflow == "reject-publish-dlx" else 0
        wait_count(ch, dead, expected)


# --- invalid values ---------------------------------------------------------------

@pytest.mark.parametrize("args,detail", [
    ({"x-overflow": "bogus"}, "'x-overflow' for queue '{q}' in vhost '/': invalid_overflow"),
    ({"x-max-length": -1}, "'x-max-length' for queue '{q}' in vhost '/': {{value_negative,-1}}"),
    ({"x-max-length-bytes": -1},
     "'x-max-length-bytes' for queue '{q}' in vhost '/': {{value_negative,-1}}"),
])
def test_invalid_limit_arguments(conn, uid, args, detail):
    q = f"{uid}.q"
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
        conn.channel().queue_declare(q, arguments=args)
    assert (raised.value.reply_code, raised.value.reply_text) == (
        406, "PRECONDITION_FAILED - invalid arg " + detail.format(q=q))
    assert conn.is_open
