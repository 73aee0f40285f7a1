"""Building a run's pieces: the process group and device, the model (on its device, with EMA and the
DDP/compile wrappers), the data sets and loaders, the optimizer and the learning-rate schedule.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from .. import data as D
from ..errors import UsageError
from ..models import InceptionBase, create_model, get_weight_entry, parse_model_kwargs
from ..models._registry import check_builder_kwargs
from ..runtime import resolve_device
from .engine import ema_multi_avg_fn, lr_factor
from .state import ResumableSampler

# --------------------------------------------------------------------------------------------------
# Process and device


def init_distributed(args: argparse.Namespace) -> tuple[int, int, int]:
    """torchrun's environment -> (rank, world_size, local_rank); one process when not under torchrun."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        rank, world, local = (
            int(os.environ["RANK"]),
            int(os.environ["WORLD_SIZE"]),
            int(os.environ.get("LOCAL_RANK", 0)),
        )
        use_cuda = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        return rank, world, local
    return 0, 1, 0


def pick_device(args: argparse.Namespace, local_rank: int) -> torch.device:
    return resolve_device(args.device, local_rank, flag="--device")


# --------------------------------------------------------------------------------------------------
# Model and data sets


def model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The model's constructor flags: the --weights' own (a weight entry's, a file's metadata), then
    --model-kwargs and --aux-logits over them. Saved in checkpoints: without the weights' flags a run
    fine-tuned from ``googlenet_small`` ``fashion_mnist`` (width 0.25) saved {} and its best.pt could
    not be opened again (built at width 1.0)."""
    kwargs = parse_model_kwargs(args.model_kwargs)
    if args.aux_logits is not None:
        kwargs["aux_logits"] = args.aux_logits
    if args.weights:
        entry = get_weight_entry(args.model, args.weights)
        if entry is not None:
            own = dict(entry.model_kwargs)
        else:
            from ..models._builder import load_weights

            own = dict(load_weights(args.weights, args.model).meta.model_kwargs)
        kwargs = {**own, **kwargs}
    return kwargs


def build_model(
    args: argparse.Namespace, num_classes: int, in_chans: int
) -> tuple[InceptionBase, dict[str, Any]]:
    kwargs = model_kwargs(args)
    with warnings.catch_warnings():
        if args.weights:  # fine-tuning: a new classifier is expected, say it once below
            warnings.filterwarnings("ignore", message="classifier .* re-initialized")
        try:
            check_builder_kwargs(args.model, kwargs)  # a flag the model lacks, a value of the wrong type
        except UsageError as e:
            raise UsageError(f"bad --model-kwargs for {args.model}: {e}") from None
        model = create_model(
            args.model, num_classes=num_classes, in_chans=in_chans, weights=args.weights, **kwargs
        )
    return model, kwargs


def input_config(args: argparse.Namespace, model: InceptionBase, info: D.DataInfo) -> D.InputConfig:
    """The model's own input config for image folders (its weights' statistics, crop, BGR / 0-255
    for Caffe ports); the data set's statistics at its native size for the built-in data sets."""
    icfg = D.InputConfig.from_model(model, dataset=info.name)
    size = args.input_size
    if size and size < model.min_input_size:
        raise UsageError(
            f"--input-size {size} is too small for {args.model}: the minimum is {model.min_input_size}"
        )
    if not size:
        size = info.image_size if info.image_size >= max(model.min_input_size, 1) else icfg.input_size
    if info.name == "imagefolder":
        return dataclasses.replace(
            icfg, input_size=size, crop_pct=float(model.default_cfg.get("crop_pct", 0.875))
        )
    return dataclasses.replace(
        icfg, input_size=size, crop_pct=1.0, input_space="RGB", input_range=(0.0, 1.0),
        mean=D.channel_stats(info.mean, model.in_chans), std=D.channel_stats(info.std, model.in_chans),
    )  # fmt: skip


def build_datasets(
    args: argparse.Namespace, info: D.DataInfo, icfg: D.InputConfig, *, is_main: bool = True
) -> tuple[Any, Any, Any, D.BatchAugment | None]:
    """train / val / test data sets and, with --batch-augment, the train loader's collate_fn.

    ``is_main``: this process prints notes (rank 0 under DDP).
    """
    train: Any
    val: Any
    test: Any
    hflip = info.hflip if args.hflip is None else args.hflip
    native = info.image_size
    tr_t = D.train_transform(
        icfg, info.in_chans, native, hflip=hflip, random_crop_pad=args.random_crop_pad,
        random_resized_crop=args.random_resized_crop, auto_augment=args.auto_augment,
        random_erase=args.random_erase,
    )  # fmt: skip
    ev_t = D.eval_transform(icfg, info.in_chans, native)
    if info.name == "imagefolder":
        train = D.ImageFolderFiles(
            D.imagefolder_root(args.data, "train"), info.in_chans, tr_t, args.skip_bad_images
        )
        val = D.ImageFolderFiles(
            D.imagefolder_root(args.data, "val"), info.in_chans, ev_t, args.skip_bad_images, train.classes
        )
        test = val
        skipped = len(train.skipped) + len(val.skipped)
        if skipped:
            print(f"skipped {skipped} unreadable images (--skip-bad-images)", file=sys.stderr)
    else:
        x, y, classes = D.load_arrays(info.name, "train", args.data, args.val_split)
        if args.subset > len(y) and is_main:
            print(f"note: --subset {args.subset} is more than the {len(y)} training images; using all of them",
                  file=sys.stderr)  # fmt: skip
        if args.subset:
            keep = (
                torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[: args.subset]
                .sort()
                .values
            )
            x, y = x[keep], y[keep]
        batch_aug = None
        if args.batch_augment:
            if D.BatchAugment.applies(
                icfg, info.in_chans, native, random_resized_crop=args.random_resized_crop,
                auto_augment=args.auto_augment,
            ):  # fmt: skip
                batch_aug = D.BatchAugment(
                    icfg, info.in_chans, hflip=hflip, random_crop_pad=args.random_crop_pad,
                    random_erase=args.random_erase,
                )  # fmt: skip
            elif is_main:
                print("note: --batch-augment does not cover resizing, --random-resized-crop or --auto-augment; "
                      "using per-image transforms", file=sys.stderr)  # fmt: skip
        train = D.TensorImages(x, y, classes, None if batch_aug else tr_t)
        xv, yv, _ = D.load_arrays(info.name, "val", args.data, args.val_split)
        val = D.TensorImages(xv, yv, classes, ev_t)
        if args.val_split > 0:
            xt, yt, _ = D.load_arrays(info.name, "test", args.data, 0)
            test = D.TensorImages(xt, yt, classes, ev_t)
        else:
            test = val
        return train, val, test, batch_aug
    return train, val, test, None


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}{'es' if word.endswith('s') else 's'}"


def check_classes(args: argparse.Namespace, info: D.DataInfo) -> None:
    """A classifier needs two classes or more (an image folder with one class folder "trains" to 1.0)."""
    if len(info.classes) < 2:
        where = D.imagefolder_root(args.data, "train") if info.name == "imagefolder" else args.dataset
        raise UsageError(f"{where} has {plural(len(info.classes), 'class')} ({', '.join(info.classes) or 'none'}): a "
                         "classifier needs at least 2 classes; add a folder of images per class")  # fmt: skip


def check_data(
    args: argparse.Namespace, model: nn.Module, sets: tuple[Any, Any], world: int, is_main: bool
) -> None:
    """Data sets a run cannot learn from or be judged on: one line naming the flag to change."""
    train_set, val_set = sets
    n = len(train_set)
    what = f"the {args.dataset} training set" + (f" (--subset {args.subset})" if args.subset else "")
    labels = (
        train_set.labels.unique().tolist()
        if hasattr(train_set, "labels")
        else {y for _, y in train_set.samples}
    )
    if n == 0 or len(labels) < 2:
        raise UsageError(f"{what} has {plural(n, 'image')} of {plural(len(labels), 'class')}: a classifier needs "
                         "images of at least 2 classes; give more images (--subset, --data)")  # fmt: skip
    if len(val_set) == 0:
        raise UsageError(
            f"the {args.dataset} validation set is empty; give images to validate on (--val-split, --data)"
        )
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if -(-n // world) == 1 and has_bn:
        raise UsageError(f"{what} has {n} images for {world} processes, 1 each: BatchNorm cannot train on a batch "
                         "of one image; give more images (--subset) or use fewer processes")  # fmt: skip
    if n < args.batch_size * world and is_main:
        print(f"note: {what} has {n} images, fewer than --batch-size {args.batch_size} x {world} processes: each "
              "epoch is one step", file=sys.stderr)  # fmt: skip


def param_groups(
    model: nn.Module, weight_decay: float, norm_weight_decay: float | None
) -> list[dict[str, Any]]:
    if norm_weight_decay is None:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.dim() <= 1 else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": norm_weight_decay},
    ]


def build_mixup(args: argparse.Namespace, num_classes: int) -> Any:
    from torchvision.transforms import v2

    fns = []
    if args.mixup_alpha > 0:
        fns.append(v2.MixUp(alpha=args.mixup_alpha, num_classes=num_classes))
    if args.cutmix_alpha > 0:
        fns.append(v2.CutMix(alpha=args.cutmix_alpha, num_classes=num_classes))
    if not fns:
        return None
    return fns[0] if len(fns) == 1 else v2.RandomChoice(fns)


def freeze_backbone(model: InceptionBase) -> None:
    heads = [str(model.default_cfg.get("classifier"))]
    heads += list(model.default_cfg.get("aux_classifiers", ()))  # type: ignore[call-overload]
    for name, p in model.named_parameters():
        p.requires_grad = any(name.startswith(h + ".") for h in heads)


def place_model(
    args: argparse.Namespace, model: InceptionBase, device: torch.device, world: int
) -> tuple[InceptionBase, Any, nn.Module]:
    """``model`` on ``device`` (channels_last), its EMA copy (or None) and the module to train:
    ``model`` under SyncBatchNorm, DistributedDataParallel and torch.compile as configured."""
    model.to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ema = None
    if args.model_ema:
        from torch.optim.swa_utils import AveragedModel

        ema = AveragedModel(model, multi_avg_fn=ema_multi_avg_fn(args.model_ema_decay), use_buffers=True)
    train_model: nn.Module = model
    if args.sync_bn and device.type != "cuda":
        raise UsageError(
            "--sync-bn needs CUDA devices (PyTorch's SyncBatchNorm has no CPU kernel); drop it on CPU"
        )
    if world > 1:
        if args.sync_bn:
            train_model = nn.SyncBatchNorm.convert_sync_batchnorm(train_model)
        train_model = nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if args.compile:
        train_model = torch.compile(train_model)  # type: ignore[assignment]
    return model, ema, train_model


# --------------------------------------------------------------------------------------------------
# Loaders


@dataclass
class Loaders:
    train_set: Any
    val_set: Any
    test_set: Any
    sampler: ResumableSampler  # the train loader's: skips the batches of a resumed epoch already trained on
    loader_gen: torch.Generator  # the train loader's: reseeded every epoch
    train_loader: DataLoader
    val_loader: DataLoader
    eval_bs: int
    iters_per_epoch: int


def drops_last_batch(n: int, per_rank: int, batch_size: int, world: int = 1) -> bool:
    """Whether an epoch drops its last partial batch: with two batches or more, and also a lone last
    image (BatchNorm cannot train on a batch of one: "Expected more than 1 value per channel")."""
    return n >= batch_size * world * 2 or (per_rank > batch_size and per_rank % batch_size == 1)


def build_loaders(
    args: argparse.Namespace,
    sets: tuple[Any, Any, Any],
    collate: Any,
    device: torch.device,
    rank: int,
    world: int,
) -> Loaders:
    """The train loader (resumable, every rank its shard) and the val loader over (train, val, test) sets."""
    train_set, val_set, test_set = sets
    sampler = ResumableSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=args.seed)
    # The loaders' own generator draws the worker base seed; without it every new iterator takes a
    # number from the global RNG, and a run resumed mid-epoch would see other dropout masks.
    loader_gen = torch.Generator()
    bs = args.batch_size
    train_loader = DataLoader(
        train_set, batch_size=bs, sampler=sampler, num_workers=args.workers, generator=loader_gen,
        drop_last=drops_last_batch(len(train_set), sampler.num_samples, bs, world), persistent_workers=False,
        pin_memory=device.type == "cuda", collate_fn=collate,
    )  # fmt: skip
    val_sampler: Any = (
        DistributedSampler(val_set, num_replicas=world, rank=rank, shuffle=False) if world > 1 else None
    )
    eval_bs = max(args.batch_size, 256)
    val_loader = DataLoader(
        val_set,
        batch_size=eval_bs,
        sampler=val_sampler,
        num_workers=args.workers,
        generator=torch.Generator(),
    )
    iters_per_epoch = max(len(train_loader) + (sampler.start // args.batch_size), 1)
    return Loaders(
        train_set, val_set, test_set, sampler, loader_gen, train_loader, val_loader, eval_bs, iters_per_epoch
    )


def build_test_loader(args: argparse.Namespace, loaders: Loaders, rank: int, world: int) -> DataLoader:
    """The test loader (every rank its shard), built for the final test."""
    test_set = loaders.test_set
    return DataLoader(
        test_set, batch_size=loaders.eval_bs, num_workers=args.workers,
        sampler=DistributedSampler(test_set, num_replicas=world, rank=rank, shuffle=False) if world > 1 else None,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Optimizer and schedule


def build_optimizer(
    args: argparse.Namespace, model: nn.Module, device: torch.device
) -> torch.optim.Optimizer:
    groups = param_groups(model, args.weight_decay, args.norm_weight_decay)
    fused = device.type == "cuda"
    if args.opt == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            groups, lr=args.lr, momentum=args.momentum, nesterov=args.nesterov and args.momentum > 0
        )
    else:
        optimizer = torch.optim.AdamW(groups, lr=args.lr, fused=fused or None)
    return optimizer


def build_scheduler(
    args: argparse.Namespace, optimizer: torch.optim.Optimizer, iters_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Steps every iteration (``lr_factor``); a lambda, so its state_dict holds no schedule arguments."""
    total_iters = iters_per_epoch * args.epochs
    sched_kw = dict(
        schedule=args.lr_scheduler, total_iters=total_iters, iters_per_epoch=iters_per_epoch,
        warmup_iters=int(args.lr_warmup_epochs * iters_per_epoch), warmup_decay=args.lr_warmup_decay,
        step_size=args.lr_step_size, gamma=args.lr_gamma, min_lr_ratio=args.lr_min,
    )  # fmt: skip
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, **sched_kw))  # type: ignore[arg-type]
