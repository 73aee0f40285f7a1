"""Files in and out: atomic writes (a temp file in the same folder, fsync, rename: a crash never leaves
half a file) and safe reads (``torch.load(weights_only=True)`` or safetensors: a pickle that would run
code is refused)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import re
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError, InceptionNetError, OutputWriteError, first_line


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)``, fsync it, then rename over ``path``; on any error ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    make_shareable(tmp)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, InceptionNetError):
            kept = f"the previous {path.name} is kept" if path.exists() else "nothing was written"
            err = OutputWriteError(f"cannot write {path}: {e.strerror or first_line(e)}; {kept}")
            err.errno = e.errno
            raise err from e
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def make_shareable(path: str) -> None:
    """Give a file the mode a normal write would (0666 minus the umask): ``mkstemp`` makes 0600, and
    outputs (checkpoints, exported models) are meant to be copied to other users and containers."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write(path, lambda tmp: _write_text(tmp, text))


def atomic_save_figure(fig: Any, path: str | os.PathLike[str]) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=110))


def _write_text(path: str, text: str) -> None:
    Path(path).write_text(text)


# --------------------------------------------------------------------------------------------------
# Reading files safely


def _is_safetensors(path: Path) -> bool:
    return path.suffix == ".safetensors"


def sha256_of(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_file(path: str | os.PathLike[str]) -> Any:
    """Load a checkpoint or state_dict file without running code from it.

    Raises ``FileNotFoundError`` or ``CheckpointError`` (one clear line) for missing, empty,
    truncated, foreign or unsafe files.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"checkpoint {p} does not exist")
    if p.is_dir():
        raise CheckpointError(f"checkpoint {p} is a directory, not a file")
    if p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {p} is empty (0 bytes); the file was not written completely")
    if _is_safetensors(p):
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
