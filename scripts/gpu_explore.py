"""Screen Fashion-MNIST recipes on a GPU before spending 2 CPU hours on one (docs/RESULTS.md).

    python scripts/gpu_explore.py --data DIR --out results.jsonl NAME:key=value,key=value ...
    e.g.  base:  re0:random_erase=0  long:epochs=30   (defaults: recipes/fashion_mnist.yaml)

Each configuration runs in its own process (the GPU is launch-bound for a model this small, so
several run side by side). It follows `inceptionnet train --recipe fashion_mnist` - same model,
same 55,000/5,000 train/val split, SGD nesterov, per-iteration warmup + cosine/onecycle from
`engine.lr_factor`, label smoothing, EMA via `engine.ema_multi_avg_fn`, bf16 autocast - but does
the augmentation (zero-pad random crop, horizontal flip, RandomErasing) with `data.BatchAugment` on
the GPU (the trainer's `--batch-augment`, drawn from the GPU's RNG), so numbers are close to, not
identical with, the CPU run. (docs/results/gpu_explore_{1,2}.jsonl came from an earlier copy of these
ops whose RandomErasing clamped an oversized rectangle instead of redrawing it.)
One JSON line per epoch: val top-1 (and EMA val), test top-1 (for the record; choose on val).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel

from inceptionnet import create_model
from inceptionnet.data import INFO, BatchAugment, InputConfig, load_arrays
from inceptionnet.models import parse_model_kwargs
from inceptionnet.train import parse_args
from inceptionnet.train.engine import ema_multi_avg_fn, lr_factor


def recipe_defaults(name: str = "fashion_mnist") -> dict[str, Any]:
    """The screening defaults are the CPU recipe's values as the trainer resolves them (its flag
    defaults under the recipe), so the two cannot drift apart."""
    a = parse_args(["--recipe", name])
    kw = parse_model_kwargs(a.model_kwargs)
    return dict(
        train_limit=0, width=float(kw["width"]), stem_stride=int(kw["stem_stride"]), epochs=a.epochs,
        batch=a.batch_size, lr=a.lr, wd=a.weight_decay, ls=a.label_smoothing,
        warmup=float(a.lr_warmup_epochs), sched=a.lr_scheduler, pad=a.random_crop_pad,
        hflip=int(a.hflip), random_erase=float(a.random_erase),
        ema=a.model_ema_decay if a.model_ema else 0.0, seed=a.seed, val_split=a.val_split,
        mixup=a.mixup_alpha, dropout=-1.0,
    )  # fmt: skip


DEFAULTS = recipe_defaults()


def parse(spec: str) -> tuple[str, dict[str, Any]]:
    name, _, rest = spec.partition(":")
    cfg = dict(DEFAULTS)
    for kv in filter(None, rest.split(",")):
        k, v = kv.split("=")
        if k not in cfg:
            raise SystemExit(f"error: unknown key {k!r} in {spec!r}; known: {', '.join(cfg)}")
        cfg[k] = type(cfg[k])(v) if not isinstance(cfg[k], str) else v
    return name, cfg


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, mean: float, std: float) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(y), 1000):
        xb = ((x[i : i + 1000].float() / 255 - mean) / std)[:, None].contiguous(
            memory_format=torch.channels_last
        )
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            correct += int((model(xb).argmax(1) == y[i : i + 1000]).sum())
    return correct / len(y)


def run(name: str, cfg: dict[str, Any], data: str, out: str, device: str) -> None:
    torch.manual_seed(cfg["seed"])
    torch.set_num_threads(1)
    dev = torch.device(device)
    info = INFO["fashion_mnist"]
    mean, std = info.mean[0], info.std[0]
    xtr, ytr, _ = load_arrays("fashion_mnist", "train", data, cfg["val_split"])
    xva, yva, _ = load_arrays("fashion_mnist", "val", data, cfg["val_split"])
    xte, yte, _ = load_arrays("fashion_mnist", "test", data, 0)
    if cfg["train_limit"]:  # smoke tests
        xtr, ytr, xva, yva, xte, yte = (
            xtr[: cfg["train_limit"]],
            ytr[: cfg["train_limit"]],
            xva[:500],
            yva[:500],
            xte[:500],
            yte[:500],
        )
    xtr, ytr, xva, yva, xte, yte = (t.to(dev) for t in (xtr, ytr, xva, yva, xte, yte))
    aug = BatchAugment(InputConfig(28, 1, (mean,), (std,)), 1, hflip=bool(cfg["hflip"]),
                       random_crop_pad=cfg["pad"], random_erase=cfg["random_erase"])  # fmt: skip
    kw: dict[str, Any] = dict(width=cfg["width"], stem_stride=cfg["stem_stride"])
    if cfg["dropout"] >= 0:
        kw["dropout"] = cfg["dropout"]
    model = create_model("googlenet_small", num_classes=10, in_chans=1, **kw).to(dev)
    model = model.to(memory_format=torch.channels_last)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.SGD(
        model.parameters(), lr=cfg["lr"], momentum=0.9, nesterov=True, weight_decay=cfg["wd"]
    )
    ema = (
        AveragedModel(model, multi_avg_fn=ema_multi_avg_fn(cfg["ema"]), use_buffers=True)
        if cfg["ema"]
        else None
    )
    bs = cfg["batch"]
    ipe = len(ytr) // bs  # drop_last, as the trainer
    total = ipe * cfg["epochs"]
    it = 0
    t0 = time.time()
    for epoch in range(cfg["epochs"]):
        model.train()
        perm = torch.randperm(len(ytr), device=dev)
        loss_sum = torch.zeros((), device=dev)
        for b in range(ipe):
            idx = perm[b * bs : (b + 1) * bs]
            xb = aug.augment(xtr[idx][:, None]).contiguous(memory_format=torch.channels_last)
            yb = ytr[idx]
            f = lr_factor(it, schedule=cfg["sched"], total_iters=total, iters_per_epoch=ipe,
                          warmup_iters=int(cfg["warmup"] * ipe))  # fmt: skip
            for g in opt.param_groups:
                g["lr"] = cfg["lr"] * f
            with torch.autocast(dev.type, dtype=torch.bfloat16):
                if cfg["mixup"] > 0:
                    lam = float(torch.distributions.Beta(cfg["mixup"], cfg["mixup"]).sample())
                    j = torch.randperm(bs, device=dev)
                    logits = model(lam * xb + (1 - lam) * xb[j])
                    loss = lam * F.cross_entropy(logits, yb, label_smoothing=cfg["ls"]) + (
                        1 - lam
                    ) * F.cross_entropy(logits, yb[j], label_smoothing=cfg["ls"])
                else:
                    loss = F.cross_entropy(model(xb), yb, label_smoothing=cfg["ls"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update_parameters(model)
            loss_sum += loss.detach()
            it += 1
        rec = {
            "name": name, "epoch": epoch + 1, "loss": float(loss_sum) / ipe, "params": params,
            "val": accuracy(model, xva, yva, mean, std), "test": accuracy(model, xte, yte, mean, std),
            "seconds": round(time.time() - t0, 1), **{f"cfg_{k}": v for k, v in cfg.items()},
        }  # fmt: skip
        if ema is not None:
            rec["ema_val"] = accuracy(ema.module, xva, yva, mean, std)
            rec["ema_test"] = accuracy(ema.module, xte, yte, mean, std)
        with open(out, "a") as fh:
            fh.write(json.dumps(rec) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="folder with the four Fashion-MNIST idx(.gz) files")
    ap.add_argument("--out", required=True, help="JSON lines file (appended)")
    ap.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke test")
    ap.add_argument("--parallel", type=int, default=8, help="configurations running at once")
    ap.add_argument("specs", nargs="+", help="NAME:key=value,... (keys: " + ", ".join(DEFAULTS) + ")")
    a = ap.parse_args()
    jobs = [parse(s) for s in a.specs]
    torch.set_num_threads(1)
    ctx = mp.get_context("spawn")
    running: list[Any] = []
    for name, cfg in jobs:
        while len(running) >= a.parallel:
            time.sleep(2)
            running = [p for p in running if p.is_alive()]
        p = ctx.Process(target=run, args=(name, cfg, a.data, a.out, a.device))
        p.start()
        running.append(p)
        print(f"started {name}: {cfg}", flush=True)
    for p in running:
        p.join()
    print("done", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
