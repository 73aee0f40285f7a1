"""Files in and out: atomic writes (a temp file in the same folder, fsync, rename: a crash never leaves
half a file) and safe reads (``torch.load(weights_only=True)`` or safetensors: a pickle that would run
code is refused; images, archives, exported models and text files are named for what they are)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import pickle
import re
import shutil
import stat
import tempfile
import traceback
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError, InceptionNetError, OutputWriteError, UsageError, first_line

PathLike = str | os.PathLike[str]


def atomic_write(path: PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)``, fsync it, then rename over ``path``; on any error ``path`` is untouched
    and the temp file is removed. An ``OSError`` or ``RuntimeError`` while writing (a full disk shows
    up as torch's ``PytorchStreamWriter failed writing file``) becomes one ``OutputWriteError`` naming
    ``path``; the project's own errors (e.g. an export that did not verify) pass through. ``path`` must
    be a regular file or not exist: a directory, device, FIFO or socket there is refused before
    writing and again just before the rename (the commands check first; this holds when one forgot)."""
    path = Path(path)
    _refuse_non_regular(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _write_error(path, e) from None
    os.close(fd)
    try:
        make_shareable(tmp)  # mkstemp makes 0600; outputs get the usual permissions
        write(tmp)
        with open(tmp, "rb+") as f:
            f.flush()
            os.fsync(f.fileno())
        _refuse_non_regular(path)  # again: something may have appeared there while writing
        os.replace(tmp, path)
    except BaseException as e:
        err = _write_error(path, e) if isinstance(e, OSError | RuntimeError) else None
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if err is None or isinstance(e, InceptionNetError):
            raise
        # the writer's frames hold the half-written file open (torch's stream writer closes it when
        # it is freed): release it, so the space of the removed temp file is really given back
        _release_frames(e)
        raise err from e
    with contextlib.suppress(OSError):  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _refuse_non_regular(path: Path) -> None:
    node = not_a_regular_file(path)
    if node is not None:
        raise OutputWriteError(f"cannot write {path}: it is {node}, not a regular file; nothing was written")


def _release_frames(e: BaseException) -> None:
    seen: set[int] = set()
    todo: list[BaseException | None] = [e]
    while todo:
        x = todo.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        traceback.clear_frames(x.__traceback__)
        todo += [x.__cause__, x.__context__]


LOW_SPACE = 1 << 20  # bytes free below which a failed write is reported as a full disk


def _write_error(path: Path, e: BaseException) -> OutputWriteError:
    """The one line for a write that failed: what, why, and that the previous file is kept."""
    blocker = _file_in_the_way(path.parent)
    if blocker is not None:
        reason = f"{blocker} is a file, not a directory"
    elif isinstance(e, OSError) and e.strerror:
        reason = e.strerror
    else:
        reason = first_line(e, limit=200)
        free = _free_bytes(path.parent)
        if free is not None and free < LOW_SPACE:  # torch's stream writer does not say why it failed
            reason = f"No space left on device ({free // 1024} KiB free; {reason})"
    kept = f"the previous {path.name} is kept" if path.is_file() else "nothing was written"
    err = OutputWriteError(f"cannot write {path}: {reason}; {kept}")
    err.errno = getattr(e, "errno", None) or (errno.ENOSPC if reason.startswith("No space") else None)
    return err


def _file_in_the_way(folder: Path) -> Path | None:
    """The first existing part of ``folder`` that is a file (so the folder cannot exist), if any."""
    for p in (folder, *folder.parents):
        if p.exists():
            return None if p.is_dir() else p
    return None


def _free_bytes(folder: Path) -> int | None:
    for p in (folder, *folder.parents):
        if p.is_dir():
            with contextlib.suppress(OSError):
                return shutil.disk_usage(p).free
            return None
    return None


def make_shareable(path: str) -> None:
    """Give a file the mode a normal write would (0666 minus the umask): ``mkstemp`` makes 0600, and
    outputs (checkpoints, exported models) are meant to be copied to other users and containers."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def atomic_torch_save(obj: Any, path: PathLike) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_write_text(path: PathLike, text: str) -> None:
    atomic_write(path, lambda tmp: _write_text(tmp, text))


FIGURE_SOFTWARE = "inceptionnet"  # a PNG figure's Software text chunk: how a rerun recognises its own


def atomic_save_figure(fig: Any, path: PathLike) -> None:
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    meta = {"Software": FIGURE_SOFTWARE} if fmt == "png" else None
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=110, metadata=meta))


def is_our_png(path: PathLike) -> bool:
    """A PNG figure this project wrote (``atomic_save_figure``: its Software chunk, before the pixels)."""
    with open(path, "rb") as f:
        head = f.read(4096)
    return head.startswith(b"\x89PNG") and b"tEXtSoftware\x00" + FIGURE_SOFTWARE.encode() in head


def _write_text(path: str, text: str) -> None:
    Path(path).write_text(text)


def json_text(obj: Any, indent: int | None = 2) -> str:
    """``json.dumps`` that always writes valid JSON: NaN and +-inf (which ``json.dumps`` writes as the
    invalid ``NaN`` / ``Infinity``) become ``null``."""
    return json.dumps(_finite(obj), indent=indent, allow_nan=False)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


# --------------------------------------------------------------------------------------------------
# Outputs that must not replace inputs


def same_file(a: PathLike, b: PathLike) -> bool:
    """Do ``a`` and ``b`` name the same file (links, ``..`` and hard links included)?"""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


# kinds that hold weights or training state: never replaced by another command's output, even with
# --overwrite (hours of compute; delete such a file yourself if you mean it)
PROTECTED_KINDS = ("checkpoint", "pickle", "safetensors")
_NODE_NAMES = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
)


def not_a_regular_file(path: PathLike) -> str | None:
    """What ``path`` is when it exists but is no regular file ("a character device", "a directory",
    ...; links followed), else None. Writing there would replace a node that is not a file (as root,
    renaming over /dev/null destroys it) or block forever (opening a FIFO)."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:  # a symlink loop, a folder we may not search: not a plain file either
        return f"unreachable ({e.strerror or first_line(e)})"
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _NODE_NAMES if test(mode)), "not a regular file")


def _never(_path: Path) -> bool:
    return False


def check_output_file(
    output: PathLike,
    flag: str,
    inputs: Mapping[str, PathLike | None] | Iterable[tuple[str, PathLike | None]],
    *,
    ours: Callable[[Path], bool] = _never,
    overwrite: bool | None = None,
    keep_ours: bool = False,
    what: str = "an exported model",
    example: str = "model.onnx",
) -> Path:
    """The one output rule, checked before any work (one ``UsageError`` line naming ``flag`` and the path):

    * never one of the command's inputs (``inputs``: flag -> path or None, or such pairs), even with
      ``--overwrite``;
    * a regular file or nothing: never a directory, device, FIFO or socket;
    * an existing, non-empty file is replaced only when ``ours(path)`` recognises it as this
      command's own output by its header or metadata (with ``keep_ours``, only with ``--overwrite``
      too), or with ``--overwrite`` (``overwrite``: the flag's value; None: the command has none),
      and never when it is a checkpoint, weights or a pickle (``PROTECTED_KINDS``).
    """
    out = check_output_path(output, flag, inputs, example)
    if out.is_file() and out.stat().st_size:
        _check_replace(out, flag, ours, overwrite, keep_ours, what)
    check_output_dir(out.parent, flag, create=False)
    return out


def check_output_path(
    output: PathLike,
    flag: str,
    inputs: Mapping[str, PathLike | None] | Iterable[tuple[str, PathLike | None]],
    example: str = "model.onnx",
) -> Path:
    """The part of ``check_output_file`` that needs nothing but the path (not empty, not an input, a
    regular file or nothing), for a command that must check it before it can tell the format."""
    out = Path(output)
    if not str(output).strip():
        raise UsageError(f"{flag} is empty; give an output file name, e.g. {example}")
    pairs = inputs.items() if isinstance(inputs, Mapping) else inputs
    for in_flag, p in pairs:
        if p and Path(p).is_file() and same_file(out, p):
            raise UsageError(
                f"{flag} {out} is the {in_flag} file itself: writing it would replace the input; "
                "choose another output file"
            )
    node = not_a_regular_file(out)
    if node == "a directory":
        hint = (
            "remove it or write elsewhere"
            if out.name == example
            else f"give a file name, e.g. {out / example}"
        )
        raise UsageError(f"{flag} {out} is a directory; {hint}")
    if node is not None:
        raise UsageError(
            f"{flag} {out} is {node}, not a regular file: refusing to write there; give a file name, e.g. {example}"
        )
    return out


def _check_replace(
    out: Path, flag: str, ours: Callable[[Path], bool], overwrite: bool | None, keep_ours: bool, what: str
) -> None:
    """May the existing regular file ``out`` be replaced (``check_output_file``'s rule)?"""
    if ours(out):
        if keep_ours and not overwrite:
            raise UsageError(f"{flag} {out} exists; pass --overwrite to replace it, or choose another file")
        return
    kind = file_kind(out)
    if overwrite and kind not in PROTECTED_KINDS:
        return
    name = KIND_NAMES.get(kind, kind) if kind else "a file of another kind"
    if kind in PROTECTED_KINDS:
        fix = " (not even with --overwrite); choose another output file or delete it first"
    elif overwrite is None:
        fix = "; choose another output file or delete it first"
    else:
        fix = "; pass --overwrite to replace it, or choose another output file"
    raise UsageError(f"{flag} {out} exists and is {name}, not {what}; refusing to replace it{fix}")


def check_output_dir(folder: PathLike, flag: str, *, create: bool = True) -> Path:
    """Make sure files can be written in ``folder`` before any work: it (or, with ``create=False``,
    its nearest existing parent) must be a writable directory; ``create`` makes it. One
    ``OutputWriteError`` naming ``flag`` and the path otherwise."""
    d = Path(folder)
    if not str(folder).strip():
        raise UsageError(f"{flag} is empty; give a directory")
    blocker = _file_in_the_way(d)
    if blocker is not None:
        raise OutputWriteError(f"{flag} {d}: {blocker} is a file, not a directory")
    try:
        if create:
            d.mkdir(parents=True, exist_ok=True)
        where = next(p for p in (d, *d.parents) if p.is_dir())
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=where)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputWriteError(f"{flag} {d} is not writable: {e.strerror or first_line(e)}") from None
    return d


# --------------------------------------------------------------------------------------------------
# Reading files safely

# What a file is, from its first bytes: kind -> how it is named in messages
KIND_NAMES = {
    "checkpoint": "a PyTorch checkpoint",
    "torchscript": "a TorchScript file (an exported model)",
    "onnx": "an ONNX file (an exported model)",
    "safetensors": "a safetensors file",
    "pickle": "a pickle",
    "zip": "a zip archive without data.pkl",
    "npz": "a NumPy .npz archive",
    "text": "a text file",
}
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (Keras / h5py)"),
    (b"\x93NUMPY", "a NumPy .npy array"),
    (b"\x7fELF", "an executable (ELF)"),
)


def file_kind(path: PathLike) -> str | None:
    """What ``path`` holds, from its first bytes: a key of ``KIND_NAMES``, the name of another format
    ("a PNG image"), or None when it cannot tell (random or damaged bytes: the reader decides)."""
    p = Path(path)
    with open(p, "rb") as f:
        head = f.read(4096)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return _zip_kind(p)
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if len(head) >= 9 and head[8:9] == b"{":
        n = int.from_bytes(head[:8], "little")
        if 2 <= n <= p.stat().st_size - 8:
            return "safetensors"
    # a ModelProto starts with its ir_version field (tag 0x08); a text file named notes.onnx is text
    if head[:1] == b"\x08" and (p.suffix == ".onnx" or b"pytorch" in head[:64] or b"onnx" in head[:256]):
        return "onnx"
    if head and b"\x00" not in head and not head.rstrip().endswith(b"."):  # a pickle ends with STOP "."
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as e:
            if e.start < len(head) - 4:  # not just a character cut at the end of the block
                return None
        return "text"
    return None


def _zip_kind(path: Path) -> str | None:
    names = zip_members(path)
    if not names:
        return None  # a damaged zip: torch.load says how
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        if any("/code/" in n or n.endswith("constants.pkl") for n in names):
            return "torchscript"
        return "checkpoint"
    if names and all(n.endswith(".npy") for n in names):
        return "npz"
    return "zip"


def npz_arrays(path: PathLike) -> set[str] | None:
    """The array names of an ``.npz`` file (from its zip directory, nothing loaded), else None."""
    if file_kind(path) != "npz":
        return None
    with zipfile.ZipFile(path) as z:
        return {n.removesuffix(".npy") for n in z.namelist()}


def zip_members(path: PathLike) -> list[str]:
    """The names in a zip file (a TorchScript file is one), or [] when it is none or is damaged."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return []


def is_safetensors(path: PathLike) -> bool:
    """A ``.safetensors`` file, or a file whose header is one whatever its name."""
    p = Path(path)
    return p.suffix == ".safetensors" or (p.is_file() and file_kind(p) == "safetensors")


def sha256_of(path: PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def input_file_kind(path: Path, what: str, if_empty: str) -> str | None:
    """What every file argument is checked for first, one line each: missing (``FileNotFoundError``),
    a directory, empty (``CheckpointError``, ``if_empty`` says what to do); then its ``file_kind``."""
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"{what} {path} is a directory, not a file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{what} {path} is empty (0 bytes); {if_empty}")
    return file_kind(path)


def load_file(path: PathLike) -> Any:
    """Load a checkpoint or state_dict file without running code from it.

    Raises ``FileNotFoundError`` or ``CheckpointError`` (one clear line) for missing, empty,
    truncated, foreign or unsafe files; a file of another kind (an image, an archive, an exported
    model, text) is named for what it is.
    """
    p = Path(path)
    kind = input_file_kind(p, "checkpoint", "the file was not written completely")
    if kind is not None and kind not in ("checkpoint", "pickle", "safetensors"):
        hint = {
            "onnx": "; run an exported ONNX file with 'inceptionnet predict --onnx FILE'",
            "torchscript": "; load it with torch.jit.load, or pass the checkpoint it was exported from",
        }.get(kind, "; pass the .pt or .safetensors file that training wrote")
        raise CheckpointError(
            f"cannot read checkpoint {p}: it is {KIND_NAMES.get(kind, kind)}, not a PyTorch checkpoint{hint}"
        )
    if p.suffix == ".safetensors" or kind == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file as st_load

        try:
            return st_load(str(p), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"cannot read safetensors file {p}: {first_line(e)}") from None
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        if _bad_opcode(msg):  # bytes that are no pickle opcode: damaged or random data, not code
            raise CheckpointError(
                f"cannot read checkpoint {p}: the file is damaged or not a PyTorch checkpoint "
                f"({_unsafe_detail(msg)})"
            ) from None
        if "Weights only load failed" in msg or "Unsupported global" in msg or "Unsupported operand" in msg:
            raise CheckpointError(
                f"refusing unsafe checkpoint {p}: it contains pickled code or objects that are not "
                f"tensors ({_unsafe_detail(msg)}); only load files from sources you trust, and "
                "prefer .safetensors"
            ) from None
        raise CheckpointError(
            f"cannot read checkpoint {p}: not a PyTorch checkpoint ({first_line(e)})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, IndexError) as e:
        raise CheckpointError(
            f"cannot read checkpoint {p}: the file is truncated or not a PyTorch checkpoint ({first_line(e)})"
        ) from None


def _unsafe_detail(msg: str) -> str:
    for ln in msg.splitlines():
        low = ln.lower()
        if "unsupported global" in low or "unsupported operand" in low:
            return ln.replace("WeightsUnpickler error:", "").strip()[:160]
    return "weights_only load refused it"


def _bad_opcode(msg: str) -> bool:
    """Does torch's refusal name a byte that is no pickle opcode at all (a damaged or random file)?
    Opcodes that exist but the safe unpickler does not run (e.g. INST, OBJ) stay 'unsafe'."""
    import pickletools

    m = re.search(r"Unsupported operand (\d+)", msg)
    if m is None:
        return False
    codes = {op.code.encode("latin-1")[0] for op in pickletools.opcodes}
    return int(m.group(1)) not in codes
