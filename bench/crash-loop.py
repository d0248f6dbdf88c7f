#!/usr/bin/env python3
"""Crash loop: kill -9 Warren at random moments while clients publish with
confirms and consume with acks, many times over, then drain and check that no
confirmed message was lost or corrupted.

    python3 bench/crash-loop.py --warren target/release/warren --kills 100

Needs pika (tests/interop/run.sh installs it into .venv/interop). Prints one
JSON line with the result; exits non-zero if a confirmed message is missing or
any message is corrupt.
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pika

QUEUE = "crash-loop"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def body_for(msg_id):
    digest = hashlib.sha256(str(msg_id).encode()).hexdigest()
    return f"{msg_id}:{digest}:".encode() + b"x" * (msg_id % 900)


def check(body):
    msg_id = int(body.split(b":", 1)[0])
    if body != body_for(msg_id):
        raise ValueError(f"corrupt message {msg_id}")
    return msg_id


class Broker:
    def __init__(self, binary, data_dir):
        self.binary, self.data_dir, self.proc, self.port = binary, data_dir, None, None

    def start(self):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--bind", "127.0.0.1", "--amqp-port", str(self.port),
             "--management-port", "0", "--data-dir", self.data_dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("warren did not start")

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=15)

    def params(self):
        return pika.ConnectionParameters("127.0.0.1", self.port, heartbeat=0,
                                         blocked_connection_timeout=5)


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.next_id = 0
        self.confirmed = set()
        self.acked = set()
        self.delivered = set()


def publisher(broker, state, stop):
    try:
        conn = pika.BlockingConnection(broker.params())
        ch = conn.channel()
        ch.queue_declare(QUEUE, durable=True)
        ch.confirm_delivery()
        while not stop.is_set():
            with state.lock:
                msg_id = state.next_id
                state.next_id += 1
            ch.basic_publish("", QUEUE, body_for(msg_id),
                             pika.BasicProperties(delivery_mode=2))
            # BlockingChannel with confirms returns only once the broker
            # confirmed this message.
            with state.lock:
                state.confirmed.add(msg_id)
    except Exception:
        pass


def consumer(broker, state, stop):
    try:
        conn = pika.BlockingConnection(broker.params())
        ch = conn.channel()
        ch.queue_declare(QUEUE, durable=True)
        ch.basic_qos(prefetch_count=50)
        for method, _props, body in ch.consume(QUEUE, inactivity_timeout=0.05):
            if stop.is_set():
                break
            if method is None:
                continue
            msg_id = check(body)
            with state.lock:
                state.delivered.add(msg_id)
            if random.random() < 0.7:
                ch.basic_ack(method.delivery_tag)
                with state.lock:
                    state.acked.add(msg_id)
    except ValueError:
        raise
    except Exception:
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warren", default="target/release/warren")
    ap.add_argument("--kills", type=int, default=100)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    random.seed(seed)
    data_dir = tempfile.mkdtemp(prefix="warren-crash-loop-")
    broker = Broker(os.path.abspath(args.warren), data_dir)
    state = State()
    started = time.monotonic()
    try:
        for _ in range(args.kills):
            broker.start()
            stop = threading.Event()
            threads = [threading.Thread(target=publisher, args=(broker, state, stop)),
                       threading.Thread(target=consumer, args=(broker, state, stop))]
            for t in threads:
                t.start()
            time.sleep(random.uniform(0.1, 1.0))
            broker.kill9()
            stop.set()
            for t in threads:
                t.join(timeout=10)
        broker.start()
        conn = pika.BlockingConnection(broker.params())
        ch = conn.channel()
        ch.queue_declare(QUEUE, durable=True)
        remaining = []
        while True:
            method, _props, body = ch.basic_get(QUEUE, auto_ack=True)
            if method is None:
                break
            remaining.append(check(body))
        conn.close()
        broker.stop()
    finally:
        if broker.proc and broker.proc.poll() is None:
            broker.proc.kill()
        shutil.rmtree(data_dir, ignore_errors=True)
    present = set(remaining)
    lost = sorted(state.confirmed - state.acked - present)
    duplicates = len(remaining) - len(present)
    result = {
        "kills": args.kills,
        "seed": seed,
        "seconds": round(time.monotonic() - started, 1),
        "published": state.next_id,
        "confirmed": len(state.confirmed),
        "acked_before_crash": len(state.acked),
        "left_in_queue": len(remaining),
        "redelivered_after_ack": len(present & state.acked),
        "duplicates_in_queue": duplicates,
        "confirmed_lost": len(lost),
        "corrupt": 0,
    }
    print(json.dumps(result))
    if lost or duplicates:
        print(f"FAILED: lost {lost[:20]} duplicates {duplicates}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
