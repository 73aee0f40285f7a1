"""Precision / recall equal torch-fidelity's ``prc``, density / coverage equal the ``prdc`` package,
on the same random features; the row-block computation equals the one-block one (issue 32, item 1).
Saved references keep the features, checked from their headers, with the network and resize that
made them, and every metric runs against one (item 3). Only the last test runs the network."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from inceptionnet import metrics
from inceptionnet.commands import run
from inceptionnet.errors import NonFiniteError, UsageError
from inceptionnet.metrics import prdc as P
from inceptionnet.metrics import scores as M


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


# --- saved references keep the features (issue 32, item 3) ---------------------------------------

N_IMAGES = 70  # > 64 + 1: a full-rank covariance at --dims 64


def write_folder(path, seed: int, noise: float, n: int = N_IMAGES) -> str:
    from PIL import Image

    path.mkdir()
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:32, 0:32]
    for i in range(n):
        base = (np.sin(xx / (3 + i % 5)) + np.cos(yy / (2 + i % 7))) * 60 + 128
        img = base[..., None] + rng.randn(32, 32, 3) * noise
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path / f"{i:03d}.png")
    return str(path)


def _reference(n: int = 80, d: int = 64, **kw) -> M.Reference:
    return M.Reference.of_features(np.random.RandomState(n).randn(n, d), **kw)


def test_reference_round_trip_without_pickles(tmp_path) -> None:
    ref = _reference(network="ab" * 32, resize="clean", source="x")
    path = tmp_path / "r.npz"
    M.save_reference(path, ref)
    with np.load(path, allow_pickle=False) as z:  # every member a plain array
        assert set(z.files) == {"mu", "sigma", "features", "meta"}
        assert all(z[k].dtype != object for k in z.files)
    back = M.load_reference(path, 64)
    assert back.saved and back.count == 80 and back.network == "ab" * 32 and back.resize == "clean"
    assert np.array_equal(back.features, ref.features) and np.array_equal(back.sigma, ref.sigma)
    assert M.reference_count(path) == 80
    # the network's features are float32 values: stored as float32, losslessly
    f32 = np.random.RandomState(1).randn(80, 64).astype(np.float32).astype(np.float64)
    M.save_reference(path, M.Reference.of_features(f32))
    with np.load(path, allow_pickle=False) as z:
        assert z["features"].dtype == np.float32
    assert np.array_equal(M.load_reference(path).features, f32)
    # pytorch-fid reads it (mu, sigma); an old mu / sigma file still gives FID, not KID / PRC
    old = tmp_path / "old.npz"
    np.savez(old, mu=ref.mu, sigma=ref.sigma)
    legacy = M.load_reference(old, 64)
    assert legacy.features is None and legacy.count is None and M.reference_count(old) is None
    with pytest.raises(
        UsageError, match="--prc needs features; .*old.npz holds only mu and sigma .*save it again"
    ):
        legacy.features_for("--prc")


def _npz_members(path, **members: bytes) -> None:
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(f"{name}.npy", data)


def _npy(arr: np.ndarray, shape: tuple[int, ...] | None = None) -> bytes:
    import io

    buf = io.BytesIO()
    if shape is None:
        np.lib.format.write_array(buf, arr)
        return buf.getvalue()
    header = {"descr": np.lib.format.dtype_to_descr(arr.dtype), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + arr.tobytes()


def test_reference_headers_checked_before_reading(tmp_path) -> None:
    mu, sigma = np.zeros(64), np.eye(64)
    cases = {
        "huge features": (_npy(np.zeros((2, 64)), (10**9, 64)), "declare 1000000000 x 64 values"),
        "other width": (_npy(np.zeros((5, 32))), "not an N x 64 array of floats"),
        "int features": (_npy(np.zeros((5, 64), np.int64)), "not an N x 64 array of floats"),
        "nan features": (_npy(np.full((5, 64), np.nan)), "features hold NaN"),
    }
    for name, (features, msg) in cases.items():
        bad = tmp_path / f"{name}.npz"
        _npz_members(bad, mu=_npy(mu), sigma=_npy(sigma), features=features)
        with pytest.raises((UsageError, NonFiniteError), match=msg) as e:
            M.load_reference(bad, 64)
        assert str(bad) in str(e.value) and "\n" not in str(e.value), name
    for meta, msg in ((b"not json", "meta is not JSON"), (b'{"resize": "bicubic"}', "is not a reference's")):
        bad = tmp_path / "meta.npz"
        _npz_members(bad, mu=_npy(mu), sigma=_npy(sigma), meta=_npy(np.frombuffer(meta, np.uint8)))
        with pytest.raises(UsageError, match=msg):
            M.load_reference(bad, 64)


def test_saved_reference_must_match_network_and_resize(tmp_path) -> None:
    a = tmp_path / "a.npz"
    b = tmp_path / "b.npz"
    M.save_reference(a, _reference(network="ab" * 32, resize="clean"))
    M.save_reference(b, _reference(network="cd" * 32, resize="clean"))
    ra, rb = M.load_reference(a), M.load_reference(b)
    M.check_same_rules([ra, ra], None, "pytorch-fid")  # two files: compared with each other
    with pytest.raises(UsageError, match=r"b.npz was made by the FID network cdcd.* --resize clean; .*a.npz was made "
                       r"by network abab.* and --resize clean"):  # fmt: skip
        M.check_same_rules([ra, rb], None, "pytorch-fid")

    class Net:  # what check_same_rules reads of a FIDNetwork
        sha256 = "ab" * 32

    with pytest.raises(
        UsageError, match=r"a.npz .* --resize clean; this run uses network abab.* --resize torch-fidelity"
    ):
        M.check_same_rules([ra], Net(), "torch-fidelity")  # type: ignore[arg-type]
    M.check_same_rules([ra], Net(), "clean")  # type: ignore[arg-type]


def _cli_json(argv: list[str], capsys) -> dict:
    rc = run("fid", [*argv, "--json"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    return json.loads(cap.out)


def test_cli_every_metric_against_a_saved_reference(fid_weights_file, tmp_path, capsys) -> None:
    a = write_folder(tmp_path / "a", 0, 10.0)
    b = write_folder(tmp_path / "b", 1, 40.0)
    common = ["--weights", fid_weights_file, "--dims", "64", "--device", "cpu", "--batch-size", "35"]
    metrics_flags = ["--kid", "--kid-subsets", "5", "--kid-subset-size", "20", "--prc"]
    direct = _cli_json([a, b, *common, *metrics_flags], capsys)
    assert 0 <= direct["precision"] <= 1 and 0 <= direct["coverage"] <= 1 and direct["fid"] > 0
    ref = tmp_path / "a.npz"
    assert _cli_json([a, "--save-stats", str(ref), *common], capsys)["images"] == N_IMAGES
    saved = M.load_reference(ref, 64)
    assert saved.count == N_IMAGES and saved.resize == "pytorch-fid" and len(saved.network or "") == 64
    against = _cli_json([str(ref), b, *common, *metrics_flags], capsys)
    assert against == direct  # the features are kept exactly (float32 values stored as float32)
    # the same reference under another resize rule, or made by other weights: refused, both named
    assert run("fid", [str(ref), b, *common, "--resize", "clean"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resize pytorch-fid" in err[0] and "this run uses network" in err[0], err
    assert "--resize clean" in err[0]
    other = tmp_path / "other.npz"
    M.save_reference(other, M.Reference(saved.mu, saved.sigma, saved.features, "0" * 64, "pytorch-fid"))
    assert run("fid", [str(other), b, *common]) == 2
    err = capsys.readouterr().err
    assert "made by the FID network 0000000000000000" in err and saved.network[:16] in err
    # an old mu / sigma file: FID yes, KID / PRC one line saying to save it again
    old = tmp_path / "old.npz"
    np.savez(old, mu=saved.mu, sigma=saved.sigma)
    assert _cli_json([str(old), b, *common], capsys)["fid"] == pytest.approx(direct["fid"], rel=1e-12)
    assert run("fid", [str(old), b, *common, "--prc"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and "saved without features" in err[0] and "save it again with this version" in err[0]
    )
