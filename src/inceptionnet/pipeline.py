"""Folders at volume: the one streaming inference pipeline of ``predict`` and ``embed`` (issue 34).

    inputs (files, folders, globs, @LIST, -)  --expand_inputs-->  paths, in order
    paths  --ImageFiles + DataLoader workers (decode, the model's eval transform)-->  Batches
    Batches  --the model, in the main process only-->  rows  --a sink (OutputFile: FILE.partial
    appended and flushed per batch, renamed onto FILE at the end; or the terminal)

* **Inputs** (``expand_inputs``): a file as given; a folder searched recursively for image files
  (``data.folder_images``: sorted, FIFOs and link loops kept so that each is named when read); a
  glob (``photos/*.jpg``, ``**`` recursive), sorted; ``@LIST``, a text file of paths, one a line;
  ``-``, the same on standard input. A folder without images and a glob matching nothing stay as
  inputs, so that each gets its one ``cannot read image`` line.
* **Decoding** (``stream``): ``ImageFiles`` reads each image with ``data.read_image`` (the bounded
  reader: the size checked from the header, resized as the transform will) and applies the model's
  eval transform, in ``workers`` DataLoader processes (bounded prefetch: 2 batches each) while the
  main process runs the model. An unreadable image becomes a failed entry (named, counted, left out
  of the output), never an exception; a file that vanished since it was listed is one of them.
* **Outputs** (``OutputFile``): ``.csv`` (``path,label_1,index_1,prob_1,...``), ``.jsonl`` (one
  ``{"path", "top": [{"label", "index", "prob"}]}`` a line) or ``.parquet`` (the CSV's columns; with
  pyarrow), written as the batches come to ``FILE.partial`` (appended, flushed; JSON lines for
  parquet), renamed onto FILE when every input is done (parquet: written from it atomically). ``resume=True``
  keeps the rows of an earlier partial file (a crash, Ctrl-C, kill -9: a last line cut short is
  dropped) and skips those inputs: nothing recomputed, nothing lost.
* **Many processes** (``torchrun``): rank r takes inputs i % world == r; after each batch the ranks'
  results are gathered (``all_gather_object``) and rank 0 hands them on in input order, so one
  output is written, identical to a one-process run's.

Layer: above ``checkpoint`` (the model comes opened from ``checkpoint.open_for_inference``), beside
train / metrics / serve; commands parse and print.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TextIO

import torch
from torch import Tensor

from . import data as D
from .data.images import ResizeTo, current_limits
from .errors import ImageReadError, NonFiniteError, UsageError, excerpt
from .fileio import json_text, not_a_regular_file
from .runtime import is_dist, progress_shown

BULK = 64  # more inputs than this is bulk work: the fast path by default (predict)
PARTIAL_SUFFIX = ".partial"
FORMATS = (".csv", ".jsonl", ".parquet")
GLOB_CHARS = frozenset("*?[")


def default_workers() -> int:
    """Decoding processes by default: min(4, CPUs)."""
    return min(4, os.cpu_count() or 1)


# --------------------------------------------------------------------------------------------------
# Inputs


def expand_inputs(inputs: Sequence[str], stdin: TextIO | None = None) -> list[str]:
    """The image paths of ``inputs`` in order (see the module's docstring): files, folders, globs,
    ``@LIST`` and ``-`` (``stdin``, by default ``sys.stdin``)."""
    out: list[str] = []
    for item in inputs:
        if not str(item).strip():
            raise UsageError("an image path is empty (''); give image files, folders, globs, @LIST or -")
        if item == "-":
            out += [q for line in _lines(stdin or sys.stdin) for q in expand_path(line)]
        elif item.startswith("@") and len(item) > 1 and not Path(item).exists():
            out += [q for line in _list_file(item[1:]) for q in expand_path(line)]
        else:
            out += expand_path(item)
    return out


def _lines(f: Iterable[str]) -> list[str]:
    """One path a line; blank lines skipped (a trailing newline, a list written by hand)."""
    return [line.rstrip("\r\n") for line in f if line.strip()]


def _list_file(path: str) -> list[str]:
    p = Path(path)
    try:
        with open(p, encoding="utf-8") as f:
            return _lines(f)
    except FileNotFoundError:
        raise UsageError(f"@{path}: the list file {p} does not exist (one image path a line)") from None
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else "not a UTF-8 text file"
        raise UsageError(f"@{path}: cannot read the list file {p}: {why} (one image path a line)") from None


def expand_path(item: str) -> list[str]:
    """A folder's image files (recursive, sorted), a glob's matches (sorted; folders among them
    expanded), else ``item`` itself (read later: a missing file is named then)."""
    p = Path(item)
    if p.is_dir():
        return [str(f) for f in D.folder_images(p, recursive=True)] or [item]
    if GLOB_CHARS & set(item) and not p.exists():
        found = sorted(glob.glob(item, recursive=True))
        return [q for m in found for q in (expand_path(m) if Path(m).is_dir() else [m])] or [item]
    return [item]


def changed_inputs(inputs: Sequence[str], listed: Iterable[str]) -> list[str]:
    """Files of ``inputs``' folders and globs now that were not ``listed`` when the run began (the
    input set changed during the run; files that vanished are already counted as unreadable)."""
    seen = set(listed)
    again = [
        q for item in inputs if item not in ("-",) and not item.startswith("@") for q in expand_path(item)
    ]
    return [q for q in again if q not in seen and Path(q).is_file()]


# --------------------------------------------------------------------------------------------------
# Decoding


class Sample(NamedTuple):
    pos: int  # the input's place in the whole list
    path: str
    x: Tensor | None
    error: str | None


@dataclass
class Batch:
    """Decoded images of one batch in input order (``x``: N x C x H x W, None when all failed) and
    the inputs that could not be read, with their error lines."""

    indices: list[int]
    paths: list[str]
    x: Tensor | None
    failed: list[tuple[int, str, str]]


class ImageFiles(torch.utils.data.Dataset[Sample]):
    """``(index, path)`` items as model inputs: ``read_image`` (``limits``, taken when made, so that
    worker processes keep the command's --max-pixels / --max-side; ``resize_to``: the resize checked
    from the header, by default the transform's first; ``draft``: large JPEGs decoded at a reduced
    scale, --jpeg-draft), gray levels inverted with ``invert``, then ``transform``. Unreadable images
    are samples with an ``error``."""

    def __init__(
        self, items: Sequence[tuple[int, str]], in_chans: int, transform: Any, *, invert: bool = False,
        limits: D.ImageLimits | None = None, resize_to: ResizeTo | None = None, draft: bool = False,
    ) -> None:  # fmt: skip
        self.items = list(items)
        self.in_chans, self.transform, self.invert, self.draft = in_chans, transform, invert, draft
        self.resize_to = D.resize_target(transform) if resize_to is None else resize_to
        self.limits = current_limits(limits)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Sample:
        index, path = self.items[i]
        try:
            x = D.read_image(
                path, self.in_chans, resize_to=self.resize_to, limits=self.limits, draft=self.draft
            )
        except ImageReadError as e:
            return Sample(index, path, None, str(e))
        if self.invert:
            x = 255 - x
        return Sample(index, path, self.transform(x), None)


def collate(samples: Sequence[Sample]) -> Batch:
    """Readable samples stacked (input order kept), failed ones set aside."""
    good = [s for s in samples if s.x is not None]
    return Batch(
        [s.pos for s in good], [s.path for s in good],
        torch.stack([s.x for s in good if s.x is not None]) if good else None,
        [(s.pos, s.path, str(s.error)) for s in samples if s.x is None],
    )  # fmt: skip


def loader(dataset: ImageFiles, batch_size: int, workers: int) -> Iterable[Batch]:
    """Batches of ``dataset`` in order, decoded by ``workers`` processes (0: in this one), each
    holding at most 2 batches ahead."""
    kw: dict[str, Any] = {"prefetch_factor": 2} if workers > 0 else {}
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate, **kw
    )


def image_tensor(
    paths: Sequence[str], in_chans: int, transform: Any, *, limit: int, invert: bool = False,
    workers: int = 0, batch_size: int = 32, draft: bool = False,
) -> Tensor:  # fmt: skip
    """Up to ``limit`` readable images of ``paths``, spread evenly over them, as one model-ready
    tensor (int8 calibration images taken from the inputs themselves); unreadable ones are passed
    over (they are named when the run reaches them)."""
    step = max(1, len(paths) // max(limit, 1))
    items = list(enumerate(paths))[::step][: limit * 2]
    xs: list[Tensor] = []
    for b in loader(ImageFiles(items, in_chans, transform, invert=invert, draft=draft), batch_size, workers):
        if b.x is not None:
            xs.append(b.x)
        if sum(len(x) for x in xs) >= limit:
            break
    if not xs:
        raise ImageReadError(f"none of the {len(items)} images tried for calibration could be read")
    return torch.cat(xs)[:limit]


def auto_workers(workers: int | None, n: int, batch_size: int) -> int:
    """Decoding processes: ``workers`` as given, else ``default_workers()`` for more than one batch
    (one batch: nothing to overlap, no process to start)."""
    if workers is not None:
        return workers
    return default_workers() if n > batch_size else 0


class LabeledBatches:
    """``(images, labels)`` batches of ``samples`` ((path, label); an image folder's) decoded by the
    pipeline's loader (``workers`` processes, ``auto_workers``), as ``train.engine.evaluate`` reads
    them; the first unreadable image raises ``ImageReadError`` naming it."""

    def __init__(
        self, samples: Sequence[tuple[str, int]], in_chans: int, transform: Any, *, batch_size: int,
        workers: int | None = None, draft: bool = False,
    ) -> None:  # fmt: skip
        self.samples, self.batch_size = list(samples), batch_size
        self.workers = auto_workers(workers, len(self.samples), batch_size)
        items = [(i, str(p)) for i, (p, _) in enumerate(self.samples)]
        self.dataset = ImageFiles(items, in_chans, transform, draft=draft)

    def __len__(self) -> int:
        return math.ceil(len(self.samples) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        labels = torch.tensor([int(y) for _, y in self.samples], dtype=torch.long)
        for b in loader(self.dataset, self.batch_size, self.workers):
            if b.failed:
                raise ImageReadError(b.failed[0][2])
            if b.x is not None:
                yield b.x, labels[b.indices]


# --------------------------------------------------------------------------------------------------
# The run: batches through the model, sharded under torchrun, results in input order


@dataclass
class Result:
    """One input's outcome: ``row`` (what ``rows_of`` made of the model's output) or ``error``."""

    index: int
    path: str
    row: Any = None
    error: str | None = None


@dataclass
class Summary:
    done: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _rank_world() -> tuple[int, int]:
    if not is_dist():
        return 0, 1
    import torch.distributed as dist

    return dist.get_rank(), dist.get_world_size()


def shared(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (the input list: only rank 0 reads stdin and the partial file)."""
    if not is_dist():
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _gather(part: Any) -> list[Any]:
    """Every rank's ``part`` (a list of Results, or the exception it raised), raised everywhere when
    any rank failed, so that no rank waits forever."""
    parts = [part]
    if is_dist():
        import torch.distributed as dist

        parts = [None] * dist.get_world_size()
        dist.all_gather_object(parts, part)
    for p in parts:
        if isinstance(p, BaseException):
            raise p
    return [r for p in parts for r in p]


def _one_batch(
    it: Iterator[Batch], run: Callable[[Tensor], Tensor], rows_of: Callable[[list[str], Tensor], list[Any]]
) -> list[Result] | BaseException:  # fmt: skip
    try:
        b = next(it, None)
        if b is None:
            return []
        out = [Result(i, p, error=e) for i, p, e in b.failed]
        if b.x is not None:
            with torch.inference_mode():
                y = torch.as_tensor(run(b.x)).float().cpu()
            out += [
                Result(i, p, row=r) for i, p, r in zip(b.indices, b.paths, rows_of(b.paths, y), strict=True)
            ]
        return out
    except Exception as e:  # noqa: BLE001 - handed to every rank and raised there (its traceback kept)
        return e


def stream(
    items: Sequence[tuple[int, str]],
    run: Callable[[Tensor], Tensor],
    rows_of: Callable[[list[str], Tensor], list[Any]],
    emit: Callable[[list[Result]], None],
    *,
    in_chans: int,
    transform: Any,
    batch_size: int = 32,
    workers: int | None = None,
    invert: bool = False,
    show_progress: bool = True,
    desc: str = "predict",
    draft: bool = False,
) -> Summary:
    """``items`` ((index, path), the same list on every rank) through ``run`` (a batch -> outputs),
    ``rows_of(paths, outputs)`` making each input's row on its rank; ``emit`` gets the results of
    each step in input order (on rank 0 only under torchrun). Returns what rank 0 saw."""
    rank, world = _rank_world()
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    mine = [it for j, it in enumerate(items) if j % world == rank]
    n_workers = auto_workers(workers, len(mine), batch_size)
    dataset = ImageFiles(mine, in_chans, transform, invert=invert, draft=draft)
    batches = iter(loader(dataset, batch_size, n_workers))
    steps = math.ceil(math.ceil(len(items) / world) / batch_size)  # the same on every rank
    summary, start = Summary(), time.perf_counter()
    with _bar(len(items), desc, show_progress and rank == 0) as bar:
        for _ in range(steps):
            results = sorted(_gather(_one_batch(batches, run, rows_of)), key=lambda r: r.index)
            if rank == 0:
                emit(results)
                summary.done += sum(r.error is None for r in results)
                summary.failed += [str(r.error) for r in results if r.error is not None]
            bar.update(len(results))
    summary.seconds = time.perf_counter() - start
    return summary


class _NoBar:
    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int) -> None:
        return None


def _bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar of images (img/s and ETA) on a terminal's stderr (``runtime.progress_shown``)."""
    if not progress_shown(enabled):
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", leave=False, dynamic_ncols=True, file=sys.stderr)


# --------------------------------------------------------------------------------------------------
# Classification rows and the output files


def top_rows(
    classes: Sequence[str], topk: int, allow_nan: bool = False
) -> Callable[[list[str], Tensor], list[Any]]:
    """``rows_of`` for classification: each input's top-``topk`` {"label", "index", "prob"}.
    Non-finite logits raise ``NonFiniteError`` naming the file, unless ``allow_nan``."""
    k = min(topk, len(classes))

    def rows_of(paths: list[str], logits: Tensor) -> list[Any]:
        if not allow_nan:
            bad = (~torch.isfinite(logits).all(dim=1)).nonzero()
            if len(bad):
                raise NonFiniteError(
                    f"the model's output for {paths[int(bad[0])]} is not finite (NaN/inf): its weights or the "
                    "input overflow; pass --allow-nan to report it anyway"
                )
        top = logits.softmax(dim=1).topk(k, dim=1)
        return [
            [
                {"label": classes[int(i)], "index": int(i), "prob": float(p)}
                for p, i in zip(ps, ix, strict=True)
            ]
            for ps, ix in zip(top.values, top.indices, strict=True)
        ]

    return rows_of


class RowFormat:
    """How prediction rows are written to and read back from one kind of file."""

    suffix = ""

    def __init__(self, topk: int) -> None:
        self.topk = topk

    def header(self) -> str:
        return ""

    def line(self, path: str, top: list[dict[str, Any]]) -> str:
        raise NotImplementedError

    def path_of(self, line: str) -> str:
        raise NotImplementedError

    def ours(self, first_line: str) -> bool:
        raise NotImplementedError

    def ours_file(self, path: Path) -> bool:
        """``path`` starts as a predictions file of this format would."""
        try:
            with open(path, encoding="utf-8") as f:
                return self.ours(f.readline(4096))
        except (OSError, UnicodeDecodeError):
            return False

    def read_back(self, path: Path) -> bytes:
        """A finished FILE as the partial file's bytes (to continue it with --resume)."""
        return path.read_bytes()

    def finalise(self, partial: Path, output: Path) -> None:
        """The complete partial file (fsynced) onto FILE."""
        os.replace(partial, output)


class CsvRows(RowFormat):
    """``path,label_1,index_1,prob_1,...,label_K,index_K,prob_K``, probabilities in full precision."""

    suffix = ".csv"

    def header(self) -> str:
        cols = ["path"] + [f"{c}_{j}" for j in range(1, self.topk + 1) for c in ("label", "index", "prob")]
        return self._csv(cols)

    def line(self, path: str, top: list[dict[str, Any]]) -> str:
        return self._csv([path] + [v for t in top for v in (t["label"], t["index"], repr(float(t["prob"])))])

    def path_of(self, line: str) -> str:
        return next(csv.reader([line]))[0]

    def ours(self, first_line: str) -> bool:
        return first_line.startswith("path,label_1,index_1,prob_1")

    @staticmethod
    def _csv(values: list[Any]) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(values)
        return buf.getvalue()


class JsonlRows(RowFormat):
    """One JSON object a line: ``{"path": ..., "top": [{"label", "index", "prob"}, ...]}``."""

    suffix = ".jsonl"

    def line(self, path: str, top: list[dict[str, Any]]) -> str:
        return json_text({"path": path, "top": top}, indent=None) + "\n"

    def path_of(self, line: str) -> str:
        return str(json.loads(line)["path"])

    def ours(self, first_line: str) -> bool:
        try:
            row = json.loads(first_line)
        except ValueError:
            return False
        return isinstance(row, dict) and set(row) == {"path", "top"}


class ParquetRows(JsonlRows):
    """``.parquet``, columns as the CSV's (``path``, ``label_j``, ``index_j``, ``prob_j``). Parquet cannot
    be appended: the rows go to the partial file as JSON lines as they come (kept for --resume) and
    become FILE, through ``fileio.atomic_write``, at the end. Needs pyarrow (``row_format`` says so)."""

    suffix = ".parquet"

    def columns(self) -> list[str]:
        return ["path"] + [f"{c}_{j}" for j in range(1, self.topk + 1) for c in ("label", "index", "prob")]

    def ours_file(self, path: Path) -> bool:
        import pyarrow.parquet as pq

        try:
            return bool(pq.read_schema(path).names == self.columns())
        except Exception:  # noqa: BLE001 - pyarrow's errors for a file that is not parquet
            return False

    def read_back(self, path: Path) -> bytes:
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
        top = [[{k: r[f"{k}_{j}"] for k in ("label", "index", "prob")} for j in range(1, self.topk + 1)]
               for r in rows]  # fmt: skip
        return "".join(self.line(r["path"], t) for r, t in zip(rows, top, strict=True)).encode("utf-8")

    def finalise(self, partial: Path, output: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from .fileio import atomic_write

        cols: dict[str, list[Any]] = {c: [] for c in self.columns()}
        for line in partial.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            cols["path"].append(row["path"])
            for j, t in enumerate(row["top"], 1):
                for k in ("label", "index", "prob"):
                    cols[f"{k}_{j}"].append(t[k])
        types = {"path": pa.string(), "label": pa.string(), "index": pa.int64(), "prob": pa.float64()}
        schema = pa.schema([(c, types[c.split("_")[0]]) for c in cols])
        table = pa.table(cols, schema=schema)
        atomic_write(output, lambda tmp: pq.write_table(table, tmp))
        partial.unlink()


def row_format(output: str | os.PathLike[str], topk: int, flag: str = "-o") -> RowFormat:
    """The format ``output``'s suffix names (.csv, .jsonl or .parquet: pyarrow installed)."""
    suffix = Path(output).suffix.lower()
    if suffix == ParquetRows.suffix:
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise UsageError(
                f"{flag} {excerpt(str(output))}: writing .parquet needs pyarrow: pip install pyarrow "
                "(or write .csv / .jsonl)"
            ) from None
        return ParquetRows(topk)
    for cls in (CsvRows, JsonlRows):
        if suffix == cls.suffix:
            return cls(topk)
    raise UsageError(
        f"{flag} {excerpt(str(output))}: the suffix says the format: {', '.join(FORMATS[:-1])} or {FORMATS[-1]} (e.g. preds.csv)"
    )


def is_our_output(path: Path, fmt: RowFormat) -> bool:
    """``path`` starts as a predictions file of ``fmt`` would (the output rule's ``ours``)."""
    return fmt.ours_file(path)


def partial_path(output: str | os.PathLike[str]) -> Path:
    out = Path(output)
    return out.with_name(out.name + PARTIAL_SUFFIX)


class OutputFile:
    """``-o FILE`` written as it goes: rows appended to ``FILE.partial`` and flushed after every batch,
    fsynced and renamed onto FILE by ``finish`` (atomic: FILE is either the earlier file or complete).
    ``resume``: an earlier ``FILE.partial`` (else a finished FILE, to add the inputs it lacks) is
    continued; its last line, if cut short by a kill, is dropped. The caller checks FILE itself with
    ``fileio.check_output_file`` first."""

    def __init__(self, output: str | os.PathLike[str], fmt: RowFormat, *, resume: bool = False) -> None:
        self.output, self.fmt, self.resume = Path(output), fmt, resume
        self.partial = partial_path(output)
        self.done: Counter[str] = Counter()
        self._f: TextIO | None = None
        self._source: Path | None = None  # the file resumed from: the partial file or a finished FILE
        self._cut = 0  # the bytes of its complete lines
        self._raw = b""  # a finished FILE read back as the partial file's bytes

    def start(self) -> Counter[str]:
        """The paths already done (with ``resume``: those of the earlier partial file, or of a finished
        FILE; a multiset), read and checked without changing any file (that waits for ``write``)."""
        what = not_a_regular_file(self.partial)
        if what is not None:
            raise UsageError(f"-o {self.output}: {self.partial} is {what}; remove it or choose another -o")
        if self.resume:
            if self.partial.is_file():
                self._source = self.partial
            elif self.output.is_file() and is_our_output(self.output, self.fmt):
                self._source = self.output  # finished: only inputs it lacks are added
        if self._source is not None:
            self._raw = self.fmt.read_back(self.output) if self._source == self.output else b""
            self.done = Counter(self._paths(self._complete_text(self._source)))
        return self.done

    def _complete_text(self, src: Path) -> str:
        """The complete lines of ``src`` (a last line cut short by a kill is not one), checked as ours."""
        raw = self._raw if src == self.output else src.read_bytes()
        self._cut = raw.rfind(b"\n") + 1
        try:
            text = raw[: self._cut].decode("utf-8")
        except UnicodeDecodeError:
            text = "\x00"
        header, first = self.fmt.header(), text.split("\n", 1)[0] + "\n"
        if text and not (first == header if header else self.fmt.ours(first)):
            raise UsageError(
                f"--resume: {src} was not written by predict -o in this format with this --topk; "
                "remove it, or run without --resume to start over"
            )
        return text[len(header) :] if header and text else text

    def _ensure_open(self) -> TextIO:
        if self._f is not None:
            return self._f
        src = self._source
        if src is None:
            self._f = open(self.partial, "w", encoding="utf-8")  # noqa: SIM115 - open across batches
            self._f.write(self.fmt.header())
            return self._f
        if src == self.output:
            self.partial.write_bytes(self._raw)
        if self._cut < self.partial.stat().st_size:
            os.truncate(self.partial, self._cut)  # the line cut short by the kill: that input is done again
        self._f = open(self.partial, "a", encoding="utf-8")  # noqa: SIM115 - open across batches
        if self._cut == 0:
            self._f.write(self.fmt.header())
        return self._f

    def _paths(self, body: str) -> list[str]:
        paths = []
        for n, line in enumerate(body.splitlines(), 2 if self.fmt.header() else 1):
            try:
                paths.append(self.fmt.path_of(line))
            except (ValueError, KeyError, TypeError, StopIteration, IndexError):
                raise UsageError(
                    f"--resume: line {n} of {self.partial} is damaged; remove the file to start over"
                ) from None
        return paths

    def write(self, results: Sequence[Result]) -> None:
        """The rows of ``results`` that have one (failed inputs are left out), flushed."""
        f = self._ensure_open()
        f.write("".join(self.fmt.line(r.path, r.row) for r in results if r.error is None))
        f.flush()

    def finish(self) -> Path:
        """fsync and rename the partial file onto FILE."""
        f = self._ensure_open()
        f.flush()
        os.fsync(f.fileno())
        f.close()
        self._f = None
        self.fmt.finalise(self.partial, self.output)
        return self.output

    def close(self) -> None:
        """Close without finishing (an interruption): the partial file stays for ``--resume``."""
        if self._f is not None:
            self._f.close()
            self._f = None


def summary_line(
    s: Summary, desc: str, resumed: int = 0, output: str | os.PathLike[str] | None = None
) -> str:
    """``predict: 2048 images in 31.0 s (66.1 img/s), 2 unreadable (left out), 10 already done -> preds.csv``."""
    rate = f" ({s.done / s.seconds:.1f} img/s)" if s.seconds > 0 and s.done else ""
    parts = [f"{desc}: {s.done} images in {s.seconds:.1f} s{rate}"]
    parts.append(f"{len(s.failed)} unreadable (named above, left out)")
    if resumed:
        parts.append(f"{resumed} already done (--resume)")
    return ", ".join(parts) + (f" -> {output}" if output is not None else "")
