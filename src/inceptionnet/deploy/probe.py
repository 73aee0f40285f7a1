"""What this CPU can do at all: its model name and SIMD flags, and the instruction ceilings measured by
``fma_peak.c`` (package data beside this file), which ``inceptionnet bench`` reports.

``fma_peak(threads)`` compiles ``fma_peak.c`` on first use (``gcc`` or ``cc``, ``-O3 -march=native
-fopenmp``) into the user cache (``$XDG_CACHE_HOME/inceptionnet/fma_peak``, else ``~/.cache/...``; one
binary per source, compiler and CPU, so a shared home folder never runs another CPU's build) and runs it.
When it cannot (no compiler, a CPU without AVX-512, a failed run) it returns the reason instead, in one
line, for the caller to print.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["CPU_FLAGS", "cpu_info", "fma_peak"]

CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8", "amx_tile")
SOURCE = "fma_peak.c"
TIMEOUT_S = 120


def _cpuinfo() -> tuple[str, list[str]]:
    """(model name, every flag) from /proc/cpuinfo; (platform's name, []) where there is none."""
    name, flags = platform.processor() or platform.machine(), []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = value.split()
                break
    except OSError:
        pass
    return name, flags


def cpu_info() -> dict[str, Any]:
    """The CPU's model name and which of the SIMD / matrix features that int8 and bf16 use it has."""
    name, flags = _cpuinfo()
    return {"model": name, "flags": [f for f in CPU_FLAGS if f in flags]}


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "inceptionnet" / "fma_peak"


def _compile(cc: str, source: bytes) -> Path:
    """The probe binary for this source, compiler and CPU: from the cache, else compiled into it (a
    temporary folder when the cache cannot be written). RuntimeError with the compiler's first error."""
    key = hashlib.sha256(source + cc.encode() + repr(_cpuinfo()).encode()).hexdigest()[:16]
    exe = _cache_dir() / f"fma_peak-{key}"
    if exe.is_file():
        return exe
    try:
        exe.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=exe.parent))
    except OSError:
        work = Path(tempfile.mkdtemp(prefix="inceptionnet-fma-"))
        exe = work / "fma_peak"
    src, out = work / SOURCE, work / "fma_peak.tmp"
    src.write_bytes(source)
    run = subprocess.run([cc, "-O3", "-march=native", "-fopenmp", str(src), "-o", str(out)],
                         capture_output=True, text=True, timeout=TIMEOUT_S)  # fmt: skip
    if run.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        errors = [ln for ln in run.stderr.splitlines() if "error" in ln] or run.stderr.splitlines() or ["?"]
        raise RuntimeError(f"{Path(cc).name} could not compile {SOURCE} for this CPU (it needs AVX-512 and OpenMP): "
                           f"{errors[0].strip()[:200]}")  # fmt: skip
    os.replace(out, exe)  # atomic: another process compiling the same key gets the same binary
    if work != exe.parent:
        shutil.rmtree(work, ignore_errors=True)
    return exe


def fma_peak(threads: int) -> tuple[dict[str, float] | None, str]:
    """(``{"threads", "fp32_fma_gflops", "bf16_dot_gflops", "int8_vnni_gops"}``, "") measured on
    ``threads`` threads, or (None, why it is unavailable)."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        return None, "no C compiler (gcc or cc) on PATH to build fma_peak.c"
    try:
        source = resources.files("inceptionnet.deploy").joinpath(SOURCE).read_bytes()
    except OSError as e:
        return None, f"{SOURCE} is missing from the installed package ({e})"
    try:
        exe = _compile(cc, source)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        out = subprocess.run(
            [str(exe)], check=True, capture_output=True, text=True, timeout=TIMEOUT_S, env=env
        )
        return {k: float(v) for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}, ""
    except RuntimeError as e:
        return None, str(e)
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as e:
        return None, f"fma_peak did not run: {str(e).strip()[:200] or type(e).__name__}"
