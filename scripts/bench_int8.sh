#!/usr/bin/env bash
# The int8 / bf16 tables of docs/BENCHMARKS.md ("int8 and bf16 against OpenVINO and ONNX Runtime"):
# one `inceptionnet bench` process per line, each under the exclusive CPU lock (at most ~6 min each
# on 2 cores), so nothing else runs while it measures. inception_v3 is split into its peer rows and
# our rows (two processes, one after the other, each with its own tv-eager baseline).
#
#   bash scripts/bench_int8.sh [OUT_DIR]        # default docs/bench; writes OUT_DIR/int8_*/bench.{json,md,png}
set -euo pipefail
OUT=${1:-docs/bench}
BIN=${BIN:-.venv/bin}
LOCK=${LOCK:-/tmp/cpu.lock}
PEERS="tv-onnxruntime tv-onnxruntime-int8 tv-openvino tv-openvino-bf16 tv-openvino-int8"
OURS="eager-bf16 onnxruntime onnxruntime-int8 openvino openvino-bf16 openvino-int8"
lscpu | grep -E "Model name" || true
grep -o -w -E "avx512f|avx512_bf16|avx512_vnni|avx_vnni|amx_bf16|amx_int8|amx_tile" /proc/cpuinfo | sort -u | tr '\n' ' '; echo
run() {  # output name, then bench flags
    local name=$1; shift
    echo "== $name: inceptionnet bench $*"
    flock "$LOCK" "$BIN/inceptionnet" bench "$@" --output-dir "$OUT/$name"
}
run int8_googlenet_b32 --models googlenet --batch-sizes 32 --backends $PEERS $OURS
run int8_inception_v3_b32_peers --models inception_v3 --batch-sizes 32 --backends $PEERS
run int8_inception_v3_b32_ours --models inception_v3 --batch-sizes 32 --backends $OURS
run int8_googlenet_b1 --models googlenet --batch-sizes 1 --repeats 15 --backends $PEERS $OURS  # 2 ms calls: more repeats
# our best row vs the best peer row per configuration, over all the runs above
"$BIN/python" - "$OUT" <<'PY'
import json, sys
from pathlib import Path
from inceptionnet.bench import summarize_results
rows = [r for d in ("int8_googlenet_b32", "int8_inception_v3_b32_peers", "int8_inception_v3_b32_ours", "int8_googlenet_b1")
        for r in json.loads((Path(sys.argv[1]) / d / "bench.json").read_text())["results"]]
summary = summarize_results([r for r in rows if r["backend"] != "tv-eager"])
(Path(sys.argv[1]) / "int8_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
for e in summary:
    print(json.dumps(e))
PY
