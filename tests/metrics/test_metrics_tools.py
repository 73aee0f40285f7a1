"""The other tools' numbers: torch-fidelity's TF1 bilinear resize and clean-fid's PIL bicubic resize
(equal to their own functions), IS / KID / FID equal to torch-fidelity's full pipeline
(``calculate_metrics`` on the same folders and the same random weights file), IS / KID functions,
and how FID moves with noise and blur on Fashion-MNIST (random weights: see docs/METRICS.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inceptionnet import data as D
from inceptionnet.commands import run
from inceptionnet.metrics import resize as R
from inceptionnet.metrics import scores as M

tfi = pytest.importorskip("torch_fidelity")


def fmnist_folder(path, start: int, n: int, transform=None) -> str:
    """Fashion-MNIST test images [start, start + n) as grayscale PNGs (read as RGB by every tool)."""
    from PIL import Image

    try:
        images, _ = D.load_fashion_mnist("test")
    except D.DataNotFoundError as e:  # pragma: no cover - make setup installs it
        pytest.skip(f"Fashion-MNIST not installed: {e}")
    path.mkdir()
    for i in range(n):
        img = images[start + i].numpy()
        if transform is not None:
            img = transform(img, i)
        Image.fromarray(img).save(path / f"{i:03d}.png")
    return str(path)


def test_tf1_bilinear_resize_equals_torch_fidelity():
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x as ref

    g = torch.Generator().manual_seed(0)
    for h, w in [(28, 28), (32, 17), (400, 333), (299, 299)]:
        x = torch.randint(0, 256, (2, 3, h, w), generator=g).float()
        ours = R.tf1_bilinear_resize(x, (299, 299))
        theirs = ref(x, size=(299, 299), align_corners=False)
        assert torch.equal(ours, theirs), (h, w)
    img = torch.randint(0, 256, (3, 28, 28), generator=g, dtype=torch.uint8)
    x = R.preprocess(img, "torch-fidelity")
    assert torch.equal(x, (ref(img[None].float(), size=(299, 299), align_corners=False)[0] - 128) / 128)
    # TF1's half-pixel-free grid is not PyTorch's bilinear
    assert not torch.allclose(x, R.preprocess(img, "pytorch-fid"), atol=1e-2)


def test_clean_resize_equals_clean_fid():
    cleanfid_resize = pytest.importorskip("cleanfid.resize")
    fn = cleanfid_resize.build_resizer("clean")
    rng = np.random.RandomState(0)
    for h, w in [(28, 28), (64, 40), (512, 512)]:
        img = rng.randint(0, 256, (h, w, 3)).astype(np.uint8)
        theirs = torch.from_numpy(fn(img)).permute(2, 0, 1)  # HWC float32 in [0, 255]
        ours = R.preprocess(torch.from_numpy(img).permute(2, 0, 1).contiguous(), "clean")
        assert torch.equal(ours, (theirs - 128) / 128), (h, w)


def test_pytorch_fid_resize_equals_pytorch_fid(monkeypatch, fid_weights_file):
    pfi = pytest.importorskip("pytorch_fid.inception")
    monkeypatch.setattr(pfi, "load_state_dict_from_url", lambda *a, **k: torch.load(fid_weights_file))
    img = torch.randint(0, 256, (3, 28, 28), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    net = pfi.InceptionV3([0], resize_input=True, normalize_input=True)
    seen = []
    net.blocks[0].register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    with torch.no_grad():
        net(img[None].float() / 255)
    assert torch.equal(R.preprocess(img, "pytorch-fid"), seen[0][0])


def _tf_metrics(a: str, b: str, weights: str, **kw) -> dict:
    return tfi.calculate_metrics(
        input1=a, input2=b, cuda=False, feature_extractor_weights_path=weights, save_cpu_ram=True,
        cache=False, verbose=False, **kw,
    )  # fmt: skip


def test_isc_and_kid_equal_torch_fidelity_pipeline(fid_weights_file, tmp_path, capsys):
    # 10 images a folder (each a full 299x299 Inception v3 pass, ~3 times): 2 splits of 5 for IS,
    # KID subsets of 8 (fewer than the 10 images, so the subsets differ and the std is not 0)
    a = fmnist_folder(tmp_path / "a", 0, 10)
    b = fmnist_folder(tmp_path / "b", 100, 10)
    ref = _tf_metrics(
        a, b, fid_weights_file, isc=True, kid=True, isc_splits=2, kid_subsets=10, kid_subset_size=8
    )
    assert run("isc", [a, "--splits", "2", "--weights", fid_weights_file, "--resize", "torch-fidelity"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("IS: ") and " ± " in line, line
    mean, std = (float(v) for v in line[4:].split(" ± "))
    assert mean == pytest.approx(ref["inception_score_mean"], rel=1e-3)
    assert std == pytest.approx(ref["inception_score_std"], rel=1e-3)
    net = M.fid_network(M.load_fid_model(fid_weights_file))
    fa, fb = (M.folder_features(p, net, resize="torch-fidelity", show_progress=False) for p in (a, b))
    kid = M.kernel_inception_distance(fa.features, fb.features, subsets=10, subset_size=8)
    assert kid[0] == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-3)
    assert kid[1] == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-3)


def test_cli_fid_and_kid_equal_torch_fidelity_at_64_dims(fid_weights_file, tmp_path, capsys):
    # b noised: two samples of one distribution have a KID of ~0, whose relative error is meaningless
    a = fmnist_folder(tmp_path / "a", 0, 70)
    b = fmnist_folder(tmp_path / "b", 200, 70, _noise(32))
    ref = _tf_metrics(
        a, b, fid_weights_file, fid=True, kid=True, kid_subsets=10, kid_subset_size=30, feature_layer_fid="64",
        feature_layer_kid="64",
    )  # fmt: skip
    argv = [a, b, "--weights", fid_weights_file, "--resize", "torch-fidelity", "--dims", "64", "--kid",
            "--kid-subsets", "10", "--kid-subset-size", "30"]  # fmt: skip
    assert run("fid", argv) == 0
    fid_line, kid_line = capsys.readouterr().out.strip().splitlines()
    assert fid_line.startswith("FID: ") and kid_line.startswith("KID: ")
    kid_mean, kid_std = (float(v) for v in kid_line[5:].split(" ± "))
    assert float(fid_line[5:]) == pytest.approx(ref["frechet_inception_distance"], rel=1e-3)
    # random-weight 64-d features are small (|f| ~ 0.05), so KID is ~1e-5 on kernel values ~1:
    # torch-fidelity's float32 kernel sums are off by ~4e-8 there (its own kid function on the same
    # features in float64 agrees with ours to 1e-11); the 2048-d test checks 1e-3 relative
    assert kid_mean == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-3, abs=2e-7)
    assert kid_std == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-3, abs=2e-7)


def test_inception_score_and_kid_functions_equal_torch_fidelity():
    from torch_fidelity import metric_isc, metric_kid

    rng = np.random.RandomState(0)
    logits = rng.randn(100, 1008) * 3
    ref = metric_isc.isc_features_to_metric(torch.from_numpy(logits).float(), splits=10)
    m, s = M.inception_score(logits.astype(np.float32).astype(np.float64), splits=10)
    assert m == pytest.approx(ref["inception_score_mean"], rel=1e-3)
    assert s == pytest.approx(ref["inception_score_std"], rel=1e-3)
    f1 = rng.randn(120, 64).astype(np.float32)
    f2 = (rng.randn(120, 64) + 0.3).astype(np.float32)
    ref = metric_kid.kid_features_to_metric(
        torch.from_numpy(f1), torch.from_numpy(f2), kid_subsets=20, kid_subset_size=50, verbose=False
    )
    m, s = M.kernel_inception_distance(
        f1.astype(np.float64), f2.astype(np.float64), subsets=20, subset_size=50
    )
    assert m == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-3)
    assert s == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-3)
    with pytest.raises(ValueError, match="--kid-subset-size 120 or less"):
        M.kernel_inception_distance(f1, f2, subset_size=1000)


def _noise(sigma: float):
    def f(img: np.ndarray, i: int) -> np.ndarray:
        rng = np.random.RandomState(i)
        return np.clip(img + rng.randn(*img.shape) * sigma, 0, 255).astype(np.uint8)

    return f


def _blur(radius: float):
    def f(img: np.ndarray, i: int) -> np.ndarray:
        from PIL import Image, ImageFilter

        return np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius)))

    return f


def test_fid_grows_with_noise_and_blur_fashion_mnist(fid_weights_file, tmp_path):
    """Reference: 66 test images; compared: 66 other test images, noised (sigma 0, 16, 32, 64) or
    blurred (radius 1, 2). Random weights, --dims 64 (the stem's features): FID grows with each."""
    net = M.fid_network(M.load_fid_model(fid_weights_file))
    ref = M.folder_features(fmnist_folder(tmp_path / "ref", 0, 66), net, dims=64, show_progress=False)
    stats = M.stats_of(ref.features)

    def fid_to(name: str, transform) -> float:
        f = M.folder_features(
            fmnist_folder(tmp_path / name, 1000, 66, transform), net, dims=64, show_progress=False
        )
        return M.frechet_distance(*stats, *M.stats_of(f.features))

    clean = fid_to("clean", None)
    noised = [fid_to(f"noise{s}", _noise(s)) for s in (16, 32, 64)]
    blurred = [fid_to(f"blur{r}", _blur(r)) for r in (1, 2)]
    assert clean < noised[0] < noised[1] < noised[2], (clean, noised)
    assert clean < blurred[0] < blurred[1], (clean, blurred)
