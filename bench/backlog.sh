#!/usr/bin/env bash
# Backlog benchmark: N persistent messages into a durable queue with confirms
# and no consumer, then drained (warren perf --backlog); the broker's peak
# RSS is sampled throughout. Then the queue is filled again, the broker
# stopped, and the time to restart with that backlog measured.
#
#   bash bench/backlog.sh 10000000 [SIZE]
#
# Uses target/release/warren (cargo build --release -p warren), or the
# binary WARREN names (to compare two builds in one sitting).
set -euo pipefail
N=${1:-1000000}
SIZE=${2:-16}
cd "$(dirname "$0")/.."
W=${WARREN:-target/release/warren}
DATA=$(mktemp -d)
trap 'rm -rf "$DATA"' EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URI="amqp://guest:guest@127.0.0.1:$PORT/%2f"

start() { "$W" serve --amqp-port "$PORT" --data-dir "$DATA" 2>>"$DATA.log" & BPID=$!; wait_port; }
wait_port() { until python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT),0.1)" 2>/dev/null; do sleep 0.01; done; }
stop() { kill -TERM "$BPID"; wait "$BPID" || true; }

start
PEAK_FILE=$(mktemp)
echo 0 >"$PEAK_FILE"
( peak=0; while kill -0 "$BPID" 2>/dev/null; do
    r=$(awk '/VmRSS/{print $2}' "/proc/$BPID/status" 2>/dev/null || echo 0)
    if [ "${r:-0}" -gt "$peak" ]; then peak=$r; echo "$peak" >"$PEAK_FILE"; fi
    sleep 0.2
  done ) &
"$W" perf --uri "$URI" --backlog "$N" --size "$SIZE" --persistent --durable \
    --confirm 1000 --ack-every 100 --prefetch 1000 --keep-queues --json >"$DATA.perf.json"
stop
python3 - "$DATA.perf.json" "$(cat "$PEAK_FILE")" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
b = d["backlog"]
print(f"messages {b['messages']}: publish {b['publish_rate']:.0f}/s, drain {b['drain_rate']:.0f}/s, "
      f"broker peak RSS {int(sys.argv[2]) / 1024:.1f} MiB, tool CPU {d['tool_cpu_s_per_million']} s per million")
PY

start
"$W" perf --uri "$URI" --consumers 0 --count "$N" --size "$SIZE" --persistent --durable \
    --confirm 1000 --keep-queues --json >/dev/null
stop
T0=$(date +%s.%N)
start
T1=$(date +%s.%N)
RSS=$(awk '/VmRSS/{print $2}' "/proc/$BPID/status")
stop
python3 -c "print(f'restart with {$N} queued: listening after {$T1-$T0:.2f} s, RSS {$RSS/1024:.1f} MiB')"
rm -f "$PEAK_FILE" "$DATA.log" "$DATA.perf.json"
