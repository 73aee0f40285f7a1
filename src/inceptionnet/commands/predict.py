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

from .. import data as D
from ..errors import ImageReadError, NonFiniteError, UsageError
from ..fileio import json_text
from ..runtime import flush_denormal, resolve_device
from ._args import (
    add_fast_args,
    add_image_limit_args,
    add_model_args,
    add_onnx_arg,
    announce_fast_path,
    check_empty_flags,
    preprocess,
)

__all__ = ["add_fast_args", "add_model_args", "check_empty_flags", "get_args_parser", "main", "preprocess"]


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Classify image files.", add_help=add_help)
    p.add_argument("images", nargs="+", help="image files (any format PIL reads)")
    add_model_args(p)
    add_fast_args(p)
    add_onnx_arg(p, "an exported .onnx file, run with ONNX Runtime")
    add_image_limit_args(p)
    p.add_argument("--topk", type=int, default=5, help="how many classes to show per image")
    p.add_argument(
        "--invert",
        action="store_true",
        help="invert gray levels (dark garments on white, for Fashion-MNIST models)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    return p


def main(args: argparse.Namespace) -> int:
    check_empty_flags(args, "--checkpoint", "--model", "--weights", "--onnx", "--device")
    if args.topk < 1:
        raise UsageError(f"--topk must be at least 1, got {args.topk}")
    empty = [p for p in args.images if not p.strip()]
    if empty:
        raise UsageError("an image path is empty (''); give image files")
    device = resolve_device(args.device)
    # here: an exported file (--onnx) loads no model code
    from ..checkpoint import ModelSource, open_for_inference

    p = open_for_inference(
        ModelSource.from_args(args), device, backend=getattr(args, "backend", None),
        dtype=getattr(args, "dtype", "fp32") or "fp32", calibration=getattr(args, "calibration", None),
        allow_nan=getattr(args, "allow_nan", False),
    )  # fmt: skip
    announce_fast_path(p)
    icfg = p.input_config
    transform = D.eval_transform(icfg, icfg.in_chans, native_size=-1)
    with flush_denormal():
        results = predict_files(
            args.images, p, icfg, transform, p.classes, args.topk, args.invert,
            allow_nan=getattr(args, "allow_nan", False),
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
