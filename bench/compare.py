#!/usr/bin/env python3
"""Warren and RabbitMQ side by side.

Installs RabbitMQ from Debian's packages if it is missing, starts it and
Warren on free ports with fresh data directories, runs each scenario against
both in alternation (A B A B ...) for --rounds rounds with `warren perf`,
samples each broker's RSS and CPU, and prints a table of medians with
Warren/RabbitMQ ratios (Markdown, ready for docs/BENCHMARKS.md).

    cargo build --release -p warren
    python3 bench/compare.py --rounds 3 --duration 10

Run as root (RabbitMQ runs as its own user). Everything it starts, it stops.
"""

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

SCENARIOS = {
    "transient": (
        "transient 16 B, 1 → 1, no confirms, auto-ack",
        ["--size", "16"],
    ),
    "persistent": (
        "persistent 1 KiB, durable, confirm 1000, ack every 100, prefetch 1000",
        ["--size", "1024", "--persistent", "--durable", "--confirm", "1000",
         "--ack-every", "100", "--prefetch", "1000"],
    ),
    "fanout": (
        "fanout 1 → 10 queues, transient 16 B (deliveries/s)",
        ["--size", "16", "--fanout", "10"],
    ),
    "latency-1k": (
        "latency at 1k msgs/s",
        ["--size", "16", "--latency", "--rate", "1000", "--ack-every", "1"],
    ),
    "latency-10k": (
        "latency at 10k msgs/s",
        ["--size", "16", "--latency", "--rate", "10000", "--ack-every", "1"],
    ),
    "backlog-1m": (
        "backlog 1M × 16 B, then drain",
        ["--size", "16", "--backlog", "1000000"],
    ),
    "conns-1000": (
        "1,000 connections, each its own queue at 10 msgs/s",
        ["--size", "16", "--producers", "1000", "--consumers", "1000", "--queues", "1000",
         "--rate", "10", "--latency"],
    ),
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def nofile_limit():
    """The open-files limit to give the brokers: this process's hard limit,
    at most 65,536."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)


def open_files_limit(pid):
    """The soft limit on open files of a running process."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft = line.split()[3]
                return None if soft == "unlimited" else int(soft)
    return None


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Warren:
    name = "Warren"

    def __init__(self, binary):
        self.binary = binary

    def start(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="warren-bench-")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--amqp-port", str(self.port), "--data-dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, 30)
        self.pid = self.proc.pid

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


class RabbitMQ:
    name = "RabbitMQ"
    server = "/usr/lib/rabbitmq/bin/rabbitmq-server"

    def ensure_installed(self):
        if os.path.exists(self.server):
            return
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "rabbitmq-server"], check=True, env=env)
        # The package starts a system instance; this script runs its own.
        subprocess.run(["service", "rabbitmq-server", "stop"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self):
        self.ensure_installed()
        self.port = free_port()
        self.node = f"warrenbench{self.port}@localhost"
        self.dir = tempfile.mkdtemp(prefix="rabbit-bench-")
        with open(os.path.join(self.dir, "enabled_plugins"), "w") as f:
            f.write("[].\n")
        subprocess.run(["chown", "-R", "rabbitmq", self.dir], check=True)
        env = {
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": os.path.join(self.dir, "mnesia"),
            "RABBITMQ_LOG_BASE": os.path.join(self.dir, "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(self.dir, "enabled_plugins"),
            "HOME": "/var/lib/rabbitmq",
        }
        exports = " ".join(f"{k}={v}" for k, v in env.items())
        # su's PAM session (pam_limits) drops the soft limit on open files
        # to 1024, with which RabbitMQ accepts only about 830 sockets
        # ("Limiting to approx 927 file handles" in its log) and refuses the
        # rest ("Ranch acceptor reducing accept rate: out of file
        # descriptors"). Raise it as far as the hard limit allows, as the
        # Debian package's systemd unit does (LimitNOFILE).
        self.proc = subprocess.Popen(
            ["su", "rabbitmq", "-s", "/bin/sh", "-c",
             f"ulimit -n {nofile_limit()} 2>/dev/null || ulimit -n \"$(ulimit -Hn)\"; "
             f"exec env {exports} {self.server}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_port(self.port, 120)
        deadline = time.monotonic() + 30
        while True:
            pid = self.find_beam()
            if pid:
                self.pid = pid
                return
            if time.monotonic() > deadline:
                raise RuntimeError("cannot find RabbitMQ's beam.smp process")
            time.sleep(0.2)

    def find_beam(self):
        """The Erlang VM of this node (named in its environment)."""
        marker = f"RABBITMQ_NODENAME={self.node}".encode()
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if not f.read().startswith("beam"):
                        continue
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if marker in f.read().split(b"\0"):
                        return int(pid)
            except OSError:
                continue
        return None

    def stop(self):
        subprocess.run(["su", "rabbitmq", "-s", "/bin/sh", "-c",
                        f"HOME=/var/lib/rabbitmq rabbitmqctl -n {self.node} stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
        shutil.rmtree(self.dir, ignore_errors=True)


def run_scenario(perf, broker, args, duration):
    uri = f"amqp://guest:guest@127.0.0.1:{broker.port}/%2f"
    cmd = [perf, "perf", "--uri", uri, "--json", "--quiet", "--broker-pid", str(broker.pid)] + args
    if "--backlog" not in args:
        cmd += ["--duration", str(duration)]
    cpu0, peak = cpu_seconds(broker.pid), rss_kib(broker.pid)
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    while proc.poll() is None:
        peak = max(peak, rss_kib(broker.pid))
        time.sleep(0.2)
    out = proc.stdout.read()
    elapsed = time.monotonic() - started
    if proc.returncode != 0 or not out.strip():
        return {"error": f"perf exited {proc.returncode}"}
    summary = json.loads(out)
    summary["broker_rss_mib"] = peak / 1024
    summary["broker_cpu_pct"] = 100 * (cpu_seconds(broker.pid) - cpu0) / elapsed
    return summary


def headline(key, s):
    """The figure each scenario is judged by (higher is better unless noted)."""
    if "error" in s:
        return None
    if key.startswith("latency") or key == "conns-1000":
        lat = s.get("latency_us") or {}
        return lat.get("p99")
    if key == "backlog-1m":
        b = s["backlog"]
        return min(b["publish_rate"], b["drain_rate"])
    return s["consume_rate"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warren", default="target/release/warren")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = ap.parse_args()
    perf = os.path.abspath(args.warren)
    # Warren and `warren perf` inherit this process's limit on open files;
    # a thousand or more connections need more than the usual soft 1024.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile_limit(), hard))
    brokers = [Warren(perf), RabbitMQ()]
    results = {}
    started = []
    try:
        for b in brokers:
            b.start()
            started.append(b)
            print(f"{b.name}: pid {b.pid}, open files limit {open_files_limit(b.pid)}",
                  file=sys.stderr)
        for key in args.scenarios.split(","):
            _, scenario_args = SCENARIOS[key]
            for rnd in range(args.rounds):
                for b in brokers:
                    s = run_scenario(perf, b, scenario_args, args.duration)
                    results.setdefault((key, b.name), []).append(s)
                    print(f"{key} round {rnd + 1} {b.name}: {headline(key, s)}", file=sys.stderr)
    finally:
        for b in started:
            b.stop()

    print("| scenario | measure | Warren | RabbitMQ | Warren/RabbitMQ | RSS MiB W / R | broker CPU % W / R |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for key in args.scenarios.split(","):
        title, _ = SCENARIOS[key]
        med = {}
        rss = {}
        cpu = {}
        for name in ("Warren", "RabbitMQ"):
            runs = results.get((key, name), [])
            vals = [v for v in (headline(key, s) for s in runs) if v is not None]
            med[name] = statistics.median(vals) if vals else None
            ok = [s for s in runs if "error" not in s]
            rss[name] = statistics.median([s["broker_rss_mib"] for s in ok]) if ok else None
            cpu[name] = statistics.median([s["broker_cpu_pct"] for s in ok]) if ok else None
        lower_better = key.startswith("latency") or key == "conns-1000"
        measure = "p99 latency µs (lower is better)" if lower_better else (
            "min(publish, drain) msgs/s" if key == "backlog-1m" else "msgs/s delivered")
        w, r = med["Warren"], med["RabbitMQ"]
        ratio = f"{w / r:.2f}×" if w and r else "n/a"
        fmt = lambda v: "n/a" if v is None else f"{v:,.0f}"
        fmt1 = lambda v: "n/a" if v is None else f"{v:.0f}"
        print(f"| {title} | {measure} | {fmt(w)} | {fmt(r)} | {ratio} | "
              f"{fmt1(rss['Warren'])} / {fmt1(rss['RabbitMQ'])} | {fmt1(cpu['Warren'])} / {fmt1(cpu['RabbitMQ'])} |")


if __name__ == "__main__":
    main()
