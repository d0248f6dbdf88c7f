"""Helpers shared by the queue-feature tests (test_ttl.py, test_dead_letter.py,
test_queue_limits.py, test_priorities.py): polling with deadlines, message
counts, draining queues, and reading message headers exactly as they were on
the wire (field order and AMQP field types), which pika's decoded dicts hide.
"""

from __future__ import annotations

import struct
import time
from typing import Any, Callable, Optional

import pika
import pika.data
import pika.spec

DEADLINE = 3.0  # seconds: generous bound for things RabbitMQ does within milliseconds


def wait_until(predicate: Callable[[], Any], timeout: float = DEADLINE, interval: float = 0.02,
               what: str = "condition"):
    """Polls ``predicate`` until it returns something truthy (returned) or
    fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what} (last: {value!r})")
        time.sleep(interval)


def message_count(ch, queue: str) -> int:
    """Ready messages as reported by a passive queue.declare-ok."""
    return ch.queue_declare(queue, passive=True).method.message_count


def consumer_count(ch, queue: str) -> int:
    return ch.queue_declare(queue, passive=True).method.consumer_count


def wait_count(ch, queue: str, expected: int, timeout: float = DEADLINE) -> float:
    """Waits until declare-ok reports ``expected`` messages; returns when (monotonic)."""
    last = []

    def check():
        last[:] = [message_count(ch, queue)]
        return last[0] == expected

    wait_until(check, timeout, what=f"{queue} to hold {expected} messages (has {last})")
    return time.monotonic()


def get_wait(ch, queue: str, timeout: float = DEADLINE, auto_ack: bool = True):
    """basic.get until a message arrives: returns (method, properties, body)."""
    result = []

    def attempt():
        method, props, body = ch.basic_get(queue, auto_ack=auto_ack)
        if method is not None:
            result[:] = [method, props, body]
            return True
        return False

    wait_until(attempt, timeout, what=f"a message on {queue}")
    return tuple(result)


def drain(ch, queue: str) -> list:
    """basic.get (auto-ack) until empty: the (method, properties, body) triples."""
    out = []
    while True:
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return out
        out.append((method, props, body))


def drain_bodies(ch, queue: str) -> list[str]:
    return [body.decode() for _m, _p, body in drain(ch, queue)]


def pump(conn, seconds: float) -> None:
    """Lets a BlockingConnection dispatch deliveries for ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        conn.process_data_events(min(left, 0.05))


def pump_until(conn, predicate: Callable[[], Any], timeout: float = DEADLINE, what: str = "deliveries"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        conn.process_data_events(0.02)


def publish(ch, queue: str, body, exchange: str = "", **props) -> None:
    """basic.publish with BasicProperties(**props); the body may be str."""
    if isinstance(body, str):
        body = body.encode()
    ch.basic_publish(exchange, queue, body, pika.BasicProperties(**props) if props else None)


def try_publish(ch, routing_key: str, body, exchange: str = "", **props) -> str:
    """Publishes on a confirm channel: 'ack' or 'nack' (basic.nack from the broker)."""
    try:
        publish(ch, routing_key, body, exchange, **props)
        return "ack"
    except pika.exceptions.NackError:
        return "nack"


# --- raw header tables --------------------------------------------------------

def capture_raw_properties(monkeypatch) -> None:
    """From now on (this test), every decoded BasicProperties keeps the raw
    bytes of its content header payload in ``props._raw`` (see typed_headers)."""
    original = pika.spec.BasicProperties.decode

    def decode(self, encoded, offset=0):
        self._raw = bytes(encoded[offset:])
        return original(self, encoded, offset)

    monkeypatch.setattr(pika.spec.BasicProperties, "decode", decode)


def _typed_value(buf: bytes, offset: int):
    tag = chr(buf[offset])
    if tag == "F":
        value, offset = _typed_table(buf, offset + 1)
    elif tag == "A":
        (length,) = struct.unpack_from(">I", buf, offset + 1)
        offset += 5
        end = offset + length
        value = []
        while offset < end:
            item, offset = _typed_value(buf, offset)
            value.append(item)
    elif tag == "T":
        (value,) = struct.unpack_from(">Q", buf, offset + 1)  # seconds since the epoch
        offset += 9
    else:
        value, offset = pika.data.decode_value(buf, offset)
    return (tag, value), offset


def _typed_table(buf: bytes, offset: int):
    (size,) = struct.unpack_from(">I", buf, offset)
    offset += 4
    end = offset + size
    fields = []
    while offset < end:
        key, offset = pika.data.decode_short_string(buf, offset)
        (tag, value), offset = _typed_value(buf, offset)
        fields.append((key, tag, value))
    return fields, offset


def typed_headers(props) -> Optional[list]:
    """The message's headers table as on the wire: a list of (key, type, value)
    in wire order, type being the AMQP field-type octet as RabbitMQ writes it
    ('S' longstr, 'l' 64-bit signed int, 'T' timestamp, 'A' array, 'F' table,
    'I' 32-bit signed int, ...).  Tables nest as such lists; array items are
    (type, value) pairs; timestamps stay integers (seconds).
    Needs capture_raw_properties() to have been called before the delivery."""
    raw = props._raw
    (flags,) = struct.unpack_from(">H", raw, 0)
    offset = 2  # basic.properties never set the continuation bit (0x0001)
    if flags & 0x8000:  # content-type
        _, offset = pika.data.decode_short_string(raw, offset)
    if flags & 0x4000:  # content-encoding
        _, offset = pika.data.decode_short_string(raw, offset)
    if not flags & 0x2000:
        return None
    fields, _ = _typed_table(raw, offset)
    return fields
