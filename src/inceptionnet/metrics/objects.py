"""Metric objects for training loops: ``FID``, ``KID``, ``InceptionScore``, ``PrecisionRecall``.

Each takes image tensors batch by batch (``update(images, real=...)``), gives the number with
``compute()`` and starts over with ``reset()``, as torchmetrics' image metrics do; under DDP
(``torch.distributed`` initialized) ``compute()`` gathers every rank's part, so it must be called on
every rank, and every rank gets the same number.

* Images: N x C x H x W (C 3, or 1 for grayscale), uint8 in [0, 255] or floats in [0, 1] (scaled by
  255, not quantized), any size; each brought to the FID network's input by ``resize`` (the three
  rules of ``--resize``, ``metrics.resize.preprocess``), run ``batch_size`` at a time.
* The network: the FID network opened as the folder path opens it (``scores.load_fid_model``,
  ``scores.fid_network``: the fast path by default), built on the first ``update`` and shared by every
  object with the same weights, backend and device. ``model=`` passes one (a module or a ready
  ``FIDNetwork``); ``feature=`` any module or callable instead, given the images as they are (no
  resize, no scaling) and returning N x D features, as torchmetrics' ``feature=`` module.
* A saved reference (``reference=`` a file of ``scores.save_reference`` / ``fid --save-stats``, or a
  ``Reference``; ``FID.from_reference(path)``): the real side comes from it, so only the generated
  images go through ``update``; FID needs its mu / sigma, KID and precision/recall its features. Its
  recorded FID network and resize rule must be this object's (checked at ``compute``).
* Numbers: the functions of ``scores`` (and ``prdc``) on the accumulated features: FID from float64
  sums (constant memory, as torchmetrics), KID, IS and precision/recall from the features themselves.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import NonFiniteError, UsageError, excerpt
from ..runtime import is_dist
from .resize import RESIZE_MODES, preprocess
from .scores import (
    BACKENDS,
    DIMS,
    FIDNetwork,
    Reference,
    check_image_count,
    check_same_rules,
    fid_network,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    load_fid_model,
    load_reference,
)

__all__ = ["FID", "KID", "InceptionScore", "PrecisionRecall"]

FeatureFn = Callable[[Tensor], Tensor]
M = TypeVar("M", bound="_ImageMetric")

# (weights file, backend, device) -> the FID network: one per configuration while any object holds it
_NETWORKS: weakref.WeakValueDictionary[tuple[Any, ...], FIDNetwork] = weakref.WeakValueDictionary()


def shared_network(
    weights: str | os.PathLike[str] | None, backend: str, device: str | torch.device
) -> FIDNetwork:
    """The FID network for these weights (None: the weight entry), backend and device, built once."""
    path = None if weights is None else os.path.realpath(weights)
    key = (path, backend, str(torch.device(device)))
    net = _NETWORKS.get(key)
    if net is None:
        net = fid_network(load_fid_model(weights, device), backend)
        _NETWORKS[key] = net
    return net


def image_batch(images: Any, what: str) -> Tensor:
    """``images`` checked and brought to N x 3 x H x W in 0-255: uint8 as it is, floats in [0, 1]
    times 255 in float32 (not rounded), one channel repeated (as ``read_image`` reads a gray file)."""
    shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] not in (1, 3):
        raise UsageError(
            f"{what}: images must be an N x 3 x H x W (or N x 1 x H x W) tensor, got {excerpt(shape)}"
        )
    if images.dtype == torch.uint8:
        x = images
    elif images.is_floating_point():
        lo, hi = (float(images.min()), float(images.max())) if images.numel() else (0.0, 0.0)
        if not (lo >= 0.0 and hi <= 1.0):  # also NaN
            raise UsageError(
                f"{what}: float images must be in [0, 1], got values in [{lo:.4g}, {hi:.4g}] (a generator's "
                "[-1, 1] output: pass (x + 1) / 2; or pass uint8 in [0, 255])"
            )
        x = images.float() * 255
    else:
        raise UsageError(
            f"{what}: images must be uint8 (0-255) or floats (0-1), got {excerpt(str(images.dtype))}"
        )
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def _comm_device() -> torch.device:
    import torch.distributed as dist

    # NCCL moves only CUDA tensors; gloo (and the rest) CPU ones
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _all_shapes(rows: int, width: int, what: str) -> list[tuple[int, int]]:
    """Every rank's (rows, width); the widths of ranks that have rows must agree."""
    import torch.distributed as dist

    mine = torch.tensor([rows, width], dtype=torch.int64, device=_comm_device())
    shapes = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(shapes, mine)
    out = [(int(s[0]), int(s[1])) for s in shapes]
    widths = {w for n, w in out if n}
    if len(widths) > 1:  # raised on every rank alike: none waits
        raise UsageError(f"{what}: the ranks have features of different widths {sorted(widths)}")
    return out


def gather_rows(x: Tensor, what: str) -> Tensor:
    """The N_r x D float64 tensors of all ranks, concatenated in rank order, on every rank (as it
    is outside DDP). Padded to the longest part: ``all_gather`` needs one shape."""
    if not is_dist():
        return x
    import torch.distributed as dist

    shapes = _all_shapes(x.shape[0], x.shape[1], what)
    rows, width = max(n for n, _ in shapes), max(w for _, w in shapes)
    dev = _comm_device()
    padded = torch.zeros(rows, width, dtype=torch.float64, device=dev)
    padded[: x.shape[0]] = x.to(dev)
    parts = [torch.empty_like(padded) for _ in shapes]
    dist.all_gather(parts, padded)
    return torch.cat([p[:n] for p, (n, _) in zip(parts, shapes)]).cpu()


def sum_over_ranks(count: int, total: Tensor, outer: Tensor, what: str) -> tuple[int, Tensor, Tensor]:
    """(n, sum of features, sum of their outer products) added over the ranks, in float64."""
    if not is_dist():
        return count, total, outer
    import torch.distributed as dist

    d = max(w for _, w in _all_shapes(count, total.shape[0], what))
    flat = torch.zeros(1 + d + d * d, dtype=torch.float64, device=_comm_device())
    if count:
        flat[0], flat[1 : 1 + d], flat[1 + d :] = count, total, outer.flatten()
    dist.all_reduce(flat)
    return int(flat[0].item()), flat[1 : 1 + d].cpu(), flat[1 + d :].reshape(d, d).cpu()


class _ImageMetric:
    """Images -> features (or logits) -> float64 rows, kept by ``_add``; the network built lazily."""

    name = "metric"
    logits = False  # IS: the 1008-way logits instead of the features

    def __init__(
        self,
        *,
        dims: int = 2048,
        resize: str = "pytorch-fid",
        weights: str | os.PathLike[str] | None = None,
        model: nn.Module | FIDNetwork | None = None,
        feature: FeatureFn | None = None,
        backend: str = "fast",
        device: str | torch.device = "cpu",
        batch_size: int = 50,
        reset_real_features: bool = True,
        sync: bool = True,
        reference: str | os.PathLike[str] | Reference | None = None,
    ) -> None:
        if sum(x is not None for x in (weights, model, feature)) > 1:
            raise UsageError(f"{self.name}: pass at most one of weights=, model= and feature=")
        if feature is None and dims not in DIMS:
            raise UsageError(f"{self.name}: dims={dims}: expected one of {', '.join(map(str, DIMS))}")
        if resize not in RESIZE_MODES:
            raise UsageError(f"{self.name}: resize={resize!r}: expected one of {', '.join(RESIZE_MODES)}")
        if backend not in BACKENDS:
            raise UsageError(f"{self.name}: backend={backend!r}: expected one of {', '.join(BACKENDS)}")
        if batch_size < 1:
            raise UsageError(f"{self.name}: batch_size must be at least 1, got {batch_size}")
        self.dims = 2048 if self.logits else dims
        self.resize, self.weights, self.backend = resize, weights, backend
        self.device, self.batch_size = torch.device(device), batch_size
        self.feature, self.reset_real_features, self.sync = feature, reset_real_features, sync
        self._model = model
        self._net: FIDNetwork | None = None
        self._clear(real=True)
        self._reference = self._open_reference(reference)

    @classmethod
    def from_reference(cls: type[M], reference: str | os.PathLike[str] | Reference, **kw: Any) -> M:
        """The metric against a saved reference (its real side): only ``update(images, real=False)``."""
        return cls(reference=reference, **kw)

    def _open_reference(self, reference: str | os.PathLike[str] | Reference | None) -> Reference | None:
        if reference is None:
            return None
        if isinstance(reference, Reference):
            ref = reference
        else:  # the FID network's width is known; a feature= module's is not
            ref = load_reference(reference, None if self.feature is not None else self.dims)
        if self.feature is not None and ref.network is not None:
            raise UsageError(
                f"{self.name}: {ref.source or 'the reference'} holds features of the FID network "
                f"{ref.network[:16]}, but this object's come from feature=: pass the same network instead"
            )
        return ref

    def _real_reference(self, width: int) -> Reference | None:
        """The reference, checked against this object's network, resize rule and feature width."""
        ref = self._reference
        if ref is None:
            return None
        if self.feature is None:
            check_same_rules([ref], self.network, self.resize)
        if ref.mu.shape[0] != width:
            raise UsageError(
                f"{self.name}: {ref.source or 'the reference'} holds {ref.mu.shape[0]}-d features, the "
                f"generated images give {width}-d ones: use a reference made with the same features"
            )
        return ref

    @property
    def network(self) -> FIDNetwork:
        """The FID network, built (or taken from another object with the same configuration) on first use."""
        if self._net is None:
            if self._model is not None:
                self._net = fid_network(self._model, self.backend)
            else:
                self._net = shared_network(self.weights, self.backend, self.device)
        return self._net

    @torch.no_grad()
    def features_of(self, images: Tensor) -> Tensor:
        """N x D float64 (CPU) features of a batch: the FID network's after ``resize``, or ``feature``'s."""
        if self.feature is not None:
            return self._module_features(images)
        x = image_batch(images, f"{self.name}.update")
        out = []
        for chunk in x.split(self.batch_size):
            # clean's PIL resize runs on the CPU; the other two rules wherever the images are
            inp = torch.stack(
                [preprocess(img.cpu() if self.resize == "clean" else img, self.resize) for img in chunk]
            )
            f, lg = self.network(inp.to(self.device), self.dims)
            t = lg if self.logits and lg is not None else f
            if not torch.isfinite(t).all():
                raise NonFiniteError(
                    f"{self.name}: the FID network gave non-finite features (damaged weights?)"
                )
            out.append(t.cpu().double())
        return (
            torch.cat(out) if out else torch.empty(0, 1008 if self.logits else self.dims, dtype=torch.float64)
        )

    def _module_features(self, images: Tensor) -> Tensor:
        assert self.feature is not None
        f = self.feature(images)
        if isinstance(f, Tensor) and f.dim() == 1:
            f = f[None]  # torchmetrics' rule: a 1-D output is one image's features
        if not isinstance(f, Tensor) or f.dim() != 2 or f.shape[0] != len(images):
            shape = tuple(f.shape) if isinstance(f, Tensor) else type(f).__name__
            raise UsageError(
                f"{self.name}: the feature= module gave {excerpt(shape)} for {len(images)} images; it must "
                "return an N x D tensor"
            )
        if not torch.isfinite(f).all():
            raise NonFiniteError(f"{self.name}: the feature= module gave NaN or infinite features")
        return f.detach().cpu().double()

    def update(self, images: Tensor, real: bool) -> None:
        """Add a batch of real (``real=True``) or generated images."""
        if real and self._reference is not None:
            raise UsageError(
                f"{self.name}.update: the real side is the reference {self._reference.source or ''}; "
                "pass generated images only (real=False)"
            )
        if isinstance(images, Tensor) and images.dim() >= 1 and images.shape[0] == 0:
            return  # an empty shard: nothing to add
        self._add(self.features_of(images), bool(real))

    def reset(self) -> None:
        """Forget the generated images, and the real ones unless ``reset_real_features=False`` (a
        fixed reference set, run through the network once)."""
        self._clear(real=self.reset_real_features)

    def _clear(self, real: bool) -> None:
        """Forget the generated images, and the real ones too when ``real``."""
        raise NotImplementedError

    def _add(self, f: Tensor, real: bool) -> None:
        raise NotImplementedError


class _KeepsFeatures(_ImageMetric):
    """Keeps every row (KID, IS and precision/recall need the features, not moments)."""

    def _clear(self, real: bool) -> None:
        if real:
            self._rows: dict[bool, list[Tensor]] = {True: []}
        self._rows[False] = []

    def _add(self, f: Tensor, real: bool) -> None:
        self._rows[real].append(f)

    def features(self, real: bool) -> np.ndarray:
        """The N x D float64 features of the real or generated images, of every rank in rank order
        (the real ones: the reference's, where one was given)."""
        if real and self._reference is not None:
            fake = self.features(False)
            ref = self._real_reference(fake.shape[1])
            assert ref is not None
            return ref.features_for(f"{self.name} against a reference")
        rows = self._rows[real]
        local = torch.cat(rows) if rows else torch.empty(0, 0, dtype=torch.float64)
        what = f"{self.name} ({'real' if real else 'generated'} images)"
        out = gather_rows(local, what) if self.sync else local
        if out.shape[0] == 0:
            raise UsageError(f"{what}: none yet; call update(images, real={real}) first")
        return out.numpy()


class FID(_ImageMetric):
    """FID (pytorch-fid's ``frechet_distance``) between the real and generated images seen since the
    last ``reset``; the moments from float64 sums over the images (and the ranks), so memory does not
    grow with the image count. ``compute()`` needs dims + 1 images of each kind (as ``fid``)."""

    name = "FID"

    def _clear(self, real: bool) -> None:
        empty = (0, torch.zeros(0, dtype=torch.float64), torch.zeros(0, 0, dtype=torch.float64))
        if real:
            self._sums: dict[bool, tuple[int, Tensor, Tensor]] = {True: empty}
        self._sums[False] = empty

    def _add(self, f: Tensor, real: bool) -> None:
        n, total, outer = self._sums[real]
        if n == 0:
            total, outer = f.new_zeros(f.shape[1]), f.new_zeros(f.shape[1], f.shape[1])
        if f.shape[1] != total.shape[0]:
            raise UsageError(f"FID.update: features of width {f.shape[1]}, earlier ones {total.shape[0]}")
        self._sums[real] = (n + f.shape[0], total + f.sum(0), outer + f.T @ f)

    def stats(self, real: bool) -> tuple[np.ndarray, np.ndarray]:
        """(mu, sigma) of the real or generated images (every rank's), float64, sigma with ddof 1."""
        if real and self._reference is not None:
            ref = self._real_reference(self.stats(False)[0].shape[0])
            assert ref is not None
            if ref.count is not None:
                check_image_count(ref.count, ref.mu.shape[0], ref.source)
            return ref.mu, ref.sigma
        what = f"FID ({'real' if real else 'generated'} images)"
        n, total, outer = sum_over_ranks(*self._sums[real], what) if self.sync else self._sums[real]
        if n == 0:
            raise UsageError(f"{what}: none yet; call update(images, real={real}) first")
        check_image_count(n, total.shape[0], what)
        mu = total / n
        sigma = (outer - n * torch.outer(mu, mu)) / (n - 1)
        return mu.numpy(), ((sigma + sigma.T) / 2).numpy()

    def compute(self) -> float:
        return frechet_distance(*self.stats(True), *self.stats(False))


class KID(_KeepsFeatures):
    """KID as torch-fidelity (``kernel_inception_distance``): (mean, std) over ``subsets`` random
    subsets of ``subset_size`` images of each kind."""

    name = "KID"

    def __init__(self, *, subsets: int = 100, subset_size: int = 1000, **kw: Any) -> None:
        super().__init__(**kw)
        self.subsets, self.subset_size = subsets, subset_size

    def compute(self) -> tuple[float, float]:
        return kernel_inception_distance(
            self.features(True), self.features(False), subsets=self.subsets, subset_size=self.subset_size
        )


class InceptionScore(_KeepsFeatures):
    """The Inception Score of the generated images as torch-fidelity (``inception_score``: the
    unbiased 1008-way logits, ``splits`` splits): (mean, std). Real images (``real=True``) are not
    scored and not run through the network; ``feature=`` must return the logits."""

    name = "InceptionScore"
    logits = True

    def __init__(self, *, splits: int = 10, **kw: Any) -> None:
        if kw.get("reference") is not None:
            raise UsageError("InceptionScore scores the generated images alone: it takes no reference=")
        super().__init__(**kw)
        self.splits = splits

    def update(self, images: Tensor, real: bool = False) -> None:
        if not real:
            super().update(images, False)

    def compute(self) -> tuple[float, float]:
        return inception_score(self.features(False), self.splits)


class PrecisionRecall(_KeepsFeatures):
    """Precision and recall (Kynkäänniemi et al. 2019; ``prdc.precision_recall``, k-NN manifolds
    with ``k`` neighbours, on ``device``) of the generated images against the real ones:
    (precision, recall); ``density_coverage()`` on the same features."""

    name = "PrecisionRecall"

    def __init__(self, *, k: int = 3, **kw: Any) -> None:
        super().__init__(**kw)
        self.k = k

    def compute(self) -> tuple[float, float]:
        from .prdc import precision_recall  # the k-NN code lives beside its CLI use

        p, r = precision_recall(self.features(True), self.features(False), k=self.k, device=self.device)
        return float(p), float(r)

    def density_coverage(self, k: int = 5) -> tuple[float, float]:
        """(density, coverage) (Naeem et al. 2020; ``prdc.density_coverage``) on the same features."""
        from .prdc import density_coverage

        d, c = density_coverage(self.features(True), self.features(False), k=k, device=self.device)
        return float(d), float(c)
