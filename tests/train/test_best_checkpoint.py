"""best.pt is never stale (issue 35, item 5): a crash or a full disk between writing checkpoint.pt and
best.pt is repaired by ``--resume``; where the best epoch's weights are gone, one warning says so and
best.pt holds the best that was kept; results.json names best.pt's epoch and sha256 and is written
only for files that exist and match.

Validation scores are scripted (``scripted``: the real evaluation with its top-1 replaced) so that
which epoch is the best is known; a full disk on best.pt is ``trainer.save_best`` raising
``OutputWriteError``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from helpers import TINY
from inceptionnet.cli import main as cli
from inceptionnet.errors import OutputWriteError
from inceptionnet.fileio import sha256_of
from inceptionnet.train import trainer

RUN = [*TINY, "--subset", "32", "--batch-size", "16"]


def train(out: Path, *extra: str) -> int:
    return cli(["train", *RUN, "--output-dir", str(out), *extra])


def scripted(mp: pytest.MonkeyPatch, scores: dict[str, list[float]]) -> None:
    """The val ("val") and EMA ("val ema") top-1 of successive epochs are ``scores``."""
    real, calls = trainer.evaluate, dict.fromkeys(scores, 0)

    def evaluate(*a: Any, desc: str = "eval", **k: Any) -> dict[str, Any]:
        res = real(*a, desc=desc, **k)
        if desc in scores:
            res, calls[desc] = {**res, "acc1": scores[desc][calls[desc]]}, calls[desc] + 1
        return res

    mp.setattr(trainer, "evaluate", evaluate)


def disk_full_on_best(mp: pytest.MonkeyPatch, at: int, keep: dict[int, Path] | None = None) -> None:
    """The ``at``-th write of best.pt fails as on a full disk (0: none fails); ``keep[n]`` gets a copy of
    best.pt as the n-th write left it."""
    real, calls = trainer.save_best, [0]

    def save_best(run: Any, ck: dict[str, Any], use_ema: bool) -> None:
        calls[0] += 1
        if calls[0] == at:
            raise OutputWriteError(f"cannot write {run.out / 'best.pt'}: no space left on device")
        real(run, ck, use_ema)
        if keep and calls[0] in keep:
            shutil.copy(run.out / "best.pt", keep[calls[0]])

    mp.setattr(trainer, "save_best", save_best)


def load(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def ema_weights(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The EMA's model weights out of a checkpoint's AveragedModel state."""
    ema = ckpt["model_ema"]
    return {k.removeprefix("module."): v for k, v in ema.items() if k.startswith("module.")}


def results(out: Path) -> dict[str, Any]:
    return json.loads((out / "results.json").read_text())


def assert_results_match_best(out: Path, epoch: int, acc1: float, weights: str = "model") -> None:
    best, res = load(out / "best.pt"), results(out)
    assert best["epoch"] == epoch and best.get("weights_from", "model") == weights
    assert (res["best_epoch"], res["best_val_acc1"], res["best_weights"]) == (epoch, acc1, weights)
    assert res["best_sha256"] == sha256_of(out / "best.pt")


# --------------------------------------------------------------------------------------------------
# A crash between checkpoint.pt and best.pt is repaired


@pytest.mark.parametrize(
    "case, epochs, fail_at, extra, scores",
    [
        ("never written", 1, 1, [], {"val": [0.3]}),
        ("EMA scored best", 2, 2, ["--model-ema"], {"val": [0.2, 0.5], "val ema": [0.1, 0.9]}),
    ],
)
def test_best_lost_between_the_two_files_is_rewritten_on_resume(
    tmp_path, capsys, case, epochs, fail_at, extra, scores
):
    out = tmp_path / "run"
    with pytest.MonkeyPatch.context() as mp:
        scripted(mp, scores)
        disk_full_on_best(mp, fail_at)
        assert train(out, "--epochs", str(epochs), *extra) == 2
    assert (out / "best.pt").exists() == (fail_at > 1)  # older (epoch 1) or never written
    capsys.readouterr()
    assert train(out, "--epochs", str(epochs), *extra, "--resume", "auto") == 0
    ckpt, best = load(out / "checkpoint.pt"), load(out / "best.pt")
    weights = "ema" if "val ema" in scores else "model"
    want = ema_weights(ckpt) if weights == "ema" else ckpt["model"]
    assert best["epoch"] == epochs and same_weights(best["model"], want)
    assert_results_match_best(out, epochs, max(s[-1] for s in scores.values()), weights)
    err = capsys.readouterr().err
    assert f"note: best.pt did not hold the run's best epoch {epochs}" in err and "warning" not in err


# --------------------------------------------------------------------------------------------------
# A finished run whose best is epoch 2 of 3; best-epoch1.pt is best.pt as epoch 1 left it


SCORES = {"val": [0.6, 0.9, 0.5]}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """READ ONLY: 3 epochs (val top-1 0.6, 0.9, 0.5) with --save-format safetensors."""
    out = tmp_path_factory.mktemp("finished") / "run"
    with pytest.MonkeyPatch.context() as mp:
        scripted(mp, SCORES)
        disk_full_on_best(mp, 0, keep={1: out.parent / "best-epoch1.pt"})
        assert train(out, "--epochs", "3", "--save-format", "safetensors") == 0
    assert load(out / "best.pt")["epoch"] == 2 and load(out.parent / "best-epoch1.pt")["epoch"] == 1
    return out


@pytest.fixture
def run_copy(finished: Path, tmp_path: Path) -> Iterator[Path]:
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    yield out


def resume(out: Path, *extra: str) -> int:
    return train(out, "--epochs", "3", "--save-format", "safetensors", "--resume", "auto", *extra)


@pytest.mark.parametrize(
    "damage, why, epoch, acc1",
    [
        ("deleted", "there is no ", 3, 0.5),
        ("truncated", "best.pt cannot be read", 3, 0.5),
        ("older", "best.pt holds epoch 1 (val top-1 0.6000)", 1, 0.6),
    ],
)
def test_lost_best_weights_warn_once_and_best_pt_holds_the_best_kept(
    run_copy, finished, capsys, damage, why, epoch, acc1
):
    best = run_copy / "best.pt"
    if damage == "deleted":
        best.unlink()
    elif damage == "truncated":
        best.write_bytes(best.read_bytes()[:1000])
    else:
        shutil.copy(finished.parent / "best-epoch1.pt", best)
    assert resume(run_copy) == 0
    if epoch == 3:  # rewritten from checkpoint.pt, the best weights that were kept
        assert same_weights(load(best)["model"], load(run_copy / "checkpoint.pt")["model"])
    assert_results_match_best(run_copy, epoch, acc1)
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1, warnings
    assert "best epoch 2 (val top-1 0.9000) were not kept" in warnings[0] and why in warnings[0]
    assert f"best.pt now holds epoch {epoch}" in warnings[0]


def test_best_pt_replaced_during_the_run_is_an_error_not_a_result(run_copy, finished, capsys, monkeypatch):
    real = trainer.final_test

    def final_test(*a: Any, **k: Any) -> int:  # another process writes best.pt before the final test
        shutil.copy(finished.parent / "best-epoch1.pt", run_copy / "best.pt")
        return real(*a, **k)

    monkeypatch.setattr(trainer, "final_test", final_test)
    assert resume(run_copy) == 2
    err = capsys.readouterr().err
    assert "does not hold this run's best epoch 2" in err and "--resume auto" in err
    assert not (run_copy / "results.json").exists() and not (run_copy / "best.safetensors").exists()


def test_a_resumed_run_keeps_no_results_of_its_old_end(run_copy, monkeypatch):
    """Resumed for a 4th epoch that scores best, with the disk full on best.pt: results.json and
    best.safetensors of the old end are gone (they named epoch 2); the next resume repairs best.pt
    and writes them again, best.safetensors holding best.pt's weights and naming its epoch."""
    from safetensors import safe_open

    scripted(monkeypatch, {"val": [0.95]})
    disk_full_on_best(monkeypatch, 1)
    assert resume(run_copy, "--epochs", "4") == 2
    assert not (run_copy / "results.json").exists() and not (run_copy / "best.safetensors").exists()
    assert resume(run_copy, "--epochs", "4") == 0
    assert_results_match_best(run_copy, 4, 0.95)
    with safe_open(str(run_copy / "best.safetensors"), framework="pt") as f:
        assert f.metadata()["best_epoch"] == "4"
        st = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    assert same_weights(st, load(run_copy / "best.pt")["model"])


def test_another_runs_best_pt_is_never_taken_for_this_runs(run_copy, capsys, monkeypatch):
    """--overwrite keeps the old run's best.pt until the new run writes its own: a full disk there, then
    --resume, must not test (and describe) the old run's weights."""
    scripted(monkeypatch, {"val": [0.4]})
    disk_full_on_best(monkeypatch, 1)
    assert train(run_copy, "--epochs", "1", "--overwrite") == 2
    assert train(run_copy, "--epochs", "1", "--resume", "auto") == 0
    ckpt, best = load(run_copy / "checkpoint.pt"), load(run_copy / "best.pt")
    assert same_weights(best["model"], ckpt["model"]) and best["run_id"] == ckpt["run_id"]
    assert_results_match_best(run_copy, 1, 0.4)
    assert "best.pt is another run's (epoch 2" in capsys.readouterr().err


def test_resume_into_another_output_dir_takes_the_runs_best_along(finished, tmp_path, capsys):
    """``--resume RUN/checkpoint.pt --output-dir NEW``: NEW/best.pt is the run's best (epoch 2), not a
    missing file with results.json naming epoch 2's score for the last weights."""
    new = tmp_path / "new"
    assert train(new, "--epochs", "3", "--resume", str(finished / "checkpoint.pt")) == 0
    assert load(new / "best.pt")["epoch"] == 2
    assert same_weights(load(new / "best.pt")["model"], load(finished / "best.pt")["model"])
    assert_results_match_best(new, 2, 0.9)
    err = capsys.readouterr().err
    assert "warning" not in err and "note: best.pt" not in err
