"""One check of a fast or exported path against the eager model it replaces."""

from __future__ import annotations

from torch import Tensor

from ..errors import ExportError, InceptionNetError

ATOL = 1e-4  # fp32 paths: max abs diff <= ATOL + RTOL * max|reference|
RTOL = 1e-5


def max_abs_diff(a: Tensor, b: Tensor) -> float:
    return float((a.detach().float().cpu() - b.detach().float().cpu()).abs().max()) if a.numel() else 0.0


def tolerance(ref: Tensor, atol: float = ATOL, rtol: float = RTOL) -> float:
    return atol + rtol * (float(ref.detach().float().abs().max()) if ref.numel() else 0.0)


def check_shape(got: Tensor, ref: Tensor, what: str, error: type[InceptionNetError] = ExportError) -> None:
    if tuple(got.shape) != tuple(ref.shape):
        raise error(f"{what}: output shape {tuple(got.shape)} differs from eager {tuple(ref.shape)}")


def check_close(
    got: Tensor,
    ref: Tensor,
    what: str,
    *,
    atol: float = ATOL,
    rtol: float = RTOL,
    against: str = "eager PyTorch",
    error: type[InceptionNetError] = ExportError,
    note: str = "",
) -> tuple[float, float]:
    """(max abs diff, tolerance) of ``got`` vs ``ref``; ``error`` when the shapes differ or the diff
    exceeds ``atol + rtol * max|ref|`` (NaN included)."""
    check_shape(got, ref, what, error)
    diff, tol = max_abs_diff(got, ref), tolerance(ref, atol, rtol)
    if not diff <= tol:  # also catches NaN
        scale = float(ref.detach().float().abs().max()) if ref.numel() else 0.0
        raise error(
            f"{what}: max abs diff {diff:.3g} vs {against} exceeds the tolerance {tol:.3g} "
            f"(atol {atol:g} + rtol {rtol:g} x max|output| {scale:.3g}){note}"
        )
    return diff, tol
