"""``make demo``: train googlenet_small on Fashion-MNIST, evaluate it on the test set, predict images.

Runs the ``fashion_mnist_demo`` recipe (about 5 minutes on 2 CPU cores), then the same commands a
user would type: ``inceptionnet eval`` and ``inceptionnet predict``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import data as D
from . import run as run_command


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
    print(f"\n== inceptionnet train --recipe fashion_mnist_demo --output-dir {run} --resume auto", flush=True)
    rc = cli(["train", "--recipe", "fashion_mnist_demo", "--output-dir", str(run), "--resume", "auto"])
    if rc:
        return rc
    print(f"\n== inceptionnet eval --checkpoint {run}/best.pt --split test", flush=True)
    rc = cli(["eval", "--checkpoint", str(run / "best.pt"), "--split", "test"])
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
    print(f"\ncurves: {run / 'curves.png'}\nconfusion matrix: {run / 'confusion.png'}\n"
          f"checkpoint: {run / 'best.pt'} (latest: {run / 'checkpoint.pt'})\nmetrics: {run / 'metrics.csv'}")  # fmt: skip
    return rc


if __name__ == "__main__":
    from . import run_module_main

    sys.exit(run_module_main("demo"))
