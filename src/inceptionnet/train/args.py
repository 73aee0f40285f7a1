"""The flags of ``inceptionnet train``, the YAML recipes under them, and their validation.

Flags override a recipe (``--recipe NAME``), which overrides the defaults: ``parse_args`` for a command
line, ``apply_recipe`` for a Namespace parsed elsewhere; both layer the recipe the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .. import data as D
from ..errors import first_line
from ..models import get_model_builder

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"


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
        raise ValueError(f"recipe {path} is not valid YAML: {first_line(e)}") from None
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
    argv = sys.argv[1:] if argv is None else argv
    return apply_recipe(parser.parse_args(argv), parser, argv)


def apply_recipe(
    args: argparse.Namespace,
    parser: argparse.ArgumentParser | None = None,
    argv: Sequence[str] | None = None,
) -> argparse.Namespace:
    """Layers the recipe ``args.recipe`` under the flags (defaults < recipe < flags), once per Namespace.

    The recipe's values become the parser's defaults and the flags are read over them: ``argv``, the
    command line ``args`` came from, when given (a flag given there wins even at its default value);
    else (a Namespace from ``get_args_parser().parse_args()`` handed to ``main``) the values of ``args``
    that differ from the defaults. Returns the layered Namespace (``args`` itself without ``argv``).
    """
    if args.recipe and not getattr(args, "_recipe_applied", False):
        parser = parser or get_args_parser()
        recipe = load_recipe(args.recipe, parser)
        defaults = vars(parser.parse_args([]))
        parser.set_defaults(**recipe)
        if argv is not None:
            args = parser.parse_args(argv)
        else:
            layered = parser.parse_args([])
            for k in recipe:
                if getattr(args, k) == defaults[k]:
                    setattr(args, k, getattr(layered, k))
    args._recipe_applied = True
    return args


def public_args(args: argparse.Namespace) -> dict[str, Any]:
    """The effective config as saved in ``args.yaml`` and in checkpoints (no ``_private`` marks)."""
    return {k: v for k, v in vars(args).items() if not k.startswith("_")}


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
