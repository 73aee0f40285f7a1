"""For people learning Inception (issue 33): the CIFAR-10 exercise recipe on files of the real
CIFAR-10 python format, the demo's held-out validation split and its separate test figure, integer
epoch ticks on the curves, and README.zh-CN.md carrying every command line of README.md."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inceptionnet.cli import main as cli
from inceptionnet.commands import demo
from inceptionnet.train import reports
from inceptionnet.train.args import parse_args

ROOT = Path(__file__).resolve().parents[2]
CIFAR_CLASSES = [
    b"airplane",
    b"automobile",
    b"bird",
    b"cat",
    b"deer",
    b"dog",
    b"frog",
    b"horse",
    b"ship",
    b"truck",
]


def write_cifar_batches(root: Path, n: int) -> Path:
    """cifar-10-batches-py as the real archive has it: data_batch_1..5, test_batch (dicts of bytes keys:
    uint8 N x 3072 data, a list of int labels, batch_label, filenames) and batches.meta; n images each."""
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"batch_label": f"synthetic {name}".encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [f"{name}_{j}.png".encode() for j in range(n)],
        }
        (base / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"num_cases_per_batch": n, b"label_names": CIFAR_CLASSES, b"num_vis": 3072}
    (base / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return base


def test_cifar10_recipe_is_the_article_exercise() -> None:
    a = parse_args(["--recipe", "cifar10"])
    assert (a.model, a.dataset, a.batch_size) == ("googlenet_small", "cifar10", 128)
    assert sorted(a.model_kwargs) == ["stem_stride=1", "width=1.0"]  # article 001's 32-px GoogLeNet
    assert (a.random_crop_pad, a.hflip, a.threads) == (4, True, 2)
    assert 0 < a.val_split < 50000  # the best epoch is picked on training images, not the test set


def test_cifar10_recipe_trains_on_cifar_format_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_cifar_batches(tmp_path / "data", n=12)  # 60 training images, 12 test images
    out = tmp_path / "run"
    tiny = [
        "--model-kwargs",
        "width=0.125",
        "--subset",
        "24",
        "--val-split",
        "12",
        "--batch-size",
        "8",
        "--threads",
        "1",
    ]
    rc = cli(["train", "--recipe", "cifar10", "--data", str(tmp_path / "data"), "--epochs", "1", *tiny,
              "--no-plots", "--no-tensorboard", "--no-progress", "--output-dir", str(out)])  # fmt: skip
    said = capsys.readouterr()
    assert rc == 0, said.err
    assert "on cifar10: 24 train / 12 val images, 3x32x32" in said.out, said.out
    r = json.loads((out / "results.json").read_text())
    assert (r["dataset"], r["test_images"], r["best_epoch"]) == ("cifar10", 12, 1)


def test_demo_picks_its_epoch_on_held_out_training_images() -> None:
    a = parse_args(["--recipe", demo.RECIPE])
    assert a.dataset == "fashion_mnist" and a.val_split > 0
    assert a.subset + a.val_split <= 60000  # the training subset is drawn from the images not held out


def test_demo_prints_validation_and_test_apart(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    result = {
        "best_val_acc1": 0.8812,
        "best_epoch": 2,
        "epochs": 3,
        "test_acc1": 0.8765,
        "test_images": 10000,
    }
    (tmp_path / "results.json").write_text(json.dumps(result))
    demo.print_figures(tmp_path, 5000)
    said = capsys.readouterr().out
    assert "validation top-1 0.8812 (5000 images held out of the training set; picked epoch 2 of 3)" in said
    assert "test top-1 0.8765 (10000 test images, evaluated once" in said


def test_curves_have_integer_epoch_ticks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    figures: list[Any] = []
    monkeypatch.setattr(reports, "atomic_save_figure", lambda fig, _path: figures.append(fig))
    monkeypatch.setattr("matplotlib.pyplot.close", lambda _fig=None: None)
    row = {"train_loss": 1.0, "val_loss": 1.1, "train_acc1": 0.5, "val_acc1": 0.4, "ema_val_acc1": ""}
    reports.plot_curves(tmp_path / "curves.png", [dict(row, epoch=e) for e in range(3)], "t")
    (fig,) = figures
    fig.canvas.draw()
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def readme_commands(text: str) -> list[str]:
    """The command lines of a README: lines in ``` blocks that start with a command we document,
    without their trailing ``# comment``."""
    lines, inside = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            inside = not inside
        elif inside and re.match(r"\s*(make|inceptionnet|python|pip|torchrun) ", line):
            lines.append(re.sub(r"\s+#.*$", "", line.strip()))  # the command, not its comment (translated)
    return lines


def test_chinese_readme_has_every_command() -> None:
    en = (ROOT / "README.md").read_text(encoding="utf-8")
    zh = (ROOT / "README.zh-CN.md").read_text(encoding="utf-8")
    commands = readme_commands(en)
    assert len(commands) >= 2 and "make demo" in commands and "make test" in commands
    zh_commands = set(readme_commands(zh))
    missing = [c for c in commands if c not in zh_commands]
    assert not missing, f"README.zh-CN.md lacks these command lines of README.md: {missing}"
    assert "README.zh-CN.md" in en.split("\n## ")[0]  # linked from the top of README.md
