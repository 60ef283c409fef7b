#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs or fetches what the tests need
# (scripts/setup.sh: nats-server, redis-server, the ONNX Runtime library, MovieLens-100k), then
# `cargo test` over the workspace. Tests start their own nats-server and redis-server processes
# on free loopback ports; nothing else needs to run.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found; install Rust (https://rustup.rs), then run this again" >&2
  exit 1
fi
scripts/setup.sh
cargo test --workspace --locked "$@"
