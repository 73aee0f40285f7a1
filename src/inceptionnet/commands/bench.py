"""``inceptionnet bench``: images/s of this project's fast paths vs torchvision, ONNX Runtime and
torch.compile, in one process, with the same weights, the same input and the same threads. This module
parses, checks the flags and prints; the benchmark itself is ``inceptionnet.bench``.

    inceptionnet bench                                   # googlenet 224 + inception_v3 299, batch 1 and 32
    inceptionnet bench --models googlenet --batch-sizes 32 --backends tv-eager eager onnxruntime compile
    inceptionnet bench --mode train --models googlenet --batch-sizes 16
    inceptionnet bench --json > bench.json

Inference backends (``--backends``; default: all but the torch.compile ones, which take a minute or
more each to compile, and the bf16 ones where the CPU has no native bf16):

* ``tv-eager``: torchvision's model (``torchvision.models.googlenet`` / ``inception_v3`` with this
  project's random-init weights loaded), eager fp32 NCHW: the baseline of every ratio. Models torchvision
  does not have use this project's model unchanged instead (``"source": "inceptionnet"``).
* ``tv-channels-last``, ``tv-compile`` (``torch.compile``), ``tv-onnxruntime`` (ONNX Runtime on the
  plain export) of the same model.
* ``tv-onnxruntime-int8``: ORT static QDQ int8 (per-channel weights, U8S8) of the plain export;
  ``tv-openvino``, ``tv-openvino-bf16``, ``tv-openvino-int8``: OpenVINO on the plain export (throughput
  hint for a batch, its requests fed in parallel; latency hint for batch 1; bf16 by
  ``INFERENCE_PRECISION_HINT``; int8 by NNCF): the peers, configured as their docs recommend, with no
  graph work of ours. The int8 rows, theirs and ours, are calibrated on the same 16 random images.
* ``eager``, ``eager-bf16``, ``compile``, ``compile-bf16``, ``onnxruntime``, ``onnxruntime-int8``,
  ``openvino``, ``openvino-bf16``, ``openvino-int8``: ``optimize_for_inference`` (BN folded, parallel
  1x1 convs merged, channels_last; see ``inceptionnet.deploy.fast``). The OpenVINO rows need the
  ``openvino`` extra and are left out of the default list without it.

These rows (all but the first three) are the records of ``inceptionnet.deploy.backends``: one row per
backend and dtype it runs, and a ``tv-`` peer row per dtype of a backend with a peer form; a backend
whose packages are missing, a slow one (compile) and bf16 without native bf16 are left out by default.

The CPU's model name and its AVX-512 / AVX512-BF16 / VNNI / AMX flags are printed and stored
(``env.cpu_model``, ``env.cpu_flags``), with the measured ceilings: ``peak_gflops`` (2048^3 GEMMs in
torch: fp32, bf16 and int8 ``torch._int_mm``) and ``fma_peak`` (``fma_peak.c``, shipped with the package,
compiled on first use into the user cache and run: nothing but fp32 FMA / bf16 dot / int8 VNNI dot
instructions on all threads, the instruction ceiling; ``inceptionnet.deploy.probe``; null, with one
line on stderr saying why, without a C compiler or AVX-512). ``summary``: per model and batch, our fastest
row vs the fastest peer row, overall and in bf16.

Training (``--mode train``): ``tv-train-fp32`` (torchvision's model, fp32 NCHW, plain SGD loop) and
``train-fast`` (this project's model, channels_last, bf16 autocast where the CPU has native bf16,
fused/foreach SGD). Steps are forward + cross-entropy + backward + optimizer step.

Each backend: ``--warmup`` untimed calls, then ``--repeats`` timed repeats (each of enough calls to
last ~0.1 s); median and min seconds per call. ``pct_of_peak`` compares the achieved FLOP/s (model
FLOPs = 2 x ``analysis.summarize`` MACs, x3 for a training step) to a plain 2048x2048 GEMM of the same
dtype timed in the same process (bf16 only where the CPU has native bf16; null otherwise). Every inference backend's output on the benchmark input is compared
with ``tv-eager``'s (``max_abs_diff``).

``--json`` prints one object::

    {
      "schema": 2,
      "mode": "infer" | "train",
      "env": {"torch": str, "onnxruntime": str | null, "threads": int, "cpu": str, "bf16_native": bool,
              "cpu_model": str, "cpu_flags": [str], "openvino": str | null, "nncf": str | null},
      "config": {"models": [str], "batch_sizes": [int], "input_size": int | null, "repeats": int,
                 "warmup": int, "backends": [str]},
      "peak_gflops": {"float32": float, "bfloat16": float | null, "int8": float | null},
      "fma_peak": {"threads": float, "fp32_fma_gflops": float, "bf16_dot_gflops": float,
                   "int8_vnni_gops": float} | null,
      "results": [{
          "model": str, "source": "torchvision" | "inceptionnet", "backend": str,
          "dtype": "float32" | "bfloat16" | "int8", "batch_size": int, "input_size": int,
          "status": "ok" | "error",
          "median_s": float | null, "min_s": float | null,      # seconds per call (per step)
          "img_per_s": float | null,                             # batch_size / median_s
          "ratio_vs_tv_eager": float | null,                     # img_per_s / the baseline's img_per_s
          "gflops": float | null, "pct_of_peak": float | null,   # achieved GFLOP/s, % of the GEMM peak
          "setup_s": float | null,                               # building (export, compile, checks)
          "max_abs_diff": float | null,                          # vs tv-eager on the same input
          "note": str                                            # the error, or what was run
      }],
      "summary": [{"model": str, "input_size": int, "batch_size": int,
                   "best_ours": str | null, "best_peer": str | null, "ratio": float | null,
                   "best_ours_bf16": str | null, "best_peer_bf16": str | null, "ratio_bf16": float | null}]
    }
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..bench import (
    INFER_BACKENDS,
    TRAIN_BACKENDS,
    build_models,
    format_markdown,
    format_table,
    plot_report,
    resolve_backends,
    run_bench,
    summarize_results,
    written_by_bench,
)
from ..deploy.probe import cpu_info
from ..errors import UsageError

# the library is inceptionnet.bench; these names stay importable from here (scripts, users)
__all__ = [
    "build_models",
    "check_args",
    "check_backends",
    "check_output_dir",
    "cpu_info",
    "get_args_parser",
    "main",
    "run_bench",
    "summarize_results",
]

MAX_INPUT_SIZE = 4096
OUTPUT_FILES = ("bench.json", "bench.md", "bench.png")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Throughput (images/s) of this project's fast paths vs torchvision, ONNX Runtime and "
        "torch.compile, in one process with the same weights, input and threads.",
        add_help=add_help,
    )
    p.add_argument("--models", nargs="+", default=["googlenet", "inception_v3"], help="models to measure")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32], help="batch sizes (default: 1 32)")
    p.add_argument("--input-size", type=int, default=None, help="square input size (default: each model's)")
    p.add_argument("--mode", choices=("infer", "train"), default="infer", help="inference or training steps")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per backend (median and min)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls before timing")
    p.add_argument(
        "--backends", nargs="+", default=None, metavar="BACKEND",
        help=f"inference: {', '.join(INFER_BACKENDS)}; train: {', '.join(TRAIN_BACKENDS)} "
        "(default: all but torch.compile, and bf16 only with native bf16)",
    )  # fmt: skip
    p.add_argument("--num-classes", type=int, default=1000, help="classifier outputs (default 1000)")
    p.add_argument("--threads", type=int, default=None, help="torch/ONNX Runtime threads (default: torch's)")
    p.add_argument(
        "--json", action="store_true", help="print the results as JSON (schema in the module docstring)"
    )
    p.add_argument(
        "--output-dir", default=None,
        help="also write bench.json, bench.md (Markdown table) and bench.png (img/s per backend) there",
    )  # fmt: skip
    p.add_argument(
        "--overwrite", action="store_true",
        help="--output-dir: replace bench.json / .md / .png files that bench did not write (never checkpoints or weights)",
    )  # fmt: skip
    p.add_argument("--device", default="cpu", help="cpu (the paths measured are CPU paths)")
    p.add_argument("--debug", action="store_true", help="show tracebacks and the exporters' warnings")
    return p


def check_args(args: argparse.Namespace) -> None:
    """The flags run_bench reads, before anything is timed: one line naming the flag."""
    from ..models import get_model_builder
    from ..runtime import resolve_device

    if not args.models:
        raise UsageError("--models needs at least one model name")
    for name in args.models:
        get_model_builder(name)  # unknown model: close names and the list
    if any(b < 1 for b in args.batch_sizes):
        raise UsageError(f"--batch-sizes must be positive, got {' '.join(map(str, args.batch_sizes))}")
    if args.input_size is not None and not 1 <= args.input_size <= MAX_INPUT_SIZE:
        raise UsageError(f"--input-size must be between 1 and {MAX_INPUT_SIZE}, got {args.input_size}")
    if args.num_classes < 1:
        raise UsageError(f"--num-classes must be a positive integer, got {args.num_classes}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be a positive integer, got {args.threads}")
    device = resolve_device(getattr(args, "device", "cpu"))
    if device.type != "cpu":
        raise UsageError(
            f"--device {args.device}: bench measures the CPU paths (oneDNN, ONNX Runtime, CPU bf16); "
            "use --device cpu"
        )


def check_backends(args: argparse.Namespace) -> list[str]:
    """``--backends`` checked (the baseline row first), then ``--repeats`` / ``--warmup``."""
    backends = resolve_backends(args.mode, args.backends)
    if args.repeats < 1 or args.warmup < 0:
        raise UsageError("--repeats must be >= 1 and --warmup >= 0")
    return backends


def check_output_dir(value: str, overwrite: bool = False) -> Path:
    """``--output-dir``: created and writable, its three files under the output rule (regular files;
    an existing one replaced only when bench wrote it, or with ``--overwrite``); before any timing."""
    from ..fileio import check_output_dir as writable
    from ..fileio import check_output_file

    out = writable(value, "--output-dir")
    for name in OUTPUT_FILES:
        check_output_file(
            out / name, "--output-dir", {}, ours=written_by_bench, overwrite=overwrite,
            what=f"a {name} that bench wrote", example=name,
        )  # fmt: skip
    return out


def main(args: argparse.Namespace) -> int:
    from ..fileio import atomic_write_text, json_text

    check_args(args)
    out = (
        check_output_dir(args.output_dir, getattr(args, "overwrite", False))
        if args.output_dir is not None
        else None
    )
    check_backends(args)
    log = None if args.json else (lambda s: print(s, file=sys.stderr, flush=True))
    report = run_bench(args, log)
    if args.json:
        print(json_text(report))
    else:
        print(format_table(report))
    if out is not None:
        atomic_write_text(out / "bench.json", json_text(report) + "\n")
        atomic_write_text(out / "bench.md", format_markdown(report))
        plot_report(report, out / "bench.png")
    return 1 if any(r["status"] != "ok" for r in report["results"]) else 0
