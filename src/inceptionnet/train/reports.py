"""The run's reports, written by rank 0: ``args.yaml``, ``metrics.csv``, TensorBoard events (``tb/``),
``curves.png`` after each epoch; ``best.safetensors``, ``confusion.png`` and ``results.json`` (last) at the end.
All files are written atomically (``..fileio``).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..fileio import atomic_save_figure, atomic_write, atomic_write_text, sha256_of
from .args import public_args
from .state import Run

METRIC_FIELDS = [
    "epoch",
    "lr",
    "train_loss",
    "train_acc1",
    "val_loss",
    "val_acc1",
    "val_acc5",
    "ema_val_acc1",
    "seconds",
]


def write_metrics_csv(path: Path, history: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())


def plot_curves(path: Path, history: list[dict[str, Any]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    ep = [h["epoch"] + 1 for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    a1.plot(ep, [h["val_loss"] for h in history], "o-", label="val")
    a1.set(xlabel="epoch", ylabel="loss", title="loss")
    a2.plot(ep, [h["train_acc1"] for h in history], "o-", label="train top-1")
    a2.plot(ep, [h["val_acc1"] for h in history], "o-", label="val top-1")
    if any(h.get("ema_val_acc1") not in (None, "") for h in history):
        a2.plot(ep, [h.get("ema_val_acc1") for h in history], "o--", label="EMA val top-1")
    a2.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for a in (a1, a2):
        a.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole: no 1.25, 1.5 ticks
        a.grid(alpha=0.3)
        a.legend()
    fig.suptitle(title)
    fig.tight_layout()
    atomic_save_figure(fig, path)
    plt.close(fig)


def plot_confusion(path: Path, confusion: list[list[int]], classes: Sequence[str], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(confusion, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * n, 0.8 + 0.55 * n))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")  # fmt: skip
    fig.tight_layout()
    atomic_save_figure(fig, path)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------
# The run's reports


def start_reports(run: Run) -> Any:
    """The run directory and its ``args.yaml``; returns the TensorBoard writer (None: off or not installed)."""
    run.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run.out / "args.yaml", yaml.safe_dump(public_args(run.args), sort_keys=True))
    if not run.args.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(log_dir=str(run.out / "tb"))
    except ImportError:
        print("warning: tensorboard is not installed; no events written", file=sys.stderr)
        return None


def epoch_reports(run: Run, writer: Any) -> None:
    """``metrics.csv``, the TensorBoard scalars and ``curves.png`` after the epoch ``run.history[-1]``."""
    write_metrics_csv(run.out / "metrics.csv", run.history)
    row = run.history[-1]
    if writer is not None:
        for k in ("lr", "train_loss", "train_acc1", "val_loss", "val_acc1", "val_acc5"):
            writer.add_scalar(k, row[k], row["epoch"] + 1)
        writer.flush()
    if run.args.plots:
        plot_curves(run.out / "curves.png", run.history, f"{run.args.model} on {run.args.dataset}")


def final_reports(run: Run, test: dict[str, Any]) -> None:
    """``best.safetensors`` (with --save-format safetensors) of the tested weights, ``confusion.png`` (up to
    20 classes), then ``results.json``: written last, it names best.pt's epoch and sha256 only once the
    files it describes are in place (the trainer has checked that best.pt holds that epoch)."""
    args = run.args
    best = run.out / "best.pt" if run.best_epoch else None
    if args.save_format == "safetensors":
        save_safetensors(run)
    if args.plots and len(run.classes) <= 20:
        plot_confusion(
            run.out / "confusion.png",
            test["confusion"],
            run.classes,
            f"{args.model}: test top-1 {test['acc1']:.4f}",
        )
    result = {
        "model": args.model, "dataset": args.dataset, "split": "test", "epochs": args.epochs,
        "best_val_acc1": run.best_acc1 if best else None, "best_epoch": run.best_epoch if best else None,
        "best_weights": run.best_weights if best else None, "best_sha256": sha256_of(best) if best else None,
        "test_loss": test["loss"], "test_acc1": test["acc1"], "test_acc5": test["acc5"], "test_images": test["count"],
        "train_seconds": sum(h["seconds"] for h in run.history),
    }  # fmt: skip
    # allow_nan=False: strict JSON (no bare NaN); the trainer has refused a non-finite result before
    atomic_write_text(run.out / "results.json", json.dumps(result, indent=2, allow_nan=False))


def save_safetensors(run: Run) -> None:
    """``best.safetensors``: the model's weights as tested (best.pt's), its metadata naming their epoch."""
    from safetensors.torch import save_file

    sd = {k: v.contiguous() for k, v in run.model.state_dict().items()}
    meta = {"model_name": run.args.model, "model_kwargs": json.dumps(run.model_kwargs),
            "classes": json.dumps(run.classes), "data_cfg": json.dumps(run.icfg.to_dict()),
            "best_epoch": str(run.best_epoch), "weights_from": run.best_weights}  # fmt: skip
    atomic_write(run.out / "best.safetensors", lambda tmp: save_file(sd, tmp, metadata=meta))
