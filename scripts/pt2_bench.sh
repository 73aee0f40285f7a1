#!/usr/bin/env bash
# Issue 31's (and 34's int8) measurements (docs/BENCHMARKS.md "PyTorch 2 deployment"): AOTInductor against our eager,
# compile, ONNX Runtime and OpenVINO rows and the peers' plain exports; ExecuTorch (XNNPACK) fp32 /
# int8 at batch 1; the export time of each format. One after another, never two timed runs at once.
#   bash scripts/pt2_bench.sh [OUT]      (default OUT: docs/bench)
# bf16 rows (aoti-bf16, eager-bf16, compile-bf16) are added only where the CPU computes bf16 natively.
set -u
OUT=${1:-docs/bench}
BIN=${BIN:-.venv/bin}
BF16=""
if grep -qE 'avx512_bf16|amx_bf16' /proc/cpuinfo; then BF16="eager-bf16 compile-bf16 aoti-bf16"; fi
grep -m1 'model name' /proc/cpuinfo
grep -m1 -o -E 'avx2|avx512f|avx512_bf16|avx512_vnni|avx_vnni|amx_bf16|amx_int8' /proc/cpuinfo | sort -u | tr '\n' ' '; echo
step() {
    local name=$1; shift
    if [ -f "$OUT/$name/bench.json" ]; then echo "skip $name (done)"; return; fi
    echo "== $name: inceptionnet bench $*"
    "$BIN/inceptionnet" bench "$@" --output-dir "$OUT/$name" || echo "step $name: some backend failed (see its table)"
}
step pt2_b32 --models googlenet inception_v3 --batch-sizes 32 \
    --backends eager compile aoti onnxruntime openvino tv-onnxruntime tv-openvino $BF16
step pt2_b1 --models googlenet --batch-sizes 1 \
    --backends eager aoti onnxruntime openvino executorch executorch-int8 tv-onnxruntime tv-openvino $BF16
# issue 34: the fast path's int8 (ORT's QDQ graph, run by ONNX Runtime or OpenVINO) vs OpenVINO's own
# int8 (NNCF on the plain export) and ONNX Runtime's on the plain export
step int8_b32 --models googlenet inception_v3 --batch-sizes 32 \
    --backends onnxruntime-int8 openvino-int8 tv-onnxruntime-int8 tv-openvino-int8
# export time of each format, googlenet at 224, random weights, the whole command (verification included)
TMP=$(mktemp -d)
for fmt in onnx:model.onnx openvino:model.xml pt2:model.pt2 aoti:aoti.pt2 executorch:model.pte torchscript:model.pt; do
    f=${fmt%%:*}; out=$TMP/${fmt#*:}
    start=$(date +%s.%N)
    "$BIN/inceptionnet" export googlenet --format "$f" -o "$out" > /dev/null 2>&1 || echo "export $f failed"
    echo "export $f: $(echo "$(date +%s.%N) - $start" | bc) s"
done
rm -rf "$TMP"
