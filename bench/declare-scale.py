#!/usr/bin/env python3
"""Durable declares at scale, Warren and RabbitMQ side by side.

Declares N durable queues one after another on one channel (pika, a round
trip per declare, as an application's startup does) and reports the time
per declare for each block of 1,000, so a rate that falls as queues grow
shows; then restarts the broker and reports how long it took until its port
accepted connections again (every queue recovered), and the files it keeps
open per queue.

    python3 bench/declare-scale.py --queues 8000 \\
        --warren target/release/warren --rabbitmq tests/interop/rabbitmq-as-warren.sh

Needs pika (tests/interop/run.sh installs it into .venv/interop).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pika

from benchlib import free_port, wait_port


class Node:
    def __init__(self, binary: str, data: str):
        self.binary, self.data = binary, data
        self.port, self.mgmt = free_port(), free_port()
        self.proc = None

    def start(self, timeout: float) -> float:
        cmd = [self.binary, "serve", "--bind", "127.0.0.1", "--amqp-port", str(self.port),
               "--data-dir", self.data, "--management-port", str(self.mgmt)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env=dict(os.environ, RUST_LOG="warn"))
        return wait_port(self.port, timeout)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=300)

    def open_files(self) -> int:
        # The stand-in script runs RabbitMQ as a child: count the whole tree.
        pids = [self.proc.pid]
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        pids += [int(p) for p in out.stdout.split()]
        total = 0
        for pid in pids:
            try:
                total += len(os.listdir(f"/proc/{pid}/fd"))
            except OSError:
                pass
        return total


def run(name: str, binary: str, queues: int, block: int, timeout: float) -> dict:
    data = tempfile.mkdtemp(prefix=f"declare-{name}-")
    node = Node(binary, data)
    try:
        node.start(timeout)
        files_before = node.open_files()
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", node.port))
        ch = conn.channel()
        blocks = []
        t0 = time.perf_counter()
        for i in range(queues):
            if i % block == 0:
                start = time.perf_counter()
            ch.queue_declare(f"q{i:06d}", durable=True)
            if i % block == block - 1:
                blocks.append((time.perf_counter() - start) * 1000 / block)
        total = time.perf_counter() - t0
        conn.close()
        files = node.open_files()
        node.stop()
        restart = node.start(timeout)
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", node.port))
        ok = conn.channel().queue_declare(f"q{queues - 1:06d}", passive=True)
        assert ok.method.queue == f"q{queues - 1:06d}"
        conn.close()
        node.stop()
        used = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(data) for f in fs
                   if os.path.isfile(os.path.join(d, f)))
        return {"broker": name, "queues": queues, "total_s": round(total, 2),
                "ms_per_declare_by_block": [round(b, 3) for b in blocks],
                "restart_s": round(restart, 2),
                "open_files_per_queue": round((files - files_before) / queues, 2),
                "disk_bytes_per_queue": round(used / queues)}
    finally:
        if node.proc and node.proc.poll() is None:
            node.proc.kill()
        shutil.rmtree(data, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queues", type=int, default=8000)
    ap.add_argument("--block", type=int, default=1000)
    ap.add_argument("--warren", default="target/release/warren")
    ap.add_argument("--rabbitmq", default="", help="the RabbitMQ stand-in script; empty: Warren only")
    args = ap.parse_args()
    results = [run("warren", args.warren, args.queues, args.block, 60)]
    if args.rabbitmq:
        results.append(run("rabbitmq", args.rabbitmq, args.queues, args.block, 120))
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
