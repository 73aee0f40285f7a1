"""Accuracy of each fast path on real images (docs/BENCHMARKS.md, "int8 and bf16 on real images").

    python scripts/int8_accuracy.py [--size 28] [--limit 0] [--calibration-size 256] [-o docs/bench/int8_accuracy.json]

The shipped Fashion-MNIST model (`googlenet_small`, weights `fashion_mnist`) on the Fashion-MNIST test
images (all 10,000 unless --limit), prepared as `inceptionnet eval` prepares them (`data.eval_transform`;
--size 224 upscales them, bilinear, to check the paths at the size people deploy). Reference: eager
fp32. Each fast path is built by `optimize_for_inference` with calibration images from the *train*
split ("fashion_mnist:train", --calibration-size of them), so the test images are never calibrated on.
Per path: top-1 agreement with fp32, accuracy, the change in points, the candidate `auto` chose.

    python scripts/int8_accuracy.py --finetune 2000 --size 224 --limit 1000 -o docs/bench/int8_accuracy_224.json

--finetune N: the 224-px check. The shipped model was trained at 28 px and does not classify upscaled
images (13.5 % at 224, 18.5 % at 112, on 200 test images), so the full `googlenet` (1 input channel,
10 classes, random init) is first trained briefly at --size on N upscaled train images (--epochs, bf16
autocast, channels_last, SGD with Nesterov momentum, a one-cycle schedule), then checked the same way.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from inceptionnet import create_model, optimize_for_inference
from inceptionnet import data as D
from inceptionnet.fileio import atomic_write_text, json_text

PATHS = (
    ("eager", "bf16"),
    ("openvino", "fp32"),
    ("openvino", "bf16"),
    ("openvino", "int8"),
    ("onnxruntime", "int8"),
    ("auto", "auto"),
)


def test_images(
    size: int, limit: int, model: torch.nn.Module
) -> tuple[torch.Tensor, torch.Tensor, D.InputConfig]:
    icfg = D.InputConfig.from_model(model)
    icfg.input_size = size
    x, y, _ = D.load_arrays("fashion_mnist", "test", None, 0)
    if limit:
        x, y = x[:limit], y[:limit]
    tf = D.eval_transform(icfg, 1, int(x.shape[-1]))
    return torch.stack([tf(img[None]) for img in x]), y, icfg


def finetune(size: int, n: int, epochs: int, batch: int = 32) -> torch.nn.Module:
    """googlenet trained at ``size`` px on ``n`` Fashion-MNIST train images (see the module docstring)."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = create_model("googlenet", num_classes=10, in_chans=1)
    icfg = D.InputConfig.from_model(model)
    icfg.input_size = size
    x, y, _ = D.load_arrays("fashion_mnist", "train", None, 0)
    idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))[:n]
    tf = D.eval_transform(icfg, 1, int(x.shape[-1]))
    xs, ys = torch.stack([tf(x[i][None]) for i in idx]), y[idx]
    model = model.train().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    steps = epochs * (n // batch)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-5)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=steps, pct_start=0.2)
    t0, step = time.perf_counter(), 0
    for epoch in range(epochs):
        perm = torch.randperm(n)
        for i in range(0, n - batch + 1, batch):
            b = perm[i : i + batch]
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(xs[b].contiguous(memory_format=torch.channels_last))
            loss = F.cross_entropy(out.float(), ys[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 20 == 0:
                print(f"epoch {epoch} step {step}/{steps} loss {float(loss):.3f} ({time.perf_counter() - t0:.0f} s)",
                      flush=True)  # fmt: skip
    return model.eval().to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=28, help="input size (28: native; 224: upscaled)")
    ap.add_argument("--limit", type=int, default=0, help="first N test images (0: all 10,000)")
    ap.add_argument("--calibration-size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("-o", "--output", default=None, help="also write the JSON here")
    ap.add_argument("--finetune", type=int, default=0, metavar="N", help="train googlenet on N images first")
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    if args.finetune:
        model, name = (
            finetune(args.size, args.finetune, args.epochs),
            f"googlenet, trained {args.epochs} epochs on {args.finetune} upscaled images",
        )
    else:
        model, name = (
            create_model("googlenet_small", weights="fashion_mnist").eval(),
            "googlenet_small (weights fashion_mnist)",
        )
    x, y, _ = test_images(args.size, args.limit, model)
    bs = args.batch_size

    def run(fn: object) -> torch.Tensor:
        with torch.inference_mode():
            return torch.cat([fn(x[i : i + bs]).float().argmax(1) for i in range(0, len(y), bs)])  # type: ignore[operator]

    ref = run(model)
    fp32_acc = float((ref == y).float().mean())
    rows = []
    for backend, dtype in PATHS:
        t0 = time.perf_counter()
        try:
            fast = optimize_for_inference(
                model, x[:bs], backend=backend, dtype=dtype, calibration="fashion_mnist:train",
                calibration_size=args.calibration_size,
            )  # fmt: skip
        except Exception as e:  # a path that cannot be built here is reported, not fatal
            rows.append({"backend": backend, "dtype": dtype, "error": str(e)[:300]})
            continue
        got = run(fast)
        acc = float((got == y).float().mean())
        rows.append({
            "backend": backend, "dtype": dtype, "chosen": f"{fast.backend} {str(fast.dtype).removeprefix('torch.')}",
            "top1_agreement": float((got == ref).float().mean()), "disagreements": int((got != ref).sum()),
            "accuracy": acc, "accuracy_change_points": 100 * (acc - fp32_acc),
            "calibration_agreement": fast.top1_agreement, "setup_s": time.perf_counter() - t0,
            "timings": {k: v if isinstance(v, str) else round(v * 1e3, 3) for k, v in fast.timings.items()},
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    report = {
        "model": name, "images": len(y), "input_size": args.size,
        "calibration": f"fashion_mnist:train, {args.calibration_size} images", "fp32_accuracy": fp32_acc,
        "threads": torch.get_num_threads(), "paths": rows,
    }  # fmt: skip
    text = json_text(report)
    print(text)
    if args.output:
        atomic_write_text(args.output, text + "\n")


if __name__ == "__main__":
    main()
