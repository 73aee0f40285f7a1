"""The pipeline's other users (issue 34): ``eval --data DIR`` on an image folder decoded by the
pipeline's loader (the same numbers as ``train.engine.eval_loader``'s plain DataLoader), and
``--jpeg-draft`` (reduced-scale JPEG decoding: smaller decoded images, the same top-1 on large
smooth photos)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from inceptionnet import data as D
from inceptionnet import pipeline as P
from inceptionnet.checkpoint import ModelSource, open_model
from inceptionnet.cli import main as cli
from inceptionnet.data.images import draft_size

MODEL = ["--model", "googlenet_small", "--weights", "fashion_mnist"]
N = 20  # real Fashion-MNIST test images


@pytest.fixture(scope="module")
def shipped():
    model, icfg, classes, _ = open_model(ModelSource.model("googlenet_small", weights="fashion_mnist"))
    return model, icfg, classes


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, shipped) -> Path:
    """ROOT/val/CLASS/*.png (and ROOT/train, which eval_loader's data set info reads) of real test
    images in their true class folders; class 0 ('T-shirt/top') cannot be a folder name: left out."""
    _, _, classes = shipped
    x, y, _ = D.load_arrays("fashion_mnist", "test", None, 0)
    root = tmp_path_factory.mktemp("fm_folder")
    keep = [i for i in range(200) if int(y[i]) != 0][:N]
    for split in ("train", "val"):
        for i in keep:
            p = root / split / classes[int(y[i])] / f"im{i:03d}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x[i].reshape(28, 28).numpy()).save(p)
    return root


def _eval_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    capsys.readouterr()
    rc = cli(["eval", *MODEL, "--no-progress", "--json", *argv])
    out = capsys.readouterr().out
    assert rc == 0
    return json.loads(out)


def test_eval_folder_equals_the_plain_dataloader(folder, shipped, capsys) -> None:
    from inceptionnet.train.engine import eval_loader, evaluate

    model, icfg, classes = shipped
    info = D.dataset_info("imagefolder", str(folder))
    ref = evaluate(
        model, eval_loader(info, "val", str(folder), icfg, classes, batch_size=7), torch.device("cpu"),
        len(classes), show_progress=False,
    )  # fmt: skip
    split_itself = _eval_json(["--data", str(folder / "val"), "-b", "7", "-j", "2"], capsys)
    root_layout = _eval_json(["--data", str(folder), "--split", "val", "-b", "6", "-j", "0"], capsys)
    for got in (split_itself, root_layout):
        assert got["dataset"] == "imagefolder" and got["images"] == N
        assert got["acc1"] == pytest.approx(ref["acc1"], abs=1e-12)
        assert got["acc5"] == pytest.approx(ref["acc5"], abs=1e-12)
        assert got["loss"] == pytest.approx(ref["loss"], rel=1e-5)
        assert list(got["per_class_acc1"].values()) == pytest.approx(ref["per_class_acc1"], abs=1e-12)
    assert ref["acc1"] > 0.5  # the shipped model on real images: a meaningful comparison


def test_eval_folder_text_output_and_a_damaged_image(folder, tmp_path, capsys) -> None:
    capsys.readouterr()
    assert cli(["eval", *MODEL, "--no-progress", "--data", str(folder / "val"), "--limit", "5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("imagefolder test (5 images, tta none): top-1 ")
    bad = tmp_path / "val"
    bad.mkdir()
    (bad / "Trouser").mkdir()
    (bad / "Trouser" / "broken.png").write_bytes(b"\x89PNG not really")
    assert cli(["eval", *MODEL, "--no-progress", "--data", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "error: cannot read image" in err and "broken.png" in err


def test_labeled_batches_keep_order_and_labels(folder, shipped) -> None:
    _, icfg, classes = shipped
    ds = D.ImageFolderFiles(folder / "val", 3, D.eval_transform(icfg, 3, 0), classes=classes, notes=False)
    batches = P.LabeledBatches(ds.samples, 3, ds.transform, batch_size=6, workers=2)
    xs, ys = zip(*batches, strict=True)
    assert len(batches) == len(xs) == 4
    assert torch.cat(ys).tolist() == [y for _, y in ds.samples]
    assert torch.equal(torch.cat(xs), torch.stack([ds[i][0] for i in range(len(ds))]))


# --------------------------------------------------------------------------------------------------
# --jpeg-draft


@pytest.fixture(scope="module")
def big_jpegs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """1200 x 900 smooth photos: real test images scaled up (bicubic), saved as JPEG."""
    x, _, _ = D.load_arrays("fashion_mnist", "test", None, 0)
    root = tmp_path_factory.mktemp("big_jpegs")
    paths = []
    for i in range(6):
        im = Image.fromarray(x[i].reshape(28, 28).numpy()).resize((1200, 900), Image.Resampling.BICUBIC)
        paths.append(root / f"big{i}.jpg")
        im.convert("RGB").save(paths[-1], quality=92)
    return paths


def test_draft_decodes_large_jpegs_smaller(big_jpegs, tmp_path) -> None:
    full = D.read_image(big_jpegs[0], 3, resize_to=32)
    small = D.read_image(big_jpegs[0], 3, resize_to=32, draft=True)
    assert tuple(full.shape[1:]) == (900, 1200)
    assert tuple(small.shape[1:]) == (113, 150)  # 1/8 scale: still covers the 32 x 42 resize
    assert draft_size(1200, 900, 32) == (42, 32) and draft_size(1200, 900, (299, 299)) == (299, 299)
    assert tuple(D.read_image(big_jpegs[0], 3, resize_to=300, draft=True).shape[1:]) == (450, 600)
    near = tmp_path / "near.jpg"  # less than twice the resize: decoded in full
    Image.new("RGB", (60, 45), (90, 120, 30)).save(near)
    assert tuple(D.read_image(near, 3, resize_to=32, draft=True).shape[1:]) == (45, 60)
    png = tmp_path / "big.png"  # not a JPEG: decoded in full
    Image.new("RGB", (400, 300)).save(png)
    assert tuple(D.read_image(png, 3, resize_to=32, draft=True).shape[1:]) == (300, 400)


def test_draft_gives_the_same_top1_as_full_decoding(big_jpegs, tmp_path, capsys) -> None:
    tops = []
    for extra in ([], ["--jpeg-draft"]):
        out = tmp_path / f"p{len(extra)}.jsonl"
        capsys.readouterr()
        argv = ["predict", *MODEL, "--backend", "none", *map(str, big_jpegs), "--quiet"]
        assert cli([*argv, "-o", str(out), "--workers", "0", *extra]) == 0
        tops.append([json.loads(line)["top"][0]["index"] for line in out.read_text().splitlines()])
    assert len(tops[0]) == len(big_jpegs) and tops[0] == tops[1]
