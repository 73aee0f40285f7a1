"""Precision / recall equal torch-fidelity's ``prc``, density / coverage equal the ``prdc`` package,
on the same random features; the row-block computation equals the one-block one (issue 32, item 1).
Feature arrays are made here: no network runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inceptionnet import metrics
from inceptionnet.errors import NonFiniteError, UsageError
from inceptionnet.metrics import prdc as P


@pytest.fixture(scope="module")
def feats() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(0)
    real = rng.randn(300, 64)
    fake = rng.randn(250, 64) * 1.15 + 0.25  # overlapping, not the same: shares strictly in (0, 1)
    return real, fake


def test_precision_recall_equal_torch_fidelity(feats) -> None:
    prc = pytest.importorskip("torch_fidelity.metric_prc")
    real, fake = feats
    for k in (3, 5):
        ours = metrics.precision_recall(real, fake, k=k)
        # torch-fidelity: input1 (features_1) is the generated set, input2 the real one
        ref = prc.prc_features_to_metric(
            torch.from_numpy(fake), torch.from_numpy(real), prc_neighborhood=k, verbose=False
        )
        # the same counts (it averages in float32: 0.14000000059604645 for 35 / 250)
        assert ours == pytest.approx((ref["precision"], ref["recall"]), abs=1e-6), (k, ours, ref)
        assert 0 < ours[0] < 1 and 0 < ours[1] < 1  # neither share trivial
    # its float32 default (the features as it extracts them) gives the same shares here
    ref32 = prc.prc_features_to_metric(
        torch.from_numpy(fake).float(), torch.from_numpy(real).float(), prc_neighborhood=3, verbose=False
    )
    assert metrics.precision_recall(real, fake) == pytest.approx(
        (ref32["precision"], ref32["recall"]), abs=1e-6
    )


def test_density_coverage_equal_prdc(feats, capsys) -> None:
    prdc = pytest.importorskip("prdc")
    real, fake = feats
    for k in (3, 5):
        ref = prdc.compute_prdc(real, fake, nearest_k=k)
        density, coverage = metrics.density_coverage(real, fake, k=k)
        assert density == pytest.approx(float(ref["density"]), rel=1e-12)
        assert coverage == float(ref["coverage"])
        assert 0 < coverage < 1 and density > 0
    capsys.readouterr()  # prdc prints the sample counts


def test_row_blocks_equal_one_block(feats, monkeypatch) -> None:
    real, fake = feats
    whole = P.precision_recall(real, fake, block_rows=300), P.density_coverage(real, fake, block_rows=300)
    for block in (1, 7, 64):
        assert P.precision_recall(real, fake, block_rows=block) == whole[0]
        assert P.density_coverage(real, fake, block_rows=block) == whole[1]
        # one-row blocks go through GEMV, others GEMM: the last bits may differ, the shares not
        assert torch.allclose(
            P.knn_radii(real, 3, block_rows=block), P.knn_radii(real, 3), rtol=1e-13, atol=0
        )
    # the default: blocks of BLOCK_ELEMENTS // N rows, never the whole N x N matrix at once
    monkeypatch.setattr(P, "BLOCK_ELEMENTS", 3000)
    shapes = [tuple(d.shape) for _, d in P._blocks(torch.from_numpy(real), torch.from_numpy(fake), None)]
    assert shapes == [(12, 250)] * 25
    assert (P.precision_recall(real, fake), P.density_coverage(real, fake)) == whole


def test_radius_excludes_the_sample_itself() -> None:
    x = np.array([[0.0], [1.0], [3.0], [7.0]])
    assert P.knn_radii(x, 1).tolist() == [1.0, 1.0, 2.0, 4.0]
    assert P.knn_radii(x, 2).tolist() == [3.0, 2.0, 3.0, 6.0]
    # every fake equal to a real: precision and recall 1, coverage 1
    assert metrics.precision_recall(x, x, k=1) == (1.0, 1.0)
    assert metrics.density_coverage(x, x, k=1)[1] == 1.0


def test_bad_features_refused() -> None:
    x = np.random.RandomState(0).randn(10, 4)
    with pytest.raises(UsageError, match="different widths: 4 and 3"):
        metrics.precision_recall(x, x[:, :3])
    with pytest.raises(UsageError, match="fake: 3 samples; k = 3 nearest neighbours need at least 4"):
        metrics.precision_recall(x, x[:3])
    with pytest.raises(UsageError, match="N x D"):
        metrics.density_coverage(x[0], x)
    with pytest.raises(UsageError, match="positive integer"):
        metrics.precision_recall(x, x, k=0)
    with pytest.raises(UsageError, match="block_rows"):
        metrics.precision_recall(x, x, block_rows=0)
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(NonFiniteError, match="real features hold NaN"):
        metrics.density_coverage(bad, x)
