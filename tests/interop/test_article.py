"""The article's producer/consumer programs, run unmodified, against Warren.

The scripts hard-code ``pika.ConnectionParameters('localhost')`` (port 5672),
so the test runs the broker and both scripts inside a private network
namespace (``unshare --net``) where 127.0.0.1:5672 is free by construction.
Without namespace support it falls back to the host's 127.0.0.1:5672 if that
is free, and skips otherwise.  It needs to start its own broker, so it is
skipped in AMQP_URL mode.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import brokerctl

HERE = Path(__file__).resolve().parent
FLOW = HERE / "article_flow.sh"
PRODUCER = HERE / "article" / "producer.py"
CONSUMER = HERE / "article" / "consumer.py"

SENT = " [x] Sent {'name': 'John', 'message': 'Hello World!'}"
WAITING = " [*] Waiting for messages. To exit press CTRL+C"
RECEIVED = """ [x] Received b'{"name": "John", "message": "Hello World!"}'"""

# The programs are kept exactly as published.
SHA256 = {
    PRODUCER: "3936a36f3a9a5dfb7daa332d253b31887286a964fff5beba800e1288bf8b2882",
    CONSUMER: "3a04ec49944ef8c309f632592774c3f19bf73388485c78aee6012c1df42b8f34",
}


def netns_available() -> tuple[bool, str]:
    if shutil.which("unshare") is None:
        return False, "unshare is not installed"
    try:
        proc = subprocess.run(["unshare", "--net", "true"], capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    if proc.returncode != 0:
        return False, proc.stderr.strip() or f"unshare exited {proc.returncode}"
    return True, ""


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return "<missing>"


def test_article_scripts_are_verbatim():
    for path, digest in SHA256.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, (
            f"{path.name} must stay identical to the article's program")


@pytest.mark.timeout(180)
def test_article_producer_consumer(tmp_path):
    if brokerctl.external_url():
        pytest.skip("the article's scripts hard-code localhost:5672, so this test starts its "
                    "own Warren broker there (in a private network namespace); unset AMQP_URL "
                    "and set WARREN_BIN to run it")
    try:
        binary = brokerctl.require_warren_bin()
    except brokerctl.BrokerStartError as exc:
        pytest.fail(str(exc), pytrace=False)

    env = dict(os.environ, WARREN_BIN=str(binary), PYTHON=sys.executable,
               OUT_DIR=str(tmp_path), PYTHONUNBUFFERED="1")
    env.pop("NETNS", None)
    ok, why = netns_available()
    if ok:
        env["NETNS"] = "1"
        cmd = ["unshare", "--net", "bash", str(FLOW)]
    elif brokerctl.port_is_free("127.0.0.1", 5672) and not brokerctl.port_accepts("127.0.0.1", 5672):
        cmd = ["bash", str(FLOW)]
    else:
        pytest.skip(f"cannot create a private network namespace ({why}) and "
                    "127.0.0.1:5672 is already in use on this machine")

    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=150)
    consumer_out = _read(tmp_path / "consumer.out")
    producer_out = _read(tmp_path / "producer.out")
    diagnostics = (f"exit code {proc.returncode}\n--- flow stderr ---\n{proc.stderr}"
                   f"\n--- producer ---\n{producer_out}\n--- consumer ---\n{consumer_out}"
                   f"\n--- broker log (tail) ---\n{_read(tmp_path / 'broker.log')[-4000:]}")

    assert proc.returncode == 0, diagnostics
    assert producer_out.splitlines() == [SENT], diagnostics
    assert consumer_out.splitlines()[:2] == [WAITING, RECEIVED], diagnostics
