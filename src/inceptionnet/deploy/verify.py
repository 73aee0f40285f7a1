"""One check of a fast or exported path against the eager model it replaces."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..errors import ExportError, InceptionNetError, UsageError

ATOL = 1e-4  # fp32 paths: max abs diff <= ATOL + RTOL * max|reference|
RTOL = 1e-5
# A top-1 agreement is claimed on at least this many images: on 2, one disagreement is 50 % and none
# is "1.0000"; on 16 a 99 % bar means all 16 agree, which a path that truly agrees on 90 % of images
# passes 0.9^16 = 19 % of the time (on 256, the default calibration count, it never does).
MIN_AGREEMENT_IMAGES = 16
MIN_INT8_AGREEMENT = 0.99  # an int8 file is written only at this top-1 agreement with eager fp32


def max_abs_diff(a: Tensor, b: Tensor) -> float:
    return float((a.detach().float().cpu() - b.detach().float().cpu()).abs().max()) if a.numel() else 0.0


def tolerance(ref: Tensor, atol: float = ATOL, rtol: float = RTOL) -> float:
    return atol + rtol * (float(ref.detach().float().abs().max()) if ref.numel() else 0.0)


def check_agreement_count(
    n: int, what: str, fix: str = "use more images", error: type[InceptionNetError] = UsageError
) -> None:
    """``error`` when ``n`` images are too few to claim a top-1 agreement (``MIN_AGREEMENT_IMAGES``)."""
    if n < MIN_AGREEMENT_IMAGES:
        raise error(
            f"{what}: {n} images are too few to claim a top-1 agreement (at least {MIN_AGREEMENT_IMAGES}); {fix}"
        )


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


def top1_agreement(got: Tensor, ref: Tensor) -> float:
    """Fraction of rows whose argmax matches (NaN when there is nothing to compare)."""
    if got.dim() != 2 or got.shape[0] == 0 or got.shape[1] == 0:
        return float("nan")
    return float((got.float().argmax(1) == ref.float().argmax(1)).float().mean())


def check_int8_agreement(
    run: Callable[[Tensor], Tensor], images: Tensor, reference: nn.Module, what: str, batch: int = 32
) -> float:
    """Top-1 agreement of ``run`` with ``reference`` on ``images``; ExportError below the minimum."""
    check_agreement_count(len(images), what, "give more calibration images (--calibration-size)", ExportError)
    with torch.no_grad():
        got = torch.cat([run(b) for b in images.split(batch)])
        ref = torch.cat([reference(b) for b in images.split(batch)])
    agree = top1_agreement(got, ref)
    if not agree >= MIN_INT8_AGREEMENT:
        raise ExportError(
            f"{what}: top-1 agreement with eager fp32 {agree:.4f} < {MIN_INT8_AGREEMENT} on {len(images)} "
            "calibration images; the file was not written (try more --calibration-size images or fp32)"
        )
    return agree
