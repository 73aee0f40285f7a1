"""What the training, inference and benchmark code share about the machine: mixed precision, bf16
support, denormals, progress bars, distributed sums, quiet third-party output, timing."""

from __future__ import annotations

import contextlib
import io
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch
import torch.distributed as dist

from .errors import UsageError


def progress_shown(enabled: bool = True) -> bool:
    """Whether a progress bar is drawn: ``enabled``, stderr a terminal, $INCEPTIONNET_NO_PROGRESS unset."""
    return enabled and sys.stderr.isatty() and not os.environ.get("INCEPTIONNET_NO_PROGRESS")


def progress(
    iterable: Iterable[Any], *, total: int | None = None, desc: str = "", enabled: bool = True
) -> Any:
    """A tqdm bar on a terminal; quiet (plain iteration) when not a TTY or when disabled."""
    if not progress_shown(enabled):
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)


def all_finite(x: torch.Tensor) -> bool:
    """``torch.isfinite(x).all()`` at the cost of one sum: a NaN or an infinity makes the sum
    non-finite, so a finite sum proves every element finite (a batch of 32 at 299 x 299: 0.3 ms
    against 21 ms for the element-wise check, which allocates a boolean copy); only a non-finite
    sum (a bad value, or finite values whose sum overflows) pays for the element-wise check."""
    if not x.is_floating_point() and not x.is_complex():
        return True
    acc = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else None  # fp16 sums overflow at 65504
    return bool(torch.isfinite(x.sum(dtype=acc))) or bool(torch.isfinite(x).all())


def autocast(device: torch.device, amp: str) -> AbstractContextManager[Any]:
    """The one mixed-precision path: torch.autocast in bf16 or fp16, or nothing."""
    if amp == "off":
        return nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum metrics over ranks (a no-op in one process)."""
    if not is_dist():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def bf16_supported(device: torch.device | str = "cpu") -> bool:
    """Whether bf16 matmuls/convs run natively (CUDA with bf16, or a CPU with AVX512-BF16/AMX)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    # oneDNN's own check says yes on any AVX-512 CPU, where bf16 is emulated and several times
    # slower than fp32; ask for the instructions themselves (torch.cpu reads cpuinfo)
    try:
        import torch.cpu as tcpu

        return bool(tcpu._is_avx512_bf16_supported() or tcpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        pass
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@contextmanager
def flush_denormal() -> Iterator[None]:
    """Flush denormal floats to zero on CPU, for inference only.

    Trained weights and BN statistics hold denormals that make CPU inference ~10x slower
    (googlenet_small on Fashion-MNIST: 112 -> 1226 img/s), but the same mode makes *training* ~4x
    slower on this machine (332 -> 77 img/s), so it is switched on around evaluation only.
    """
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


MIN_REPEAT_S = 0.1


def time_fn(
    fn: Callable[[], Any], warmup: int, repeats: int, min_repeat_s: float = MIN_REPEAT_S
) -> list[float]:
    """Seconds per call of ``fn`` in each of ``repeats`` repeats, after ``warmup`` untimed calls; a
    repeat runs ``fn`` as many times as needed to last about ``min_repeat_s``."""
    t0 = time.perf_counter()
    for _ in range(max(1, warmup)):
        fn()
    one = (time.perf_counter() - t0) / max(1, warmup)
    inner = max(1, math.ceil(min_repeat_s / max(one, 1e-9)))
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        out.append((time.perf_counter() - t) / inner)
    return out


def median_time(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    """Median seconds per call of ``fn`` over ``repeats`` single calls, after ``warmup`` untimed ones."""
    return statistics.median(time_fn(fn, warmup, max(1, repeats), min_repeat_s=0.0))


@contextlib.contextmanager
def quiet_output(enabled: bool = True) -> Iterator[None]:
    """Silence third-party warnings and prints (the exporters' TracerWarnings, deprecation notices,
    diagnostics): the CLI prints one line per step instead. ``--debug`` lets them through."""
    if not enabled:
        yield
        return
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        yield


DEVICE_HELP = "auto | cpu | cuda | cuda:N"


def resolve_device(spec: str, local_rank: int = 0, flag: str = "--device") -> torch.device:
    """``--device`` as a torch.device, or one clear UsageError naming the flag: ``auto`` is CUDA
    when there is one (``cuda:local_rank``), else the CPU; only cpu and cuda[:N] are supported
    (mps, meta, xla and the rest are not run or tested here)."""
    if spec == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(f"cuda:{local_rank}" if spec == "cuda" else spec)
    except (RuntimeError, TypeError, ValueError):
        raise UsageError(f"{flag} {spec!r} is not a device; use {DEVICE_HELP}") from None
    if dev.type not in ("cpu", "cuda"):
        raise UsageError(f"{flag} {spec} is not supported; use {DEVICE_HELP}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"{flag} {spec} but no CUDA device is available; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(
                f"{flag} {spec}: there are only {torch.cuda.device_count()} CUDA devices (cuda:0 .. "
                f"cuda:{torch.cuda.device_count() - 1})"
            )
    return dev
