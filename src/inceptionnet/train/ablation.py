"""The ablation studies of the GoogLeNet tutorial (seeds/003, section 8), run by ``inceptionnet ablate``.

Each study trains ``googlenet_small`` variants that differ in one thing only, with one fixed recipe
(same data, budget, optimizer and seeds for every variant):

=======  ===========================================  ==========
study    variants                                     baseline
=======  ===========================================  ==========
bn       bn, none (``norm``)                          bn
act      relu, leaky_relu, elu, tanh, silu (``act``)  relu
pool     max, avg (in-block pooling branch, ``pool``)  max
kernel   3x3x2, 5x5 (the "5x5" branch, ``branch5x5``)  3x3x2
aug      none, random_erase, mixup, cutmix            none
=======  ===========================================  ==========

The baseline of every study is the same network and recipe (BN, ReLU, max pooling, two 3x3, no
extra augmentation), so a finished baseline run of one study is reused by the others (same
seed, identical trainer arguments) instead of being trained again.

Runs are ``OUTPUT_DIR/STUDY/VARIANT/seedS`` (each a normal training run directory). A run with
``results.json`` is finished and never re-run; an interrupted one continues with ``--resume auto``.
After every finished run the study's ``results.csv``, ``summary.md`` and ``curves.png`` are
rewritten (atomically) from all finished runs, so partial results are readable at any time.

The steps ``commands/ablate.py`` runs: ``validate`` (every flag, then the trainer's own checks),
``plan_runs`` (the runs, each checked against a finished run's recipe), ``run_one`` (train one run or
reuse an identical finished one) and ``Reports.write`` (results.csv, summary.md, curves.png).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import data as D
from ..errors import UsageError, first_line
from ..fileio import atomic_save_figure, atomic_write_text
from ..models.layers import ACTS
from .args import parse_args, validate_args
from .build import build_model, drops_last_batch, input_config


@dataclass(frozen=True)
class Variant:
    name: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    train_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    variants: tuple[Variant, ...]

    @property
    def baseline(self) -> Variant:
        return self.variants[0]


STUDIES: dict[str, Study] = {
    s.name: s
    for s in (
        Study(
            "bn",
            "batch normalization vs none",
            (Variant("bn", {"norm": "bn"}), Variant("none", {"norm": "none"})),
        ),
        Study(
            "act",
            "activation function",
            tuple(Variant(a, {"act": a}) for a in ACTS),
        ),  # fmt: skip
        Study(
            "pool",
            "pooling in the Inception pooling branch",
            (Variant("max", {"pool": "max"}), Variant("avg", {"pool": "avg"})),
        ),  # fmt: skip
        Study(
            "kernel",
            '"5x5" branch: two 3x3 vs one 5x5',
            (Variant("3x3x2", {"branch5x5": "3x3x2"}), Variant("5x5", {"branch5x5": "5x5"})),
        ),  # fmt: skip
        Study(
            "aug",
            "extra augmentation",
            (
                Variant("none"),
                Variant("random_erase", train_args=("--random-erase", "0.25")),
                Variant("mixup", train_args=("--mixup-alpha", "0.2")),
                Variant("cutmix", train_args=("--cutmix-alpha", "1.0")),
            ),
        ),  # fmt: skip
    )
}

# every run names all the ablated flags, so the baselines of all studies are the identical run
BASE_KWARGS: dict[str, Any] = {"norm": "bn", "act": "relu", "pool": "max", "branch5x5": "3x3x2"}

RESULT_FIELDS = [
    "variant", "seed", "params", "macs", "best_acc1", "final_acc1", "test_acc1", "epochs",
    "train_seconds", "img_per_s",
]  # fmt: skip


DEFAULT_SUBSET = 30000  # the documented budget (docs/ABLATIONS.md); command lines leave it out
DEFAULT_AMP = "auto"


# --------------------------------------------------------------------------------------------------
# The fixed recipe


def recipe_argv(args: argparse.Namespace) -> list[str]:
    """The trainer flags shared by every run of every study (the fixed budget)."""
    argv = [
        "--model", "googlenet_small", "--dataset", args.dataset, "--epochs", str(args.epochs),
        "--batch-size", str(args.batch_size), "--opt", "adamw", "--lr", repr(args.lr),
        "--weight-decay", repr(args.weight_decay), "--lr-scheduler", "cosine", "--lr-warmup-epochs", "1",
        "--random-crop-pad", "2", "--val-split", str(args.val_split), "--subset", str(args.subset),
        "--threads", str(args.threads), "--device", args.device, "--no-tensorboard", "--no-plots",
        "--amp", args.amp, "--channels-last", "--batch-augment",
    ]  # fmt: skip
    if args.data:
        argv += ["--data", str(args.data)]
    if not args.train_progress:
        argv.append("--no-progress")
    return argv


def run_argv(args: argparse.Namespace, variant: Variant, seed: int) -> list[str]:
    kwargs = {"width": args.width, "stem_stride": args.stem_stride, **BASE_KWARGS, **variant.model_kwargs}
    return [
        *recipe_argv(args),
        *variant.train_args,
        "--seed", str(seed),
        "--model-kwargs", *[f"{k}={v}" for k, v in kwargs.items()],
    ]  # fmt: skip


def _fingerprint(argv: Sequence[str]) -> list[str]:
    """The argv that decides a run's result (progress, threads and --stop-after do not: resuming is exact)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--threads", "--stop-after"):
            skip = True
            continue
        if a in ("--no-progress",):
            continue
        out.append(a)
    return out


def validate(args: argparse.Namespace) -> list[Study]:
    if args.study == "all":
        studies = list(STUDIES.values())
    elif args.study in STUDIES:
        studies = [STUDIES[args.study]]
    else:
        raise UsageError(f"unknown --study {args.study!r}; choose one of {', '.join(STUDIES)} or all")
    for name in ("seeds", "epochs", "batch_size"):
        v = getattr(args, name)
        if v <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be a positive integer, got {v}")
    if not args.width > 0:
        raise UsageError(f"--width must be positive, got {args.width}")
    if args.stem_stride not in (1, 2):
        raise UsageError(f"--stem-stride must be 1 or 2, got {args.stem_stride}")
    for name in ("subset", "val_split", "threads"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must not be negative, got {getattr(args, name)}")
    if args.variants:
        if len(studies) != 1:
            raise UsageError("--variants needs a single --study")
        known = [v.name for v in studies[0].variants]
        bad = [v for v in args.variants if v not in known]
        if bad:
            raise UsageError(
                f"unknown variant {bad[0]!r} of study {studies[0].name}; choose from {', '.join(known)}"
            )
    validate_args(parse_args(run_argv(args, studies[0].baseline, 0)))  # the trainer's own checks
    return studies


def selected_variants(study: Study, names: Sequence[str] | None) -> list[Variant]:
    if not names:
        return list(study.variants)
    return [v for v in study.variants if v is study.baseline or v.name in names]


Run = tuple[Study, Variant, int]


def plan_runs(args: argparse.Namespace, studies: Sequence[Study], root: Path) -> list[Run]:
    """Every (study, variant, seed) to run, each checked against the recipe of a run already there."""
    plan = [
        (study, variant, seed)
        for study in studies
        for variant in selected_variants(study, args.variants)
        for seed in range(args.seeds)
    ]
    for study, variant, seed in plan:
        check_finished(run_dir(root, study, variant, seed), run_argv(args, variant, seed))
    return plan


# --------------------------------------------------------------------------------------------------
# Running


def run_dir(root: Path, study: Study, variant: Variant, seed: int) -> Path:
    return root / study.name / variant.name / f"seed{seed}"


def is_finished(d: Path) -> bool:
    return (d / "results.json").is_file()


def read_json(f: Path) -> dict[str, Any]:
    """A ``run.json`` / ``results.json`` of a run, or one UsageError naming the damaged file."""
    try:
        obj = json.loads(f.read_text())
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise UsageError(f"{f} is damaged ({first_line(e)}); delete {f.parent} to run it again") from None
    if not isinstance(obj, dict):
        raise UsageError(f"{f} is damaged (not a JSON object); delete {f.parent} to run it again")
    return obj


def check_finished(d: Path, argv: Sequence[str]) -> None:
    """A finished run made with other trainer flags is an error, not silently mixed into the table."""
    f = d / "run.json"
    if f.is_file():
        old = read_json(f).get("argv")
        if old is not None and _fingerprint(old) != _fingerprint(argv):
            raise UsageError(
                f"{d} was trained with another recipe ({' '.join(_diff(old, argv))}); "
                "use a new --output-dir or the same flags"
            )


def _diff(old: Sequence[str], new: Sequence[str]) -> list[str]:
    a, b = _fingerprint(old), _fingerprint(new)
    diff = [x for x in a if x not in b][:3]
    return diff or ["different flags"]


def find_reusable(root: Path, d: Path, argv: Sequence[str]) -> Path | None:
    """A finished run elsewhere under ``root`` with the same trainer flags (the shared baseline)."""
    want = _fingerprint(argv)
    for f in sorted(root.glob("*/*/seed*/run.json")):
        other = f.parent
        if other == d or not is_finished(other):
            continue
        try:
            if _fingerprint(json.loads(f.read_text())["argv"]) == want:
                return other
        except (ValueError, KeyError):
            continue
    return None


def reuse(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("metrics.csv", "args.yaml", "run.json", "results.json"):  # results.json last: "finished"
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / f".{name}.tmp")
            (dst / f".{name}.tmp").replace(dst / name)
    atomic_write_text(dst / "reused_from.txt", f"{src}\n")


def train_run(argv: list[str], d: Path) -> int:
    from .trainer import main as train_main

    d.mkdir(parents=True, exist_ok=True)
    atomic_write_text(d / "run.json", json.dumps({"argv": argv}, indent=2))
    targs = parse_args([*argv, "--output-dir", str(d), "--resume", "auto"])
    return int(train_main(targs) or 0)


def run_one(
    args: argparse.Namespace, root: Path, study: Study, variant: Variant, seed: int
) -> tuple[int, str]:
    """Finish one run: reuse an identical finished run under ``root``, else train (resuming).
    (exit code, how: ``reused PATH`` or the seconds it trained); a nonzero code: it stopped."""
    d = run_dir(root, study, variant, seed)
    argv = run_argv(args, variant, seed)
    src = find_reusable(root, d, argv)
    t0 = time.perf_counter()
    if src is not None:
        reuse(src, d)
        return 0, f"reused {src.relative_to(root)}"
    rc = train_run(argv, d)
    if rc != 0 or not is_finished(d):
        return rc or 1, "stopped"
    return 0, f"{time.perf_counter() - t0:.0f}s"


def measure(args: argparse.Namespace, variant: Variant) -> tuple[int, int, int]:
    """(params, MACs, input size) of a variant at the size the trainer feeds it."""
    from ..analysis import summarize

    targs = parse_args(run_argv(args, variant, 0))
    info = D.dataset_info(targs.dataset, targs.data)
    model, _ = build_model(targs, len(info.classes), info.in_chans)
    size = input_config(targs, model, info).input_size
    s = summarize(model, (size, size))
    return int(s["total_params"]), int(s["total_macs"]), int(size)


def train_images_per_epoch(args: argparse.Namespace) -> int:
    """Images one epoch trains on (one process; the trainer's rule for dropping the last batch)."""
    _, y, _ = D.load_arrays(args.dataset, "train", args.data, args.val_split)
    n = min(len(y), args.subset) if args.subset else len(y)
    return n - n % args.batch_size if drops_last_batch(n, n, args.batch_size) else n


# --------------------------------------------------------------------------------------------------
# Reports


def read_history(d: Path) -> list[dict[str, str]]:
    f = d / "metrics.csv"
    return list(csv.DictReader(f.open())) if f.is_file() else []


class Reports:
    """A study's results.csv, summary.md and curves.png, rewritten from its finished runs; every
    variant's params / MACs measured once."""

    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args, self.root = args, root
        self.measured: dict[tuple[str, str], tuple[int, int, int]] = {}
        self.images_per_epoch = train_images_per_epoch(args)

    def collect(self, study: Study) -> list[dict[str, Any]]:
        """One row per finished run of ``study`` (RESULT_FIELDS, and ``_curve``: val top-1 per epoch)."""
        rows: list[dict[str, Any]] = []
        for variant in study.variants:
            vdir = self.root / study.name / variant.name
            seeds = sorted(
                (int(p.name[4:]) for p in vdir.glob("seed*") if p.name[4:].isdigit() and is_finished(p)),
            )
            for seed in seeds:
                d = vdir / f"seed{seed}"
                res = read_json(d / "results.json")
                hist = read_history(d)
                key = (study.name, variant.name)
                if key not in self.measured:
                    self.measured[key] = measure(self.args, variant)
                params, macs, _ = self.measured[key]
                secs = float(res.get("train_seconds", 0.0))
                epochs = len(hist) or int(res.get("epochs", 0))
                rows.append({
                    "variant": variant.name, "seed": seed, "params": params, "macs": macs,
                    "best_acc1": max((float(h["val_acc1"]) for h in hist), default=float(res["best_val_acc1"])),
                    "final_acc1": float(hist[-1]["val_acc1"]) if hist else float("nan"),
                    "test_acc1": float(res["test_acc1"]), "epochs": epochs, "train_seconds": secs,
                    "img_per_s": self.images_per_epoch * epochs / secs if secs > 0 else float("nan"),
                    "_curve": [float(h["val_acc1"]) for h in hist],
                })  # fmt: skip
        return rows

    def write(self, study: Study) -> list[dict[str, Any]]:
        """The rows of ``study``'s finished runs, written out (nothing written when there are none)."""
        rows = self.collect(study)
        out = self.root / study.name
        if not rows:
            return rows
        out.mkdir(parents=True, exist_ok=True)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=RESULT_FIELDS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
        atomic_write_text(out / "results.csv", buf.getvalue())
        atomic_write_text(out / "summary.md", summary_markdown(self.args, study, rows))
        plot_study(out / "curves.png", study, rows)
        return rows


def mean_std(xs: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, 0.0
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def summary_markdown(args: argparse.Namespace, study: Study, rows: list[dict[str, Any]]) -> str:
    split = "the test split" if args.val_split == 0 else f"a {args.val_split}-image validation split"
    lines = [
        f"# Ablation `{study.name}`: {study.title}",
        "",
        f"googlenet_small width {args.width} stem_stride {args.stem_stride} on {args.dataset}"
        + (f" (subset {args.subset})" if args.subset else "")
        + f"; {args.epochs} epochs, batch {args.batch_size}, AdamW lr {args.lr} wd {args.weight_decay}, "
        f"cosine with 1 warmup epoch, pad-2 random crop (+ flips where label-preserving), amp {args.amp}, "
        "channels_last, batch augmentation.",
        f"Final / best top-1: last epoch / best epoch on {split}; test top-1: the test split with the "
        "best epoch's weights. Mean ± sample std over seeds; Δ: difference of the mean final top-1 to "
        f"the baseline `{study.baseline.name}`.",
        f"Command: `inceptionnet ablate {command_flags(args, study)}`",
        "",
        "| variant | seeds | params | MACs | final top-1 | best top-1 | test top-1 | Δ final | img/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_variant.setdefault(r["variant"], []).append(r)
    base = by_variant.get(study.baseline.name)
    base_ms = mean_std([r["final_acc1"] for r in base]) if base else None
    notes = []
    for variant in study.variants:
        rs = by_variant.get(variant.name)
        if not rs:
            continue
        fm, fs = mean_std([r["final_acc1"] for r in rs])
        bm, bs = mean_std([r["best_acc1"] for r in rs])
        tm, ts = mean_std([r["test_acc1"] for r in rs])
        im, _ = mean_std([r["img_per_s"] for r in rs])
        if base_ms is None:
            delta = "n/a"
        elif variant is study.baseline:
            delta = "baseline"
        else:
            d = fm - base_ms[0]
            noise = 2 * max(fs, base_ms[1])
            delta = f"{d:+.4f}"
            if len(rs) < 2 or len(base or []) < 2:
                delta += " (1 seed: no noise estimate)"
                notes.append(f"- `{variant.name}`: Δ {d:+.4f} from a single seed; no noise estimate.")
            elif abs(d) < noise:
                delta += " (within noise)"
                notes.append(
                    f"- `{variant.name}`: |Δ| = {abs(d):.4f} < 2·std = {noise:.4f}: within seed-to-seed noise."
                )
        lines.append(
            f"| {variant.name} | {len(rs)} | {rs[0]['params']:,} | {rs[0]['macs'] / 1e6:.1f}M "
            f"| {fm:.4f} ± {fs:.4f} | {bm:.4f} ± {bs:.4f} | {tm:.4f} ± {ts:.4f} | {delta} | {im:.0f} |"
        )
    if notes:
        lines += [
            "",
            "Within noise (|Δ| < 2·std, std the larger of the variant's and the baseline's):",
            *notes,
        ]
    lines += ["", "Per-run numbers: `results.csv`; validation curves: `curves.png`.", ""]
    return "\n".join(lines)


def command_flags(args: argparse.Namespace, study: Study) -> str:
    parts = [f"--study {study.name}", f"--seeds {args.seeds}", f"--epochs {args.epochs}", f"--width {args.width}",
             f"--stem-stride {args.stem_stride}", f"--dataset {args.dataset}"]  # fmt: skip
    if args.subset != DEFAULT_SUBSET:
        parts.append(f"--subset {args.subset}")
    if args.amp != DEFAULT_AMP:
        parts.append(f"--amp {args.amp}")
    if args.val_split:
        parts.append(f"--val-split {args.val_split}")
    if args.batch_size != 128:
        parts.append(f"--batch-size {args.batch_size}")
    if args.lr != 0.002:
        parts.append(f"--lr {args.lr}")
    if args.weight_decay != 0.05:
        parts.append(f"--weight-decay {args.weight_decay}")
    parts.append(f"--output-dir {args.output_dir}")
    return " ".join(parts)


def plot_study(path: Path, study: Study, rows: list[dict[str, Any]]) -> None:
    """Validation top-1 vs epoch: the mean over seeds per variant, shaded min..max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for variant in study.variants:
        curves = [r["_curve"] for r in rows if r["variant"] == variant.name and r["_curve"]]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        ep = list(range(1, n + 1))
        cols = [[c[i] for c in curves] for i in range(n)]
        mean = [sum(c) / len(c) for c in cols]
        (line,) = ax.plot(ep, mean, "o-", ms=3, label=f"{variant.name} ({len(curves)} seeds)")
        if len(curves) > 1:
            ax.fill_between(
                ep, [min(c) for c in cols], [max(c) for c in cols], color=line.get_color(), alpha=0.2
            )
    ax.set(
        xlabel="epoch",
        ylabel="val top-1",
        title=f"ablation {study.name}: {study.title} (mean, min–max over seeds)",
    )
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_save_figure(fig, path)
    plt.close(fig)
