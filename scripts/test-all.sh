#!/usr/bin/env bash
# Runs Warren's whole test suite: formatting and lints, the Rust tests
# (codec, routing, black-box tests with lapin and amqprs, malformed input),
# then the interop tests with pika, aio-pika, kombu, Celery and amqplib
# against the warren binary that the Rust tests built.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== cargo test"
cargo test --workspace

echo "== interop tests (Python and Node clients)"
WARREN_BIN="$PWD/target/debug/warren" bash tests/interop/run.sh
