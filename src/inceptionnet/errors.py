"""Every exception of the project, and ``first_line(e)``: the one-line form the CLI prints.

Each class is also a ValueError / FileNotFoundError / OSError / RuntimeError, so plain ``except``
clauses of library users keep working.

User error or bug: a deliberate check of what the user gave raises ``UsageError`` (or a more
specific ``InceptionNetError``: ``CheckpointError``, ``ImageReadError`` ...), and a third-party
error caused by a user's value or file (a JSON flag, a YAML recipe, a damaged image or checkpoint)
is caught where that value enters and raised again as one of them. The CLI prints those as one
``error:`` line (exit 2). Any other exception, a bare ``ValueError`` from torch / numpy / our own
code included, is a bug: it keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence


class InceptionNetError(Exception):
    """Base class of the errors the CLI prints as one `error: ...` line."""


class UsageError(InceptionNetError, ValueError):
    """A deliberate check of what the user gave (a flag, a value, a file's content) that failed.

    Raise this, not a bare ValueError, for bad input: ``run_main`` prints it as one line, while a
    ValueError from inside torch / numpy / our own code is a bug and keeps its traceback."""


class InputShapeError(InceptionNetError, ValueError):
    """A tensor the network cannot take (dims, channels, size)."""


class CheckpointError(InceptionNetError, ValueError):
    """A checkpoint or weight file that is damaged, foreign, unsafe or does not fit the model."""


class DataNotFoundError(InceptionNetError, FileNotFoundError):
    """A data set that is not where we looked."""


class ImageReadError(InceptionNetError, ValueError):
    """A file that is not a readable image."""


class OutputWriteError(InceptionNetError, OSError):
    """An output that could not be written (disk full, read-only folder); the previous file is kept."""


class NonFiniteError(InceptionNetError, ValueError):
    """A NaN/inf in the inputs or the loss: training stops, the last good checkpoint is kept."""


class ExportError(InceptionNetError, ValueError):
    """An export that failed, or whose file does not reproduce the eager model's outputs."""


class FastInferenceError(InceptionNetError, RuntimeError):
    """An optimized backend whose outputs do not match the eager model, or that cannot be built."""


class AgreementError(FastInferenceError):
    """A lower-precision backend whose top-1 agreement with eager fp32 is below the bar it was held to
    (``backend="auto"`` drops such a candidate instead of reporting an error)."""


FIRST_LINE_MAX = 300  # long enough for a path and a reason; third-party messages can be pages long


def first_line(e: BaseException, limit: int = FIRST_LINE_MAX) -> str:
    """The first non-empty line of ``str(e)`` (at most ``limit`` characters), else the class name.

    An OSError with a file name reads ``FILE: reason``, as the shell prints it.
    """
    if isinstance(e, OSError) and not isinstance(e, InceptionNetError) and e.strerror and e.filename:
        return f"{e.filename}: {e.strerror}"[:limit]
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0][:limit] if lines else type(e).__name__


# What a command may raise for bad input: printed as one ``error:`` line, exit code 2. No bare
# ValueError: one that is not a UsageError (or another InceptionNetError) is a bug and keeps its
# traceback. Missing or unreadable paths from the OS are the user's (the file name is in the line).
USER_ERRORS: tuple[type[BaseException], ...] = (
    InceptionNetError,
    FileNotFoundError,
    NotADirectoryError,
    PermissionError,
)


def run_main(main_fn: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a command's main, turning user errors (``USER_ERRORS``) into one ``error:`` line and exit
    code 2 (``args.debug`` re-raises them, with the traceback); Ctrl-C is ``error: interrupted``, exit
    130. Any other exception propagates with its traceback: it is a bug, not bad input."""
    try:
        rc = main_fn(args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        if getattr(args, "debug", False):
            raise
        print(f"error: {first_line(e, limit=1000)}", file=sys.stderr)
        return 2
    return int(rc or 0)


def run_cli(
    parse: Callable[[list[str]], argparse.Namespace],
    main_fn: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str],
) -> int:
    """Parse ``argv`` and ``run_main``. argparse prints its own usage errors (exit 2); a bad recipe
    is a ``UsageError`` from the parse (train wraps YAML errors at the recipe) and prints one line
    like the command's own user errors."""
    argv = list(argv)
    try:
        args = parse(argv)
    except USER_ERRORS as e:
        if "--debug" in argv:
            raise
        print(f"error: {first_line(e, limit=1000)}", file=sys.stderr)
        return 2
    return run_main(main_fn, args)
