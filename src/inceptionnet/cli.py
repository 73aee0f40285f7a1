"""``inceptionnet <command>``: a thin dispatch to the modules that do the work.

Every command prints user errors as one ``error: ...`` line and exits 2; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

# command -> (module, one-line help). Each module has get_args_parser(add_help) and main(args).
COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("inceptionnet.list_cmd", "list the models with parameter counts and weight entries"),
    "summary": ("inceptionnet.analysis", "per-layer table: output shapes, params, MACs (paper Table 1)"),
    "train": ("inceptionnet.train", "train a model (recipes, resume, DDP via torchrun, AMP, EMA)"),
    "eval": ("inceptionnet.evaluate", "evaluate a checkpoint or weights: loss, top-1, top-5, TTA"),
    "predict": ("inceptionnet.predict", "classify image files with a checkpoint, weights or ONNX file"),
    "export": ("inceptionnet.export", "export to ONNX or TorchScript, verified against eager"),
    "bench": ("inceptionnet.bench", "throughput vs torchvision, ONNX Runtime and torch.compile"),
    "ablate": ("inceptionnet.ablate", "ablation studies of googlenet_small on Fashion-MNIST"),
}

USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    FileNotFoundError,
    NotADirectoryError,
    PermissionError,
)


def run_main(main_fn: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a command's main, turning user errors into one ``error:`` line and exit code 2."""
    from .errors import InceptionNetError

    user_errors: tuple[type[BaseException], ...] = (InceptionNetError, *USER_ERRORS)
    try:
        rc = main_fn(args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except user_errors as e:
        if getattr(args, "debug", False):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, OSError) and e.strerror and e.filename:
            msg = f"{e.filename}: {e.strerror}"
        print(f"error: {msg}", file=sys.stderr)
        return 2
    return int(rc or 0)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="inceptionnet",
        description="The Inception family of image classifiers: models, analysis, training, export.",
        epilog="Run 'inceptionnet COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    if argv[0] == "--version":
        from . import __version__

        print(__version__)
        return 0
    cmd = argv[0]
    if cmd not in COMMANDS:
        parser.print_usage(sys.stderr)
        print(f"error: unknown command {cmd!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    os.environ.setdefault("KMP_WARNINGS", "0")
    module = importlib.import_module(COMMANDS[cmd][0])
    if hasattr(module, "parse_args"):  # commands with recipes layer them under the flags
        try:
            args = module.parse_args(argv[1:], prog=f"inceptionnet {cmd}")
        except ValueError as e:  # a bad recipe: the same one-line error as the command's own
            if "--debug" in argv:
                raise
            print(f"error: {e}", file=sys.stderr)
            return 2
    else:
        cmd_parser = module.get_args_parser(add_help=True)
        cmd_parser.prog = f"inceptionnet {cmd}"
        args = cmd_parser.parse_args(argv[1:])
    return run_main(module.main, args)


if __name__ == "__main__":
    sys.exit(main())
