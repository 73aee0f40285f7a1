"""Load test of ``inceptionnet serve`` on loopback (docs/SERVING.md): dynamic batching vs --max-batch 1.

    flock /tmp/cpu.lock .venv/bin/python scripts/loadtest.py --part throughput
    flock /tmp/cpu.lock .venv/bin/python scripts/loadtest.py --part rss

``throughput``: for googlenet at 224 (random weights, saved to a temporary file so the server loads
them as any weights file) and the shipped Fashion-MNIST model, one server per setting (dynamic
batching with --max-batch 32 --max-wait-ms 5, then --max-batch 1), each loaded by --concurrency
async httpx clients for at most --requests requests or --seconds seconds: throughput, p50 / p99
latency, errors. ``rss``: the Fashion-MNIST server's resident memory (VmRSS) after a warm-up and
during --rss-requests more requests, right after each slice of load and at rest.

Bounded in count and time, loopback only; client and server share the machine's cores (the
numbers are for comparing settings on one machine, not a capacity plan).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
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


class Server:
    def __init__(self, model_args: list[str], max_batch: int, backend: str, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "inceptionnet", "serve", *model_args, "--port", str(self.port),
               "--max-batch", str(max_batch), "--max-wait-ms", "5", "--backend", backend, "--log-level", "warning",
               "--max-queue", "1024"]  # fmt: skip
        self.log = log.open("w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited: {log.read_text()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.3)
        raise SystemExit("the server did not start within 180 s")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)
        self.log.close()


async def load(url: str, body: bytes, requests: int, seconds: float, concurrency: int) -> dict[str, Any]:
    """``concurrency`` clients send ``body`` until ``requests`` were sent or ``seconds`` passed."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    t0 = time.perf_counter()
    deadline = t0 + seconds

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def worker() -> None:
            nonlocal sent, errors
            while sent < requests and time.perf_counter() < deadline:
                sent += 1
                start = time.perf_counter()
                r = await client.post("/v1/predict", content=body, headers=headers)
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


def throughput(args: argparse.Namespace, images: dict[str, bytes], tmp: Path) -> list[dict[str, Any]]:
    rows = []
    setups = [("googlenet (224, random weights)", ["--model", "googlenet", "--weights", random_googlenet(tmp)], "googlenet"),
              ("googlenet_small fashion_mnist (28)", ["--model", "googlenet_small", "--weights", "fashion_mnist"], "fashion")]  # fmt: skip
    for title, model_args, image in setups:
        for max_batch in (32, 1):
            server = Server(model_args, max_batch, args.backend, tmp / "server.log")
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
        ["--model", "googlenet_small", "--weights", "fashion_mnist"], 32, args.backend, tmp / "server.log"
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
    p.add_argument("--part", choices=["throughput", "rss", "all"], default="all")
    p.add_argument("--concurrency", type=int, default=32, help="concurrent clients (default 32)")
    p.add_argument("--requests", type=int, default=3000, help="requests per setting at most (default 3000)")
    p.add_argument("--seconds", type=float, default=25, help="seconds per setting at most (default 25)")
    p.add_argument("--rss-requests", type=int, default=10_000, help="requests between the RSS readings")
    p.add_argument("--rss-warmup", type=int, default=2000, help="requests before the first RSS reading")
    p.add_argument("--rss-marks", type=int, default=5, help="RSS readings during --rss-requests")
    p.add_argument("--backend", default="eager", help="the server's --backend (default eager)")
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


if __name__ == "__main__":
    main()
