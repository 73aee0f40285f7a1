"""Reliability of ``inceptionnet train`` (issue 21, a hostile audit of the trainer): run directories are
owned and locked, every flag and recipe value is checked where it is parsed, a resume with another
configuration says what changed, a random model is never evaluated or frozen, tiny and one-class data
sets are explained, and a non-finite result is an error, never a results.json.

docs/RELIABILITY.md lists the cases with the tests that check them (``RT::``).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import TINY as TINY_ARGV
from helpers import one_error_line, start_hooked_train
from inceptionnet.cli import main as cli
from inceptionnet.train import rundir
from inceptionnet.train.args import get_args_parser, parse_args

ONE_EPOCH = ["--epochs", "1", "--subset", "64"]
TINY = [*TINY_ARGV, *ONE_EPOCH]
STEM2 = ["--model-kwargs", "width=0.125", "stem_stride=2"]  # BatchNorm sees 1x1 maps: a batch of 1 fails


def train(out: Path | None, *extra: str) -> int:
    return cli(["train", *TINY, *(["--output-dir", str(out)] if out else []), *extra])


def strict_json(path: Path) -> dict[str, Any]:
    def refuse(name: str) -> None:
        raise AssertionError(f"{path} holds a bare {name}")

    return json.loads(path.read_text(), parse_constant=refuse)


def fingerprint(d: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(d.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch run (never modified by the tests; copy it to change it)."""
    out = tmp_path_factory.mktemp("run")
    assert train(out) == 0
    return out


@pytest.fixture
def run_copy(run_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    return out


# --------------------------------------------------------------------------------------------------
# 1. Run directories are owned


def test_rerun_into_a_run_is_refused_and_overwrite_replaces_it(run_copy, capsys):
    before = fingerprint(run_copy)
    assert train(run_copy) == 2
    one_error_line(capsys.readouterr().err, f"--output-dir {run_copy} already holds a run", "checkpoint.pt",
                   "--resume auto", "fresh --output-dir", "--overwrite")  # fmt: skip
    assert fingerprint(run_copy) == before  # nothing written, no .lock left
    assert train(run_copy, "--overwrite", "--seed", "1") == 0
    assert "replacing the run" in capsys.readouterr().err
    after = fingerprint(run_copy)
    for name in ("best.pt", "checkpoint.pt", "results.json", "args.yaml", "metrics.csv"):
        assert after[name] != before[name], name
    assert strict_json(run_copy / "results.json")["test_images"] == 359
    assert not (run_copy / rundir.LOCK).exists()


def test_rerun_into_the_default_output_dir_is_refused(run_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    default = Path("runs/googlenet_small-digits")
    shutil.copytree(run_dir, default)
    before = fingerprint(default)
    assert train(None) == 2
    one_error_line(capsys.readouterr().err, "--output-dir runs/googlenet_small-digits already holds a run")
    assert fingerprint(default) == before


HANG_AT_FIRST_STEP = """
import os, sys, time
import inceptionnet.train.engine as engine

def compute_loss(*a, **k):
    open(os.environ["READY"], "w").close()
    time.sleep(600)

engine.compute_loss = compute_loss
from inceptionnet.train import cli
sys.exit(cli(sys.argv[1:]))
"""


def test_second_process_is_refused_and_a_killed_ones_lock_is_taken_over(tmp_path, capsys):
    out, ready, script = tmp_path / "run", tmp_path / "ready", tmp_path / "hang.py"
    script.write_text(HANG_AT_FIRST_STEP)
    proc = subprocess.Popen([sys.executable, str(script), *TINY, "--output-dir", str(out), "--resume", "auto"],
                            env={**os.environ, "READY": str(ready)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.time() + 240
        while not ready.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert ready.exists(), proc.communicate(timeout=10)
        assert train(out, "--resume", "auto") == 2  # the second process on the same directory
        one_error_line(capsys.readouterr().err, "in use by another training process", f"pid {proc.pid}")
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    assert (out / rundir.LOCK).read_text().split()[0] == str(proc.pid)  # SIGKILL: the lock stays behind
    assert train(out, "--resume", "auto") == 0
    assert (
        f"taking over the stale lock {out / rundir.LOCK} left by process {proc.pid}"
        in capsys.readouterr().err
    )
    assert not (out / rundir.LOCK).exists()


def write_lock(out: Path, text: str, age_s: float = 0.0) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    lock = out / rundir.LOCK
    lock.write_text(text)
    if age_s:
        t = time.time() - age_s
        os.utime(lock, (t, t))
    return lock


def test_lock_holders_alive_elsewhere_or_gone(tmp_path, capsys):
    host = socket.gethostname()
    me = rundir.proc_stat(os.getpid())
    start = me[19] if me else "-"
    busy = {
        "this pid": (f"{os.getpid()} {host} {start}\n", 0.0, f"pid {os.getpid()}"),
        "another host": (f"4242 elsewhere-{host} 17\n", 0.0, f"host elsewhere-{host}"),
        "being written": ("", 0.0, "being claimed by another process"),
    }
    for name, (text, age, needle) in busy.items():
        lock = write_lock(tmp_path / name, text, age)
        with pytest.raises(ValueError, match=needle):
            rundir.acquire_lock(tmp_path / name)
        assert lock.read_text() == text, name  # never taken from a live (or unknown) holder
    child = subprocess.Popen(["true"])
    child.wait()
    stale = {
        "dead pid": f"{child.pid} {host} 1\n",
        "reused pid": f"{os.getpid()} {host} 1{start}\n",  # this pid, but another start time
        "half written": "12",
    }
    for name, text in stale.items():
        write_lock(tmp_path / name, text, age_s=60)
        lock = rundir.acquire_lock(tmp_path / name)
        assert lock.read_text() == rundir.lock_text(), name
        assert "taking over the stale lock" in capsys.readouterr().err
        rundir.release_lock(lock)
        assert not lock.exists() and not list((tmp_path / name).iterdir()), name


def test_lock_is_released_on_sigterm_before_and_during_the_epochs(tmp_path):
    # Each run in its own process (helpers.TRAIN_HOOK): a SIGTERM to the pytest worker itself could end it.
    # Before the epochs (inside build_run, run dir claimed): rundir.on_sigterm stops it, lock released.
    proc, out, _ = start_hooked_train(tmp_path, "build_term", 0, ONE_EPOCH, name="a")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "error: stopped by SIGTERM" in err and "sigterm handler restored: True" in err, err
    assert not out.exists()  # created by the run, left empty: removed with the lock

    # At the first training step: GracefulStop's handler finishes the step, saves and stops.
    proc, out, _ = start_hooked_train(tmp_path, "term", 1, ONE_EPOCH, name="b")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "sigterm handler restored: True" in err, err
    assert (out / "checkpoint.pt").is_file() and not (out / rundir.LOCK).exists()


# --------------------------------------------------------------------------------------------------
# 2. The output directory: a file, not writable


def test_output_dir_that_is_a_file_or_not_writable_is_refused_before_training(tmp_path, monkeypatch, capsys):
    import inceptionnet.train.trainer as trainer

    def no_training(*a: Any, **k: Any) -> None:
        raise AssertionError("training work started")

    monkeypatch.setattr(trainer, "build_run", no_training)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert train(blocker) == 2
    one_error_line(capsys.readouterr().err, f"--output-dir {blocker} is a file, not a directory")
    assert blocker.read_text() == "not a directory"

    real_open, real_mkdir = os.open, Path.mkdir

    def read_only_open(path: Any, flags: int, *a: Any) -> int:
        if str(path).startswith(str(tmp_path / "ro")) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *a)

    def denied_mkdir(self: Path, *a: Any, **k: Any) -> None:
        if self.name == "denied":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        real_mkdir(self, *a, **k)

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(os, "open", read_only_open)
    monkeypatch.setattr(Path, "mkdir", denied_mkdir)
    assert train(tmp_path / "ro") == 2
    one_error_line(
        capsys.readouterr().err, f"--output-dir {tmp_path / 'ro'} is not writable (Read-only file system)"
    )
    assert train(tmp_path / "denied" / "run") == 2
    one_error_line(
        capsys.readouterr().err,
        f"cannot create --output-dir {tmp_path / 'denied' / 'run'}: Permission denied",
    )
    assert not (tmp_path / "denied").exists()


# --------------------------------------------------------------------------------------------------
# 3. Every flag checked where it is parsed


BAD_FLAGS = [
    (["--lr-step-size", "0"], "--lr-step-size must be a positive integer, got 0"),
    (["--model-ema-steps", "0"], "--model-ema-steps must be a positive integer, got 0"),
    (["--threads", "-1"], "--threads must not be negative, got -1"),
    (["--lr-gamma", "-0.5"], "--lr-gamma must be in (0, 1], got -0.5"),
    (["--lr-gamma", "0"], "--lr-gamma must be in (0, 1], got 0.0"),
    (["--lr-gamma", "2"], "--lr-gamma must be in (0, 1], got 2.0"),
    (["--model-ema-decay", "1"], "--model-ema-decay must be in (0, 1), got 1.0"),
    (["--model-ema-decay", "0"], "--model-ema-decay must be in (0, 1), got 0.0"),
    (["--random-crop-pad", "-2"], "--random-crop-pad must not be negative, got -2"),
    (["--random-erase", "1.5"], "--random-erase must be in [0, 1], got 1.5"),
    (["--momentum", "1"], "--momentum must be in [0, 1), got 1.0"),
    (["--momentum", "-0.1"], "--momentum must be in [0, 1), got -0.1"),
    (["--label-smoothing", "1"], "--label-smoothing must be in [0, 1), got 1.0"),
    (["--lr-warmup-epochs", "-1"], "--lr-warmup-epochs must not be negative, got -1.0"),
    (["--lr-warmup-epochs", "2"], "--lr-warmup-epochs 2 is longer than the run (--epochs 1)"),
    (["--lr-warmup-decay", "1.5"], "--lr-warmup-decay must be in [0, 1], got 1.5"),
    (["--lr-min", "-0.1"], "--lr-min must be in [0, 1], got -0.1"),
    (["--clip-grad-norm", "-1"], "--clip-grad-norm must not be negative, got -1.0"),
    (["--aux-weight", "nan"], "--aux-weight must not be negative, got nan"),
    (["--mixup-alpha", "inf"], "--mixup-alpha must not be negative, got inf"),
    (["--cutmix-alpha", "-1"], "--cutmix-alpha must not be negative, got -1.0"),
    (["--weight-decay", "nan"], "--weight-decay must not be negative, got nan"),
    (["--norm-weight-decay", "-1"], "--norm-weight-decay must not be negative, got -1.0"),
    (["--lr", "inf"], "--lr must be positive, got inf"),
    (["--seed", "-1"], "--seed must be in [0, 2147483647], got -1"),
    (["--stop-after", "-1"], "--stop-after must not be negative, got -1"),
    (["--subset", "-5"], "--subset must not be negative, got -5"),
    (["--input-size", "-1"], "--input-size must not be negative, got -1"),
    (["--input-size", "2"], "--input-size 2 is too small for googlenet_small: the minimum is 4"),
    (["--opt", "adam"], "unknown --opt 'adam'; choose one of sgd, adamw"),
    (["--auto-augment", "rand"], "unknown --auto-augment 'rand'; choose one of none, trivial, autoaugment"),
    (["--amp", ""], "unknown --amp ''; choose one of off, bf16, fp16, auto"),
    (["--save-format", "onnx"], "unknown --save-format 'onnx'"),
    (["--lr-scheduler", "linear"], "unknown --lr-scheduler 'linear'"),
    (["--dataset", ""], "unknown dataset ''"),
    (["--model", ""], "unknown model ''"),
    (["--model-kwargs", "width"], "--model-kwargs expects KEY=VALUE, got 'width'"),
    (["--weights", ""], "--weights is empty"),
    (["--resume", ""], "--resume is empty"),
    (["--output-dir", " "], "--output-dir is empty"),
    (["--data", ""], "--data is empty"),
    (["--device", "cuda" if not torch.cuda.is_available() else "cuda:99"], "--device cuda"),
    (["--device", "mps"], "--device mps is not supported"),
    (["--device", "meta"], "--device meta is not supported"),
    (["--device", "tpu"], "--device 'tpu' is not a device"),
    (["--overwrite", "--resume", "auto"], "--overwrite replaces the run in --output-dir, --resume continues it"),
]  # fmt: skip


@pytest.mark.parametrize("flags, message", BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_bad_flag_values_name_the_flag(flags, message, tmp_path, capsys):
    assert train(tmp_path / "o", *flags) == 2
    one_error_line(capsys.readouterr().err, message)
    assert not (tmp_path / "o").exists()  # refused before anything was created


@pytest.mark.parametrize("flags", [["--epochs", "ten"], ["--lr", ""], ["--subset", "1e9"], ["--seed", "inf"]])
def test_flag_values_of_the_wrong_type_are_argparse_errors(flags, capsys):
    with pytest.raises(SystemExit) as stop:
        cli(["train", *TINY, *flags])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"error: argument {flags[0]}" in err and "invalid" in err and "Traceback" not in err


BAD_RECIPES = [
    ("epochs: ten", "epochs: expected an integer, got 'ten'"),
    ("epochs: 2.5", "epochs: expected an integer, got 2.5"),
    ("lr: [1]", "lr: expected a number, got [1]"),
    ("lr: true", "lr: expected a number, got True"),
    ("amp: off", "amp: expected a string (YAML reads unquoted on/off/yes/no as true/false: quote it), got False"),
    ("hflip: maybe", "hflip: expected true or false, got 'maybe'"),
    ("model_ema: 1", "model_ema: expected true or false, got 1"),
    ("model_kwargs: width=0.25", "model_kwargs: expected a list of KEY=VALUE, got 'width=0.25'"),
    ("weights: 12", "weights: expected a string, got 12"),
    ("random_erase: 2", "--random-erase must be in [0, 1], got 2.0"),
]  # fmt: skip


@pytest.mark.parametrize("line, message", BAD_RECIPES, ids=[line for line, _ in BAD_RECIPES])
def test_recipe_value_of_the_wrong_type_names_the_key(line, message, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"{line}\n")
    assert cli(["train", "--recipe", str(recipe), "--dataset", "digits"]) == 2
    err = one_error_line(capsys.readouterr().err, message)
    assert message.startswith("--") or f"recipe {recipe}: " in err


def test_recipe_numbers_as_yaml_writes_them_are_read_as_numbers(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("lr: 1e-3\nepochs: '3'\nmodel_kwargs: {width: 0.25}\namp: 'off'\nweights: null\n")
    args = parse_args(["--recipe", str(recipe)])
    assert (args.lr, args.epochs, args.model_kwargs, args.amp, args.weights) == (
        0.001,
        3,
        ["width=0.25"],
        "off",
        None,
    )


def test_help_documents_overwrite():
    text = " ".join(get_args_parser().format_help().split())
    assert "--overwrite" in text and "such a directory is refused" in text


# --------------------------------------------------------------------------------------------------
# 4. Resuming with another configuration


CHANGED = [
    (["--opt", "sgd"], "--opt=sgd but the run used --opt=adamw"),
    (["--dataset", "cifar10"], "--dataset=cifar10 but the run used --dataset=digits"),
    (["--model-kwargs", "width=0.25"], "--model-kwargs=width=0.25 but the run used --model-kwargs=width=0.125"),
    (["--batch-size", "16"], "--batch-size=16 but the run used --batch-size=32"),
    (["--lr", "0.1"], "--lr=0.1 but the run used --lr=0.003"),
    (["--subset", "128"], "--subset=128 but the run used --subset=64"),
    (["--model", "googlenet"], "is a googlenet_small checkpoint, not googlenet"),
]  # fmt: skip


@pytest.mark.parametrize("flags, message", CHANGED, ids=[" ".join(f) for f, _ in CHANGED])
def test_resume_with_another_configuration_says_what_changed(flags, message, run_dir, capsys):
    before = fingerprint(run_dir)
    assert train(run_dir, "--resume", "auto", "--epochs", "2", *flags) == 2
    line = one_error_line(capsys.readouterr().err, message)
    assert "is a googlenet_small" in line or "start a new run with a fresh --output-dir" in line
    assert fingerprint(run_dir) == before


def test_resume_with_another_number_of_classes(run_dir, tmp_path, capsys):
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    path = tmp_path / "five.pt"
    torch.save({**ckpt, "classes": ckpt["classes"][:5]}, path)
    assert train(tmp_path / "o", "--resume", str(path), "--epochs", "2") == 2
    one_error_line(capsys.readouterr().err, "was given with 10 classes (0, 1, 2, 3, 4, ...) but the run used 5 "
                   "classes (0, 1, 2, 3, 4)", "fresh --output-dir")  # fmt: skip


# --------------------------------------------------------------------------------------------------
# 5. A random model is never evaluated or frozen


def test_test_only_and_freeze_backbone_need_trained_weights(run_dir, tmp_path, capsys):
    assert train(tmp_path / "o", "--test-only") == 2
    one_error_line(capsys.readouterr().err, "--test-only evaluates a trained model", "--resume", "--weights")
    assert train(tmp_path / "o", "--test-only", "--resume", "auto") == 2
    one_error_line(capsys.readouterr().err, f"there is no checkpoint.pt in {tmp_path / 'o'}")
    assert train(tmp_path / "o", "--freeze-backbone") == 2
    one_error_line(capsys.readouterr().err, "--freeze-backbone", "give --weights")
    assert not (tmp_path / "o").exists()
    before = fingerprint(run_dir)
    assert train(run_dir, "--test-only", "--resume", "auto") == 0  # writes nothing, takes no lock
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["count"] == 359 and 0 <= res["acc1"] <= 1
    assert fingerprint(run_dir) == before


# --------------------------------------------------------------------------------------------------
# 6. Tiny data sets


def test_a_lone_last_image_is_dropped_and_tiny_sets_are_explained(tmp_path, capsys):
    # 33 images, batches of 32: the last batch would be one image, which BatchNorm cannot train on
    assert train(tmp_path / "a", "--subset", "33", *STEM2) == 0
    assert train(tmp_path / "b", "--subset", "4", "--batch-size", "1", *STEM2) == 2
    one_error_line(capsys.readouterr().err, "a training batch of one image reached a BatchNorm layer",
                   "--batch-size 2 or more")  # fmt: skip
    assert not (tmp_path / "b" / rundir.LOCK).exists()
    assert train(tmp_path / "c", "--subset", "1") == 2
    one_error_line(capsys.readouterr().err, "(--subset 1) has 1 image of 1 class", "at least 2 classes")
    assert train(tmp_path / "d", "--subset", "20") == 0  # fewer images than a batch: one step an epoch
    assert "has 20 images, fewer than --batch-size 32" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# 7. Results are never meaningless


@pytest.mark.parametrize("where", ["val", "test"])
def test_non_finite_validation_or_test_result_is_an_error(where, tmp_path, monkeypatch, capsys):
    import inceptionnet.train.trainer as trainer

    real = trainer.evaluate

    def nan_loss(*a: Any, **k: Any) -> dict[str, Any]:
        res = real(*a, **k)
        return {**res, "loss": float("nan")} if k.get("desc") == where else res

    monkeypatch.setattr(trainer, "evaluate", nan_loss)
    assert train(tmp_path, "--val-split", "100") == 2
    err = capsys.readouterr().err
    what = "validation (epoch 0)" if where == "val" else "test"
    assert f"error: the {what} loss is nan" in err and "Traceback" not in err
    assert not (tmp_path / "results.json").exists() and not (tmp_path / rundir.LOCK).exists()
    assert (tmp_path / "best.pt").exists() == (where == "test")  # a NaN epoch saves nothing


# --------------------------------------------------------------------------------------------------
# 8. A classifier needs two classes


def test_image_folder_with_one_class_is_refused(tmp_path, capsys):
    root = tmp_path / "imgs"
    for split in ("train", "val"):
        (root / split / "cat").mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((10, 12, 3), 40 * i, dtype=np.uint8)).save(
                root / split / "cat" / f"{i}.png"
            )
    argv = ["train", "--dataset", "imagefolder", "--data", str(root), "--model", "googlenet_small",
            "--model-kwargs", "width=0.125", "--input-size", "16", "--batch-size", "4", "--epochs", "1",
            "--no-progress", "--no-plots", "--no-tensorboard", "--output-dir", str(tmp_path / "o")]  # fmt: skip
    assert cli(argv) == 2
    one_error_line(capsys.readouterr().err, f"{root / 'train'} has 1 class (cat)", "at least 2 classes")
    assert not (tmp_path / "o").exists()
