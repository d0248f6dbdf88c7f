#!/usr/bin/env bash
# Single entry point of the cross-language interop suite.
#
#   bash tests/interop/run.sh [pytest args...]
#
# Broker under test:
#   AMQP_URL=amqp://guest:guest@127.0.0.1:5672/   use an already running broker
#                                                 (tests that start their own
#                                                 broker are skipped)
#   otherwise WARREN_BIN (default: target/debug/warren) is started once per run.
#
# Installs the Python clients into .venv/interop (repo root) and the Node
# clients into tests/interop/node_modules, re-installing only when
# requirements.txt / package-lock.json change.  The exit code is pytest's.
set -euo pipefail

INTEROP_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$INTEROP_DIR/../.." && pwd)"
cd "$REPO_ROOT"

VENV="${INTEROP_VENV:-$REPO_ROOT/.venv/interop}"
PYTHON="${PYTHON:-python3}"

log() { printf '[interop] %s\n' "$*" >&2; }

stamp_of() { sha256sum "$1" | cut -d' ' -f1; }

# --- Python clients -------------------------------------------------------
make_venv() {
    "$PYTHON" -m venv "$VENV" >/dev/null 2>&1 && return 0
    rm -rf "$VENV"
    # e.g. a Debian python without the venv module
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "python venv module unavailable; installing python3-venv"
        export DEBIAN_FRONTEND=noninteractive
        { apt-get install -y -qq python3-venv >/dev/null 2>&1 \
            || { apt-get update -qq >/dev/null && apt-get install -y -qq python3-venv >/dev/null; }; } \
            && "$PYTHON" -m venv "$VENV" >/dev/null 2>&1 && return 0
        rm -rf "$VENV"
    fi
    PIP_BREAK_SYSTEM_PACKAGES=1 "$PYTHON" -m pip install --quiet --disable-pip-version-check --user virtualenv \
        && "$PYTHON" -m virtualenv --quiet "$VENV"
}

if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "creating virtualenv $VENV"
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    make_venv
fi
req_stamp="$(stamp_of "$INTEROP_DIR/requirements.txt")"
if [ "$(cat "$VENV/.interop-requirements" 2>/dev/null || true)" != "$req_stamp" ]; then
    log "installing Python requirements"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r "$INTEROP_DIR/requirements.txt"
    echo "$req_stamp" > "$VENV/.interop-requirements"
fi

# --- Chromium for the web UI test ------------------------------------------
# test_web_ui.py drives Debian's chromium through Playwright (which is told
# never to download a browser of its own).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian's chromium for the web UI test"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq chromium >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null; } \
        || log "could not install chromium; test_web_ui.py will fail"
fi

# --- RabbitMQ for the definitions round trip's way back --------------------
# test_definitions_roundtrip.py imports Warren's export into a RabbitMQ 3.10
# node it starts itself (through rabbitmq-as-warren.sh); the package is
# installed without letting its scripts start a node of their own.
if ! command -v rabbitmq-server >/dev/null 2>&1 && [ ! -x /usr/sbin/rabbitmq-server ] \
    && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing RabbitMQ (not started) for the definitions round trip"
    export DEBIAN_FRONTEND=noninteractive
    made_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    apt-get install -y -qq rabbitmq-server >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null && apt-get install -y -qq rabbitmq-server >/dev/null; } \
        || log "could not install rabbitmq-server; the way back to RabbitMQ is skipped"
    if [ -n "$made_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

# --- Node clients ---------------------------------------------------------
lock_stamp="$(stamp_of "$INTEROP_DIR/package-lock.json")"
if [ "$(cat "$INTEROP_DIR/node_modules/.interop-lock" 2>/dev/null || true)" != "$lock_stamp" ]; then
    log "installing Node packages (npm ci)"
    (cd "$INTEROP_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$lock_stamp" > "$INTEROP_DIR/node_modules/.interop-lock"
fi

# --- Broker under test ----------------------------------------------------
if [ -n "${AMQP_URL:-}" ]; then
    log "broker: AMQP_URL=$AMQP_URL"
else
    WARREN_BIN="${WARREN_BIN:-target/debug/warren}"
    case "$WARREN_BIN" in
        /*) ;;
        *) WARREN_BIN="$REPO_ROOT/$WARREN_BIN" ;;
    esac
    export WARREN_BIN
    if [ ! -x "$WARREN_BIN" ]; then
        log "Warren binary not found at $WARREN_BIN: build it (cargo build -p warren) or set WARREN_BIN, or set AMQP_URL"
        exit 2
    fi
    log "broker: WARREN_BIN=$WARREN_BIN"
fi

export PATH="$VENV/bin:$PATH"
export PYTHONDONTWRITEBYTECODE=1
exec "$VENV/bin/python" -m pytest tests/interop -q "$@"
