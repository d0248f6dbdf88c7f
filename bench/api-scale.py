#!/usr/bin/env python3
"""The management API and Prometheus at scale, Warren and RabbitMQ side by side.

Declares N queues (transient, so the open-files limit is not what is
measured; one message in every tenth), then times the requests monitoring
makes: GET /api/queues?page=1&page_size=100, /api/overview and the
Prometheus /metrics, 20 of each (median and 95th percentile); and the
publish rate of a `warren perf` run with and without /metrics scraped every
second.

    python3 bench/api-scale.py --queues 10000 \\
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
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request

import pika

from benchlib import free_port


def wait_http(url: str, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            get(url)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} never answered")


AUTH = "Basic " + base64.b64encode(b"guest:guest").decode()


def get(url: str) -> bytes:
    req = urllib.request.Request(url, headers={"Authorization": AUTH})
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.read()


class Node:
    def __init__(self, binary: str, data: str):
        self.binary, self.data = binary, data
        self.port, self.mgmt, self.prom = free_port(), free_port(), free_port()
        self.proc = None

    def start(self, timeout: float):
        cmd = [self.binary, "serve", "--bind", "127.0.0.1", "--amqp-port", str(self.port),
               "--data-dir", self.data, "--management-port", str(self.mgmt),
               "--prometheus-port", str(self.prom)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env=dict(os.environ, RUST_LOG="warn"))
        wait_http(f"http://127.0.0.1:{self.mgmt}/api/overview", timeout)
        wait_http(f"http://127.0.0.1:{self.prom}/metrics", timeout)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=300)


def timed(url: str, n: int) -> dict:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        get(url)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {"median_ms": round(statistics.median(times), 2),
            "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2)}


def perf_rate(perf: str, node: Node, duration: int, scrape: bool) -> float:
    stop = threading.Event()

    def scraper():
        while not stop.wait(1.0):
            get(f"http://127.0.0.1:{node.prom}/metrics")

    thread = threading.Thread(target=scraper, daemon=True)
    if scrape:
        thread.start()
    uri = f"amqp://guest:guest@127.0.0.1:{node.port}/%2f"
    out = subprocess.run([perf, "perf", "--uri", uri, "--json", "--quiet", "--size", "16",
                          "--duration", str(duration)], capture_output=True, text=True, check=True)
    stop.set()
    summary = json.loads(out.stdout)
    return round(summary["published"] / summary["publish_s"]) if summary["publish_s"] else 0


def run(name: str, binary: str, perf: str, queues: int, duration: int, timeout: float) -> dict:
    data = tempfile.mkdtemp(prefix=f"api-{name}-")
    node = Node(binary, data)
    try:
        node.start(timeout)
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", node.port))
        ch = conn.channel()
        t0 = time.perf_counter()
        for i in range(queues):
            ch.queue_declare(f"q{i:06d}")
            if i % 10 == 0:
                ch.basic_publish("", f"q{i:06d}", b"x")
        declare_s = time.perf_counter() - t0
        conn.close()
        mgmt = f"http://127.0.0.1:{node.mgmt}"
        # RabbitMQ lists new queues after its statistics round.
        time.sleep(6 if name == "rabbitmq" else 0)
        result = {"broker": name, "queues": queues, "declare_s": round(declare_s, 1)}
        for label, url in [("queues_page", f"{mgmt}/api/queues?page=1&page_size=100"),
                           ("overview", f"{mgmt}/api/overview"),
                           ("metrics", f"http://127.0.0.1:{node.prom}/metrics")]:
            get(url)
            result[label] = timed(url, 20)
        result["publish_per_s"] = perf_rate(perf, node, duration, scrape=False)
        result["publish_per_s_scraped"] = perf_rate(perf, node, duration, scrape=True)
        node.stop()
        return result
    finally:
        if node.proc and node.proc.poll() is None:
            node.proc.kill()
        shutil.rmtree(data, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queues", type=int, default=10000)
    ap.add_argument("--duration", type=int, default=10, help="seconds of each perf run")
    ap.add_argument("--warren", default="target/release/warren")
    ap.add_argument("--perf", default="", help="the warren binary whose perf tool loads (default: --warren)")
    ap.add_argument("--rabbitmq", default="", help="the RabbitMQ stand-in script; empty: Warren only")
    args = ap.parse_args()
    perf = args.perf or args.warren
    results = [run("warren", args.warren, perf, args.queues, args.duration, 60)]
    if args.rabbitmq:
        results.append(run("rabbitmq", args.rabbitmq, perf, args.queues, args.duration, 180))
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
