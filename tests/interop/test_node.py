"""Runs the Node.js (amqplib) tests in node/ against the broker under test."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def test_node_amqplib(broker):
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (the interop suite needs Node.js >= 18)", pytrace=False)
    if not (HERE / "node_modules" / "amqplib").is_dir():
        pytest.fail("amqplib is not installed: run `npm ci` in tests/interop "
                    "(tests/interop/run.sh does this)", pytrace=False)
    env = dict(os.environ, AMQP_URL=broker.url)
    proc = subprocess.run(
        [node, "--test", "node/"],
        cwd=HERE, env=env, capture_output=True, text=True, timeout=120,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"node --test failed ({proc.returncode}):\n{output}"
    assert "# fail 0" in output
    assert "# pass 0" not in output
