#!/usr/bin/env bash
# Runs the article's producer/consumer pair (article/*.py, unmodified) against
# a Warren broker listening on 127.0.0.1:5672, the address the scripts
# hard-code ('localhost', default port).
#
# Meant to run inside a private network namespace so that port 5672 cannot
# collide with anything else on the machine; test_article.py starts it as
#
#     NETNS=1 unshare --net bash article_flow.sh
#
# or as plain `bash article_flow.sh` when namespaces are not permitted and
# 127.0.0.1:5672 is free.
#
# Environment:
#   WARREN_BIN   broker binary (required)
#   PYTHON       python with pika installed (default: python3)
#   OUT_DIR      where broker.log / consumer.out / producer.out go (required)
#   NETNS=1      bring the loopback interface up first (fresh namespace)
#   WARREN_START_TIMEOUT  seconds to wait for the broker (default 20)
#
# Exit status 0 when the consumer printed the expected " [x] Received" line.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
: "${WARREN_BIN:?WARREN_BIN must be set}"
: "${OUT_DIR:?OUT_DIR must be set}"
START_TIMEOUT="${WARREN_START_TIMEOUT:-20}"
STEP_TIMEOUT=20
EXPECTED=" [x] Received b'{\"name\": \"John\", \"message\": \"Hello World!\"}'"

export PYTHONUNBUFFERED=1
mkdir -p "$OUT_DIR/data"
broker_pid= consumer_pid=

log() { printf '[article] %s\n' "$*" >&2; }

stop_pid() {  # stop_pid PID GRACE_SECONDS
    local pid=$1 grace=$2 i
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < grace * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}

cleanup() {
    stop_pid "$consumer_pid" 5
    stop_pid "$broker_pid" 10
}
trap cleanup EXIT

# wait_for SECONDS COMMAND...: poll until COMMAND succeeds
wait_for() {
    local secs=$1 i
    shift
    for ((i = 0; i < secs * 10; i++)); do
        "$@" && return 0
        sleep 0.1
    done
    return 1
}

port_open() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }
alive() { kill -0 "$1" 2>/dev/null; }
file_has() { grep -qF -- "$2" "$1" 2>/dev/null; }

if [ "${NETNS:-0}" = 1 ]; then
    if command -v ip >/dev/null 2>&1; then
        ip link set lo up
    else
        # no iproute2: set IFF_UP on lo with an ioctl
        "$PYTHON" - <<'EOF'
import fcntl, socket, struct
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
req = struct.pack("16sH", b"lo", 0)
flags = struct.unpack("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, req))[1]
fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP))
EOF
    fi
    log "loopback up in private network namespace"
fi

if port_open; then
    log "something already listens on 127.0.0.1:5672; refusing to run"
    exit 3
fi

log "starting broker: $WARREN_BIN serve --bind 127.0.0.1 --amqp-port 5672 --data-dir $OUT_DIR/data"
"$WARREN_BIN" serve --bind 127.0.0.1 --amqp-port 5672 --data-dir "$OUT_DIR/data" \
    >"$OUT_DIR/broker.log" 2>&1 </dev/null &
broker_pid=$!
if ! wait_for "$START_TIMEOUT" port_open; then
    log "broker did not listen on 127.0.0.1:5672 within ${START_TIMEOUT}s"
    exit 4
fi

cd "$OUT_DIR"
"$PYTHON" "$HERE/article/consumer.py" >"$OUT_DIR/consumer.out" 2>&1 </dev/null &
consumer_pid=$!
if ! wait_for "$STEP_TIMEOUT" file_has "$OUT_DIR/consumer.out" " [*] Waiting for messages"; then
    log "consumer did not start consuming"
    exit 5
fi

if ! timeout "$STEP_TIMEOUT" "$PYTHON" "$HERE/article/producer.py" >"$OUT_DIR/producer.out" 2>&1 </dev/null; then
    log "producer failed"
    exit 6
fi

if ! wait_for "$STEP_TIMEOUT" file_has "$OUT_DIR/consumer.out" "$EXPECTED"; then
    log "consumer did not print the received message"
    exit 7
fi
if ! alive "$consumer_pid"; then
    log "consumer exited on its own"
    exit 8
fi
log "ok"
exit 0
