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

   - ours: ``inceptionnet predict --model MODEL --weights w.pth DIR -o preds.csv``
     (default: the fast path, ``--backend auto --dtype auto``, since N > 64);
   - timm fp32: ``python inference.py DIR --model MODEL --checkpoint w.pth --device cpu -b 32 -j 2``;
   - timm bf16: the same with ``--amp --amp-dtype bfloat16 --channels-last``;
   - googlenet (timm has none): the plain torchvision-style loop of ``plain_loop`` instead.
4. The ideal (``ideal``): decode alone + inference alone (the backend ``predict`` picked), serially,
   and the share of it ours reaches end to end.

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def random_crop(src: np.ndarray, rng: np.random.Generator, smallest: float) -> Any:
    """A PIL image of a random crop of ``src`` keeping ``smallest`` to all of each side."""
    from PIL import Image

    h, w = src.shape[:2]
    ch, cw = int(h * rng.uniform(smallest, 1.0)), int(w * rng.uniform(smallest, 1.0))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return Image.fromarray(src[y : y + ch, x : x + cw])


def long_side_photo(src: np.ndarray, rng: np.random.Generator) -> Any:
    """The issue's photo: a random crop of 40-100 % of each side, mirrored half the time, long side
    ``LONG_SIDE``."""
    from PIL import Image

    im = random_crop(src, rng, 0.4)
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    scale = LONG_SIDE / max(im.size)
    return im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.BILINEAR)


def build_photos(
    folder: Path, n: int, seed: int = 0, make: Callable[[np.ndarray, np.random.Generator], Any] = long_side_photo,
    prefix: str = "photo",
) -> list[Path]:  # fmt: skip
    """``n`` JPEGs (quality 90) made by ``make`` from ``source_photos()``; kept when already built."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{prefix}_{i:05d}.jpg" for i in range(n)]
    if all(p.is_file() for p in paths):
        return paths
    rng = np.random.default_rng(seed)
    sources = source_photos()
    for i, p in enumerate(paths):
        make(sources[i % len(sources)], rng).save(p, quality=90)
    return paths


def save_weights(model: str, path: Path) -> None:
    """One random init of timm's ``model`` (our model of the same name loads its keys); googlenet,
    which timm lacks: torchvision's (the plain loop's model; ours loads torchvision's keys)."""
    if path.is_file():
        return
    import torch

    torch.manual_seed(0)
    if model == "googlenet":
        import torchvision

        net = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)
    else:
        import timm

        net = timm.create_model(model, pretrained=False)
    torch.save(net.state_dict(), path)


def plain_loop(photos: Path, weights: Path, out: Path, workers: int) -> None:
    """The baseline where timm has no model (googlenet): the torchvision-style loop a user writes.
    torchvision's googlenet, its ImageNet eval transform (resize 256, centre crop 224), a DataLoader
    with ``workers`` processes, batch 32, fp32 eager, top-5 to a CSV."""
    import csv

    import torch
    import torchvision
    from PIL import Image
    from torchvision import transforms as T

    files = sorted(p for p in photos.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])  # fmt: skip

    class Files(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(files)

        def __getitem__(self, i: int) -> torch.Tensor:
            return tf(Image.open(files[i]).convert("RGB"))

    net = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)
    net.load_state_dict(torch.load(weights, weights_only=True))
    net.eval()
    loader = torch.utils.data.DataLoader(Files(), batch_size=32, num_workers=workers)
    with out.open("w", newline="") as f, torch.inference_mode():
        w = csv.writer(f)
        i = 0
        for x in loader:
            prob, idx = net(x).softmax(1).topk(5)
            for p, k in zip(prob.tolist(), idx.tolist(), strict=True):
                w.writerow([str(files[i]), *k, *p])
                i += 1


def ideal(photos: Path, model: str, weights: Path, picked: str) -> dict[str, float]:
    """The issue's ideal: decode alone (our reader and eval transform, one process, every photo) and
    inference alone (``picked``, the "backend dtype" ``predict`` printed, at batch 32, built as the
    fast path builds it), run serially: 1 / (1 / decode + 1 / infer) img/s."""
    import torch

    from inceptionnet import data as D
    from inceptionnet import pipeline as P
    from inceptionnet.checkpoint import ModelSource, open_model
    from inceptionnet.deploy.fast import optimize_for_inference

    paths = sorted(str(p) for p in photos.glob("*.jpg"))
    net, cfg, _, _ = open_model(ModelSource.model(model, weights))
    files = P.ImageFiles(
        list(enumerate(paths)), cfg.in_chans, D.eval_transform(cfg, cfg.in_chans, native_size=-1)
    )
    start = time.perf_counter()
    xs = [files[i].x for i in range(len(files))]
    decode = len(files) / (time.perf_counter() - start)
    batch = torch.stack(xs[:32])  # type: ignore[arg-type]
    backend, dtype = picked.split()
    dtype = {"qint8": "int8", "float32": "fp32", "bfloat16": "bf16"}[dtype]
    calib = torch.stack(xs[:: max(1, len(xs) // 64)][:64]) if dtype == "int8" else None  # type: ignore[arg-type]
    fast = optimize_for_inference(net, batch, backend=backend, dtype=dtype, calibration=calib)
    fast(batch)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        fast(batch)
        times.append(time.perf_counter() - start)
    infer = len(batch) / sorted(times)[2]
    both = 1 / (1 / decode + 1 / infer)
    return {"decode_img_per_s": round(decode, 1), "infer_img_per_s": round(infer, 1),
            "ideal_img_per_s": round(both, 1)}  # fmt: skip


def commands(args: argparse.Namespace, photos: Path, weights: Path) -> dict[str, list[str]]:
    work = Path(args.work)
    ours_bin = shutil.which("inceptionnet") or str(Path(sys.executable).parent / "inceptionnet")
    ours = [ours_bin, "predict", "--model", args.model, "--weights", str(weights), str(photos),
            "-o", str(work / "preds.csv"), "--overwrite"]  # fmt: skip
    if args.model == "googlenet":  # timm has no googlenet: the plain torchvision-style loop
        plain = [sys.executable, __file__, "--plain-loop", str(photos), str(weights), str(work / "plain.csv"),
                 "--workers", str(args.workers), "--timm-inference", "-"]  # fmt: skip
        return {"inceptionnet": ours, "plain_loop": plain}
    timm = [sys.executable, args.timm_inference, str(photos), "--model", args.model, "--checkpoint",
            str(weights), "--device", "cpu", "-b", "32", "-j", str(args.workers), "--topk", "5",
            "--results-dir", str(work / "timm"), "--no-console-results", "--log-freq", "1000"]  # fmt: skip
    out = {"inceptionnet": ours}
    if "fp32" in args.timm:
        out["timm_fp32"] = timm
    if "bf16" in args.timm:
        out["timm_bf16"] = [*timm, "--amp", "--amp-dtype", "bfloat16", "--channels-last"]
    return out


def timed(cmd: list[str]) -> tuple[float, str]:
    """(wall seconds from start to exit, stderr) of ``cmd`` in a fresh process."""
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "INCEPTIONNET_NO_PROGRESS": "1"}
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {shlex.join(cmd)}\n{proc.stderr[-3000:]}")
    return wall, proc.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timm-inference", required=True, help="timm's inference.py (its repository's script)")
    ap.add_argument("--n", type=int, default=2048, help="photos (default 2048; the issue also asks 256)")
    ap.add_argument(
        "--model", default="inception_v3", help="inception_v3 (vs timm) or googlenet (vs the plain loop)"
    )
    ap.add_argument("--work", default="/tmp/e2e_folder_bench", help="where photos, weights and outputs go")
    ap.add_argument("--workers", type=int, default=2, help="timm's / the plain loop's -j (default 2)")
    ap.add_argument(
        "--timm",
        nargs="+",
        default=["fp32", "bf16"],
        choices=["fp32", "bf16"],
        help="timm configurations to run (bf16 is emulated, and slow, without native bf16)",
    )
    ap.add_argument("--no-ideal", action="store_true", help="skip measuring decode alone and inference alone")
    ap.add_argument("--plain-loop", nargs=3, metavar=("PHOTOS", "WEIGHTS", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument(
        "--print-only", action="store_true", help="build the inputs, print the commands, time nothing"
    )
    args = ap.parse_args()
    if args.plain_loop:
        plain_loop(Path(args.plain_loop[0]), Path(args.plain_loop[1]), Path(args.plain_loop[2]), args.workers)
        return
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
    runs = {name: timed(cmd) for name, cmd in cmds.items()}
    walls = {k: w for k, (w, _) in runs.items()}
    picked = next((line.split("fast path: ", 1)[1].split(",")[0] for line in runs["inceptionnet"][1].splitlines()
                   if line.startswith("fast path: ")), None)  # fmt: skip
    peers = [k for k in walls if k != "inceptionnet"]
    best_peer = min(walls[k] for k in peers)
    result = {
        "photos": args.n, "model": args.model, "cpu": os.cpu_count(), "fast_path": picked,
        "wall_s": {k: round(v, 2) for k, v in walls.items()},
        "img_per_s": {k: round(args.n / v, 1) for k, v in walls.items()},
        "speedup_vs_best_peer": round(best_peer / walls["inceptionnet"], 2),
        "commands": {k: shlex.join(v) for k, v in cmds.items()},
    }  # fmt: skip
    summary = runs["inceptionnet"][1].strip().splitlines()[-1]
    result["ours_summary"] = summary
    if picked and not args.no_ideal:
        result["ideal"] = ideal(photos, args.model, weights, picked)
        result["ideal"]["share"] = round(
            args.n / walls["inceptionnet"] / result["ideal"]["ideal_img_per_s"], 3
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
