"""What a run can resume from: the run's pieces (``Run``), the sampler that skips trained batches, the
RNG states, the checkpoint dict and its restore, and the graceful stop on SIGINT/SIGTERM.

A run resumed from ``checkpoint.pt`` continues bit-exactly: every rank restores its own RNG states,
and a run interrupted mid-epoch skips the batches it has already trained on.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler

from .. import data as D
from ..errors import CheckpointError, first_line
from ..fileio import atomic_torch_save, load_file, same_file
from ..models import InceptionBase, fit_state_dict
from ..models._builder import read_checkpoint_meta
from .args import public_args
from .engine import EpochState, StopFlag

CHECKPOINT_VERSION = 1


@dataclass
class Run:
    """One training run's pieces, built once and handed to each step; the last five fields change as
    it trains (``start_epoch`` .. ``epoch_state`` come from the checkpoint on resume)."""

    args: argparse.Namespace
    rank: int
    world: int
    device: torch.device
    out: Path
    model: InceptionBase  # the weights that are evaluated and saved
    model_kwargs: dict[str, Any]
    classes: list[str]
    icfg: D.InputConfig
    train_model: nn.Module  # ``model`` under SyncBN / DDP / torch.compile, as configured
    ema: Any  # torch.optim.swa_utils.AveragedModel or None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: Any  # torch.amp.GradScaler for fp16, else None
    start_epoch: int = 0
    best_acc1: float = -1.0
    best_epoch: int = 0  # epochs completed when best.pt was saved (0: none yet)
    best_weights: str = "model"  # "ema" where the EMA weights scored best
    # tells this run's best.pt from another's (None: a checkpoint from before run ids)
    run_id: str | None = field(default_factory=lambda: uuid.uuid4().hex)
    history: list[dict[str, Any]] = field(default_factory=list)
    best_val: dict[str, Any] | None = None  # the best epoch's val result (reused as test when val is test)
    epoch_state: EpochState | None = None  # set when resuming mid-epoch

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def progress(self) -> bool:
        return bool(self.args.progress and self.is_main)


class ResumableSampler(DistributedSampler):  # type: ignore[type-arg]
    """DistributedSampler (also for one process) that can skip the first ``start`` samples of an epoch,
    so that a run interrupted mid-epoch continues with exactly the batches it had not seen."""

    def __init__(self, dataset: Any, num_replicas: int, rank: int, shuffle: bool, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.start = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(super().__iter__())[self.start :])

    def __len__(self) -> int:
        return super().__len__() - self.start


# --------------------------------------------------------------------------------------------------
# RNG


def rng_state() -> dict[str, Any]:
    np_state: Any = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [
            np_state[0],
            torch.from_numpy(np_state[1].astype(np.int64)),
            *[float(x) for x in np_state[2:]],
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_to_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), int(n[2]), int(n[3]), float(n[4])))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _to_tuple(x: Any) -> Any:
    return tuple(_to_tuple(v) for v in x) if isinstance(x, list | tuple) else x


def gather_rng_states() -> list[dict[str, Any]]:
    """Every rank's RNG state (rank 0 stores them all; each rank restores its own)."""
    mine = rng_state()
    if not dist.is_initialized():
        return [mine]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, mine)
    return out


def set_seed(seed: int, rank: int) -> None:
    random.seed(seed + rank)
    np.random.seed(seed + rank)
    torch.manual_seed(seed + rank)


# --------------------------------------------------------------------------------------------------
# Checkpoints


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    ckpt = load_file(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "epoch" not in ckpt:
        raise CheckpointError(f"{path} is not a training checkpoint of inceptionnet (no model/epoch); "
                              "to start from plain weights use --weights")  # fmt: skip
    read_checkpoint_meta(Path(path), ckpt)  # classes, model_kwargs ... checked before a message shows them
    return ckpt


def checkpoint_dict(
    run: Run, epoch: int, state: EpochState | None, rngs: list[dict[str, Any]]
) -> dict[str, Any]:
    """The checkpoint at ``epoch`` (with ``state``: interrupted in that epoch, after ``state.step`` steps)."""
    return {
        "version": CHECKPOINT_VERSION,
        "model": run.model.state_dict(),
        "model_name": run.args.model,
        "model_kwargs": run.model_kwargs,
        "classes": run.classes,
        "data_cfg": run.icfg.to_dict(),
        "optimizer": run.optimizer.state_dict(),
        "lr_scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler is not None else None,
        "model_ema": run.ema.state_dict() if run.ema is not None else None,
        "epoch": epoch,
        "epoch_state": state.as_dict() if state is not None else None,
        "best_acc1": run.best_acc1,
        "best_epoch": run.best_epoch,
        "best_weights": run.best_weights,
        "run_id": run.run_id,
        "history": run.history,
        "args": public_args(run.args),
        "rng": rngs,
    }


def save_checkpoint(run: Run, epoch: int, state: EpochState | None) -> dict[str, Any] | None:
    """``checkpoint.pt`` (atomically, by rank 0); a collective: every rank calls it. Returns the dict
    on rank 0, None elsewhere."""
    rngs = gather_rng_states()
    if not run.is_main:
        return None
    ck = checkpoint_dict(run, epoch, state, rngs)
    atomic_torch_save(ck, run.out / "checkpoint.pt")
    return ck


def save_best(run: Run, ck: dict[str, Any], use_ema: bool) -> None:
    """``best.pt``: the checkpoint ``ck`` (an end-of-epoch one, whose ``best_*`` fields name its own
    epoch), with the EMA weights where they scored best. Written after ``checkpoint.pt``, which thus
    always names the best epoch first: ``repair_best`` finds a best.pt that a crash left behind."""
    ck = {**ck, "weights_from": "ema" if use_ema else "model"}
    if use_ema:
        assert run.ema is not None
        ck["model"] = run.ema.module.state_dict()
    atomic_torch_save(ck, run.out / "best.pt")


# --------------------------------------------------------------------------------------------------
# best.pt: what it holds, checked and repaired on --resume


@dataclass(frozen=True)
class BestRecord:
    """The weights best.pt holds (or should hold): whose run, after how many epochs, their val top-1,
    and whether they are the EMA's."""

    run_id: str | None
    epoch: int
    acc1: float
    weights: str = "model"

    def describe(self) -> str:
        return f"epoch {self.epoch} (val top-1 {self.acc1:.4f}{', EMA weights' if self.weights == 'ema' else ''})"


def run_best(run: Run) -> BestRecord | None:
    return BestRecord(run.run_id, run.best_epoch, run.best_acc1, run.best_weights) if run.best_epoch else None


def row_score(row: dict[str, Any]) -> tuple[float, str]:
    """An epoch's score (its val top-1, or its EMA's where that is as good) and which weights scored it."""
    ema = row.get("ema_val_acc1")
    if ema not in (None, "") and float(ema) >= float(row["val_acc1"]):
        return float(ema), "ema"
    return float(row["val_acc1"]), "model"


def wanted_best(ckpt: dict[str, Any]) -> BestRecord | None:
    """The best epoch a checkpoint names (older checkpoints: the first top score of its history)."""
    if "best_epoch" in ckpt:
        if not ckpt["best_epoch"]:
            return None
        return BestRecord(ckpt.get("run_id"), int(ckpt["best_epoch"]), float(ckpt["best_acc1"]),
                          str(ckpt.get("best_weights", "model")))  # fmt: skip
    scored = [(*row_score(r), int(r["epoch"]) + 1) for r in ckpt.get("history") or []]
    if not scored:
        return None
    acc1, weights, epoch = max(scored, key=lambda t: (t[0], -t[2]))
    return BestRecord(ckpt.get("run_id"), epoch, acc1, weights)


def last_epoch_best(ckpt: dict[str, Any], has_ema: bool) -> BestRecord | None:
    """checkpoint.pt's own weights as a candidate for best.pt: an end-of-epoch checkpoint, scored by
    the last row of its history (None mid-epoch, or EMA weights that this run does not keep)."""
    hist = ckpt.get("history") or []
    if ckpt.get("epoch_state") or not hist or int(hist[-1]["epoch"]) + 1 != int(ckpt["epoch"]):
        return None
    acc1, weights = row_score(hist[-1])
    if weights == "ema" and not (has_ema and ckpt.get("model_ema")):
        return None
    return BestRecord(ckpt.get("run_id"), int(ckpt["epoch"]), acc1, weights)


def read_best(path: Path) -> tuple[dict[str, Any] | None, BestRecord | None, str]:
    """best.pt, what it holds, and that in words; (None, None, why) where it is missing or unusable."""
    if not path.exists():
        return None, None, f"there is no {path}"
    try:
        bp = load_checkpoint(path)
        if bp.get("epoch_state"):
            return None, None, f"{path} is a mid-epoch checkpoint"
        rec = BestRecord(bp.get("run_id"), int(bp["epoch"]), float(bp["best_acc1"]),
                         str(bp.get("weights_from", "model")))  # fmt: skip
    except CheckpointError as e:
        return None, None, f"{path} cannot be read ({first_line(e, 160)})"
    except (KeyError, TypeError, ValueError):
        return None, None, f"{path} is not a best checkpoint of this trainer (no epoch / best_acc1)"
    return bp, rec, f"{path} holds {rec.describe()}"


def repair_best(run: Run, ckpt: dict[str, Any], ckpt_path: Path) -> None:
    """On ``--resume``: best.pt made to hold the best weights that checkpoint.pt knows of (a crash or a
    full disk between writing checkpoint.pt and best.pt leaves it older or missing), or one warning
    naming the weights that were lost. Afterwards ``run.best_*`` describe best.pt, on every rank."""
    rec = fix_best_file(run, ckpt, ckpt_path) if run.is_main else None
    if dist.is_initialized():
        box = [rec]
        dist.broadcast_object_list(box, src=0)
        rec = box[0]
    rec = rec or BestRecord(run.run_id, 0, -1.0)
    run.best_acc1, run.best_epoch, run.best_weights = rec.acc1, rec.epoch, rec.weights


def fix_best_file(run: Run, ckpt: dict[str, Any], ckpt_path: Path) -> BestRecord | None:
    """Rank 0's part of ``repair_best``: the best.pt beside ``ckpt_path`` kept (copied into --output-dir
    when the run continues elsewhere), or best.pt rewritten from the checkpoint where that scored higher
    (exactly the lost best when the run stopped between the two files); returns what best.pt holds."""
    want, src, dest = wanted_best(ckpt), ckpt_path.parent / "best.pt", run.out / "best.pt"
    bp, have, why = read_best(src)
    if have is not None and have.run_id != run.run_id:
        why, bp, have = f"{src} is another run's ({have.describe()})", None, None
    last = last_epoch_best(ckpt, run.ema is not None)
    keep = have if have == want or last is None or (have is not None and have.acc1 >= last.acc1) else last
    if last is not None and keep is last:
        fields = {"best_acc1": last.acc1, "best_epoch": last.epoch, "best_weights": last.weights}
        save_best(run, {**ckpt, **fields}, last.weights == "ema")
    elif bp is not None and not same_file(src, dest):
        atomic_torch_save(bp, dest)
    if want is not None and keep != want:
        now = f"best.pt now holds {keep.describe()}" if keep else "the next completed epoch writes best.pt"
        print(f"warning: the weights of the run's best {want.describe()} were not kept ({why}); {now}, and a "
              "later epoch that scores higher replaces it", file=sys.stderr)  # fmt: skip
    elif want is not None and have != want:
        print(f"note: best.pt did not hold the run's best {want.describe()} ({why}: the run stopped between "
              f"writing checkpoint.pt and best.pt); rewritten from {ckpt_path}", file=sys.stderr)  # fmt: skip
    return keep


def load_best(run: Run) -> dict[str, Any] | None:
    """best.pt for the final test, checked to hold what this run recorded (None: no epoch was the best)."""
    want = run_best(run)
    if want is None:
        return None
    path = run.out / "best.pt"
    bp, have, why = read_best(path)
    if bp is None or have != want:
        raise CheckpointError(f"{path} does not hold this run's best {want.describe()} ({why}): it was changed "
                              f"while the run trained; continue with --resume auto --output-dir {run.out} to repair it")  # fmt: skip
    return bp


# What a resumed run must share with the run it continues: the model, the data, and the optimizer
# (whose hyperparameters load_state_dict would silently take from the checkpoint over the flags).
RESUME_SAME = ("dataset", "subset", "val_split", "batch_size", "opt", "lr", "momentum", "nesterov",
               "weight_decay", "norm_weight_decay", "freeze_backbone")  # fmt: skip


def check_resume(
    args: argparse.Namespace, ckpt: dict[str, Any], path: Path, model_kwargs: dict[str, Any]
) -> None:
    """``--resume`` with another model, data set or optimizer than the run used: one line saying what changed."""
    if ckpt.get("model_name") not in (None, args.model):
        raise CheckpointError(f"{path} is a {ckpt['model_name']} checkpoint, not {args.model}")
    saved = ckpt.get("args") or {}
    now = {k: getattr(args, k) for k in RESUME_SAME if k in saved}
    was = {k: saved[k] for k in now}
    if "model_kwargs" in ckpt:
        now["model_kwargs"], was["model_kwargs"] = model_kwargs, ckpt["model_kwargs"]
    changed = [k for k in now if now[k] != was[k]]
    if changed:
        raise CheckpointError(f"--resume {path} was given with {flags_of(now, changed)} but the run used "
                              f"{flags_of(was, changed)}; resume with the run's flags, or start a new run with a "
                              "fresh --output-dir")  # fmt: skip


def flags_of(values: dict[str, Any], keys: list[str]) -> str:
    """``--batch-size=32, --model-kwargs=width=0.125 norm=none``: the flags ``keys`` as given."""

    def one(k: str) -> str:
        v = values[k]
        shown = " ".join(f"{a}={b}" for a, b in v.items()) if isinstance(v, dict) else v
        return f"--{k.replace('_', '-')}={shown}"

    return ", ".join(one(k) for k in keys)


def class_list(classes: list[str]) -> str:
    return f"{len(classes)} classes ({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''})"


def restore(run: Run, ckpt: dict[str, Any], path: Path, sampler: ResumableSampler) -> None:
    """Weights, optimizer, schedule, scaler, EMA, progress and this rank's RNG state from ``ckpt``;
    ``sampler`` skips what the interrupted epoch had trained on."""
    args = run.args
    classes = ckpt.get("classes")
    if classes is not None and list(classes) != run.classes:
        raise CheckpointError(f"--resume {path} was given with {class_list(run.classes)} but the run used "
                              f"{class_list(classes)}; start a new run with a fresh --output-dir")  # fmt: skip
    fit_state_dict(run.model, ckpt["model"], source=f"checkpoint {path}")
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scheduler.load_state_dict(ckpt["lr_scheduler"])
    if run.scaler is not None and ckpt.get("scaler"):
        run.scaler.load_state_dict(ckpt["scaler"])
    if run.ema is not None and ckpt.get("model_ema"):
        run.ema.load_state_dict(ckpt["model_ema"])
    run.start_epoch = int(ckpt["epoch"])
    run.best_acc1 = float(ckpt.get("best_acc1", -1.0))
    run.run_id = ckpt.get("run_id")
    want = wanted_best(ckpt)
    run.best_epoch, run.best_weights = (want.epoch, want.weights) if want else (0, "model")
    run.history = list(ckpt.get("history", []))
    rngs = ckpt.get("rng") or []
    if len(rngs) == run.world:
        set_rng_state(rngs[run.rank])
    epoch_state = None
    if ckpt.get("epoch_state"):  # interrupted mid-epoch: skip the batches already trained on
        epoch_state = run.epoch_state = EpochState(**ckpt["epoch_state"])
        sampler.start = epoch_state.step * args.batch_size
    if run.is_main:
        where = (
            f"epoch {run.start_epoch} step {epoch_state.step}" if epoch_state else f"epoch {run.start_epoch}"
        )
        print(f"resumed from {path} at {where}")


# --------------------------------------------------------------------------------------------------
# Graceful stop


class GracefulStop:
    """SIGINT/SIGTERM set ``flag``: the loop finishes the step it is in (on every rank: ``sync``), then
    saves a checkpoint and stops. A second signal stops at once (KeyboardInterrupt)."""

    def __init__(self, is_main: bool, world: int, device: torch.device) -> None:
        self.flag = StopFlag()
        self.is_main, self.world, self.device = is_main, world, device
        self._old_handlers: dict[signal.Signals, Any] = {}

    def install(self) -> None:
        for s in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[s] = signal.signal(s, self.on_signal)

    def uninstall(self) -> None:
        for s, h in self._old_handlers.items():
            signal.signal(s, h)

    def on_signal(self, signum: int, frame: Any) -> None:
        if self.flag.signum:  # a second signal: stop now
            raise KeyboardInterrupt
        self.flag.signum = signum
        if self.is_main:
            print(f"\n{signal.Signals(signum).name}: finishing the current step, then saving a checkpoint",
                  file=sys.stderr)  # fmt: skip

    def sync(self, _: EpochState) -> None:
        """After each step (``train_one_epoch``'s ``on_step``): every rank must stop at the same step."""
        if self.world > 1:
            t = torch.tensor([self.flag.signum], device=self.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            self.flag.signum = int(t.item())
