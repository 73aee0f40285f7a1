"""End to end on a folder of photos (issue 34, docs/BENCHMARKS.md "end to end"): the wall time of
``inceptionnet predict DIR -o preds.csv`` beside timm's ``inference.py`` on the same photos and weights.

    python scripts/e2e_folder_bench.py --timm-inference /path/to/pytorch-image-models/inference.py \
        [--n 2048] [--model inception_v3] [--work /tmp/e2e] [--print-only]

1. Builds N JPEG photos (long side 500 px, quality 90) from the real photos that ship with installed
   packages (scikit-learn's ``load_sample_images``: china.jpg, flower.jpg; matplotlib's
   ``sample_data/grace_hopper.jpg``): random crops of 40-100 % of each side, mirrored half the time.
2. Saves one random init of timm's ``MODEL`` (``w.pth``): both tools load these same weights.
3. Times each command from start to exit (building and checking the fast path counts), in a fresh
   process, and prints a JSON summary (wall s, img/s, ratio) plus each command line, so that a
   quiet machine (farm-bench) can run exactly these lines:

   - ours: ``inceptionnet predict --model MODEL --weights w.pth DIR -o preds.csv --quiet``
     (default: the fast path, ``--backend auto``, since N > 64);
   - timm fp32: ``python inference.py DIR --model MODEL --checkpoint w.pth --device cpu -b 32 -j 2``;
   - timm bf16: the same with ``--amp --amp-dtype bfloat16 --channels-last``.

timm's script needs pandas (not among this project's dependencies): install it beside timm, or put
a folder holding it on PYTHONPATH. ``--print-only`` builds the photos and weights and prints the command lines without timing them.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

LONG_SIDE = 500


def source_photos() -> list[np.ndarray]:
    """The real photos shipped with installed packages, as H x W x 3 uint8 arrays."""
    import matplotlib
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = [np.asarray(im) for im in load_sample_images().images]
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if hopper.is_file():
        photos.append(np.asarray(Image.open(hopper).convert("RGB")))
    return photos


def build_photos(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` JPEGs (long side LONG_SIDE) cut from ``source_photos()``; kept when already built."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"photo_{i:05d}.jpg" for i in range(n)]
    if all(p.is_file() for p in paths):
        return paths
    rng = np.random.default_rng(seed)
    sources = source_photos()
    for i, p in enumerate(paths):
        src = sources[i % len(sources)]
        h, w = src.shape[:2]
        ch, cw = int(h * rng.uniform(0.4, 1.0)), int(w * rng.uniform(0.4, 1.0))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        im = Image.fromarray(src[y : y + ch, x : x + cw])
        if rng.random() < 0.5:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        scale = LONG_SIDE / max(im.size)
        im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.BILINEAR)
        im.save(p, quality=90)
    return paths


def save_weights(model: str, path: Path) -> None:
    """One random init of timm's ``model`` (our model of the same name loads its keys)."""
    if path.is_file():
        return
    import timm
    import torch

    torch.manual_seed(0)
    torch.save(timm.create_model(model, pretrained=False).state_dict(), path)


def commands(args: argparse.Namespace, photos: Path, weights: Path) -> dict[str, list[str]]:
    work = Path(args.work)
    ours_bin = shutil.which("inceptionnet") or str(Path(sys.executable).parent / "inceptionnet")
    ours = [ours_bin, "predict", "--model", args.model, "--weights", str(weights), str(photos),
            "-o", str(work / "preds.csv"), "--overwrite", "--quiet"]  # fmt: skip
    timm = [sys.executable, args.timm_inference, str(photos), "--model", args.model, "--checkpoint",
            str(weights), "--device", "cpu", "-b", "32", "-j", str(args.workers), "--topk", "5",
            "--results-dir", str(work / "timm"), "--no-console-results", "--log-freq", "1000"]  # fmt: skip
    out = {"inceptionnet": ours, "timm_fp32": timm}
    out["timm_bf16"] = [*timm, "--amp", "--amp-dtype", "bfloat16", "--channels-last"]
    return out


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "INCEPTIONNET_NO_PROGRESS": "1"}
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {shlex.join(cmd)}\n{proc.stderr[-3000:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timm-inference", required=True, help="timm's inference.py (its repository's script)")
    ap.add_argument("--n", type=int, default=2048, help="photos (default 2048; the issue also asks 256)")
    ap.add_argument("--model", default="inception_v3")
    ap.add_argument("--work", default="/tmp/e2e_folder_bench", help="where photos, weights and outputs go")
    ap.add_argument("--workers", type=int, default=2, help="timm's -j (default 2)")
    ap.add_argument(
        "--print-only", action="store_true", help="build the inputs, print the commands, time nothing"
    )
    args = ap.parse_args()
    work = Path(args.work)
    photos = work / f"photos_{args.n}"
    build_photos(photos, args.n)
    weights = work / f"{args.model}_random.pth"
    save_weights(args.model, weights)
    cmds = commands(args, photos, weights)
    for name, cmd in cmds.items():
        print(f"# {name}\n{shlex.join(cmd)}", file=sys.stderr)
    if args.print_only:
        return
    walls = {name: timed(cmd) for name, cmd in cmds.items()}
    best_timm = min(walls["timm_fp32"], walls["timm_bf16"])
    print(json.dumps({
        "photos": args.n, "model": args.model, "cpu": os.cpu_count(),
        "wall_s": {k: round(v, 2) for k, v in walls.items()},
        "img_per_s": {k: round(args.n / v, 1) for k, v in walls.items()},
        "speedup_vs_best_timm": round(best_timm / walls["inceptionnet"], 2),
        "commands": {k: shlex.join(v) for k, v in cmds.items()},
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
