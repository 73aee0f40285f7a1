"""FID feature extraction speed, ours (eager, fast) vs pytorch-fid, how far apart the three resize
modes put the same folders, and how FID moves with batch size and backend (docs/BENCHMARKS.md "FID
feature extraction", docs/METRICS.md "Measured").

    flock /tmp/cpu.lock python scripts/fid_speed.py speed  [--images 200]   # images/s, 2048-d
    flock -s /tmp/cpu.lock python scripts/fid_speed.py resize [--images 300]  # per --resize mode (no timing)
    python scripts/fid_speed.py resize batch --cache /tmp/fid_cache         # both, features cached

Fashion-MNIST test images written as PNGs; the FID network with random weights (PyTorch's default
init, BN statistics set from one batch of images, as tests/metrics/test_metrics.py does: without that the
signal, and the features, vanish into denormals, which would time the denormal slow path instead of
the network). ``speed``: one timed pass per implementation over the same folder, the model built
before the clock starts; pytorch-fid's ``get_activations`` (its own network, resize and loader,
``num_workers=0``). ``resize``: FID --dims 192 of the test images [0, N) vs [N, 2N) (one
distribution) and vs [N, 2N) noised (sigma 32), per mode; and across modes (statistics of one
mode against another's: what comparing with a reference made by another tool does); precision /
recall (k 3) and density / coverage (k 5) of B and of C against A from the same features, per mode.
``batch``: FID(A, B) --dims 192, pytorch-fid resize, eager at batch sizes 1, 8, 50, the fast path
(``fid --backend fast``) at 1, 8, 50, and at batch 50 the deploy fast path's onnxruntime and openvino
fp32 engines (``optimize_for_inference`` of a module computing the 192-d taps; not a ``fid``
``--backend`` choice); each against eager batch 50. ``--cache DIR`` keeps each pass's features
(keyed by the weights' hash, folder, mode, backend, batch size, dims), so a stopped run resumes.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from inceptionnet import create_model
from inceptionnet import data as D
from inceptionnet.deploy.probe import cpu_info
from inceptionnet.metrics import prdc
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


def weights_tag(sd: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name, t in sorted(sd.items()):
        if t.is_floating_point():
            h.update(name.encode() + t.contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def cached(cache: Path | None, key: str, make: Callable[[], np.ndarray]) -> np.ndarray:
    """``make()``, or the array saved under ``key`` in ``cache`` by an earlier run."""
    if cache is None:
        return make()
    path = cache / f"{key}.npy"
    if path.exists():
        return np.load(path, allow_pickle=False)
    cache.mkdir(parents=True, exist_ok=True)
    f = make()
    np.save(path.with_suffix(".tmp.npy"), f)
    path.with_suffix(".tmp.npy").replace(path)
    return f


def folders(args: argparse.Namespace, root: Path) -> dict[str, str]:
    """A = test images [0, N), B = [N, 2N), C = B noised with sigma 32."""
    n = args.images
    return {
        "a": write_pngs(root / "a", 0, n),
        "b": write_pngs(root / "b", n, n),
        "c": write_pngs(root / "c", n, n, noise=32),
    }


def features(
    args: argparse.Namespace, net: Callable[[], M.FIDNetwork], folder: str, name: str, resize: str,
    batch: int, tag: str,
) -> np.ndarray:  # fmt: skip
    """The features of ``folder`` by ``net()`` (built only when they are not in ``--cache``)."""
    key = f"{args.weights_tag}_{name}{args.images}_{resize}_{tag}_b{batch}_d{args.dims}"
    return cached(
        args.cache,
        key,
        lambda: (
            M.folder_features(
                folder, net(), dims=args.dims, batch_size=batch, resize=resize, show_progress=False, workers=0
            ).features
        ),
    )


def fidelity(real: np.ndarray, fake: np.ndarray) -> dict[str, float]:
    p, r = prdc.precision_recall(real, fake, k=3)
    d, c = prdc.density_coverage(real, fake, k=5)
    return {"precision": p, "recall": r, "density": d, "coverage": c}


def resize_modes(args: argparse.Namespace, sd: dict[str, torch.Tensor], root: Path) -> dict[str, object]:
    dirs = folders(args, root)
    model = create_model("fid_inception_v3", num_classes=1008)
    model.load_state_dict(sd)
    net = functools.cache(lambda: M.fid_network(model.eval(), "fast"))
    out: dict[str, object] = {}
    modes = ("pytorch-fid", "torch-fidelity", "clean")
    stats: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for mode in modes:
        f = {k: features(args, net, d, k, mode, 50, "fast") for k, d in dirs.items()}
        stats[mode] = {k: M.stats_of(v) for k, v in f.items()}
        out[mode] = {
            "fid_same_distribution": M.frechet_distance(*stats[mode]["a"], *stats[mode]["b"]),
            "fid_vs_noised": M.frechet_distance(*stats[mode]["a"], *stats[mode]["c"]),
            "prdc_same_distribution": fidelity(f["a"], f["b"]),
            "prdc_vs_noised": fidelity(f["a"], f["c"]),
        }
    # the same folder a, statistics of two modes: what mixing tools' statistics costs
    for i, m1 in enumerate(modes):
        for m2 in modes[i + 1 :]:
            out[f"a_{m1}_vs_a_{m2}"] = M.frechet_distance(*stats[m1]["a"], *stats[m2]["a"])
            out[f"a_{m1}_vs_b_{m2}"] = M.frechet_distance(*stats[m1]["a"], *stats[m2]["b"])
    return out


STEM = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1")  # M._taps' order, to 64 dims
TAPS = {64: STEM, 192: (*STEM, "Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2")}


class DeployTaps(torch.nn.Module):
    """The FID network's ``dims`` features (64 / 192) as a module of its layers, which
    ``optimize_for_inference`` takes (it rewrites blocks, so the whole network's ``_taps`` won't do)."""

    def __init__(self, model: torch.nn.Module, dims: int) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(*(getattr(model, name) for name in TAPS[dims]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).mean((2, 3))


class DeployNetwork(M.FIDNetwork):
    """An FIDNetwork whose features come from a deploy fast path engine (its own check: eager fp32)."""

    def __init__(self, model: torch.nn.Module, engine: str, dims: int, batch: int) -> None:
        from inceptionnet.deploy.fast import optimize_for_inference
        from inceptionnet.metrics.resize import preprocess

        super().__init__(model, "eager")
        imgs, _ = D.load_fashion_mnist("test")
        x = torch.stack([preprocess(imgs[i][None].expand(3, -1, -1), "pytorch-fid") for i in range(batch)])
        taps = DeployTaps(model, dims)
        with torch.no_grad():  # the same function as the FID network's taps
            assert torch.equal(taps(x[:2]), M._taps(model, x[:2], dims)[0])
        self.fast = optimize_for_inference(taps, x, backend=engine)

    def _run(self, x: torch.Tensor, dims: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.fast(x), None


def batch_backends(args: argparse.Namespace, sd: dict[str, torch.Tensor], root: Path) -> dict[str, object]:
    dirs = folders(args, root)
    model = create_model("fid_inception_v3", num_classes=1008)
    model.load_state_dict(sd)
    model.eval()
    runs = [(b, n) for b in ("eager", "fast") for n in (1, 8, 50)] + [("onnxruntime", 50), ("openvino", 50)]
    feats: dict[str, dict[str, np.ndarray]] = {}
    for backend, n in runs:

        @functools.cache
        def net(backend: str = backend, n: int = n) -> M.FIDNetwork:
            if backend in M.BACKENDS:
                return M.fid_network(model, backend)
            return DeployNetwork(model, backend, args.dims, n)

        feats[f"{backend}_b{n}"] = {
            k: features(args, net, dirs[k], k, "pytorch-fid", n, backend) for k in ("a", "b")
        }
    return compare_runs(feats)


def compare_runs(feats: dict[str, dict[str, np.ndarray]]) -> dict[str, object]:
    ref = feats["eager_b50"]
    fid0 = M.frechet_distance(*M.stats_of(ref["a"]), *M.stats_of(ref["b"]))
    out: dict[str, object] = {}
    for run, f in feats.items():
        fid = M.frechet_distance(*M.stats_of(f["a"]), *M.stats_of(f["b"]))
        scale = max(np.abs(ref[k]).max() for k in ("a", "b"))
        out[run] = {
            "fid": fid,
            "rel_diff_vs_eager_b50": abs(fid - fid0) / fid0,
            "features_max_abs_diff_over_max": max(np.abs(f[k] - ref[k]).max() for k in ("a", "b")) / scale,
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", nargs="+", choices=("speed", "resize", "batch"))
    ap.add_argument("--images", type=int, default=None, help="images per folder (200 speed / 300 others)")
    ap.add_argument("--batch-size", type=int, default=50, help="speed only")
    ap.add_argument("--dims", type=int, default=192, help="resize / batch (speed: 2048)")
    ap.add_argument("--cache", type=Path, default=None, help="keep features here (resize / batch)")
    args = ap.parse_args()
    args.images = args.images or (200 if args.what == ["speed"] else 300)
    cpu = cpu_info()
    print(f"CPU: {cpu['model']}; flags {' '.join(cpu['flags'])}; torch threads {torch.get_num_threads()}")
    sd = calibrated_weights()
    args.weights_tag = weights_tag(sd)
    parts = {"speed": speed, "resize": resize_modes, "batch": batch_backends}
    for what in args.what:
        with tempfile.TemporaryDirectory() as tmp:
            result = parts[what](args, sd, Path(tmp))
        info = {"what": what, "images": args.images, "dims": 2048 if what == "speed" else args.dims}
        info |= {"batch_size": args.batch_size} if what == "speed" else {}
        print(json.dumps({**info, **result}, indent=1), flush=True)


if __name__ == "__main__":
    main()
