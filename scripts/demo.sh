#!/usr/bin/env bash
# The demo on a fresh machine: fetches what it needs (scripts/setup.sh), then runs
# `shopmind demo`: all services in one process on the in-process bus and in-memory store,
# MovieLens-100k loaded through the gRPC API, a recommender trained to ONNX, and recommendations
# printed for a few users.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found; install Rust (https://rustup.rs), then run this again" >&2
  exit 1
fi
scripts/setup.sh >/dev/null
cargo run --release --locked --quiet -- demo "$@"
