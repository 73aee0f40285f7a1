"""Precision / recall (Kynkäänniemi et al. 2019, as torch-fidelity's ``prc`` computes them) and
density / coverage (Naeem et al. 2020, as the ``prdc`` package computes them) on feature arrays.

Each real (or fake) sample gets a ball whose radius is the distance to its k-th nearest neighbour
in its own set (the sample itself excluded: the (k + 1)-th smallest distance of its row, itself
being the first). Then, with D[i, j] the distance of fake i to real j:

* precision = the share of fake samples inside some real ball (D[i, j] <= r_real[j]);
* recall = the share of real samples inside some fake ball (D[i, j] <= r_fake[i]);
* density = (1 / k) x the mean over fake samples of how many real balls hold it (strictly: <);
* coverage = the share of real samples whose nearest fake sample is inside its ball (strictly: <).

(torch-fidelity compares with ``<=``, ``prdc`` with ``<``: each is kept; they differ only on exact
ties.) Distances in float64, computed in row blocks of ``block_rows`` rows: only a block x N matrix
is ever held (default: BLOCK_ELEMENTS distances, 128 MB), so 50,000 x 50,000 distances never need
the 20 GB of the whole matrix. Each block is ||x||^2 + ||y||^2 - 2 x.y (as ``torch.cdist`` computes
it for large inputs) with the norms of y computed once, where ``torch.cdist`` would copy all of y
(N x (D + 2)) for every block.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import NonFiniteError, UsageError, excerpt

__all__ = ["density_coverage", "knn_radii", "precision_recall"]

Device = str | torch.device

# Distances held at once (per block): 2^24 float64 = 128 MB; the block's rows = this / N.
BLOCK_ELEMENTS = 1 << 24


def _features(x: Any, what: str, device: Device = "cpu") -> Tensor:
    """``x`` (numpy array or tensor) as an N x D float64 tensor on ``device``, checked."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x.detach())
    if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise UsageError(f"{what} features must be an N x D array, got shape {excerpt(tuple(t.shape))}")
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64, torch.uint8)):
        raise UsageError(f"{what} features must be numbers, got {excerpt(str(t.dtype))}")
    t = t.to(device, torch.float64)
    if not torch.isfinite(t).all():
        raise NonFiniteError(f"{what} features hold NaN or infinity")
    return t


def _pair(real: Any, fake: Any, k: int, device: Device) -> tuple[Tensor, Tensor]:
    r, f = _features(real, "real", device), _features(fake, "fake", device)
    if r.shape[1] != f.shape[1]:
        raise UsageError(f"real and fake features of different widths: {r.shape[1]} and {f.shape[1]}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise UsageError(f"k (the neighbourhood size) must be a positive integer, got {excerpt(k)}")
    for what, t in (("real", r), ("fake", f)):
        if t.shape[0] < k + 1:
            raise UsageError(
                f"{what}: {t.shape[0]} samples; k = {k} nearest neighbours need at least {k + 1}"
            )
    return r, f


def _blocks(x: Tensor, y: Tensor, block_rows: int | None) -> Iterator[tuple[slice, Tensor]]:
    """(rows, Euclidean distances of x[rows] to every row of y) for consecutive row blocks of x."""
    if block_rows is not None and (isinstance(block_rows, bool) or block_rows < 1):
        raise UsageError(f"block_rows must be a positive integer, got {excerpt(block_rows)}")
    step = block_rows or max(1, BLOCK_ELEMENTS // y.shape[0])
    x_sq, y_sq = x.square().sum(dim=1), y.square().sum(dim=1)
    for start in range(0, x.shape[0], step):
        rows = slice(start, min(start + step, x.shape[0]))
        d = x[rows] @ y.T  # in place from here on: one block x N matrix
        d.mul_(-2).add_(x_sq[rows, None]).add_(y_sq[None, :]).clamp_(min=0).sqrt_()
        yield rows, d


def knn_radii(x: Any, k: int, *, block_rows: int | None = None, device: Device = "cpu") -> Tensor:
    """Distance of each row of ``x`` to its k-th nearest other row (the (k + 1)-th smallest distance of
    its row, itself the first), float64, block by block: torch-fidelity's and prdc's radii."""
    t = _features(x, "the", device)
    if t.shape[0] < k + 1:
        raise UsageError(f"{t.shape[0]} samples; k = {k} nearest neighbours need at least {k + 1}")
    out = torch.empty(t.shape[0], dtype=torch.float64, device=t.device)
    for rows, d in _blocks(t, t, block_rows):
        out[rows] = d.kthvalue(k + 1, dim=1).values
    return out


def _share_inside(x: Tensor, y: Tensor, radii_y: Tensor, block_rows: int | None) -> float:
    """The share of rows of x within radii_y[j] (<=) of some row j of y."""
    hits = 0
    for _, d in _blocks(x, y, block_rows):
        hits += int((d <= radii_y).any(dim=1).sum())
    return hits / x.shape[0]


def precision_recall(
    real: Any, fake: Any, k: int = 3, *, block_rows: int | None = None, device: Device = "cpu"
) -> tuple[float, float]:
    """(precision, recall) of ``fake`` against ``real`` features (N x D arrays or tensors), as
    torch-fidelity's ``prc`` (``prc_neighborhood`` = k, default 3; its input1 = fake, input2 = real);
    computed on ``device``."""
    r, f = _pair(real, fake, k, device)
    radii_real = knn_radii(r, k, block_rows=block_rows, device=device)
    radii_fake = knn_radii(f, k, block_rows=block_rows, device=device)
    return (
        _share_inside(f, r, radii_real, block_rows),
        _share_inside(r, f, radii_fake, block_rows),
    )


def density_coverage(
    real: Any, fake: Any, k: int = 5, *, block_rows: int | None = None, device: Device = "cpu"
) -> tuple[float, float]:
    """(density, coverage) of ``fake`` against ``real`` features, as ``prdc.compute_prdc(real, fake,
    nearest_k=k)`` (k = 5 in its README). Density may exceed 1 (fakes packed where reals are dense)."""
    r, f = _pair(real, fake, k, device)
    radii = knn_radii(r, k, block_rows=block_rows, device=device)
    counts = torch.zeros(f.shape[0], dtype=torch.float64, device=r.device)
    covered = 0
    for rows, d in _blocks(r, f, block_rows):  # d[i, j]: real i of this block to fake j
        inside = d < radii[rows, None]
        counts += inside.sum(dim=0)
        covered += int((d.min(dim=1).values < radii[rows]).sum())
    return float(counts.mean()) / k, covered / r.shape[0]
