"""The training program: ``inceptionnet train`` / ``python -m inceptionnet.train`` / ``torchrun -m inceptionnet.train``.

In the style of torchvision's references/classification/train.py: ``get_args_parser()`` + ``main(args)``.
Flags override a YAML recipe (``--recipe NAME``), which overrides the defaults; the effective config is
saved as ``args.yaml`` beside the run. Outputs in ``--output-dir``: ``checkpoint.pt`` (latest),
``best.pt``, ``metrics.csv``, TensorBoard events (``tb/``), ``curves.png``, ``confusion.png``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from . import data as D
from .engine import (
    EpochState,
    NonFiniteError,
    StopFlag,
    TrainConfig,
    bf16_supported,
    ema_multi_avg_fn,
    evaluate,
    lr_factor,
    train_one_epoch,
)
from .errors import CheckpointError
from .layers import InceptionBase
from .registry import create_model, get_model_builder, parse_model_kwargs
from .utils import atomic_save_figure, atomic_torch_save, atomic_write_text
from .weights import load_file

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
CHECKPOINT_VERSION = 1


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train an Inception-family classifier (single CPU to multi-node GPU via torchrun).",
        add_help=add_help,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("model")
    g.add_argument("--model", default="googlenet_small", help="registered model name (inceptionnet list)")
    g.add_argument(
        "--model-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
        help="constructor flags, e.g. width=0.25 stem_stride=2 norm=none (values parsed as YAML)",
    )  # fmt: skip
    g.add_argument("--aux-logits", action=argparse.BooleanOptionalAction, default=None,
                   help="build the aux heads (default: the model's own default)")  # fmt: skip
    g.add_argument("--no-aux", dest="aux_logits", action="store_false", help="same as --no-aux-logits")
    g.add_argument("--aux-weight", type=float, default=0.3, help="loss = CE + aux_weight * sum(CE(aux))")
    g.add_argument("--weights", default=None, help="initial weights: entry name or .pth/.safetensors file")
    g.add_argument("--freeze-backbone", action="store_true", help="train only the classifier(s)")
    g.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under DDP")

    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="fashion_mnist", help=f"one of {', '.join(D.DATASETS)}")
    g.add_argument("--data", "--data-path", dest="data", default=None,
                   help="data root (default: $INCEPTIONNET_DATA, ~/.cache/inceptionnet, system copies)")  # fmt: skip
    g.add_argument("--val-split", type=int, default=0,
                   help="hold out N training images for validation/model selection (0: validate on test)")  # fmt: skip
    g.add_argument(
        "--subset", type=int, default=0, help="train on the first N images of a fixed shuffle (0: all)"
    )
    g.add_argument(
        "--input-size", type=int, default=0, help="side length fed to the model (0: native or model default)"
    )
    g.add_argument("-j", "--workers", type=int, default=0, help="data loading worker processes")
    g.add_argument("--random-crop-pad", type=int, default=0, help="pad-and-random-crop augmentation (pixels)")
    g.add_argument("--random-resized-crop", action="store_true", help="RandomResizedCrop instead of pad-crop")
    g.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=None,
                   help="random horizontal flips (default: where label-preserving for the data set)")  # fmt: skip
    g.add_argument("--auto-augment", default="none", help="none | trivial | autoaugment")
    g.add_argument("--random-erase", type=float, default=0.0, help="RandomErasing probability")
    g.add_argument("--batch-augment", action="store_true",
                   help="in-memory data sets (fashion_mnist, cifar10, digits): crop/flip/normalize/erase each "
                   "batch in a few tensor ops instead of per-image transforms (same augmentation, other random "
                   "draws; faster on small images)")  # fmt: skip
    g.add_argument("--mixup-alpha", type=float, default=0.0, help="Mixup alpha (0: off)")
    g.add_argument("--cutmix-alpha", type=float, default=0.0, help="CutMix alpha (0: off)")
    g.add_argument(
        "--skip-bad-images", action="store_true", help="imagefolder: skip unreadable files and count them"
    )

    g = p.add_argument_group("optimization")
    g.add_argument("--epochs", type=int, default=10)
    g.add_argument("-b", "--batch-size", type=int, default=128, help="images per process and step")
    g.add_argument("--opt", default="sgd", help="sgd | adamw")
    g.add_argument("--lr", type=float, default=0.1)
    g.add_argument("--momentum", type=float, default=0.9)
    g.add_argument("--nesterov", action="store_true")
    g.add_argument("--wd", "--weight-decay", dest="weight_decay", type=float, default=5e-4)
    g.add_argument("--norm-weight-decay", type=float, default=None, help="weight decay of BN and bias params")
    g.add_argument("--label-smoothing", type=float, default=0.0)
    g.add_argument("--lr-scheduler", default="cosine", help="cosine | step | onecycle | paper | constant")
    g.add_argument("--lr-warmup-epochs", type=float, default=0.0)
    g.add_argument("--lr-warmup-decay", type=float, default=0.01, help="warmup starts at lr * this")
    g.add_argument("--lr-step-size", type=int, default=30, help="step scheduler: epochs per decay")
    g.add_argument("--lr-gamma", type=float, default=0.1, help="step scheduler: decay factor")
    g.add_argument(
        "--lr-min", type=float, default=0.0, help="cosine/onecycle: final lr as a fraction of --lr"
    )
    g.add_argument("--clip-grad-norm", type=float, default=0.0, help="max gradient norm (0: off)")
    g.add_argument("--model-ema", action="store_true", help="keep an EMA of the weights (evaluated too)")
    g.add_argument("--model-ema-decay", type=float, default=0.999,
                   help="EMA decay per update, warmed up as min(decay, (1+n)/(10+n)) over the first updates")  # fmt: skip
    g.add_argument("--model-ema-steps", type=int, default=1, help="update the EMA every N steps")

    g = p.add_argument_group("speed")
    g.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    g.add_argument("--amp", default="off",
                   help="off | bf16 | fp16 (torch.autocast; GradScaler for fp16) | auto (bf16 where the device "
                   "computes it natively: CUDA, or a CPU with AVX512-BF16/AMX; else off)")  # fmt: skip
    g.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")

    g = p.add_argument_group("run")
    g.add_argument("--recipe", default=None, help="YAML recipe name in recipes/ or a path; flags override it")
    g.add_argument("--output-dir", default=None, help="run directory (default: runs/MODEL-DATASET)")
    g.add_argument(
        "--resume", default=None, help="checkpoint path, or 'auto' for OUTPUT_DIR/checkpoint.pt if present"
    )
    g.add_argument("--seed", type=int, default=0)
    g.add_argument(
        "--stop-after", type=int, default=0, metavar="N",
        help="stop after N epochs of this invocation (checkpoint kept; continue later with --resume auto)",
    )  # fmt: skip
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    g.add_argument("--no-plots", dest="plots", action="store_false", help="skip curves.png / confusion.png")
    g.add_argument(
        "--tensorboard", action=argparse.BooleanOptionalAction, default=True, help="TensorBoard events"
    )
    g.add_argument(
        "--save-format", default="pt", help="also export best weights as: pt (none extra) | safetensors"
    )
    g.add_argument("--test-only", action="store_true", help="only evaluate the (resumed) model")
    g.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


# --------------------------------------------------------------------------------------------------
# Configuration: recipes, validation


def recipe_path(name: str) -> Path:
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    cand = RECIPES_DIR / f"{name}.yaml"
    if cand.is_file():
        return cand
    known = sorted(x.stem for x in RECIPES_DIR.glob("*.yaml"))
    raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(known)} or give a .yaml path")


def load_recipe(name: str, parser: argparse.ArgumentParser) -> dict[str, Any]:
    path = recipe_path(name)
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"recipe {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"recipe {path} must be a mapping of flag: value")
    dests = {a.dest for a in parser._actions}
    out = {}
    for key, value in cfg.items():
        dest = str(key).replace("-", "_")
        if dest not in dests or dest in ("recipe", "help"):
            raise ValueError(
                f"recipe {path}: unknown key {key!r} (keys are the train flags, e.g. lr, epochs)"
            )
        if dest == "model_kwargs" and isinstance(value, dict):
            value = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in value.items()]
        out[dest] = value
    return out


def parse_args(argv: Sequence[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    """Defaults < recipe < command line."""
    parser = get_args_parser()
    if prog:
        parser.prog = prog
    args = parser.parse_args(argv)
    if args.recipe:
        parser.set_defaults(**load_recipe(args.recipe, parser))
        args = parser.parse_args(argv)
    args._recipe_applied = True
    return args


def validate_args(args: argparse.Namespace) -> None:
    for name in ("epochs", "batch_size"):
        v = getattr(args, name)
        if not isinstance(v, int) or v <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {v}")
    if not args.lr > 0 or not np.isfinite(args.lr):
        raise ValueError(f"--lr must be positive, got {args.lr}")
    for name in ("workers", "subset", "stop_after", "val_split", "input_size", "weight_decay", "label_smoothing", "random_erase",
                 "mixup_alpha", "cutmix_alpha", "clip_grad_norm", "lr_warmup_epochs"):  # fmt: skip
        if getattr(args, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must not be negative, got {getattr(args, name)}")
    if args.opt not in ("sgd", "adamw"):
        raise ValueError(f"unknown --opt {args.opt!r}; choose sgd or adamw")
    if args.amp not in ("off", "bf16", "fp16", "auto"):
        raise ValueError(f"unknown --amp {args.amp!r}; choose off, bf16, fp16 or auto")
    if args.lr_scheduler not in ("cosine", "step", "onecycle", "paper", "constant"):
        raise ValueError(
            f"unknown --lr-scheduler {args.lr_scheduler!r}; choose cosine, step, onecycle, paper or constant"
        )
    if args.save_format not in ("pt", "safetensors"):
        raise ValueError(f"unknown --save-format {args.save_format!r}; choose pt or safetensors")
    if not 0 <= args.label_smoothing < 1:
        raise ValueError("--label-smoothing must be in [0, 1)")
    D.check_dataset_name(args.dataset)
    get_model_builder(args.model)  # unknown model -> ValueError with close names


# --------------------------------------------------------------------------------------------------
# Distributed


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
    if args.device == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if args.device == "cuda":
        return torch.device(f"cuda:{local_rank}")
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda but no CUDA device is available; use --device cpu")
    return dev


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
# State: RNG, checkpoints


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


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    ckpt = load_file(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "epoch" not in ckpt:
        raise CheckpointError(f"{path} is not a training checkpoint of inceptionnet (no model/epoch); "
                              "to start from plain weights use --weights")  # fmt: skip
    return ckpt


# --------------------------------------------------------------------------------------------------
# Outputs


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
# Building the pieces


def build_model(
    args: argparse.Namespace, num_classes: int, in_chans: int
) -> tuple[InceptionBase, dict[str, Any]]:
    kwargs = parse_model_kwargs(args.model_kwargs)
    if args.aux_logits is not None:
        kwargs["aux_logits"] = args.aux_logits
    with warnings.catch_warnings():
        if args.weights:  # fine-tuning: a new classifier is expected, say it once below
            warnings.filterwarnings("ignore", message="classifier .* re-initialized")
        try:
            model = create_model(
                args.model, num_classes=num_classes, in_chans=in_chans, weights=args.weights, **kwargs
            )
        except TypeError as e:
            raise ValueError(f"bad --model-kwargs for {args.model}: {e}") from None
    return model, kwargs


def input_config(args: argparse.Namespace, model: InceptionBase, info: D.DataInfo) -> D.InputConfig:
    cfg = model.default_cfg
    size = args.input_size
    if not size:
        size = (
            info.image_size if info.image_size >= max(model.min_input_size, 1) else int(cfg["input_size"][2])
        )  # type: ignore[index]
    if info.name == "imagefolder":
        mean, std = tuple(cfg["mean"]), tuple(cfg["std"])  # type: ignore[call-overload]
        crop_pct = float(cfg.get("crop_pct", 0.875))  # type: ignore[arg-type]
    else:
        mean, std, crop_pct = info.mean, info.std, 1.0
        if model.in_chans != info.in_chans:
            mean = (sum(mean) / len(mean),) * model.in_chans
            std = (sum(std) / len(std),) * model.in_chans
    # pretrained Caffe weights (BN-Inception) want BGR 0-255 input on the user's images too
    space, value_range = ("RGB", (0.0, 1.0))
    if info.name == "imagefolder":
        space, value_range = str(cfg.get("input_space", "RGB")), tuple(cfg.get("input_range", (0.0, 1.0)))
    return D.InputConfig(
        size, model.in_chans, mean, std, crop_pct, str(cfg.get("interpolation", "bilinear")), info.name,
        space, value_range,
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


# --------------------------------------------------------------------------------------------------


def main(args: argparse.Namespace) -> int:
    if args.recipe and not getattr(args, "_recipe_applied", False):
        # called with a Namespace from inceptionnet.cli: apply the recipe below the given flags
        parser = get_args_parser()
        recipe = load_recipe(args.recipe, parser)
        defaults = vars(parser.parse_args([]))
        for k, v in recipe.items():
            if getattr(args, k) == defaults[k]:
                setattr(args, k, v)
    args._recipe_applied = True
    validate_args(args)
    rank, world, local_rank = init_distributed(args)
    try:
        return _train(args, rank, world, local_rank)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _train(args: argparse.Namespace, rank: int, world: int, local_rank: int) -> int:
    is_main = rank == 0
    device = pick_device(args, local_rank)
    if args.amp == "auto":  # emulated bf16 (CPUs without AVX512-BF16/AMX) is several times slower than fp32
        args.amp = "bf16" if bf16_supported(device) else "off"
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.output_dir or f"runs/{args.model}-{args.dataset}")
    resume_path: Path | None = None
    if args.resume == "auto":
        resume_path = out / "checkpoint.pt" if (out / "checkpoint.pt").exists() else None
    elif args.resume:
        resume_path = Path(args.resume)
    ckpt = load_checkpoint(resume_path) if resume_path else None

    set_seed(args.seed, rank)
    info = D.dataset_info(args.dataset, args.data)
    model, model_kwargs = build_model(args, len(info.classes), info.in_chans)
    if args.weights and is_main:
        print(f"loaded weights {args.weights}; classifier set to {len(info.classes)} classes")
    if args.freeze_backbone:
        freeze_backbone(model)
    icfg = input_config(args, model, info)
    train_set, val_set, test_set, collate = build_datasets(args, info, icfg, is_main=is_main)
    classes = list(train_set.classes)

    model.to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ema = None
    if args.model_ema:
        from torch.optim.swa_utils import AveragedModel

        ema = AveragedModel(model, multi_avg_fn=ema_multi_avg_fn(args.model_ema_decay), use_buffers=True)
    train_model: nn.Module = model
    if args.sync_bn and device.type != "cuda":
        raise ValueError(
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

    sampler = ResumableSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=args.seed)
    # The loaders' own generator draws the worker base seed; without it every new iterator takes a
    # number from the global RNG, and a run resumed mid-epoch would see other dropout masks.
    loader_gen = torch.Generator()
    train_loader = DataLoader(
        train_set, batch_size=args.batch_size, sampler=sampler, num_workers=args.workers, generator=loader_gen,
        drop_last=len(train_set) >= args.batch_size * world * 2, persistent_workers=False,
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

    groups = param_groups(model, args.weight_decay, args.norm_weight_decay)
    fused = device.type == "cuda"
    if args.opt == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            groups, lr=args.lr, momentum=args.momentum, nesterov=args.nesterov and args.momentum > 0
        )
    else:
        optimizer = torch.optim.AdamW(groups, lr=args.lr, fused=fused or None)
    total_iters = iters_per_epoch * args.epochs
    sched_kw = dict(
        schedule=args.lr_scheduler, total_iters=total_iters, iters_per_epoch=iters_per_epoch,
        warmup_iters=int(args.lr_warmup_epochs * iters_per_epoch), warmup_decay=args.lr_warmup_decay,
        step_size=args.lr_step_size, gamma=args.lr_gamma, min_lr_ratio=args.lr_min,
    )  # fmt: skip
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, **sched_kw))  # type: ignore[arg-type]
    scaler = torch.amp.GradScaler(device.type) if args.amp == "fp16" else None

    start_epoch, best_acc1, history = 0, -1.0, []
    best_val: dict[str, Any] | None = None  # the best epoch's val result (reused as test when val is test)
    epoch_state: EpochState | None = None
    if ckpt is not None:
        if ckpt.get("model_name") not in (None, args.model):
            raise CheckpointError(f"{resume_path} is a {ckpt['model_name']} checkpoint, not {args.model}")
        from .weights import fit_state_dict

        fit_state_dict(model, ckpt["model"], source=f"checkpoint {resume_path}")
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["lr_scheduler"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        if ema is not None and ckpt.get("model_ema"):
            ema.load_state_dict(ckpt["model_ema"])
        start_epoch = int(ckpt["epoch"])
        best_acc1 = float(ckpt.get("best_acc1", -1.0))
        history = list(ckpt.get("history", []))
        rngs = ckpt.get("rng") or []
        if len(rngs) == world:
            set_rng_state(rngs[rank])
        if ckpt.get("epoch_state"):  # interrupted mid-epoch: skip the batches already trained on
            epoch_state = EpochState(**ckpt["epoch_state"])
            sampler.start = epoch_state.step * args.batch_size
        if is_main:
            where = f"epoch {start_epoch} step {epoch_state.step}" if epoch_state else f"epoch {start_epoch}"
            print(f"resumed from {resume_path} at {where}")

    def checkpoint(epoch: int, state: EpochState | None, rngs: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "model": model.state_dict(),
            "model_name": args.model,
            "model_kwargs": model_kwargs,
            "classes": classes,
            "data_cfg": icfg.to_dict(),
            "optimizer": optimizer.state_dict(),
            "lr_scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "model_ema": ema.state_dict() if ema is not None else None,
            "epoch": epoch,
            "epoch_state": state.as_dict() if state is not None else None,
            "best_acc1": best_acc1,
            "history": history,
            "args": {k: v for k, v in vars(args).items() if not k.startswith("_")},
            "rng": rngs,
        }

    if args.test_only:
        res = evaluate(
            model, val_loader, device, len(classes), amp=args.amp, show_progress=args.progress and is_main
        )
        if is_main:
            print(json.dumps({k: res[k] for k in ("loss", "acc1", "acc5", "count")}))
        return 0

    writer = None
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            out / "args.yaml",
            yaml.safe_dump({k: v for k, v in vars(args).items() if not k.startswith("_")}, sort_keys=True),
        )
        if args.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                writer = SummaryWriter(log_dir=str(out / "tb"))
            except ImportError:
                print("warning: tensorboard is not installed; no events written", file=sys.stderr)
        n_params = sum(p.numel() for p in model.parameters())
        print(
            f"training {args.model} ({n_params:,} params) on {args.dataset}: {len(train_set)} train / "
            f"{len(val_set)} val images, {icfg.in_chans}x{icfg.input_size}x{icfg.input_size}, "
            f"{args.epochs} epochs, batch {args.batch_size}x{world}, device {device}, amp {args.amp}"
        )

    stop = StopFlag()
    old_handlers = {}

    def on_signal(signum: int, frame: Any) -> None:
        if stop.signum:  # a second signal: stop now
            raise KeyboardInterrupt
        stop.signum = signum
        if is_main:
            print(f"\n{signal.Signals(signum).name}: finishing the current step, then saving a checkpoint",
                  file=sys.stderr)  # fmt: skip

    for s in (signal.SIGINT, signal.SIGTERM):
        old_handlers[s] = signal.signal(s, on_signal)

    def sync_stop(_: EpochState) -> None:
        if world > 1:  # every rank must stop at the same step
            t = torch.tensor([stop.signum], device=device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            stop.signum = int(t.item())

    tcfg = TrainConfig(
        aux_weight=args.aux_weight, label_smoothing=args.label_smoothing, amp=args.amp,
        channels_last=args.channels_last, clip_grad_norm=args.clip_grad_norm, progress=args.progress and is_main,
        mixup=build_mixup(args, len(classes)), scaler=scaler, ema=ema, ema_steps=args.model_ema_steps,
    )  # fmt: skip
    end_epoch = min(args.epochs, start_epoch + args.stop_after) if args.stop_after else args.epochs
    try:
        for epoch in range(start_epoch, end_epoch):
            sampler.set_epoch(epoch)
            loader_gen.manual_seed(args.seed * 100_003 + epoch * 101 + rank)
            steps_left = len(train_loader)
            state = train_one_epoch(
                train_model, optimizer, train_loader, device, epoch, tcfg, lr_scheduler=scheduler,
                state=epoch_state, stop=stop, total_steps=steps_left, on_step=sync_stop,
            )  # fmt: skip
            sampler.start = 0
            epoch_state = None
            if stop.signum and state.step < iters_per_epoch:
                rngs = gather_rng_states()  # a collective: every rank takes part
                if is_main:
                    atomic_torch_save(checkpoint(epoch, state, rngs), out / "checkpoint.pt")
                    print(f"interrupted at epoch {epoch} step {state.step}; checkpoint saved to "
                          f"{out / 'checkpoint.pt'}; continue with --resume auto --output-dir {out}", file=sys.stderr)  # fmt: skip
                return 128 + stop.signum
            tr = all_reduce_sums(state, device)
            val = evaluate(model, val_loader, device, len(classes), amp=args.amp, channels_last=args.channels_last,
                           desc="val", show_progress=tcfg.progress)  # fmt: skip
            ema_val = (
                evaluate(ema.module, val_loader, device, len(classes), amp=args.amp, desc="val ema",
                         show_progress=tcfg.progress)  # fmt: skip
                if ema is not None else None
            )  # fmt: skip
            row = {
                "epoch": epoch, "lr": optimizer.param_groups[0]["lr"], "train_loss": tr[0], "train_acc1": tr[1],
                "val_loss": val["loss"], "val_acc1": val["acc1"], "val_acc5": val["acc5"],
                "ema_val_acc1": ema_val["acc1"] if ema_val else "", "seconds": state.seconds,
            }  # fmt: skip
            history.append(row)
            score = max(val["acc1"], ema_val["acc1"] if ema_val else -1.0)
            improved = score > best_acc1
            best_acc1 = max(best_acc1, score)
            if improved:
                best_val = ema_val if ema_val is not None and ema_val["acc1"] >= val["acc1"] else val
            rngs = gather_rng_states()  # a collective: every rank takes part
            if is_main:
                ck = checkpoint(epoch + 1, None, rngs)
                atomic_torch_save(ck, out / "checkpoint.pt")
                if improved:
                    use_ema = ema_val is not None and ema_val["acc1"] >= val["acc1"]
                    if use_ema:
                        assert ema is not None
                        ck = {**ck, "model": ema.module.state_dict(), "weights_from": "ema"}
                    atomic_torch_save(ck, out / "best.pt")
                write_metrics_csv(out / "metrics.csv", history)
                if writer is not None:
                    for k in ("lr", "train_loss", "train_acc1", "val_loss", "val_acc1", "val_acc5"):
                        writer.add_scalar(k, row[k], epoch + 1)
                    writer.flush()
                if args.plots:
                    plot_curves(out / "curves.png", history, f"{args.model} on {args.dataset}")
                img_s = tr[2] / max(state.seconds, 1e-9)
                print(
                    f"epoch {epoch + 1}/{args.epochs}  lr {row['lr']:.4g}  train loss {tr[0]:.4f} acc {tr[1]:.4f}  "
                    f"val loss {val['loss']:.4f} top1 {val['acc1']:.4f} top5 {val['acc5']:.4f}"
                    + (f"  ema top1 {ema_val['acc1']:.4f}" if ema_val else "")
                    + f"  {state.seconds:.0f}s {img_s:.0f} img/s",
                    flush=True,
                )
    except NonFiniteError:
        if is_main:
            print(f"training stopped; the last good checkpoint is kept in {out}", file=sys.stderr)
        raise
    finally:
        for s, h in old_handlers.items():
            signal.signal(s, h)
        if writer is not None:
            writer.close()

    if end_epoch < args.epochs:
        if is_main:
            print(f"stopped after epoch {end_epoch}/{args.epochs} (--stop-after); continue with "
                  f"--resume auto --output-dir {out}")  # fmt: skip
        return 0
    # final: the best weights on the test split (the only time the test set is used with --val-split)
    if is_main and (out / "best.pt").exists():
        best = load_checkpoint(out / "best.pt")
        model.load_state_dict(best["model"])
    test_loader = DataLoader(
        test_set, batch_size=eval_bs, num_workers=args.workers,
        sampler=DistributedSampler(test_set, num_replicas=world, rank=rank, shuffle=False) if world > 1 else None,
    )  # fmt: skip
    if world > 1:  # every rank evaluates rank 0's best weights
        for t in model.state_dict().values():
            dist.broadcast(t, 0)
    if test_set is val_set and best_val is not None:
        test = best_val  # validation ran on the test split: the best epoch's result is the test result
    else:
        test = evaluate(
            model, test_loader, device, len(classes), amp=args.amp, channels_last=args.channels_last,
            desc="test", show_progress=tcfg.progress,
        )  # fmt: skip
    if is_main:
        result = {
            "model": args.model, "dataset": args.dataset, "split": "test", "epochs": args.epochs,
            "best_val_acc1": best_acc1, "test_loss": test["loss"], "test_acc1": test["acc1"],
            "test_acc5": test["acc5"], "test_images": test["count"],
            "train_seconds": sum(h["seconds"] for h in history),
        }  # fmt: skip
        atomic_write_text(out / "results.json", json.dumps(result, indent=2))
        if args.plots and len(classes) <= 20:
            plot_confusion(
                out / "confusion.png",
                test["confusion"],
                classes,
                f"{args.model}: test top-1 {test['acc1']:.4f}",
            )
        if args.save_format == "safetensors":
            from safetensors.torch import save_file

            sd = {k: v.contiguous() for k, v in model.state_dict().items()}
            meta = {"model_name": args.model, "model_kwargs": json.dumps(model_kwargs), "classes": json.dumps(classes),
                    "data_cfg": json.dumps(icfg.to_dict())}  # fmt: skip
            from .utils import atomic_write

            atomic_write(out / "best.safetensors", lambda tmp: save_file(sd, tmp, metadata=meta))
        print(f"test top-1 {test['acc1']:.4f} top-5 {test['acc5']:.4f} loss {test['loss']:.4f} "
              f"({test['count']} images); outputs in {out}")  # fmt: skip
    return 0


def all_reduce_sums(state: EpochState, device: torch.device) -> list[float]:
    """(train loss, train top-1, images) of the epoch over all ranks."""
    from .engine import all_reduce_sum

    loss_sum, correct, count = all_reduce_sum([state.loss_sum, state.correct, state.count], device)
    return [loss_sum / max(count, 1), correct / max(count, 1), count]


def cli(argv: Sequence[str] | None = None) -> int:
    from .cli import main as cli_main

    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(cli())
