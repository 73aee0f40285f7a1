#!/usr/bin/env bash
# The int8 / bf16 tables of docs/BENCHMARKS.md ("int8 and bf16 against OpenVINO and ONNX Runtime"):
# one `inceptionnet bench` process per configuration, each under the exclusive CPU lock (about 3-6 min
# each on 2 cores), so nothing else runs while it measures.
#
#   bash scripts/bench_int8.sh [OUT_DIR]        # default docs/bench; writes OUT_DIR/int8_*/bench.{json,md,png}
set -euo pipefail
OUT=${1:-docs/bench}
BIN=${BIN:-.venv/bin}
LOCK=${LOCK:-/tmp/cpu.lock}
ROWS="tv-eager tv-onnxruntime tv-onnxruntime-int8 tv-openvino tv-openvino-bf16 tv-openvino-int8
      eager-bf16 onnxruntime onnxruntime-int8 openvino openvino-bf16 openvino-int8"
lscpu | grep -E "Model name" || true
grep -o -w -E "avx512f|avx512_bf16|avx512_vnni|avx_vnni|amx_bf16|amx_int8|amx_tile" /proc/cpuinfo | sort -u | tr '\n' ' '; echo
run() {  # name, then bench flags
    local name=$1; shift
    echo "== $name: $BIN/inceptionnet bench $*"
    flock "$LOCK" "$BIN/inceptionnet" bench "$@" --backends $ROWS --output-dir "$OUT/$name"
}
run int8_googlenet_b32 --models googlenet --batch-sizes 32
run int8_inception_v3_b32 --models inception_v3 --batch-sizes 32
run int8_googlenet_b1 --models googlenet --batch-sizes 1
