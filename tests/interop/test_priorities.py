"""Priority queues (x-max-priority), consumer priorities (x-priority on
basic.consume) and single active consumer (x-single-active-consumer), as
pika and kombu applications observe them.

Checked against RabbitMQ 3.10 (classic queues; see rabbitmq-as-warren.sh).
What RabbitMQ does, and these tests pin:

* x-max-priority N (0..255): higher priority first, FIFO within a priority;
  no priority counts as 0, above N counts as N (the property itself is
  delivered unchanged).  A requeued message goes back to its place among its
  own priority.  Without x-max-priority the priority property is ignored.
* Consumer priorities: a message goes to the highest-priority consumer that
  can take it; lower ones get messages only while every higher one is
  blocked (e.g. by prefetch).
* Single active consumer: the first consumer to subscribe gets everything,
  whatever the others' x-priority; declare-ok counts every consumer (active
  and waiting).  When the active one cancels, the waiting consumer with the
  highest x-priority (subscription order among equals) takes over; messages
  the cancelled consumer still holds unacked stay with its channel (they can
  be acked there) until that channel closes, when they are requeued (in
  their original place, redelivered) to the new active consumer.  An
  exclusive basic.consume on such a queue is refused (403).
"""

from __future__ import annotations

import socket
from typing import NamedTuple

import pika
import pika.exceptions
import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue

from queue_helpers import (consumer_count, drain, message_count, publish, pump, pump_until,
                           wait_count)


MIXED = [("p1", 1), ("p5", 5), ("none", None), ("p10", 10), ("p3", 3), ("p0", 0), ("p5b", 5)]
MIXED_ORDER = ["p5", "p10", "p5b", "p3", "p1", "none", "p0"]  # with x-max-priority 5


def publish_all(ch, q, messages):
    for body, priority in messages:
        publish(ch, q, body, priority=priority)


# --- x-max-priority ---------------------------------------------------------------

def test_basic_get_order_by_priority(ch, cleanup, uid):
    q = cleanup.queue(f"{uid}.q")
    ch.queue_declare(q, arguments={"x-max-priority": 5})
    publish_all(ch, q, MIXED)
    assert message_count(ch, q) == len(MIXED)
    got = drain(ch, q)
    assert [b.decode() for _m, _p, b in got] == MIXED_ORDER
    assert [m.message_count for m, _p, _b in got] == list(range(len(MIXED) - 1, -1, -1))
    # the priority property is delivered as published (10 stays 10, none stays unset)
    assert {b.decode(): p.priority for _m, p, b in got} == dict(MIXED)


def test_consumer_order_by_priority_prefetch_1(conn, ch, cleanup, uid):
    q = cleanup.queue(f"{uid}.q")
    ch.queue_declare(q, arguments={"x-max-priority": 5})
    publish_all(ch, q, MIXED)
    got = []
    cch = conn.channel()
    cch.basic_qos(prefetch_count=1)
    cch.basic_consume(q, lambda c, m, _p, b: (got.append(b.decode()), c.basic_ack(m.delivery_tag)))
    pump_until(conn, lambda: len(got) == len(MIXED))
    assert got == MIXED_ORDER


def test_priority_above_the_maximum_counts_as_the_maximum(ch, cleanup, uid):
    q = cleanup.queue(f"{uid}.q")
    ch.queue_declare(q, arguments={"x-max-priority": 2})
    publish_all(ch, q, [("a9", 9), ("b1", 1), ("c2", 2), ("d255", 255), ("e3", 3)])
    assert [b.decode() for _m, _p, b in drain(ch, q)] == ["a9", "c2", "d255", "e3", "b1"]


def test_no_priority_counts_as_zero(ch, cleanup, uid):
    q = cleanup.queue(f"{uid}.q")
    ch.queue_declare(q, arguments={"x-max-priority": 3})
    publish_all(ch, q, [("n1", None), ("z1", 0), ("one", 1), ("n2", None), ("z2", 0)])
    assert [b.decode() for _m, _p, b in drain(ch, q)] == ["one", "n1", "z1", "n2", "z2"]


def test_requeue_returns_a_message_to_its_priority_position(ch, cleanup, uid):
    q = cleanup.queue(f"{uid}.q")
    ch.queue_declare(q, arguments={"x-max-priority": 5})
    publish_all(ch, q, MIXED)
    tags = {}
    for expected in ("p5", "p10", "p5b"):
        method, _p, body = ch.basic_get(q)
        assert body.decode() == expected
        tags[expected] = method.delivery_tag
    # requeue in reverse order; p10 stays unacked
    ch.basic_nack(tags["p5b"], requeue=True)
    ch.basic_nack(tags["p5"], requeue=True)
    # (RabbitMQ answers queue.declare ahead of pending acks/nacks: poll)
    wait_count(ch, q, 6)
    got = [(b.decode(), m.redelivered) for m, _p, b in drain(ch, q)]
    assert got == [("p5", True), ("p5b", True), ("p3", False), ("p1", False), ("none", False),
                   ("p0", False)]
    ch.basic_ack(tags["p10"])


def test_requeue_on_channel_close_keeps_priority_order(conn, ch, cleanup, uid):
    q = cleanup.queue(f"{uid}.q")
    ch.queue_declare(q, arguments={"x-max-priority": 9})
    publish_all(ch, q, [("low", 1), ("high", 9), ("mid", 5)])
    holder = conn.channel()
    for _ in range(3):
        holder.basic_get(q)
    publish_all(ch, q, [("mid2", 5), ("low2", 1)])
    holder.close()
    wait_count(ch, q, 5)
    got = [(b.decode(), m.redelivered) for m, _p, b in drain(ch, q)]
    assert got == [("high", True), ("mid", True), ("mid2", False), ("low", True), ("low2", False)]


@pytest.mark.parametrize("args", [None, {"x-max-priority": 0}], ids=["plain-queue", "max-priority-0"])
def test_priority_ignored_without_priority_levels(ch, cleanup, uid, args):
    q = cleanup.queue(f"{uid}.q")
    ch.queue_declare(q, arguments=args)
    publish_all(ch, q, MIXED)
    assert [b.decode() for _m, _p, b in drain(ch, q)] == [b for b, _p in MIXED]


def test_x_max_priority_is_part_of_queue_equivalence(conn, ch, cleanup, uid):
    q = cleanup.queue(f"{uid}.q")
    ch.queue_declare(q, arguments={"x-max-priority": 10})
    ch.queue_declare(q, arguments={"x-max-priority": 10})
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
        conn.channel().queue_declare(q, arguments={"x-max-priority": 5})
    assert (raised.value.reply_code, raised.value.reply_text) == (
        406, f"PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue '{q}' in vhost '/': "
             "received '5' but current is '10'")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
        conn.channel().queue_declare(f"{uid}.bad", arguments={"x-max-priority": -1})
    assert (raised.value.reply_code, raised.value.reply_text) == (
        406, f"PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue '{uid}.bad' in vhost '/': "
             "{value_negative,-1}")


def test_kombu_max_priority_queue(broker, cleanup, uid, pika_connect):
    exchange = Exchange(cleanup.exchange(f"{uid}.x"), type="direct", durable=False)
    queue = Queue(cleanup.queue(f"{uid}.q"), exchange=exchange, routing_key="jobs", durable=False,
                  max_priority=10)
    sent = [("low", 1), ("none", None), ("top", 10), ("over", 200), ("mid", 5), ("low2", 1)]
    received = []
    kconn = Connection(broker.url, connect_timeout=10, transport_options={"confirm_publish": True})
    try:
        with kconn.channel() as channel:
            queue(channel).declare()
            producer = Producer(channel, exchange=exchange, serializer="json")
            for name, priority in sent:
                kwargs = {} if priority is None else {"priority": priority}
                producer.publish({"name": name}, routing_key="jobs", retry=False, **kwargs)

            def on_message(body, message):
                received.append((body["name"], message.properties.get("priority")))
                message.ack()

            with Consumer(channel, queues=[queue], callbacks=[on_message], accept=["json"],
                          prefetch_count=1):
                while len(received) < len(sent):
                    try:
                        kconn.drain_events(timeout=5)
                    except socket.timeout:
                        break
    finally:
        kconn.release()
    # kombu sends priority 0 when none is given
    assert received == [("top", 10), ("over", 200), ("mid", 5), ("low", 1), ("low2", 1), ("none", 0)]
    # kombu declared the queue with x-max-priority 10
    pch = pika_connect().channel()
    pch.queue_declare(queue.name, arguments={"x-max-priority": 10})
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
        pch.queue_declare(queue.name)
    assert raised.value.reply_code == 406
    assert "inequivalent arg 'x-max-priority'" in raised.value.reply_text


# --- consumer priorities ----------------------------------------------------------------

class Delivery(NamedTuple):
    consumer: str
    body: str
    tag: int
    redelivered: bool


def consumers(conn, q, specs, got):
    """One channel per consumer, recording Deliveries in got: specs is
    [(name, x-priority or None, prefetch)].  Returns {name: channel}."""
    chans = {}
    for name, priority, prefetch in specs:
        cch = conn.channel()
        cch.basic_qos(prefetch_count=prefetch)
        args = None if priority is None else {"x-priority": priority}

        def on_message(_c, m, _p, b, name=name):
            got.append(Delivery(name, b.decode(), m.delivery_tag, m.redelivered))

        cch.basic_consume(q, on_message, arguments=args)
        chans[name] = cch
    return chans


def who(got):
    return [(d.consumer, d.body) for d in got]


def cancel(chan):
    (tag,) = chan.consumer_tags
    chan.basic_cancel(tag)


@pytest.mark.parametrize("order", ["low-first", "high-first"])
def test_higher_priority_consumer_gets_everything(conn, ch, cleanup, uid, order):
    q = cleanup.queue(f"{uid}.q")
    ch.queue_declare(q)
    specs = [("low", 1, 100), ("high", 10, 100)]
    if order == "high-first":
        specs.reverse()
    got = []
    consumers(conn, q, specs, got)
    for i in range(6):
        publish(ch, q, str(i))
    pump_until(conn, lambda: len(got) == 6)
    assert who(got) == [("high", str(i)) for i in range(6)]


def test_default_consumer_priority_is_zero(conn, ch, cleanup, uid):
    q = cleanup.queue(f"{uid}.q")
    ch.queue_declare(q)
    got = []
    consumers(conn, q, [("negative", -1, 100), ("default", None, 100)], got)
    for i in range(3):
        publish(ch, q, str(i))
    pump_until(conn, lambda: len(got) == 3)
    consumers(conn, q, [("one", 1, 100)], got)
    for i in range(3, 6):
        publish(ch, q, str(i))
    pump_until(conn, lambda: len(got) == 6)
    assert who(got) == [("default", "0"), ("default", "1"), ("default", "2"),
                        ("one", "3"), ("one", "4"), ("one", "5")]


def test_lower_priority_consumer_gets_messages_while_higher_is_blocked(conn, ch, cleanup, uid):
    q = cleanup.queue(f"{uid}.q")
    ch.queue_declare(q)
    got = []
    chans = consumers(conn, q, [("low", 1, 100), ("high", 10, 1)], got)
    for i in range(5):
        publish(ch, q, str(i))
    pump_until(conn, lambda: len(got) == 5)
    # (deliveries on different channels may reach the client in any order)
    assert sorted(who(got)) == [("high", "0"), ("low", "1"), ("low", "2"), ("low", "3"), ("low", "4")]
    # once the high one has room again it is preferred
    (high,) = [d for d in got if d.consumer == "high"]
    chans["high"].basic_ack(high.tag)
    pump(conn, 0.1)
    publish(ch, q, "5")
    pump_until(conn, lambda: len(got) == 6)
    assert who(got)[-1] == ("high", "5")


# --- single active consumer ---------------------------------------------------------

def sac_queue(ch, cleanup, uid):
    q = cleanup.queue(f"{uid}.q")
    ch.queue_declare(q, arguments={"x-single-active-consumer": True})
    return q


def test_sac_only_the_first_consumer_receives(conn, ch, cleanup, uid):
    q = sac_queue(ch, cleanup, uid)
    got = []
    consumers(conn, q, [("c1", None, 100), ("c2", None, 100), ("c3", None, 100)], got)
    assert consumer_count(ch, q) == 3  # waiting consumers count too
    for i in range(5):
        publish(ch, q, str(i))
    pump_until(conn, lambda: len(got) == 5)
    pump(conn, 0.1)
    assert who(got) == [("c1", str(i)) for i in range(5)]


def test_sac_first_consumer_wins_whatever_the_priorities(conn, ch, cleanup, uid):
    """Among waiting consumers x-priority decides who takes over; it does not
    take the queue away from the active one."""
    q = sac_queue(ch, cleanup, uid)
    got = []
    chans = consumers(conn, q, [("c1", 1, 100), ("c3", 5, 100), ("c2", 10, 100)], got)
    publish(ch, q, "a")
    pump_until(conn, lambda: got)
    chans["c1"].basic_ack(got[0].tag)
    cancel(chans["c1"])
    publish(ch, q, "b")
    pump_until(conn, lambda: len(got) == 2)
    pump(conn, 0.1)
    # c2 (x-priority 10) beats c3 (x-priority 5), although c3 subscribed first
    assert who(got) == [("c1", "a"), ("c2", "b")]


def test_sac_cancel_hands_over_in_subscription_order(conn, ch, cleanup, uid):
    q = sac_queue(ch, cleanup, uid)
    got = []
    chans = consumers(conn, q, [("c1", None, 100), ("c2", None, 100), ("c3", None, 100)], got)
    for step, name in enumerate(("c1", "c2", "c3")):
        publish(ch, q, f"m{step}")
        pump_until(conn, lambda: len(got) == step + 1)
        assert who(got)[-1] == (name, f"m{step}")
        chans[name].basic_ack(got[-1].tag)
        cancel(chans[name])
        assert consumer_count(ch, q) == 2 - step
    publish(ch, q, "nobody")
    pump(conn, 0.1)
    assert len(got) == 3
    assert message_count(ch, q) == 1


def test_sac_cancel_keeps_unacked_messages_on_the_cancelled_channel(conn, ch, cleanup, uid):
    q = sac_queue(ch, cleanup, uid)
    got = []
    chans = consumers(conn, q, [("c1", None, 10), ("c2", None, 10)], got)
    for i in range(3):
        publish(ch, q, f"a{i}")
    pump_until(conn, lambda: len(got) == 3)
    c1 = chans["c1"]
    cancel(c1)
    # c1's three unacked messages stay with c1's channel: not in the queue,
    # not handed to c2
    assert message_count(ch, q) == 0
    assert consumer_count(ch, q) == 1
    for i in range(2):
        publish(ch, q, f"b{i}")
    pump_until(conn, lambda: len(got) == 5)
    pump(conn, 0.1)
    assert who(got) == [("c1", "a0"), ("c1", "a1"), ("c1", "a2"), ("c2", "b0"), ("c2", "b1")]
    assert not any(d.redelivered for d in got)
    # they can still be acked there
    c1.basic_ack(got[0].tag)
    # closing the channel requeues the rest to the new active consumer
    c1.close()
    pump_until(conn, lambda: len(got) == 7)
    assert [(d.consumer, d.body, d.redelivered) for d in got[5:]] == [
        ("c2", "a1", True), ("c2", "a2", True)]
    assert message_count(ch, q) == 0


@pytest.mark.parametrize("how", ["channel", "connection"])
def test_sac_close_requeues_unacked_to_the_next_consumer(pika_connect, conn, ch, cleanup, uid, how):
    q = sac_queue(ch, cleanup, uid)
    first_conn = pika_connect()
    held = []
    first = consumers(first_conn, q, [("c1", None, 10)], held)["c1"]
    got = []
    consumers(conn, q, [("c2", None, 10)], got)
    for i in range(3):
        publish(ch, q, str(i))
    pump_until(first_conn, lambda: len(held) == 3)  # none of them acked
    pump(conn, 0.1)
    assert who(held) == [("c1", "0"), ("c1", "1"), ("c1", "2")] and got == []
    if how == "channel":
        first.close()
    else:
        first_conn.close()
    publish(ch, q, "3")
    pump_until(conn, lambda: len(got) == 4)
    # requeued in their original place, ahead of the newer message
    assert [(d.consumer, d.body, d.redelivered) for d in got] == [
        ("c2", "0", True), ("c2", "1", True), ("c2", "2", True), ("c2", "3", False)]
    assert consumer_count(ch, q) == 1


def test_sac_active_consumer_blocked_by_prefetch_others_get_nothing(conn, ch, cleanup, uid):
    q = sac_queue(ch, cleanup, uid)
    got = []
    chans = consumers(conn, q, [("c1", None, 1), ("c2", None, 100)], got)
    for i in range(4):
        publish(ch, q, str(i))
    pump_until(conn, lambda: got)
    pump(conn, 0.2)
    assert who(got) == [("c1", "0")]
    assert message_count(ch, q) == 3
    chans["c1"].basic_ack(got[0].tag)
    pump_until(conn, lambda: len(got) == 2)
    assert who(got)[1] == ("c1", "1")


def test_sac_basic_get_still_works(conn, ch, cleanup, uid):
    q = sac_queue(ch, cleanup, uid)
    got = []
    consumers(conn, q, [("c1", None, 1)], got)
    for i in range(3):
        publish(ch, q, str(i))
    pump_until(conn, lambda: got)
    wait_count(ch, q, 2)
    method, _p, body = ch.basic_get(q, auto_ack=True)
    assert body == b"1" and method.message_count == 1


def test_sac_refuses_exclusive_consume(conn, ch, cleanup, uid):
    q = sac_queue(ch, cleanup, uid)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
        conn.channel().basic_consume(q, lambda *_a: None, exclusive=True)
    assert (raised.value.reply_code, raised.value.reply_text) == (
        403, f"ACCESS_REFUSED - queue '{q}' in vhost '/' in exclusive use")
    assert conn.is_open


@pytest.mark.parametrize("value,kind", [("yes", "longstr"), (1, "signedint")])
def test_sac_argument_must_be_a_boolean(conn, uid, value, kind):
    q = f"{uid}.q"
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
        conn.channel().queue_declare(q, arguments={"x-single-active-consumer": value})
    assert (raised.value.reply_code, raised.value.reply_text) == (
        406, f"PRECONDITION_FAILED - invalid arg 'x-single-active-consumer' for queue '{q}' "
             f"in vhost '/': {{unacceptable_type,{kind}}}")


# --- single active consumer on a quorum queue ------------------------------------------

def test_quorum_sac_counts_only_the_active_consumer_and_hands_over_on_cancel(
        conn, ch, cleanup, uid):
    """Unlike a classic queue, a quorum queue with single active consumer
    counts only the active consumer in declare-ok; on cancel the next one
    takes over while the cancelled one still holds its unacked message,
    which its channel can still ack."""
    q = cleanup.queue(f"{uid}.q")
    args = {"x-queue-type": "quorum", "x-single-active-consumer": True}
    ch.queue_declare(q, durable=True, arguments=args)
    got = []
    chans = consumers(conn, q, [("c1", None, 10), ("c2", None, 10)], got)
    assert ch.queue_declare(q, durable=True, arguments=args, passive=True).method.consumer_count == 1
    publish(ch, q, "m1")
    pump_until(conn, lambda: len(got) == 1)
    cancel(chans["c1"])
    publish(ch, q, "m2")
    pump_until(conn, lambda: len(got) == 2)
    assert who(got) == [("c1", "m1"), ("c2", "m2")]
    chans["c1"].basic_ack(got[0].tag)
    chans["c2"].basic_ack(got[1].tag)
    pump(conn, 0.2)
    assert message_count(ch, q) == 0
