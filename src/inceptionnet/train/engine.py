"""One training epoch and one evaluation pass (with the data it reads, ``eval_loader``, and test-time
augmentation, ``make_tta``). The trainer owns the aux loss:

loss = CE(logits) + aux_weight * sum(CE(aux_i))      (aux heads only in training)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from .. import data as D
from ..data.transforms import tta_transform, tta_views
from ..errors import NonFiniteError, UsageError
from ..runtime import all_finite, all_reduce_sum, autocast, flush_denormal, progress


def soft_target_ce(logits: Tensor, target: Tensor, label_smoothing: float) -> Tensor:
    if target.dim() == 1:
        return nn.functional.cross_entropy(logits, target, label_smoothing=label_smoothing)
    # Mixup/CutMix: soft targets (already mixed); smoothing on top as timm's SoftTargetCrossEntropy
    if label_smoothing > 0:
        target = target * (1 - label_smoothing) + label_smoothing / target.shape[1]
    return torch.sum(-target * torch.log_softmax(logits.float(), dim=-1), dim=-1).mean()


def compute_loss(
    model: nn.Module, x: Tensor, y: Tensor, *, aux_weight: float, label_smoothing: float, use_aux: bool
) -> tuple[Tensor, Tensor]:
    """Forward + loss; aux heads contribute only when ``use_aux`` (training with aux heads)."""
    if use_aux:
        out = model(x, return_aux=True)
        logits = out.logits
        loss = soft_target_ce(logits, y, label_smoothing)
        for a in out.aux:
            loss = loss + aux_weight * soft_target_ce(a, y, label_smoothing)
    else:
        logits = model(x)
        loss = soft_target_ce(logits, y, label_smoothing)
    return loss, logits


@dataclass
class StopFlag:
    """Set by SIGINT/SIGTERM; the loop finishes the step it is in, then stops."""

    signum: int = 0


@dataclass
class EpochState:
    """Running sums of an epoch, kept in a mid-epoch checkpoint so a resumed epoch reports the whole."""

    step: int = 0
    loss_sum: float = 0.0
    correct: float = 0.0
    count: float = 0.0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return dict(
            step=self.step,
            loss_sum=self.loss_sum,
            correct=self.correct,
            count=self.count,
            seconds=self.seconds,
        )


@dataclass
class TrainConfig:
    aux_weight: float = 0.3
    label_smoothing: float = 0.0
    amp: str = "off"
    channels_last: bool = False
    clip_grad_norm: float = 0.0
    progress: bool = True
    mixup: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None
    scaler: Any = None  # torch.amp.GradScaler for fp16
    ema: Any = None  # torch.optim.swa_utils.AveragedModel
    ema_steps: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable[tuple[Tensor, Tensor]],
    device: torch.device,
    epoch: int,
    cfg: TrainConfig,
    *,
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    state: EpochState | None = None,
    stop: StopFlag | None = None,
    total_steps: int | None = None,
    on_step: Callable[[EpochState], None] | None = None,
) -> EpochState:
    """Train one epoch (or its remainder after a mid-epoch resume); returns the epoch's running sums.

    The lr scheduler steps every iteration. Stops early (state.step < total) when ``stop`` is set.
    """
    model.train()
    state = state or EpochState()
    inner = model.module if hasattr(model, "module") else model
    use_aux = bool(getattr(inner, "has_aux", False)) and cfg.aux_weight > 0
    t0 = time.perf_counter()
    bar = progress(loader, total=total_steps, desc=f"epoch {epoch}", enabled=cfg.progress)
    for x, y in bar:
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        if not all_finite(x):
            raise NonFiniteError(
                f"non-finite values in the input batch at epoch {epoch}, step {state.step} "
                f"(batch index {state.step}); check the data"
            )
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        hard_y = y
        if cfg.mixup is not None:
            x, y = cfg.mixup(x, y)
        with autocast(device, cfg.amp):
            loss, logits = compute_loss(
                model, x, y, aux_weight=cfg.aux_weight, label_smoothing=cfg.label_smoothing, use_aux=use_aux
            )
        if not torch.isfinite(loss):
            raise NonFiniteError(
                f"loss is {loss.item()} at epoch {epoch}, step {state.step} (batch index {state.step}); "
                "lower the learning rate or check the data (the last good checkpoint is kept)"
            )
        optimizer.zero_grad(set_to_none=True)
        if cfg.scaler is not None:
            cfg.scaler.scale(loss).backward()
            if cfg.clip_grad_norm > 0:
                cfg.scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
            cfg.scaler.step(optimizer)
            cfg.scaler.update()
        else:
            loss.backward()
            if cfg.clip_grad_norm > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
            optimizer.step()
        if lr_scheduler is not None:
            lr_scheduler.step()
        if cfg.ema is not None and (state.step + 1) % cfg.ema_steps == 0:
            cfg.ema.update_parameters(model)
        n = x.shape[0]
        state.step += 1
        state.loss_sum += loss.item() * n
        # with soft targets, accuracy is against the original hard labels
        state.correct += (logits.argmax(1) == hard_y).sum().item()
        state.count += n
        if hasattr(bar, "set_postfix"):
            el = state.seconds + time.perf_counter() - t0
            bar.set_postfix(
                loss=f"{state.loss_sum / state.count:.4f}", acc=f"{state.correct / state.count:.3f}",
                img_s=f"{state.count / max(el, 1e-9):.0f}",
            )  # fmt: skip
        if on_step is not None:
            on_step(state)
        if stop is not None and stop.signum:
            break
    state.seconds += time.perf_counter() - t0
    return state


def ema_multi_avg_fn(
    decay: float,
) -> Callable[[tuple[Tensor, ...] | list[Tensor], tuple[Tensor, ...] | list[Tensor], Tensor | int], None]:
    """``AveragedModel(multi_avg_fn=...)``: EMA of parameters and buffers whose decay warms up as
    ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates (timm's warmup).

    Without the warmup the average stays dominated by the first (random, then large) weights for
    ~1/(1 - decay) updates. The warmup fixes that start, not everything: with BN buffers averaged too,
    the averaged running statistics can still misfit the averaged weights while the learning rate is
    high. Measured before the warmup existed (docs/RESULTS.md): at decay 0.9995 the Fashion-MNIST EMA
    model stayed at chance for 30 of 44 epochs and caught up only near lr 0; its weights were fine
    (0.92 after re-estimating the BN statistics at epoch 9).
    """

    def update(
        ema: tuple[Tensor, ...] | list[Tensor],
        cur: tuple[Tensor, ...] | list[Tensor],
        n_averaged: Tensor | int,
    ) -> None:
        n = float(n_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        if ema[0].is_floating_point() or ema[0].is_complex():
            torch._foreach_lerp_(list(ema), list(cur), 1.0 - d)
        else:  # integer buffers (BN's num_batches_tracked): follow the model
            for e, c in zip(ema, cur, strict=True):
                e.copy_(c)

    return update


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    device: torch.device,
    num_classes: int,
    *,
    amp: str = "off",
    channels_last: bool = False,
    desc: str = "eval",
    show_progress: bool = True,
    tta: Callable[[nn.Module, Tensor], Tensor] | None = None,
) -> dict[str, Any]:
    """Loss, top-1, top-5 (fractions), per-class accuracy and the confusion matrix; no aux heads."""
    with flush_denormal():
        return _evaluate(model, loader, device, num_classes, amp, channels_last, desc, show_progress, tta)


def _evaluate(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    device: torch.device,
    num_classes: int,
    amp: str,
    channels_last: bool,
    desc: str,
    show_progress: bool,
    tta: Callable[[nn.Module, Tensor], Tensor] | None,
) -> dict[str, Any]:
    model.eval()
    loss_sum, n = 0.0, 0
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.float64)
    top5 = 0.0
    k = min(5, num_classes)
    for x, y in progress(loader, desc=desc, enabled=show_progress):
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            logits = tta(model, x) if tta is not None else model(x)
        logits = logits.float()
        loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        n += y.numel()
        pred = logits.topk(k, dim=1).indices
        top5 += (pred == y[:, None]).any(dim=1).sum().item()
        idx = y.cpu() * num_classes + pred[:, 0].cpu()
        confusion += torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)
    sums = all_reduce_sum([loss_sum, float(n), top5, *confusion.flatten().tolist()], device)
    loss_sum, nf, top5 = sums[0], sums[1], sums[2]
    confusion = torch.tensor(sums[3:], dtype=torch.float64).view(num_classes, num_classes)
    correct = confusion.diag().sum().item()
    per_class = (confusion.diag() / confusion.sum(1).clamp(min=1)).tolist()
    return {
        "loss": loss_sum / max(nf, 1),
        "acc1": correct / max(nf, 1),
        "acc5": top5 / max(nf, 1),
        "count": int(nf),
        "per_class_acc1": per_class,
        "confusion": confusion.long().tolist(),
    }


def eval_loader(
    info: D.DataInfo,
    split: str,
    root: str | None,
    icfg: D.InputConfig,
    classes: Sequence[str],
    *,
    tta: str = "none",
    batch_size: int = 256,
    workers: int = 0,
    limit: int = 0,
    val_split: int = 0,
) -> DataLoader[Any]:
    """The ``split`` of data set ``info`` (under ``root``) as ``evaluate`` reads it: the eval transform,
    or with ``tta`` only channels and statistics (``make_tta`` cuts the views from each batch). An image
    folder's classes are ordered as the model's ``classes``; ``limit``: the first N images (0: all);
    ``val_split``: the held-out size, to rebuild a training run's val split."""
    if tta == "none":
        transform: Any = D.eval_transform(icfg, info.in_chans, info.image_size)
    else:  # mixed sizes cannot batch: an image folder's are made square at the largest scale
        transform = tta_transform(icfg, info.in_chans, square=info.name == "imagefolder")
    ds: Any
    if info.name == "imagefolder":
        ds = D.ImageFolderFiles(D.imagefolder_root(root, split), info.in_chans, transform, classes=classes)
        if limit:
            ds = Subset(ds, range(min(limit, len(ds))))
    else:
        x, y, _ = D.load_arrays(info.name, split, root, val_split)
        if limit:
            x, y = x[:limit], y[:limit]
        ds = D.TensorImages(x, y, info.classes, transform)
    return DataLoader(ds, batch_size=batch_size, num_workers=workers)


def make_tta(mode: str, size: int) -> Callable[[nn.Module, Tensor], Tensor] | None:
    """``evaluate``'s ``tta`` for ``mode`` (``data.transforms.TTA_MODES``): (model, batch) -> the log
    of the probabilities averaged over the views (``tta_views``); None for ``none``."""
    if mode == "none":
        return None

    def run(model: nn.Module, x: Tensor) -> Tensor:
        views = tta_views(x, mode, size)
        probs = sum(nn.functional.softmax(model(v.contiguous()).float(), dim=1) for v in views)
        assert isinstance(probs, Tensor)
        return torch.log((probs / len(views)).clamp_min(1e-12))

    return run


class CallableModule(nn.Module):
    """A batch -> logits callable (a fast-path predictor) where ``evaluate`` expects a module."""

    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        out = self.fn(x)
        assert isinstance(out, Tensor)
        return out


def lr_factor(
    it: int,
    *,
    schedule: str,
    total_iters: int,
    iters_per_epoch: int,
    warmup_iters: int = 0,
    warmup_decay: float = 0.01,
    step_size: int = 30,
    gamma: float = 0.1,
    min_lr_ratio: float = 0.0,
) -> float:
    """Multiplier of the base lr at iteration ``it`` (schedules step per iteration, epochs are iters/epoch)."""
    if it < warmup_iters:
        return warmup_decay + (1 - warmup_decay) * it / warmup_iters
    epoch = it / iters_per_epoch
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        return gamma ** int(epoch // step_size)
    if schedule == "paper":
        # the GoogLeNet paper: "decreasing the learning rate by 4% every 8 epochs"
        return 0.96 ** int(epoch // 8)
    if schedule == "cosine":
        span = max(total_iters - warmup_iters, 1)
        prog = min((it - warmup_iters) / span, 1.0)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * prog))
    if schedule == "onecycle":
        # linear ramp to the peak over the first 30%, then cosine to zero (OneCycleLR's shape)
        peak = max(int(0.3 * total_iters), 1)
        if it < peak:
            return 0.04 + 0.96 * it / peak
        prog = min((it - peak) / max(total_iters - peak, 1), 1.0)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * prog))
    raise UsageError(f"unknown lr scheduler {schedule!r}; choose step, cosine, onecycle, paper or constant")
