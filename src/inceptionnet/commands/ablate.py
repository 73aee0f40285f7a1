"""``inceptionnet ablate``: the ablation studies of googlenet_small (seeds/003, section 8).

Parsing and printing only: the studies, the fixed recipe, run directories, reuse of finished runs and
the reports are ``inceptionnet.train.ablation``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..train import ablation as A
from ..train.ablation import DEFAULT_AMP, DEFAULT_SUBSET, STUDIES


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Ablation studies of googlenet_small (seeds/003 section 8): one fixed recipe per study, "
        "several seeds per variant; writes results.csv, summary.md and curves.png per study.",
        add_help=add_help,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--study", required=True, help=f"one of {', '.join(STUDIES)} or all")
    p.add_argument("--variants", nargs="*", default=None, metavar="NAME",
                   help="only these variants of the study (default: all; the baseline is always run)")  # fmt: skip
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 for every variant")
    p.add_argument("--epochs", type=int, default=4, help="epochs per run (the fixed budget)")
    p.add_argument("--width", type=float, default=0.25, help="googlenet_small channel multiplier")
    p.add_argument("--stem-stride", type=int, default=2, help="googlenet_small conv1 stride (1 or 2)")
    p.add_argument("--dataset", default="fashion_mnist", help="data set (fashion_mnist, cifar10, digits)")
    p.add_argument("--data", default=None, help="data root (default: the usual search path)")
    p.add_argument(
        "--subset",
        type=int,
        default=DEFAULT_SUBSET,
        help="train on the first N images of a fixed shuffle (0: all)",
    )
    p.add_argument("--val-split", type=int, default=0,
                   help="hold out N training images for model selection (0: validate on the test split)")  # fmt: skip
    p.add_argument("-b", "--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.002, help="AdamW learning rate (cosine schedule)")
    p.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--amp", default=DEFAULT_AMP,
                   help="autocast: off | bf16 | auto (bf16 where the CPU has native bf16); every run uses "
                   "channels_last and the trainer's --batch-augment")  # fmt: skip
    p.add_argument("--output-dir", required=True, help="study root: OUTPUT_DIR/STUDY/VARIANT/seedS")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing; rewrite results.csv, summary.md, curves.png from finished runs")  # fmt: skip
    p.add_argument("--train-progress", action="store_true", help="also show the trainer's per-step bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def main(args: argparse.Namespace) -> int:
    studies = A.validate(args)
    root = Path(args.output_dir)
    plan = A.plan_runs(args, studies, root)
    done = sum(A.is_finished(A.run_dir(root, s, v, seed)) for s, v, seed in plan)
    print(
        f"ablation {', '.join(s.name for s in studies)}: {len(plan)} runs ({done} finished), "
        f"{args.epochs} epochs each on {args.dataset}, seeds 0..{args.seeds - 1}; outputs in {root}",
        flush=True,
    )
    reports = A.Reports(args, root)
    if not args.report_only:
        rc = run_plan(args, root, plan, done, reports)
        if rc:
            return rc
    for study in studies:
        rows = reports.write(study)
        print(
            f"{study.name}: {len(rows)} finished runs -> {root / study.name}/results.csv, summary.md, curves.png"
        )
    return 0


def run_plan(args: argparse.Namespace, root: Path, plan: list[A.Run], done: int, reports: A.Reports) -> int:
    """The unfinished runs of ``plan`` in order, under a progress bar; the reports after each one."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(plan), initial=done, desc="ablation runs", unit="run", disable=None, file=sys.stderr)
    try:
        for study, variant, seed in plan:
            d = A.run_dir(root, study, variant, seed)
            if A.is_finished(d):
                continue
            bar.set_postfix_str(f"{study.name}/{variant.name}/seed{seed}")
            rc, how = A.run_one(args, root, study, variant, seed)
            if rc:
                print(f"run {d} stopped (exit {rc}); rerun the same command to continue it", file=sys.stderr)
                return rc
            bar.update(1)
            res = A.read_json(d / "results.json")
            bar.write(
                f"finished {study.name}/{variant.name}/seed{seed}: test top-1 {res['test_acc1']:.4f} ({how})"
            )
            reports.write(study)
    finally:
        bar.close()
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    from . import run

    return run("ablate", sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(cli())
