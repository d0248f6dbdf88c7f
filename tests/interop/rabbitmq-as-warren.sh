#!/usr/bin/env bash
# Stand-in for the warren binary that runs a real RabbitMQ node instead.
#
# It accepts the command line the suite uses for Warren,
#
#     rabbitmq-as-warren.sh serve --bind HOST --amqp-port PORT --data-dir DIR \
#         [--management-port MPORT [--management-bind MHOST]] \
#         [--prometheus-port PPORT [--prometheus-bind PHOST]]
#
# so every WARREN_BIN code path of the suite (broker startup and shutdown,
# fresh brokers, restarts, the article test in its private network
# namespace) can be checked against RabbitMQ, the reference behaviour:
#
#     WARREN_BIN=tests/interop/rabbitmq-as-warren.sh \
#     WARREN_START_TIMEOUT=60 bash tests/interop/run.sh
#
# Needs the rabbitmq-server package (apt-get install rabbitmq-server); RabbitMQ
# takes several seconds to boot, hence the longer start timeout.
#
# With --management-port the rabbitmq_management plugin is enabled and its
# HTTP listener put on MHOST:MPORT (MHOST defaults to HOST); without it the
# node runs without plugins, as before.  Likewise --prometheus-port enables
# the rabbitmq_prometheus plugin with its listener on PHOST:PPORT (PHOST
# defaults to HOST; PPORT 0 leaves it off, as for Warren), beside management
# when both are given.  Either way the node reads only the rabbitmq.conf
# written into DIR (never /etc/rabbitmq/rabbitmq.conf).
set -euo pipefail

usage() {
    echo "usage: $0 serve --bind HOST --amqp-port PORT --data-dir DIR [--management-port PORT] [--management-bind HOST] [--prometheus-port PORT] [--prometheus-bind HOST]" >&2
    exit 2
}
[ "${1:-}" = serve ] || usage
shift
host=127.0.0.1 port=5672 dir= mgmt_port= mgmt_host= prom_port= prom_host=
while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || usage
    case "$1" in
        --bind) host=$2; shift 2 ;;
        --amqp-port) port=$2; shift 2 ;;
        --data-dir) dir=$2; shift 2 ;;
        --management-port) mgmt_port=$2; shift 2 ;;
        --management-bind) mgmt_host=$2; shift 2 ;;
        --prometheus-port) prom_port=$2; shift 2 ;;
        --prometheus-bind) prom_host=$2; shift 2 ;;
        *) usage ;;
    esac
done
[ -n "$dir" ] || usage
mkdir -p "$dir/mnesia" "$dir/log"
dir="$(cd "$dir" && pwd)"
# Both files are rewritten on every start, so a restart (same data dir) with
# or without --management-port / --prometheus-port gets what its command line
# asks for.
[ "$prom_port" = 0 ] && prom_port=
plugins=
: > "$dir/rabbitmq.conf"
if [ -n "$mgmt_port" ]; then
    plugins=rabbitmq_management
    # new-style (sysctl) format; 3.10 takes the path with its .conf extension
    cat >> "$dir/rabbitmq.conf" <<CONF
management.tcp.port = $mgmt_port
management.tcp.ip = ${mgmt_host:-$host}
CONF
fi
if [ -n "$prom_port" ]; then
    plugins="${plugins:+$plugins,}rabbitmq_prometheus"
    cat >> "$dir/rabbitmq.conf" <<CONF
prometheus.tcp.port = $prom_port
prometheus.tcp.ip = ${prom_host:-$host}
CONF
fi
echo "[$plugins]." > "$dir/enabled_plugins"

# Erlang distribution port: any free one (the default, PORT+20000, may overflow).
dist_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

export RABBITMQ_NODE_IP_ADDRESS="$host"
export RABBITMQ_NODE_PORT="$port"
export RABBITMQ_DIST_PORT="$dist_port"
export RABBITMQ_NODENAME="warren-stand-in-$port@localhost"
export RABBITMQ_MNESIA_BASE="$dir/mnesia"
export RABBITMQ_LOG_BASE="$dir/log"
export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
export RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf"
export RABBITMQ_PID_FILE="$dir/rabbitmq.pid"
export RABBITMQ_LOGS=-   # log to stdout

# Erlang starts an epmd daemon if none runs; in a fresh network namespace
# (the article test) that one is ours to stop afterwards.
epmd_was_running=0
if (exec 3<>/dev/tcp/127.0.0.1/4369) 2>/dev/null; then epmd_was_running=1; fi

# rabbitmq-server traps SIGTERM and stops the node cleanly; forward it.
/usr/lib/rabbitmq/bin/rabbitmq-server &
server_pid=$!
trap 'kill -TERM "$server_pid" 2>/dev/null' TERM INT
status=0
while kill -0 "$server_pid" 2>/dev/null; do
    wait "$server_pid" || status=$?
done
if [ "$epmd_was_running" = 0 ]; then
    epmd -kill >/dev/null 2>&1 || true
fi
exit "$status"
