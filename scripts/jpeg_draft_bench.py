"""``--jpeg-draft`` on 12-MP photos (issue 34, docs/BENCHMARKS.md "end to end"): decoding speed with
and without libjpeg's DCT scaling, and what it changes in the model's input and top-1.

    python scripts/jpeg_draft_bench.py [--n 24] [--work /tmp/jpeg_draft]

1. Builds N 12-MP JPEGs (4000 x 3000, quality 90) from the real photos that ship with installed
   packages (scikit-learn's china.jpg / flower.jpg, matplotlib's grace_hopper.jpg): a random crop of
   each, resized up (bicubic) to 12 MP. (Upscaled pictures are smoother than camera photos; the
   decoder's work per pixel is about the same.)
2. Decodes all of them through ``pipeline.ImageFiles`` (our bounded reader + the model's eval
   transform), one process, with and without ``draft``, for inception_v3 (299) and googlenet (224):
   img/s each and the speed-up.
3. What changes: the largest and mean absolute difference of the prepared model input (normalised
   units), and the top-1 agreement of the shipped Fashion-MNIST model (googlenet_small, its own 28 px
   input) on the photos decoded both ways. Random-weight ImageNet models answer the same class for
   every photo, so they cannot measure agreement; no trained ImageNet weights are available offline.

Prints one JSON object (with the CPU model and flags).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def build(folder: Path, n: int, seed: int = 0) -> list[Path]:
    import e2e_folder_bench as E  # the same source photos
    from PIL import Image

    def mp12(src: np.ndarray, rng: np.random.Generator) -> Image.Image:
        return E.random_crop(src, rng, 0.6).resize((4000, 3000), Image.Resampling.BICUBIC)

    return E.build_photos(folder, n, seed, make=mp12, prefix="mp12")


def decode_all(
    paths: list[Path], model: str, draft: bool, weights: str | None = None
) -> tuple[float, torch.Tensor]:
    from inceptionnet import data as D
    from inceptionnet import pipeline as P
    from inceptionnet.checkpoint import ModelSource, open_for_inference

    cfg = open_for_inference(ModelSource.model(model, weights)).input_config
    files = P.ImageFiles(list(enumerate(map(str, paths))), cfg.in_chans,
                         D.eval_transform(cfg, cfg.in_chans, native_size=-1), draft=draft)  # fmt: skip
    files[0]  # warm-up: imports, PIL's plug-ins
    start = time.perf_counter()
    xs = [files[i].x for i in range(len(files))]
    rate = len(files) / (time.perf_counter() - start)
    return rate, torch.stack(xs)  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=24, help="12-MP photos (default 24)")
    ap.add_argument("--work", default="/tmp/jpeg_draft")
    args = ap.parse_args()
    from inceptionnet.deploy.probe import cpu_info

    paths = build(Path(args.work), args.n)
    out: dict[str, object] = {"photos": args.n, "size": "4000x3000", "cpu": cpu_info()}
    for model in ("inception_v3", "googlenet", "googlenet_small"):
        weights = "fashion_mnist" if model == "googlenet_small" else None
        full_rate, full = decode_all(paths, model, draft=False, weights=weights)
        draft_rate, drafted = decode_all(paths, model, draft=True, weights=weights)
        diff = (full - drafted).abs()
        row: dict[str, object] = {
            "full_img_per_s": round(full_rate, 2), "draft_img_per_s": round(draft_rate, 2),
            "speedup": round(draft_rate / full_rate, 2),
            "input_max_abs_diff": round(float(diff.max()), 3), "input_mean_abs_diff": round(float(diff.mean()), 4),
        }  # fmt: skip
        if model == "googlenet_small":  # the shipped, trained model: its top-1 both ways
            from inceptionnet.checkpoint import ModelSource, open_for_inference

            p = open_for_inference(ModelSource.model("googlenet_small", "fashion_mnist"))
            with torch.no_grad():
                a, b = p(full).argmax(1), p(drafted).argmax(1)
            row["top1_agreement_fashion_mnist_model"] = round(float((a == b).float().mean()), 4)
            row["distinct_classes"] = int(a.unique().numel())
        out[model] = row
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
