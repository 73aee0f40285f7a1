"""A/B of our graph work before OpenVINO int8 (docs/BENCHMARKS.md): the same random-weight model exported
three ways -- BN folded + parallel 1x1 convs merged (what the openvino backend runs), BN folded only,
plain -- each quantized by NNCF on the same 16 random images and compiled with and without
INFERENCE_PRECISION_HINT=bf16 for the layers left in floating point; the six engines are timed
interleaved (7 calls of batch 32, 60 of batch 1; median), so drift hits them alike.

    flock /tmp/cpu.lock .venv/bin/python scripts/openvino_graph_ab.py googlenet 224
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from inceptionnet.bench import build_models
from inceptionnet.deploy import openvino as OV
from inceptionnet.deploy.fast import _export_onnx
from inceptionnet.deploy.fold import fold_bn, optimize_module

name, size = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(2)
ours, tv, _ = build_models(name, 1000)
calib = torch.randn(16, 3, size, size, generator=torch.Generator().manual_seed(1))
opt, _ = optimize_module(ours)
tmp = tempfile.mkdtemp()
graphs = {"merged": opt, "folded": fold_bn(ours).eval(), "plain": ours}
qs = {}
for g, m in graphs.items():
    _export_onnx(m, ours, calib[:2], Path(tmp) / f"{g}.onnx", True)
    qs[g] = OV.quantize(OV.read_onnx(Path(tmp) / f"{g}.onnx"), calib)
core = OV.core()
for bs in (32, 1):
    x = torch.randn(bs, 3, size, size)
    hint = "THROUGHPUT" if bs > 1 else "LATENCY"
    runs = {}
    for g, q in qs.items():
        for k, extra in {"": {}, "+bf16": {"INFERENCE_PRECISION_HINT": "bf16"}}.items():
            cm = core.compile_model(q, "CPU", {"PERFORMANCE_HINT": hint, "INFERENCE_NUM_THREADS": 2, **extra})
            r = OV.Runner(cm)
            r(x)
            r(x)
            runs[g + k] = r
    n = 7 if bs > 1 else 60
    ts = {k: [] for k in runs}
    for _ in range(n):
        for k, r in runs.items():
            t = time.perf_counter()
            r(x)
            ts[k].append(time.perf_counter() - t)
    print(bs, {k: round(bs / statistics.median(v), 1) for k, v in ts.items()}, flush=True)
