"""FID feature extraction speed, ours (eager, fast) vs pytorch-fid, and how far apart the three resize
modes put the same folders (docs/BENCHMARKS.md "FID feature extraction", docs/METRICS.md).

    flock /tmp/cpu.lock python scripts/fid_speed.py speed  [--images 200]   # images/s, 2048-d
    flock -s /tmp/cpu.lock python scripts/fid_speed.py resize [--images 300]  # FID per --resize mode (no timing)

Fashion-MNIST test images written as PNGs; the FID network with random weights (PyTorch's default
init, BN statistics set from one batch of images, as tests/metrics/test_metrics.py does: without that the
signal, and the features, vanish into denormals, which would time the denormal slow path instead of
the network). ``speed``: one timed pass per implementation over the same folder, the model built
before the clock starts; pytorch-fid's ``get_activations`` (its own network, resize and loader,
``num_workers=0``). ``resize``: FID --dims 192 of the test images [0, N) vs [N, 2N) (one
distribution) and vs [N, 2N) noised (sigma 32), per mode; and across modes (statistics of one
mode against another's: what comparing with a reference made by another tool does).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from inceptionnet import create_model
from inceptionnet import data as D
from inceptionnet.deploy.probe import cpu_info
from inceptionnet.metrics import scores as M


def calibrated_weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    net = create_model("fid_inception_v3", num_classes=1008)
    imgs, _ = D.load_fashion_mnist("test")
    from inceptionnet.metrics.resize import preprocess

    x = torch.stack([preprocess(imgs[i][None].expand(3, -1, -1), "pytorch-fid") for i in range(8)])
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative: the running statistics become this batch's
    with torch.no_grad():
        net.train()(x)
    return net.eval().state_dict()


def write_pngs(folder: Path, start: int, n: int, noise: float = 0.0) -> str:
    from PIL import Image

    imgs, _ = D.load_fashion_mnist("test")
    folder.mkdir()
    rng = np.random.RandomState(start)
    for i in range(n):
        img = imgs[start + i].numpy().astype(np.float64)
        img = np.clip(img + rng.randn(*img.shape) * noise, 0, 255) if noise else img
        Image.fromarray(img.astype(np.uint8)).save(folder / f"{i:04d}.png")
    return str(folder)


def speed(args: argparse.Namespace, sd: dict[str, torch.Tensor], root: Path) -> dict[str, object]:
    from pytorch_fid import fid_score, inception

    folder = write_pngs(root / "speed", 0, args.images)
    warm = write_pngs(root / "warm", args.images, args.batch_size)
    files = sorted(Path(folder).iterdir())
    out: dict[str, object] = {}
    model = create_model("fid_inception_v3", num_classes=1008)
    model.load_state_dict(sd)
    for backend in ("eager", "fast"):
        net = M.fid_network(model.eval(), backend)
        M.folder_features(warm, net, batch_size=args.batch_size, show_progress=False, dims=2048)
        t = time.perf_counter()
        M.folder_features(folder, net, batch_size=args.batch_size, show_progress=False, dims=2048)
        out[f"ours_{backend}_img_s"] = args.images / (time.perf_counter() - t)
    with mock.patch.object(inception, "load_state_dict_from_url", lambda *a, **k: sd):
        ref = inception.InceptionV3([3]).eval()
    fid_score.get_activations(sorted(Path(warm).iterdir()), ref, args.batch_size, 2048, "cpu", 0)
    t = time.perf_counter()
    fid_score.get_activations(files, ref, args.batch_size, 2048, "cpu", 0)
    out["pytorch_fid_img_s"] = args.images / (time.perf_counter() - t)
    return out


def resize_modes(args: argparse.Namespace, sd: dict[str, torch.Tensor], root: Path) -> dict[str, object]:
    a = write_pngs(root / "a", 0, args.images)
    b = write_pngs(root / "b", args.images, args.images)
    c = write_pngs(root / "c", args.images, args.images, noise=32)
    model = create_model("fid_inception_v3", num_classes=1008)
    model.load_state_dict(sd)
    net = M.fid_network(model.eval(), "fast")
    out: dict[str, object] = {}
    modes = ("pytorch-fid", "torch-fidelity", "clean")
    stats: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for mode in modes:
        stats[mode] = {}
        for name, folder in (("a", a), ("b", b), ("c", c)):
            f = M.folder_features(folder, net, dims=192, resize=mode, show_progress=False)
            stats[mode][name] = M.stats_of(f.features)
        out[mode] = {
            "fid_same_distribution": M.frechet_distance(*stats[mode]["a"], *stats[mode]["b"]),
            "fid_vs_noised": M.frechet_distance(*stats[mode]["a"], *stats[mode]["c"]),
        }
    # the same folder a, statistics of two modes: what mixing tools' statistics costs
    for i, m1 in enumerate(modes):
        for m2 in modes[i + 1 :]:
            out[f"a_{m1}_vs_a_{m2}"] = M.frechet_distance(*stats[m1]["a"], *stats[m2]["a"])
            out[f"a_{m1}_vs_b_{m2}"] = M.frechet_distance(*stats[m1]["a"], *stats[m2]["b"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("speed", "resize"))
    ap.add_argument("--images", type=int, default=None, help="images per folder (200 speed / 300 resize)")
    ap.add_argument("--batch-size", type=int, default=50)
    args = ap.parse_args()
    args.images = args.images or (200 if args.what == "speed" else 300)
    cpu = cpu_info()
    print(f"CPU: {cpu['model']}; flags {' '.join(cpu['flags'])}; torch threads {torch.get_num_threads()}")
    sd = calibrated_weights()
    with tempfile.TemporaryDirectory() as tmp:
        result = (speed if args.what == "speed" else resize_modes)(args, sd, Path(tmp))
    print(
        json.dumps(
            {"what": args.what, "images": args.images, "batch_size": args.batch_size, **result}, indent=1
        )
    )


if __name__ == "__main__":
    main()
