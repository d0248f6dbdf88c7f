#!/usr/bin/env python3
"""Durable declares at scale, Warren and RabbitMQ side by side.

Declares N durable queues one after another on one channel (pika, a round
trip per declare, as an application's startup does) and reports the time
per declare for each block of 1,000, so a rate that falls as queues grow
shows; creates U users through the management API, each with permissions
on `/`; then restarts the broker and reports how long it took until its
port accepted connections again (every queue recovered), the files it
keeps open, its memory, and the disk its data directory takes per queue.
With --publish, one persistent message then goes to every queue (after
the declares, untimed), so the restart recovers N stores that hold a
message and the broker must use their files. With --connections C,
`warren perf --idle-connections C` then opens C
connections (one channel each) to the restarted broker and holds them,
while the broker's open files and memory are sampled.

    python3 bench/declare-scale.py --queues 100000 --users 1000 \\
        --warren target/release/warren --rabbitmq tests/interop/rabbitmq-as-warren.sh

Needs pika (tests/interop/run.sh installs it into .venv/interop).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request

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

    def pids(self) -> list[int]:
        # The stand-in script runs RabbitMQ as a child: count the whole tree.
        pids, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
            todo += [int(p) for p in out.stdout.split()]
        return pids

    def open_files(self) -> int:
        total = 0
        for pid in self.pids():
            try:
                total += len(os.listdir(f"/proc/{pid}/fd"))
            except OSError:
                pass
        return total

    def rss_mb(self) -> float:
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
            except OSError:
                pass
        return round(total / 1024, 1)

    def put(self, path: str, body: dict):
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.mgmt}{path}", data=json.dumps(body).encode(), method="PUT",
            headers={"content-type": "application/json",
                     "authorization": "Basic " + base64.b64encode(b"guest:guest").decode()})
        urllib.request.urlopen(req, timeout=60).read()


def disk_used(data: str) -> tuple[int, int]:
    """Bytes in files, and bytes allocated to files and directories."""
    apparent = allocated = 0
    for d, dirs, files in os.walk(data):
        for name in files + dirs:
            try:
                st = os.lstat(os.path.join(d, name))
            except OSError:
                continue
            if name in files:
                apparent += st.st_size
            allocated += st.st_blocks * 512
    return apparent, allocated


def idle_connections(node: Node, perf: str, count: int) -> dict:
    """Holds `count` idle connections to the node; the most files and memory
    the broker had meanwhile."""
    cmd = [perf, "perf", "--uri", f"amqp://guest:guest@127.0.0.1:{node.port}/%2f",
           "--idle-connections", str(count), "--hold", "10", "--threads", "2",
           "--connect-concurrency", "64", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    most_files, most_rss = 0, 0.0
    while proc.poll() is None:
        most_files = max(most_files, node.open_files())
        most_rss = max(most_rss, node.rss_mb())
        time.sleep(0.5)
    idle = json.loads(proc.stdout.read().strip().splitlines()[-1])["idle"]
    return {"connections": count, "connected": idle["connected"], "failed": idle["failed"],
            "dropped": idle["dropped"], "connect_s": idle["connect_s"],
            "first_error": idle["first_error"], "most_open_files": most_files,
            "most_rss_mb": most_rss}


def run(name: str, binary: str, queues: int, users: int, block: int, timeout: float,
        connections: int = 0, perf: str = "", publish: bool = False) -> dict:
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
        published_s = None
        if publish:
            t0 = time.perf_counter()
            props = pika.BasicProperties(delivery_mode=2)
            for i in range(queues):
                ch.basic_publish("", f"q{i:06d}", b"x" * 100, props)
            ok = ch.queue_declare(f"q{queues - 1:06d}", passive=True)
            assert ok.method.message_count == 1
            published_s = round(time.perf_counter() - t0, 2)
        conn.close()
        files = node.open_files()
        t0 = time.perf_counter()
        for u in range(users):
            node.put(f"/api/users/user{u:04d}", {"password": f"secret{u}", "tags": ""})
            node.put(f"/api/permissions/%2F/user{u:04d}",
                     {"configure": ".*", "write": ".*", "read": ".*"})
        users_s = time.perf_counter() - t0
        result = {"broker": name, "queues": queues, "users": users, "total_s": round(total, 2),
                  "ms_per_declare_by_block": [round(b, 3) for b in blocks],
                  "users_s": round(users_s, 2), "published_s": published_s,
                  "open_files_after_declares": files,
                  "open_files_per_queue": round((files - files_before) / queues, 3)}
        # Printed now: a restart that does not finish in time still leaves
        # the declare figures.
        print(json.dumps(dict(result, phase="declared")), flush=True)
        node.stop()
        t0 = time.perf_counter()
        try:
            node.start(timeout)
        except RuntimeError:
            return dict(result, restart_s=None, restart_timed_out_after_s=timeout)
        # The listener may open before every queue is back (RabbitMQ):
        # the restart counts until the last queue answers.
        last = f"q{queues - 1:06d}"
        while True:
            try:
                conn = pika.BlockingConnection(pika.ConnectionParameters(
                    "127.0.0.1", node.port, credentials=pika.PlainCredentials(
                        f"user{users - 1:04d}", f"secret{users - 1}") if users else
                    pika.PlainCredentials("guest", "guest")))
                ok = conn.channel().queue_declare(last, passive=True)
                assert ok.method.queue == last
                assert ok.method.message_count == (1 if publish else 0)
                conn.close()
                break
            except pika.exceptions.ChannelClosedByBroker:
                time.sleep(0.1)
        restart = time.perf_counter() - t0
        time.sleep(2)
        files_after = node.open_files()
        rss = node.rss_mb()
        idle = idle_connections(node, perf, connections) if connections else None
        node.stop()
        apparent, allocated = disk_used(data)
        return dict(result, **{
                "restart_s": round(restart, 2),
                "open_files_after_restart": files_after,
                "rss_mb_after_restart": rss,
                "disk_bytes_per_queue": round(apparent / queues),
                "disk_allocated_per_queue": round(allocated / queues),
                "idle_connections": idle})
    finally:
        if node.proc and node.proc.poll() is None:
            node.proc.kill()
        shutil.rmtree(data, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queues", type=int, default=8000)
    ap.add_argument("--users", type=int, default=0)
    ap.add_argument("--connections", type=int, default=0,
                    help="idle connections to hold after the restart (warren perf)")
    ap.add_argument("--publish", action="store_true",
                    help="one persistent message to every queue before the restart")
    ap.add_argument("--block", type=int, default=1000)
    ap.add_argument("--timeout", type=float, default=600, help="seconds a start may take")
    ap.add_argument("--warren", default="target/release/warren",
                    help="the Warren binary (also runs `warren perf`)")
    ap.add_argument("--rabbitmq-only", action="store_true", help="skip the Warren run")
    ap.add_argument("--rabbitmq", default="", help="the RabbitMQ stand-in script; empty: Warren only")
    args = ap.parse_args()
    if not args.rabbitmq_only:
        print(json.dumps(run("warren", args.warren, args.queues, args.users, args.block,
                             args.timeout, args.connections, args.warren, args.publish)),
              flush=True)
    if args.rabbitmq:
        print(json.dumps(run("rabbitmq", args.rabbitmq, args.queues, args.users, args.block,
                             args.timeout, args.connections, args.warren, args.publish)),
              flush=True)


if __name__ == "__main__":
    main()
