"""The metric objects (metrics/objects.py): equal to torchmetrics 1.9 given the same feature module,
equal to the folder path on the same images (the FID network, random calibrated weights, the three
resize rules), synced over two gloo ranks, and their refusals."""

from __future__ import annotations

import importlib.util
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from inceptionnet.errors import UsageError
from inceptionnet.metrics import FID, KID, InceptionScore, PrecisionRecall
from inceptionnet.metrics import objects as O
from inceptionnet.metrics import scores as M

HAS_PRDC = importlib.util.find_spec("inceptionnet.metrics.prdc") is not None


class TinyFeatures(nn.Module):
    """A cheap stand-in for the FID network: uint8 or float images -> N x width float64 features."""

    def __init__(self, width: int = 8, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, width, 5, stride=2)
        self.num_features = width  # torchmetrics then skips its 299x299 dummy image

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        y = torch.tanh(self.conv(x * 4 - 2))
        return torch.cat([y.mean((2, 3)), y.amax((2, 3))], 1)[:, : self.num_features].double()


def images(n: int, seed: int, noise: float, size: int = 32) -> torch.Tensor:
    """n uint8 3 x size x size images: smooth patterns of a few frequencies plus noise."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    out = []
    for i in range(n):
        base = (np.sin(xx / (2 + (i + seed) % 5)) + np.cos(yy / (2 + (i * 3 + seed) % 7))) * 60 + 128
        img = base[..., None] + rng.randn(size, size, 3) * noise + rng.randn(3) * 20
        out.append(np.clip(img, 0, 255).astype(np.uint8).transpose(2, 0, 1))
    return torch.from_numpy(np.stack(out))


@pytest.fixture(scope="module")
def sets() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return images(40, 0, 10.0), images(40, 1, 40.0), images(30, 2, 25.0)


def feed(metric, real: torch.Tensor, fake: torch.Tensor, step: int = 16) -> None:
    for i in range(0, len(real), step):
        metric.update(real[i : i + step], real=True)
    for i in range(0, len(fake), step):
        metric.update(fake[i : i + step], real=False)


def test_fid_kid_is_equal_torchmetrics_given_the_same_feature_module(sets):
    tm = pytest.importorskip("torchmetrics.image")
    real, fake, other = sets
    module = TinyFeatures()
    ours, theirs = FID(feature=module), tm.FrechetInceptionDistance(feature=module)
    feed(ours, real, fake)
    feed(theirs, real, fake)
    assert ours.compute() == pytest.approx(float(theirs.compute()), rel=1e-9)  # measured 3e-12
    # reset forgets the generated images only with reset_real_features=False, as torchmetrics
    keep, keep_tm = (
        FID(feature=module, reset_real_features=False),
        tm.FrechetInceptionDistance(feature=module, reset_real_features=False),
    )
    for m in (ours, theirs, keep, keep_tm):
        feed(m, real, fake)
        m.reset()
        m.update(other, real=False)
    for m in (keep, keep_tm):
        m.update(real[:4], real=True)  # real images added to the kept ones
    assert keep.compute() == pytest.approx(float(keep_tm.compute()), rel=1e-9)
    with pytest.raises(
        UsageError, match="FID \\(real images\\): none yet; call update\\(images, real=True\\)"
    ):
        ours.compute()  # its real images are gone
    # KID over one subset of all images and IS over one split do not depend on torchmetrics' random
    # permutations: the same numbers
    kid, kid_tm = (
        KID(feature=module, subsets=1, subset_size=30),
        tm.KernelInceptionDistance(feature=module, subsets=1, subset_size=30),
    )
    feed(kid, real[:30], other)
    feed(kid_tm, real[:30], other)
    assert kid.compute()[0] == pytest.approx(float(kid_tm.compute()[0]), rel=1e-9)
    logits = TinyFeatures(width=16, seed=1)
    isc, isc_tm = InceptionScore(feature=logits, splits=1), tm.InceptionScore(feature=logits, splits=1)
    isc.update(fake[:20], real=True)  # not scored
    isc.update(fake, real=False)
    isc_tm.update(fake)
    assert isc.compute()[0] == pytest.approx(float(isc_tm.compute()[0]), rel=1e-9)


def test_objects_equal_the_folder_paths_numbers_on_the_same_features(sets):
    """The folder path computes each number from the N x D features of each folder (stats_of with
    np.cov, frechet_distance, kernel_inception_distance, inception_score): the objects give the same."""
    real, fake, _ = sets
    module = TinyFeatures()
    fr, ff = module(real).numpy(), module(fake).numpy()
    fid = FID(feature=module)
    feed(fid, real, fake, step=7)
    for side, f in ((True, fr), (False, ff)):
        mu, sigma = fid.stats(side)
        ref_mu, ref_sigma = M.stats_of(f)
        np.testing.assert_allclose(mu, ref_mu, rtol=1e-12)
        np.testing.assert_allclose(sigma, ref_sigma, rtol=1e-9, atol=1e-15)
    assert fid.compute() == pytest.approx(M.frechet_distance(*M.stats_of(fr), *M.stats_of(ff)), rel=1e-9)
    kid = KID(feature=module, subsets=5, subset_size=20)
    feed(kid, real, fake, step=7)
    assert np.array_equal(kid.features(True), fr) and np.array_equal(kid.features(False), ff)
    assert kid.compute() == M.kernel_inception_distance(fr, ff, subsets=5, subset_size=20)
    isc = InceptionScore(feature=module, splits=4)
    feed(isc, real, fake, step=7)
    assert isc.compute() == M.inception_score(ff, 4)
    if HAS_PRDC:
        from inceptionnet.metrics.prdc import density_coverage, precision_recall

        prc = PrecisionRecall(feature=module, k=3)
        feed(prc, real, fake, step=7)
        assert prc.compute() == tuple(float(v) for v in precision_recall(fr, ff, k=3))
        assert prc.density_coverage(k=4) == density_coverage(fr, ff, k=4)


@pytest.fixture(scope="module")
def fid_kid(fid_weights_file: str) -> KID:
    """A KID object on the FID network (random calibrated weights), its network built by one update."""
    kid = KID(weights=fid_weights_file, dims=64, subsets=2, subset_size=3)
    kid.update(images(1, 9, 5.0), real=True)
    return kid


@pytest.mark.parametrize("resize", ["pytorch-fid", "torch-fidelity", "clean"])
def test_features_equal_the_folder_path_on_the_same_images(fid_kid, fid_weights_file, resize, tmp_path):
    from PIL import Image

    imgs = torch.cat([images(3, 3, 30.0, size=32), images(2, 4, 30.0, size=32)])
    for i, img in enumerate(imgs):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(tmp_path / f"{i}.png")
    net = fid_kid.network
    assert net.backend == "fast"  # the folder path's default: the fast path
    kid = KID(weights=fid_weights_file, dims=64, resize=resize)
    kid.update(imgs, real=False)
    assert kid.network is net  # one network for every object of this configuration
    folder = M.folder_features(tmp_path, net, dims=64, resize=resize, show_progress=False)
    assert np.array_equal(kid.features(False), folder.features)
    if resize == "pytorch-fid":  # floats in [0, 1]: x 255, not rounded; the same features up to rounding
        kid.update(imgs.float() / 255, real=True)
        np.testing.assert_allclose(kid.features(True), folder.features, rtol=1e-5, atol=1e-6)


def test_image_batch_rules():
    u8 = images(2, 0, 5.0, size=8)
    assert O.image_batch(u8, "t") is u8
    f = O.image_batch(u8.float() / 255, "t")
    assert f.dtype == torch.float32 and torch.allclose(f, u8.float(), atol=1e-4)
    gray = O.image_batch(u8[:, :1], "t")
    assert gray.shape == (2, 3, 8, 8) and torch.equal(gray[:, 2], u8[:, 0])


def test_refusals(sets):
    real, fake, _ = sets
    module = TinyFeatures()
    fid = FID(feature=module)
    bad = [
        (real.float(), "float images must be in \\[0, 1\\], got values in \\[0, 255\\]"),
        (real.float() / 255 * 2 - 1, "pass \\(x \\+ 1\\) / 2"),
        (torch.full((1, 3, 4, 4), float("nan")), "must be in \\[0, 1\\]"),
        (real.int(), "uint8 \\(0-255\\) or floats"),
        (real[0], "N x 3 x H x W"),
        (real[:, :2], "N x 3 x H x W"),
        (np.zeros((1, 3, 4, 4)), "tensor, got 'ndarray'"),
    ]
    for x, msg in bad:
        with pytest.raises(UsageError, match=msg):
            O.image_batch(x, "FID.update")
    fid.update(real[:5], real=True)
    fid.update(fake[:0], real=False)  # an empty shard: nothing
    with pytest.raises(UsageError, match="FID \\(real images\\): 5 images give a rank-deficient 8x8"):
        fid.compute()
    with pytest.raises(UsageError, match="none yet; call update\\(images, real=False\\)"):
        KID(feature=module).features(False)
    with pytest.raises(UsageError, match="the feature= module gave \\(3, 3, 2\\) for 3 images"):
        FID(feature=lambda x: x[:, :, 0, :2]).update(real[:3], real=True)
    with pytest.raises(UsageError, match="at most one of weights=, model= and feature="):
        FID(weights="w.pth", feature=module)
    for kw, msg in (({"dims": 100}, "dims=100"), ({"resize": "nearest"}, "resize='nearest'"),
                    ({"backend": "onnx"}, "backend='onnx'"), ({"batch_size": 0}, "batch_size")):  # fmt: skip
        with pytest.raises(UsageError, match=msg):
            FID(**kw)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _metrics() -> dict:
    m = TinyFeatures()
    out = {
        "fid": FID(feature=m),
        "kid": KID(feature=m, subsets=3, subset_size=20),
        "isc": InceptionScore(feature=m, splits=3),
    }
    if HAS_PRDC:
        out["prc"] = PrecisionRecall(feature=m, k=3)
    return out


def _rank(rank: int, port: int, out: str) -> None:
    """One of two gloo ranks: rank 0 takes the first 25 images of each set, rank 1 the other 15 (and
    no generated images for FID: a rank without any must still take part)."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        real, fake = images(40, 0, 10.0), images(40, 1, 40.0)
        part = slice(0, 25) if rank == 0 else slice(25, 40)
        results = {}
        for name, metric in _metrics().items():
            metric.update(real[part], real=True)
            if not (name == "fid" and rank == 1):
                metric.update(fake[part] if name != "fid" else fake, real=False)
            results[name] = metric.compute()
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_equal_one_process(sets, tmp_path):
    import torch.multiprocessing as mp

    real, fake, _ = sets
    env = {k: os.environ.pop(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK") if k in os.environ}
    try:
        # spawned, not forked: a fork of the pytest-xdist worker is a suspect in lost workers (issue 29 note)
        mp.start_processes(
            _rank, args=(_free_port(), str(tmp_path)), nprocs=2, join=True, start_method="spawn"
        )
    finally:
        os.environ.update(env)
    one = {}
    for name, metric in _metrics().items():
        feed(metric, real, fake, step=40)
        one[name] = metric.compute()
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        assert got.keys() == one.keys()
        for name in one:
            assert np.allclose(got[name], one[name], rtol=1e-9, atol=0), (rank, name)
