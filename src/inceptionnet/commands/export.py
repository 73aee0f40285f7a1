"""``inceptionnet export``: a model, checkpoint or weights file to ONNX, OpenVINO IR, a torch.export
program or AOTInductor package (``.pt2``), ExecuTorch (``.pte``) or TorchScript (legacy), verified
against eager PyTorch before the file is written (``deploy.export.export_model`` does the work).

    inceptionnet export --checkpoint best.pt --format openvino -o model.xml        # IR: model.xml + model.bin
    inceptionnet export --checkpoint best.pt --int8 --calibration fashion_mnist:train -o model-int8.onnx
    inceptionnet export --checkpoint best.pt -o model.pte                          # ExecuTorch, XNNPACK

``--int8``: static post-training quantization on ``--calibration`` images (ONNX Runtime QDQ with
per-channel weights; OpenVINO IR: converted from that QDQ graph, run in int8 by OpenVINO; ExecuTorch:
PT2E with its XNNPACKQuantizer), verified by top-1 agreement >= 99 % with eager fp32 on them.
"""

from __future__ import annotations

import argparse
import math
import sys
from functools import partial
from pathlib import Path

import torch
from torch import nn

from .. import data as D
from ..checkpoint import ModelSource, open_model
from ..deploy.export import (
    DEFAULT_OPSET,
    DYNAMO_MIN_OPSET,
    FORMATS,
    INT8_FORMATS,
    SUFFIX_FORMATS,
    UINT8_FORMATS,
    build_metadata,
    export_model,
    output_files,
    written_by_export,
)
from ..deploy.fold import count_batchnorm, fold_bn
from ..errors import UsageError
from ..fileio import check_output_file, check_output_path
from ..models import parse_model_kwargs
from ._args import add_build_args, check_empty_flags

MAX_INPUT_SIZE = 4096  # the export runs the model on random batches of this size: larger cannot fit


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Export a model to ONNX, OpenVINO IR, PyTorch 2 (.pt2: torch.export or AOTInductor), "
        "ExecuTorch (.pte) or TorchScript, verified against eager PyTorch. TorchScript is legacy (PyTorch "
        "deprecates it): use pt2 or aoti for PyTorch runtimes, onnx for others, executorch for phones.",
        add_help=add_help,
    )
    p.add_argument(
        "name", nargs="?", default=None, help="model name (see 'inceptionnet list'), or use --checkpoint"
    )
    p.add_argument(
        "--checkpoint", default=None, help="a training checkpoint (best.pt / checkpoint.pt / .safetensors)"
    )
    p.add_argument(
        "--weights",
        default=None,
        help="with NAME: a weight entry (e.g. imagenet1k_v1) or a .pth/.safetensors file",
    )
    p.add_argument(
        "-o", "--output", required=True,
        help="output file (.onnx, .xml for OpenVINO IR, written with its .bin, .pt2 for a torch.export "
        "program or, with --format aoti, an AOTInductor package, .pte for ExecuTorch, .pt for TorchScript)",
    )  # fmt: skip
    p.add_argument(
        "--overwrite", action="store_true",
        help="replace an existing output file that is not an earlier export (never a checkpoint or weights)",
    )  # fmt: skip
    p.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="default: from the output's suffix (.onnx -> onnx, .xml -> openvino, .pt2 -> pt2, .pte -> "
        "executorch (XNNPACK; needs inceptionnet[executorch]), .pt -> torchscript; aoti: an AOTInductor "
        "package, compiled ahead of time, also .pt2). torchscript is legacy, deprecated by PyTorch: use pt2 "
        "or aoti (PyTorch / C++ without Python), onnx (other runtimes) or executorch (phones) instead",
    )
    p.add_argument(
        "--uint8-input", action="store_true",
        help="all formats but torchscript: the file takes uint8 N x H x W x C images at the input size and "
        "does the scaling, mean/std, channel order and layout inside the graph (OpenVINO IR: its "
        "PrePostProcessor)",
    )  # fmt: skip
    p.add_argument(
        "--int8", action="store_true",
        help="onnx / openvino / executorch: int8 static quantization calibrated on --calibration (verified by "
        "top-1 agreement)",
    )  # fmt: skip
    p.add_argument(
        "--calibration", default=None, metavar="NAME:SPLIT",
        help="with --int8: calibration images of a built-in data set, e.g. fashion_mnist:train",
    )  # fmt: skip
    p.add_argument(
        "--calibration-size",
        type=int,
        default=256,
        help="with --int8: how many calibration images (default 256)",
    )
    p.add_argument(
        "--input-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="default: the model's input size",
    )
    p.add_argument("--batch", default="dynamic", help="'dynamic' (default) or a fixed batch size N")
    p.add_argument(
        "--opset",
        type=int,
        default=None,
        help=f"ONNX opset (default {DEFAULT_OPSET}; {DYNAMO_MIN_OPSET} with --dynamo)",
    )
    p.add_argument(
        "--dynamo",
        action="store_true",
        help="ONNX: use PyTorch's torch.export-based exporter instead of the TorchScript-based one",
    )
    p.add_argument(
        "--fold-bn", action="store_true", help="fold BatchNorm into the preceding convs before export"
    )
    add_build_args(p)
    p.add_argument("--atol", type=float, default=1e-4, help="verification: absolute tolerance (default 1e-4)")
    p.add_argument(
        "--rtol",
        type=float,
        default=1e-5,
        help="verification: tolerance relative to max|output| (default 1e-5)",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks and the exporters' warnings")
    return p


def _parse_batch(value: str) -> int | None:
    if value == "dynamic":
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise UsageError(f"--batch must be 'dynamic' or a positive integer, got {value!r}")
    return n


def _infer_format(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    fmt = SUFFIX_FORMATS.get(Path(args.output).suffix.lower())
    if fmt is None:
        raise UsageError(f"cannot tell the format from {args.output!r}; pass --format {'|'.join(FORMATS)}")
    return fmt


def model_source(args: argparse.Namespace) -> ModelSource:
    """NAME | NAME --weights W | --checkpoint FILE [NAME] (and the scratch flags) as a ``ModelSource``."""
    scratch_only = [
        flag for flag, v in (("--num-classes", args.num_classes), ("--in-chans", args.in_chans), ("--model-kwargs", args.model_kwargs)) if v
    ]  # fmt: skip
    if args.checkpoint or args.weights:
        if scratch_only:
            raise UsageError(
                f"{', '.join(scratch_only)} only apply to a model built from scratch; "
                "a checkpoint or weights file says how to build its model"
            )
        if args.weights and not args.name:
            raise UsageError("--weights needs a model NAME (or use --checkpoint)")
        if args.checkpoint and args.weights:
            raise UsageError("give --checkpoint or NAME --weights, not both")
        if args.checkpoint:
            return ModelSource.checkpoint(args.checkpoint, args.name)
        return ModelSource.model(args.name, args.weights)
    if not args.name:
        raise UsageError("give a model NAME or --checkpoint FILE")
    num_classes = 1000 if args.num_classes is None else args.num_classes
    in_chans = 3 if args.in_chans is None else args.in_chans
    if num_classes < 0:
        raise UsageError(f"--num-classes must not be negative, got {num_classes}")
    if in_chans < 1:
        raise UsageError(f"--in-chans must be a positive integer, got {in_chans}")
    kwargs = parse_model_kwargs(args.model_kwargs)
    return ModelSource.model(args.name, model_kwargs=kwargs, num_classes=num_classes, in_chans=in_chans)


def load_model(
    args: argparse.Namespace,
) -> tuple[nn.Module, str, D.InputConfig, list[str] | None, str | None]:
    """(model in eval mode, name, input config, class names when known, source) from the arguments."""
    source = model_source(args)
    model, icfg, classes, name = open_model(source, nan_flag=None)
    return model, name, icfg, classes if source.weights or source.path else None, source.describe(short=True)


def check_args(args: argparse.Namespace) -> None:
    """Every flag of export, before any work (one line naming the flag); the output's path as far as
    it can be checked before its format is known (``check_outputs`` checks the rest)."""
    check_empty_flags(args, "--checkpoint", "--weights", "--output")
    if args.name is not None and not args.name.strip():
        raise UsageError("the model NAME is empty; see 'inceptionnet list'")
    if not (math.isfinite(args.atol) and math.isfinite(args.rtol) and args.atol >= 0 and args.rtol >= 0):
        raise UsageError(
            f"--atol and --rtol must be finite and not negative, got {args.atol} and {args.rtol}"
        )
    if args.input_size is not None and not all(1 <= v <= MAX_INPUT_SIZE for v in args.input_size):
        raise UsageError(f"--input-size must be between 1 and {MAX_INPUT_SIZE}, got {args.input_size}")
    check_output_path(args.output, "-o/--output", _inputs(args))


def _inputs(args: argparse.Namespace) -> dict[str, str | None]:
    weights_file = args.weights if args.weights and Path(args.weights).is_file() else None
    return {"--checkpoint": args.checkpoint, "--weights": weights_file}


_SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "openvino": ".xml", "pt2": ".pt2", "aoti": ".pt2",
           "executorch": ".pte"}  # fmt: skip


def check_outputs(args: argparse.Namespace, fmt: str) -> Path:
    """Every file the export writes (an IR's .bin too) under the output rule (``check_output_file``),
    before any work: nothing on disk changes when one is refused. Returns the output path."""
    if fmt == "openvino" and Path(args.output).suffix.lower() != ".xml":
        raise UsageError(
            f"-o/--output {args.output}: an OpenVINO IR file ends in .xml (its weights go beside it in .bin)"
        )
    if fmt in ("pt2", "aoti", "executorch") and Path(args.output).suffix.lower() != _SUFFIX[fmt]:
        raise UsageError(
            f"-o/--output {args.output}: a {fmt} file ends in {_SUFFIX[fmt]} (predict --onnx tells it by that)"
        )
    inputs = _inputs(args)
    files = output_files(args.output, fmt)
    for i, f in enumerate(files):
        check_output_file(
            f, "-o/--output" if i == 0 else f"-o/--output (the {f.suffix} written beside it)", inputs,
            ours=partial(written_by_export, fmt=fmt), overwrite=bool(args.overwrite),
            example=f"model{f.suffix}" if i else f"model{_SUFFIX[fmt]}",
        )  # fmt: skip
    return files[0]


def main(args: argparse.Namespace) -> int:
    check_args(args)
    fmt = _infer_format(args)
    if fmt == "executorch":  # before the output rule, which reads an existing .pte with ExecuTorch
        from ..deploy.executorch import require

        require()
    out = check_outputs(args, fmt)
    batch = _parse_batch(str(args.batch))
    if args.opset is not None and fmt != "onnx":
        raise UsageError("--opset applies to --format onnx only")
    if args.dynamo and fmt != "onnx":
        raise UsageError("--dynamo applies to --format onnx only")
    if args.opset is not None and not 7 <= args.opset <= 23:
        raise UsageError(f"--opset must be between 7 and 23, got {args.opset}")
    _check_int8_flags(args, fmt)
    model, name, icfg, classes, source = load_model(args)
    input_size = tuple(args.input_size) if args.input_size else (icfg.input_size, icfg.input_size)
    cfg = getattr(model, "default_cfg", {}) or {}
    exported = model
    if args.fold_bn:
        before = count_batchnorm(model)
        exported = fold_bn(model)
        print(
            f"folded {before - count_batchnorm(exported)} of {before} BatchNorm layers into the preceding convs"
        )
    meta = build_metadata(
        name, icfg, (int(input_size[0]), int(input_size[1])), int(getattr(model, "num_classes", 0) or len(classes or [])),
        classes, source=source, fold_bn=bool(args.fold_bn),
        input_space=cfg.get("input_space"), input_range=cfg.get("input_range"),
    )  # fmt: skip
    calib = None
    if args.int8:
        from ..deploy.quant import calibration_images

        example = torch.zeros(1, icfg.in_chans, int(input_size[0]), int(input_size[1]))
        calib = calibration_images(args.calibration, model, example, args.calibration_size)
    export_model(
        exported, out, fmt=fmt, input_size=(int(input_size[0]), int(input_size[1])), in_chans=icfg.in_chans,
        batch=batch, opset=args.opset, dynamo=args.dynamo, metadata=meta, reference=model,
        atol=args.atol, rtol=args.rtol, log=print, quiet=not args.debug, int8_calibration=calib,
        uint8_input=args.uint8_input,
    )  # fmt: skip
    return 0


def _check_int8_flags(args: argparse.Namespace, fmt: str) -> None:
    if fmt == "openvino":
        from ..deploy.openvino import require

        try:
            require("openvino")
        except ImportError as e:  # a missing optional extra is the user's to fix: one line
            raise UsageError(f"--format openvino: {e}") from None
    if args.int8 and fmt not in INT8_FORMATS:
        raise UsageError(f"--int8 applies to --format {', '.join(INT8_FORMATS)}")
    if args.uint8_input and (fmt not in UINT8_FORMATS or args.int8):
        raise UsageError(f"--uint8-input applies to --format {', '.join(UINT8_FORMATS)}, without --int8")
    if args.int8 and not args.calibration:
        raise UsageError(
            "--int8 needs --calibration NAME:SPLIT (e.g. fashion_mnist:train): int8 is calibrated on real images"
        )
    if args.calibration and not args.int8:
        raise UsageError("--calibration applies with --int8 only")
    if args.calibration_size < 1:
        raise UsageError(f"--calibration-size must be a positive integer, got {args.calibration_size}")


if __name__ == "__main__":
    from . import run_module_main

    sys.exit(run_module_main("export"))
