"""FID, Inception Score and KID with the FID network (``fid_inception_v3``), as pytorch-fid and
torch-fidelity compute them.

* Features: images read as RGB (``data.read_image``), each brought to 299x299 in [-1, 1] by one of
  three tools' rules (``--resize``: ``metrics.resize``); the 2048-d pool3 features (or the 768 / 192
  / 64-d taps, globally averaged, as pytorch-fid's blocks 2 / 1 / 0) and the 1008-way logits.
  Folders are read in batches (never all images in memory); under ``torchrun`` each rank reads its
  part of the sorted file list and the features are gathered in file order.
* Backends: ``fast`` (BN folded, parallel 1x1 convs merged, channels_last, denormals flushed:
  ``deploy.fold.optimize_module``; checked against eager when built) or ``eager``.
* FID: float64 mean and covariance (``np.cov``, ddof 1), ``scipy.linalg.sqrtm`` exactly as
  pytorch-fid's ``calculate_frechet_distance``; statistics that are not covariances refused first
  (``check_covariance``: symmetric within ``SYM_RTOL``, eigenvalues >= -``PSD_RTOL`` x trace), a
  result within ``FID_CLAMP_RTOL`` x (Tr S1 + Tr S2) below 0 reported as 0.0. ``.npz`` statistics
  are checked from their headers before any array is read (``load_stats``).
* IS and KID: torch-fidelity's definitions (``inception_score``, ``kernel_inception_distance``);
  non-finite inputs refused, a result that is not finite an error (``NonFiniteError``), never NaN.
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import data as D
from ..errors import (
    CheckpointError,
    DataNotFoundError,
    FastInferenceError,
    ImageReadError,
    InceptionNetError,
    NonFiniteError,
    UsageError,
    excerpt,
    first_line,
)
from ..pipeline import Batch, ImageFiles, auto_workers, loader
from ..runtime import flush_denormal, is_dist, progress
from .resize import RESIZE_MODES, SIZE, preprocess

__all__ = [
    "BACKENDS",
    "DIMS",
    "RESIZE_MODES",
    "FIDNetwork",
    "Features",
    "RankDeficientWarning",
    "Reference",
    "check_covariance",
    "check_image_count",
    "check_same_rules",
    "fid",
    "fid_network",
    "folder_features",
    "frechet_distance",
    "image_files",
    "trace_sqrt_product",
    "inception_score",
    "kernel_inception_distance",
    "is_reference_file",
    "load_fid_model",
    "load_reference",
    "load_stats",
    "reference_count",
    "reference_fid",
    "save_reference",
    "save_stats",
    "source_reference",
    "source_stats",
    "stats_of",
]

DIMS = (64, 192, 768, 2048)
BACKENDS = ("fast", "eager")
# pytorch-fid's IMAGE_EXTENSIONS (it globs '*.ext' in the folder, not recursively)
IMAGE_EXTENSIONS = ("bmp", "jpg", "jpeg", "pgm", "png", "ppm", "tif", "tiff", "webp")
FID_WEIGHTS = "tf_2015_12_05"


@dataclass
class Features:
    """Per-image features (N x dims, float64) and the 1008-way unbiased logits (N x 1008, float64; with
    dims 2048 only) of a folder; ``files`` in that order, ``skipped`` the unreadable files left out."""

    features: np.ndarray
    logits: np.ndarray
    files: list[str]
    skipped: list[str] = field(default_factory=list)


def load_fid_model(
    weights: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu"
) -> nn.Module:
    """The FID network in eval mode: ``weights`` a state_dict file key-for-key pytorch-fid's (e.g.
    ``pt_inception-2015-12-05-6726825d.pth``; torch-fidelity's ``weights-inception-2015-12-05`` file has
    the same keys), or None for the weight entry (downloaded, sha256-checked). Opened as every model
    is: ``checkpoint.open_model(ModelSource.model("fid_inception_v3", weights, num_classes=1008))``."""
    from ..checkpoint import ModelSource, open_model

    src = FID_WEIGHTS if weights is None else str(weights)
    try:
        # NaN weights: reported as NaN features, as before (allow_nan)
        model, *_ = open_model(
            ModelSource.model("fid_inception_v3", src, num_classes=1008), device, allow_nan=True
        )
    except CheckpointError as e:
        if weights is None:
            raise
        raise CheckpointError(
            f"{src} is not the FID network's weights (pytorch-fid's pt_inception-2015-12-05 layout): {e}"
        ) from None
    return model


@torch.no_grad()
def _taps(model: Any, x: Tensor, dims: int) -> tuple[Tensor, Tensor | None]:
    """The ``dims`` features (globally averaged) and, for 2048, the logits without the fc bias
    (torch-fidelity's ``logits_unbiased``, what its Inception Score uses)."""
    m = model
    x = m.maxpool1(m.Conv2d_2b_3x3(m.Conv2d_2a_3x3(m.Conv2d_1a_3x3(x))))
    if dims == 64:
        return x.mean((2, 3)), None
    x = m.maxpool2(m.Conv2d_4a_3x3(m.Conv2d_3b_1x1(x)))
    if dims == 192:
        return x.mean((2, 3)), None
    x = m.Mixed_6a(m.Mixed_5d(m.Mixed_5c(m.Mixed_5b(x))))
    x = m.Mixed_6e(m.Mixed_6d(m.Mixed_6c(m.Mixed_6b(x))))
    if dims == 768:
        return x.mean((2, 3)), None
    x = m.Mixed_7c(m.Mixed_7b(m.Mixed_7a(x)))
    pool = F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
    return pool, pool @ m.fc.weight.T


class FIDNetwork:
    """The FID network ready to run: ``eager`` (the model as it is) or ``fast`` (a copy with BN folded,
    the parallel 1x1 convs merged and channels_last, run with denormals flushed). Checked on the first
    image it sees, at the dims asked for: the features must be finite (``NonFiniteError``: damaged
    weights) and the fast copy must agree with eager within the export tolerance (``FastInferenceError``)."""

    def __init__(self, model: nn.Module, backend: str = "fast") -> None:
        if backend not in BACKENDS:
            raise UsageError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")
        self.backend = backend
        self.eager = model.eval()
        self.module = self.eager
        self.checked: set[int] = set()
        self._sha256: str | None = None
        if backend == "fast":
            from ..deploy.fold import optimize_module

            self.module, _ = optimize_module(model)

    @property
    def sha256(self) -> str:
        """sha256 of the network's weights: its floating-point tensors in key order (name, dtype, shape,
        bytes), so pytorch-fid's and torch-fidelity's files of the same tensors agree (BN's integer
        ``num_batches_tracked`` left out); what a saved reference records. Computed once (~0.3 s)."""
        if self._sha256 is None:
            import hashlib

            h = hashlib.sha256()
            for name, t in sorted(self.eager.state_dict().items()):
                if t.is_floating_point():
                    h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
                    h.update(t.detach().cpu().contiguous().numpy().tobytes())
            self._sha256 = h.hexdigest()
        return self._sha256

    def _run(self, x: Tensor, dims: int) -> tuple[Tensor, Tensor | None]:
        if self.backend == "eager":
            return _taps(self.module, x, dims)
        with flush_denormal():
            return _taps(self.module, x.contiguous(memory_format=torch.channels_last), dims)

    def __call__(self, x: Tensor, dims: int) -> tuple[Tensor, Tensor | None]:
        out = self._run(x, dims)
        if dims not in self.checked and x.shape[0]:
            ref = _taps(self.eager, x[:1], dims)[0] if self.backend == "fast" else out[0][:1]
            if not torch.isfinite(ref).all():
                raise NonFiniteError("the FID network gives NaN or infinite features (damaged --weights?)")
            if self.backend == "fast":
                from ..deploy.verify import check_close

                check_close(out[0][:1], ref, "FID network, --backend fast", error=FastInferenceError)
            self.checked.add(dims)
        return out


def fid_network(model: nn.Module | FIDNetwork, backend: str = "fast") -> FIDNetwork:
    return model if isinstance(model, FIDNetwork) else FIDNetwork(model, backend)


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The images of ``folder`` as pytorch-fid takes them: its extensions, not recursive, sorted."""
    p = Path(folder)
    if not p.is_dir():
        raise DataNotFoundError(f"{p}: not a folder of images nor an .npz statistics file")
    # entries that cannot be read (FIFOs, link loops) are kept: each is named when read, never skipped unsaid
    files = D.folder_images(p, extensions=sorted(IMAGE_EXTENSIONS))
    if not files:
        raise DataNotFoundError(f"{p}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
    return files


class RankDeficientWarning(UserWarning):
    """FID of fewer images than dims + 1 (``--allow-rank-deficient``): pytorch-fid's number, biased."""


def check_image_count(n: int, dims: int, source: str = "", allow_rank_deficient: bool = False) -> None:
    """FID needs a full-rank dims x dims covariance: at least dims + 1 images (pytorch-fid only warns
    and adds eps to the diagonal, which gives a number that depends on eps). With
    ``allow_rank_deficient`` (pytorch-fid's number, biased) at least 2: one image has no covariance."""
    if allow_rank_deficient:
        if n < 2:
            raise UsageError(f"{source or 'the images'}: {n} image(s); a covariance needs at least 2")
        return
    if n < dims + 1:
        raise UsageError(
            f"{source or 'the images'}: {n} images give a rank-deficient {dims}x{dims} covariance; FID "
            f"needs at least {dims + 1} (use more images, a smaller --dims, or --allow-rank-deficient for "
            "pytorch-fid's biased number)"
        )


def _batches(
    files: Sequence[Path], batch_size: int, resize: str, skip_bad: bool, skipped: list[str], workers: int | None
) -> Iterator[Batch]:  # fmt: skip
    """The images of ``files`` as the FID network's inputs, ``batch_size`` at a time, decoded by the
    pipeline's loader (``pipeline.ImageFiles``: ``workers`` processes, ``auto_workers``), read as RGB
    with the 299x299 resize checked from each header; an unreadable file stops with its name, or
    with ``skip_bad`` is left out and counted in ``skipped``."""
    items = [(i, str(f)) for i, f in enumerate(files)]
    ds = ImageFiles(items, 3, partial(preprocess, mode=resize), resize_to=(SIZE, SIZE))
    for b in loader(ds, batch_size, auto_workers(workers, len(items), batch_size)):
        if b.failed and not skip_bad:
            raise ImageReadError(f"{b.failed[0][2]} (--skip-bad-images leaves unreadable files out)")
        skipped += [path for _, path, _ in b.failed]
        if b.x is not None:
            yield b


def _extract(
    files: Sequence[Path], net: FIDNetwork, dims: int, batch_size: int, resize: str,
    device: torch.device | str, skip_bad: bool, desc: str, show_progress: bool, workers: int | None = None,
) -> Features:  # fmt: skip
    feats: list[np.ndarray] = []
    logits: list[np.ndarray] = []
    done: list[str] = []
    skipped: list[str] = []
    total = (len(files) + batch_size - 1) // batch_size
    batches = _batches(files, batch_size, resize, skip_bad, skipped, workers)
    for b in progress(batches, total=total, desc=desc, enabled=show_progress):
        assert b.x is not None
        f, lg = net(b.x.to(device), dims)
        if not torch.isfinite(f).all() or (lg is not None and not torch.isfinite(lg).all()):
            raise NonFiniteError(
                f"the FID network gave non-finite features for images of {desc} (damaged --weights?)"
            )
        feats.append(f.cpu().double().numpy())
        done += b.paths
        if lg is not None:
            logits.append(lg.cpu().double().numpy())
    d = feats[0].shape[1] if feats else dims
    return Features(
        np.concatenate(feats) if feats else np.empty((0, d)),
        np.concatenate(logits) if logits else np.empty((0, 1008)),
        done,
        skipped,
    )


def _sharded(fn: Callable[[Sequence[Path]], Features], files: Sequence[Path]) -> Features:
    """``fn`` on this rank's contiguous part of ``files`` under torchrun, the parts gathered in file
    order on every rank (an error on any rank is raised on all, so none waits forever)."""
    if not is_dist():
        return fn(files)
    import torch.distributed as dist

    rank, world, n = dist.get_rank(), dist.get_world_size(), len(files)
    try:
        part: Any = fn(files[rank * n // world : (rank + 1) * n // world])
    except Exception as e:  # noqa: BLE001 - handed to every rank, raised there
        part = e
    parts: list[Any] = [None] * world
    dist.all_gather_object(parts, part)
    for p in parts:
        if isinstance(p, BaseException):
            raise p
    dims = max(p.features.shape[1] for p in parts)
    return Features(
        np.concatenate([p.features.reshape(-1, dims) for p in parts]),
        np.concatenate([p.logits for p in parts]),
        [f for p in parts for f in p.files],
        [f for p in parts for f in p.skipped],
    )


def folder_features(
    folder: str | os.PathLike[str],
    model: nn.Module | FIDNetwork,
    *,
    dims: int = 2048,
    batch_size: int = 50,
    resize: str = "pytorch-fid",
    backend: str = "fast",
    device: str | torch.device = "cpu",
    skip_bad: bool = False,
    show_progress: bool = True,
    workers: int | None = None,
) -> Features:
    """Features of every image of ``folder``, read ``batch_size`` at a time (``model``: the FID
    network, run with ``backend`` unless it is a ready :class:`FIDNetwork`) and decoded by the
    pipeline's loader in ``workers`` processes (None: min(4, CPUs) for more than one batch; the
    CLI's default is 0, in this process).
    ``skip_bad`` leaves unreadable files out (``.skipped``); otherwise the first one stops with its name."""
    if dims not in DIMS:
        raise UsageError(f"--dims {dims}: expected one of {', '.join(map(str, DIMS))}")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    if workers is not None and workers < 0:
        raise UsageError(f"--workers must not be negative, got {workers}")
    if resize not in RESIZE_MODES:
        raise UsageError(f"--resize {resize!r}: expected one of {', '.join(RESIZE_MODES)}")
    files = image_files(folder)
    net = fid_network(model, backend)
    out = _sharded(
        lambda part: _extract(
            part, net, dims, batch_size, resize, device, skip_bad, str(folder), show_progress, workers
        ),
        files,
    )
    if not out.files:
        raise DataNotFoundError(f"{folder}: none of its {len(files)} images is readable")
    return out


def stats_of(
    features: np.ndarray, source: str = "", allow_rank_deficient: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) in float64 as pytorch-fid: ``np.mean`` and ``np.cov(rowvar=False)``."""
    check_image_count(features.shape[0], features.shape[1], source, allow_rank_deficient)
    return np.mean(features, axis=0), np.cov(features, rowvar=False)


# A saved reference (``--save-stats``): pytorch-fid's mu and sigma, plus the per-image features (so KID
# and precision / recall run against it) and META: a JSON object in a uint8 array (no pickles). An
# .npz of mu and sigma alone (pytorch-fid's, or ours before features were kept) still gives FID.
STATS_KEYS = frozenset({"mu", "sigma"})
REFERENCE_KEYS = frozenset({"mu", "sigma", "features", "meta"})
REFERENCE_FORMAT = "inceptionnet-fid-reference"
META_MAX_BYTES = 1 << 16
# deflate expands at most ~1032:1: a member declaring more than this x its compressed size lies
MAX_DEFLATE_RATIO = 1100


@dataclass(frozen=True)
class _Member:
    shape: tuple[int, ...]
    dtype: np.dtype
    data_bytes: int  # what the zip directory says follows the .npy header
    compressed: int


def _npy_header(z: zipfile.ZipFile, key: str, path: str | os.PathLike[str]) -> _Member:
    """Shape and dtype an ``.npz`` member declares, read from its header alone (nothing allocated)."""
    name = f"{key}.npy" if f"{key}.npy" in z.namelist() else key
    info = z.getinfo(name)
    with z.open(name) as fp:
        version = np.lib.format.read_magic(fp)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read:
            raise UsageError(f"{path}: {key} is not a plain .npy array (format version {version})")
        shape, _, dtype = read[version](fp)
        header_end = fp.tell()
    return _Member(
        tuple(int(s) for s in shape), np.dtype(dtype), info.file_size - header_end, info.compress_size
    )


def _check_extra_members(z: zipfile.ZipFile, path: str | os.PathLike[str], keys: set[str], d: int) -> None:
    """``features`` (n, d) floats, n >= 1, whose bytes the zip member really declares (and no more than
    deflate can give from its compressed size: nothing is allocated for a lying header); ``meta`` a
    uint8 vector of at most META_MAX_BYTES."""
    if "features" in keys:
        f = _npy_header(z, "features", path)
        if f.dtype.kind != "f" or len(f.shape) != 2 or f.shape[1] != d or f.shape[0] < 1:
            raise UsageError(
                f"{path}: features {excerpt(f.shape)} of {excerpt(str(f.dtype))} are not an N x {d} array of "
                "floats; save the reference again"
            )
        declared = f.shape[0] * f.shape[1] * f.dtype.itemsize
        if declared != f.data_bytes or f.data_bytes > MAX_DEFLATE_RATIO * max(f.compressed, 1):
            raise UsageError(
                f"{path}: features declare {f.shape[0]} x {d} values that its zip member does not hold; "
                "save the reference again"
            )
    if "meta" in keys:
        m = _npy_header(z, "meta", path)
        if m.dtype != np.uint8 or len(m.shape) != 1 or m.shape[0] > META_MAX_BYTES:
            raise UsageError(f"{path}: meta is not a JSON text of at most {META_MAX_BYTES} bytes")


def _check_stats_header(path: str | os.PathLike[str], dims: int | None) -> dict[str, _Member]:
    """Keys, dtypes and shapes of a statistics file checked from its headers, before any array is
    read: a header may declare any shape, so nothing is allocated until it is mu (d,) and sigma
    (d, d) in floats with d = ``dims`` (or, without ``dims``, d <= the largest of ``DIMS``), and
    the optional features (n, d) and meta (``_check_extra_members``)."""
    with zipfile.ZipFile(path) as z:
        keys = {n.removesuffix(".npy") for n in z.namelist()}
        if not keys >= STATS_KEYS:
            raise UsageError(
                f"{path}: an .npz statistics file needs arrays 'mu' and 'sigma', has {excerpt(sorted(keys))}"
            )
        mu, sigma = (_npy_header(z, k, path) for k in ("mu", "sigma"))
        for key, m in (("mu", mu), ("sigma", sigma)):
            if m.dtype.kind != "f":
                raise UsageError(
                    f"{path}: {key} is an array of {excerpt(str(m.dtype))}, not of floats; make the statistics again"
                )
        d = mu.shape[0] if len(mu.shape) == 1 else -1
        if d < 1 or sigma.shape != (d, d):
            raise UsageError(
                f"{path}: mu {excerpt(mu.shape)} and sigma {excerpt(sigma.shape)} are not a D and a D x D array"
            )
        if dims is not None and d != dims:
            raise UsageError(f"{path}: statistics of {d}-d features, --dims is {dims}")
        if d > max(DIMS):
            raise UsageError(
                f"{path}: statistics of {d}-d features; the FID network gives at most {max(DIMS)}"
            )
        _check_extra_members(z, path, keys, d)
        return {k: _npy_header(z, k, path) for k in REFERENCE_KEYS & keys}


def reference_count(path: str | os.PathLike[str], dims: int | None = None) -> int | None:
    """The image count of a saved reference, from its headers (None: mu and sigma only)."""
    members = _read_npz(path, dims, headers_only=True)
    return members["features"].shape[0] if "features" in members else None


def _read_npz(path: str | os.PathLike[str], dims: int | None, headers_only: bool = False) -> dict[str, Any]:
    """The arrays of a checked statistics / reference file (``allow_pickle=False``), or with
    ``headers_only`` what their headers declare; numpy's and zipfile's errors one line naming the file."""
    try:
        members = _check_stats_header(path, dims)
        if headers_only:
            return members
        with np.load(path, allow_pickle=False) as f:
            return {k: np.asarray(f[k]) for k in members}
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise UsageError(f"{path}: not a readable .npz file ({first_line(e)})") from None
    except ValueError as e:  # numpy's own: a damaged header or member
        if isinstance(e, InceptionNetError):
            raise
        raise UsageError(f"{path}: not a readable .npz statistics file ({first_line(e)})") from None


def load_stats(path: str | os.PathLike[str], dims: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``mu`` and ``sigma`` of a pytorch-fid ``.npz`` statistics file (or a saved reference), checked:
    keys, dtypes and shapes from the headers before anything is read (``_check_stats_header``), then
    finiteness and sigma a covariance (``check_covariance``); each problem is one line naming the file."""
    ref = load_reference(path, dims)
    return ref.mu, ref.sigma


# FID's statistics must be covariances: sigma symmetric within SYM_RTOL x max|sigma| (float32-saved
# statistics of other tools differ from their transpose by ~1e-7 relative) and positive
# semi-definite: every eigenvalue >= -PSD_RTOL x trace(sigma) (the rounding of a rank-deficient
# np.cov in float64 gives ~1e-16 relative, stored in float32 ~1e-8). A final FID in
# [-FID_CLAMP_RTOL x (trace(sigma1) + trace(sigma2)), 0) is rounding (a folder against itself gives
# -1.3e-9) and is reported as 0; below that it is an error.
SYM_RTOL = 1e-5
PSD_RTOL = 1e-6
FID_CLAMP_RTOL = 1e-6


def check_covariance(sigma: np.ndarray, what: str = "sigma") -> None:
    """UsageError unless ``sigma`` is a finite, symmetric, positive semi-definite d x d matrix (the
    tolerances above). PSD by a Cholesky factorization of sigma + PSD_RTOL * trace * I, which exists
    iff no eigenvalue is below -PSD_RTOL * trace; a tenth of the cost of the eigenvalues (2048-d:
    ~0.5 s). Kept apart from ``frechet_distance`` so it holds whatever computes the square root."""
    s = np.asarray(sigma, np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1] or s.shape[0] == 0:
        raise UsageError(f"{what}: sigma of shape {excerpt(s.shape)} is not a square d x d covariance")
    if not np.isfinite(s).all():
        raise NonFiniteError(f"{what}: sigma holds NaN or infinity; make the statistics again")
    scale = float(np.abs(s).max())
    asym = float(np.abs(s - s.T).max())
    if asym > SYM_RTOL * scale:
        raise UsageError(
            f"{what}: sigma is not a covariance: not symmetric (max |S - S^T| {asym:.3g} > "
            f"{SYM_RTOL:g} x max|S| {scale:.3g}); make the statistics again"
        )
    trace = float(np.trace(s))
    bound = PSD_RTOL * max(trace, 0.0)
    try:
        np.linalg.cholesky((s + s.T) / 2 + (bound or np.finfo(np.float64).tiny) * np.eye(len(s)))
    except np.linalg.LinAlgError:
        raise UsageError(
            f"{what}: sigma is not a covariance: not positive semi-definite (an eigenvalue below "
            f"-{PSD_RTOL:g} x trace(S), trace {trace:.4g}); make the statistics again"
        ) from None


def save_stats(path: str | os.PathLike[str], mu: np.ndarray, sigma: np.ndarray) -> None:
    """pytorch-fid's format: ``np.savez_compressed(path, mu=, sigma=)``, written atomically."""
    from ..fileio import atomic_write

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, mu=mu, sigma=sigma)

    atomic_write(path, write)


@dataclass
class Reference:
    """One side of a comparison: mu and sigma (float64) and, where known, the per-image features
    (N x d), the sha256 of the FID network that made them (``FIDNetwork.sha256``) and the ``--resize``
    rule. From an image folder (``source_reference``), a saved file (``load_reference``), or features
    (``Reference.of_features``: what a metric object accumulates). ``saved``: read from a file."""

    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray | None = None
    network: str | None = None
    resize: str | None = None
    source: str = ""
    saved: bool = False
    skipped: list[str] = field(default_factory=list)

    @property
    def count(self) -> int | None:
        """The number of images, where the features are kept (None: a mu / sigma file)."""
        return None if self.features is None else int(self.features.shape[0])

    @classmethod
    def of_features(
        cls, features: np.ndarray, *, network: str | None = None, resize: str | None = None,
        source: str = "", allow_rank_deficient: bool = False,
    ) -> Reference:  # fmt: skip
        mu, sigma = stats_of(features, source, allow_rank_deficient)
        return cls(mu, sigma, features, network, resize, source)

    def features_for(self, what: str) -> np.ndarray:
        """The features, or one line saying this reference was saved without them."""
        if self.features is None:
            raise without_features(self.source, what)
        return self.features


def without_features(source: str, what: str) -> UsageError:
    return UsageError(
        f"{what} needs features; {source} holds only mu and sigma (saved without features): save it again "
        f"with this version (inceptionnet fid FOLDER --save-stats {source} --overwrite)"
    )


def is_reference_file(path: str | os.PathLike[str]) -> bool:
    """An .npz of ours (a reference) or pytorch-fid's (mu, sigma): what ``--save-stats`` may replace."""
    from ..fileio import npz_arrays

    keys = npz_arrays(path)
    return keys is not None and STATS_KEYS <= keys <= REFERENCE_KEYS


def save_reference(path: str | os.PathLike[str], ref: Reference) -> None:
    """mu, sigma (pytorch-fid's keys: pytorch-fid reads the file), the features (float32 when that is
    lossless, as the network's features are) and ``meta`` (JSON in a uint8 array: format, network
    sha256, resize, dims, images), ``np.savez_compressed``, written atomically; no pickles."""
    from .. import __version__
    from ..fileio import atomic_write

    meta = {
        "format": REFERENCE_FORMAT, "version": 1, "network_sha256": ref.network, "resize": ref.resize,
        "dims": int(ref.mu.shape[0]), "images": ref.count, "inceptionnet": __version__,
    }  # fmt: skip
    arrays: dict[str, np.ndarray] = {"mu": ref.mu, "sigma": ref.sigma}
    if ref.features is not None:
        f32 = ref.features.astype(np.float32)
        arrays["features"] = f32 if np.array_equal(f32, ref.features) else ref.features
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]

    atomic_write(path, write)


def _parse_meta(raw: np.ndarray, path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{path}: meta is not JSON ({first_line(e)}); save the reference again") from None
    net, resize = (meta.get(k) if isinstance(meta, dict) else 0 for k in ("network_sha256", "resize"))
    ok_net = net is None or (
        isinstance(net, str) and len(net) == 64 and all(c in "0123456789abcdef" for c in net)
    )
    if not isinstance(meta, dict) or not ok_net or (resize is not None and resize not in RESIZE_MODES):
        raise UsageError(f"{path}: meta {excerpt(meta)} is not a reference's; save the reference again")
    return meta


def load_reference(path: str | os.PathLike[str], dims: int | None = None) -> Reference:
    """A saved reference (``save_reference``) or a pytorch-fid ``.npz`` of mu and sigma, checked
    from its headers first (``_check_stats_header``), read with ``allow_pickle=False``; mu, sigma and
    the features finite, sigma a covariance; each problem one line naming the file."""
    arrays = _read_npz(path, dims)
    mu, sigma = np.asarray(arrays["mu"], np.float64), np.asarray(arrays["sigma"], np.float64)
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise NonFiniteError(f"{path}: mu or sigma holds NaN or infinity; make the statistics again")
    check_covariance(sigma, str(path))
    features = None
    if "features" in arrays:
        features = np.asarray(arrays["features"], np.float64)
        if not np.isfinite(features).all():
            raise NonFiniteError(f"{path}: features hold NaN or infinity; save the reference again")
    meta = _parse_meta(arrays["meta"], path) if "meta" in arrays else {}
    return Reference(
        mu, sigma, features, meta.get("network_sha256"), meta.get("resize"), str(path), saved=True
    )


def check_same_rules(refs: Sequence[Reference], net: FIDNetwork | None, resize: str) -> None:
    """Every saved reference that records its network and resize was made by this run's (``net``,
    ``resize``), or, with no network in this run, by the same as the other saved one: statistics of
    other weights or another resize rule give a FID that means nothing (docs/METRICS.md)."""
    saved = [r for r in refs if r.saved and (r.network is not None or r.resize is not None)]
    if not saved:
        return
    want: tuple[str | None, str | None]
    if net is not None:
        want, against = (net.sha256, resize), f"this run uses network {net.sha256[:16]} and --resize {resize}"
    else:
        first = saved[0]
        want = (first.network, first.resize)
        against = f"{first.source} was made by network {str(first.network)[:16]} and --resize {first.resize}"
    for r in saved:  # a field one side did not record (None) is not compared
        if any(x is not None and y is not None and x != y for x, y in zip((r.network, r.resize), want)):
            raise UsageError(
                f"{r.source} was made by the FID network {str(r.network)[:16]} with --resize {r.resize}; "
                f"{against}: compare only statistics of the same network and resize (save it again)"
            )


def _check_pair(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> None:
    """Two sets of statistics FID can compare: mu (d,) and sigma (d, d) each, the same d, finite,
    sigma covariances (``check_covariance``)."""
    for i, (mu, sigma) in enumerate(((mu1, sigma1), (mu2, sigma2)), 1):
        if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
            raise UsageError(
                f"statistics {i}: mu {excerpt(mu.shape)} and sigma {excerpt(sigma.shape)} are not a D and "
                "a D x D array"
            )
        if not np.isfinite(mu).all():
            raise NonFiniteError(f"statistics {i}: mu holds NaN or infinity; make the statistics again")
        check_covariance(sigma, f"statistics {i}")
    if mu1.shape != mu2.shape:
        raise UsageError(f"statistics of different dims: {mu1.shape[0]} and {mu2.shape[0]}")


FID_METHODS = ("eigh", "pytorch-fid")


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr sqrt(S1 S2) for covariances S1, S2, in float64, never complex: S1 S2 is similar to the
    symmetric PSD M = sqrt(S1) S2 sqrt(S1), so the trace is the sum of the square roots of M's
    eigenvalues. sqrt(S1) from ``eigh`` of S1 and M's eigenvalues from ``eigvalsh``, each with its
    rounding negatives (a rank-deficient S) taken as 0. Where ``scipy.linalg.sqrtm`` of S1 S2 is
    well behaved the two agree to ~1e-12 relative; where S1 S2 is singular sqrtm returns NaN or a
    complex matrix and this stays exact (docs/METRICS.md). Two symmetric eigendecompositions: at
    2048 dims about half the time of ``sqrtm`` (its Schur form of a non-symmetric matrix)."""
    w, v = np.linalg.eigh(sigma1)
    root = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    m = root @ sigma2 @ root
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(eig, 0.0, None)).sum())


def _pytorch_fid_trace(sigma1: np.ndarray, sigma2: np.ndarray, eps: float) -> float:
    """Tr sqrt(S1 S2) exactly as pytorch-fid's ``calculate_frechet_distance`` takes it: ``sqrtm`` of the
    product, retried with ``eps`` on both diagonals when the result is not finite (a singular product),
    the imaginary part dropped when its diagonal is within 1e-3 of 0."""
    try:
        from scipy import linalg
    except ImportError:
        raise ImportError("pytorch-fid's FID needs scipy (scipy.linalg.sqrtm): pip install scipy") from None
    with warnings.catch_warnings():  # "Matrix is singular": the caller warns once, in its words
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1.dot(sigma2))  # = sqrtm(..., disp=False)[0]; disp is deprecated
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise UsageError(
                f"FID (pytorch-fid's rule): imaginary component {np.max(np.abs(covmean.imag)):.3g} in "
                "sqrtm(S1 S2); leave out --allow-rank-deficient or use more images"
            )
        covmean = covmean.real
    return float(np.trace(covmean))


def frechet_distance(
    mu1: np.ndarray,
    sigma1: np.ndarray,
    mu2: np.ndarray,
    sigma2: np.ndarray,
    eps: float = 1e-6,
    *,
    method: str = "eigh",
) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrt(S1 S2)) in float64, pytorch-fid's number.

    ``method="eigh"``: Tr sqrt(S1 S2) by ``trace_sqrt_product`` (never complex, exact where
    ``sqrtm`` fails); ``"pytorch-fid"``: pytorch-fid's own ``sqrtm`` with its ``eps`` retry, what it
    computes for fewer images than dims + 1 (``--allow-rank-deficient``). Statistics that are not
    covariances are refused first (``check_covariance``: a non-symmetric or indefinite sigma gives a
    number, even a negative one, that means nothing); a result in [-FID_CLAMP_RTOL x (Tr S1 + Tr S2),
    0) is rounding and returned as 0.0, one below it an error."""
    if method not in FID_METHODS:
        raise UsageError(f"FID method {excerpt(method)}: expected one of {', '.join(FID_METHODS)}")
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = (
        np.atleast_2d(np.asarray(sigma1, np.float64)),
        np.atleast_2d(np.asarray(sigma2, np.float64)),
    )
    _check_pair(mu1, sigma1, mu2, sigma2)
    diff = mu1 - mu2
    if method == "eigh":
        tr_covmean = trace_sqrt_product(sigma1, sigma2)
    else:
        tr_covmean = _pytorch_fid_trace(sigma1, sigma2, eps)
    traces = float(np.trace(sigma1) + np.trace(sigma2))
    # pytorch-fid's order of the sums, so its method gives its number to the last bit
    value = float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)
    if not np.isfinite(value):
        raise NonFiniteError(f"FID is {value}: the statistics hold NaN or infinity")
    return _clamp_rounding(value, FID_CLAMP_RTOL * traces)


def _clamp_rounding(value: float, bound: float) -> float:
    """FID is >= 0 for covariances: a value in [-bound, 0) is rounding (0.0), one below is an error."""
    if value >= 0:
        return value
    if value >= -bound:
        return 0.0
    raise UsageError(
        f"FID came out {value:.4g}, below the rounding bound -{bound:.3g}: the square root of S1 S2 lost "
        "its accuracy (near-singular statistics); use more images or a smaller --dims"
    )


# FID of fewer images than dims + 1 (--allow-rank-deficient), measured (docs/METRICS.md, "FID and the
# image count"): the number moves with the image count alone, so it compares only with FIDs of as many.
RANK_DEFICIENT_NOTE = (
    "biased: it falls roughly as 1 / image count (Fashion-MNIST test vs train, --dims 192: 50 images give "
    "~17x and 100 images ~7x the 1000-image FID), so compare it only with FIDs of as many images "
    "(docs/METRICS.md)"
)


def source_reference(
    src: str | os.PathLike[str], model: nn.Module | FIDNetwork | None, dims: int, *,
    allow_rank_deficient: bool = False, **kw: Any,
) -> Reference:  # fmt: skip
    """The :class:`Reference` of an image folder (its features through ``model``; the image count
    checked before any work: dims + 1 needed, 2 with ``allow_rank_deficient``) or of an ``.npz``
    file (``load_reference``)."""
    if str(src).endswith(".npz"):
        return load_reference(src, dims)
    check_image_count(len(image_files(src)), dims, str(src), allow_rank_deficient)
    if model is None:
        raise UsageError(f"{src}: an image folder needs the FID network (model=)")
    net = fid_network(model, kw.get("backend", "fast"))
    feats = folder_features(src, net, dims=dims, **kw)
    ref = Reference.of_features(
        feats.features, network=net.sha256, resize=kw.get("resize", "pytorch-fid"), source=str(src),
        allow_rank_deficient=allow_rank_deficient,
    )  # fmt: skip
    ref.skipped = feats.skipped
    return ref


def source_stats(
    src: str | os.PathLike[str], model: nn.Module | FIDNetwork | None, dims: int, **kw: Any
) -> tuple[np.ndarray, np.ndarray, Reference]:
    """(mu, sigma, the whole :class:`Reference`) of an image folder or an ``.npz`` file."""
    ref = source_reference(src, model, dims, **kw)
    return ref.mu, ref.sigma, ref


def reference_fid(a: Reference, b: Reference, *, allow_rank_deficient: bool = False) -> float:
    """FID of two references. A side of fewer images than dims + 1 (where its count is known) is
    refused, or with ``allow_rank_deficient`` computed as pytorch-fid does (``method="pytorch-fid"``:
    its sqrtm and eps rule) with a :class:`RankDeficientWarning`; otherwise ``method="eigh"``."""
    dims = int(a.mu.shape[0])
    short = [r for r in (a, b) if r.count is not None and r.count < dims + 1]
    for r in short:
        check_image_count(r.count or 0, dims, r.source, allow_rank_deficient)
    if short:
        counts = " and ".join(f"{r.count} images ({r.source})" for r in short)
        warnings.warn(
            f"FID of {counts} at --dims {dims}, fewer than {dims + 1}: pytorch-fid's number, "
            + RANK_DEFICIENT_NOTE,
            RankDeficientWarning,
            stacklevel=2,
        )
    method = "pytorch-fid" if short else "eigh"
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma, method=method)


def fid(
    a: str | os.PathLike[str],
    b: str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str] | None = None,
    model: nn.Module | FIDNetwork | None = None,
    dims: int = 2048,
    batch_size: int = 50,
    resize: str = "pytorch-fid",
    backend: str = "fast",
    device: str | torch.device = "cpu",
    skip_bad: bool = False,
    show_progress: bool = True,
    allow_rank_deficient: bool = False,
) -> float:
    """FID between two image folders or ``.npz`` files (saved references, or pytorch-fid's mu / sigma);
    a saved reference must have been made with the same network and ``resize`` (``check_same_rules``)."""
    for src in (a, b):  # before loading the network: cheap checks first
        if not str(src).endswith(".npz"):
            check_image_count(len(image_files(src)), dims, str(src), allow_rank_deficient)
    if model is None and not (str(a).endswith(".npz") and str(b).endswith(".npz")):
        model = load_fid_model(weights, device)
    net = None if model is None else fid_network(model, backend)
    kw: dict[str, Any] = dict(
        batch_size=batch_size, resize=resize, backend=backend, device=device, skip_bad=skip_bad,
        show_progress=show_progress, allow_rank_deficient=allow_rank_deficient,
    )  # fmt: skip
    refs = [source_reference(src, net, dims, **kw) for src in (a, b)]
    check_same_rules(refs, net, resize)
    return reference_fid(*refs, allow_rank_deficient=allow_rank_deficient)


def _check_rows(x: np.ndarray, what: str) -> None:
    """``x`` N x K, finite: IS and KID give NaN (or a number that means nothing) otherwise."""
    if not isinstance(x, np.ndarray) or x.ndim != 2:
        raise UsageError(f"{what} must be an N x K numpy array, got {excerpt(getattr(x, 'shape', x))}")
    if not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.integer):
        raise UsageError(f"{what} must be an array of numbers, got dtype {excerpt(str(x.dtype))}")
    if not np.isfinite(x).all():
        raise NonFiniteError(f"{what} hold NaN or infinity ({int((~np.isfinite(x)).sum())} values)")


def _finite_result(mean: float, std: float, what: str) -> tuple[float, float]:
    if not (np.isfinite(mean) and np.isfinite(std)):
        raise NonFiniteError(f"{what} came out {mean} ± {std} on finite inputs: the values overflow float64")
    return mean, std


def inception_score(
    logits: np.ndarray, splits: int = 10, *, shuffle: bool = True, seed: int = 2020
) -> tuple[float, float]:
    """torch-fidelity's ``isc``: the images shuffled (numpy RandomState(seed).permutation), softmax of
    the 1008 logits, in ``splits`` consecutive chunks exp(mean KL(p(y|x) || p(y))); mean and std
    (ddof 0) over the chunks. torch-fidelity's default layer is ``logits_unbiased`` (fc without its
    bias), which is what :func:`folder_features` returns. Non-finite logits are refused
    (``NonFiniteError``); a probability that underflows to 0 adds 0 to the KL (the limit of p log p),
    where torch-fidelity's formula gives 0 x inf = NaN (logits spread by ~1e3 or more)."""
    _check_rows(logits, "Inception Score logits")
    if logits.shape[0] < splits:
        raise UsageError(
            f"Inception Score with {splits} splits needs at least {splits} images, got {logits.shape[0]}"
        )
    t = torch.from_numpy(logits).double()
    if shuffle:
        t = t[torch.from_numpy(np.random.RandomState(seed).permutation(t.shape[0]))]
    p = t.softmax(dim=1)
    log_p = t.log_softmax(dim=1)
    n = t.shape[0]
    scores = []
    for k in range(splits):
        part_p = p[k * n // splits : (k + 1) * n // splits]
        part_log = log_p[k * n // splits : (k + 1) * n // splits]
        py = part_p.mean(dim=0, keepdim=True)
        terms = torch.where(part_p > 0, part_p * (part_log - py.log()), 0.0)
        scores.append(terms.sum(dim=1).mean().exp())
    s = torch.stack(scores)
    return _finite_result(float(s.mean()), float(s.std(unbiased=False)), "the Inception Score")


def kernel_inception_distance(
    f1: np.ndarray,
    f2: np.ndarray,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    seed: int = 2020,
) -> tuple[float, float]:
    """torch-fidelity's ``kid``: unbiased MMD^2 with the kernel (gamma x.y + coef0)^degree (gamma 1/D)
    over ``subsets`` random subsets of ``subset_size`` (numpy RandomState(seed)); mean and std.
    Non-finite features, or features of different widths, are refused; a result that overflows
    (features of magnitude ~1e77 and more, cubed) is a ``NonFiniteError``, never NaN."""
    _check_rows(f1, "KID features (first)")
    _check_rows(f2, "KID features (second)")
    if f1.shape[1] != f2.shape[1]:
        raise UsageError(f"KID features of different widths: {f1.shape[1]} and {f2.shape[1]}")
    n = min(f1.shape[0], f2.shape[0])
    if n < subset_size:
        raise UsageError(
            f"KID subset size {subset_size} is larger than the number of images ({f1.shape[0]} and "
            f"{f2.shape[0]}); use --kid-subset-size {n} or less (torch-fidelity refuses it too)"
        )
    if subset_size < 2 or subsets < 1:
        raise UsageError(
            f"KID needs --kid-subset-size >= 2 and --kid-subsets >= 1, got {subset_size}, {subsets}"
        )
    rng = np.random.RandomState(seed)
    mmds = np.zeros(subsets)
    for i in range(subsets):
        x = f1[rng.choice(len(f1), subset_size, replace=False)]
        y = f2[rng.choice(len(f2), subset_size, replace=False)]
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported just below
            mmds[i] = _mmd2(x, y, degree, gamma, coef0)
    return _finite_result(float(np.mean(mmds)), float(np.std(mmds)), "KID")


def _mmd2(x: np.ndarray, y: np.ndarray, degree: int, gamma: float | None, coef0: float) -> float:
    g = 1.0 / x.shape[1] if gamma is None else gamma
    k_xx = (x @ x.T * g + coef0) ** degree
    k_yy = (y @ y.T * g + coef0) ** degree
    k_xy = (x @ y.T * g + coef0) ** degree
    m = x.shape[0]
    diag_x, diag_y = np.diagonal(k_xx), np.diagonal(k_yy)
    kt_xx_sum = k_xx.sum() - diag_x.sum()
    kt_yy_sum = k_yy.sum() - diag_y.sum()
    k_xy_sum = k_xy.sum()
    return float((kt_xx_sum + kt_yy_sum) / (m * (m - 1)) - 2 * k_xy_sum / (m * m))
