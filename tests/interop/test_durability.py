"""Durable entities and persistent messages survive a broker restart.

Needs a broker of its own that it can stop and start again on the same data
dir, so it is skipped in AMQP_URL mode.
"""

from __future__ import annotations

import pika
import pika.exceptions
import pytest

from brokerctl import pika_params


def test_durable_state_survives_restart(broker_factory):
    server = broker_factory.start()

    conn = pika.BlockingConnection(pika_params(server.broker))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.exchange_declare("dur.ex", exchange_type="direct", durable=True)
    ch.queue_declare("dur.q", durable=True)
    ch.queue_bind("dur.q", "dur.ex", routing_key="k")
    ch.queue_declare("transient.q", durable=False)
    for i in range(3):
        ch.basic_publish("dur.ex", "k", f"persistent-{i}".encode(),
                         pika.BasicProperties(delivery_mode=2, headers={"i": i}))
    ch.basic_publish("", "transient.q", b"gone")
    # an unacked delivery at shutdown goes back to the queue
    method, _, body = ch.basic_get("dur.q", auto_ack=False)
    assert body == b"persistent-0"
    conn.close()

    server.restart()

    conn = pika.BlockingConnection(pika_params(server.broker))
    ch = conn.channel()
    ok = ch.queue_declare("dur.q", durable=True, passive=True)
    assert ok.method.message_count == 3
    got = []
    while True:
        method, props, body = ch.basic_get("dur.q", auto_ack=True)
        if method is None:
            break
        got.append((body, props.delivery_mode, props.headers))
    assert sorted(got) == [(f"persistent-{i}".encode(), 2, {"i": i}) for i in range(3)]

    # the durable exchange and its binding are still there
    ch.confirm_delivery()
    ch.basic_publish("dur.ex", "k", b"after-restart", mandatory=True)
    assert ch.basic_get("dur.q", auto_ack=True)[2] == b"after-restart"

    # the non-durable queue is not
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
        ch.queue_declare("transient.q", passive=True)
    assert exc.value.reply_code == 404
    conn.close()
