"""Scale-out and modern training: DDP via torchrun (gloo on CPU), two-node rendezvous, bf16, EMA,
Mixup/CutMix, fine-tuning, multi-crop evaluation."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import two_node_torchrun
from inceptionnet import create_model
from inceptionnet.cli import main as cli
from inceptionnet.data.transforms import tta_views
from inceptionnet.train.args import get_args_parser
from inceptionnet.train.build import build_mixup
from inceptionnet.train.engine import TrainConfig, train_one_epoch

# no BN and no dropout: a 2-process run on half batches is then the same computation as one process
# on the whole batch, up to float rounding
BASE = ["--dataset", "digits", "--model", "googlenet_small", "--model-kwargs", "width=0.125", "norm=none",
        "dropout=0", "--subset", "256", "--opt", "adamw", "--lr", "0.002", "--weight-decay", "0",
        "--no-progress", "--no-plots", "--no-tensorboard"]  # fmt: skip


def env() -> dict[str, str]:
    e = dict(os.environ, OMP_NUM_THREADS="1", INCEPTIONNET_NO_DOWNLOAD="1")
    e.pop("RANK", None)
    return e


def torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
           "-m", "inceptionnet.train", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env())


def losses(run: Path) -> list[float]:
    return [float(r["train_loss"]) for r in csv.DictReader((run / "metrics.csv").open())]


@pytest.mark.slow
def test_ddp_two_node_rendezvous_then_standalone_resume_match_one_process(tmp_path):
    """One DDP run in two halves (each torchrun start costs three python + torch imports, so the two
    launch modes share the run): epoch 1 as two nodes on loopback (--stop-after 1), epoch 2 resumed by
    a standalone 2-process torchrun. The losses equal one process on the whole batch."""
    one, ddp, node1 = tmp_path / "one", tmp_path / "ddp", tmp_path / "node1"
    assert cli(["train", *BASE, "--epochs", "2", "--batch-size", "32", "--output-dir", str(one)]) == 0
    # 2 processes x 16 = the same global batch of 32; stop after one epoch, then resume under DDP
    run = [*BASE, "--epochs", "2", "--batch-size", "16"]
    (out0, _), (out1, _) = two_node_torchrun(
        "inceptionnet.train",
        [*run, "--stop-after", "1"],
        [["--output-dir", str(ddp)], ["--output-dir", str(node1)]],
        env=env(),
    )
    assert "batch 16x2" in out0  # one world of two processes
    assert out0.count("training googlenet_small") == 1 and "training" not in out1  # only rank 0 prints
    assert torch.load(ddp / "checkpoint.pt", weights_only=True)["epoch"] == 1  # global rank 0 writes
    assert not (node1 / "checkpoint.pt").exists()
    r = torchrun(*run, "--output-dir", str(ddp), "--resume", "auto")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed from" in r.stdout
    assert r.stdout.count("training googlenet_small") == 1  # only rank 0 prints
    ck = torch.load(ddp / "checkpoint.pt", weights_only=True)
    assert ck["epoch"] == 2 and len(ck["rng"]) == 2  # one RNG state per rank
    assert sorted(p.name for p in ddp.iterdir() if p.suffix == ".pt") == ["best.pt", "checkpoint.pt"]
    assert losses(ddp) == pytest.approx(losses(one), rel=1e-3)


def test_sync_bn_on_cpu_is_a_clear_error(capsys):
    assert cli(["train", *BASE, "--epochs", "1", "--sync-bn"]) == 2
    assert "error: --sync-bn needs CUDA" in capsys.readouterr().err


def test_bf16_autocast_step_is_finite():
    model = create_model("googlenet_small", num_classes=10, in_chans=1, width=0.125, aux_logits=True)
    x, y = torch.randn(8, 1, 16, 16), torch.randint(0, 10, (8,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    cfg = TrainConfig(amp="bf16", channels_last=True, progress=False)
    state = train_one_epoch(model, opt, [(x, y)], torch.device("cpu"), 0, cfg)
    assert state.step == 1 and torch.isfinite(torch.tensor(state.loss_sum))
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_ema_is_saved_and_differs(tmp_path):
    out = tmp_path / "ema"
    rc = cli(["train", *BASE, "--epochs", "1", "--batch-size", "32", "--model-ema", "--model-ema-decay", "0.9",
              "--output-dir", str(out)])  # fmt: skip
    assert rc == 0
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    ema = {k.removeprefix("module."): v for k, v in ck["model_ema"].items() if k.startswith("module.")}
    raw = ck["model"]
    assert set(raw) <= set(ema)
    assert any(not torch.equal(raw[k], ema[k]) for k in raw if raw[k].is_floating_point())
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert rows[0]["ema_val_acc1"] != ""


@pytest.mark.parametrize("mix", [["--mixup-alpha", "0.2"], ["--cutmix-alpha", "1.0"],
                                 ["--mixup-alpha", "0.2", "--cutmix-alpha", "1.0"]])  # fmt: skip
def test_mixup_cutmix_targets_sum_to_one(mix):
    args = get_args_parser().parse_args(mix)
    fn = build_mixup(args, num_classes=10)
    x, y = torch.rand(8, 3, 16, 16), torch.randint(0, 10, (8,))
    xm, ym = fn(x, y)
    assert xm.shape == x.shape and ym.shape == (8, 10)
    torch.testing.assert_close(ym.sum(1), torch.ones(8))
    assert (ym >= 0).all()


def test_mixup_training_runs(tmp_path):
    rc = cli(["train", *BASE, "--epochs", "1", "--batch-size", "32", "--mixup-alpha", "0.2", "--cutmix-alpha", "1.0",
              "--label-smoothing", "0.1", "--output-dir", str(tmp_path)])  # fmt: skip
    assert rc == 0


def test_tta_crop_counts_and_shapes():
    x = torch.rand(3, 1, 28, 28)
    assert [v.shape for v in tta_views(x, "none", 24)] == [(3, 1, 24, 24)]
    assert len(tta_views(x, "flip", 24)) == 2
    ten = tta_views(x, "10crop", 24)
    assert len(ten) == 10 and all(v.shape == (3, 1, 24, 24) for v in ten)
    torch.testing.assert_close(ten[5], ten[0].flip(-1).flip(-1).flip(-1))  # the mirrored corner crop
    paper = tta_views(torch.rand(2, 3, 40, 60), "144crop", 32)
    assert len(paper) == 144 and all(v.shape == (2, 3, 32, 32) for v in paper)


def test_finetune_freeze_backbone_new_classifier(tmp_path):
    src = create_model("googlenet_small", num_classes=100, in_chans=3, width=0.125, aux_logits=True)
    path = tmp_path / "pre.pth"
    torch.save(src.state_dict(), path)
    out = tmp_path / "ft"
    rc = cli(["train", "--dataset", "digits", "--model", "googlenet_small", "--model-kwargs", "width=0.125",
              "--weights", str(path), "--freeze-backbone", "--no-aux", "--epochs", "1", "--subset", "64",
              "--batch-size", "32", "--output-dir", str(out), "--no-progress", "--no-plots", "--no-tensorboard"])  # fmt: skip
    assert rc == 0
    sd = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    assert sd["fc.weight"].shape == (10, src.fc.in_features)
    assert not any(k.startswith("aux") for k in sd)
    # the backbone is frozen: RGB weights summed into one channel, otherwise unchanged
    torch.testing.assert_close(sd["conv1.conv.weight"], src.conv1.conv.weight.sum(1, keepdim=True))
    torch.testing.assert_close(sd["inception5b.branch1.conv.weight"], src.inception5b.branch1.conv.weight)


def test_paper_lr_schedule():
    from inceptionnet.train.engine import lr_factor

    kw = dict(schedule="paper", total_iters=1000, iters_per_epoch=10)
    assert lr_factor(79, **kw) == 1.0
    assert lr_factor(80, **kw) == pytest.approx(0.96)
    assert lr_factor(160, **kw) == pytest.approx(0.96**2)


def test_train_help_documents_the_flags():
    text = get_args_parser().format_help()
    for flag in ("--amp", "--channels-last", "--compile", "--model-ema", "--model-ema-decay", "--clip-grad-norm",
                 "--lr-scheduler", "--mixup-alpha", "--cutmix-alpha", "--random-erase", "--auto-augment",
                 "--random-resized-crop", "--weights", "--freeze-backbone", "--no-aux", "--sync-bn", "--resume"):  # fmt: skip
        assert flag in text, flag
    assert "paper" in text and "torchrun" in get_args_parser().description
