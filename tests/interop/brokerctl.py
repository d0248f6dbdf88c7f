"""Locating or starting the broker that the interop suite talks to.

Two modes:

* ``AMQP_URL`` set: use that (already running) broker, e.g. a RabbitMQ used
  to validate the suite itself.  Tests that must start their own broker are
  skipped in this mode.  Its management HTTP API is at ``MANAGEMENT_URL``
  (default: ``http://<AMQP host>:15672``), its Prometheus endpoint at
  ``PROMETHEUS_URL`` (default: ``http://<AMQP host>:15692``).
* otherwise: start the Warren binary named by ``WARREN_BIN`` (default
  ``target/debug/warren`` in the repository root) as

      WARREN_BIN serve --bind 127.0.0.1 --amqp-port PORT --data-dir DIR \
          --management-port MPORT --prometheus-port PPORT

  on free ephemeral ports, wait until the AMQP port accepts TCP connections
  and stop it with SIGTERM (SIGKILL after 10 s) afterwards.  The management
  API is then at ``http://127.0.0.1:MPORT`` (``Broker.mgmt_url``), the
  Prometheus endpoint (``/metrics``) at ``http://127.0.0.1:PPORT``
  (``Broker.prometheus_url``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
DEFAULT_WARREN_BIN = REPO_ROOT / "target" / "debug" / "warren"

# Generous bounds so a misbehaving broker fails a test instead of hanging it.
SOCKET_TIMEOUT = 10
BLOCKED_TIMEOUT = 10

START_TIMEOUT = float(os.environ.get("WARREN_START_TIMEOUT", "20"))
STOP_TIMEOUT = 10.0
LOOPBACK = "127.0.0.1"


class BrokerStartError(RuntimeError):
    pass


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    url: str
    user: str = "guest"
    password: str = "guest"
    vhost: str = "/"
    external: bool = False
    # base URL of the management HTTP API, e.g. http://127.0.0.1:15672
    mgmt_url: Optional[str] = None
    # base URL of the Prometheus endpoint, e.g. http://127.0.0.1:15692
    prometheus_url: Optional[str] = None


def external_url() -> Optional[str]:
    url = os.environ.get("AMQP_URL", "").strip()
    return url or None


def external_mgmt_url(amqp_host: str) -> str:
    """MANAGEMENT_URL, or the AMQP_URL broker's host on RabbitMQ's port 15672."""
    url = os.environ.get("MANAGEMENT_URL", "").strip()
    if url:
        return url.rstrip("/")
    host = f"[{amqp_host}]" if ":" in amqp_host else amqp_host
    return f"http://{host}:15672"


def external_prometheus_url(amqp_host: str) -> str:
    """PROMETHEUS_URL, or the AMQP_URL broker's host on rabbitmq_prometheus's port 15692."""
    url = os.environ.get("PROMETHEUS_URL", "").strip()
    if url:
        return url.rstrip("/")
    host = f"[{amqp_host}]" if ":" in amqp_host else amqp_host
    return f"http://{host}:15692"


def broker_from_url(url: str) -> Broker:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("amqp",):
        raise ValueError(f"only amqp:// URLs are supported, got {url!r}")
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    vhost = urllib.parse.unquote(path) if path else "/"
    host = parts.hostname or "localhost"
    return Broker(
        host=host,
        port=parts.port or 5672,
        url=url,
        user=urllib.parse.unquote(parts.username or "guest"),
        password=urllib.parse.unquote(parts.password or "guest"),
        vhost=vhost,
        external=True,
        mgmt_url=external_mgmt_url(host),
        prometheus_url=external_prometheus_url(host),
    )


def warren_bin() -> Path:
    value = os.environ.get("WARREN_BIN", "").strip()
    path = Path(value) if value else DEFAULT_WARREN_BIN
    if not path.is_absolute():
        path = (Path.cwd() / path).resolve()
    return path


def require_warren_bin() -> Path:
    path = warren_bin()
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise BrokerStartError(
            f"Warren binary not found or not executable: {path}. Build it "
            "(cargo build) or set WARREN_BIN, or set AMQP_URL to test against "
            "an already running broker."
        )
    return path


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def port_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return "<no log>"
    return data[-limit:].decode("utf-8", "replace")


class WarrenProcess:
    """One Warren server process with its own data dir and ports (AMQP,
    management HTTP and Prometheus HTTP)."""

    def __init__(self, binary: Path, data_dir: Path, port: Optional[int] = None,
                 host: str = LOOPBACK, log_path: Optional[Path] = None,
                 mgmt_port: Optional[int] = None, bind: Optional[str] = None,
                 prometheus_port: Optional[int] = None, extra_args: tuple = ()):
        self.binary = binary
        self.extra_args = list(extra_args)
        self.data_dir = Path(data_dir)
        self.host = host
        # the --bind address (e.g. 0.0.0.0); ``host`` stays the address the
        # suite connects to
        self.bind = bind or host
        self.port = port or free_port(host)
        self.mgmt_port = mgmt_port or free_port(host)
        while self.mgmt_port == self.port:
            self.mgmt_port = free_port(host)
        self.prometheus_port = prometheus_port or free_port(host)
        while self.prometheus_port in (self.port, self.mgmt_port):
            self.prometheus_port = free_port(host)
        self.log_path = log_path or self.data_dir.parent / f"warren-{self.port}.log"
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{self.host}:{self.port}/"

    @property
    def mgmt_url(self) -> str:
        return f"http://{self.host}:{self.mgmt_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://{self.host}:{self.prometheus_port}"

    @property
    def broker(self) -> Broker:
        return Broker(host=self.host, port=self.port, url=self.url, mgmt_url=self.mgmt_url,
                      prometheus_url=self.prometheus_url)

    def command(self) -> list[str]:
        return [str(self.binary), "serve", "--bind", self.bind,
                "--amqp-port", str(self.port), "--data-dir", str(self.data_dir),
                "--management-port", str(self.mgmt_port),
                "--prometheus-port", str(self.prometheus_port)] + self.extra_args

    def start(self, timeout: float = START_TIMEOUT) -> "WarrenProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerStartError(
                    f"broker exited with code {self.proc.returncode} during startup "
                    f"({' '.join(self.command())}); log:\n{_tail(self.log_path)}")
            if port_accepts(self.host, self.port):
                return self
            time.sleep(0.1)
        self.stop()
        raise BrokerStartError(
            f"broker did not accept TCP connections on {self.host}:{self.port} "
            f"within {timeout:.0f}s; log:\n{_tail(self.log_path)}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> Optional[int]:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        return proc.returncode

    def restart(self, timeout: float = START_TIMEOUT) -> "WarrenProcess":
        """Stop and start again on the same ports with the same data dir."""
        self.stop()
        deadline = time.monotonic() + timeout
        while (not all(port_is_free(self.host, p)
                       for p in (self.port, self.mgmt_port, self.prometheus_port))
               and time.monotonic() < deadline):
            time.sleep(0.1)
        return self.start(timeout)

    def log_tail(self) -> str:
        return _tail(self.log_path)


class BrokerFactory:
    """Starts fresh Warren brokers for tests that need their own."""

    def __init__(self, binary: Path, base_dir: Optional[Path] = None):
        self.binary = binary
        self._own_dir = base_dir is None
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="warren-interop-"))
        self.processes: list[WarrenProcess] = []

    def start(self, data_dir: Optional[Path] = None, port: Optional[int] = None,
              mgmt_port: Optional[int] = None, bind: Optional[str] = None,
              prometheus_port: Optional[int] = None,
              extra_args: tuple = ()) -> WarrenProcess:
        """``bind``: the address to listen on (default: 127.0.0.1, also the
        address the suite connects to); ``extra_args``: more ``serve`` flags."""
        if data_dir is None:
            data_dir = Path(tempfile.mkdtemp(prefix="data-", dir=self.base_dir))
        proc = WarrenProcess(self.binary, data_dir, port=port, mgmt_port=mgmt_port, bind=bind,
                             prometheus_port=prometheus_port, extra_args=extra_args)
        self.processes.append(proc)
        return proc.start()

    def close(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)


def pika_params(broker: Broker, **overrides):
    """pika connection parameters for a broker, with bounded timeouts."""
    import pika

    params = pika.URLParameters(broker.url)
    params.socket_timeout = SOCKET_TIMEOUT
    params.stack_timeout = SOCKET_TIMEOUT * 2
    params.blocked_connection_timeout = BLOCKED_TIMEOUT
    params.connection_attempts = 1
    for key, value in overrides.items():
        setattr(params, key, value)
    return params
