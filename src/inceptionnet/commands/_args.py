"""What several commands share: the flags that say which model to open (mapped onto
``checkpoint.ModelSource``), the fast-path flags, the FID network's flags, and small helpers.
Library logic lives below (``checkpoint.open_for_inference``, ``deploy``, ``metrics``); commands
import only this module and ``commands/__init__``, never each other."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import torch

from .. import data as D
from ..errors import UsageError
from ..runtime import DEVICE_HELP


def add_model_args(p: argparse.ArgumentParser) -> None:
    """--checkpoint | --model [--weights], --device, --allow-nan, --debug: how eval, predict, explain
    and serve name their model (``ModelSource.from_args``)."""
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


def add_onnx_arg(p: argparse.ArgumentParser, help: str) -> None:
    """--onnx FILE: an exported file instead of a model (``ModelSource.exported``)."""
    p.add_argument("--onnx", default=None, help=help)


def add_build_args(p: argparse.ArgumentParser) -> None:
    """--num-classes / --in-chans / --model-kwargs: a model built from scratch (export NAME)."""
    p.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="NAME without weights: classifier outputs (default 1000)",
    )
    p.add_argument(
        "--in-chans", type=int, default=None, help="NAME without weights: input channels (default 3)"
    )
    p.add_argument(
        "--model-kwargs",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="NAME without weights: builder flags, e.g. width=0.5",
    )


def add_fast_args(p: argparse.ArgumentParser) -> None:
    """--backend / --dtype / --calibration: run through ``optimize_for_inference`` (eval and predict)."""
    p.add_argument(
        "--backend", default=None,
        help="run the fast path (deploy.fast): eager, compile, onnxruntime, openvino, aoti, executorch or auto "
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


def announce_fast_path(p: Any) -> None:
    """One line on stderr saying which fast path a predictor runs and how it was checked (nothing for
    the plain eager model)."""
    fast = getattr(p, "fast", None)
    if fast is None:
        return
    agree = (
        "" if fast.top1_agreement != fast.top1_agreement else f", top-1 agreement {fast.top1_agreement:.4f}"
    )
    print(f"fast path: {fast.backend} {str(fast.dtype).removeprefix('torch.')}{agree}", file=sys.stderr)


def add_pipeline_args(p: argparse.ArgumentParser) -> None:
    """The batched pipeline's flags (predict, embed): batch size and decoding processes."""
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="decoding processes (default min(4, CPUs); 0: decode in this one)",
    )
    add_jpeg_draft_arg(p)


def add_jpeg_draft_arg(p: argparse.ArgumentParser) -> None:
    """--jpeg-draft: JPEGs at least twice the model's resize decoded at a reduced scale (opt-in)."""
    p.add_argument(
        "--jpeg-draft", action="store_true",
        help="decode JPEGs at least twice the model's resize at 1/2, 1/4 or 1/8 scale (libjpeg's DCT "
        "scaling: faster on large photos, slightly different pixels)",
    )  # fmt: skip


def add_image_limit_args(p: argparse.ArgumentParser, max_pixels: int | None = None) -> None:
    """--max-pixels / --max-side: how large an image may be, decoded and resized for the model
    (``data.ImageLimits``; set for the whole command by ``with_image_limits``)."""
    default = max_pixels or D.MAX_IMAGE_PIXELS
    p.add_argument(
        "--max-pixels", type=int, default=max_pixels, metavar="N",
        help=f"refuse an image of more than N pixels, or whose resize for the model writes more (default {default:,})",
    )  # fmt: skip
    p.add_argument(
        "--max-side", type=int, default=None, metavar="N",
        help=f"refuse an image whose long side, resized for the model, is over N (default {D.MAX_RESIZED_SIDE:,}: "
        "a 1 x 100,000 strip resized to 32 high would be 3.2 M pixels long)",
    )  # fmt: skip


def image_limits_of(args: argparse.Namespace) -> D.ImageLimits:
    """The ``data.ImageLimits`` of a command's --max-pixels / --max-side (unset: the defaults)."""
    return D.ImageLimits(getattr(args, "max_pixels", None), getattr(args, "max_side", None))


def with_image_limits(main: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``main`` run with its --max-pixels / --max-side set for every image it reads or resizes
    (``data.image_limits``), down to data sets and metrics; commands without the flags run as they are."""

    def run(args: argparse.Namespace) -> int:
        if not hasattr(args, "max_pixels") and not hasattr(args, "max_side"):
            return main(args)
        with D.image_limits(image_limits_of(args)):
            return main(args)

    return run


def check_empty_flags(args: argparse.Namespace, *flags: str) -> None:
    """``--flag ""`` is a mistake (an unset variable in a script): one line naming the flag."""
    for flag in flags:
        value = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        if isinstance(value, str) and not value.strip():
            raise UsageError(f"{flag} is empty; give a value or leave the flag out")


def preprocess(path: str, icfg: D.InputConfig, transform: Any, invert: bool = False) -> torch.Tensor:
    """An image file as the model's C x H x W input (``invert``: gray levels inverted); its size and
    the transform's resize checked from its header (``--max-pixels`` / ``--max-side``)."""
    x = D.read_image(path, icfg.in_chans, resize_to=D.resize_target(transform))
    if invert:
        x = 255 - x
    return transform(x)


# --------------------------------------------------------------------------------------------------
# fid and isc: the FID network and how features are made


def add_feature_args(p: argparse.ArgumentParser) -> None:
    """The flags of how features are made, shared by ``fid`` and ``isc`` (``--weights``: the FID
    network's file, opened by ``metrics.load_fid_model`` through ``ModelSource``)."""
    from ..metrics.resize import RESIZE_MODES
    from ..metrics.scores import BACKENDS

    p.add_argument("--weights", default=None, help="the FID network's state_dict file (pytorch-fid's .pth)")
    p.add_argument(
        "--resize", default="pytorch-fid", choices=RESIZE_MODES,
        help="bring images to 299x299 as this tool does (default pytorch-fid; docs/METRICS.md)",
    )  # fmt: skip
    p.add_argument(
        "--backend", default="fast", choices=BACKENDS,
        help="fast: BN folded, 1x1 convs merged, channels_last (checked against eager); eager: as is",
    )  # fmt: skip
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument(
        "--workers", type=int, default=0,
        help="decoding processes (default 0: decode in this process, as fid did before the pipeline; "
        "N > 0: N DataLoader processes, ahead of the network)",
    )  # fmt: skip
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--skip-bad-images", action="store_true", help="leave unreadable files out and count them")
    add_image_limit_args(p)
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def feature_kwargs(args: argparse.Namespace, device: Any) -> dict[str, Any]:
    return dict(
        batch_size=args.batch_size, resize=args.resize, backend=args.backend, device=device,
        skip_bad=args.skip_bad_images, workers=getattr(args, "workers", None),
    )  # fmt: skip


def fid_network(args: argparse.Namespace, device: Any) -> Any:
    """The FID network of ``--weights`` on ``device``, run with ``--backend``."""
    from ..metrics import scores as M

    return M.fid_network(M.load_fid_model(args.weights, device), args.backend)


def report_skipped(feats: Any, rank: int) -> None:
    if feats is not None and feats.skipped and rank == 0:
        print(f"skipped {len(feats.skipped)} unreadable images (--skip-bad-images)", file=sys.stderr)


def run_distributed(args: argparse.Namespace, body: Callable[[argparse.Namespace, int, int], int]) -> int:
    """``body(args, rank, local_rank)`` in the process group torchrun set up (or alone), then the group
    torn down (fid and isc: each rank reads its shard of the folder)."""
    import torch.distributed as dist

    from ..train.build import init_distributed

    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    rank, _, local_rank = init_distributed(args)
    try:
        return body(args, rank, local_rank)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
