"""``inceptionnet explain``: what the network sees in one image, as a figure: the input as the
network gets it, Grad-CAM of a class, the top-5 probabilities and, for GoogLeNet-family models, the
activation energy of the four branches of an Inception block (the pictures of ``serve``'s page); or,
with ``--feature-maps``, the channels of chosen layers as tiled grids.

    inceptionnet explain --model googlenet_small --weights fashion_mnist boot.png -o boot-explained.png
    inceptionnet explain --checkpoint runs/x/best.pt dog.jpg -o dog.png --block inception4c --target 3
    inceptionnet explain --model googlenet_small --weights fashion_mnist boot.png --feature-maps conv1,inception3a -o maps.png
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .. import data as D
from ..errors import UsageError
from ..fileio import atomic_save_figure, check_output_file, file_kind
from ..runtime import flush_denormal, resolve_device
from ._args import add_image_limit_args, add_model_args, check_empty_flags, preprocess


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Grad-CAM and Inception-branch energy (or --feature-maps) of one image, as a figure.",
                                add_help=add_help)  # fmt: skip
    p.add_argument("image", help="an image file (any format PIL reads)")
    add_model_args(p)
    add_image_limit_args(p)
    p.add_argument("-o", "--output", required=True, help="the figure to write (.png, .pdf, .svg)")
    p.add_argument(
        "--block", default=None,
        help="the Inception block whose four branches to show (default inception4c; 'none': no branch view; "
        "GoogLeNet-family models only)",
    )  # fmt: skip
    p.add_argument(
        "--target", default=None, help="the class Grad-CAM explains: index or name (default: top-1)"
    )
    p.add_argument(
        "--feature-maps", default=None, metavar="LAYER[,LAYER]",
        help="draw these layers' feature maps instead (every channel a tile, each scaled to its own range); "
        "layers: the trunk's stages and blocks, e.g. conv1,inception3a (a wrong name lists them)",
    )  # fmt: skip
    p.add_argument("--invert", action="store_true", help="invert gray levels (as predict --invert)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output file (never a checkpoint or weights)",
    )
    return p


def _target(value: str | None, classes: list[str]) -> int | None:
    if value is None:
        return None
    if value in classes:
        return classes.index(value)
    try:
        i = int(value)
    except ValueError:
        raise UsageError(f"--target {value!r} is neither a class name nor an index; classes: {', '.join(classes[:10])}"
                         + (" ..." if len(classes) > 10 else "")) from None  # fmt: skip
    if not 0 <= i < len(classes):
        raise UsageError(
            f"--target {i} is out of range: the model has {len(classes)} classes (0..{len(classes) - 1})"
        )
    return i


def _a_figure(path: Path) -> bool:
    """An image or PDF (what explain writes): replaced with --overwrite, unlike a file of another kind."""
    kind = file_kind(path)
    return kind is not None and (kind.endswith(" image") or kind == "a PDF document")


def main(args: argparse.Namespace) -> int:
    check_empty_flags(
        args, "--checkpoint", "--model", "--weights", "--device", "--block", "--target", "--feature-maps"
    )
    if args.feature_maps is not None and (args.block is not None or args.target is not None):
        raise UsageError("--feature-maps draws feature maps, not Grad-CAM: leave out --block and --target")
    if not args.image.strip():
        raise UsageError("the image path is empty (''); give an image file")
    weights_file = args.weights if args.weights and Path(args.weights).is_file() else None
    out = check_output_file(
        args.output, "-o/--output", {"image": args.image, "--checkpoint": args.checkpoint, "--weights": weights_file},
        ours=_a_figure, overwrite=args.overwrite, keep_ours=True, what="a figure", example="explained.png",
    )  # fmt: skip
    if out.suffix.lower() not in (".png", ".pdf", ".svg", ".jpg", ".jpeg"):
        raise UsageError(f"-o/--output {out}: write .png, .pdf, .svg or .jpg (the format follows the name)")
    from ..checkpoint import ModelSource, open_model
    from ..serve.explain import default_block, explain, explanation_figure, four_branch_blocks

    device = resolve_device(args.device)
    model, icfg, classes, _ = open_model(ModelSource.from_args(args), device, allow_nan=args.allow_nan)
    if args.feature_maps is not None:
        return _feature_maps(args, model, icfg, out, device)
    blocks = four_branch_blocks(model)
    block = default_block(blocks) if args.block is None else args.block
    if block == "none":
        block = None
    elif block is not None and block not in blocks:
        have = (
            f"one of {', '.join(blocks)}" if blocks else "it has none: its family has no four-branch blocks"
        )
        raise UsageError(f"--block {block!r} is not an Inception block of this model ({have})")
    target = _target(args.target, classes)
    x = preprocess(args.image, icfg, D.eval_transform(icfg, icfg.in_chans, native_size=-1), args.invert).to(
        device
    )
    with flush_denormal():
        e = explain(model, icfg, x, target=target, block=block)
    atomic_save_figure(explanation_figure(e, classes), out)
    top = int(e.probs.argmax())
    print(f"{args.image}: {classes[top]} {float(e.probs[top]):.3f}; Grad-CAM of {classes[e.target]} "
          f"at {e.cam_layer}{f', branches of {block}' if block else ''} -> {out}")  # fmt: skip
    return 0


def _feature_maps(args: argparse.Namespace, model: Any, icfg: D.InputConfig, out: Path, device: Any) -> int:
    """--feature-maps: the named layers' channel grids as one figure."""
    from ..analysis.feature_maps import feature_map_figure, feature_maps, parse_layers

    layers = parse_layers(args.feature_maps, model)  # before reading the image: a wrong name fails fast
    x = preprocess(args.image, icfg, D.eval_transform(icfg, icfg.in_chans, native_size=-1), args.invert)
    with flush_denormal():
        maps = feature_maps(model, x.unsqueeze(0).to(device), layers)
    atomic_save_figure(feature_map_figure(maps, f"{Path(args.image).name}: feature maps"), out)
    shapes = ", ".join(f"{m.layer} {m.maps.shape[0]}x{m.maps.shape[1]}x{m.maps.shape[2]}" for m in maps)
    print(f"{args.image}: feature maps of {shapes} -> {out}")
    return 0
