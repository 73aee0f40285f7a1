"""``inceptionnet summary NAME``: per-layer table of a model (output shapes, parameters, MACs in forward
order); ``--table1`` lays a model out as its paper's Table 1 (GoogLeNet, with the published figures
beside ours), ``--bottleneck`` shows what the 1x1 reductions of each Inception block save.

Parsing and printing only: the analysis is ``inceptionnet.analysis`` (``summarize``, ``render``,
``table1``, ``bottleneck`` ...; re-exported here, where they used to live).
"""

from __future__ import annotations

import argparse
import os
import sys

from ..analysis import (
    FORMATS,
    bottleneck,
    bottleneck_example,
    render,
    render_bottleneck,
    render_table1,
    summarize,
    table1,
)
from ..errors import UsageError
from ..models.googlenet import PAPER_TABLE1

__all__ = [
    "FORMATS",
    "PAPER_TABLE1",
    "bottleneck",
    "bottleneck_example",
    "get_args_parser",
    "main",
    "render",
    "render_bottleneck",
    "render_table1",
    "summarize",
    "table1",
]


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Per-layer table of a model: output shapes, parameters and MACs in forward order.",
        add_help=add_help,
    )
    p.add_argument("model", metavar="NAME", help="a registered model (see 'inceptionnet list')")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="input height and width (default: the model's, e.g. 224 or 299)")  # fmt: skip
    p.add_argument("--in-chans", type=int, default=3, help="input channels (default 3)")
    p.add_argument("--num-classes", type=int, default=1000, help="classifier outputs (default 1000)")
    p.add_argument("--format", choices=FORMATS, default="text", help="output format (default text)")
    p.add_argument("--depth", type=int, choices=(1, 2), default=1,
                   help="1: one row per block; 2: also each block's branches")  # fmt: skip
    p.add_argument("--aux", action="store_true", help="build and run the auxiliary classifiers too")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--table1", action="store_true",
                      help="GoogLeNet as the paper's Table 1, with the published figures beside ours")  # fmt: skip
    mode.add_argument("--bottleneck", action="store_true",
                      help="per Inception block: weights and MACs with and without the 1x1 reductions")  # fmt: skip
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def main(args: argparse.Namespace) -> int:
    if not args.model.strip():
        raise UsageError("the model NAME is empty; see 'inceptionnet list'")
    if args.in_chans < 1:
        raise UsageError(f"bad --in-chans: in_chans must be a positive integer, got {args.in_chans}")
    if args.num_classes < 0:
        raise UsageError(
            f"bad --num-classes: num_classes must be a non-negative integer, got {args.num_classes}"
        )
    size = tuple(args.input_size) if args.input_size is not None else None
    if args.table1 or args.bottleneck:
        if args.aux or args.depth != 1:
            raise UsageError("--aux and --depth apply to the plain summary, not to --table1/--bottleneck")
        if args.table1:
            _emit(render_table1(table1(args.model, size, args.in_chans, args.num_classes), args.format))
        else:
            b = bottleneck(args.model, size, args.in_chans, args.num_classes)
            _emit(render_bottleneck(b, args.format))
        return 0
    s = summarize(args.model, size, args.in_chans, args.num_classes, depth=args.depth, aux=args.aux)
    _emit(render(s, args.format))
    return 0


def _emit(text: str) -> None:
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # the reader stopped early (``| head``): not an error; keep Python's exit-time flush quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
