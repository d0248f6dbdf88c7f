"""kombu (py-amqp transport, as used by Celery) against the broker under test."""

from __future__ import annotations

import socket

import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue

TIMEOUT = 10


def delete_queue(conn, name):
    # after the SimpleQueue (and its consumer) is closed: deleting a queue that
    # has consumers makes the broker cancel them (basic.cancel)
    with conn.channel() as channel:
        Queue(name)(channel).delete()


@pytest.fixture
def kconn(broker):
    conn = Connection(broker.url, connect_timeout=TIMEOUT, transport_options={"confirm_publish": True})
    conn.ensure_connection(max_retries=1)
    yield conn
    conn.release()


def test_producer_consumer_direct_exchange_json(kconn, uid):
    exchange = Exchange(f"{uid}.direct", type="direct", durable=False, auto_delete=True)
    queue = Queue(f"{uid}.q", exchange=exchange, routing_key="jobs", durable=False, auto_delete=True)
    payloads = [{"n": i, "text": "héllo", "items": [1, 2, {"x": None}]} for i in range(3)]
    received = []

    with kconn.channel() as channel:
        # declare before publishing so nothing is lost
        queue(channel).declare()
        producer = Producer(channel, exchange=exchange, serializer="json")
        for payload in payloads:
            producer.publish(payload, routing_key="jobs", declare=[queue],
                             headers={"origin": "kombu"}, retry=False)

        def on_message(body, message):
            received.append((body, message.content_type, message.headers,
                             message.delivery_info["routing_key"],
                             message.delivery_info["redelivered"]))
            message.ack()

        with Consumer(channel, queues=[queue], callbacks=[on_message], accept=["json"]):
            while len(received) < len(payloads):
                try:
                    kconn.drain_events(timeout=TIMEOUT)
                except socket.timeout:
                    break
        queue(channel).delete()

    assert [r[0] for r in received] == payloads
    for _body, ctype, headers, rk, redelivered in received:
        assert ctype == "application/json"
        assert headers == {"origin": "kombu"}
        assert rk == "jobs"
        assert redelivered is False


def test_consumer_reject_requeue(kconn, uid):
    queue = Queue(f"{uid}.q", durable=False, auto_delete=False)
    seen = []
    with kconn.channel() as channel:
        bound = queue(channel)
        bound.declare()
        try:
            Producer(channel, serializer="json").publish(
                {"retry": True}, routing_key=queue.name, retry=False)

            def on_message(body, message):
                seen.append(message.delivery_info["redelivered"])
                if len(seen) == 1:
                    message.requeue()
                else:
                    message.ack()

            with Consumer(channel, queues=[queue], callbacks=[on_message], accept=["json"]):
                while len(seen) < 2:
                    try:
                        kconn.drain_events(timeout=TIMEOUT)
                    except socket.timeout:
                        break
        finally:
            bound.delete()
    assert seen == [False, True]


def test_simple_queue(kconn, uid):
    name = f"{uid}.simple"
    try:
        with kconn.SimpleQueue(name, serializer="json",
                               queue_opts={"durable": False, "auto_delete": False}) as sq:
            sq.put({"hello": "world"})
            sq.put({"hello": "again"}, headers={"h": 1})
            first = sq.get(block=True, timeout=TIMEOUT)
            first.ack()
            second = sq.get(block=True, timeout=TIMEOUT)
            second.ack()
            with pytest.raises(sq.Empty):
                sq.get(block=False)
            assert sq.qsize() == 0
        assert first.payload == {"hello": "world"}
        assert first.content_type == "application/json"
        assert second.payload == {"hello": "again"}
        assert second.headers == {"h": 1}
    finally:
        delete_queue(kconn, name)


def test_simple_queue_qsize(kconn, uid):
    name = f"{uid}.buffer"
    try:
        with kconn.SimpleQueue(name, serializer="json",
                               queue_opts={"durable": False, "auto_delete": False}) as sq:
            for i in range(5):
                sq.put({"i": i})
            assert sq.qsize() == 5  # publishes are confirmed, so the count is exact
            got = []
            for _ in range(5):
                msg = sq.get(block=True, timeout=TIMEOUT)
                got.append(msg.payload["i"])
                msg.ack()
            assert got == list(range(5))
    finally:
        delete_queue(kconn, name)
