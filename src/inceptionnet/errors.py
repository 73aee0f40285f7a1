"""Every exception of the project, ``first_line(e)``: the one-line form the CLI prints, and
``excerpt(value)``: a bounded excerpt of a user's value for an error message.

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
import functools
import re
import reprlib
import sys
from collections import deque
from collections.abc import Callable, Sequence
from itertools import islice
from typing import Any


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


EXCERPT_MAX = 80  # characters of a value shown in an error line
_EXCERPT_BUDGET = 200  # elements of a value visited to show it
_CONTAINERS = ((list, "[", "]"), (tuple, "(", ")"), (set, "{", "}"), (frozenset, "{", "}"), (deque, "[", "]"))


class _BoundedRepr(reprlib.Repr):
    """reprlib with a total budget of elements, not only a depth: a checkpoint may hold a list of
    shared references (``a = [a, a]`` 60 times, legal under ``weights_only``) whose plain repr never
    ends, and reprlib alone still visits ``maxlist ** maxlevel`` elements. Containers are matched by
    isinstance (reprlib's dispatch by type name hands ``OrderedDict`` and other subclasses to the
    unbounded builtin repr), dict and set items are taken as they come (reprlib sorts them all first),
    and objects of other types show only their type name: their ``__repr__`` is not ours to run."""

    def __init__(self, budget: int) -> None:
        super().__init__()
        self.maxlevel, self.maxdict, self.maxstring, self.maxother = 4, 4, 40, 40
        self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = self.maxdeque = 6
        self.budget = budget

    def repr1(self, x: Any, level: int) -> str:
        self.budget -= 1
        if self.budget < 0:
            return self.fillvalue
        for kind in (bool, float, complex):  # the base type's repr: a subclass's __repr__ is not ours to run
            if isinstance(x, kind):
                return kind.__repr__(x)
        if x is None:
            return "None"
        if isinstance(x, int):  # a huge int's decimal form is slow to make (and refused past 4300 digits)
            return repr(int(x)) if x.bit_length() <= 256 else f"<int of {x.bit_length()} bits>"
        if isinstance(x, str):
            return self.repr_str(str(x), level)
        if isinstance(x, (bytes, bytearray)):
            more = self.fillvalue if len(x) > self.maxstring else ""
            return repr(bytes(x[: self.maxstring])) + more
        return self._other(x, level)

    def _other(self, x: Any, level: int) -> str:
        prefix = "" if type(x) in (dict, list, tuple, set, frozenset) else _type_name(x)
        if isinstance(x, dict):
            if level <= 0 and x:
                return prefix + "{" + self.fillvalue + "}"
            pairs = islice(x.items(), self.maxdict)
            items = [f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}" for k, v in pairs]
            return prefix + "{" + ", ".join(items + [self.fillvalue] * (len(x) > self.maxdict)) + "}"
        for base, left, right in _CONTAINERS:
            if isinstance(x, base):
                return prefix + self._items(x, level, left, right, "," if base is tuple else "")
        shape = getattr(x, "shape", None) if type(x).__module__.split(".")[0] in ("torch", "numpy") else None
        return f"<{_type_name(x)}{f' of shape {tuple(shape)}' if shape is not None else ''}>"

    def _items(self, x: Any, level: int, left: str, right: str, trail: str) -> str:
        if level <= 0 and len(x):
            return left + self.fillvalue + right
        pieces = [self.repr1(v, level - 1) for v in islice(x, self.maxlist)]
        pieces += [self.fillvalue] * (len(x) > self.maxlist)
        return left + ", ".join(pieces) + (trail if len(x) == 1 else "") + right


def _type_name(x: Any) -> str:
    name = type(x).__name__
    return name[:40] if name.isidentifier() else "object"


def excerpt(value: Any, limit: int = EXCERPT_MAX) -> str:
    """A repr of ``value`` for an error line, bounded in time and length whatever the value is (a
    deep or wide structure, shared references, a huge string or int): at most 200 elements visited
    (depth 4, 6 items per container, 40 characters per string), at most ``limit`` characters, one
    line. Use it, never ``repr()`` / ``!r``, for every value read from a user's file or flag."""
    s = _BoundedRepr(_EXCERPT_BUDGET).repr(value)
    return s if len(s) <= limit else s[: max(0, limit - 3)] + "..."


YAML_MAX_BYTES = 64 << 10  # a recipe is a page of flags (ours: < 1 KB); PyYAML reads ~20-500 KB/s
YAML_MAX_DEPTH = 50  # levels of nesting (a recipe has 2 or 3); 2,000 levels took PyYAML 3 s, 100,000 hours


def load_yaml(text: str, where: str) -> Any:
    """YAML ``text`` read as ``yaml.safe_load`` does, with aliases refused: a 1 KB file of nested
    aliases expands to a structure whose every walk (repr, json.dumps, a copy) never ends. Invalid
    YAML, an alias, nesting deeper than ``YAML_MAX_DEPTH``, an int too long and a text over
    ``YAML_MAX_BYTES`` are one ``UsageError`` naming ``where`` (a file, or a flag) and the line."""
    import yaml

    if len(text) > YAML_MAX_BYTES:
        raise UsageError(f"{where}: {len(text):,} characters of YAML; at most {YAML_MAX_BYTES:,} are read")
    _check_flow_depth(text, where)
    loader = _no_alias_loader()(text)
    try:
        return loader.get_single_data()
    except _YamlRefused as e:
        raise UsageError(f"{where}: {e}") from None
    except yaml.MarkedYAMLError as e:
        raise UsageError(f"{where} is not valid YAML: {e.problem}{_at(e.problem_mark)}") from None
    except yaml.YAMLError as e:
        raise UsageError(f"{where} is not valid YAML: {first_line(e)}") from None
    except ValueError as e:  # an int of 5,000 digits
        raise UsageError(f"{where}: a YAML value cannot be read ({first_line(e, 80)})") from None
    finally:
        loader.dispose()


def _check_flow_depth(text: str, where: str) -> None:
    """Brackets nested deeper than YAML_MAX_DEPTH, found before parsing: PyYAML scans a flow
    collection to its end before the loader sees the first node (100,000 "[" took it 1.2 s, and the
    time grows with the square of the depth). Brackets in quoted strings count too (50 unclosed
    ones in a recipe's string are not expected)."""
    depth = 0
    for c in re.sub(r"[^\[\]{}]+", "", text):
        depth = depth + 1 if c in "[{" else max(0, depth - 1)
        if depth > YAML_MAX_DEPTH:
            raise UsageError(f"{where}: YAML nested more than {YAML_MAX_DEPTH} levels of brackets")


def _at(mark: Any) -> str:
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


class _YamlRefused(Exception):
    pass


@functools.cache
def _no_alias_loader() -> Any:
    """yaml's SafeLoader refusing aliases (made on first use: ``import inceptionnet`` skips yaml)."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                at = f"*{str(event.anchor)[:40]}{_at(event.start_mark)}"
                raise _YamlRefused(f"YAML aliases are not accepted ({at}); write the value out")
            if self.depth >= YAML_MAX_DEPTH:  # PyYAML's scanner is quadratic in the depth
                at = _at(self.peek_event().start_mark)
                raise _YamlRefused(f"YAML nested more than {YAML_MAX_DEPTH} levels ({at.strip()})")
            self.depth += 1
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    return NoAliasLoader


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
