"""The shipped Fashion-MNIST model (issue 11, docs/RESULTS.md): the ``fashion_mnist`` weight entry of
``googlenet_small`` loads offline from the package (sha256 checked) and classifies a fixed slice of the
official test set at >= 0.95 top-1, through the Python API and through ``eval`` / ``predict``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from inceptionnet import create_model
from inceptionnet import data as D
from inceptionnet.cli import main as cli
from inceptionnet.fileio import sha256_of
from inceptionnet.models._weights import entry_path, get_weight_entry

SLICE = 1000  # the first 1,000 images of the 10,000-image test set
MIN_TOP1 = 0.95
EVAL_N = 250  # eval's images: checked against the Python API's predictions on the same images


@pytest.fixture(scope="module")
def test_slice() -> tuple[torch.Tensor, torch.Tensor]:
    x, y, classes = D.load_arrays("fashion_mnist", "test", None, 0)
    assert len(y) == 10_000 and classes == D.FASHION_MNIST_CLASSES
    return x[:SLICE].reshape(SLICE, 1, 28, 28), y[:SLICE]


@pytest.fixture(scope="module")
def api_predictions(test_slice: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict]:
    """The Python API's top-1 classes on the slice (one pass over 1,000 images, shared by the API and
    ``eval`` tests) and the model's default_cfg."""
    model = create_model("googlenet_small", weights="fashion_mnist").eval()
    assert (model.num_classes, model.in_chans) == (10, 1)  # taken from the entry
    cfg = model.default_cfg
    x, _ = test_slice
    mean = torch.tensor(cfg["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, -1, 1, 1)
    xs = (x.float() / 255 - mean) / std
    with torch.inference_mode():
        return torch.cat([model(b).argmax(1) for b in xs.split(250)]), cfg


def test_entry_is_shipped_small_and_intact() -> None:
    entry = get_weight_entry("googlenet_small", "fashion_mnist")
    assert entry is not None and entry.url is None  # inside the package: no network needed
    path = entry_path(entry)
    assert path.suffix == ".safetensors" and path.stat().st_size <= 10 * 2**20
    assert entry.sha256 is not None and sha256_of(path) == entry.sha256
    assert entry.classes == D.FASHION_MNIST_CLASSES and entry.input_size == (1, 28, 28)


def test_shipped_weights_accuracy_on_test_slice(
    test_slice: tuple[torch.Tensor, torch.Tensor], api_predictions: tuple[torch.Tensor, dict]
) -> None:
    pred, cfg = api_predictions
    acc = float((pred == test_slice[1]).float().mean())
    assert acc >= MIN_TOP1, acc
    assert tuple(cfg["classes"]) == D.FASHION_MNIST_CLASSES


def test_eval_cli_reports_the_accuracy(
    capsys: pytest.CaptureFixture[str],
    test_slice: tuple[torch.Tensor, torch.Tensor],
    api_predictions: tuple[torch.Tensor, dict],
) -> None:
    # the first EVAL_N images of the slice: eval's accuracy is the Python API's on them, to the image
    rc = cli(["eval", "--model", "googlenet_small", "--weights", "fashion_mnist", "--dataset", "fashion_mnist",
              "--split", "test", "--limit", str(EVAL_N), "--json", "--no-progress"])  # fmt: skip
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    correct = api_predictions[0][:EVAL_N] == test_slice[1][:EVAL_N]
    assert res["images"] == EVAL_N and res["acc1"] == pytest.approx(int(correct.sum()) / EVAL_N, abs=1e-9)
    assert res["acc1"] >= MIN_TOP1
    assert set(res["per_class_acc1"]) == set(D.FASHION_MNIST_CLASSES)


def test_predict_names_the_garment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], test_slice: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, y = test_slice
    paths = []
    for i in range(8):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(x[i, 0].numpy()).save(p)
        paths.append(str(p))
    rc = cli(["predict", "--model", "googlenet_small", "--weights", "fashion_mnist", "--json", "--topk", "1",
              *paths])  # fmt: skip
    assert rc == 0
    rows = json.loads(capsys.readouterr().out)
    names = [r["top"][0]["label"] for r in rows]
    truth = [D.FASHION_MNIST_CLASSES[int(c)] for c in y[:8]]
    assert sum(a == b for a, b in zip(names, truth)) >= 7, (names, truth)
