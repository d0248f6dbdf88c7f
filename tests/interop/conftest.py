"""Shared fixtures for the interop suite.

``broker`` (session scope) gives host/port/url of the broker under test:
the one named by ``AMQP_URL`` if set, otherwise a Warren server started from
``WARREN_BIN`` (see brokerctl.py).  ``broker_factory`` starts extra, fresh
Warren servers for tests that need one of their own (skipped in AMQP_URL
mode).
"""

from __future__ import annotations

import re
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import brokerctl  # noqa: E402

# Generous bounds so a misbehaving broker fails a test instead of hanging it.
SOCKET_TIMEOUT = 10
BLOCKED_TIMEOUT = 10


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    url = brokerctl.external_url()
    if url:
        b = brokerctl.broker_from_url(url)
        if not brokerctl.port_accepts(b.host, b.port, timeout=5):
            pytest.fail(f"AMQP_URL broker {b.host}:{b.port} is not accepting connections",
                        pytrace=False)
        yield b
        return
    try:
        binary = brokerctl.require_warren_bin()
        base = tmp_path_factory.mktemp("warren")
        proc = brokerctl.WarrenProcess(binary, base / "data", log_path=base / "warren.log")
        proc.start()
    except brokerctl.BrokerStartError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield proc.broker
    finally:
        proc.stop()


@pytest.fixture
def broker_factory(tmp_path):
    """Callable starting a fresh Warren broker: ``factory.start()`` -> WarrenProcess."""
    if brokerctl.external_url():
        pytest.skip("needs to start its own Warren broker; not possible in AMQP_URL mode")
    try:
        binary = brokerctl.require_warren_bin()
    except brokerctl.BrokerStartError as exc:
        pytest.fail(str(exc), pytrace=False)
    factory = brokerctl.BrokerFactory(binary, tmp_path)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def uid(request):
    """A short name unique to this test, for queues/exchanges on a shared broker."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)[:60]
    return f"interop.{base}.{uuid.uuid4().hex[:8]}"


def pika_params(broker, **overrides):
    import pika

    params = pika.URLParameters(broker.url)
    params.socket_timeout = SOCKET_TIMEOUT
    params.stack_timeout = SOCKET_TIMEOUT * 2
    params.blocked_connection_timeout = BLOCKED_TIMEOUT
    params.connection_attempts = 1
    for key, value in overrides.items():
        setattr(params, key, value)
    return params


@pytest.fixture
def pika_connect(broker):
    """Factory for pika BlockingConnections, all closed at teardown."""
    import pika

    conns = []

    def connect(**overrides):
        conn = pika.BlockingConnection(pika_params(broker, **overrides))
        conns.append(conn)
        return conn

    yield connect
    for conn in conns:
        if conn.is_open:
            try:
                conn.close()
            except Exception:
                pass


@pytest.fixture
def cleanup(pika_connect):
    """Register queues/exchanges to delete after the test (on a fresh connection)."""
    queues, exchanges = [], []

    class Cleanup:
        def queue(self, name):
            queues.append(name)
            return name

        def exchange(self, name):
            exchanges.append(name)
            return name

    yield Cleanup()
    if not queues and not exchanges:
        return
    conn = pika_connect()
    for name in queues:
        ch = conn.channel()
        try:
            ch.queue_delete(name)
            ch.close()
        except Exception:
            pass
    for name in exchanges:
        ch = conn.channel()
        try:
            ch.exchange_delete(name)
            ch.close()
        except Exception:
            pass
