"""The training program: ``inceptionnet train`` / ``python -m inceptionnet.train`` / ``torchrun -m inceptionnet.train``.

In the style of torchvision's references/classification/train.py: ``get_args_parser()`` + ``main(args)``.
Flags override a YAML recipe (``--recipe NAME``), which overrides the defaults; the effective config is
saved as ``args.yaml`` beside the run. Outputs in ``--output-dir``: ``checkpoint.pt`` (latest),
``best.pt``, ``metrics.csv``, TensorBoard events (``tb/``), ``curves.png``, ``confusion.png``.

``train`` is the run as named steps: set up, build, restore, then either test only or train the
epochs (each: train, end of epoch) and test the best weights.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from .. import data as D
from ..errors import NonFiniteError, UsageError, first_line, run_cli
from ..runtime import all_reduce_sum, bf16_supported
from .args import apply_recipe, parse_args, validate_args
from .build import (
    Loaders,
    build_datasets,
    build_loaders,
    build_mixup,
    build_model,
    build_optimizer,
    build_scheduler,
    build_test_loader,
    check_classes,
    check_data,
    freeze_backbone,
    init_distributed,
    input_config,
    model_kwargs,
    pick_device,
    place_model,
)
from .engine import EpochState, TrainConfig, evaluate, train_one_epoch
from .reports import epoch_reports, final_reports, start_reports
from .rundir import claim_run_dir, drop_end_files
from .state import (
    GracefulStop,
    Run,
    check_resume,
    load_best,
    load_checkpoint,
    repair_best,
    restore,
    row_score,
    save_best,
    save_checkpoint,
    set_seed,
)


def main(args: argparse.Namespace) -> int:
    apply_recipe(args)  # a Namespace from get_args_parser().parse_args(): the recipe below its flags
    validate_args(args)
    rank, world, local_rank = init_distributed(args)
    try:
        return train(args, rank, world, local_rank)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def train(args: argparse.Namespace, rank: int, world: int, local_rank: int) -> int:
    """One process's part of the run; returns the exit code (128 + signal when a signal stopped it).

    Rank 0 owns the run directory for the whole run (``claim_run_dir``: created, locked, another run
    there refused); ``--test-only`` writes nothing and claims nothing."""
    device = setup_device(args, local_rank)
    out = Path(args.output_dir or f"runs/{args.model}-{args.dataset}")
    owns = rank == 0 and not args.test_only
    claim = claim_run_dir(out, resume=bool(args.resume), overwrite=args.overwrite) if owns else nullcontext()
    with claim, explained_failures(args):
        return run_steps(args, rank, world, device, out)


@contextmanager
def explained_failures(args: argparse.Namespace) -> Iterator[None]:
    """PyTorch's errors that our flags cause, as one line naming the flag: out of memory, and a batch of one
    image reaching BatchNorm ("Expected more than 1 value per channel when training")."""
    try:
        yield
    except RuntimeError as e:
        if not isinstance(e, torch.OutOfMemoryError) and "can't allocate memory" not in str(e):
            raise
        raise UsageError(f"out of memory ({first_line(e, 160)}); lower --batch-size (now {args.batch_size}) or "
                         f"--input-size") from None  # fmt: skip
    except ValueError as e:
        if "Expected more than 1 value per channel" not in str(e):
            raise
        raise UsageError(f"a training batch of one image reached a BatchNorm layer ({first_line(e, 160)}); use "
                         f"--batch-size 2 or more (now {args.batch_size}) and enough images (--subset)") from None  # fmt: skip


def run_steps(args: argparse.Namespace, rank: int, world: int, device: torch.device, out: Path) -> int:
    """Restore, then either test only or train the epochs and test the best weights."""
    resume_path = find_resume(args, out)
    ckpt = load_checkpoint(resume_path) if resume_path else None
    if ckpt is not None and resume_path is not None:
        check_resume(args, ckpt, resume_path, model_kwargs(args))
    set_seed(args.seed, rank)
    run, loaders = build_run(args, rank, world, device, out)
    if ckpt is not None and resume_path is not None:
        restore(run, ckpt, resume_path, loaders.sampler)
    if args.test_only:
        return test_only(run, loaders)
    if ckpt is not None and resume_path is not None:  # best.pt as checkpoint.pt says; the old end's files go
        repair_best(run, ckpt, resume_path)
        if run.is_main:
            drop_end_files(out)
    writer = start(run, loaders)
    end_epoch = min(args.epochs, run.start_epoch + args.stop_after) if args.stop_after else args.epochs
    interrupted = train_epochs(run, loaders, writer, end_epoch)
    if interrupted is not None:
        return interrupted
    if end_epoch < args.epochs:
        if run.is_main:
            print(f"stopped after epoch {end_epoch}/{args.epochs} (--stop-after); continue with "
                  f"--resume auto --output-dir {out}")  # fmt: skip
        return 0
    return final_test(run, loaders)


def setup_device(args: argparse.Namespace, local_rank: int) -> torch.device:
    """This process's device; resolves ``--amp auto`` and sets ``--threads``."""
    device = pick_device(args, local_rank)
    if args.amp == "auto":  # emulated bf16 (CPUs without AVX512-BF16/AMX) is several times slower than fp32
        args.amp = "bf16" if bf16_supported(device) else "off"
    if args.threads:
        torch.set_num_threads(args.threads)
    return device


def find_resume(args: argparse.Namespace, out: Path) -> Path | None:
    if args.resume == "auto":
        if (out / "checkpoint.pt").exists():
            return out / "checkpoint.pt"
        if args.test_only and not args.weights:
            raise FileNotFoundError(f"--test-only --resume auto: there is no checkpoint.pt in {out}; give "
                                    "--output-dir of a trained run, --resume CHECKPOINT or --weights")  # fmt: skip
        return None
    return Path(args.resume) if args.resume else None


def check_finite(res: dict[str, Any], what: str) -> None:
    """A NaN/inf loss or accuracy is an error, never a result."""
    for k in ("loss", "acc1", "acc5"):
        if not math.isfinite(res[k]):
            raise NonFiniteError(f"the {what} {k} is {res[k]} ({res['count']} images): the model's outputs are not "
                                 "finite; lower the learning rate or check the data (the last good checkpoint is "
                                 "kept, no results are written)")  # fmt: skip


def build_run(
    args: argparse.Namespace, rank: int, world: int, device: torch.device, out: Path
) -> tuple[Run, Loaders]:
    """Model, data, loaders, optimizer, schedule and (fp16) GradScaler, in the order that fixes the
    random draws after ``set_seed``."""
    info = D.dataset_info(args.dataset, args.data)
    check_classes(args, info)
    model, kwargs = build_model(args, len(info.classes), info.in_chans)
    if args.weights and rank == 0:
        print(f"loaded weights {args.weights}; classifier set to {len(info.classes)} classes")
    if args.freeze_backbone:
        freeze_backbone(model)
    icfg = input_config(args, model, info)
    train_set, val_set, test_set, collate = build_datasets(args, info, icfg, is_main=rank == 0)
    check_data(args, model, (train_set, val_set), world, is_main=rank == 0)
    classes = list(train_set.classes)
    model, ema, train_model = place_model(args, model, device, world)
    loaders = build_loaders(args, (train_set, val_set, test_set), collate, device, rank, world)
    optimizer = build_optimizer(args, model, device)
    scheduler = build_scheduler(args, optimizer, loaders.iters_per_epoch)
    scaler = torch.amp.GradScaler(device.type) if args.amp == "fp16" else None
    run = Run(
        args=args, rank=rank, world=world, device=device, out=out, model=model, model_kwargs=kwargs,
        classes=classes, icfg=icfg, train_model=train_model, ema=ema, optimizer=optimizer,
        scheduler=scheduler, scaler=scaler,
    )  # fmt: skip
    return run, loaders


def test_only(run: Run, loaders: Loaders) -> int:
    """--test-only: evaluate the (resumed) model on the val loader and print the result as JSON."""
    res = evaluate(
        run.model,
        loaders.val_loader,
        run.device,
        len(run.classes),
        amp=run.args.amp,
        show_progress=run.progress,
    )
    check_finite(res, "test-only")
    if run.is_main:
        print(json.dumps({k: res[k] for k in ("loss", "acc1", "acc5", "count")}, allow_nan=False))
    return 0


def start(run: Run, loaders: Loaders) -> Any:
    """Rank 0: the run directory, args.yaml, the TensorBoard writer (returned; None elsewhere), a banner."""
    if not run.is_main:
        return None
    writer = start_reports(run)
    args, icfg = run.args, run.icfg
    n_params = sum(p.numel() for p in run.model.parameters())
    print(
        f"training {args.model} ({n_params:,} params) on {args.dataset}: {len(loaders.train_set)} train / "
        f"{len(loaders.val_set)} val images, {icfg.in_chans}x{icfg.input_size}x{icfg.input_size}, "
        f"{args.epochs} epochs, batch {args.batch_size}x{run.world}, device {run.device}, amp {args.amp}"
    )
    return writer


def train_epochs(run: Run, loaders: Loaders, writer: Any, end_epoch: int) -> int | None:
    """Epochs ``run.start_epoch`` .. ``end_epoch - 1``; returns 128 + the signal when SIGINT/SIGTERM
    stopped an epoch (its checkpoint saved), else None. Closes ``writer``."""
    args = run.args
    stop = GracefulStop(run.is_main, run.world, run.device)
    stop.install()
    tcfg = TrainConfig(
        aux_weight=args.aux_weight, label_smoothing=args.label_smoothing, amp=args.amp,
        channels_last=args.channels_last, clip_grad_norm=args.clip_grad_norm, progress=run.progress,
        mixup=build_mixup(args, len(run.classes)), scaler=run.scaler, ema=run.ema, ema_steps=args.model_ema_steps,
    )  # fmt: skip
    try:
        for epoch in range(run.start_epoch, end_epoch):
            state = train_epoch(run, loaders, tcfg, stop, epoch)
            if stop.flag.signum and state.step < loaders.iters_per_epoch:
                save_checkpoint(run, epoch, state)
                if run.is_main:
                    print(f"interrupted at epoch {epoch} step {state.step}; checkpoint saved to "
                          f"{run.out / 'checkpoint.pt'}; continue with --resume auto --output-dir {run.out}", file=sys.stderr)  # fmt: skip
                return 128 + stop.flag.signum
            end_of_epoch(run, loaders, writer, epoch, state)
    except NonFiniteError:
        if run.is_main:
            print(f"training stopped; the last good checkpoint is kept in {run.out}", file=sys.stderr)
        raise
    finally:
        stop.uninstall()
        if writer is not None:
            writer.close()
    return None


def train_epoch(run: Run, loaders: Loaders, tcfg: TrainConfig, stop: GracefulStop, epoch: int) -> EpochState:
    """One epoch of training (the rest of it after a mid-epoch resume), until done or stopped."""
    loaders.sampler.set_epoch(epoch)
    loaders.loader_gen.manual_seed(run.args.seed * 100_003 + epoch * 101 + run.rank)
    steps_left = len(loaders.train_loader)
    state = train_one_epoch(
        run.train_model, run.optimizer, loaders.train_loader, run.device, epoch, tcfg, lr_scheduler=run.scheduler,
        state=run.epoch_state, stop=stop.flag, total_steps=steps_left, on_step=stop.sync,
    )  # fmt: skip
    loaders.sampler.start = 0
    run.epoch_state = None
    return state


def end_of_epoch(run: Run, loaders: Loaders, writer: Any, epoch: int, state: EpochState) -> None:
    """Validate (and the EMA), record the epoch, save checkpoint.pt (and best.pt), write the reports."""
    args, n_cls = run.args, len(run.classes)
    tr = all_reduce_sums(state, run.device)
    val = evaluate(run.model, loaders.val_loader, run.device, n_cls, amp=args.amp, channels_last=args.channels_last,
                   desc="val", show_progress=run.progress)  # fmt: skip
    ema_val = (
        evaluate(run.ema.module, loaders.val_loader, run.device, n_cls, amp=args.amp, desc="val ema",
                 show_progress=run.progress)  # fmt: skip
        if run.ema is not None else None
    )  # fmt: skip
    for res, what in ((val, "validation"), (ema_val, "EMA validation")):
        if res is not None:
            check_finite(res, f"{what} (epoch {epoch})")
    row = {
        "epoch": epoch, "lr": run.optimizer.param_groups[0]["lr"], "train_loss": tr[0], "train_acc1": tr[1],
        "val_loss": val["loss"], "val_acc1": val["acc1"], "val_acc5": val["acc5"],
        "ema_val_acc1": ema_val["acc1"] if ema_val else "", "seconds": state.seconds,
    }  # fmt: skip
    run.history.append(row)
    score, weights = row_score(row)
    improved = score > run.best_acc1
    if improved:  # checkpoint.pt names the new best before best.pt is written: state.repair_best
        run.best_acc1, run.best_epoch, run.best_weights = score, epoch + 1, weights
        run.best_val = ema_val if weights == "ema" else val
    ck = save_checkpoint(run, epoch + 1, None)  # a collective: every rank takes part
    if ck is None:  # not rank 0
        return
    if improved:
        save_best(run, ck, weights == "ema")
    epoch_reports(run, writer)
    img_s = tr[2] / max(state.seconds, 1e-9)
    print(
        f"epoch {epoch + 1}/{args.epochs}  lr {row['lr']:.4g}  train loss {tr[0]:.4f} acc {tr[1]:.4f}  "
        f"val loss {val['loss']:.4f} top1 {val['acc1']:.4f} top5 {val['acc5']:.4f}"
        + (f"  ema top1 {ema_val['acc1']:.4f}" if ema_val else "")
        + f"  {state.seconds:.0f}s {img_s:.0f} img/s",
        flush=True,
    )


def final_test(run: Run, loaders: Loaders) -> int:
    """The best weights on the test split (the only time the test set is used with --val-split)."""
    args, out = run.args, run.out
    best = load_best(run) if run.is_main else None  # checked to be the epoch this run recorded as its best
    if best is not None:
        run.model.load_state_dict(best["model"])
    test_loader = build_test_loader(args, loaders, run.rank, run.world)
    if run.world > 1:  # every rank evaluates rank 0's best weights
        for t in run.model.state_dict().values():
            dist.broadcast(t, 0)
    if loaders.test_set is loaders.val_set and run.best_val is not None:
        test = run.best_val  # validation ran on the test split: the best epoch's result is the test result
    else:
        test = evaluate(
            run.model, test_loader, run.device, len(run.classes), amp=args.amp, channels_last=args.channels_last,
            desc="test", show_progress=run.progress,
        )  # fmt: skip
    check_finite(test, "test")
    if run.is_main:
        final_reports(run, test)
        print(f"test top-1 {test['acc1']:.4f} top-5 {test['acc5']:.4f} loss {test['loss']:.4f} "
              f"({test['count']} images); outputs in {out}")  # fmt: skip
    return 0


def all_reduce_sums(state: EpochState, device: torch.device) -> list[float]:
    """(train loss, train top-1, images) of the epoch over all ranks."""
    loss_sum, correct, count = all_reduce_sum([state.loss_sum, state.correct, state.count], device)
    return [loss_sum / max(count, 1), correct / max(count, 1), count]


def cli(argv: Sequence[str] | None = None) -> int:
    """``python -m inceptionnet.train`` (and under torchrun): ``inceptionnet train`` without the CLI."""
    return run_cli(
        partial(parse_args, prog="inceptionnet train"), main, sys.argv[1:] if argv is None else argv
    )


if __name__ == "__main__":
    sys.exit(cli())
