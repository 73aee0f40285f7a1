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

import os
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
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
from ..runtime import flush_denormal, is_dist, progress
from .resize import RESIZE_MODES, SIZE, preprocess

__all__ = [
    "BACKENDS",
    "DIMS",
    "RESIZE_MODES",
    "FIDNetwork",
    "Features",
    "check_covariance",
    "check_image_count",
    "fid",
    "fid_network",
    "folder_features",
    "frechet_distance",
    "image_files",
    "inception_score",
    "kernel_inception_distance",
    "load_fid_model",
    "load_stats",
    "save_stats",
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
        if backend == "fast":
            from ..deploy.fold import optimize_module

            self.module, _ = optimize_module(model)

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


def check_image_count(n: int, dims: int, source: str = "") -> None:
    """FID needs a full-rank dims x dims covariance: at least dims + 1 images (pytorch-fid only warns
    and adds eps to the diagonal, which gives a number that depends on eps)."""
    if n < dims + 1:
        raise UsageError(
            f"{source or 'the images'}: {n} images give a rank-deficient {dims}x{dims} covariance; FID "
            f"needs at least {dims + 1} (use more images or a smaller --dims)"
        )


def _read(files: Sequence[Path], skip_bad: bool, skipped: list[str]) -> Iterator[tuple[Path, Tensor]]:
    for f in files:
        try:
            yield f, D.read_image(f, 3, resize_to=(SIZE, SIZE))  # sizes checked before decoding
        except ImageReadError as e:
            if not skip_bad:
                raise ImageReadError(f"{e} (--skip-bad-images leaves unreadable files out)") from None
            skipped.append(str(f))


def _extract(
    files: Sequence[Path], net: FIDNetwork, dims: int, batch_size: int, resize: str,
    device: torch.device | str, skip_bad: bool, desc: str, show_progress: bool,
) -> Features:  # fmt: skip
    feats: list[np.ndarray] = []
    logits: list[np.ndarray] = []
    done: list[str] = []
    skipped: list[str] = []
    images = _read(files, skip_bad, skipped)
    total = (len(files) + batch_size - 1) // batch_size
    for _ in progress(range(total), total=total, desc=desc, enabled=show_progress):
        batch = [(f, preprocess(img, resize)) for f, img in islice(images, batch_size)]
        if not batch:
            break
        f, lg = net(torch.stack([x for _, x in batch]).to(device), dims)
        if not torch.isfinite(f).all() or (lg is not None and not torch.isfinite(lg).all()):
            raise NonFiniteError(
                f"the FID network gave non-finite features for images of {desc} (damaged --weights?)"
            )
        feats.append(f.cpu().double().numpy())
        done += [str(p) for p, _ in batch]
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
) -> Features:
    """Features of every image of ``folder``, read ``batch_size`` at a time (``model``: the FID
    network, run with ``backend`` unless it is a ready :class:`FIDNetwork`). ``skip_bad`` leaves
    unreadable files out (``.skipped``); otherwise the first one stops with its name."""
    if dims not in DIMS:
        raise UsageError(f"--dims {dims}: expected one of {', '.join(map(str, DIMS))}")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    if resize not in RESIZE_MODES:
        raise UsageError(f"--resize {resize!r}: expected one of {', '.join(RESIZE_MODES)}")
    files = image_files(folder)
    net = fid_network(model, backend)
    out = _sharded(
        lambda part: _extract(
            part, net, dims, batch_size, resize, device, skip_bad, str(folder), show_progress
        ),
        files,
    )
    if not out.files:
        raise DataNotFoundError(f"{folder}: none of its {len(files)} images is readable")
    return out


def stats_of(features: np.ndarray, source: str = "") -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) in float64 as pytorch-fid: ``np.mean`` and ``np.cov(rowvar=False)``."""
    check_image_count(features.shape[0], features.shape[1], source)
    return np.mean(features, axis=0), np.cov(features, rowvar=False)


def _npy_header(
    z: zipfile.ZipFile, key: str, path: str | os.PathLike[str]
) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) an ``.npz`` member declares, read from its header alone (nothing allocated)."""
    name = f"{key}.npy" if f"{key}.npy" in z.namelist() else key
    with z.open(name) as fp:
        version = np.lib.format.read_magic(fp)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read:
            raise UsageError(f"{path}: {key} is not a plain .npy array (format version {version})")
        shape, _, dtype = read[version](fp)
    return tuple(int(s) for s in shape), np.dtype(dtype)


def _check_stats_header(path: str | os.PathLike[str], dims: int | None) -> None:
    """Keys, dtypes and shapes of a statistics file checked from its headers, before any array is
    read: a header may declare any shape, so nothing is allocated until it is mu (d,) and sigma
    (d, d) in floats with d = ``dims`` (or, without ``dims``, d <= the largest of ``DIMS``)."""
    with zipfile.ZipFile(path) as z:
        keys = {n.removesuffix(".npy") for n in z.namelist()}
        if not {"mu", "sigma"} <= keys:
            raise UsageError(
                f"{path}: an .npz statistics file needs arrays 'mu' and 'sigma', has {excerpt(sorted(keys))}"
            )
        (mu_shape, mu_dtype), (s_shape, s_dtype) = (_npy_header(z, k, path) for k in ("mu", "sigma"))
    for key, dtype in (("mu", mu_dtype), ("sigma", s_dtype)):
        if dtype.kind != "f":
            raise UsageError(
                f"{path}: {key} is an array of {excerpt(str(dtype))}, not of floats; make the statistics again"
            )
    d = mu_shape[0] if len(mu_shape) == 1 else -1
    if d < 1 or s_shape != (d, d):
        raise UsageError(
            f"{path}: mu {excerpt(mu_shape)} and sigma {excerpt(s_shape)} are not a D and a D x D array"
        )
    if dims is not None and d != dims:
        raise UsageError(f"{path}: statistics of {d}-d features, --dims is {dims}")
    if d > max(DIMS):
        raise UsageError(f"{path}: statistics of {d}-d features; the FID network gives at most {max(DIMS)}")


def load_stats(path: str | os.PathLike[str], dims: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``mu`` and ``sigma`` of a pytorch-fid ``.npz`` statistics file, checked: keys, dtypes and
    shapes from the headers before anything is read (``_check_stats_header``), then finiteness and
    sigma a covariance (``check_covariance``); each problem is one line naming the file."""
    try:
        _check_stats_header(path, dims)
        with np.load(path, allow_pickle=False) as f:
            mu, sigma = np.asarray(f["mu"], np.float64), np.asarray(f["sigma"], np.float64)
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise UsageError(f"{path}: not a readable .npz file ({first_line(e)})") from None
    except ValueError as e:  # numpy's own: a damaged header or member
        if isinstance(e, InceptionNetError):
            raise
        raise UsageError(f"{path}: not a readable .npz statistics file ({first_line(e)})") from None
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise NonFiniteError(f"{path}: mu or sigma holds NaN or infinity; make the statistics again")
    check_covariance(sigma, str(path))
    return mu, sigma


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


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """pytorch-fid's ``calculate_frechet_distance``: ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrt(S1 S2)).

    Statistics that are not covariances are refused first (``check_covariance``: a non-symmetric
    or indefinite sigma gives a number, even a negative one, that means nothing); a result in
    [-FID_CLAMP_RTOL x (Tr S1 + Tr S2), 0) is rounding and returned as 0.0, one below it an error."""
    try:
        from scipy import linalg
    except ImportError:
        raise ImportError("FID needs scipy (scipy.linalg.sqrtm, as pytorch-fid): pip install scipy") from None

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = (
        np.atleast_2d(np.asarray(sigma1, np.float64)),
        np.atleast_2d(np.asarray(sigma2, np.float64)),
    )
    _check_pair(mu1, sigma1, mu2, sigma2)
    diff = mu1 - mu2
    covmean, _ = linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise UsageError(f"FID: imaginary component {np.max(np.abs(covmean.imag))} in sqrtm(S1 S2)")
        covmean = covmean.real
    traces = float(np.trace(sigma1) + np.trace(sigma2))
    value = float(diff.dot(diff) + traces - 2 * np.trace(covmean))
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


def source_stats(
    src: str | os.PathLike[str], model: nn.Module | FIDNetwork | None, dims: int, **kw: Any
) -> tuple[np.ndarray, np.ndarray, Features | None]:
    """(mu, sigma, features) of an image folder, or (mu, sigma, None) of an ``.npz`` file. The image
    count is checked before any work (dims + 1 needed)."""
    if str(src).endswith(".npz"):
        return (*load_stats(src, dims), None)
    check_image_count(len(image_files(src)), dims, str(src))
    if model is None:
        raise UsageError(f"{src}: an image folder needs the FID network (model=)")
    feats = folder_features(src, model, dims=dims, **kw)
    return (*stats_of(feats.features, str(src)), feats)


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
) -> float:
    """FID between two image folders or ``.npz`` statistics files."""
    for src in (a, b):  # before loading the network: cheap checks first
        if not str(src).endswith(".npz"):
            check_image_count(len(image_files(src)), dims, str(src))
    if model is None and not (str(a).endswith(".npz") and str(b).endswith(".npz")):
        model = load_fid_model(weights, device)
    net = None if model is None else fid_network(model, backend)
    kw: dict[str, Any] = dict(
        batch_size=batch_size, resize=resize, device=device, skip_bad=skip_bad, show_progress=show_progress
    )
    m1, s1, _ = source_stats(a, net, dims, **kw)
    m2, s2, _ = source_stats(b, net, dims, **kw)
    return frechet_distance(m1, s1, m2, s2)


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
