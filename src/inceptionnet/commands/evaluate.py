"""``inceptionnet eval``: loss, top-1, top-5 and per-class accuracy of a checkpoint or named weights.

Test-time augmentation (``--tta``): ``flip`` (2 views), ``10crop`` (4 corners + center, and their
mirrors, from the image resized to input/0.875) and ``144crop``, the GoogLeNet paper's protocol:
4 scales (shorter side 256, 288, 320, 352 for a 224 input) x 3 squares (left/center/right or
top/center/bottom) x 6 crops (4 corners, center, the whole square resized) x 2 mirrors.
Predictions are averaged over views as probabilities.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from .. import data as D
from ..checkpoint import ModelSource, accelerate, check_fast_flags, open_for_inference
from ..errors import NonFiniteError, UsageError
from ..fileio import json_text
from ..runtime import resolve_device
from ..train.engine import evaluate
from ._args import add_fast_args, add_model_args, announce_fast_path, check_empty_flags

TTA_MODES = ("none", "flip", "10crop", "144crop")
AMP_MODES = ("off", "bf16", "fp16")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Evaluate a model on a data set split.", add_help=add_help)
    add_model_args(p)
    p.add_argument("--dataset", default=None, help="data set (default: the checkpoint's, else fashion_mnist)")
    p.add_argument("--data", "--data-path", dest="data", default=None, help="data root")
    p.add_argument("--split", default="test", choices=D.SPLITS, help="which split")
    p.add_argument(
        "--val-split", type=int, default=0, help="held-out size, to rebuild the same val split as training"
    )
    p.add_argument("-b", "--batch-size", type=int, default=256)
    p.add_argument("-j", "--workers", type=int, default=0)
    p.add_argument("--limit", type=int, default=0, help="evaluate the first N images only (0: all)")
    p.add_argument("--tta", default="none", choices=TTA_MODES, help="test-time augmentation")
    p.add_argument("--amp", default="off", choices=AMP_MODES, help="mixed precision (default off)")
    p.add_argument("--channels-last", action="store_true")
    add_fast_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def tta_views(x: Tensor, mode: str, size: int) -> list[Tensor]:
    """The views of a batch N x C x H x W for ``mode``, each N x C x size x size."""
    if mode == "none":
        return [
            x
            if x.shape[-1] == size and x.shape[-2] == size
            else TF.center_crop(TF.resize(x, size, antialias=True), size)
        ]
    if mode == "flip":
        base = tta_views(x, "none", size)[0]
        return [base, base.flip(-1)]
    if mode == "10crop":
        big = TF.resize(x, int(round(size / 0.875)), antialias=True)
        crops = list(TF.five_crop(big, size))
        return crops + [c.flip(-1) for c in crops]
    if mode == "144crop":
        views = []
        for scale in (256, 288, 320, 352):
            s = int(round(size * scale / 224))
            img = TF.resize(x, s, antialias=True)
            h, w = img.shape[-2:]
            side = min(h, w)
            if w >= h:
                squares = [
                    img[..., :, :side],
                    img[..., :, (w - side) // 2 : (w - side) // 2 + side],
                    img[..., :, w - side :],
                ]
            else:
                squares = [
                    img[..., :side, :],
                    img[..., (h - side) // 2 : (h - side) // 2 + side, :],
                    img[..., h - side :, :],
                ]
            for sq in squares:
                crops = [*TF.five_crop(sq, size), TF.resize(sq, [size, size], antialias=True)]
                views += crops + [c.flip(-1) for c in crops]
        return views
    raise UsageError(f"unknown --tta {mode!r}; choose one of {', '.join(TTA_MODES)}")


def make_tta(mode: str, size: int) -> Callable[[nn.Module, Tensor], Tensor] | None:
    """A function (model, batch) -> log of the view-averaged probabilities, or None for no TTA."""
    if mode == "none":
        return None

    def run(model: nn.Module, x: Tensor) -> Tensor:
        views = tta_views(x, mode, size)
        probs = sum(F.softmax(model(v.contiguous()).float(), dim=1) for v in views)
        assert isinstance(probs, Tensor)
        return torch.log((probs / len(views)).clamp_min(1e-12))

    return run


class _FastModule(nn.Module):
    """A fast-path predictor where ``evaluate`` expects a module."""

    def __init__(self, fast: Any) -> None:
        super().__init__()
        self.fast = fast

    def forward(self, x: Tensor) -> Tensor:
        out = self.fast(x)
        assert isinstance(out, Tensor)
        return out


def check_args(args: argparse.Namespace) -> None:
    """Every flag of eval, before any work: one line naming the flag."""
    check_empty_flags(args, "--checkpoint", "--model", "--weights", "--dataset", "--data", "--device")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be positive, got {args.batch_size}")
    for flag, v in (("--workers", args.workers), ("--limit", args.limit), ("--val-split", args.val_split)):
        if v < 0:
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
    eager = open_for_inference(ModelSource.from_args(args), device, allow_nan=args.allow_nan)
    model, icfg, classes = eager.module, eager.input_config, eager.classes
    assert isinstance(model, nn.Module)
    dataset = args.dataset or icfg.dataset or "fashion_mnist"
    info = D.dataset_info(dataset, args.data)
    if len(info.classes) != len(classes):
        raise UsageError(f"the model has {len(classes)} classes but {dataset} has {len(info.classes)}")
    if args.tta == "none":
        transform: Any = D.eval_transform(icfg, info.in_chans, info.image_size)
    else:
        # views are cut from the whole image at its own size, so only channels and statistics here
        transform = v2.Compose([v2.ToImage(), *D.transforms._channels(info.in_chans, icfg.in_chans),
                                *D.to_model_input(icfg)])  # fmt: skip
        if dataset == "imagefolder":  # mixed sizes cannot batch: make them square at the largest scale
            transform = v2.Compose(
                [v2.Resize((icfg.input_size * 352 // 224,) * 2, antialias=True), transform]
            )
    if dataset == "imagefolder":
        ds: Any = D.ImageFolderFiles(
            D.imagefolder_root(args.data, args.split), info.in_chans, transform, classes=classes
        )
    else:
        x, y, _ = D.load_arrays(dataset, args.split, args.data, args.val_split)
        if args.limit:
            x, y = x[: args.limit], y[: args.limit]
        ds = D.TensorImages(x, y, info.classes, transform)
    if args.limit and dataset == "imagefolder":
        ds = torch.utils.data.Subset(ds, range(min(args.limit, len(ds))))
    loader = DataLoader(ds, batch_size=args.batch_size, num_workers=args.workers)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    net: nn.Module = model
    if backend is not None:
        fast = accelerate(eager, backend, dtype, args.calibration, batch=args.batch_size, dataset=dataset)
        announce_fast_path(fast)
        net = _FastModule(fast)
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
    out = {
        "model": type(model).__name__ if not args.model else args.model,
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
    return 0


if __name__ == "__main__":
    from . import run_module_main

    sys.exit(run_module_main("eval"))
