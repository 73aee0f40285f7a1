"""Load test of ``inceptionnet serve`` on loopback (docs/SERVING.md): dynamic batching vs --max-batch 1,
--workers 1 vs 2, and LitServe serving the same model.

    flock /tmp/cpu.lock .venv/bin/python scripts/loadtest.py --part throughput
    flock /tmp/cpu.lock .venv/bin/python scripts/loadtest.py --part rss
    flock /tmp/cpu.lock .venv/bin/python scripts/loadtest.py --part peers

``throughput``: for googlenet at 224 (random weights, saved to a temporary file so the server loads
them as any weights file) and the shipped Fashion-MNIST model, one server per setting (dynamic
batching with --max-batch 32 --max-wait-ms 5, then --max-batch 1), each loaded by --concurrency
async httpx clients for at most --requests requests or --seconds seconds: throughput, p50 / p99
latency, errors. ``rss``: the Fashion-MNIST server's resident memory (VmRSS) after a warm-up and
during --rss-requests more requests, right after each slice of load and at rest. ``peers``: for both
models, ``serve --workers 1``, ``serve --workers 2`` (both --max-batch 32 --max-wait-ms 5, the fast
path's backend --ours-backend: default ``auto``, serve's own default) and LitServe
(scripts/litserve_peer.py: the same decode and weights, --peer-backend: default ``eager``, PyTorch;
LitServe's batching with max_batch_size 32, batch_timeout 0.005 s), each sent the same JSON body
``{"image": "<base64>"}`` by --concurrency clients. Each row names the backend its server ran
(ours: ``/v1/models``; ``--peer-backend auto`` lets LitServe's engine pick the fastest too).

Bounded in count and time, loopback only; client and server share the machine's cores (the
numbers are for comparing settings on one machine, not a capacity plan).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

BOUNDARY = "inceptionnet-loadtest"


def cpu_line() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = re.search(r"Model name:\s*(.+)", out)
    flags = re.search(r"Flags:\s*(.+)", out)
    keep = sorted(f for f in (flags.group(1).split() if flags else []) if re.match(r"avx512|amx|.*vnni", f))
    return f"CPU: {model.group(1).strip() if model else '?'}, {os.cpu_count()} cores; flags: {' '.join(keep) or 'none'}"


def multipart(name: str, data: bytes) -> bytes:
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
    return (
        head.encode()
        + b"Content-Type: application/octet-stream\r\n\r\n"
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def test_images() -> dict[str, bytes]:
    """A Fashion-MNIST test image (PNG) and a 224x224 photo-like JPEG (smooth noise)."""
    from PIL import Image

    from inceptionnet import data as D

    x, _, _ = D.load_arrays("fashion_mnist", "test", None, 0)
    buf = io.BytesIO()
    Image.fromarray(x[0].reshape(28, 28).numpy()).save(buf, format="PNG")
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)
    photo = Image.fromarray(small).resize((224, 224), Image.Resampling.BICUBIC)
    jbuf = io.BytesIO()
    photo.save(jbuf, format="JPEG", quality=90)
    return {"fashion": buf.getvalue(), "googlenet": jbuf.getvalue()}


def random_googlenet(folder: Path) -> str:
    import torch
    from safetensors.torch import save_file

    from inceptionnet import create_model

    torch.manual_seed(0)
    path = folder / "googlenet-random.safetensors"
    save_file({k: v.contiguous() for k, v in create_model("googlenet").state_dict().items()}, str(path))
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s*(\d+) kB", text).group(1)) / 1024  # type: ignore[union-attr]


def ours(model_args: list[str], max_batch: int, backend: str, workers: int = 1) -> list[str]:
    return [sys.executable, "-m", "inceptionnet", "serve", *model_args, "--max-batch", str(max_batch),
            "--max-wait-ms", "5", "--backend", backend, "--log-level", "warning", "--max-queue", "1024",
            "--workers", str(workers)]  # fmt: skip


def litserve(model_args: list[str], backend: str) -> list[str]:
    peer = Path(__file__).with_name("litserve_peer.py")
    return [sys.executable, str(peer), *model_args, "--backend", backend, "--max-batch-size", "32",
            "--batch-timeout", "0.005"]  # fmt: skip


class Server:
    """``cmd --port P`` on a free loopback port, once ``ready`` answers 200 (at most 180 s)."""

    def __init__(self, cmd: list[str], log: Path, ready: str = "/readyz", wait_s: float = 180) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log.open("w")
        # a session of its own: stop() ends the server's children too (LitServe's workers outlive their parent)
        self.proc = subprocess.Popen(
            [*cmd, "--port", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited: {log.read_text()}")
            try:
                if httpx.get(self.url + ready, timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        self.stop()
        raise SystemExit(f"the server did not start within {wait_s:g} s")

    def stop(self) -> None:
        """SIGTERM to the server's process group (it drains), then SIGKILL to whatever is left."""
        os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # children that outlived the server
        self.proc.wait(10)
        self.log.close()


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


async def load(
    url: str, body: bytes, requests: int, seconds: float, concurrency: int,
    path: str = "/v1/predict", ctype: str = MULTIPART, extra: dict[str, str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """``concurrency`` clients send ``body`` to ``path`` until ``requests`` were sent or ``seconds`` passed."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    headers = {"content-type": ctype, **(extra or {})}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    t0 = time.perf_counter()
    deadline = t0 + seconds

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def worker() -> None:
            nonlocal sent, errors
            while sent < requests and time.perf_counter() < deadline:
                sent += 1
                start = time.perf_counter()
                r = await client.post(path, content=body, headers=headers)
                latencies.append(time.perf_counter() - start)
                errors += r.status_code != 200

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1000
    return {
        "requests": len(latencies), "errors": errors, "seconds": round(wall, 2),
        "req_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 1), "p99_ms": round(float(np.percentile(lat, 99)), 1),
    }  # fmt: skip


def batch_stats(url: str) -> str:
    text = httpx.get(url + "/metrics").text
    count = float(re.search(r"inceptionnet_batch_size_count (\S+)", text).group(1))  # type: ignore[union-attr]
    total = float(re.search(r"inceptionnet_batch_size_sum (\S+)", text).group(1))  # type: ignore[union-attr]
    return f"{total / count:.1f}" if count else "-"


def setups(args: argparse.Namespace, tmp: Path) -> list[tuple[str, list[str], str]]:
    """(title, model flags, image) of the models in --models."""
    out = []
    if "googlenet" in args.models:
        out.append(("googlenet (224, random weights)", ["--model", "googlenet", "--weights", random_googlenet(tmp)], "googlenet"))  # fmt: skip
    if "fashion" in args.models:
        out.append(("googlenet_small fashion_mnist (28)", ["--model", "googlenet_small", "--weights", "fashion_mnist"], "fashion"))  # fmt: skip
    return out


def protocol_bodies(image: bytes, x: np.ndarray, model: str) -> list[tuple[str, str, bytes, str, dict[str, str]]]:
    """(title, path, body, content type, extra headers) of the same image over each protocol: our
    /v1 (base64 JSON), v2 BYTES (the encoded image, base64 in JSON), v2 FP32 in JSON (the prepared
    tensor ``x`` as numbers) and v2 FP32 with Triton's binary-tensor extension (raw bytes after a
    JSON header)."""
    b64 = base64.b64encode(image).decode()
    v2 = f"/v2/models/{model}/infer"
    shape = [1, *x.shape]
    as_json = {"inputs": [{"name": "input", "datatype": "FP32", "shape": shape, "data": x.ravel().tolist()}]}
    raw = x.astype("<f4").tobytes()
    head = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": shape,
                                   "parameters": {"binary_data_size": len(raw)}}]}).encode()  # fmt: skip
    return [
        ("/v1/predict, image as base64 JSON", "/v1/predict", json.dumps({"image": b64}).encode(), "application/json", {}),
        ("v2 infer, BYTES image (base64 in JSON)", v2,
         json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [b64]}]}).encode(),
         "application/json", {}),
        ("v2 infer, FP32 tensor in JSON", v2, json.dumps(as_json).encode(), "application/json", {}),
        ("v2 infer, FP32 tensor binary (Triton extension)", v2, head + raw, "application/octet-stream",
         {"Inference-Header-Content-Length": str(len(head))}),
    ]  # fmt: skip


def protocols(args: argparse.Namespace, images: dict[str, bytes], tmp: Path) -> list[dict[str, Any]]:
    """One server per model (``--workers 1``, --ours-backend), the same image over each protocol."""
    from inceptionnet import data as D
    from inceptionnet.checkpoint import ModelSource, open_for_inference

    rows = []
    for title, model_args, image in setups(args, tmp):
        name = model_args[1]
        p = open_for_inference(ModelSource.model(name, model_args[3]))
        icfg = p.input_config
        x = D.eval_transform(icfg, icfg.in_chans, native_size=-1)(D.decode_image(images[image], icfg.in_chans))
        server = Server(ours(model_args, 32, args.ours_backend, 1), tmp / "server.log", "/readyz", wait_s=600)
        try:
            backend = served_backend(server.url)
            for what, path, body, ctype, extra in protocol_bodies(images[image], x.numpy(), name):
                asyncio.run(load(server.url, body, 2 * args.concurrency, 30, args.concurrency, path, ctype, extra))
                r = asyncio.run(load(server.url, body, args.requests, args.seconds, args.concurrency, path, ctype, extra))
                r.update(model=title, server=f"inceptionnet serve --workers 1: {what}", backend=backend,
                         body_bytes=len(body))  # fmt: skip
                print(json.dumps(r), flush=True)
                rows.append(r)
        finally:
            server.stop()
    return rows


def peers(args: argparse.Namespace, images: dict[str, bytes], tmp: Path) -> list[dict[str, Any]]:
    """Ours with 1 and 2 workers, and LitServe, on one JSON body per model."""
    rows = []
    for title, model_args, image in setups(args, tmp):
        body = json.dumps({"image": base64.b64encode(images[image]).decode()}).encode()
        mine, peer = args.ours_backend, args.peer_backend
        servers = [("inceptionnet serve --workers 1", ours(model_args, 32, mine, 1), "/readyz", "/v1/predict"),
                   ("inceptionnet serve --workers 2", ours(model_args, 32, mine, 2), "/readyz", "/v1/predict"),
                   ("LitServe 0.2 (max_batch_size 32, batch_timeout 5 ms)", litserve(model_args, peer), "/health", "/predict")]  # fmt: skip
        for name, cmd, ready, path in servers:
            server = Server(
                cmd, tmp / "server.log", ready, wait_s=600
            )  # auto times every backend in each worker
            try:
                backend = served_backend(server.url) if path == "/v1/predict" else peer
                asyncio.run(
                    load(
                        server.url, body, 2 * args.concurrency, 30, args.concurrency, path, "application/json"
                    )
                )
                r = asyncio.run(
                    load(
                        server.url,
                        body,
                        args.requests,
                        args.seconds,
                        args.concurrency,
                        path,
                        "application/json",
                    )
                )
            finally:
                server.stop()
            r.update(model=title, server=name, backend=backend)
            print(json.dumps(r), flush=True)
            rows.append(r)
    return rows


def served_backend(url: str) -> str:
    """The backend and dtype our server runs (``auto``: the one it picked), from ``/v1/models``."""
    model = httpx.get(url + "/v1/models", timeout=10).json()["models"][0]
    return f"{model['backend']} {model['dtype']}"


def throughput(args: argparse.Namespace, images: dict[str, bytes], tmp: Path) -> list[dict[str, Any]]:
    rows = []
    for title, model_args, image in setups(args, tmp):
        for max_batch in (32, 1):
            server = Server(ours(model_args, max_batch, args.backend), tmp / "server.log")
            body = multipart("x.png" if image == "fashion" else "x.jpg", images[image])
            try:
                asyncio.run(load(server.url, body, 2 * args.concurrency, 30, args.concurrency))  # warm-up
                r = asyncio.run(load(server.url, body, args.requests, args.seconds, args.concurrency))
                r["mean_batch"] = batch_stats(server.url)
            finally:
                server.stop()
            r.update(model=title, max_batch=max_batch)
            print(json.dumps(r), flush=True)
            rows.append(r)
    return rows


def rss(args: argparse.Namespace, images: dict[str, bytes], tmp: Path) -> dict[str, Any]:
    server = Server(
        ours(["--model", "googlenet_small", "--weights", "fashion_mnist"], 32, args.backend),
        tmp / "server.log",
    )
    body = multipart("x.png", images["fashion"])
    try:
        # warm-up: the decode thread pool and allocator arenas grow to their working size
        asyncio.run(load(server.url, body, args.rss_warmup, 120, args.concurrency))

        def at_rest() -> float:
            """RSS after one lone request 1.2 s after the load: the model thread has trimmed the heap
            (serve/batching.py, at most once a second) before it answered."""
            time.sleep(1.2)
            asyncio.run(load(server.url, body, 1, 10, 1))
            return round(rss_mib(server.proc.pid), 1)

        before = at_rest()
        marks = []
        for _ in range(args.rss_marks):
            r = asyncio.run(
                load(server.url, body, args.rss_requests // args.rss_marks, 300, args.concurrency)
            )
            marks.append((r["requests"], r["errors"], round(rss_mib(server.proc.pid), 1), at_rest()))
    finally:
        server.stop()
    out = {"warmup": args.rss_warmup, "rss_before_mib": round(before, 1), "marks (requests, errors, rss_mib under load, at rest)": marks, "requests": sum(m[0] for m in marks),
           "errors": sum(m[1] for m in marks)}  # fmt: skip
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["throughput", "rss", "peers", "protocols", "all"], default="all")
    p.add_argument("--models", nargs="+", choices=["googlenet", "fashion"], default=["googlenet", "fashion"],
                   help="the models of throughput / peers (default both)")  # fmt: skip
    p.add_argument("--concurrency", type=int, default=32, help="concurrent clients (default 32)")
    p.add_argument("--requests", type=int, default=3000, help="requests per setting at most (default 3000)")
    p.add_argument("--seconds", type=float, default=25, help="seconds per setting at most (default 25)")
    p.add_argument("--rss-requests", type=int, default=10_000, help="requests between the RSS readings")
    p.add_argument("--rss-warmup", type=int, default=2000, help="requests before the first RSS reading")
    p.add_argument("--rss-marks", type=int, default=5, help="RSS readings during --rss-requests")
    p.add_argument(
        "--backend", default="eager", help="the server's --backend in throughput / rss (default eager)"
    )
    p.add_argument(
        "--ours-backend",
        default="auto",
        help="peers: our servers' --backend (default auto, serve's default: the fastest verified)",
    )
    p.add_argument("--peer-backend", default="eager",
                   help="peers: the backend LitServe's engine runs (default eager: PyTorch; auto: the fastest too)")  # fmt: skip
    args = p.parse_args()
    print(cpu_line(), flush=True)
    print(f"command: {' '.join(sys.argv)}", flush=True)
    images = test_images()
    with tempfile.TemporaryDirectory(prefix="inceptionnet-loadtest-") as d:
        tmp = Path(d)
        if args.part in ("throughput", "all"):
            rows = throughput(args, images, tmp)
            print("\n| model | max batch | requests | req/s | p50 ms | p99 ms | mean batch | errors |")
            print("|---|---|---|---|---|---|---|---|")
            for r in rows:
                print(f"| {r['model']} | {r['max_batch']} | {r['requests']} | {r['req_per_s']} | {r['p50_ms']} | "
                      f"{r['p99_ms']} | {r['mean_batch']} | {r['errors']} |")  # fmt: skip
        if args.part in ("rss", "all"):
            rss(args, images, tmp)
        if args.part in ("peers", "all"):
            rows = peers(args, images, tmp)
            print(
                f"\n| model | server | backend | requests | req/s | p50 ms | p99 ms | errors |  ({args.concurrency} clients)"
            )
            print("|---|---|---|---|---|---|---|---|")
            for r in rows:
                print(f"| {r['model']} | {r['server']} | {r['backend']} | {r['requests']} | {r['req_per_s']} | {r['p50_ms']} | "
                      f"{r['p99_ms']} | {r['errors']} |")  # fmt: skip
        if args.part in ("protocols", "all"):
            rows = protocols(args, images, tmp)
            print(f"\n| model | request | body bytes | requests | req/s | p50 ms | p99 ms | errors |  ({args.concurrency} clients)")
            print("|---|---|---|---|---|---|---|---|")
            for r in rows:
                print(f"| {r['model']} | {r['server'].split(': ', 1)[1]} | {r['body_bytes']} | {r['requests']} | "
                      f"{r['req_per_s']} | {r['p50_ms']} | {r['p99_ms']} | {r['errors']} |")  # fmt: skip


if __name__ == "__main__":
    main()
