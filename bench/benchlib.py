"""Helpers the side-by-side benchmark scripts share: free ports and waiting
for a broker's port."""

from __future__ import annotations

import socket
import time


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port: int, timeout: float) -> float:
    """Seconds until 127.0.0.1:port accepted a connection."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return time.monotonic() - start
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")
