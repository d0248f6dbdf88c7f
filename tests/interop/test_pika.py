"""pika (BlockingConnection) against the broker under test."""

from __future__ import annotations

import random
import threading
import time
import uuid

import pika
import pika.exceptions
import pytest

CONSUME_TIMEOUT = 5  # seconds of inactivity before a consume loop gives up


def drain_get(ch, queue, limit=100):
    """basic_get with auto-ack until empty; returns the bodies."""
    bodies = []
    for _ in range(limit):
        method, _props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            break
        bodies.append(body)
    return bodies


def consume_n(ch, queue, n, auto_ack=True, timeout=CONSUME_TIMEOUT):
    """Consume exactly n messages (or fail) via channel.consume()."""
    got = []
    for method, props, body in ch.consume(queue, auto_ack=auto_ack, inactivity_timeout=timeout):
        if method is None:
            break
        got.append((method, props, body))
        if len(got) == n:
            break
    ch.cancel()
    assert len(got) == n, f"expected {n} messages from {queue!r}, got {len(got)}"
    return got


def wait_until(conn, predicate, timeout=CONSUME_TIMEOUT):
    deadline = time.monotonic() + timeout
    while not predicate():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        conn.process_data_events(time_limit=min(0.1, remaining))
    return True


def wait_queue_gone(conn, queue, timeout=5):
    """Poll with passive declares until the queue is reported missing (404)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ch = conn.channel()
        try:
            ch.queue_declare(queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            # 405: an exclusive queue whose owner is still being cleaned up.
            assert exc.reply_code in (404, 405)
            if exc.reply_code == 404:
                return True
            time.sleep(0.1)
            continue
        ch.close()
        time.sleep(0.1)
    return False


def settle(conn, seconds=0.5):
    """Let the broker push whatever it is going to push."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)


# --------------------------------------------------------------------------
# Basic publish / consume
# --------------------------------------------------------------------------

def test_publish_consume_with_properties(pika_connect, cleanup, uid):
    conn = pika_connect()
    ch = conn.channel()
    q = cleanup.queue(uid)
    ok = ch.queue_declare(q, durable=True)
    assert ok.method.queue == q
    assert ok.method.message_count == 0
    assert ok.method.consumer_count == 0

    headers = {
        "x-str": "value",
        "x-int": 42,
        "x-neg": -7,
        "x-big": 2**40,
        "x-bool": True,
        "x-list": [1, "two"],
        "x-table": {"nested": "yes"},
    }
    props = pika.BasicProperties(
        content_type="application/json",
        content_encoding="utf-8",
        headers=headers,
        delivery_mode=2,
        priority=5,
        correlation_id="corr-123",
        reply_to="reply.queue",
        expiration="60000",
        message_id="msg-1",
        timestamp=1700000000,
        type="greeting",
        app_id="interop",
    )
    body = '{"hello": "wörld"}'.encode()
    ch.basic_publish("", q, body, props)

    [(method, got, got_body)] = consume_n(ch, q, 1, auto_ack=False)
    ch.basic_ack(method.delivery_tag)
    assert got_body == body
    assert method.routing_key == q
    assert method.exchange == ""
    assert method.redelivered is False
    assert got.content_type == "application/json"
    assert got.content_encoding == "utf-8"
    assert got.delivery_mode == 2
    assert got.priority == 5
    assert got.correlation_id == "corr-123"
    assert got.reply_to == "reply.queue"
    assert got.expiration == "60000"
    assert got.message_id == "msg-1"
    assert got.timestamp == 1700000000
    assert got.type == "greeting"
    assert got.app_id == "interop"
    assert got.headers == headers


def test_empty_body_and_binary_body(pika_connect, cleanup, uid):
    ch = pika_connect().channel()
    q = cleanup.queue(uid)
    ch.queue_declare(q)
    binary = bytes(range(256)) * 4
    ch.basic_publish("", q, b"")
    ch.basic_publish("", q, binary)
    got = [body for _, _, body in consume_n(ch, q, 2)]
    assert got == [b"", binary]


def test_basic_get_message_counts(pika_connect, cleanup, uid):
    ch = pika_connect().channel()
    q = cleanup.queue(uid)
    ch.queue_declare(q)
    for i in range(3):
        ch.basic_publish("", q, f"m{i}".encode())
    # basic.get is synchronous, so after it the three publishes are in the queue.
    seen = []
    for expected_left in (2, 1, 0):
        method, props, body = ch.basic_get(q, auto_ack=False)
        assert method is not None
        assert method.message_count == expected_left
        assert method.redelivered is False
        assert method.routing_key == q
        seen.append(body)
        ch.basic_ack(method.delivery_tag)
    assert seen == [b"m0", b"m1", b"m2"]
    assert ch.basic_get(q) == (None, None, None)
    assert ch.queue_declare(q, passive=True).method.message_count == 0


def test_fifo_order_many_messages(pika_connect, cleanup, uid):
    ch = pika_connect().channel()
    q = cleanup.queue(uid)
    ch.queue_declare(q)
    n = 500
    for i in range(n):
        ch.basic_publish("", q, str(i).encode())
    got = [int(body) for _, _, body in consume_n(ch, q, n)]
    assert got == list(range(n))


# --------------------------------------------------------------------------
# Acknowledgements
# --------------------------------------------------------------------------

def test_nack_requeue_sets_redelivered(pika_connect, cleanup, uid):
    ch = pika_connect().channel()
    q = cleanup.queue(uid)
    ch.queue_declare(q)
    ch.basic_publish("", q, b"payload")

    method, _, body = ch.basic_get(q)
    assert body == b"payload" and method.redelivered is False
    ch.basic_nack(method.delivery_tag, requeue=True)

    method, _, body = ch.basic_get(q)
    assert body == b"payload"
    assert method.redelivered is True
    ch.basic_ack(method.delivery_tag)
    assert ch.basic_get(q) == (None, None, None)


def test_reject_requeue_and_reject_drop(pika_connect, cleanup, uid):
    ch = pika_connect().channel()
    q = cleanup.queue(uid)
    ch.queue_declare(q)
    ch.basic_publish("", q, b"r")

    [(method, _, body)] = consume_n(ch, q, 1, auto_ack=False)
    assert method.redelivered is False
    ch.basic_reject(method.delivery_tag, requeue=True)

    [(method, _, body)] = consume_n(ch, q, 1, auto_ack=False)
    assert body == b"r" and method.redelivered is True
    ch.basic_reject(method.delivery_tag, requeue=False)  # dropped (no DLX)

    assert ch.basic_get(q) == (None, None, None)
    assert ch.queue_declare(q, passive=True).method.message_count == 0


def test_nack_multiple_requeues_all(pika_connect, cleanup, uid):
    ch = pika_connect().channel()
    q = cleanup.queue(uid)
    ch.queue_declare(q)
    for i in range(3):
        ch.basic_publish("", q, f"n{i}".encode())
    got = consume_n(ch, q, 3, auto_ack=False)
    ch.basic_nack(got[-1][0].delivery_tag, multiple=True, requeue=True)

    again = consume_n(ch, q, 3, auto_ack=True)
    assert sorted(body for _, _, body in again) == [b"n0", b"n1", b"n2"]
    assert all(m.redelivered for m, _, _ in again)


def test_unacked_messages_requeued_when_channel_closes(pika_connect, cleanup, uid):
    conn = pika_connect()
    ch = conn.channel()
    q = cleanup.queue(uid)
    ch.queue_declare(q)
    ch.basic_publish("", q, b"a")
    ch.basic_publish("", q, b"b")
    method, _, body = ch.basic_get(q)
    assert body == b"a"
    ch.close()  # never acked -> back to the queue, marked redelivered

    ch2 = conn.channel()
    m1, _, b1 = ch2.basic_get(q, auto_ack=True)
    m2, _, b2 = ch2.basic_get(q, auto_ack=True)
    assert {b1, b2} == {b"a", b"b"}
    redelivered = {b1: m1.redelivered, b2: m2.redelivered}
    assert redelivered == {b"a": True, b"b": False}


def test_ack_unknown_delivery_tag_closes_channel_406(pika_connect, uid):
    conn = pika_connect()
    ch = conn.channel()
    ch.basic_ack(delivery_tag=999)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
        # the close arrives asynchronously; any synchronous call surfaces it
        ch.queue_declare("", exclusive=True)
    assert exc.value.reply_code == 406
    assert exc.value.reply_text.startswith("PRECONDITION_FAILED")
    assert conn.is_open  # only the channel is closed


# --------------------------------------------------------------------------
# Publisher confirms
# --------------------------------------------------------------------------

def test_publisher_confirms(pika_connect, cleanup, uid):
    ch = pika_connect().channel()
    q = cleanup.queue(uid)
    ch.queue_declare(q)
    ch.confirm_delivery()
    for i in range(20):
        # raises NackError / UnroutableError on failure
        ch.basic_publish("", q, f"c{i}".encode(),
                         pika.BasicProperties(delivery_mode=2))
    assert ch.queue_declare(q, passive=True).method.message_count == 20


def test_confirm_mandatory_unroutable_raises(pika_connect, uid):
    ch = pika_connect().channel()
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError) as exc:
        ch.basic_publish("", f"{uid}.nowhere", b"lost", mandatory=True)
    [returned] = exc.value.messages
    assert returned.method.reply_code == 312
    assert returned.method.reply_text == "NO_ROUTE"
    assert returned.method.routing_key == f"{uid}.nowhere"
    assert returned.body == b"lost"
    # not mandatory: silently dropped, still confirmed
    ch.basic_publish("", f"{uid}.nowhere", b"dropped", mandatory=False)
    assert ch.is_open


def test_mandatory_return_without_confirms(pika_connect, uid):
    conn = pika_connect()
    ch = conn.channel()
    returned = []
    ch.add_on_return_callback(lambda _ch, method, props, body: returned.append((method, body)))
    ch.basic_publish("", f"{uid}.nowhere", b"bounce", mandatory=True)
    assert wait_until(conn, lambda: returned)
    method, body = returned[0]
    assert (method.reply_code, method.reply_text, body) == (312, "NO_ROUTE", b"bounce")


def test_publish_to_missing_exchange_closes_channel_404(pika_connect, uid):
    conn = pika_connect()
    ch = conn.channel()
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
        ch.basic_publish(f"{uid}.missing-exchange", "rk", b"x")
    assert exc.value.reply_code == 404
    assert exc.value.reply_text == f"NOT_FOUND - no exchange '{uid}.missing-exchange' in vhost '/'"
    assert conn.is_open


# --------------------------------------------------------------------------
# Exchange types
# --------------------------------------------------------------------------

def test_direct_exchange(pika_connect, cleanup, uid):
    ch = pika_connect().channel()
    ex = cleanup.exchange(f"{uid}.direct")
    ch.exchange_declare(ex, exchange_type="direct")
    qa, qb = cleanup.queue(f"{uid}.a"), cleanup.queue(f"{uid}.b")
    for q in (qa, qb):
        ch.queue_declare(q)
    ch.queue_bind(qa, ex, routing_key="red")
    ch.queue_bind(qb, ex, routing_key="green")
    ch.queue_bind(qb, ex, routing_key="red")
    ch.confirm_delivery()
    ch.basic_publish(ex, "red", b"r")
    ch.basic_publish(ex, "green", b"g")
    ch.basic_publish(ex, "blue", b"b")  # unroutable, dropped
    assert drain_get(ch, qa) == [b"r"]
    assert drain_get(ch, qb) == [b"r", b"g"]

    ch.queue_unbind(qb, ex, routing_key="red")
    ch.basic_publish(ex, "red", b"r2")
    assert drain_get(ch, qa) == [b"r2"]
    assert drain_get(ch, qb) == []


def test_fanout_exchange(pika_connect, cleanup, uid):
    ch = pika_connect().channel()
    ex = cleanup.exchange(f"{uid}.fanout")
    ch.exchange_declare(ex, exchange_type="fanout")
    queues = [cleanup.queue(f"{uid}.{i}") for i in range(3)]
    for q in queues:
        ch.queue_declare(q)
        ch.queue_bind(q, ex)  # routing key ignored
    ch.confirm_delivery()
    ch.basic_publish(ex, "whatever", b"broadcast")
    for q in queues:
        assert drain_get(ch, q) == [b"broadcast"]


def test_topic_exchange_wildcards(pika_connect, cleanup, uid):
    ch = pika_connect().channel()
    ex = cleanup.exchange(f"{uid}.topic")
    ch.exchange_declare(ex, exchange_type="topic")
    patterns = {
        "star": "stock.*.nyse",
        "hash_tail": "stock.#",
        "hash_mid": "stock.#.nyse",
        "all": "#",
        "exact": "stock.usd.nyse",
        "two_words": "*.*",
        "hash_only_tail": "#.nyse",
    }
    queues = {}
    for name, pattern in patterns.items():
        q = cleanup.queue(f"{uid}.{name}")
        ch.queue_declare(q)
        ch.queue_bind(q, ex, routing_key=pattern)
        queues[name] = q
    ch.confirm_delivery()
    keys = ["stock.usd.nyse", "stock.eur.nasdaq", "stock", "stock.nyse",
            "stock.a.b.nyse", "weather.report", "nyse", ""]
    for key in keys:
        ch.basic_publish(ex, key, key.encode())

    expected = {
        "star": ["stock.usd.nyse"],
        "hash_tail": ["stock.usd.nyse", "stock.eur.nasdaq", "stock", "stock.nyse", "stock.a.b.nyse"],
        "hash_mid": ["stock.usd.nyse", "stock.nyse", "stock.a.b.nyse"],
        "all": keys,
        "exact": ["stock.usd.nyse"],
        "two_words": ["stock.nyse", "weather.report"],
        "hash_only_tail": ["stock.usd.nyse", "stock.nyse", "stock.a.b.nyse", "nyse"],
    }
    for name, q in queues.items():
        got = [b.decode() for b in drain_get(ch, q)]
        assert got == expected[name], f"pattern {patterns[name]!r}"


def test_headers_exchange_all_and_any(pika_connect, cleanup, uid):
    ch = pika_connect().channel()
    ex = cleanup.exchange(f"{uid}.headers")
    ch.exchange_declare(ex, exchange_type="headers")
    q_all, q_any = cleanup.queue(f"{uid}.all"), cleanup.queue(f"{uid}.any")
    ch.queue_declare(q_all)
    ch.queue_declare(q_any)
    ch.queue_bind(q_all, ex, arguments={"x-match": "all", "format": "pdf", "type": "report"})
    ch.queue_bind(q_any, ex, arguments={"x-match": "any", "format": "pdf", "type": "report"})
    ch.confirm_delivery()

    def pub(body, headers):
        ch.basic_publish(ex, "ignored", body, pika.BasicProperties(headers=headers))

    pub(b"both", {"format": "pdf", "type": "report"})
    pub(b"both+extra", {"format": "pdf", "type": "report", "lang": "en"})
    pub(b"format-only", {"format": "pdf"})
    pub(b"wrong-value", {"format": "zip", "type": "log"})
    pub(b"no-headers", None)

    assert drain_get(ch, q_all) == [b"both", b"both+extra"]
    assert drain_get(ch, q_any) == [b"both", b"both+extra", b"format-only"]


def test_exchange_redeclare_with_different_type_fails_406(pika_connect, cleanup, uid):
    ch = pika_connect().channel()
    ex = cleanup.exchange(f"{uid}.ex")
    ch.exchange_declare(ex, exchange_type="direct")
    ch.exchange_declare(ex, exchange_type="direct")  # equivalent: fine
    ch.exchange_declare(ex, passive=True)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
        ch.exchange_declare(ex, exchange_type="fanout")
    assert exc.value.reply_code == 406
    assert exc.value.reply_text.startswith(
        f"PRECONDITION_FAILED - inequivalent arg 'type' for exchange '{ex}' in vhost '/'")


# --------------------------------------------------------------------------
# QoS
# --------------------------------------------------------------------------

@pytest.mark.parametrize("prefetch", [1, 2])
def test_qos_prefetch_is_honoured(pika_connect, cleanup, uid, prefetch):
    conn = pika_connect()
    ch = conn.channel()
    q = cleanup.queue(uid)
    ch.queue_declare(q)
    for i in range(5):
        ch.basic_publish("", q, f"p{i}".encode())
    ch.basic_qos(prefetch_count=prefetch)

    delivered = []
    ch.basic_consume(q, lambda _c, method, _p, body: delivered.append((method.delivery_tag, body)))
    assert wait_until(conn, lambda: len(delivered) >= prefetch)
    settle(conn)
    assert len(delivered) == prefetch, "broker exceeded prefetch_count with unacked messages"

    ch.basic_ack(delivered[0][0])
    assert wait_until(conn, lambda: len(delivered) >= prefetch + 1)
    settle(conn)
    assert len(delivered) == prefetch + 1

    # keep acking everything delivered so far until the queue is drained
    deadline = time.monotonic() + CONSUME_TIMEOUT
    acked = 1  # delivered[0] was acked above
    while len(delivered) < 5 and time.monotonic() < deadline:
        if len(delivered) > acked:
            assert len(delivered) - acked <= prefetch
            ch.basic_ack(delivered[-1][0], multiple=True)
            acked = len(delivered)
        conn.process_data_events(time_limit=0.05)
    assert [b for _, b in delivered] == [f"p{i}".encode() for i in range(5)]


def test_two_consumers_round_robin(pika_connect, cleanup, uid):
    conn = pika_connect()
    ch = conn.channel()
    q = cleanup.queue(uid)
    ch.queue_declare(q)
    ch.basic_qos(prefetch_count=1)
    got = {"a": [], "b": []}

    def make(name):
        def cb(channel, method, _props, body):
            got[name].append(body)
            channel.basic_ack(method.delivery_tag)
        return cb

    ch.basic_consume(q, make("a"), consumer_tag="ctag-a")
    ch.basic_consume(q, make("b"), consumer_tag="ctag-b")
    assert ch.queue_declare(q, passive=True).method.consumer_count == 2
    for i in range(10):
        ch.basic_publish("", q, str(i).encode())
    assert wait_until(conn, lambda: len(got["a"]) + len(got["b"]) == 10)
    assert got["a"] and got["b"], f"one consumer starved: {got}"
    assert sorted(int(b) for b in got["a"] + got["b"]) == list(range(10))

    ch.basic_cancel("ctag-a")
    assert ch.queue_declare(q, passive=True).method.consumer_count == 1


# --------------------------------------------------------------------------
# Queue management
# --------------------------------------------------------------------------

def test_passive_declare_missing_queue_404(pika_connect, uid):
    conn = pika_connect()
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
        ch.queue_declare(f"{uid}.missing", passive=True)
    assert exc.value.reply_code == 404
    assert exc.value.reply_text == f"NOT_FOUND - no queue '{uid}.missing' in vhost '/'"
    assert ch.is_closed
    assert conn.is_open
    # the connection stays usable
    ch2 = conn.channel()
    assert ch2.queue_declare("", exclusive=True).method.queue.startswith("amq.gen-")


def test_queue_redeclare_with_different_durability_fails_406(pika_connect, cleanup, uid):
    ch = pika_connect().channel()
    q = cleanup.queue(uid)
    ch.queue_declare(q, durable=True)
    ch.queue_declare(q, durable=True)  # equivalent: fine
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
        ch.queue_declare(q, durable=False)
    assert exc.value.reply_code == 406
    assert exc.value.reply_text.startswith(
        f"PRECONDITION_FAILED - inequivalent arg 'durable' for queue '{q}' in vhost '/'")


def test_exclusive_queue(pika_connect, uid):
    owner = pika_connect()
    other = pika_connect()
    q = f"{uid}.exclusive"
    owner.channel().queue_declare(q, exclusive=True)

    ch = other.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
        ch.basic_consume(q, lambda *a: None)
    assert exc.value.reply_code == 405
    assert exc.value.reply_text.startswith(
        f"RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{q}' in vhost '/'")

    owner.close()  # exclusive queue goes away with its connection
    assert wait_queue_gone(other, q), "exclusive queue survived its connection"


def test_server_named_queue(pika_connect):
    ch = pika_connect().channel()
    ok = ch.queue_declare("", exclusive=True)
    name = ok.method.queue
    assert name.startswith("amq.gen-") and len(name) > len("amq.gen-")
    ch.basic_publish("", name, b"to-self")
    assert drain_get(ch, name) == [b"to-self"]


def test_queue_purge_and_delete_return_counts(pika_connect, cleanup, uid):
    conn = pika_connect()
    ch = conn.channel()
    q = cleanup.queue(uid)
    ch.queue_declare(q)
    ch.confirm_delivery()  # counts are only guaranteed to include confirmed messages
    for i in range(4):
        ch.basic_publish("", q, b"x")
    assert ch.queue_declare(q, passive=True).method.message_count == 4
    assert ch.queue_purge(q).method.message_count == 4
    assert ch.queue_declare(q, passive=True).method.message_count == 0

    for i in range(2):
        ch.basic_publish("", q, b"y")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
        ch.queue_delete(q, if_empty=True)
    assert exc.value.reply_code == 406
    assert exc.value.reply_text.startswith("PRECONDITION_FAILED")

    ch = conn.channel()
    ch.confirm_delivery()
    assert ch.queue_delete(q).method.message_count == 2
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
        ch.queue_declare(q, passive=True)
    assert exc.value.reply_code == 404


def test_auto_delete_queue_removed_after_last_consumer(pika_connect, uid):
    conn = pika_connect()
    ch = conn.channel()
    q = f"{uid}.autodelete"
    ch.queue_declare(q, auto_delete=True)
    ch.confirm_delivery()
    ch.basic_publish("", q, b"kept while unused")
    assert ch.queue_declare(q, passive=True).method.message_count == 1
    tag = ch.basic_consume(q, lambda *a: None)
    ch.basic_cancel(tag)
    assert wait_queue_gone(conn, q), "auto-delete queue survived its last consumer"


def test_queue_delete_cancels_consumers(pika_connect, uid):
    conn = pika_connect()
    ch = conn.channel()
    q = f"{uid}.doomed"
    ch.queue_declare(q)
    cancelled = []
    ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    tag = ch.basic_consume(q, lambda *a: None)
    other = conn.channel()
    assert other.queue_delete(q).method.message_count == 0
    # consumer_cancel_notify: the broker sends basic.cancel to the consumer
    assert wait_until(conn, lambda: cancelled)
    assert cancelled == [tag]
    assert ch.is_open


# --------------------------------------------------------------------------
# Transactions
# --------------------------------------------------------------------------

def test_tx_commit_and_rollback(pika_connect, cleanup, uid):
    ch = pika_connect().channel()
    q = cleanup.queue(uid)
    ch.queue_declare(q)
    ch.tx_select()
    ch.basic_publish("", q, b"rolled-back")
    ch.tx_rollback()
    ch.basic_publish("", q, b"committed")
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    ch.tx_commit()
    assert drain_get(ch, q) == [b"committed"]


# --------------------------------------------------------------------------
# Large messages
# --------------------------------------------------------------------------

@pytest.mark.parametrize("size", [131_072 - 8, 1024 * 1024, 5 * 1024 * 1024 + 3])
def test_large_message_round_trip(pika_connect, cleanup, uid, size):
    ch = pika_connect().channel()
    q = cleanup.queue(uid)
    ch.queue_declare(q)
    body = random.Random(size).randbytes(size)
    ch.confirm_delivery()
    ch.basic_publish("", q, body, pika.BasicProperties(content_type="application/octet-stream"))
    [(method, props, got)] = consume_n(ch, q, 1, timeout=20)
    assert len(got) == size
    assert got == body
    assert props.content_type == "application/octet-stream"


# --------------------------------------------------------------------------
# RPC
# --------------------------------------------------------------------------

def test_rpc_reply_to_server_named_exclusive_queue(pika_connect, cleanup, uid):
    rpc_queue = cleanup.queue(f"{uid}.rpc")
    server_conn = pika_connect()
    server = server_conn.channel()
    server.queue_declare(rpc_queue)
    server.basic_qos(prefetch_count=1)
    stop = threading.Event()
    errors = []

    def serve():
        try:
            for method, props, body in server.consume(rpc_queue, inactivity_timeout=0.2):
                if stop.is_set():
                    break
                if method is None:
                    continue
                result = str(int(body) * 2).encode()
                server.basic_publish("", props.reply_to, result,
                                     pika.BasicProperties(correlation_id=props.correlation_id))
                server.basic_ack(method.delivery_tag)
            server.cancel()
        except Exception as exc:  # surfaced in the main thread
            errors.append(exc)

    # the consumer is registered before the thread starts
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        client_conn = pika_connect()
        client = client_conn.channel()
        reply_queue = client.queue_declare("", exclusive=True).method.queue
        assert reply_queue.startswith("amq.gen-")
        replies = {}

        def on_reply(_ch, method, props, body):
            replies[props.correlation_id] = body

        client.basic_consume(reply_queue, on_reply, auto_ack=True)
        calls = {}
        for n in (1, 7, 21):
            corr = str(uuid.uuid4())
            calls[corr] = n
            client.basic_publish("", rpc_queue, str(n).encode(),
                                 pika.BasicProperties(reply_to=reply_queue, correlation_id=corr))
        assert wait_until(client_conn, lambda: len(replies) == len(calls), timeout=10), replies
        assert {c: int(b) for c, b in replies.items()} == {c: 2 * n for c, n in calls.items()}
    finally:
        stop.set()
        t.join(timeout=5)
    assert not errors, errors


# --------------------------------------------------------------------------
# Connection level
# --------------------------------------------------------------------------

def test_server_properties_and_many_channels(pika_connect):
    conn = pika_connect()
    props = conn._impl.server_properties
    caps = props.get("capabilities", {})
    for cap in ("publisher_confirms", "basic.nack", "consumer_cancel_notify"):
        assert caps.get(cap) is True, f"server capability {cap} missing: {caps}"
    channels = [conn.channel() for _ in range(50)]
    for ch in channels:
        ch.queue_declare("", exclusive=True)
    for ch in channels:
        ch.close()
    assert conn.is_open


def test_bad_credentials_refused(broker):
    params = pika.ConnectionParameters(
        host=broker.host, port=broker.port,
        credentials=pika.PlainCredentials("guest", "definitely-wrong"),
        connection_attempts=1, socket_timeout=5)
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as exc:
        pika.BlockingConnection(params)
    assert "ACCESS_REFUSED" in str(exc.value)
