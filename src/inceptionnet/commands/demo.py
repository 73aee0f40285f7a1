"""``make demo``: train googlenet_small on Fashion-MNIST, evaluate it on the test set, predict images.

Runs the ``fashion_mnist_demo`` recipe (about 5 minutes on 2 CPU cores): the best epoch is picked on
5,000 images held out of the training set (the recipe's ``val_split``), and the trainer evaluates
the test set once, at the end. Then the same commands a user would type: ``inceptionnet eval`` (the held-out validation split again,
from the saved checkpoint) and ``inceptionnet predict``; last, the validation and test figures side
by side, from the run's ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from .. import data as D
from . import run as run_command

RECIPE = "fashion_mnist_demo"


def cli(argv: list[str]) -> int:
    return run_command(argv[0], argv[1:])


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train googlenet_small on Fashion-MNIST (recipe fashion_mnist_demo, ~5 min on 2 cores), "
        "evaluate it on the test set and classify a few test images; run again to resume.",
        add_help=add_help,
    )
    p.add_argument("--output-dir", default="runs/demo", help="the run directory (default: runs/demo)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def main(args: argparse.Namespace) -> int:
    from PIL import Image

    run = Path(args.output_dir)
    print("== models:", flush=True)
    cli(["list", "googlenet*"])
    print(f"\n== inceptionnet train --recipe {RECIPE} --output-dir {run} --resume auto", flush=True)
    rc = cli(["train", "--recipe", RECIPE, "--output-dir", str(run), "--resume", "auto"])
    if rc:
        return rc
    # the validation split, not the test set: the trainer has evaluated the test set once already;
    # --val-split as the run had it (its args.yaml) rebuilds the same held-out images
    held_out = int(yaml.safe_load((run / "args.yaml").read_text())["val_split"])
    val = ["eval", "--checkpoint", str(run / "best.pt"), "--split", "val", "--val-split", str(held_out)]
    print(f"\n== inceptionnet {' '.join(val[1:])}", flush=True)
    rc = cli(val)
    if rc:
        return rc
    # a few test images as files, as a user would have them
    x, y, classes = D.load_arrays("fashion_mnist", "test", None, 0)
    files = []
    for i in (0, 1, 2, 3):
        p = run / "samples" / f"test{i}_{classes[int(y[i])].replace('/', '-').replace(' ', '_')}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i].numpy(), mode="L").save(p)
        files.append(str(p))
    print(f"\n== inceptionnet predict --checkpoint {run}/best.pt --topk 3 {' '.join(files)}", flush=True)
    rc = cli(["predict", "--checkpoint", str(run / "best.pt"), "--topk", "3", *files])
    print_figures(run, held_out)
    print(f"curves: {run / 'curves.png'}\nconfusion matrix: {run / 'confusion.png'}\n"
          f"checkpoint: {run / 'best.pt'} (latest: {run / 'checkpoint.pt'})\nmetrics: {run / 'metrics.csv'}")  # fmt: skip
    return rc


def print_figures(run: Path, held_out: int) -> None:
    """The validation figure that picked the epoch and the test figure, from ``results.json``."""
    r = json.loads((run / "results.json").read_text())  # the trainer's, just written
    print(f"\nvalidation top-1 {r['best_val_acc1']:.4f} ({held_out} images held out of the training set; "
          f"picked epoch {r['best_epoch']} of {r['epochs']})\n"
          f"test top-1 {r['test_acc1']:.4f} ({r['test_images']} test images, evaluated once, after the pick)")  # fmt: skip


if __name__ == "__main__":
    from . import run_module_main

    sys.exit(run_module_main("demo"))
