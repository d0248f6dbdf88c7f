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
if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtualenv $VENV"
    mkdir -p "$(dirname "$VENV")"
    if ! "$PYTHON" -m venv "$VENV" >/dev/null 2>&1; then
        # e.g. a Debian python without python3-venv: fall back to virtualenv.
        rm -rf "$VENV"
        "$PYTHON" -m pip install --quiet --disable-pip-version-check virtualenv
        "$PYTHON" -m virtualenv --quiet "$VENV"
    fi
fi
req_stamp="$(stamp_of "$INTEROP_DIR/requirements.txt")"
if [ "$(cat "$VENV/.interop-requirements" 2>/dev/null || true)" != "$req_stamp" ]; then
    log "installing Python requirements"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r "$INTEROP_DIR/requirements.txt"
    echo "$req_stamp" > "$VENV/.interop-requirements"
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
