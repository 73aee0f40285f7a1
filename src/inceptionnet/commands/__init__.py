"""The ``inceptionnet`` commands: the table of them, and the one way each is run.

Each command module has ``get_args_parser(add_help)`` and ``main(args)``; modules with recipes
(``train``) have ``parse_args(argv, prog)`` instead of the parser, so recipes layer under the flags.
``run(name, argv)`` is what the CLI, ``python -m`` and the demo call: user errors become one
``error: ...`` line and exit code 2 (``--debug`` shows the traceback instead).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from functools import partial

from ..errors import run_cli, run_main

__all__ = ["COMMANDS", "run", "run_main", "run_module_main"]

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("inceptionnet.commands.listing", "list the models with parameter counts and weight entries"),
    "summary": (
        "inceptionnet.commands.summary",
        "per-layer table: output shapes, params, MACs (paper Table 1)",
    ),
    "train": ("inceptionnet.train", "train a model (recipes, resume, DDP via torchrun, AMP, EMA)"),
    "eval": ("inceptionnet.commands.evaluate", "evaluate a checkpoint or weights: loss, top-1, top-5, TTA"),
    "predict": (
        "inceptionnet.commands.predict",
        "classify image files with a checkpoint, weights or ONNX file",
    ),
    "export": ("inceptionnet.commands.export", "export to ONNX or TorchScript, verified against eager"),
    "embed": (
        "inceptionnet.commands.embed",
        "pooled features of images (retrieval, kNN) into a safetensors file",
    ),
    "bench": ("inceptionnet.commands.bench", "throughput vs torchvision, ONNX Runtime and torch.compile"),
    "ablate": ("inceptionnet.commands.ablate", "ablation studies of googlenet_small on Fashion-MNIST"),
    "demo": ("inceptionnet.commands.demo", "train, evaluate and predict on Fashion-MNIST in ~5 minutes"),
    "fid": ("inceptionnet.commands.fid", "FID between image folders or .npz statistics (pytorch-fid's)"),
    "isc": ("inceptionnet.commands.isc", "Inception Score of an image folder (torch-fidelity's)"),
    "serve": (
        "inceptionnet.commands.serve",
        "HTTP server: dynamic batching, a page with Grad-CAM and branch views",
    ),
    "explain": (
        "inceptionnet.commands.explain",
        "Grad-CAM and Inception-branch energy of an image, as a figure",
    ),
}


def run(name: str, argv: Sequence[str], prog: str | None = None) -> int:
    """Parse ``argv`` for command ``name`` and run it (``name`` must be in ``COMMANDS``)."""
    argv = list(argv)
    os.environ.setdefault("KMP_WARNINGS", "0")
    module = importlib.import_module(COMMANDS[name][0])
    from ._args import with_image_limits  # --max-pixels / --max-side reach every image read

    main = with_image_limits(module.main)
    prog = prog or f"inceptionnet {name}"
    if hasattr(module, "parse_args"):  # commands with recipes layer them under the flags
        return run_cli(partial(module.parse_args, prog=prog), main, argv)
    parser = module.get_args_parser(add_help=True)
    parser.prog = prog
    return run_cli(parser.parse_args, main, argv)


def run_module_main(name: str) -> int:
    """``python -m inceptionnet.<module>``: the command ``name`` on ``sys.argv[1:]``."""
    return run(name, sys.argv[1:])
