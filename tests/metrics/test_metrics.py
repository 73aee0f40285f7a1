"""FID against pytorch-fid with the same random weights (built by pytorch-fid's own classes): the
network, the number, the fast path, the command line, sharding under torchrun, errors.

Each test computes what it needs (no shared feature fixtures): pytest-xdist may run the tests of one
module on different workers, so a shared module fixture would be computed twice."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers import reference_inception
from inceptionnet import create_model
from inceptionnet.commands import run
from inceptionnet.errors import NonFiniteError
from inceptionnet.metrics import scores as M

pfi = pytest.importorskip("pytorch_fid.inception")
pfs = pytest.importorskip("pytorch_fid.fid_score")

N_IMAGES = 70  # > 64 + 1: a full-rank covariance at --dims 64


@pytest.fixture(scope="module")
def ref_sd(fid_weights_file: str) -> dict[str, torch.Tensor]:
    return torch.load(fid_weights_file, weights_only=True)


def write_folder(path, seed: int, noise: float, n: int = N_IMAGES) -> None:
    from PIL import Image

    path.mkdir()
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:32, 0:32]
    for i in range(n):
        base = (np.sin(xx / (3 + i % 5)) + np.cos(yy / (2 + i % 7))) * 60 + 128
        img = base[..., None] + rng.randn(32, 32, 3) * noise
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path / f"{i:03d}.png")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    write_folder(root / "a", 0, 10.0)
    write_folder(root / "b", 1, 40.0)
    return str(root / "a"), str(root / "b")


@pytest.fixture
def patched_pytorch_fid(monkeypatch, ref_sd):
    monkeypatch.setattr(pfi, "load_state_dict_from_url", lambda *a, **k: ref_sd)


def test_state_dict_key_for_key_and_outputs(ref_sd, patched_pytorch_fid):
    ref = reference_inception()
    ref.load_state_dict(ref_sd)
    ours = create_model("fid_inception_v3", num_classes=1008).eval()
    assert set(ours.state_dict()) == set(ref_sd)
    ours.load_state_dict(ref_sd, strict=True)
    x = torch.rand(1, 3, 299, 299) * 2 - 1  # one image: the outputs are per image
    with torch.no_grad():
        assert (ours(x) - ref(x)).abs().max() <= 1e-5
    blocks = pfi.InceptionV3([0, 1, 2, 3], resize_input=False, normalize_input=False).eval()
    # pytorch-fid's feature blocks, its fid_inception_v3() loading the same weights (patched)
    with torch.no_grad():
        refs = blocks(x)
        for dims, r in zip(M.DIMS, refs, strict=True):
            f, _ = M._taps(ours, x, dims)
            assert (f - r.mean((2, 3))).abs().max() <= 1e-5, dims
        fast = M.FIDNetwork(ours, "fast")  # BN folded, 1x1 merged, channels_last
        for dims, r in zip(M.DIMS, refs, strict=True):
            f, _ = fast(x, dims)
            ref = r.mean((2, 3))
            assert (f - ref).abs().max() <= 1e-5 * ref.abs().max() + 1e-5, dims


def test_flags_default_off_keep_inception_v3():
    m = create_model("inception_v3")
    assert not m.pool_exclude_pad and not m.last_max_pool
    assert m.Mixed_7c.pool == "avg" and m.Mixed_5b.pool == "avg"
    f = create_model("fid_inception_v3", num_classes=1008)
    assert f.Mixed_7c.pool == "max" and f.Mixed_7b.pool == "avg_exclude_pad"
    assert sum(p.numel() for p in f.parameters()) == 23850960


def _cli_json(argv: list[str], capsys) -> dict:
    assert run("fid", [*argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def broken_copy(folder: str, path) -> str:
    """``folder`` plus 000_broken.png, a PNG signature and nothing readable after it."""
    shutil.copytree(folder, path)
    (path / "000_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return str(path)


def test_cli_fid_equals_pytorch_fid_save_stats_npz_skip_bad_and_torchrun(
    folders, fid_weights_file, patched_pytorch_fid, tmp_path, capsys
):
    """One pass of pytorch-fid over both folders and of the CLI over each path (the 299x299 network
    dominates, so the checks share them). pytorch-fid's number is an eager fp32 FID of the same network
    (ours in eager mode gives its features, test above); the fast path (the CLI's default) must equal
    it within 1e-4 relative, and the saved statistics its eager statistics."""
    a, b = folders
    # pytorch-fid's calculate_fid_given_paths(batch_size=32, dims=64, num_workers=0), step by step:
    # its statistics of each folder are kept for the saved-statistics check
    model = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[64]])
    (mu_a, sigma_a), (mu_b, sigma_b) = (
        pfs.compute_statistics_of_path(p, model, 32, 64, "cpu", 0) for p in (a, b)
    )
    ref = pfs.calculate_frechet_distance(mu_a, sigma_a, mu_b, sigma_b)
    assert ref > 0
    # decoded in this process (--workers 0): the pipeline's decoding processes are tested in
    # tests/cli/test_pipeline.py; here they would fork the pytest worker itself, whose ONNX Runtime /
    # OpenVINO threads are running (one unexplained crash of that worker was seen under a full load)
    common = ["--weights", fid_weights_file, "--dims", "64", "--device", "cpu", "--batch-size", "35",
              "--workers", "0"]  # fmt: skip
    assert run("fid", [a, b, *common]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("FID: ")
    value = float(line[5:])
    assert value > 0
    assert abs(value - ref) <= 1e-4 * abs(ref), (value, ref)  # fast == pytorch-fid's eager number
    out = tmp_path / "a.npz"
    assert _cli_json([a, "--save-stats", str(out), *common], capsys)["images"] == N_IMAGES
    with np.load(out) as z:  # the fast path's statistics: the eager ones (pytorch-fid's) of a
        assert np.allclose(z["mu"], mu_a, rtol=1e-4, atol=1e-6) and np.allclose(
            z["sigma"], sigma_a, rtol=1e-3, atol=1e-7
        )
        fa = z["features"].astype(np.float64)
    assert M.frechet_distance(*M.stats_of(fa), *M.stats_of(fa)) == pytest.approx(0, abs=1e-6)
    j = _cli_json([str(out), b, *common], capsys)
    assert (
        j["fid"] == pytest.approx(value, rel=1e-9) and j["backend"] == "fast" and j["resize"] == "pytorch-fid"
    )
    # an existing .npz is kept unless --overwrite; --overwrite never replaces another kind of file
    assert run("fid", [a, "--save-stats", str(out), *common]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    weights_copy = tmp_path / "w.pth"
    shutil.copy(fid_weights_file, weights_copy)
    assert run("fid", [a, "--save-stats", str(weights_copy), "--overwrite", *common]) == 2
    assert "refusing to replace it" in capsys.readouterr().err
    # --skip-bad-images leaves the unreadable file out and counts it: the same 70 images as a
    broken = broken_copy(a, tmp_path / "broken")
    argv = [broken, str(out), "--weights", fid_weights_file, "--dims", "64", "--skip-bad-images", "--json"]
    assert run("fid", argv) == 0
    cap = capsys.readouterr()
    assert cap.err.strip() == "skipped 1 unreadable images (--skip-bad-images)"
    assert json.loads(cap.out)["fid"] == pytest.approx(0, abs=1e-6)
    # two processes, each reading half of the folder (the saved side read by both): the same number
    env = dict(__import__("os").environ, OMP_NUM_THREADS="1", INCEPTIONNET_NO_DOWNLOAD="1")
    env.pop("RANK", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "inceptionnet.metrics", "fid", str(out), b, *common, "--json"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1  # rank 0 prints
    assert json.loads(lines[0])["fid"] == pytest.approx(value, rel=1e-6)


def test_errors(folders, fid_weights_file, ref_sd, tmp_path, capsys):
    a, _ = folders
    empty = tmp_path / "empty"
    empty.mkdir()
    bad_npz = tmp_path / "bad.npz"
    np.savez(bad_npz, x=np.zeros(3))
    npz_192 = tmp_path / "s192.npz"
    np.savez(npz_192, mu=np.zeros(192), sigma=np.eye(192))
    wrong = tmp_path / "wrong.pth"
    torch.save(create_model("googlenet").state_dict(), wrong)
    nan = tmp_path / "nan.pth"
    torch.save(
        {**ref_sd, "Conv2d_1a_3x3.conv.weight": ref_sd["Conv2d_1a_3x3.conv.weight"] * float("nan")}, nan
    )
    broken = broken_copy(a, tmp_path / "broken")
    w = ["--weights", fid_weights_file]
    cases = [
        ([str(empty), a, *w, "--dims", "64"], "no images"),
        ([a, a, *w, "--dims", "192"], "needs at least 193"),
        ([str(bad_npz), a, *w, "--dims", "64"], "'mu' and 'sigma'"),
        ([str(npz_192), a, *w, "--dims", "64"], "192-d features, --dims is 64"),
        ([a, a, "--weights", str(wrong), "--dims", "64"], "not the FID network"),
        # the first batch shows it: 2 images, not 50
        ([a, a, "--weights", str(nan), "--dims", "64", "--batch-size", "2"], "NaN or infinite features"),
        ([broken, a, *w, "--dims", "64"], "000_broken.png"),
        ([a, a, *w, "--dims", "64", "--kid", "--kid-subset-size", "71"], "--kid-subset-size 70 or less"),
        ([str(npz_192), a, *w, "--dims", "192", "--kid"], "holds only mu and sigma"),
    ]
    for argv, msg in cases:
        assert run("fid", argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and msg in err[0], err
    assert run("isc", [a, *w, "--splits", "71"]) == 2
    assert "fewer than --splits 71" in capsys.readouterr().err
    with pytest.raises(NonFiniteError):
        M.frechet_distance(np.zeros(2), np.eye(2) * np.nan, np.zeros(2), np.eye(2))
