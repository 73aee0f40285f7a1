"""FID, Inception Score and KID with the FID network (``fid_inception_v3``), as pytorch-fid and
torch-fidelity compute them.

* Features: images read as RGB (``data.read_image``), scaled to [0, 1], resized to 299x299 (mode
  ``pytorch-fid``: bilinear, ``align_corners=False``), scaled to [-1, 1]; the 2048-d pool3 features
  (or the 768 / 192 / 64-d taps, globally averaged, as pytorch-fid's blocks 2 / 1 / 0) and the
  1008-way logits. Folders are read in batches (never all images in memory).
* FID: float64 mean and covariance (``np.cov``, ddof 1), ``scipy.linalg.sqrtm`` exactly as
  pytorch-fid's ``calculate_frechet_distance``.
* IS and KID: torch-fidelity's definitions (``inception_score``, ``kernel_inception_distance``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import data as D
from ..errors import CheckpointError, DataNotFoundError
from ..runtime import progress

__all__ = [
    "DIMS",
    "RESIZE_MODES",
    "Features",
    "frechet_distance",
    "fid",
    "folder_features",
    "image_files",
    "inception_score",
    "kernel_inception_distance",
    "load_fid_model",
    "load_stats",
    "save_stats",
    "stats_of",
]

DIMS = (64, 192, 768, 2048)
RESIZE_MODES = ("pytorch-fid",)
# pytorch-fid's IMAGE_EXTENSIONS (it globs '*.ext' in the folder, not recursively)
IMAGE_EXTENSIONS = ("bmp", "jpg", "jpeg", "pgm", "png", "ppm", "tif", "tiff", "webp")
FID_WEIGHTS = "tf_2015_12_05"


@dataclass
class Features:
    """Per-image features (N x dims, float64) and the 1008-way unbiased logits (N x 1008, float64; with
    dims 2048 only) of a folder."""

    features: np.ndarray
    logits: np.ndarray
    files: list[str]


def load_fid_model(
    weights: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu"
) -> nn.Module:
    """The FID network in eval mode: ``weights`` a state_dict file key-for-key pytorch-fid's (e.g.
    ``pt_inception-2015-12-05-6726825d.pth``), or None for the weight entry (downloaded, sha256-checked)."""
    from ..models import create_model

    src = FID_WEIGHTS if weights is None else str(weights)
    try:
        model = create_model("fid_inception_v3", weights=src, num_classes=1008, new_head_ok=False)
    except CheckpointError as e:
        if weights is None:
            raise
        raise CheckpointError(
            f"{src} is not the FID network's weights (pytorch-fid's pt_inception-2015-12-05 layout): {e}"
        ) from None
    return model.eval().to(device)


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The images of ``folder`` as pytorch-fid takes them: its extensions, not recursive, sorted."""
    p = Path(folder)
    if not p.is_dir():
        raise DataNotFoundError(f"{p}: not a folder of images nor an .npz statistics file")
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS)
    if not files:
        raise DataNotFoundError(f"{p}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
    return files


def _batches(files: Sequence[Path], batch_size: int) -> Iterator[Tensor]:
    for i in range(0, len(files), batch_size):
        yield torch.stack([D.read_image(f, 3) for f in files[i : i + batch_size]]).float() / 255.0


def _preprocess(x: Tensor, resize: str) -> Tensor:
    """[0, 1] N x 3 x H x W -> the network's 299x299 input in [-1, 1]."""
    if resize != "pytorch-fid":
        raise ValueError(f"--resize {resize!r}: expected one of {', '.join(RESIZE_MODES)}")
    x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    return 2 * x - 1


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


def folder_features(
    folder: str | os.PathLike[str],
    model: nn.Module,
    *,
    dims: int = 2048,
    batch_size: int = 50,
    resize: str = "pytorch-fid",
    device: str | torch.device = "cpu",
    show_progress: bool = True,
) -> Features:
    """Features of every image of ``folder``, read ``batch_size`` at a time."""
    if dims not in DIMS:
        raise ValueError(f"--dims {dims}: expected one of {', '.join(map(str, DIMS))}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    files = image_files(folder)
    feats: list[np.ndarray] = []
    logits: list[np.ndarray] = []
    total = (len(files) + batch_size - 1) // batch_size
    for batch in progress(
        _batches(files, batch_size), total=total, desc=f"features {folder}", enabled=show_progress
    ):
        f, lg = _taps(model, _preprocess(batch.to(device), resize), dims)
        feats.append(f.cpu().double().numpy())
        if lg is not None:
            logits.append(lg.cpu().double().numpy())
    return Features(
        np.concatenate(feats),
        np.concatenate(logits) if logits else np.empty((0, 1008)),
        [str(f) for f in files],
    )


def stats_of(features: np.ndarray, source: str = "") -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) in float64 as pytorch-fid: ``np.mean`` and ``np.cov(rowvar=False)``."""
    n, d = features.shape
    if n < d + 1:
        raise ValueError(
            f"{source or 'the images'}: {n} images give a rank-deficient {d}x{d} covariance; FID needs "
            f"at least {d + 1} (use more images or a smaller --dims)"
        )
    return np.mean(features, axis=0), np.cov(features, rowvar=False)


def load_stats(path: str | os.PathLike[str], dims: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``mu`` and ``sigma`` of a pytorch-fid ``.npz`` statistics file, checked."""
    try:
        with np.load(path, allow_pickle=False) as f:
            if "mu" not in f or "sigma" not in f:
                raise ValueError(
                    f"{path}: an .npz statistics file needs arrays 'mu' and 'sigma', has {sorted(f)}"
                )
            mu, sigma = np.asarray(f["mu"], np.float64), np.asarray(f["sigma"], np.float64)
    except (OSError, EOFError) as e:
        raise ValueError(f"{path}: not a readable .npz file ({e})") from None
    except ValueError as e:
        if str(path) in str(e):
            raise
        raise ValueError(f"{path}: not a readable .npz statistics file ({e})") from None
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"{path}: mu {mu.shape} and sigma {sigma.shape} are not a D and a D x D array")
    if dims is not None and mu.shape[0] != dims:
        raise ValueError(f"{path}: statistics of {mu.shape[0]}-d features, --dims is {dims}")
    return mu, sigma


def save_stats(path: str | os.PathLike[str], mu: np.ndarray, sigma: np.ndarray) -> None:
    """pytorch-fid's format: ``np.savez_compressed(path, mu=, sigma=)``, written atomically."""
    from ..fileio import atomic_write

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, mu=mu, sigma=sigma)

    atomic_write(path, write)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """pytorch-fid's ``calculate_frechet_distance``: ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrt(S1 S2))."""
    try:
        from scipy import linalg
    except ImportError:
        raise ImportError("FID needs scipy (scipy.linalg.sqrtm, as pytorch-fid): pip install scipy") from None

    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics of different dims: {mu1.shape[0]} and {mu2.shape[0]}")
    diff = mu1 - mu2
    covmean, _ = linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"FID: imaginary component {np.max(np.abs(covmean.imag))} in sqrtm(S1 S2)")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def _stats_of_source(
    src: str | os.PathLike[str], model: nn.Module | None, dims: int, **kw: Any
) -> tuple[np.ndarray, np.ndarray]:
    if str(src).endswith(".npz"):
        return load_stats(src, dims)
    assert model is not None
    feats = folder_features(src, model, dims=dims, **kw)
    return stats_of(feats.features, str(src))


def fid(
    a: str | os.PathLike[str],
    b: str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str] | None = None,
    model: nn.Module | None = None,
    dims: int = 2048,
    batch_size: int = 50,
    resize: str = "pytorch-fid",
    device: str | torch.device = "cpu",
    show_progress: bool = True,
) -> float:
    """FID between two image folders or ``.npz`` statistics files."""
    if model is None and not (str(a).endswith(".npz") and str(b).endswith(".npz")):
        model = load_fid_model(weights, device)
    kw: dict[str, Any] = dict(
        batch_size=batch_size, resize=resize, device=device, show_progress=show_progress
    )
    m1, s1 = _stats_of_source(a, model, dims, **kw)
    m2, s2 = _stats_of_source(b, model, dims, **kw)
    return frechet_distance(m1, s1, m2, s2)


def inception_score(
    logits: np.ndarray, splits: int = 10, *, shuffle: bool = True, seed: int = 2020
) -> tuple[float, float]:
    """torch-fidelity's ``isc``: the images shuffled (numpy RandomState(seed).permutation), softmax of
    the 1008 logits, in ``splits`` consecutive chunks exp(mean KL(p(y|x) || p(y))); mean and std
    (ddof 0) over the chunks. torch-fidelity's default layer is ``logits_unbiased`` (fc without its
    bias), which is what :func:`folder_features` returns."""
    if logits.shape[0] < splits:
        raise ValueError(
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
        kl = (part_p * (part_log - py.log())).sum(dim=1).mean()
        scores.append(kl.exp())
    s = torch.stack(scores)
    return float(s.mean()), float(s.std(unbiased=False))


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
    over ``subsets`` random subsets of ``subset_size`` (numpy RandomState(seed)); mean and std."""
    n = min(f1.shape[0], f2.shape[0])
    if n < subset_size:
        raise ValueError(f"KID subset size {subset_size} is larger than the number of images ({n})")
    rng = np.random.RandomState(seed)
    mmds = np.zeros(subsets)
    for i in range(subsets):
        x = f1[rng.choice(len(f1), subset_size, replace=False)]
        y = f2[rng.choice(len(f2), subset_size, replace=False)]
        mmds[i] = _mmd2(x, y, degree, gamma, coef0)
    return float(np.mean(mmds)), float(np.std(mmds))


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
