"""Shared fixtures for the interop suite.

``broker`` (one per pytest run) gives host/port/url of the broker under test:
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
from brokerctl import pika_params  # noqa: E402

# log of the shared broker, shown in the summary when something failed
_SESSION_BROKER_LOG = []


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
        _SESSION_BROKER_LOG.append(proc.log_path)
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


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if exitstatus in (0, 5) or not _SESSION_BROKER_LOG:
        return
    path = _SESSION_BROKER_LOG[-1]
    terminalreporter.section("broker log (tail)")
    terminalreporter.write_line(f"full log: {path}")
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        lines = ["<missing>"]
    for line in lines[-40:]:
        terminalreporter.write_line(re.sub(r"\x1b\[[0-9;]*m", "", line))


@pytest.fixture
def conn(pika_connect):
    """One pika BlockingConnection for the test."""
    return pika_connect()


@pytest.fixture
def ch(conn):
    """A channel of ``conn`` in confirm mode: message counts are only reliable
    for confirmed publishes."""
    channel = conn.channel()
    channel.confirm_delivery()
    return channel
