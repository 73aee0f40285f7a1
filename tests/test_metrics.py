"""FID / IS / KID against the reference implementations (pytorch-fid, torch-fidelity) with the same
random weights, built by pytorch-fid's own classes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from inceptionnet import create_model
from inceptionnet.commands import run
from inceptionnet.metrics import scores as M

pfi = pytest.importorskip("pytorch_fid.inception")
pfs = pytest.importorskip("pytorch_fid.fid_score")

N_IMAGES = 70  # > 64 + 1: a full-rank covariance at --dims 64


def _reference_inception() -> torch.nn.Module:
    """pytorch-fid's fid_inception_v3() topology with random weights (no download)."""
    t = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    t.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    t.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    t.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    t.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    t.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    t.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    t.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    t.Mixed_7b = pfi.FIDInceptionE_1(1280)
    t.Mixed_7c = pfi.FIDInceptionE_2(2048)
    return t.eval()


@pytest.fixture(scope="module")
def ref_sd() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    sd = _reference_inception().state_dict()
    # non-trivial BN statistics, so that the BN path is checked too
    g = torch.Generator().manual_seed(1)
    for k, v in sd.items():
        if k.endswith("running_mean"):
            sd[k] = torch.randn(v.shape, generator=g) * 0.1
        elif k.endswith("running_var"):
            sd[k] = torch.rand(v.shape, generator=g) + 0.5
    return sd


@pytest.fixture(scope="module")
def weights_file(ref_sd, tmp_path_factory) -> str:
    p = tmp_path_factory.mktemp("w") / "pt_inception-random.pth"
    torch.save(ref_sd, p)
    return str(p)


def _write_folder(path, seed: int, noise: float) -> None:
    from PIL import Image

    path.mkdir()
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:32, 0:32]
    for i in range(N_IMAGES):
        base = (np.sin(xx / (3 + i % 5)) + np.cos(yy / (2 + i % 7))) * 60 + 128
        img = base[..., None] + rng.randn(32, 32, 3) * noise
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path / f"{i:03d}.png")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    _write_folder(root / "a", 0, 10.0)
    _write_folder(root / "b", 1, 40.0)
    return str(root / "a"), str(root / "b")


@pytest.fixture
def patched_pytorch_fid(monkeypatch, ref_sd):
    monkeypatch.setattr(pfi, "load_state_dict_from_url", lambda *a, **k: ref_sd)


def test_state_dict_key_for_key_and_outputs(ref_sd, patched_pytorch_fid):
    ref = _reference_inception()
    ref.load_state_dict(ref_sd)
    ours = create_model("fid_inception_v3", num_classes=1008).eval()
    assert set(ours.state_dict()) == set(ref_sd)
    ours.load_state_dict(ref_sd, strict=True)
    x = torch.rand(2, 3, 299, 299) * 2 - 1
    with torch.no_grad():
        assert (ours(x) - ref(x)).abs().max() <= 1e-5
    blocks = pfi.InceptionV3([0, 1, 2, 3], resize_input=False, normalize_input=False).eval()
    # pytorch-fid's feature blocks, its fid_inception_v3() loading the same weights (patched)
    with torch.no_grad():
        refs = blocks(x)
        for dims, r in zip(M.DIMS, refs, strict=True):
            f, _ = M._taps(ours, x, dims)
            assert (f - r.mean((2, 3))).abs().max() <= 1e-5, dims


def test_flags_default_off_keep_inception_v3():
    m = create_model("inception_v3")
    assert not m.pool_exclude_pad and not m.last_max_pool
    assert m.Mixed_7c.pool == "avg" and m.Mixed_5b.pool == "avg"
    f = create_model("fid_inception_v3", num_classes=1008)
    assert f.Mixed_7c.pool == "max" and f.Mixed_7b.pool == "avg_exclude_pad"
    assert sum(p.numel() for p in f.parameters()) == 23850960


def test_fid_equals_pytorch_fid(folders, weights_file, patched_pytorch_fid):
    a, b = folders
    ref = pfs.calculate_fid_given_paths([a, b], batch_size=32, device="cpu", dims=64, num_workers=0)
    ours = M.fid(a, b, weights=weights_file, dims=64, batch_size=16, show_progress=False)
    assert ref > 0
    assert abs(ours - ref) <= 1e-3 * abs(ref), (ours, ref)
    assert M.fid(a, a, weights=weights_file, dims=64, show_progress=False) == pytest.approx(0, abs=1e-6)


def test_cli_fid_save_stats_and_npz(folders, weights_file, tmp_path, capsys, patched_pytorch_fid):
    a, b = folders
    assert run("fid", [a, b, "--weights", weights_file, "--dims", "64", "--device", "cpu"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("FID: ")
    value = float(line.split()[1])
    out = tmp_path / "a.npz"
    assert run("fid", [a, "--save-stats", str(out), "--weights", weights_file, "--dims", "64"]) == 0
    capsys.readouterr()
    with np.load(out) as f:
        mu, sigma = f["mu"], f["sigma"]
    m_ref, s_ref = pfs.compute_statistics_of_path(a, pfi.InceptionV3([0]), 32, 64, "cpu", 0)
    assert np.allclose(mu, m_ref, rtol=1e-4, atol=1e-6) and np.allclose(sigma, s_ref, rtol=1e-3, atol=1e-6)
    assert run("fid", [str(out), b, "--weights", weights_file, "--dims", "64", "--json"]) == 0
    j = json.loads(capsys.readouterr().out)
    assert j["fid"] == pytest.approx(value, rel=1e-6)


def test_inception_score_and_kid_equal_torch_fidelity():
    tf_isc = pytest.importorskip("torch_fidelity.metric_isc")
    tf_kid = pytest.importorskip("torch_fidelity.metric_kid")
    rng = np.random.RandomState(0)
    logits = rng.randn(100, 1008) * 3
    ref = tf_isc.isc_features_to_metric(torch.from_numpy(logits).float(), splits=10)
    m, s = M.inception_score(logits.astype(np.float32).astype(np.float64), splits=10)
    assert m == pytest.approx(ref["inception_score_mean"], rel=1e-3)
    assert s == pytest.approx(ref["inception_score_std"], rel=1e-3)
    f1 = rng.randn(120, 64).astype(np.float32)
    f2 = (rng.randn(120, 64) + 0.3).astype(np.float32)
    ref = tf_kid.kid_features_to_metric(
        torch.from_numpy(f1), torch.from_numpy(f2), kid_subsets=20, kid_subset_size=50, verbose=False
    )
    m, s = M.kernel_inception_distance(
        f1.astype(np.float64), f2.astype(np.float64), subsets=20, subset_size=50
    )
    assert m == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-3)
    assert s == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-3)


def test_errors(folders, weights_file, tmp_path, capsys):
    a, _ = folders
    empty = tmp_path / "empty"
    empty.mkdir()
    bad_npz = tmp_path / "bad.npz"
    np.savez(bad_npz, x=np.zeros(3))
    wrong = tmp_path / "wrong.pth"
    torch.save(create_model("googlenet").state_dict(), wrong)
    cases = [
        ([str(empty), a, "--weights", weights_file, "--dims", "64"], "no images"),
        ([a, a, "--weights", weights_file, "--dims", "192"], "at least 193"),
        ([str(bad_npz), a, "--weights", weights_file, "--dims", "64"], "'mu' and 'sigma'"),
        ([a, a, "--weights", str(wrong), "--dims", "64"], "not the FID network"),
    ]
    for argv, msg in cases:
        assert run("fid", argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and msg in err[0], err


def test_cli_isc_equals_torch_fidelity_on_same_logits(folders, weights_file, ref_sd, capsys):
    tf_isc = pytest.importorskip("torch_fidelity.metric_isc")
    a, _ = folders
    model = M.load_fid_model(weights_file)
    feats = M.folder_features(a, model, dims=2048, batch_size=35, show_progress=False)
    assert feats.logits.shape == (N_IMAGES, 1008)
    # torch-fidelity's layer "logits_unbiased": pool3 @ fc.weight.T, from pytorch-fid's network
    ref_net = _reference_inception()
    ref_net.load_state_dict(ref_sd)
    from PIL import Image

    x = torch.stack([torch.from_numpy(np.array(Image.open(f).convert("RGB"))) for f in feats.files])
    x = x.permute(0, 3, 1, 2).float() / 255
    x = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
    with torch.no_grad():
        ref_net.fc = torch.nn.Identity()
        pool = ref_net(x)
    ref_logits = pool @ ref_sd["fc.weight"].T
    assert np.abs(feats.logits - ref_logits.double().numpy()).max() <= 1e-4
    ref = tf_isc.isc_features_to_metric(ref_logits, splits=5)
    assert run("isc", [a, "--weights", weights_file, "--splits", "5", "--json"]) == 0
    j = json.loads(capsys.readouterr().out)
    assert j["isc_mean"] == pytest.approx(ref["inception_score_mean"], rel=1e-3)
    assert j["isc_std"] == pytest.approx(ref["inception_score_std"], rel=1e-3, abs=1e-9)
