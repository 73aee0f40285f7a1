"""``inceptionnet eval``: loss, top-1, top-5 and per-class accuracy of a checkpoint or named weights.

Parsing and printing only: the data (``train.engine.eval_loader``), the evaluation pass
(``train.engine.evaluate``) and test-time augmentation (``--tta``: ``flip``, ``10crop``, ``144crop``,
the GoogLeNet paper's protocol; views in ``data.transforms.tta_views``, averaged as probabilities by
``train.engine.make_tta``) are the library's.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import data as D
from ..checkpoint import ModelSource, accelerate, check_fast_flags, open_for_inference
from ..data.transforms import TTA_MODES, tta_transform
from ..errors import NonFiniteError, UsageError
from ..fileio import json_text
from ..runtime import resolve_device
from ..train.engine import CallableModule, eval_loader, evaluate, make_tta
from ._args import (
    add_fast_args,
    add_image_limit_args,
    add_jpeg_draft_arg,
    add_model_args,
    add_onnx_arg,
    announce_fast_path,
    check_empty_flags,
)

AMP_MODES = ("off", "bf16", "fp16")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Evaluate a model on a data set split.", add_help=add_help)
    add_model_args(p)
    p.add_argument("--dataset", default=None, help="data set (default: the checkpoint's, else fashion_mnist)")
    p.add_argument(
        "--data", "--data-path", dest="data", default=None,
        help="data root; or an image folder (DIR/CLASS/IMAGE, or DIR/{train,val,test}/CLASS/IMAGE)",
    )  # fmt: skip
    p.add_argument("--split", default="test", choices=D.SPLITS, help="which split")
    p.add_argument(
        "--val-split", type=int, default=0, help="held-out size, to rebuild the same val split as training"
    )
    p.add_argument("-b", "--batch-size", type=int, default=256)
    p.add_argument(
        "-j", "--workers", type=int, default=None,
        help="decoding processes (default: min(4, CPUs) for an image folder, 0 for the other data sets)",
    )  # fmt: skip
    add_jpeg_draft_arg(p)
    p.add_argument("--limit", type=int, default=0, help="evaluate the first N images only (0: all)")
    p.add_argument("--tta", default="none", choices=TTA_MODES, help="test-time augmentation")
    p.add_argument("--amp", default="off", choices=AMP_MODES, help="mixed precision (default off)")
    p.add_argument("--channels-last", action="store_true")
    add_fast_args(p)
    add_onnx_arg(
        p, "an exported file (.onnx, .xml, .pt2, .pte) instead of a model, run in its own runtime as it is"
    )
    add_image_limit_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def check_args(args: argparse.Namespace) -> None:
    """Every flag of eval, before any work: one line naming the flag."""
    check_empty_flags(args, "--checkpoint", "--model", "--weights", "--dataset", "--data", "--device")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be positive, got {args.batch_size}")
    for flag, v in (("--workers", args.workers), ("--limit", args.limit), ("--val-split", args.val_split)):
        if v is not None and v < 0:
            raise UsageError(f"{flag} must not be negative, got {v}")
    if args.amp not in AMP_MODES:  # the Python API passes a Namespace without argparse's check
        raise UsageError(f"unknown --amp {args.amp!r}; choose one of {', '.join(AMP_MODES)}")
    if args.tta not in TTA_MODES:
        raise UsageError(f"unknown --tta {args.tta!r}; choose one of {', '.join(TTA_MODES)}")
    if args.dataset is not None:
        D.check_dataset_name(args.dataset)
    if args.data is not None and Path(args.data).expanduser().is_file():
        raise UsageError(f"--data {args.data} is a file; give the directory that holds the data set")


def main(args: argparse.Namespace) -> int:
    check_args(args)
    device = resolve_device(args.device)
    backend, dtype = getattr(args, "backend", None), getattr(args, "dtype", "fp32")
    if (backend is not None or dtype not in ("fp32", None)) and (args.amp != "off" or args.tta != "none"):
        raise UsageError("--backend runs the fast path as it is; drop --amp / --tta")
    check_fast_flags(backend, dtype)
    source = ModelSource.from_args(args)
    if source.kind == "exported" and (
        backend is not None or args.amp != "off" or args.tta != "none" or args.channels_last
    ):
        raise UsageError("--onnx runs the exported file as it is; drop --backend / --amp / --tta / --channels-last")
    eager = open_for_inference(source, device, allow_nan=args.allow_nan)
    model, icfg, classes = eager.module, eager.input_config, eager.classes
    folder = image_folder_split(args, icfg.dataset, classes)
    dataset = "imagefolder" if folder is not None else args.dataset or icfg.dataset or "fashion_mnist"
    loader: Any
    if folder is not None:  # decoded by the pipeline's workers (inceptionnet.pipeline)
        loader = _folder_batches(args, folder, icfg, classes)
    else:
        info = D.dataset_info(dataset, args.data)
        if len(info.classes) != len(classes):
            raise UsageError(f"the model has {len(classes)} classes but {dataset} has {len(info.classes)}")
        loader = eval_loader(
            info, args.split, args.data, icfg, classes, tta=args.tta, batch_size=args.batch_size,
            workers=args.workers or 0, limit=args.limit, val_split=args.val_split,
        )  # fmt: skip
    if model is None:  # an exported file: its predictor (prepared float batch in, logits out)
        net: nn.Module = CallableModule(eager)
    elif args.channels_last:
        net = model.to(memory_format=torch.channels_last)
    else:
        net = model
    if backend is not None:
        fast = accelerate(eager, backend, dtype, args.calibration, batch=args.batch_size, dataset=dataset)
        announce_fast_path(fast)
        net = CallableModule(fast)
    res = evaluate(
        net, loader, device, len(classes), amp=args.amp, channels_last=args.channels_last,
        show_progress=args.progress, tta=make_tta(args.tta, icfg.input_size),
    )  # fmt: skip
    if not math.isfinite(res["loss"]) and not args.allow_nan:
        amp = f"; with --amp {args.amp} the logits may overflow: try --amp off" if args.amp == "fp16" else ""
        raise NonFiniteError(
            f"the model's outputs on {dataset} {args.split} are not finite (loss {res['loss']}): the "
            f"weights or the inputs overflow{amp}; pass --allow-nan to report the numbers anyway"
        )
    name = args.model or (source.describe() if model is None else type(model).__name__)
    print_results(args, name, dataset, classes, res)
    return 0


def _class_dirs(d: Path) -> set[str]:
    try:
        return {e.name for e in d.iterdir() if e.is_dir() and not e.name.startswith(".")}
    except OSError:
        return set()


def image_folder_split(
    args: argparse.Namespace, model_dataset: str | None, classes: list[str]
) -> Path | None:
    """The split folder eval reads when ``--data DIR`` is an image folder (else None): ``DIR/SPLIT``
    (``test`` falls back to ``val``) with ``--dataset imagefolder`` or a model trained on one, or when
    its folders are class folders of the model; DIR itself when its own folders are (``DIR/CLASS/IMAGE``)."""
    if args.data is None:
        return None
    base = Path(args.data).expanduser()
    named = (args.dataset or model_dataset) == "imagefolder"
    if args.dataset not in (None, "imagefolder") or not base.is_dir():
        return None  # another data set, or a missing folder (named by the data set's own reader)
    own = _class_dirs(base)
    if own and not own & set(D.SPLITS) and (named or own <= set(classes)):
        return base  # DIR/CLASS/IMAGE: the split folder itself (another class is named by ImageFolderFiles)
    split = base / args.split if (base / args.split).is_dir() or args.split != "test" else base / "val"
    if named or (_class_dirs(split) and _class_dirs(split) <= set(classes)):
        return D.imagefolder_root(args.data, args.split)
    return None


def _folder_batches(args: argparse.Namespace, root: Path, icfg: D.InputConfig, classes: list[str]) -> Any:
    """The (images, labels) batches of an image folder's split, its classes ordered as the model's,
    decoded by the pipeline (``--workers`` processes, ``--jpeg-draft``)."""
    from .. import pipeline as P

    if args.tta == "none":
        transform: Any = D.eval_transform(icfg, 3, 0)
    else:  # mixed sizes cannot batch: made square at the largest scale (as train.engine.eval_loader)
        transform = tta_transform(icfg, 3, square=True)
    ds = D.ImageFolderFiles(root, 3, transform, classes=classes)
    samples = ds.samples[: args.limit] if args.limit else ds.samples
    return P.LabeledBatches(
        samples, 3, transform, batch_size=args.batch_size, workers=args.workers, draft=args.jpeg_draft
    )


def print_results(
    args: argparse.Namespace, model: str, dataset: str, classes: list[str], res: dict[str, Any]
) -> None:
    """One line of top-1 / top-5 / loss and the per-class accuracy, or (--json) all of it as JSON."""
    out = {
        "model": model,
        "checkpoint": args.checkpoint, "weights": args.weights, "dataset": dataset, "split": args.split,
        "tta": args.tta, "images": res["count"], "loss": res["loss"], "acc1": res["acc1"], "acc5": res["acc5"],
        "per_class_acc1": dict(zip(classes, res["per_class_acc1"], strict=True)),
    }  # fmt: skip
    if args.json:
        print(json_text(out))
    else:
        print(f"{dataset} {args.split} ({res['count']} images, tta {args.tta}): top-1 {res['acc1']:.4f}  "
              f"top-5 {res['acc5']:.4f}  loss {res['loss']:.4f}")  # fmt: skip
        for c, a in out["per_class_acc1"].items():  # type: ignore[attr-defined]
            print(f"  {c:<16} {a:.4f}")


if __name__ == "__main__":
    from . import run_module_main

    sys.exit(run_module_main("eval"))
