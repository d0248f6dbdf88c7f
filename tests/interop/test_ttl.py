"""Message TTL (x-message-ttl, the expiration property) and queue TTL
(x-expires), as a pika application observes them.

Checked against RabbitMQ 3.10 (classic queues; see rabbitmq-as-warren.sh).
What RabbitMQ does, and these tests pin:

* A message's expiry is fixed when it is enqueued: now + min(x-message-ttl,
  expiration).  Requeueing (nack/reject/channel close) keeps that expiry.
* Only the head of the queue is expired: a timer fires when the head's expiry
  is reached, and after every fetch the new head is checked.  An expired
  message behind a live one is still counted in queue.declare-ok, and is
  dropped (dead-lettered) the moment it becomes the head, so it is never
  delivered; basic.get-ok's message_count is taken after that drop.
* Expired messages are dead-lettered (reason `expired`) by that timer alone,
  with no client touching the queue.
* TTL 0: a message is delivered if a consumer can take it at once, otherwise
  dropped (dead-lettered) at once.
* x-expires: a queue with no consumers that nobody declares or basic.gets
  for that long is deleted, messages and all (they are not dead-lettered).
  Publishing to it does not count as use.
"""

from __future__ import annotations

import time

import pika
import pika.exceptions
import pytest

from queue_helpers import (drain, drain_bodies, get_wait, message_count, publish, pump,
                           pump_until, wait_count, wait_until)


def dead_letter_target(ch, cleanup, uid):
    """A queue to dead-letter into via the default exchange: (name, source args)."""
    dead = cleanup.queue(f"{uid}.dead")
    ch.queue_declare(dead)
    return dead, {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead}


def reasons(props):
    return [(d["reason"], d["queue"]) for d in props.headers["x-death"]]


# --- x-message-ttl / expiration ----------------------------------------------

def test_queue_ttl_expires_every_message(ch, cleanup, uid):
    q = cleanup.queue(f"{uid}.q")
    ch.queue_declare(q, arguments={"x-message-ttl": 800})
    t0 = time.monotonic()
    for i in range(3):
        publish(ch, q, str(i))
    assert message_count(ch, q) == 3
    gone = wait_count(ch, q, 0)
    assert gone - t0 >= 0.8
    assert ch.basic_get(q) == (None, None, None)


def test_message_expiration_expires_only_that_message(conn, ch, cleanup, uid):
    q = cleanup.queue(f"{uid}.q")
    ch.queue_declare(q)
    t0 = time.monotonic()
    publish(ch, q, "short", expiration="300")
    publish(ch, q, "keep")
    assert message_count(ch, q) == 2
    gone = wait_count(ch, q, 1)
    assert gone - t0 >= 0.3
    # an expired message is never returned by basic.get ...
    method, props, body = ch.basic_get(q, auto_ack=True)
    assert body == b"keep" and method.message_count == 0 and props.expiration is None
    assert ch.basic_get(q) == (None, None, None)
    # ... nor delivered to a consumer
    publish(ch, q, "short2", expiration="200")
    wait_count(ch, q, 0)
    got = []
    ch.basic_consume(q, lambda _c, _m, _p, b: got.append(b), auto_ack=True)
    pump(conn, 0.3)
    assert got == []


@pytest.mark.parametrize("queue_ttl,expiration", [(300, "60000"), (60000, "300")],
                         ids=["queue-ttl-smaller", "message-expiration-smaller"])
def test_smaller_of_queue_ttl_and_expiration_wins(ch, cleanup, uid, queue_ttl, expiration):
    dead, dlx = dead_letter_target(ch, cleanup, uid)
    q = cleanup.queue(f"{uid}.q")
    ch.queue_declare(q, arguments={"x-message-ttl": queue_ttl, **dlx})
    t0 = time.monotonic()
    publish(ch, q, "m", expiration=expiration)
    method, props, body = get_wait(ch, dead)
    assert time.monotonic() - t0 >= 0.3
    assert body == b"m"
    assert reasons(props) == [("expired", q)]
    # the original per-message expiration is recorded, whichever TTL won
    assert props.headers["x-death"][0]["original-expiration"] == expiration
    assert props.expiration is None
    assert message_count(ch, q) == 0


def test_expired_messages_are_dead_lettered_without_anyone_touching_the_queue(
        pika_connect, ch, cleanup, uid):
    dead, dlx = dead_letter_target(ch, cleanup, uid)
    q = cleanup.queue(f"{uid}.q")
    ch.queue_declare(q, arguments={"x-message-ttl": 300, **dlx})
    # publish from a connection that then goes away: no consumer, no basic.get,
    # no declare of the source queue from here on
    publisher = pika_connect()
    pch = publisher.channel()
    pch.confirm_delivery()
    for i in range(3):
        publish(pch, q, str(i), headers={"n": i})
    publisher.close()
    wait_count(ch, dead, 3)  # passive declares of the *target* only
    got = drain(ch, dead)
    assert [b.decode() for _m, _p, b in got] == ["0", "1", "2"]
    for i, (method, props, _b) in enumerate(got):
        assert reasons(props) == [("expired", q)]
        assert props.headers["n"] == i
        assert "original-expiration" not in props.headers["x-death"][0]  # queue TTL only
        assert method.routing_key == dead and method.exchange == ""
    assert message_count(ch, q) == 0


@pytest.mark.parametrize("head_expiration", [None, "60000"], ids=["head-without-ttl", "head-long-ttl"])
def test_only_the_head_expires_basic_get(ch, cleanup, uid, head_expiration):
    """RabbitMQ classic queues expire messages from the head only."""
    dead, dlx = dead_letter_target(ch, cleanup, uid)
    q = cleanup.queue(f"{uid}.q")
    ch.queue_declare(q, arguments=dlx)
    publish(ch, q, "head", expiration=head_expiration)
    publish(ch, q, "short", expiration="100")
    publish(ch, q, "tail")
    time.sleep(0.4)  # 'short' is past its expiry, but not at the head
    # so it is still counted and not yet dead-lettered
    assert message_count(ch, q) == 3
    assert message_count(ch, dead) == 0
    method, props, body = ch.basic_get(q, auto_ack=True)
    assert body == b"head"
    # 'short' became the head and was dropped before get-ok was sent: the
    # count in get-ok already excludes it
    assert method.message_count == 1
    assert message_count(ch, q) == 1
    _m, dprops, dbody = get_wait(ch, dead)
    assert dbody == b"short" and reasons(dprops) == [("expired", q)]
    assert dprops.headers["x-death"][0]["original-expiration"] == "100"
    method, _p, body = ch.basic_get(q, auto_ack=True)
    assert body == b"tail" and method.message_count == 0
    assert ch.basic_get(q) == (None, None, None)
    assert drain(ch, dead) == []


def test_only_the_head_expires_consumer(conn, ch, cleanup, uid):
    dead, dlx = dead_letter_target(ch, cleanup, uid)
    q = cleanup.queue(f"{uid}.q")
    ch.queue_declare(q, arguments=dlx)
    publish(ch, q, "head")
    publish(ch, q, "short", expiration="100")
    publish(ch, q, "tail")
    time.sleep(0.4)
    assert message_count(ch, q) == 3
    got = []
    cch = conn.channel()
    cch.basic_qos(prefetch_count=10)
    cch.basic_consume(q, lambda c, m, _p, b: (got.append(b.decode()), c.basic_ack(m.delivery_tag)))
    pump_until(conn, lambda: len(got) >= 2)
    pump(conn, 0.2)
    assert got == ["head", "tail"]  # the expired one is never delivered
    _m, dprops, dbody = get_wait(ch, dead)
    assert dbody == b"short" and reasons(dprops) == [("expired", q)]


def test_message_expiring_while_consumer_is_blocked_is_never_delivered(conn, ch, cleanup, uid):
    dead, dlx = dead_letter_target(ch, cleanup, uid)
    q = cleanup.queue(f"{uid}.q")
    ch.queue_declare(q, arguments=dlx)
    got = []
    cch = conn.channel()
    cch.basic_qos(prefetch_count=1)
    cch.basic_consume(q, lambda _c, m, _p, b: got.append((m.delivery_tag, b.decode())))
    publish(ch, q, "first")
    publish(ch, q, "second", expiration="300")
    pump_until(conn, lambda: got)
    # 'second' waits at the head while the consumer holds 'first' unacked,
    # and expires there
    _m, dprops, dbody = get_wait(ch, dead)
    assert dbody == b"second" and reasons(dprops) == [("expired", q)]
    cch.basic_ack(got[0][0])
    pump(conn, 0.3)
    assert got == [(1, "first")]
    assert message_count(ch, q) == 0


# --- TTL 0 ---------------------------------------------------------------------

TTL_ZERO = [("x-message-ttl", {"x-message-ttl": 0}, {}),
            ("expiration", {}, {"expiration": "0"})]


@pytest.mark.parametrize("kind,qargs,props", TTL_ZERO, ids=[k for k, _a, _p in TTL_ZERO])
def test_ttl_zero_is_delivered_to_a_ready_consumer(conn, ch, cleanup, uid, kind, qargs, props):
    dead, dlx = dead_letter_target(ch, cleanup, uid)
    q = cleanup.queue(f"{uid}.q")
    ch.queue_declare(q, arguments={**qargs, **dlx})
    got = []
    cch = conn.channel()
    cch.basic_qos(prefetch_count=10)
    cch.basic_consume(q, lambda _c, _m, _p, b: got.append(b.decode()), auto_ack=True)
    for i in range(3):
        publish(ch, q, str(i), **props)
    pump_until(conn, lambda: len(got) == 3)
    assert got == ["0", "1", "2"]
    pump(conn, 0.1)
    assert message_count(ch, dead) == 0


@pytest.mark.parametrize("kind,qargs,props", TTL_ZERO, ids=[k for k, _a, _p in TTL_ZERO])
def test_ttl_zero_without_consumer_is_dropped_at_once(ch, cleanup, uid, kind, qargs, props):
    q = cleanup.queue(f"{uid}.q")
    ch.queue_declare(q, arguments=qargs)
    for i in range(3):
        publish(ch, q, str(i), **props)
    assert message_count(ch, q) == 0  # right after the confirms: no waiting
    assert ch.basic_get(q) == (None, None, None)


@pytest.mark.parametrize("kind,qargs,props", TTL_ZERO, ids=[k for k, _a, _p in TTL_ZERO])
def test_ttl_zero_without_consumer_is_dead_lettered_at_once(ch, cleanup, uid, kind, qargs, props):
    dead, dlx = dead_letter_target(ch, cleanup, uid)
    q = cleanup.queue(f"{uid}.q")
    ch.queue_declare(q, arguments={**qargs, **dlx})
    for i in range(3):
        publish(ch, q, str(i), **props)
    assert message_count(ch, q) == 0
    wait_count(ch, dead, 3)
    got = drain(ch, dead)
    assert [b.decode() for _m, _p, b in got] == ["0", "1", "2"]
    for _m, p, _b in got:
        assert reasons(p) == [("expired", q)]
        assert p.expiration is None
        if props:
            assert p.headers["x-death"][0]["original-expiration"] == "0"
        else:
            assert "original-expiration" not in p.headers["x-death"][0]


def test_ttl_zero_with_consumer_blocked_by_prefetch_is_dead_lettered(conn, ch, cleanup, uid):
    dead, dlx = dead_letter_target(ch, cleanup, uid)
    q = cleanup.queue(f"{uid}.q")
    ch.queue_declare(q, arguments={"x-message-ttl": 0, **dlx})
    got = []
    cch = conn.channel()
    cch.basic_qos(prefetch_count=1)
    cch.basic_consume(q, lambda _c, m, _p, b: got.append((m.delivery_tag, b.decode())))
    publish(ch, q, "taken")
    pump_until(conn, lambda: got)
    publish(ch, q, "no-room")  # the only consumer is at its prefetch limit
    _m, dprops, dbody = get_wait(ch, dead)
    assert dbody == b"no-room" and reasons(dprops) == [("expired", q)]
    cch.basic_ack(got[0][0])
    pump(conn, 0.2)
    assert got == [(1, "taken")]


# --- requeue keeps the expiry -----------------------------------------------------

@pytest.mark.parametrize("requeue", ["nack", "reject", "channel-close"])
def test_requeued_message_keeps_its_original_expiry(conn, ch, cleanup, uid, requeue):
    dead, dlx = dead_letter_target(ch, cleanup, uid)
    q = cleanup.queue(f"{uid}.q")
    ch.queue_declare(q, arguments={"x-message-ttl": 1000, **dlx})
    holder = conn.channel()
    t0 = time.monotonic()
    publish(ch, q, "m")
    method, _p, _b = holder.basic_get(q)
    assert method is not None and not method.redelivered
    time.sleep(max(0.0, t0 + 0.6 - time.monotonic()))
    holder.basic_nack(method.delivery_tag, requeue=True)
    # requeued before its expiry: still there, redelivered
    method, _p, body = holder.basic_get(q)
    assert body == b"m" and method.redelivered
    # hold it past the expiry set at publish (t0 + 1.0 s); had requeueing or
    # redelivery restarted the TTL it would live until t0 + 1.6 s
    time.sleep(max(0.0, t0 + 1.3 - time.monotonic()))
    if requeue == "nack":
        holder.basic_nack(method.delivery_tag, requeue=True)
    elif requeue == "reject":
        holder.basic_reject(method.delivery_tag, requeue=True)
    else:
        holder.close()
    _m, dprops, dbody = get_wait(ch, dead)
    assert time.monotonic() - t0 < 1.6
    assert dbody == b"m" and reasons(dprops) == [("expired", q)]
    assert message_count(ch, q) == 0
    assert ch.basic_get(q) == (None, None, None)


# --- x-expires -------------------------------------------------------------------

def queue_exists(ch, q):
    """Whether q exists, found out without 'using' it: a mandatory publish
    (publishing does not reset x-expires) that is returned once q is gone.
    Leaves a message in q while it exists."""
    try:
        ch.basic_publish("", q, b"probe", mandatory=True)
        return True
    except pika.exceptions.UnroutableError:
        return False


def assert_queue_gone(conn, q):
    pch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
        pch.queue_declare(q, passive=True)
    assert (raised.value.reply_code, raised.value.reply_text) == (
        404, f"NOT_FOUND - no queue '{q}' in vhost '/'")


def wait_gone(ch, q, timeout=3.0):
    wait_until(lambda: not queue_exists(ch, q), timeout, what=f"{q} to expire")
    return time.monotonic()


def test_x_expires_deletes_an_unused_queue(conn, ch, cleanup, uid):
    q = cleanup.queue(f"{uid}.q")
    ch.queue_declare(q, arguments={"x-expires": 500})
    t0 = time.monotonic()
    gone = wait_gone(ch, q)
    assert gone - t0 >= 0.5
    assert_queue_gone(conn, q)
    assert conn.is_open


def test_x_expires_consumer_keeps_the_queue_alive(conn, ch, cleanup, uid):
    q = cleanup.queue(f"{uid}.q")
    ch.queue_declare(q, arguments={"x-expires": 400})
    cch = conn.channel()
    tag = cch.basic_consume(q, lambda *_a: None, auto_ack=True)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert queue_exists(ch, q)
        pump(conn, 0.05)
    cch.basic_cancel(tag)
    t_cancel = time.monotonic()
    gone = wait_gone(ch, q)
    assert gone - t_cancel >= 0.4
    assert_queue_gone(conn, q)


@pytest.mark.parametrize("use", ["declare", "passive-declare", "basic-get"])
def test_x_expires_declare_and_get_keep_the_queue_alive(conn, ch, cleanup, uid, use):
    q = cleanup.queue(f"{uid}.q")
    args = {"x-expires": 400}
    ch.queue_declare(q, arguments=args)
    deadline = time.monotonic() + 1.2
    while time.monotonic() < deadline:
        if use == "declare":
            ch.queue_declare(q, arguments=args)
        elif use == "passive-declare":
            ch.queue_declare(q, passive=True)
        else:
            ch.basic_get(q, auto_ack=True)
        time.sleep(0.15)
        assert queue_exists(ch, q)
    t_last = time.monotonic()
    gone = wait_gone(ch, q)
    assert gone - t_last >= 0.2
    assert_queue_gone(conn, q)


def test_x_expires_discards_messages_without_dead_lettering(conn, ch, cleanup, uid):
    dead, dlx = dead_letter_target(ch, cleanup, uid)
    q = cleanup.queue(f"{uid}.q")
    ch.queue_declare(q, arguments={"x-expires": 400, **dlx})
    publish(ch, q, "a")
    publish(ch, q, "b")
    wait_gone(ch, q)
    time.sleep(0.2)
    assert message_count(ch, dead) == 0
    assert_queue_gone(conn, q)


# --- invalid values ----------------------------------------------------------------

@pytest.mark.parametrize("expiration,detail", [
    ("-1", "{value_negative,-1}"),
    ("1.5", '{leftover_string,".5"}'),
    ("", "no_integer"),
    (" 5", "no_integer"),
    ("99999999999999999", "{value_too_large,99999999999999999}"),
])
def test_invalid_expiration_closes_the_channel(conn, ch, cleanup, uid, expiration, detail):
    q = cleanup.queue(f"{uid}.q")
    ch.queue_declare(q)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
        publish(ch, q, "x", expiration=expiration)
    assert (raised.value.reply_code, raised.value.reply_text) == (
        406, f"PRECONDITION_FAILED - invalid expiration '{expiration}': {detail}")
    assert conn.is_open
    assert message_count(conn.channel(), q) == 0


@pytest.mark.parametrize("args,detail", [
    ({"x-message-ttl": "abc"}, "'x-message-ttl' for queue '{q}' in vhost '/': \"expected integer, got longstr\""),
    ({"x-expires": -5}, "'x-expires' for queue '{q}' in vhost '/': {{value_negative,-5}}"),
])
def test_invalid_ttl_arguments(conn, uid, args, detail):
    q = f"{uid}.q"
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
        conn.channel().queue_declare(q, arguments=args)
    assert (raised.value.reply_code, raised.value.reply_text) == (
        406, "PRECONDITION_FAILED - invalid arg " + detail.format(q=q))


def test_zero_ttl_and_large_ttl_are_accepted(ch, cleanup, uid):
    q0, big = cleanup.queue(f"{uid}.zero"), cleanup.queue(f"{uid}.big")
    assert ch.queue_declare(q0, arguments={"x-message-ttl": 0}).method.message_count == 0
    ch.queue_declare(big, arguments={"x-message-ttl": 2 ** 32})
    publish(ch, big, "kept", expiration="4294967296")
    assert drain_bodies(ch, big) == ["kept"]
