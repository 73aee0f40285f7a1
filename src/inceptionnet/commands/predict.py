"""``inceptionnet predict``: top-k classes of image files, from a training checkpoint or named weights.

    inceptionnet predict --checkpoint runs/x/best.pt shirt.png boot.jpg
    inceptionnet predict --model googlenet_small --weights fashion_mnist --json img.png

Images of any mode and size are converted to what the model expects (grayscale <-> RGB, 16-bit,
palette, CMYK; resized and center-cropped). An unreadable file prints ``error: cannot read image ...``;
the other images are still predicted and the exit code is 2 at the end.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .. import data as D
from ..errors import ImageReadError, NonFiniteError
from ..fileio import json_text
from ..runtime import DEVICE_HELP, flush_denormal, resolve_device


def add_model_args(p: argparse.ArgumentParser) -> None:
    """--checkpoint | --model [--weights]: the options eval and predict share."""
    p.add_argument(
        "--checkpoint", default=None, help="a training checkpoint (checkpoint.pt / best.pt / .safetensors)"
    )
    p.add_argument("--model", default=None, help="model name, with --weights (entry name or file)")
    p.add_argument(
        "--weights", default=None, help="weight entry (e.g. fashion_mnist) or .pth/.safetensors file"
    )
    p.add_argument("--device", default="cpu", help=f"{DEVICE_HELP} (default cpu)")
    p.add_argument(
        "--allow-nan",
        action="store_true",
        help="run weights with NaN/inf values, and report NaN results (as null in JSON) instead of an error",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def add_fast_args(p: argparse.ArgumentParser) -> None:
    """--backend / --dtype / --calibration: run through ``optimize_for_inference`` (eval and predict)."""
    p.add_argument(
        "--backend", default=None,
        help="run the fast path (deploy.fast): eager, compile, onnxruntime, openvino or auto "
        "(the fastest that passes its checks); default: the plain eager model",
    )  # fmt: skip
    p.add_argument(
        "--dtype",
        default="fp32",
        help="with --backend: fp32 (default), bf16, int8, or auto (lower precision too)",
    )
    p.add_argument(
        "--calibration", default=None, metavar="NAME:SPLIT",
        help="int8 / auto: calibration images (default: the model's data set, train split)",
    )  # fmt: skip


def fast_path(
    args: argparse.Namespace,
    model: torch.nn.Module,
    icfg: D.InputConfig,
    device: torch.device,
    batch: int,
    dataset: str | None = None,
) -> Any:
    """``model`` itself without --backend; else the ``optimize_for_inference`` callable (one line on
    stderr says which path was chosen and how it was checked)."""
    from ..deploy.fast import BACKENDS, optimize_for_inference
    from ..deploy.quant import parse_dtype

    backend = getattr(args, "backend", None)
    dtype = parse_dtype(getattr(args, "dtype", "fp32") or "fp32")
    if backend is None:
        if dtype != "float32":
            raise ValueError(f"--dtype {args.dtype} needs --backend (e.g. --backend auto)")
        return model
    if backend not in BACKENDS:
        raise ValueError(f"--backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    calibration = getattr(args, "calibration", None)
    dataset = dataset or icfg.dataset
    if (
        calibration is None
        and dtype in ("int8", "auto")
        and dataset in D.DATASETS
        and dataset != "imagefolder"
    ):
        calibration = f"{dataset}:train"
    if dtype == "int8" and calibration is None:
        raise ValueError("--dtype int8 needs --calibration NAME:SPLIT (the model's data set is not built in)")
    example = torch.randn(
        batch, icfg.in_chans, icfg.input_size, icfg.input_size, generator=torch.Generator().manual_seed(0)
    )
    try:
        fast = optimize_for_inference(
            model, example.to(device), backend=backend, dtype=dtype, calibration=calibration
        )
    except ImportError as e:  # the openvino extra is not installed: one line naming the flag
        raise ValueError(f"--backend {backend}: {e}") from None
    agree = (
        "" if fast.top1_agreement != fast.top1_agreement else f", top-1 agreement {fast.top1_agreement:.4f}"
    )
    print(f"fast path: {fast.backend} {str(fast.dtype).removeprefix('torch.')}{agree}", file=sys.stderr)
    return fast


def check_empty_flags(args: argparse.Namespace, *flags: str) -> None:
    """``--flag ""`` is a mistake (an unset variable in a script): one line naming the flag."""
    for flag in flags:
        value = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        if isinstance(value, str) and not value.strip():
            raise ValueError(f"{flag} is empty; give a value or leave the flag out")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Classify image files.", add_help=add_help)
    p.add_argument("images", nargs="+", help="image files (any format PIL reads)")
    add_model_args(p)
    add_fast_args(p)
    p.add_argument("--onnx", default=None, help="an exported .onnx file, run with ONNX Runtime")
    p.add_argument("--topk", type=int, default=5, help="how many classes to show per image")
    p.add_argument(
        "--invert",
        action="store_true",
        help="invert gray levels (dark garments on white, for Fashion-MNIST models)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    return p


def preprocess(path: str, icfg: D.InputConfig, transform: Any, invert: bool = False) -> torch.Tensor:
    x = D.read_image(path, icfg.in_chans)
    if invert:
        x = 255 - x
    return transform(x)


def main(args: argparse.Namespace) -> int:
    check_empty_flags(args, "--checkpoint", "--model", "--weights", "--onnx", "--device")
    if args.topk < 1:
        raise ValueError(f"--topk must be at least 1, got {args.topk}")
    empty = [p for p in args.images if not p.strip()]
    if empty:
        raise ValueError("an image path is empty (''); give image files")
    device = resolve_device(args.device)
    if args.onnx:
        if getattr(args, "backend", None) is not None:
            raise ValueError("--onnx runs the exported file with ONNX Runtime; drop --backend")
        return predict_onnx(args, device)
    from ..checkpoint import load_for_inference  # here: the --onnx path loads no model code

    model, _, icfg, classes = load_for_inference(
        args.checkpoint, args.model, args.weights, device, allow_nan=args.allow_nan
    )
    transform = D.eval_transform(icfg, icfg.in_chans, native_size=-1)
    run = fast_path(args, model, icfg, device, batch=1)
    with flush_denormal():
        results = predict_files(
            args.images, lambda x: run(x.to(device)), icfg, transform, classes, args.topk, args.invert,
            allow_nan=args.allow_nan,
        )  # fmt: skip
    return report(results, args.json)


def predict_files(
    paths: Sequence[str],
    run: Any,
    icfg: D.InputConfig,
    transform: Any,
    classes: Sequence[str],
    topk: int,
    invert: bool = False,
    allow_nan: bool = False,
) -> list[dict[str, Any]]:
    """Top-k per file; unreadable files get an ``error`` entry instead. Non-finite outputs raise
    ``NonFiniteError`` unless ``allow_nan`` (then their probabilities are NaN)."""
    results: list[dict[str, Any]] = []
    k = min(topk, len(classes))
    for path in paths:
        try:
            x = preprocess(path, icfg, transform, invert)
        except ImageReadError as e:
            results.append({"path": path, "error": str(e)})
            continue
        with torch.no_grad():
            logits = torch.as_tensor(run(x.unsqueeze(0))).float().cpu()
        if not allow_nan and not bool(torch.isfinite(logits).all()):
            raise NonFiniteError(
                f"the model's output for {path} is not finite (NaN/inf): its weights or the input overflow; "
                "pass --allow-nan to report it anyway"
            )
        probs = logits.softmax(dim=1)[0]
        top = probs.topk(k)
        results.append({
            "path": path,
            "top": [{"label": classes[i], "index": int(i), "prob": float(p)} for p, i in zip(top.values, top.indices, strict=True)],
        })  # fmt: skip
    return results


def report(results: list[dict[str, Any]], as_json: bool) -> int:
    failed = 0
    for r in results:
        if "error" in r:
            failed += 1
            print(f"error: {r['error']}", file=sys.stderr)
    if as_json:
        print(json_text(results))
    else:
        for r in results:
            if "top" in r:
                best = ", ".join(f"{t['label']} {t['prob']:.3f}" for t in r["top"])
                print(f"{r['path']}: {best}")
    return 2 if failed else 0


def predict_onnx(args: argparse.Namespace, device: torch.device | None = None) -> int:
    """``predict --onnx FILE IMAGE...``: ONNX Runtime with the PyTorch path's preprocessing (from the
    file's metadata). Imports no model code: a deployment needs the .onnx file and this function."""
    from ..deploy.export import open_onnx

    for flag in ("checkpoint", "model", "weights"):
        if getattr(args, flag, None):
            raise ValueError(f"--onnx runs the exported file on its own; drop --{flag}")
    f = open_onnx(args.onnx, device.type if device is not None else "cpu")
    icfg, classes = f.icfg, f.classes
    # a file exported with a fixed --batch N takes exactly N images: repeat the one and keep row 0
    fixed = f.fixed_batch if f.fixed_batch is not None and f.fixed_batch > 1 else None

    def run(x: Tensor) -> Any:
        n = x.shape[0]
        if fixed:
            x = x.expand(fixed, *x.shape[1:])
        return f.session.run([f.output_name], {f.input_name: x.contiguous().numpy()})[0][:n]

    transform = D.eval_transform(icfg, icfg.in_chans, native_size=-1)
    results = predict_files(
        args.images, run, icfg, transform, classes, args.topk, args.invert,
        allow_nan=getattr(args, "allow_nan", False),
    )  # fmt: skip
    return report(results, args.json)
