#!/usr/bin/env bash
# Regenerates crates/encoder/tests/fixtures/minilm_reference.json: all-MiniLM-L6-v2 embeddings of
# tests/fixtures/sentences.txt computed by an independent BERT implementation (candle-transformers,
# tools/encoder-reference, a separate cargo project so its dependencies stay out of the product).
# Slow the first time (it compiles candle). Needs scripts/setup.sh to have fetched the model.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
cargo build --manifest-path tools/encoder-reference/Cargo.toml --locked
tools/encoder-reference/target/debug/encoder-reference .cache/models/all-MiniLM-L6-v2 \
  crates/encoder/tests/fixtures/sentences.txt crates/encoder/tests/fixtures/minilm_reference.json
