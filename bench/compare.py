#!/usr/bin/env python3
"""Warren side by side with RabbitMQ and, optionally, LavinMQ.

Installs RabbitMQ from Debian's packages if it is missing, starts it and
Warren on free ports with fresh data directories, runs each scenario against
each broker in alternation (A B A B ..., or A B C A B C ...) for --rounds
rounds with `warren perf`, samples each broker's RSS and CPU, and prints a
table of medians with Warren/RabbitMQ ratios (Markdown, ready for
docs/BENCHMARKS.md).

LavinMQ can be added with --lavinmq PATH, the path of a LavinMQ 1.0.1 binary
(built from its public source): each round then runs Warren, LavinMQ and
RabbitMQ in that order, and the table gets a LavinMQ column and a
Warren/LavinMQ ratio. --brokers picks which of them run (a comma list of
warren, lavinmq and rabbitmq; by default warren and rabbitmq, and lavinmq
when --lavinmq is given), for instance only Warren and LavinMQ, in which
case RabbitMQ is not even installed; the table shows the brokers run, with a
Warren/X ratio for each other one.

    cargo build --release -p warren
    python3 bench/compare.py --rounds 3 --duration 10
    python3 bench/compare.py --lavinmq PATH --brokers warren,lavinmq

Run as root (RabbitMQ runs as its own user). Everything it starts, it stops.
RabbitMQ is started through su, whose PAM session would leave it 1,024 open
files (about 830 sockets); the script raises that to its own hard limit (at
most 65,536, like the Debian package's systemd unit) and prints each broker's
limit at the start.

LavinMQ runs as the script's user, with `--data-dir DIR --bind 127.0.0.1
--amqp-port PORT --http-port -1` (no HTTP listener), its log in a temporary
file. Every LavinMQ binds the control socket /tmp/lavinmqctl.sock, whatever
its data directory, taking it from any other LavinMQ on the machine: the
script runs one at a time, and none should be running besides.

persistent-64k and persistent-1m are the persistent scenario with 64 KiB and
1 MiB bodies, its confirm window, ack batch and prefetch scaled down (256,
16, 256 and 32, 4, 32): at most 16 MiB and 32 MiB unconfirmed. Their backlog
variants, persistent-64k-backlog (20,000 messages, 1.25 GiB) and
persistent-1m-backlog (2,000, 2 GiB), and persistent-backlog-1m (1,000,000
persistent 1 KiB messages with the persistent scenario's settings) publish
their backlog with confirms into a durable queue and then drain it, judged
like backlog-1m by the lower of the two rates; they run only when
--scenarios names them.

--cpu-per-message adds a second table: for each msgs/s scenario, each
broker's CPU time per message delivered, in µs (fanout counts each of the
ten deliveries): the broker CPU time perf sampled from /proc over the run
(`broker_cpu_s` in its summary: from the start of publishing until the run
was over, leaving out connecting and declaring) divided by the messages
delivered, median over the runs.

Two scenarios are about connections rather than messages:

conns-1000: 1,000 producer and 1,000 consumer connections (2,000 in all),
each producer publishing 16-byte messages at 10 msgs/s to its own queue and
each queue consumed by its own consumer: 10,000 msgs/s in all, with the
producers' first messages spread over the first 100 ms so that they publish
evenly rather than 1,000 at once. Judged by end-to-end p99 latency; RSS is
the broker's peak (which includes setting up the 2,000 connections). Each
run starts on a freshly started broker, so that memory kept from earlier
runs (allocators seldom give it back) does not count, and with the other
brokers stopped, so that their winding down after their own runs does not
compete for the CPU. perf runs on two threads here; its CPU use is in the
last column.

idle-10k: 10,000 connections, each with the handshake completed (heartbeat
interval as the broker proposes: 60 s for Warren and RabbitMQ, 300 s for
LavinMQ), one channel open, and then nothing but heartbeats for --duration
seconds (`warren perf --idle-connections 10000 --hold SECONDS`, at most 64
handshakes in flight). Each run starts on a freshly started broker, the
others stopped: its RSS is sampled for 2 s before perf starts ("before") and
during the hold, from 1 s after the last connection opened until 0.5 s
before the hold ends ("held", the median of those samples). Memory per
connection = (held - before) / connections held, in KiB. The RSS column
shows "held"; the CPU column is the broker's over the whole run, mostly the
handshakes.

Five scenarios are about queue features (RSS is the broker's peak; all but
priority-10 start each run on a fresh broker with the others stopped, and
run only when --scenarios names them):

priority-10: a queue with x-max-priority 10, one producer publishing 16-byte
messages with priorities 0, 1, ..., 9, 0, ... (`--priorities 10`) and one
consumer acking every 100 with prefetch 1000, for --duration seconds:
msgs/s delivered.

ttl-expiry: 1,000,000 16-byte messages published with no consumer into a
queue with x-message-ttl 20 s, then `--wait-empty` polls the queue's
message count (passive declare) every 10 ms until it is 0. Each message
expires 20 s after it was enqueued, so a broker that keeps up empties the
queue at the pace it filled it: the first row, messages / (time from the
first deadline, publishing start + TTL, until the queue was empty), is
about the publish rate (RabbitMQ's publishing outlasts the 20 s, so it
expires while still being published to); the second row is the time from
the last deadline (publishing end + TTL) until the queue was empty, which
shows whether expiry kept up (it can come out a few ms below 0: the end of
publishing is taken when perf saw the reply to its final passive declare).

ttl-burst: the same million, but with no queue TTL: each message carries
an expiration of 1 s, except the first, which carries 45 s. Brokers expire
messages only at the head of a queue, so the first holds the others back;
when it goes at 45 s (publishing must be over by then: the run's line says
so if not), the million behind it are all past their deadlines and expire
at once. Judged by the time from that first deadline until the queue was
empty: the broker's expiry throughput (the count is polled every 10 ms, so
that is the resolution), where ttl-expiry only shows that it keeps pace.

dead-letter-1m: a 1,000,000-message backlog (16 B) in a queue whose
x-dead-letter-exchange is a fanout exchange bound to a second queue
(`--dead-letter-queue perf-dead`), drained by a consumer that rejects every
100 messages with one basic.nack (multiple, requeue=false; `--reject`,
prefetch 1000); perf then polls the second queue's count every 10 ms until
it holds all 1,000,000. Judged by messages / (time from the consumer's start
until the dead-letter queue held them all).

expires-10k: 10,000 queues declared one after another with x-expires 2 s
(`--producers 0 --consumers 0 --wait-deleted`), then each probed in turn,
every 10 ms, with a queue.bind to amq.direct (which, unlike a declare, does
not count as use) until the broker answers 404. Two rows: the declare rate,
and the time from the last declare-ok until the last queue was gone (at
least the 2 s of x-expires).

When a run fails, the last lines of perf's stderr and the broker's last
logged warnings and errors are printed. Each run's line on stderr also shows
the CPU used by other processes meanwhile: the figures assume a machine
that runs nothing else.
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


class Scenario:
    """A row of the table. `kind` says what it is judged by: "rate"
    (msgs/s delivered), "latency" (p99), "backlog" (min of publish and
    drain rates), "idle" (broker memory per idle connection; lower is
    better, as for latency), or one of the queue-feature measures (see
    MEASURES and the docstring). `fresh` starts each run on a freshly
    started broker, with the others stopped. `extra` lists further rows
    (title, kind) judged from the same runs. `timed` scenarios get
    --duration; the others bound themselves. `ttl_s` is the message TTL of
    an "expiry" scenario."""

    def __init__(self, title, args, kind="rate", fresh=False, extra=(), timed=None, ttl_s=None):
        self.title, self.args, self.kind, self.fresh = title, args, kind, fresh
        self.extra = list(extra)
        self.timed = kind not in UNTIMED if timed is None else timed
        self.ttl_s = ttl_s

    def rows(self):
        return [(self.title, self.kind)] + self.extra


# Kinds whose runs end by themselves (their bound, if any, is in their args).
UNTIMED = {"backlog", "idle", "expiry", "burst", "deadletter", "declare"}


# Scenarios run only when --scenarios names them.
OPT_IN = {"backlog-10m", "persistent-64k-backlog", "persistent-1m-backlog",
          "persistent-backlog-1m", "ttl-expiry", "ttl-burst", "dead-letter-1m", "expires-10k"}

def persistent(size, window, ack_every, backlog=None):
    """perf's arguments for persistent messages into a durable queue, with
    confirms (at most `window` unconfirmed) and a consumer acking every
    `ack_every` with a prefetch of `window`; with `backlog`, that many are
    published before the consumer starts."""
    args = ["--size", str(size), "--persistent", "--durable", "--confirm", str(window),
            "--ack-every", str(ack_every), "--prefetch", str(window)]
    return args + (["--backlog", str(backlog)] if backlog else [])


SCENARIOS = {
    "transient": Scenario(
        "transient 16 B, 1 → 1, no confirms, auto-ack",
        ["--size", "16"],
    ),
    "persistent": Scenario(
        "persistent 1 KiB, durable, confirm 1000, ack every 100, prefetch 1000",
        persistent(1024, 1000, 100),
    ),
    # Large persistent messages; see the docstring.
    "persistent-64k": Scenario(
        "persistent 64 KiB, durable, confirm 256, ack every 16, prefetch 256",
        persistent(65536, 256, 16),
    ),
    "persistent-1m": Scenario(
        "persistent 1 MiB, durable, confirm 32, ack every 4, prefetch 32",
        persistent(1 << 20, 32, 4),
    ),
    "fanout": Scenario(
        "fanout 1 → 10 queues, transient 16 B (deliveries/s)",
        ["--size", "16", "--fanout", "10"],
    ),
    # The usual shape of a worker consumer (pika, Celery): it acks each
    # message by itself, with a modest prefetch.
    "ack-each": Scenario(
        "transient 256 B, 1 → 1, consumer acks each message, prefetch 100",
        ["--size", "256", "--ack-every", "1", "--prefetch", "100"],
    ),
    "latency-1k": Scenario(
        "latency at 1k msgs/s",
        ["--size", "16", "--latency", "--rate", "1000", "--ack-every", "1"],
        kind="latency",
    ),
    "latency-10k": Scenario(
        "latency at 10k msgs/s",
        ["--size", "16", "--latency", "--rate", "10000", "--ack-every", "1"],
        kind="latency",
    ),
    "backlog-1m": Scenario(
        "backlog 1M × 16 B, then drain",
        ["--size", "16", "--backlog", "1000000"],
        kind="backlog",
    ),
    # Not run unless named: RabbitMQ takes minutes and gigabytes for it.
    "backlog-10m": Scenario(
        "backlog 10M × 16 B, then drain",
        ["--size", "16", "--backlog", "10000000"],
        kind="backlog",
    ),
    # Persistent backlogs, not run unless named (gigabytes on disk).
    "persistent-64k-backlog": Scenario(
        "persistent 64 KiB backlog: 20,000 published (confirm 256), then drained "
        "(ack every 16, prefetch 256)",
        persistent(65536, 256, 16, backlog=20000),
        kind="backlog",
    ),
    "persistent-1m-backlog": Scenario(
        "persistent 1 MiB backlog: 2,000 published (confirm 32), then drained "
        "(ack every 4, prefetch 32)",
        persistent(1 << 20, 32, 4, backlog=2000),
        kind="backlog",
    ),
    "persistent-backlog-1m": Scenario(
        "persistent 1 KiB backlog: 1,000,000 published (confirm 1000), then drained "
        "(ack every 100, prefetch 1000)",
        persistent(1024, 1000, 100, backlog=1000000),
        kind="backlog",
    ),
    # Queue features; see the docstring.
    "priority-10": Scenario(
        "priority queue (x-max-priority 10), 1 → 1, 16 B, priorities 0–9, ack every 100, "
        "prefetch 1000",
        ["--size", "16", "--queue-arg", "x-max-priority=10", "--priorities", "10",
         "--ack-every", "100", "--prefetch", "1000"],
    ),
    "ttl-expiry": Scenario(
        "TTL expiry: 1M × 16 B, x-message-ttl 20 s, no consumer",
        ["--size", "16", "--consumers", "0", "--count", "1000000",
         "--queue-arg", "x-message-ttl=20000", "--wait-empty", "--duration", "300"],
        kind="expiry", ttl_s=20.0, fresh=True,
        extra=[("TTL expiry: queue empty after the last deadline", "expiry-lag")],
    ),
    "ttl-burst": Scenario(
        "TTL expiry in one burst: 1M × 16 B, expiration 1 s, held back by a first message "
        "of 45 s",
        ["--size", "16", "--consumers", "0", "--count", "1000000", "--expiration", "1000",
         "--first-expiration", "45000", "--wait-empty", "--duration", "300"],
        kind="burst", ttl_s=45.0, fresh=True,
    ),
    "dead-letter-1m": Scenario(
        "dead-lettering: 1M × 16 B backlog rejected (nack, requeue=false, every 100) "
        "to a DLX queue",
        ["--size", "16", "--backlog", "1000000", "--ack-every", "100", "--prefetch", "1000",
         "--reject", "--dead-letter-queue", "perf-dead", "--duration", "300"],
        kind="deadletter", fresh=True,
    ),
    "expires-10k": Scenario(
        "10,000 queues declared with x-expires 2 s",
        ["--producers", "0", "--consumers", "0", "--queues", "10000",
         "--queue-arg", "x-expires=2000", "--wait-deleted", "--keep-queues", "--duration", "300"],
        kind="declare", fresh=True,
        extra=[("10,000 queues with x-expires 2 s: all deleted", "expired")],
    ),
    # See the docstring for these two.
    "conns-1000": Scenario(
        "1,000 connections, each its own queue at 10 msgs/s",
        ["--size", "16", "--producers", "1000", "--consumers", "1000", "--queues", "1000",
         "--rate", "10", "--latency", "--threads", "2"],
        kind="latency",
        fresh=True,
    ),
    "idle-10k": Scenario(
        "10,000 idle connections (handshake, 1 channel, heartbeats)",
        ["--idle-connections", "10000", "--threads", "2"],
        kind="idle",
        fresh=True,
    ),
}

# Idle runs: how long to sample the broker's RSS before perf starts, and the
# margins of the hold within which it counts as "held".
BASELINE_S = 2.0
HOLD_SETTLE_S = 1.0
HOLD_END_MARGIN_S = 0.5


# The brokers --brokers may name, in the order each round runs them.
BROKERS = ("warren", "lavinmq", "rabbitmq")


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


def busy_cpu_seconds():
    """CPU time spent by all processes on the machine so far (all cores;
    interrupts, where loopback traffic is partly accounted, left out)."""
    with open("/proc/stat") as f:
        user, nice, system = [int(x) for x in f.readline().split()[1:4]]
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


def tail_matching(lines, markers, count):
    """The last `count` of `lines` that contain one of `markers`."""
    found = [line.rstrip("\n") for line in lines if any(m in line for m in markers)]
    return found[-count:]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Warren:
    name, initial = "Warren", "W"

    def __init__(self, binary, env=None):
        self.binary = binary
        self.env = dict(os.environ, **(env or {}))

    def start(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="warren-bench-")
        self.log = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--amqp-port", str(self.port), "--management-port", "0",
             "--prometheus-port", "0", "--data-dir", self.dir],
            stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        wait_port(self.port, 30)
        self.pid = self.proc.pid

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines=10):
        """The last warnings and errors Warren logged."""
        self.log.flush()
        self.log.seek(0)
        return tail_matching(self.log, ("WARN", "ERROR"), lines)


class LavinMQ:
    """A LavinMQ 1.0.1 binary: one native process, run as this script's
    user. Each binds /tmp/lavinmqctl.sock, so only one may run at a time."""

    name, initial = "LavinMQ", "L"

    def __init__(self, binary):
        self.binary = binary

    def start(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="lavinmq-bench-")
        self.log = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(
            [self.binary, "--data-dir", self.dir, "--bind", "127.0.0.1",
             "--amqp-port", str(self.port), "--http-port", "-1"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        try:
            wait_port(self.port, 30)
        except RuntimeError:
            tail = self.log_tail()
            self.stop()
            raise RuntimeError(f"LavinMQ did not start: {tail}") from None

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines=10):
        """The last warnings and errors LavinMQ logged."""
        self.log.flush()
        self.log.seek(0)
        return tail_matching(self.log, ("WARN", "ERROR"), lines)


class RabbitMQ:
    name, initial = "RabbitMQ", "R"
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

    def log_tail(self, lines=10):
        """The last warnings and errors in the node's log."""
        path = os.path.join(self.dir, "log", f"{self.node}.log")
        try:
            with open(path, errors="replace") as f:
                return tail_matching(f, ("[warning]", "[error]"), lines)
        except OSError as err:
            return [f"(cannot read {path}: {err})"]

    def stop(self):
        subprocess.run(["su", "rabbitmq", "-s", "/bin/sh", "-c",
                        f"HOME=/var/lib/rabbitmq rabbitmqctl -n {self.node} stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
        shutil.rmtree(self.dir, ignore_errors=True)


def settled_rss_kib(pid, seconds=BASELINE_S):
    """The median of the RSS sampled for `seconds`."""
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.append(rss_kib(pid))
        time.sleep(0.1)
    return statistics.median(samples)


def run_scenario(perf, broker, scenario, duration):
    uri = f"amqp://guest:guest@127.0.0.1:{broker.port}/%2f"
    cmd = [perf, "perf", "--uri", uri, "--json", "--quiet", "--broker-pid", str(broker.pid)]
    cmd += scenario.args
    if scenario.kind == "idle":
        cmd += ["--hold", str(duration)]
    elif scenario.timed:
        cmd += ["--duration", str(duration)]
    before = settled_rss_kib(broker.pid) if scenario.kind == "idle" else None
    cpu0, peak = cpu_seconds(broker.pid), rss_kib(broker.pid)
    busy0 = busy_cpu_seconds()
    samples = []
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        while proc.poll() is None:
            rss = rss_kib(broker.pid)
            samples.append((time.monotonic() - started, rss))
            peak = max(peak, rss)
            time.sleep(0.2)
        out = proc.stdout.read()
        elapsed = time.monotonic() - started
        if proc.returncode != 0 or not out.strip():
            err.seek(0)
            stderr_tail = err.read().splitlines()[-10:]
            return {"error": f"perf exited {proc.returncode}", "stderr": stderr_tail,
                    "broker_log": broker.log_tail()}
    summary = json.loads(out)
    summary["broker_rss_mib"] = peak / 1024
    broker_cpu = cpu_seconds(broker.pid) - cpu0
    summary["broker_cpu_pct"] = 100 * broker_cpu / elapsed
    summary["tool_cpu_pct"] = 100 * summary["tool_cpu_s"] / elapsed
    # Whatever else ran on the machine meanwhile, which skews the figures.
    others = busy_cpu_seconds() - busy0 - broker_cpu - summary["tool_cpu_s"]
    summary["others_cpu_pct"] = max(0.0, 100 * others / elapsed)
    if scenario.kind == "idle":
        idle = summary["idle"]
        start, end = idle["connect_s"] + HOLD_SETTLE_S, idle["connect_s"] + idle["hold_s"]
        held = [rss for t, rss in samples if start <= t <= end - HOLD_END_MARGIN_S]
        if not held or not idle["held"]:
            return {"error": "no RSS sample while the connections were held "
                             "(use a longer --duration)", "stderr": [], "broker_log": []}
        summary["broker_rss_before_mib"] = before / 1024
        summary["broker_rss_mib"] = statistics.median(held) / 1024
        summary["kib_per_connection"] = (statistics.median(held) - before) / idle["held"]
    return summary


def headline(scenario, s, kind=None):
    """The figure a row of `scenario` (its own kind unless `kind` is
    given) is judged by (see MEASURES)."""
    if "error" in s:
        return None
    kind = kind or scenario.kind
    wait = s.get("wait") or {}
    if kind == "expiry":
        # From the first message's deadline (publishing began + TTL) until
        # the queue was empty.
        span = wait["empty_s"] - scenario.ttl_s
        return s["published"] / span if span > 0 else None
    if kind == "expiry-lag":
        # From the last message's deadline (publishing ended + TTL) until
        # the queue was empty, in ms.
        return 1000 * (wait["empty_s"] - s["publish_s"] - scenario.ttl_s)
    if kind == "burst":
        # From the first message's deadline (publishing began + its
        # expiration) until the queue was empty, in ms.
        return 1000 * (wait["empty_s"] - scenario.ttl_s)
    if kind == "deadletter":
        return wait["dead_letter_rate"]
    if kind == "declare":
        return s["declare_rate"]
    if kind == "expired":
        return wait["deleted_s"]
    if kind == "latency":
        lat = s.get("latency_us") or {}
        return lat.get("p99")
    if kind == "backlog":
        b = s["backlog"]
        return min(b["publish_rate"], b["drain_rate"])
    if kind == "idle":
        return s["kib_per_connection"]
    return s["consume_rate"]


def describe_run(scenario, s):
    """One line about one run, for stderr."""
    if "error" in s:
        return s["error"]
    text = (f"{headline(scenario, s):,.1f} (perf CPU {s['tool_cpu_pct']:.0f}%, "
            f"other processes {s['others_cpu_pct']:.0f}%)")
    if s["others_cpu_pct"] > 10:
        text += " [machine busy: figures skewed]"
    wait = s.get("wait") or {}
    if scenario.kind in ("expiry", "burst"):
        text += (f"; published in {s['publish_s']:.2f} s, empty {wait['empty_s']:.2f} s after "
                 f"publishing began")
        if any(kind == "expiry-lag" for _, kind in scenario.extra):
            text += f", {headline(scenario, s, 'expiry-lag'):,.0f} ms after the last deadline"
        if s["publish_s"] > scenario.ttl_s - 1:
            text += " [publishing outlasted the TTL]"
    if scenario.kind == "deadletter":
        b = s["backlog"]
        text += (f"; published {b['publish_rate']:,.0f}/s, rejected {b['drain_rate']:,.0f}/s, "
                 f"{wait['dead_lettered']:,} dead-lettered in {wait['dead_letter_s']:.2f} s")
    if scenario.kind == "declare":
        text += (f"; {s['queues_declared']:,} declared in {s['declare_s']:.2f} s, all deleted "
                 f"{wait['deleted_s']:.2f} s after the last")
    if scenario.kind == "idle":
        idle = s["idle"]
        text += (f"; {idle['held']:,} of {idle['requested']:,} held, opened in "
                 f"{idle['connect_s']:.1f} s; RSS {s['broker_rss_before_mib']:.0f} → "
                 f"{s['broker_rss_mib']:.0f} MiB")
    return text


def report_failure(key, broker, s):
    print(f"  {key} {broker.name} failed: {s['error']}", file=sys.stderr)
    for title, lines in (("perf's stderr", s["stderr"]), (f"{broker.name}'s log", s["broker_log"])):
        if lines:
            print(f"  last lines of {title}:", file=sys.stderr)
            for line in lines:
                print(f"    {line}", file=sys.stderr)


MEASURES = {
    "rate": "msgs/s delivered",
    "latency": "p99 latency µs (lower is better)",
    "backlog": "min(publish, drain) msgs/s",
    "idle": "broker KiB per connection (lower is better)",
    "expiry": "msgs/s expired (first deadline → empty)",
    "expiry-lag": "ms from the last deadline to empty (lower is better)",
    "burst": "ms from the first message's deadline to empty (lower is better)",
    "deadletter": "msgs/s dead-lettered (drain start → all in the DLX queue)",
    "declare": "queues declared/s",
    "expired": "s from the last declare to all deleted (lower is better)",
}

# Decimal places of each kind's figure in the table (0 unless listed).
PLACES = {"idle": 1, "expired": 2}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warren", default="target/release/warren")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10,
                    help="seconds each run lasts (the hold of idle runs)")
    ap.add_argument("--scenarios",
                    default=",".join(k for k in SCENARIOS if k not in OPT_IN))
    ap.add_argument("--warren-env", action="append", default=[], metavar="NAME=VALUE",
                    help="set this in Warren's environment (repeatable), to try a setting")
    ap.add_argument("--lavinmq", metavar="PATH",
                    help="a LavinMQ 1.0.1 binary: compare with LavinMQ too")
    ap.add_argument("--brokers", metavar="LIST",
                    help=f"which brokers to run, a comma list of {', '.join(BROKERS)} "
                         "[default: warren,rabbitmq, and lavinmq with --lavinmq]")
    ap.add_argument("--cpu-per-message", action="store_true",
                    help="after the table, print each broker's CPU µs per message delivered "
                         "in the msgs/s scenarios")
    args = ap.parse_args()
    try:
        warren_env = dict(item.split("=", 1) for item in args.warren_env)
    except ValueError:
        ap.error("--warren-env takes NAME=VALUE")
    keys = args.scenarios.split(",")
    unknown = [k for k in keys if k not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
    if args.brokers is None:
        chosen = {"warren", "rabbitmq"} | ({"lavinmq"} if args.lavinmq else set())
    else:
        chosen = {b.strip().lower() for b in args.brokers.split(",") if b.strip()}
        unknown = sorted(chosen - set(BROKERS))
        if unknown or not chosen:
            ap.error(f"--brokers: unknown {unknown}; known: {', '.join(BROKERS)}")
    if "lavinmq" in chosen:
        if not args.lavinmq:
            ap.error("--brokers names lavinmq: give its binary with --lavinmq PATH")
        if not os.access(args.lavinmq, os.X_OK):
            ap.error(f"--lavinmq {args.lavinmq}: not an executable file")
    perf = os.path.abspath(args.warren)
    # Warren and `warren perf` inherit this process's limit on open files;
    # a thousand or more connections need more than the usual soft 1024.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile_limit(), hard))
    make = {
        "warren": lambda: Warren(perf, warren_env),
        "lavinmq": lambda: LavinMQ(os.path.abspath(args.lavinmq)),
        "rabbitmq": RabbitMQ,
    }
    # Always in the order of BROKERS, whatever the order of --brokers.
    brokers = [make[key]() for key in BROKERS if key in chosen]
    if warren_env:
        print(f"Warren's environment adds {warren_env}", file=sys.stderr)
    results = {}
    running = set()

    def start(b):
        b.start()
        running.add(b)
        print(f"{b.name}: pid {b.pid}, open files limit {open_files_limit(b.pid)}",
              file=sys.stderr)

    def stop(b):
        running.discard(b)
        b.stop()

    try:
        for b in brokers:
            start(b)
        for key in keys:
            scenario = SCENARIOS[key]
            for rnd in range(args.rounds):
                for b in brokers:
                    if scenario.fresh:
                        # The others go too: a broker that has just had
                        # thousands of connections closed works on for a
                        # while (RabbitMQ for several seconds), which would
                        # skew this run's figures.
                        for other in list(running):
                            stop(other)
                        start(b)
                    elif b not in running:
                        start(b)
                    s = run_scenario(perf, b, scenario, args.duration)
                    results.setdefault((key, b.name), []).append(s)
                    print(f"{key} round {rnd + 1} {b.name}: {describe_run(scenario, s)}",
                          file=sys.stderr)
                    if "error" in s:
                        report_failure(key, b, s)
    finally:
        for b in list(running):
            stop(b)

    names = [b.name for b in brokers]
    initials = " / ".join(b.initial for b in brokers)
    ratios = [f"Warren/{n}" for n in names if n != "Warren"] if "Warren" in names else []
    header = (["scenario", "measure"] + names + ratios
              + [f"RSS MiB {initials}", f"broker CPU % {initials}", f"perf CPU % {initials}"])
    print_table_header(header)
    for key in keys:
        scenario = SCENARIOS[key]
        for title, kind in scenario.rows():
            print_row(scenario, title, kind, names,
                      {n: results.get((key, n), []) for n in names})
    if args.cpu_per_message:
        print_cpu_per_message(keys, names, results)


def print_table_header(columns):
    print("| " + " | ".join(columns) + " |")
    print("|" + " --- |" * len(columns))


def ratio(a, b):
    """a/b; n/a when either is missing or 0 or below (a lag of a few ms)."""
    return f"{a / b:.2f}×" if a is not None and b is not None and a > 0 and b > 0 else "n/a"


def print_row(scenario, title, kind, names, runs_by_name):
    """One row of the table: medians over the runs of each broker (in the
    order of `names`), and Warren's ratio to each other broker."""
    med, rss, cpu, tool = {}, {}, {}, {}
    for name in names:
        runs = runs_by_name[name]
        vals = [v for v in (headline(scenario, s, kind) for s in runs) if v is not None]
        med[name] = statistics.median(vals) if vals else None
        ok = [s for s in runs if "error" not in s]
        median_of = lambda field: statistics.median([s[field] for s in ok]) if ok else None
        rss[name] = median_of("broker_rss_mib")
        cpu[name] = median_of("broker_cpu_pct")
        tool[name] = median_of("tool_cpu_pct")
    ratios = ([ratio(med["Warren"], med[n]) for n in names if n != "Warren"]
              if "Warren" in names else [])
    places = PLACES.get(kind, 0)
    fmt = lambda v: "n/a" if v is None else f"{v:,.{places}f}"
    fmt1 = lambda v: "n/a" if v is None else f"{v:.0f}"
    joined = lambda d: " / ".join(fmt1(d[n]) for n in names)
    cells = ([title, MEASURES[kind]] + [fmt(med[n]) for n in names] + ratios
             + [joined(rss), joined(cpu), joined(tool)])
    print("| " + " | ".join(cells) + " |")


def cpu_us_per_message(s):
    """The broker's CPU µs per message delivered in one run: the CPU time
    perf sampled over the run (publishing start to its end) / deliveries."""
    if "error" in s or s.get("broker_cpu_s") is None or not s.get("delivered"):
        return None
    return 1e6 * s["broker_cpu_s"] / s["delivered"]


def print_cpu_per_message(keys, names, results):
    """The second table: medians of cpu_us_per_message, msgs/s scenarios only."""
    rated = [key for key in keys if SCENARIOS[key].kind == "rate"]
    if not rated:
        print("--cpu-per-message: none of the scenarios run is judged in msgs/s",
              file=sys.stderr)
        return
    print()
    print_table_header(["scenario"] + [f"{n} µs/msg" for n in names])
    for key in rated:
        cells = [SCENARIOS[key].title]
        for n in names:
            vals = [v for v in map(cpu_us_per_message, results.get((key, n), []))
                    if v is not None]
            med = statistics.median(vals) if vals else None
            cells.append("n/a" if med is None else f"{med:,.{2 if med < 100 else 0}f}")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
