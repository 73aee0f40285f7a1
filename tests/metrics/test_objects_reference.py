"""Metric objects against a saved reference (issue 32 item 4 with item 3): ``FID.from_reference(path)``
(or ``reference=``) takes the real side from a file of ``save_reference``, so only the generated
images are updated; the numbers equal the functions on the same features, and a reference that
cannot serve (no features for KID, another network, real images updated anyway) is one clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from inceptionnet.errors import UsageError
from inceptionnet.metrics import FID, KID, InceptionScore, PrecisionRecall, frechet_distance
from inceptionnet.metrics.prdc import precision_recall
from inceptionnet.metrics.scores import (
    Reference,
    kernel_inception_distance,
    save_reference,
    save_stats,
    stats_of,
)

D = 6


def flat(t: torch.Tensor) -> torch.Tensor:
    """The feature= module: N x D x 1 x 1 'images' -> N x D features."""
    return t.flatten(1)


@pytest.fixture(scope="module")
def feats() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    real = rng.normal(size=(40, D))
    fake = rng.normal(0.3, 1.2, size=(30, D))
    return real, fake


@pytest.fixture(scope="module")
def ref_file(tmp_path_factory: pytest.TempPathFactory, feats: tuple[np.ndarray, np.ndarray]) -> Path:
    p = tmp_path_factory.mktemp("ref") / "real.npz"
    save_reference(p, Reference.of_features(feats[0], source="real"))
    return p


def _images(f: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(f).float().reshape(len(f), D, 1, 1)


def test_fid_from_reference_equals_the_function(ref_file: Path, feats: tuple[np.ndarray, np.ndarray]) -> None:
    real, fake = feats
    fake32 = _images(fake).flatten(1).double().numpy()  # what the object sees: float32 features
    want = frechet_distance(*stats_of(real, "real"), *stats_of(fake32, "fake"))  # the file keeps float64
    m = FID.from_reference(ref_file, feature=flat)
    for part in np.array_split(fake, 3):
        m.update(_images(part), real=False)
    assert m.compute() == pytest.approx(want, rel=1e-9)
    m.reset()  # the generated side goes, the reference stays
    m.update(_images(fake), real=False)
    assert m.compute() == pytest.approx(want, rel=1e-9)
    assert FID(reference=ref_file, feature=flat) is not None  # the keyword form


def test_kid_and_precision_recall_use_the_saved_features(
    ref_file: Path, feats: tuple[np.ndarray, np.ndarray]
) -> None:
    real, fake = feats
    fake32 = _images(fake).flatten(1).double().numpy()
    kid = KID.from_reference(ref_file, feature=flat, subsets=5, subset_size=20)
    kid.update(_images(fake), real=False)
    assert kid.compute() == pytest.approx(kernel_inception_distance(real, fake32, subsets=5, subset_size=20))
    pr = PrecisionRecall.from_reference(ref_file, feature=flat, k=3)
    pr.update(_images(fake), real=False)
    p, r = precision_recall(real, fake32, k=3)
    assert pr.compute() == pytest.approx((float(p), float(r)))


def test_a_reference_that_cannot_serve_is_one_clear_error(
    tmp_path: Path, ref_file: Path, feats: tuple[np.ndarray, np.ndarray]
) -> None:
    real, fake = feats
    m = FID.from_reference(ref_file, feature=flat)
    with pytest.raises(UsageError, match="real=False"):
        m.update(_images(real), real=True)
    moments = tmp_path / "moments.npz"
    save_stats(moments, *stats_of(real, "real"))
    kid = KID.from_reference(moments, feature=flat, subsets=2, subset_size=10)
    kid.update(_images(fake), real=False)
    with pytest.raises(UsageError, match="needs features"):
        kid.compute()
    other = tmp_path / "other.npz"
    save_reference(other, Reference.of_features(real, network="a" * 64, resize="pytorch-fid"))
    with pytest.raises(UsageError, match="feature="):
        FID.from_reference(other, feature=flat)
    wide = FID.from_reference(ref_file, feature=lambda t: t.flatten(1)[:, :4])
    wide.update(_images(fake), real=False)
    with pytest.raises(UsageError, match="6-d"):
        wide.compute()
    with pytest.raises(UsageError, match="no reference"):
        InceptionScore(reference=ref_file)
