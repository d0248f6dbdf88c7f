"""The replies a pika application sees for common mistakes: which error
closes the channel and which the connection, with RabbitMQ's reply code and
text, byte for byte.

Each case is checked against RabbitMQ 3.10 as well (see
rabbitmq-as-warren.sh); `{q}` and `{x}` stand for the case's own queue and
exchange names.
"""

from __future__ import annotations

import time
import uuid

import pika
import pika.exceptions
import pytest

from brokerctl import pika_params

LOCKED = ("cannot obtain exclusive access to locked queue '{q}' in vhost '/'. It could be "
          "originally declared on another connection or the exclusive property value does "
          "not match that of the original declaration.")


def settle(ch):
    """Lets an asynchronous error (after a publish or an ack) arrive: the
    next synchronous method fails with it instead of succeeding."""
    time.sleep(0.2)
    ch.basic_qos(prefetch_count=1)


def fill(ch, q, n):
    for i in range(n):
        ch.basic_publish("", q, str(i).encode())


def ack_unknown_tag(c, ch, q, x, params):
    ch.basic_ack(99)
    settle(ch)


def ack_twice(c, ch, q, x, params):
    ch.queue_declare(q)
    fill(ch, q, 1)
    method, _, _ = ch.basic_get(q)
    ch.basic_ack(method.delivery_tag)
    ch.basic_ack(method.delivery_tag)
    settle(ch)


def passive_missing_queue(c, ch, q, x, params):
    ch.queue_declare(q, passive=True)


def passive_missing_exchange(c, ch, q, x, params):
    ch.exchange_declare(x, passive=True)


def redeclare_durable(c, ch, q, x, params):
    ch.queue_declare(q)
    ch.queue_declare(q, durable=True)


def redeclare_argument(c, ch, q, x, params):
    ch.queue_declare(q, arguments={"x-max-length": 10})
    ch.queue_declare(q, arguments={"x-max-length": 11})


def redeclare_exchange_type(c, ch, q, x, params):
    ch.exchange_declare(x, "direct")
    ch.exchange_declare(x, "fanout")


def publish_to_missing_exchange(c, ch, q, x, params):
    ch.basic_publish(x, "k", b"x")
    settle(ch)


def publish_to_internal_exchange(c, ch, q, x, params):
    ch.exchange_declare(x, "direct", internal=True)
    ch.basic_publish(x, "k", b"x")
    settle(ch)


def publish_as_other_user(c, ch, q, x, params):
    ch.basic_publish("", q, b"x", pika.BasicProperties(user_id="bob"))
    settle(ch)


def publish_bad_expiration(c, ch, q, x, params):
    ch.basic_publish("", q, b"x", pika.BasicProperties(expiration="abc"))
    settle(ch)


def delete_if_unused(c, ch, q, x, params):
    ch.queue_declare(q)
    ch.basic_consume(q, lambda *a: None)
    ch.queue_delete(q, if_unused=True)


def delete_if_empty(c, ch, q, x, params):
    ch.queue_declare(q)
    fill(ch, q, 1)
    ch.queue_delete(q, if_empty=True)


def delete_exchange_if_unused(c, ch, q, x, params):
    ch.exchange_declare(x, "direct")
    ch.queue_declare(q)
    ch.queue_bind(q, x, "k")
    ch.exchange_delete(x, if_unused=True)


def bind_missing_queue(c, ch, q, x, params):
    ch.queue_bind(q, "amq.direct", "k")


def bind_missing_exchange(c, ch, q, x, params):
    ch.queue_declare(q)
    ch.queue_bind(q, x, "k")


def bind_default_exchange(c, ch, q, x, params):
    ch.queue_declare(q)
    ch.queue_bind(q, "", "k")


def delete_default_exchange(c, ch, q, x, params):
    ch.exchange_delete("")


def delete_system_exchange(c, ch, q, x, params):
    ch.exchange_delete("amq.direct")


def declare_reserved_queue(c, ch, q, x, params):
    ch.queue_declare("amq." + q)


def declare_reserved_exchange(c, ch, q, x, params):
    ch.exchange_declare("amq." + x, "direct")


def consume_missing_queue(c, ch, q, x, params):
    ch.basic_consume(q, lambda *a: None)


def consume_exclusive_taken(c, ch, q, x, params):
    ch.queue_declare(q)
    ch.basic_consume(q, lambda *a: None)
    c.channel().basic_consume(q, lambda *a: None, exclusive=True)


def consume_beside_exclusive(c, ch, q, x, params):
    ch.queue_declare(q)
    ch.basic_consume(q, lambda *a: None, exclusive=True)
    c.channel().basic_consume(q, lambda *a: None)


def exclusive_redeclared_shared(c, ch, q, x, params):
    ch.queue_declare(q, exclusive=True)
    ch.queue_declare(q)


def exclusive_from_other_connection(c, ch, q, x, params):
    ch.queue_declare(q, exclusive=True)
    with pika.BlockingConnection(params) as other:
        other.channel().queue_declare(q, passive=True)


def commit_without_tx(c, ch, q, x, params):
    ch.tx_commit()


def confirm_then_tx(c, ch, q, x, params):
    ch.confirm_delivery()
    ch.tx_select()


def tx_then_confirm(c, ch, q, x, params):
    ch.tx_select()
    ch.confirm_delivery()


def bad_x_match(c, ch, q, x, params):
    ch.queue_declare(q)
    ch.queue_bind(q, "amq.headers", arguments={"x-match": "some"})


def zero_x_expires(c, ch, q, x, params):
    ch.queue_declare(q, arguments={"x-expires": 0})


def too_high_x_max_priority(c, ch, q, x, params):
    ch.queue_declare(q, arguments={"x-max-priority": 300})


def negative_x_message_ttl(c, ch, q, x, params):
    ch.queue_declare(q, arguments={"x-message-ttl": -1})


def unknown_queue_type(c, ch, q, x, params):
    ch.queue_declare(q, arguments={"x-queue-type": "bogus"})


def transient_stream(c, ch, q, x, params):
    ch.queue_declare(q, arguments={"x-queue-type": "stream"})


def prefetch_size(c, ch, q, x, params):
    ch.basic_qos(prefetch_size=10)


CHANNEL, CONNECTION = "channel", "connection"

CASES = [
    (ack_unknown_tag, CHANNEL, 406, "PRECONDITION_FAILED - unknown delivery tag 99"),
    (ack_twice, CHANNEL, 406, "PRECONDITION_FAILED - unknown delivery tag 1"),
    (passive_missing_queue, CHANNEL, 404, "NOT_FOUND - no queue '{q}' in vhost '/'"),
    (passive_missing_exchange, CHANNEL, 404, "NOT_FOUND - no exchange '{x}' in vhost '/'"),
    (redeclare_durable, CHANNEL, 406,
     "PRECONDITION_FAILED - inequivalent arg 'durable' for queue '{q}' in vhost '/': "
     "received 'true' but current is 'false'"),
    (redeclare_argument, CHANNEL, 406,
     "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue '{q}' in vhost '/': "
     "received '11' but current is '10'"),
    (redeclare_exchange_type, CHANNEL, 406,
     "PRECONDITION_FAILED - inequivalent arg 'type' for exchange '{x}' in vhost '/': "
     "received 'fanout' but current is 'direct'"),
    (publish_to_missing_exchange, CHANNEL, 404, "NOT_FOUND - no exchange '{x}' in vhost '/'"),
    (publish_to_internal_exchange, CHANNEL, 403,
     "ACCESS_REFUSED - cannot publish to internal exchange '{x}' in vhost '/'"),
    (publish_as_other_user, CHANNEL, 406,
     "PRECONDITION_FAILED - user_id property set to 'bob' but authenticated user was 'guest'"),
    (publish_bad_expiration, CHANNEL, 406, "PRECONDITION_FAILED - invalid expiration 'abc': no_integer"),
    (delete_if_unused, CHANNEL, 406, "PRECONDITION_FAILED - queue '{q}' in vhost '/' in use"),
    (delete_if_empty, CHANNEL, 406, "PRECONDITION_FAILED - queue '{q}' in vhost '/' not empty"),
    (delete_exchange_if_unused, CHANNEL, 406,
     "PRECONDITION_FAILED - exchange '{x}' in vhost '/' in use"),
    (bind_missing_queue, CHANNEL, 404, "NOT_FOUND - no queue '{q}' in vhost '/'"),
    (bind_missing_exchange, CHANNEL, 404, "NOT_FOUND - no exchange '{x}' in vhost '/'"),
    (bind_default_exchange, CHANNEL, 403,
     "ACCESS_REFUSED - operation not permitted on the default exchange"),
    (delete_default_exchange, CHANNEL, 403,
     "ACCESS_REFUSED - operation not permitted on the default exchange"),
    (delete_system_exchange, CHANNEL, 403,
     "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed"),
    (declare_reserved_queue, CHANNEL, 403,
     "ACCESS_REFUSED - queue name 'amq.{q}' contains reserved prefix 'amq.*'"),
    (declare_reserved_exchange, CHANNEL, 403,
     "ACCESS_REFUSED - exchange name 'amq.{x}' contains reserved prefix 'amq.*'"),
    (consume_missing_queue, CHANNEL, 404, "NOT_FOUND - no queue '{q}' in vhost '/'"),
    (consume_exclusive_taken, CHANNEL, 403, "ACCESS_REFUSED - queue '{q}' in vhost '/' in exclusive use"),
    (consume_beside_exclusive, CHANNEL, 403, "ACCESS_REFUSED - queue '{q}' in vhost '/' in exclusive use"),
    (exclusive_redeclared_shared, CHANNEL, 405, "RESOURCE_LOCKED - " + LOCKED),
    (exclusive_from_other_connection, CHANNEL, 405, "RESOURCE_LOCKED - " + LOCKED),
    (commit_without_tx, CHANNEL, 406, "PRECONDITION_FAILED - channel is not transactional"),
    (confirm_then_tx, CHANNEL, 406, "PRECONDITION_FAILED - cannot switch from confirm to tx mode"),
    (tx_then_confirm, CHANNEL, 406, "PRECONDITION_FAILED - cannot switch from tx to confirm mode"),
    (bad_x_match, CHANNEL, 406,
     'PRECONDITION_FAILED - Invalid x-match field value <<"some">>; '
     "expected all, any, all-with-x, or any-with-x"),
    (zero_x_expires, CHANNEL, 406,
     "PRECONDITION_FAILED - invalid arg 'x-expires' for queue '{q}' in vhost '/': {{value_zero,0}}"),
    (too_high_x_max_priority, CHANNEL, 406,
     "PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue '{q}' in vhost '/': "
     "{{max_value_exceeded,300}}"),
    (negative_x_message_ttl, CHANNEL, 406,
     "PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue '{q}' in vhost '/': "
     "{{value_negative,-1}}"),
    (unknown_queue_type, CHANNEL, 406,
     "PRECONDITION_FAILED - invalid arg 'x-queue-type' for queue '{q}' in vhost '/': "
     "\"unsupported queue type 'bogus'\""),
    (transient_stream, CHANNEL, 406,
     "PRECONDITION_FAILED - invalid property 'non-durable' for queue '{q}' in vhost '/'"),
    (prefetch_size, CONNECTION, 540, "NOT_IMPLEMENTED - prefetch_size!=0 (10)"),
]


@pytest.mark.parametrize("action,closes,code,text", CASES, ids=[c[0].__name__ for c in CASES])
def test_reply(broker, action, closes, code, text):
    tag = uuid.uuid4().hex[:8]
    q, x = f"replies-q-{tag}", f"replies-x-{tag}"
    expected = (code, text.format(q=q, x=x))
    params = pika_params(broker)
    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()
        error = {CHANNEL: pika.exceptions.ChannelClosedByBroker,
                 CONNECTION: pika.exceptions.ConnectionClosedByBroker}[closes]
        with pytest.raises(error) as raised:
            action(conn, ch, q, x, params)
        assert (raised.value.reply_code, raised.value.reply_text) == expected
        if closes == CHANNEL:
            # Only the channel closed: the connection goes on working.
            assert conn.is_open
            conn.channel().queue_delete(q)
            conn.channel().exchange_delete(x)
        else:
            assert conn.is_closed
    finally:
        if conn.is_open:
            conn.close()


def test_topic_patterns_route_like_rabbitmq(broker):
    q = f"replies-topic-{uuid.uuid4().hex[:8]}"
    with pika.BlockingConnection(pika_params(broker)) as conn:
        ch = conn.channel()
        ch.queue_declare(q, exclusive=True)
        for pattern in ["a.*.c", "#.z", "x.#.y", "*"]:
            ch.queue_bind(q, "amq.topic", pattern)
        keys = ["a.b.c", "a.c", "z", "q.z", "x.y", "x.1.2.y", "one", "", "a..c", "a.b.c.z"]
        for key in keys:
            ch.basic_publish("amq.topic", key, key.encode())
        got = []
        deadline = time.monotonic() + 5
        while len(got) < 8 and time.monotonic() < deadline:
            method, _, body = ch.basic_get(q, auto_ack=True)
            if method is None:
                time.sleep(0.01)
            else:
                got.append(body.decode())
        assert got == ["a.b.c", "z", "q.z", "x.y", "x.1.2.y", "one", "a..c", "a.b.c.z"]


def test_requeued_messages_keep_their_place(broker):
    """Closing a channel puts its unacked deliveries back ahead of the rest,
    in order and flagged redelivered."""
    q = f"replies-requeue-{uuid.uuid4().hex[:8]}"
    with pika.BlockingConnection(pika_params(broker)) as conn:
        ch = conn.channel()
        ch.queue_declare(q, exclusive=True)
        fill(ch, q, 5)
        ch.basic_qos(prefetch_count=3)
        seen = []
        ch.basic_consume(q, lambda _c, m, _p, _b: seen.append(m.delivery_tag))
        deadline = time.monotonic() + 5
        while len(seen) < 3 and time.monotonic() < deadline:
            conn.process_data_events(0.05)
        assert len(seen) == 3
        ch.close()
        ch = conn.channel()
        got = []
        for _ in range(5):
            method, _, body = ch.basic_get(q, auto_ack=True)
            got.append((body.decode(), method.redelivered))
        assert got == [("0", True), ("1", True), ("2", True), ("3", False), ("4", False)]
