"""A real Celery worker process and client, both talking to the broker under test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
READY_TIMEOUT = 30
STOP_TIMEOUT = 15


def _wait_ready(proc, log_path, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        if " ready." in text:
            return
        if proc.poll() is not None:
            pytest.fail(f"celery worker exited with {proc.returncode}:\n{text[-4000:]}",
                        pytrace=False)
        time.sleep(0.2)
    pytest.fail(f"celery worker not ready within {timeout}s:\n"
                f"{log_path.read_text(errors='replace')[-4000:]}", pytrace=False)


@pytest.fixture
def celery_worker(broker, uid, tmp_path, pika_connect):
    queue = f"{uid}.tasks"
    env = dict(os.environ,
               INTEROP_BROKER_URL=broker.url,
               INTEROP_CELERY_QUEUE=queue,
               PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
               PYTHONUNBUFFERED="1")
    log_path = tmp_path / "worker.log"
    cmd = [sys.executable, "-m", "celery", "-A", "celery_app", "worker",
           "--pool=solo", "-c", "1", "-Q", queue, "--loglevel=INFO",
           "-n", f"{uid}@localhost"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_ready(proc, log_path, READY_TIMEOUT)

        import celery_app

        celery_app.app.conf.broker_url = broker.url
        celery_app.app.conf.task_default_queue = queue
        yield celery_app, proc, log_path
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # warm shutdown
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)
        try:
            ch = pika_connect().channel()
            ch.queue_delete(queue)
            ch.exchange_delete(queue)
        except Exception:
            pass


def test_celery_add_end_to_end(celery_worker):
    celery_app, proc, log_path = celery_worker
    try:
        result = celery_app.add.delay(2, 3)
        assert result.get(timeout=30) == 5
        assert result.successful()

        # a chain hops through the broker twice
        chained = (celery_app.add.s(2, 3) | celery_app.mul.s(4)).delay()
        assert chained.get(timeout=30) == 20

        # errors travel back through the rpc:// result backend
        failing = celery_app.fail.delay("boom")
        with pytest.raises(ValueError, match="boom"):
            failing.get(timeout=30)
        assert failing.failed()
    except BaseException:
        print(log_path.read_text(errors="replace")[-6000:])
        raise
    finally:
        celery_app.app.close()

    assert proc.poll() is None, "worker died during the test"
    text = log_path.read_text(errors="replace")
    assert "succeeded in" in text
