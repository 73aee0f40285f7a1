"""The training engine end to end on sklearn's digits: outputs, resume, aux loss, atomicity, NaN, eval, predict."""

import csv
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import FAULT_RUN, TINY, assert_same_weights, start_hooked_train
from inceptionnet import create_model
from inceptionnet.cli import main as cli
from inceptionnet.errors import NonFiniteError
from inceptionnet.fileio import atomic_torch_save
from inceptionnet.train.engine import TrainConfig, evaluate, train_one_epoch


def train(tmp: Path, *extra: str) -> int:
    return cli(["train", *TINY, "--output-dir", str(tmp), *extra])


def test_end_to_end_outputs(trained_run):
    for name in (
        "checkpoint.pt",
        "best.pt",
        "metrics.csv",
        "args.yaml",
        "curves.png",
        "confusion.png",
        "results.json",
    ):
        assert (trained_run / name).is_file(), name
    assert any((trained_run / "tb").iterdir())
    rows = list(csv.DictReader((trained_run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    for key in ("lr", "train_loss", "train_acc1", "val_loss", "val_acc1", "val_acc5", "seconds"):
        assert key in rows[0]
    assert float(rows[-1]["val_acc1"]) > 0.3  # chance is 0.1
    res = json.loads((trained_run / "results.json").read_text())
    assert res["test_images"] == 359 and res["test_acc1"] > 0.3
    ckpt = torch.load(trained_run / "checkpoint.pt", weights_only=True)
    for key in (
        "model",
        "optimizer",
        "lr_scheduler",
        "epoch",
        "best_acc1",
        "args",
        "rng",
        "model_name",
        "classes",
    ):
        assert key in ckpt
    assert ckpt["epoch"] == 2 and ckpt["model_name"] == "googlenet_small"
    assert ckpt["classes"] == [str(i) for i in range(10)]


def _weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)["model"]


def test_resume_is_bit_exact(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["--epochs", "2", "--subset", "128", "--model-kwargs", "width=0.125", "dropout=0.5"]
    assert train(a, *common) == 0
    assert train(b, *common, "--stop-after", "1") == 0
    assert torch.load(b / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert train(b, *common, "--resume", "auto") == 0
    wa, wb = _weights(a / "checkpoint.pt"), _weights(b / "checkpoint.pt")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert (a / "metrics.csv").read_text().count("\n") == (b / "metrics.csv").read_text().count("\n") == 3


def test_sigterm_saves_and_resume_matches(tmp_path, fault_reference):
    # SIGTERM from inside the run at its 6th training step (epoch 1, step 1: mid-epoch), on any machine
    proc, run, _ = start_hooked_train(tmp_path, "term", at=6)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "checkpoint saved" in err and "Traceback" not in err
    assert "interrupted at epoch 1 step 2" in err, err
    assert train(run, *FAULT_RUN, "--resume", "auto") == 0
    assert_same_weights(_weights(run / "checkpoint.pt"), fault_reference)


def test_aux_loss_in_training_not_in_eval():
    model = create_model("googlenet_small", num_classes=10, in_chans=1, width=0.125, aux_logits=True)
    calls = {"aux": 0}
    model.aux1.register_forward_hook(lambda *a: calls.__setitem__("aux", calls["aux"] + 1))
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    train_one_epoch(model, opt, [(x, y)], torch.device("cpu"), 0, TrainConfig(aux_weight=0.3, progress=False))
    assert calls["aux"] == 1
    assert model.aux1.fc2.weight.grad is not None and model.aux1.fc2.weight.grad.abs().sum() > 0
    evaluate(model, [(x, y)], torch.device("cpu"), 10, show_progress=False)
    assert calls["aux"] == 1  # eval never runs the aux heads
    # aux_weight 0: the aux heads get no gradient
    model.zero_grad(set_to_none=True)
    train_one_epoch(model, opt, [(x, y)], torch.device("cpu"), 0, TrainConfig(aux_weight=0.0, progress=False))
    assert model.aux1.fc2.weight.grad is None


def test_atomic_write_keeps_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    atomic_torch_save({"epoch": 1}, path)
    before = path.read_bytes()

    def failing_save(obj, f, *a, **k):
        Path(f).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        atomic_torch_save({"epoch": 2}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temp file left behind


def test_nan_loss_stops_with_clear_message():
    model = create_model("googlenet_small", num_classes=10, in_chans=1, width=0.125)
    with torch.no_grad():
        model.fc.weight.fill_(float("nan"))
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(NonFiniteError, match=r"loss is nan at epoch 3, step 0"):
        train_one_epoch(model, opt, [(x, y)], torch.device("cpu"), 3, TrainConfig(progress=False))
    x[0, 0, 0, 0] = float("inf")
    with pytest.raises(NonFiniteError, match="non-finite values in the input batch"):
        train_one_epoch(model, opt, [(x, y)], torch.device("cpu"), 0, TrainConfig(progress=False))


def test_nan_during_training_keeps_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    import inceptionnet.train.engine as engine

    assert train(tmp_path, "--epochs", "2", "--subset", "64", "--stop-after", "1") == 0
    before = (tmp_path / "checkpoint.pt").read_bytes()
    real = engine.compute_loss

    def nan_loss(*a, **k):
        loss, logits = real(*a, **k)
        return loss * float("nan"), logits

    monkeypatch.setattr(engine, "compute_loss", nan_loss)
    rc = train(tmp_path, "--epochs", "2", "--subset", "64", "--resume", "auto")
    err = capsys.readouterr().err
    assert rc == 2
    assert "error: loss is nan at epoch 1, step 0" in err and "Traceback" not in err
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def test_eval_json_and_per_class(trained_run, capsys):
    assert cli(["eval", "--checkpoint", str(trained_run / "best.pt"), "--json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dataset"] == "digits" and out["images"] == 359
    assert 0.3 < out["acc1"] <= out["acc5"] <= 1.0
    assert len(out["per_class_acc1"]) == 10
    res = json.loads((trained_run / "results.json").read_text())
    assert out["acc1"] == pytest.approx(res["test_acc1"], abs=1e-6)


def test_predict_files(trained_run, tmp_path, capsys):
    from inceptionnet.data import load_arrays

    x, y, _ = load_arrays("digits", "test", None, 0)
    gray = tmp_path / "digit.png"
    Image.fromarray(x[0].numpy(), mode="L").save(gray)
    rgb = tmp_path / "digit_rgb.jpg"
    Image.fromarray(np.stack([x[0].numpy()] * 3, -1), mode="RGB").resize((32, 32)).save(rgb)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    rc = cli(
        [
            "predict",
            "--checkpoint",
            str(trained_run / "best.pt"),
            "--json",
            "--topk",
            "3",
            str(gray),
            str(corrupt),
            str(rgb),
        ]
    )
    cap = capsys.readouterr()
    assert rc == 2  # one unreadable file: the others are still predicted
    assert f"error: cannot read image {corrupt}" in cap.err
    res = json.loads(cap.out)
    assert [r["path"] for r in res] == [str(gray), str(corrupt), str(rgb)]
    assert len(res[0]["top"]) == 3 and abs(sum(t["prob"] for t in res[0]["top"]) - 1) < 1.0
    assert res[0]["top"][0]["prob"] >= res[0]["top"][1]["prob"]
    assert "error" in res[1] and "top" in res[2]


def test_missing_dataset_error(tmp_path, capsys):
    rc = cli(["train", "--dataset", "fashion_mnist", "--data", str(tmp_path / "nowhere"), "--epochs", "1"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: Fashion-MNIST not found") and "apt-get install dataset-fashion-mnist" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "flags, message",
    [(["--batch-size", "0"], "--batch-size must be a positive integer"),
     (["--epochs", "-1"], "--epochs must be a positive integer"),
     (["--lr", "0"], "--lr must be positive"),
     (["--model", "googlenett"], "unknown model 'googlenett'"),
     (["--dataset", "mnist2"], "unknown dataset 'mnist2'"),
     (["--recipe", "nope"], "unknown recipe 'nope'")],
)  # fmt: skip
def test_bad_arguments(flags, message, capsys):
    assert cli(["train", "--dataset", "digits", *flags]) == 2
    err = capsys.readouterr().err
    assert f"error: {message}" in err and "Traceback" not in err


def test_recipe_unknown_key_and_override(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 2\nlearning_rate: 0.1\n")
    assert cli(["train", "--recipe", str(bad)]) == 2
    assert "unknown key 'learning_rate'" in capsys.readouterr().err
    from inceptionnet.train import parse_args

    args = parse_args(["--recipe", "fashion_mnist_demo", "--epochs", "7"])
    assert args.epochs == 7 and args.subset == 30000 and args.model == "googlenet_small"
    assert "width=0.25" in args.model_kwargs


def test_recipes_parse():
    from inceptionnet.train.args import RECIPES_DIR, parse_args, validate_args

    names = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
    assert {"fashion_mnist", "fashion_mnist_fast", "fashion_mnist_demo"} <= set(names)
    for name in names:
        validate_args(parse_args(["--recipe", name]))


def test_one_step_of_fashion_mnist_recipe_on_digits(tmp_path):
    # the recipe's model and flags, one tiny epoch on digits (the real data is not needed here)
    rc = cli(["train", "--recipe", "fashion_mnist", "--dataset", "digits", "--subset", "64", "--epochs", "1",
              "--val-split", "100", "--output-dir", str(tmp_path), "--no-progress", "--no-plots", "--no-tensorboard",
              "--model-kwargs", "width=0.125"])  # fmt: skip
    assert rc == 0 and (tmp_path / "results.json").exists()


def test_model_and_weights_file_uses_the_checkpoint_data_config(trained_run, capsys):
    args = ["eval", "--json", "--no-progress", "--dataset", "digits"]
    assert cli([*args, "--checkpoint", str(trained_run / "best.pt")]) == 0
    a = json.loads(capsys.readouterr().out)
    assert cli([*args, "--model", "googlenet_small", "--weights", str(trained_run / "best.pt")]) == 0
    b = json.loads(capsys.readouterr().out)
    assert a["acc1"] == b["acc1"] and a["loss"] == pytest.approx(b["loss"])


def test_ema_decay_warms_up_and_int_buffers_follow() -> None:
    from torch.optim.swa_utils import AveragedModel

    from inceptionnet.train.engine import ema_multi_avg_fn

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    ema = AveragedModel(net, multi_avg_fn=ema_multi_avg_fn(0.999), use_buffers=True)
    ema.update_parameters(net)  # the first update copies
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(1.0)
        net[1].num_batches_tracked.fill_(7)
    w0 = ema.module[0].weight.detach().clone()
    ema.update_parameters(net)  # n = 1: decay (1 + 1) / (10 + 1), not 0.999
    d = 2 / 11
    torch.testing.assert_close(ema.module[0].weight, d * w0 + (1 - d) * torch.ones_like(w0))
    assert int(ema.module[1].num_batches_tracked) == 7
    ema.n_averaged.fill_(20_000)  # the warmup is over: decay capped at 0.999
    before = ema.module[0].bias.detach().clone()
    with torch.no_grad():
        net[0].bias.fill_(2.0)
    ema.update_parameters(net)
    torch.testing.assert_close(ema.module[0].bias, 0.999 * before + 0.001 * 2.0)


@pytest.mark.parametrize(
    "avx512_bf16,amx,expected", [(True, False, True), (False, True, True), (False, False, False)]
)
def test_bf16_supported_asks_for_the_instructions(monkeypatch, avx512_bf16, amx, expected):
    """`--amp auto` must not pick bf16 on an AVX-512 CPU without AVX512-BF16/AMX (emulated: slow),
    even though oneDNN's own check says yes there."""
    import torch.cpu as tcpu

    from inceptionnet.runtime import bf16_supported

    monkeypatch.setattr(tcpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(tcpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    assert bf16_supported("cpu") is expected


# --------------------------------------------------------------------------------------------------
# --batch-augment: the per-image augmentation, done on the whole batch


def _batch_aug(pad=0, hflip=False, erase=0.0, in_chans=1):
    from inceptionnet import data as D

    info = D.INFO["fashion_mnist"]
    mean, std = (info.mean * in_chans, info.std * in_chans)
    cfg = D.InputConfig(28, in_chans, mean, std, 1.0, "bilinear", "fashion_mnist", "RGB", (0.0, 1.0))
    return D, cfg, D.BatchAugment(cfg, 1, hflip=hflip, random_crop_pad=pad, random_erase=erase)


def _images(n=64):
    return torch.randint(
        1, 256, (n, 1, 28, 28), generator=torch.Generator().manual_seed(0), dtype=torch.uint8
    )


def test_batch_augment_without_augmentation_equals_the_eval_transform():
    D, cfg, aug = _batch_aug()
    x = _images(8)
    ev = D.eval_transform(cfg, 1, 28)
    got, y = aug([(img, i) for i, img in enumerate(x)])
    assert y.tolist() == list(range(8)) and got.dtype == torch.float32
    torch.testing.assert_close(got, torch.stack([ev(img) for img in x]))


def test_batch_augment_crop_is_a_zero_filled_shift_and_flip_a_mirror():
    D, cfg, aug = _batch_aug(pad=2, hflip=True)
    plain = _batch_aug()[2]
    x = _images()
    torch.manual_seed(1)
    got = aug.augment(x)
    base = plain.augment(x)
    zero = float(plain.augment(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))[0, 0, 0, 0])
    shifts, flips = set(), set()
    for i in range(len(x)):
        found = False
        for flip in (False, True):
            src = base[i].flip(-1) if flip else base[i]
            padded = torch.nn.functional.pad(src, (2, 2, 2, 2), value=zero)
            for dy in range(5):
                for dx in range(5):
                    if torch.equal(padded[:, dy : dy + 28, dx : dx + 28], got[i]):
                        found = True
                        shifts.add((dy, dx))
                        flips.add(flip)
        assert found, i
    assert flips == {False, True} and len(shifts) > 5  # random per image, not one draw per batch


def test_batch_augment_erases_one_rectangle_with_torchvision_sizes():
    D, cfg, aug = _batch_aug(erase=1.0, in_chans=3)
    torch.manual_seed(2)
    got = aug.augment(torch.full((64, 1, 28, 28), 255, dtype=torch.uint8))
    assert got.shape == (64, 3, 28, 28)
    for img in got:
        m = img[0] == 0
        assert torch.equal(m, img[1] == 0) and torch.equal(m, img[2] == 0)  # all channels
        rows, cols = m.any(1).nonzero().flatten(), m.any(0).nonzero().flatten()
        h, w = len(rows), len(cols)
        assert 0 < h < 28 and 0 < w < 28 and int(m.sum()) == h * w  # one filled rectangle
        assert rows[-1] - rows[0] + 1 == h and cols[-1] - cols[0] + 1 == w
        assert 0.02 * 784 * 0.5 <= h * w <= 0.33 * 784 * 1.5  # scale (0.02, 0.33), up to rounding


def test_batch_augment_training_resumes_bit_exact(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["--epochs", "2", "--subset", "128", "--batch-augment", "--random-crop-pad", "1", "--random-erase",
              "0.5", "--hflip"]  # fmt: skip
    assert train(a, *common) == 0
    assert train(b, *common, "--stop-after", "1") == 0
    assert train(b, *common, "--resume", "auto") == 0
    wa, wb = _weights(a / "checkpoint.pt"), _weights(b / "checkpoint.pt")
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


@pytest.mark.parametrize(
    "flags, applies",
    [({}, True), ({"random_resized_crop": True}, False), ({"auto_augment": "trivial"}, False),
     ({"auto_augment": "none"}, True)],
)  # fmt: skip
def test_batch_augment_applies_only_where_it_reproduces_the_per_image_transform(flags, applies):
    D, cfg, _ = _batch_aug()
    assert D.BatchAugment.applies(cfg, 1, 28, **flags) is applies
    assert D.BatchAugment.applies(cfg, 1, 32) is False  # needs a resize
    assert D.BatchAugment.applies(cfg, 3, 28) is False  # 3 -> 1 channels: per-image conversion


def test_batch_augment_with_auto_augment_falls_back_to_per_image_transforms(capsys):
    from inceptionnet import data as D
    from inceptionnet.train.args import parse_args
    from inceptionnet.train.build import build_datasets

    args = parse_args(
        ["--dataset", "digits", "--subset", "64", "--batch-augment", "--auto-augment", "trivial"]
    )
    info = D.dataset_info("digits", None)
    icfg = D.InputConfig(info.image_size, info.in_chans, info.mean, info.std)
    train_set, _, _, collate = build_datasets(args, info, icfg, is_main=False)
    assert collate is None and train_set.transform is not None
    assert "does not cover" not in capsys.readouterr().err  # not rank 0: silent
    build_datasets(args, info, icfg)
    assert "does not cover" in capsys.readouterr().err
