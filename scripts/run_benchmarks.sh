#!/usr/bin/env bash
# The runs behind docs/BENCHMARKS.md, one after another (never two timed runs at once).
#   bash scripts/run_benchmarks.sh [OUT]      (default OUT: docs/bench)
# Each step writes OUT/STEP/bench.{json,md,png}; a step whose bench.json exists is skipped.
set -u
OUT=${1:-docs/bench}
BENCH=${BENCH:-inceptionnet bench}
step() {
    local name=$1; shift
    if [ -f "$OUT/$name/bench.json" ]; then echo "skip $name (done)"; return; fi
    echo "== $name: $BENCH $*"
    $BENCH "$@" --output-dir "$OUT/$name" || echo "step $name: some backend failed (see its table)"
}
step infer_b32 --models googlenet inception_v3 --batch-sizes 32 \
    --backends tv-eager tv-channels-last tv-compile tv-onnxruntime eager eager-bf16 compile compile-bf16 onnxruntime
step infer_b1 --models googlenet inception_v3 --batch-sizes 1 \
    --backends tv-eager tv-channels-last tv-onnxruntime eager eager-bf16 onnxruntime
step train_b16 --mode train --models googlenet inception_v3 --batch-sizes 16
