"""The run directory is owned: a run that is there is continued (``--resume``), replaced (``--overwrite``)
or refused, and a lock file keeps a second process out while one trains into it.

``claim_run_dir`` does it all before any training work, on rank 0 (the rank that writes the directory):
create the directory (a file in the way, a read-only place: one error line), take ``.lock`` (created with
O_EXCL, holding the pid, host and the process's start time), check ownership. The lock is released on any
exit of the ``with`` block: normal, error, SIGINT (KeyboardInterrupt) and SIGTERM (SystemExit 143 outside
the epochs, where ``GracefulStop`` handles it). A lock whose process is gone (SIGKILL, power loss) is stale
and taken over with a note; one of another host is never taken over (its process cannot be checked).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import OutputWriteError, UsageError

LOCK = ".lock"
RUN_FILES = ("checkpoint.pt", "best.pt", "args.yaml", "metrics.csv", "results.json")  # "a run is here"
END_FILES = (
    "results.json",
    "confusion.png",
    "best.safetensors",
)  # written at the end: removed by --overwrite
FRESH_LOCK_S = 10.0  # an unreadable lock younger than this is being written by its process


@contextlib.contextmanager
def claim_run_dir(out: Path, *, resume: bool, overwrite: bool) -> Iterator[Path]:
    """``out`` created, locked and owned by this process for the ``with`` block; yields the lock's path."""
    created = make_run_dir(out)
    lock: Path | None = None
    old_term = install_sigterm()
    try:
        lock = acquire_lock(out)
        check_owner(out, resume=resume, overwrite=overwrite)
        yield lock
    finally:
        restore_sigterm(old_term)
        if lock is not None:
            release_lock(lock)
        for d in created:  # what this process created and nothing was written to
            with contextlib.suppress(OSError):
                d.rmdir()


def make_run_dir(out: Path) -> list[Path]:
    """Create ``out`` (and its missing parents); returns the directories created, deepest first."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--output-dir {out} is a file, not a directory; give a directory path")
    missing, p = [], out
    while not p.exists() and not p.is_symlink():
        missing.append(p)
        p = p.parent
    if not p.is_dir():
        raise UsageError(f"cannot create --output-dir {out}: {p} is a file, not a directory")
    for i, d in enumerate(reversed(missing)):
        try:
            d.mkdir(exist_ok=True)
        except OSError as e:
            for made in missing[len(missing) - i :]:
                with contextlib.suppress(OSError):
                    made.rmdir()
            raise OutputWriteError(
                f"cannot create --output-dir {out}: {e.strerror or e} ({d}); choose another --output-dir"
            ) from None
    return missing


def check_owner(out: Path, *, resume: bool, overwrite: bool) -> None:
    """A directory holding another run is refused without --resume or --overwrite."""
    found = [n for n in RUN_FILES if (out / n).exists()]
    if not found or resume:
        return
    if not overwrite:
        raise UsageError(
            f"--output-dir {out} already holds a run ({', '.join(found)}); continue it with --resume auto, "
            "train into a fresh --output-dir, or replace it with --overwrite"
        )
    drop_end_files(out)
    print(f"note: --overwrite: replacing the run in {out}", file=sys.stderr)


def drop_end_files(out: Path) -> None:
    """The files that describe a run's end, removed when it goes on (or is replaced): written again at
    its new end, they never describe a best.pt that has changed since."""
    for name in END_FILES:
        (out / name).unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------------
# The lock


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the name (state first, start time 20th); None where unreadable."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def lock_text() -> str:
    """What this process writes into its lock: pid, host and start time (which tells a reused pid apart)."""
    fields = proc_stat(os.getpid())
    return f"{os.getpid()} {socket.gethostname()} {fields[19] if fields else '-'}\n"


def holder_alive(pid: int, start: str) -> bool:
    """Whether the process ``pid`` that started at ``start`` ("-": unknown) is still running here."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except (OSError, OverflowError):
        return False
    fields = proc_stat(pid)
    if fields is None:  # no /proc: the pid exists
        return True
    if fields[0] in ("Z", "X"):  # exited, not yet reaped
        return False
    return start in ("-", fields[19])


def acquire_lock(out: Path) -> Path:
    """``out/.lock`` for this process (O_EXCL), taking over a stale one; a live holder is an error."""
    path = out / LOCK
    for _ in range(5):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            take_over_if_stale(path, out)
            continue
        except OSError as e:
            raise OutputWriteError(
                f"--output-dir {out} is not writable ({e.strerror or e}); choose another --output-dir"
            ) from None
        with os.fdopen(fd, "w") as f:
            f.write(lock_text())
        return path
    raise UsageError(
        f"--output-dir {out}: other processes keep taking {path}; train into another --output-dir"
    )


def take_over_if_stale(path: Path, out: Path) -> None:
    """Remove ``path`` if the process that holds it is gone; raise if it is alive (or cannot be checked)."""
    try:
        text, age = path.read_text(), time.time() - path.stat().st_mtime
    except FileNotFoundError:  # released meanwhile
        return
    except OSError as e:
        raise OutputWriteError(f"cannot read the lock {path}: {e.strerror or e}") from None
    parts = text.split()
    pid = int(parts[0]) if len(parts) == 3 and parts[0].isdigit() else None
    if pid is None and age < FRESH_LOCK_S:
        raise UsageError(f"--output-dir {out} is being claimed by another process ({path}); try again, "
                         "or train into another --output-dir")  # fmt: skip
    if pid is not None and parts[1] != socket.gethostname():
        raise UsageError(f"--output-dir {out} is in use by process {pid} on host {parts[1]} ({path}); "
                         f"if that run is over, delete {path}")  # fmt: skip
    if pid is not None and holder_alive(pid, parts[2]):
        raise UsageError(f"--output-dir {out} is in use by another training process (pid {pid}, lock {path}); "
                         "wait for it to finish or train into another --output-dir")  # fmt: skip
    who = (
        f"process {pid}, which is no longer running"
        if pid is not None
        else "a process that never finished it"
    )
    grave = path.with_name(f"{LOCK}.stale.{os.getpid()}")
    try:
        os.replace(path, grave)  # atomic: of two processes taking over, one gets the stale lock
    except FileNotFoundError:
        return
    except OSError as e:
        raise OutputWriteError(
            f"--output-dir {out} is not writable ({e.strerror or e}); cannot take over {path}"
        ) from None
    if grave.read_text() != text:  # a fresh lock taken meanwhile: give it back
        with contextlib.suppress(OSError):
            os.link(grave, path)
    else:
        print(f"note: taking over the stale lock {path} left by {who}", file=sys.stderr)
    grave.unlink(missing_ok=True)


def release_lock(path: Path) -> None:
    """Remove ``path`` if it is still this process's lock."""
    with contextlib.suppress(OSError):
        if path.read_text() == lock_text():
            path.unlink()


# --------------------------------------------------------------------------------------------------
# SIGTERM outside the epochs


def on_sigterm(signum: int, frame: Any) -> None:
    print(f"error: stopped by {signal.Signals(signum).name}", file=sys.stderr)
    raise SystemExit(128 + signum)


def install_sigterm() -> Any:
    """SIGTERM raises SystemExit (so the lock is released); returns the old handler (None: not installed)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, on_sigterm)


def restore_sigterm(old: Any) -> None:
    if old is not None:
        signal.signal(signal.SIGTERM, old)
