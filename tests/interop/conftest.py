"""Shared fixtures for the interop suite.

``broker`` (one per pytest run) gives host/port/url of the broker under test:
the one named by ``AMQP_URL`` if set, otherwise a Warren server started from
``WARREN_BIN`` (see brokerctl.py).  ``broker_factory`` starts extra, fresh
Warren servers for tests that need one of their own (skipped in AMQP_URL
mode).  ``mgmt``, ``vhost``, ``user`` and ``connect_as`` are for the
management API and access-control tests (see below); ``prometheus`` scrapes
the broker's Prometheus endpoint.
"""

from __future__ import annotations

import re
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

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


# --- management API, vhosts and users ------------------------------------------------
#
# ``mgmt`` is an administrator client of the management HTTP API (the broker's
# own credentials, guest/guest by default); ``vhost`` and ``user`` give a
# fresh, unique virtual host / user that is deleted after the test (their
# factories make more than one); ``connect_as`` opens pika connections with
# other credentials / vhosts.

MGMT_WAIT = 5.0  # seconds the management listener may lag behind the AMQP port


@pytest.fixture(scope="session")
def mgmt(broker):
    import time
    import urllib.error

    from mgmt import Mgmt

    if not broker.mgmt_url:
        pytest.skip("no management API URL for this broker")
    api = Mgmt(broker.mgmt_url, broker.user, broker.password)
    deadline = time.monotonic() + max(MGMT_WAIT, 0 if broker.external else brokerctl.START_TIMEOUT)
    while True:
        try:
            status, body = api.get("/api/whoami")
            break
        except (OSError, urllib.error.URLError) as exc:
            if time.monotonic() >= deadline:
                msg = f"management API at {broker.mgmt_url} not reachable: {exc}"
                if broker.external:
                    pytest.skip(msg + " (set MANAGEMENT_URL)")
                pytest.fail(msg, pytrace=False)
            time.sleep(0.2)
    if status != 200:
        pytest.fail(f"management API at {broker.mgmt_url} refused {broker.user!r}: "
                    f"HTTP {status} {body!r}", pytrace=False)
    return api


@dataclass(frozen=True)
class MQUser:
    name: str
    password: str


@pytest.fixture
def vhost_factory(mgmt, uid):
    """``make(suffix="")`` creates a fresh vhost (the admin gets full permissions
    on it) and returns its name; all are deleted after the test."""
    made = []

    def make(suffix: str = "") -> str:
        name = f"{uid}.vh{len(made)}{suffix}"
        mgmt.create_vhost(name)
        made.append(name)
        mgmt.set_permissions(name, mgmt.user)
        return name

    yield make
    for name in reversed(made):
        try:
            mgmt.delete_vhost(name, missing_ok=True)
        except Exception:
            pass


@pytest.fixture
def vhost(vhost_factory):
    return vhost_factory()


@pytest.fixture
def user_factory(mgmt, uid):
    """``make(tags="", password=None)`` creates a fresh user with a random
    password (no permissions) and returns an MQUser; all are deleted after the test."""
    made = []

    def make(tags: str = "", password: Optional[str] = None) -> MQUser:
        user = MQUser(f"{uid}.u{len(made)}", password or f"pw-{uuid.uuid4().hex[:12]}")
        mgmt.create_user(user.name, user.password, tags=tags)
        made.append(user.name)
        return user

    yield make
    for name in reversed(made):
        try:
            mgmt.delete_user(name, missing_ok=True)
        except Exception:
            pass


@pytest.fixture
def user(user_factory):
    return user_factory()


@pytest.fixture
def connect_as(pika_connect):
    """``connect_as(user_or_name, vhost="/", password=None)``: a pika
    BlockingConnection with those credentials (closed at teardown)."""
    import pika

    def connect(user, vhost: str = "/", password: Optional[str] = None, **overrides):
        name = user.name if isinstance(user, MQUser) else user
        if password is None:
            password = user.password if isinstance(user, MQUser) else ""
        return pika_connect(credentials=pika.PlainCredentials(name, password),
                            virtual_host=vhost, **overrides)

    return connect


# --- Prometheus endpoint ------------------------------------------------------------
#
# ``prometheus`` is a client of the broker's Prometheus endpoint
# (``broker.prometheus_url``: Warren's --prometheus-port, or RabbitMQ's
# rabbitmq_prometheus plugin): ``prometheus.get("/metrics")`` returns
# ``(status, headers, text)``, without authentication, as Prometheus scrapes.

PROMETHEUS_WAIT = 5.0  # seconds the Prometheus listener may lag behind the AMQP port


class PrometheusEndpoint:
    def __init__(self, base_url: str, timeout: float = 15):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def get(self, path: str = "/metrics"):
        """``(status, headers, text)``; 4xx/5xx are returned, not raised."""
        import urllib.error
        import urllib.request

        req = urllib.request.Request(self.base_url + path, method="GET")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                status, headers, raw = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as err:
            status, headers, raw = err.code, err.headers, err.read()
        return status, headers, raw.decode("utf-8", "replace")


@pytest.fixture(scope="session")
def prometheus(broker):
    import time
    import urllib.error

    if not broker.prometheus_url:
        pytest.skip("no Prometheus endpoint URL for this broker")
    endpoint = PrometheusEndpoint(broker.prometheus_url)
    deadline = time.monotonic() + max(PROMETHEUS_WAIT,
                                      0 if broker.external else brokerctl.START_TIMEOUT)
    while True:
        try:
            endpoint.get("/metrics")
            return endpoint
        except (OSError, urllib.error.URLError) as exc:
            if time.monotonic() >= deadline:
                msg = f"Prometheus endpoint at {broker.prometheus_url} not reachable: {exc}"
                if broker.external:
                    pytest.skip(msg + " (set PROMETHEUS_URL)")
                pytest.fail(msg, pytrace=False)
            time.sleep(0.2)
