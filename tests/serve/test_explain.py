"""``inceptionnet explain`` and serve/explain.py (issue 25): Grad-CAM (captum) finds the garment,
the branch view's hooks leave the model as it was, families without four-branch blocks get no
branch view, and the command's output rules (atomic write, no overwrite without --overwrite,
one-line errors)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inceptionnet import data as D
from inceptionnet.cli import main as cli

pytest.importorskip("captum")
from inceptionnet.serve.explain import branch_energy, explain, four_branch_blocks  # noqa: E402

FM = ["--model", "googlenet_small", "--weights", "fashion_mnist"]


@pytest.fixture(scope="module")
def fm() -> tuple[torch.nn.Module, D.InputConfig, torch.Tensor, list[str]]:
    from inceptionnet.checkpoint import load_for_inference

    model, _, icfg, classes = load_for_inference(None, "googlenet_small", "fashion_mnist")
    x, y, _ = D.load_arrays("fashion_mnist", "test", None, 0)
    return model, icfg, x[:4].reshape(4, 1, 28, 28), [classes[int(c)] for c in y[:4]]


@pytest.fixture(scope="module")
def boot(tmp_path_factory: pytest.TempPathFactory, fm: tuple) -> Path:
    p = tmp_path_factory.mktemp("explain") / "boot.png"
    Image.fromarray(fm[2][0, 0].numpy()).save(p)
    return p


def test_gradcam_is_on_the_garment(fm: tuple) -> None:
    model, icfg, x, truth = fm
    transform = D.eval_transform(icfg, icfg.in_chans, native_size=-1)
    for img, label in zip(x, truth):
        e = explain(model, icfg, transform(img))
        assert model.default_cfg["classes"][e.target] == label
        on = (img[0] > 30).numpy()  # the garment's pixels (Fashion-MNIST: light on black)
        assert e.cam.shape == (28, 28) and e.cam.min() >= 0 and e.cam.max() == pytest.approx(1.0)
        assert e.cam[on].mean() > e.cam[~on].mean() + 0.1, label
        assert e.image.shape == (28, 28, 3) and np.allclose(e.image[..., 0], img[0].numpy() / 255, atol=1e-5)


def test_branch_view_leaves_the_model_unchanged(fm: tuple) -> None:
    model, icfg, x, _ = fm
    xb = D.eval_transform(icfg, icfg.in_chans, native_size=-1)(x[1]).unsqueeze(0)
    with torch.no_grad():
        before = model(xb)
    labels, maps, shares = branch_energy(model, xb, "inception4c")
    with torch.no_grad():
        after = model(xb)
    assert torch.equal(before, after)
    assert not any(m._forward_hooks for m in model.modules())  # every hook removed
    assert labels == ["1x1", "1x1 > 3x3", "1x1 > 3x3 > 3x3", "maxpool 3x3 > 1x1"]
    assert maps.shape == (4, 28, 28) and maps.min() >= 0 and np.allclose(maps.max(axis=(1, 2)), 1)
    assert sum(shares) == pytest.approx(1.0) and all(0 < s < 1 for s in shares)
    with pytest.raises(ValueError, match="inception3a"):
        branch_energy(model, xb, "conv1")


def test_other_families_get_grad_cam_but_no_branch_view() -> None:
    from inceptionnet import create_model

    model = create_model("inception_resnet_v1", num_classes=3).eval()
    assert four_branch_blocks(model) == []
    side = model.min_input_size
    icfg = D.InputConfig(side, 3, (0.5,) * 3, (0.5,) * 3)
    e = explain(model, icfg, torch.randn(3, side, side), target=2)
    assert e.target == 2 and e.cam.shape == (side, side) and e.branch_maps is None
    assert e.cam_layer == model.feature_info[-1]["module"]


def test_explain_cli_writes_the_figure_and_keeps_files(
    tmp_path: Path, boot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "boot-explained.png"
    assert cli(["explain", *FM, str(boot), "-o", str(out), "--block", "inception4b"]) == 0
    line = capsys.readouterr().out
    assert "Ankle boot" in line and "inception4b" in line and str(out) in line
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > 800 and im.height > 500  # two rows: CAM + branches
    first = out.read_bytes()
    assert cli(["explain", *FM, str(boot), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: -o/--output") and "--overwrite" in err and len(err.strip().splitlines()) == 1
    )
    assert out.read_bytes() == first  # refused: untouched
    assert (
        cli(["explain", *FM, str(boot), "-o", str(out), "--overwrite", "--block", "none", "--target", "Bag"])
        == 0
    )
    assert "Grad-CAM of Bag" in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.height < 500  # one row: no branch view
    assert [p.name for p in tmp_path.iterdir()] == ["boot-explained.png"]  # atomic write: no temp file left


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--block", "inception9z"], "one of inception3a"),
        (["--target", "Hat"], "neither a class name nor an index"),
        (["--target", "10"], "out of range"),
        (["-o", "IMAGE"], "is the image file itself"),
        (["-o", "x.txt"], ".png"),
    ],
)
def test_explain_cli_errors_are_one_line(
    extra: list[str], words: str, tmp_path: Path, boot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["explain", *FM, str(boot), "-o", str(tmp_path / "o.png"), *extra]
    args = [str(boot) if a == "IMAGE" else a for a in args]  # a second -o: argparse keeps the last
    assert cli(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and words in err, err


def test_explain_cli_unreadable_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert cli(["explain", *FM, str(bad), "-o", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot read image") and str(bad) in err
    assert not (tmp_path / "o.png").exists()
