"""The flags of ``inceptionnet train``, the YAML recipes under them, and their validation.

Flags override a recipe (``--recipe NAME``), which overrides the defaults: ``parse_args`` for a command
line, ``apply_recipe`` for a Namespace parsed elsewhere; both layer the recipe the same way.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import data as D
from ..errors import YAML_MAX_BYTES, UsageError, excerpt, load_yaml
from ..models import get_model_builder, parse_model_kwargs
from ..runtime import resolve_device

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train an Inception-family classifier (single CPU to multi-node GPU via torchrun).",
        add_help=add_help,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    model_flags(p.add_argument_group("model"))
    data_flags(p.add_argument_group("data"))
    optimization_flags(p.add_argument_group("optimization"))
    speed_flags(p.add_argument_group("speed"))
    run_flags(p.add_argument_group("run"))
    return p


def model_flags(g: argparse._ArgumentGroup) -> None:
    """The model flags: the network and its weights."""
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
    g.add_argument(
        "--freeze-backbone", action="store_true", help="train only the classifier(s) (needs --weights)"
    )
    g.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under DDP")


def data_flags(g: argparse._ArgumentGroup) -> None:
    """The data flags: the data set, its loading and augmentation."""
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


def optimization_flags(g: argparse._ArgumentGroup) -> None:
    """The optimization flags: epochs, optimizer, schedule, regularization, EMA."""
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


def speed_flags(g: argparse._ArgumentGroup) -> None:
    """The speed flags: device, precision, compile, threads."""
    g.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    g.add_argument("--amp", default="off",
                   help="off | bf16 | fp16 (torch.autocast; GradScaler for fp16) | auto (bf16 where the device "
                   "computes it natively: CUDA, or a CPU with AVX512-BF16/AMX; else off)")  # fmt: skip
    g.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")


def run_flags(g: argparse._ArgumentGroup) -> None:
    """The run flags: recipe, output directory, resume, seed, reports."""
    g.add_argument("--recipe", default=None, help="YAML recipe name in recipes/ or a path; flags override it")
    g.add_argument("--output-dir", default=None, help="run directory (default: runs/MODEL-DATASET); it holds one run, locked (.lock) while a "
                   "process trains into it")  # fmt: skip
    g.add_argument(
        "--resume", default=None, help="checkpoint path, or 'auto' for OUTPUT_DIR/checkpoint.pt if present"
    )
    g.add_argument(
        "--overwrite", action="store_true",
        help="without --resume: train into an --output-dir that holds another run, replacing it (its "
        "checkpoint.pt, best.pt, args.yaml, metrics.csv, curves.png are overwritten as the new run writes "
        "them; its results.json, confusion.png and best.safetensors are removed at the start); without "
        "this flag such a directory is refused",
    )  # fmt: skip
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
    g.add_argument(
        "--test-only", action="store_true", help="only evaluate the model of --resume or --weights"
    )
    g.add_argument("--debug", action="store_true", help="show tracebacks")


def recipe_path(name: str) -> Path:
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    cand = RECIPES_DIR / f"{name}.yaml"
    if cand.is_file():
        return cand
    known = sorted(x.stem for x in RECIPES_DIR.glob("*.yaml"))
    raise UsageError(f"unknown recipe {excerpt(name)}; choose one of {', '.join(known)} or give a .yaml path")


def load_recipe(name: str, parser: argparse.ArgumentParser) -> dict[str, Any]:
    path = recipe_path(name)
    if path.stat().st_size > YAML_MAX_BYTES:  # before reading it: a recipe is a page of flags
        raise UsageError(
            f"recipe {path} is {path.stat().st_size:,} bytes; a recipe is at most {YAML_MAX_BYTES:,}"
        )
    try:
        cfg = load_yaml(path.read_text(), f"recipe {path}") or {}  # aliases refused: no "billion laughs"
    except UnicodeDecodeError:
        raise UsageError(f"recipe {path} is not valid YAML: not UTF-8 text") from None
    if not isinstance(cfg, dict):
        raise UsageError(f"recipe {path} must be a mapping of flag: value")
    actions = {a.dest: a for a in parser._actions}
    out = {}
    for key, value in cfg.items():
        dest = str(key).replace("-", "_")
        if dest not in actions or dest in ("recipe", "help"):
            raise UsageError(
                f"recipe {path}: unknown key {excerpt(key)} (keys are the train flags, e.g. lr, epochs)"
            )
        if dest == "model_kwargs" and isinstance(value, dict):
            value = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in value.items()]
        out[dest] = recipe_value(value, actions[dest], f"recipe {path}: {key}")
    return out


def recipe_value(value: Any, action: argparse.Action, where: str) -> Any:
    """A recipe's ``value`` for the flag ``action``, of the type the flag takes (a number written as a
    string, such as YAML's ``1e-3``, is converted as on the command line), or a UsageError naming ``where``."""
    if value is None and action.default is None:
        return None
    if action.nargs == 0:  # store_true / --flag/--no-flag
        ok, want = isinstance(value, bool), "true or false"
    elif action.nargs == "*":
        ok, want = isinstance(value, list) and all(isinstance(v, str) for v in value), "a list of KEY=VALUE"
    elif action.type in (int, float):
        want = "an integer" if action.type is int else "a number"
        kinds = (str, int) if action.type is int else (str, int, float)
        if isinstance(value, kinds) and not isinstance(value, bool):
            try:
                return action.type(value)
            except ValueError:
                pass
        ok = False
    else:
        ok, want = isinstance(value, str), "a string"
        if isinstance(value, bool):
            want += " (YAML reads unquoted on/off/yes/no as true/false: quote it)"
    if not ok:
        raise UsageError(f"{where}: expected {want}, got {excerpt(value)}")
    return value


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


# What each numeric flag must be: (the rule as the message says it, the test); NaN and inf fail every rule.
Rule = tuple[str, Callable[[float], bool]]
POSITIVE_INT: Rule = ("be a positive integer", lambda v: v > 0)
POSITIVE: Rule = ("be positive", lambda v: v > 0)
NOT_NEGATIVE: Rule = ("not be negative", lambda v: v >= 0)


def interval(lo: float, hi: float, closed: str = "[]") -> Rule:
    """The rule ``v in [lo, hi]`` (``closed`` "[)", "(]", "()" for the open ends)."""
    low = (lambda v: v >= lo) if closed[0] == "[" else (lambda v: v > lo)
    high = (lambda v: v <= hi) if closed[1] == "]" else (lambda v: v < hi)
    return f"be in {closed[0]}{lo}, {hi}{closed[1]}", lambda v: low(v) and high(v)


INT_RULES: dict[str, Rule] = {
    "epochs": POSITIVE_INT, "batch_size": POSITIVE_INT, "lr_step_size": POSITIVE_INT,
    "model_ema_steps": POSITIVE_INT, "workers": NOT_NEGATIVE, "subset": NOT_NEGATIVE,
    "stop_after": NOT_NEGATIVE, "val_split": NOT_NEGATIVE, "input_size": NOT_NEGATIVE,
    "threads": NOT_NEGATIVE, "random_crop_pad": NOT_NEGATIVE, "seed": interval(0, 2**31 - 1),
}  # fmt: skip
FLOAT_RULES: dict[str, Rule] = {
    "lr": POSITIVE, "weight_decay": NOT_NEGATIVE, "norm_weight_decay": NOT_NEGATIVE,
    "aux_weight": NOT_NEGATIVE, "mixup_alpha": NOT_NEGATIVE, "cutmix_alpha": NOT_NEGATIVE,
    "clip_grad_norm": NOT_NEGATIVE, "lr_warmup_epochs": NOT_NEGATIVE, "momentum": interval(0, 1, "[)"),
    "label_smoothing": interval(0, 1, "[)"), "random_erase": interval(0, 1), "lr_gamma": interval(0, 1, "(]"),
    "lr_min": interval(0, 1), "lr_warmup_decay": interval(0, 1), "model_ema_decay": interval(0, 1, "()"),
}  # fmt: skip
CHOICES: dict[str, tuple[str, ...]] = {
    "opt": ("sgd", "adamw"), "amp": ("off", "bf16", "fp16", "auto"),
    "lr_scheduler": ("cosine", "step", "onecycle", "paper", "constant"), "save_format": ("pt", "safetensors"),
    "auto_augment": ("none", "trivial", "autoaugment"),
}  # fmt: skip
PATHS = ("weights", "data", "output_dir", "resume", "recipe")  # None (not given) or a non-empty string


def flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def check_number(dest: str, value: Any, rule: Rule, integer: bool) -> None:
    kinds = (int,) if integer else (int, float)
    if (
        not isinstance(value, kinds)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not rule[1](value)
    ):
        raise UsageError(f"{flag(dest)} must {rule[0]}, got {value}")


def validate_args(args: argparse.Namespace) -> None:
    """Every flag's value (from the command line, a recipe or a Namespace built elsewhere): one
    UsageError naming the flag, before anything is built."""
    for dest, rule in INT_RULES.items():
        check_number(dest, getattr(args, dest), rule, integer=True)
    for dest, rule in FLOAT_RULES.items():
        if getattr(args, dest) is not None or dest != "norm_weight_decay":
            check_number(dest, getattr(args, dest), rule, integer=False)
    for dest, choices in CHOICES.items():
        if getattr(args, dest) not in choices:
            raise UsageError(
                f"unknown {flag(dest)} {excerpt(getattr(args, dest))}; choose one of {', '.join(choices)}"
            )
    for dest in PATHS:
        if getattr(args, dest) is not None and not str(getattr(args, dest)).strip():
            raise UsageError(f"{flag(dest)} is empty; give a path or leave the flag out")
    if args.lr_warmup_epochs > args.epochs:
        raise UsageError(
            f"--lr-warmup-epochs {args.lr_warmup_epochs:g} is longer than the run (--epochs {args.epochs})"
        )
    D.check_dataset_name(args.dataset)
    get_model_builder(args.model)  # unknown model -> UsageError with close names
    parse_model_kwargs(args.model_kwargs)  # no '=' -> UsageError naming --model-kwargs
    resolve_device(args.device)  # mps, meta, tpu, cuda without CUDA -> UsageError naming --device
    validate_modes(args)


def validate_modes(args: argparse.Namespace) -> None:
    """Flags that make no sense together: a random model evaluated or frozen, --overwrite of a resumed run."""
    if args.test_only and not (args.weights or args.resume):
        raise UsageError("--test-only evaluates a trained model: give --resume CHECKPOINT (or auto) or --weights; "
                         "without them a randomly initialized model would be evaluated")  # fmt: skip
    if args.freeze_backbone and not args.weights:
        raise UsageError("--freeze-backbone trains only the classifier on a pretrained backbone: give --weights; "
                         "without them the frozen backbone would stay random")  # fmt: skip
    if args.overwrite and args.resume:
        raise UsageError(
            "--overwrite replaces the run in --output-dir, --resume continues it: give one of them"
        )
