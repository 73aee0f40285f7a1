"""Top-1 agreement of the bf16 fast path with fp32 on real images (docs/BENCHMARKS.md).

    python scripts/bf16_agreement.py [--backend eager] [--data DIR]

The shipped Fashion-MNIST model (`googlenet_small`, weights `fashion_mnist`) on the 10,000 test
images: eager fp32 (the reference), and `optimize_for_inference(..., dtype=torch.bfloat16)`;
prints the fraction of images whose top-1 class agrees, and both accuracies.
"""

from __future__ import annotations

import argparse
import json

import torch

from inceptionnet import create_model, optimize_for_inference
from inceptionnet.data import INFO, load_arrays


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="eager", help="eager or compile")
    ap.add_argument("--data", default=None, help="Fashion-MNIST folder (default: the usual search path)")
    ap.add_argument("--batch-size", type=int, default=500)
    args = ap.parse_args()
    model = create_model("googlenet_small", weights="fashion_mnist").eval()
    info = INFO["fashion_mnist"]
    x, y, _ = load_arrays("fashion_mnist", "test", args.data, 0)
    x = x.float().div(255)
    x = x if x.dim() == 4 else x[:, None]  # N x 1 x 28 x 28
    x = (x - info.mean[0]) / info.std[0]
    fast = optimize_for_inference(model, x[: args.batch_size], backend=args.backend, dtype=torch.bfloat16)
    ref, got = [], []
    with torch.inference_mode():
        for i in range(0, len(y), args.batch_size):
            xb = x[i : i + args.batch_size]
            ref.append(model(xb).argmax(1))
            got.append(fast(xb).argmax(1))
    r, g = torch.cat(ref), torch.cat(got)
    print(json.dumps({
        "images": len(y), "backend": args.backend, "dtype": "bfloat16",
        "top1_agreement": float((r == g).float().mean()),
        "fp32_top1": float((r == y).float().mean()), "bf16_top1": float((g == y).float().mean()),
        "disagreements": int((r != g).sum()),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
