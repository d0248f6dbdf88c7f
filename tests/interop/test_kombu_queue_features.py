"""kombu's queue features, as a kombu (and Celery) application uses them:
message TTL, per-message expiration, dead-lettering, length limits and idle
queue expiry, declared through kombu's own Queue options.

Checked against RabbitMQ 3.10 as well (see rabbitmq-as-warren.sh)."""

from __future__ import annotations

import socket
import time

import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue

TIMEOUT = 10


@pytest.fixture
def kconn(broker):
    conn = Connection(broker.url, connect_timeout=TIMEOUT,
                      transport_options={"confirm_publish": True})
    conn.ensure_connection(max_retries=1)
    yield conn
    conn.release()


def consume(kconn, channel, queue, n, timeout=5.0):
    """Receives up to `n` messages from `queue`, acking each."""
    got = []

    def on_message(body, message):
        got.append((body, message))
        message.ack()

    deadline = time.monotonic() + timeout
    with Consumer(channel, queues=[queue], callbacks=[on_message], accept=["json"]):
        while len(got) < n and time.monotonic() < deadline:
            try:
                kconn.drain_events(timeout=0.2)
            except socket.timeout:
                pass
    return got


def test_message_ttl_dead_letters_what_nobody_consumed(kconn, uid):
    dead = Queue(f"{uid}.dead", durable=False, auto_delete=False)
    work = Queue(f"{uid}.work", durable=False, message_ttl=0.2,
                 queue_arguments={"x-dead-letter-exchange": "",
                                  "x-dead-letter-routing-key": dead.name})
    with kconn.channel() as channel:
        dead(channel).declare()
        work(channel).declare()
        producer = Producer(channel, serializer="json")
        for n in range(3):
            producer.publish({"n": n}, routing_key=work.name, retry=False)
        got = consume(kconn, channel, dead, 3)
        assert [body["n"] for body, _m in got] == [0, 1, 2]
        for _body, message in got:
            death = message.headers["x-death"][0]
            assert (death["reason"], death["queue"], death["count"]) == ("expired", work.name, 1)
            assert message.headers["x-first-death-reason"] == "expired"
        assert work(channel).queue_declare(passive=True).message_count == 0
        work(channel).delete()
        dead(channel).delete()


def test_per_message_expiration_is_never_delivered(kconn, uid):
    q = Queue(f"{uid}.q", durable=False)
    with kconn.channel() as channel:
        q(channel).declare()
        producer = Producer(channel, serializer="json")
        producer.publish({"n": "stale"}, routing_key=q.name, expiration=0.1, retry=False)
        producer.publish({"n": "fresh"}, routing_key=q.name, retry=False)
        time.sleep(0.4)
        got = consume(kconn, channel, q, 2, timeout=1.0)
        assert [body["n"] for body, _m in got] == ["fresh"]
        q(channel).delete()


def test_max_length_drops_the_oldest(kconn, uid):
    q = Queue(f"{uid}.q", durable=False, max_length=2)
    with kconn.channel() as channel:
        q(channel).declare()
        producer = Producer(channel, serializer="json")
        for n in range(5):
            producer.publish({"n": n}, routing_key=q.name, retry=False)
        assert q(channel).queue_declare(passive=True).message_count == 2
        got = consume(kconn, channel, q, 2)
        assert [body["n"] for body, _m in got] == [3, 4]
        q(channel).delete()


def test_an_idle_queue_expires(kconn, uid):
    q = Queue(f"{uid}.q", durable=False, expires=0.3)
    with kconn.channel() as channel:
        q(channel).declare()
    # Nothing may touch it meanwhile: a declare, even a passive one, is a use.
    time.sleep(1.0)
    with kconn.channel() as channel:
        with pytest.raises(Exception) as raised:
            q(channel).queue_declare(passive=True)
    assert "NOT_FOUND" in str(raised.value), raised.value
