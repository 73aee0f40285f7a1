"""The one table of inference dtypes: what ``fp32`` / ``bf16`` / ``int8`` mean to each engine.

===========  ==========  ================  ================================  =========================
name         flag        torch             ONNX Runtime                      OpenVINO
===========  ==========  ================  ================================  =========================
float32      fp32        torch.float32     the verified fp32 graph           INFERENCE_PRECISION f32
bfloat16     bf16        torch.bfloat16    (not run)                         INFERENCE_PRECISION bf16
int8         int8        torch.qint8 (*)   static QDQ int8 (calibrated)      the QDQ graph, in int8 (*2)
===========  ==========  ================  ================================  =========================

(*) a label only: no PyTorch backend runs int8 here. (*2) ONNX Runtime's QDQ graph of the BN-folded
file, run by OpenVINO (the fast path and ``export --format openvino --int8``); NNCF only in bench's peer. ``name`` is the canonical form (``FastModel``,
bench's ``dtype`` column, ``Candidate.dtype``); ``flag`` is how flags, candidate names (``"eager-bf16"``)
and messages spell it. ``parse_dtype`` turns any accepted spelling into the canonical name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..errors import UsageError

__all__ = [
    "DTYPES",
    "DTYPE_NAMES",
    "DTYPE_TABLE",
    "FP32",
    "DType",
    "dtype_suffix",
    "parse_dtype",
    "short_name",
]

FP32 = "float32"


@dataclass(frozen=True)
class DType:
    """One inference dtype and what it means to each engine."""

    name: str  # canonical: "float32", "bfloat16", "int8"
    flag: str  # "fp32", "bf16", "int8": flags, candidate suffixes, messages
    torch: torch.dtype  # FastModel.dtype; the weights of the PyTorch backends
    openvino_hint: str | None  # OpenVINO's INFERENCE_PRECISION_HINT (None: the plugin's default)
    aliases: tuple[Any, ...] = ()  # other spellings parse_dtype accepts
    calibrated: bool = False  # needs calibration images (quantized: ORT QDQ, NNCF)
    needs_native: bool = False  # only where the CPU computes it natively (runtime.bf16_supported)
    bits: int = 32  # the precision ladder of prefer_low_precision: fewer bits first


DTYPE_TABLE: dict[str, DType] = {
    d.name: d
    for d in (
        DType("float32", "fp32", torch.float32, "f32", aliases=(torch.float32, "float")),
        DType("bfloat16", "bf16", torch.bfloat16, "bf16", aliases=(torch.bfloat16,), needs_native=True, bits=16),
        DType("int8", "int8", torch.qint8, None, aliases=(torch.qint8, "qint8"), calibrated=True, bits=8),
    )
}
DTYPE_NAMES = (*DTYPE_TABLE, "auto")
DTYPES = {d.flag: d.torch for d in DTYPE_TABLE.values()}  # the names a CLI offers -> torch dtypes
_ALIASES: dict[Any, str] = {"auto": "auto"}
for _d in DTYPE_TABLE.values():
    _ALIASES.update(dict.fromkeys((_d.name, _d.flag, *_d.aliases), _d.name))


def parse_dtype(dtype: torch.dtype | str) -> str:
    """ "float32", "bfloat16", "int8" or "auto" for any of the accepted spellings; UsageError otherwise."""
    key = dtype.lower() if isinstance(dtype, str) else dtype
    if key not in _ALIASES:
        raise UsageError(
            f"dtype must be torch.float32, torch.bfloat16, torch.qint8 or one of "
            f"fp32, bf16, int8, auto; got {dtype!r}"
        )
    return _ALIASES[key]


def short_name(dtype: str) -> str:
    """The flag spelling of a canonical name ("bfloat16" -> "bf16"); "auto" stays "auto"."""
    return DTYPE_TABLE[dtype].flag if dtype in DTYPE_TABLE else dtype


def dtype_suffix(dtype: str) -> str:
    """The candidate-name suffix: "" for fp32 (names stay "eager", "onnxruntime"), "-bf16", "-int8"."""
    return "" if dtype == FP32 else "-" + DTYPE_TABLE[dtype].flag
