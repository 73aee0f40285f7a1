"""``inceptionnet serve`` (issue 25): the API through FastAPI's TestClient on the shipped Fashion-MNIST
model, the dynamic batcher on its own, bad requests (each a clean 4xx JSON error, the server still
answering afterwards), limits (body, pixels, queue, timeout), and SIGTERM draining a real uvicorn
server in a subprocess."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from inceptionnet import data as D
from inceptionnet.cli import main as cli

pytest.importorskip("fastapi")
pytest.importorskip("captum")
from fastapi.testclient import TestClient  # noqa: E402

from inceptionnet.serve.app import ServeConfig, create_app  # noqa: E402
from inceptionnet.serve.batching import Batcher, QueueFullError  # noqa: E402
from inceptionnet.serve.engine import Engine, load_engine  # noqa: E402

N_IMAGES = 8


@pytest.fixture(scope="module")
def fmnist() -> tuple[list[bytes], list[str]]:
    """The first test images as PNG bytes, and their true classes."""
    x, y, _ = D.load_arrays("fashion_mnist", "test", None, 0)
    pngs = []
    for i in range(N_IMAGES):
        buf = io.BytesIO()
        Image.fromarray(x[i].reshape(28, 28).numpy()).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    return pngs, [D.FASHION_MNIST_CLASSES[int(c)] for c in y[:N_IMAGES]]


@pytest.fixture(scope="module")
def engine() -> Engine:
    return load_engine(model_name="googlenet_small", weights="fashion_mnist", backend="eager", max_batch=4,
                       max_pixels=1_000_000)  # fmt: skip


CFG = ServeConfig(max_batch=4, max_wait_ms=2, max_queue=16, timeout_s=20, max_body_bytes=2**20, max_files=8)


@pytest.fixture(scope="module")
def client(engine: Engine) -> Any:
    with TestClient(create_app(engine, CFG)) as c:
        yield c


def png(size: tuple[int, int], mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return buf.getvalue()


def test_predict_multipart_names_the_garments(client: Any, fmnist: tuple[list[bytes], list[str]]) -> None:
    pngs, truth = fmnist
    files = [("file", (f"img{i}.png", b, "image/png")) for i, b in enumerate(pngs)]
    r = client.post("/v1/predict?topk=3", files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "googlenet_small" and body["weights"].startswith("fashion_mnist sha256:")
    assert [res["file"] for res in body["results"]] == [f"img{i}.png" for i in range(N_IMAGES)]
    names = [res["top"][0]["label"] for res in body["results"]]
    assert sum(a == b for a, b in zip(names, truth)) >= N_IMAGES - 1, (names, truth)
    for res in body["results"]:
        probs = [t["prob"] for t in res["top"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6


def test_predict_json_base64_equals_multipart(client: Any, fmnist: tuple[list[bytes], list[str]]) -> None:
    pngs, _ = fmnist
    b64 = [base64.b64encode(b).decode() for b in pngs[:2]]
    one = client.post("/v1/predict", json={"image": "data:image/png;base64," + b64[0], "topk": 2}).json()
    both = client.post("/v1/predict", json={"images": b64, "topk": 50}).json()
    form = client.post("/v1/predict", files={"file": ("a.png", pngs[0])}).json()
    assert len(one["results"][0]["top"]) == 2 and len(both["results"]) == 2
    assert len(both["results"][1]["top"]) == 10  # topk over the class count: every class, as predict does
    tops = [one["results"][0]["top"][0], both["results"][0]["top"][0], form["results"][0]["top"][0]]
    assert len({t["label"] for t in tops}) == 1  # batches of 1 and 2: the same answer up to rounding
    assert max(t["prob"] for t in tops) - min(t["prob"] for t in tops) < 1e-5


def test_models_health_metrics_and_page(client: Any, fmnist: tuple[list[bytes], list[str]]) -> None:
    client.post("/v1/predict", files={"file": ("a.png", fmnist[0][0])})
    m = client.get("/v1/models").json()["models"][0]
    assert m["classes"] == list(D.FASHION_MNIST_CLASSES) and m["input"]["input_size"] == 28
    assert m["explain"] and "inception4c" in m["blocks"] and m["default_block"] == "inception4c"
    assert client.get("/healthz").json()["status"] == "ok"
    text = client.get("/metrics").text
    assert re.search(r'inceptionnet_requests_total\{path="/v1/predict",status="200"\} [1-9]', text)
    assert re.search(r"inceptionnet_batch_size_count [1-9]", text)
    assert 'inceptionnet_request_seconds_bucket{le="+Inf",path="/v1/predict"}' in text
    page = client.get("/")
    assert page.status_code == 200 and '<script src="/static/app.js">' in page.text
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text):
        assert client.get(asset).status_code == 200, asset  # no CDN: every asset from the app


def bad_requests(fmnist: tuple[list[bytes], list[str]]) -> list[tuple[str, dict[str, Any], int, str]]:
    good = fmnist[0][0]
    bomb = png((2000, 2000), "1")  # a few KiB that would decode to 4 M pixels (the limit here is 1 M)
    return [
        ("not an image", {"files": {"file": ("x.png", b"hello")}}, 400, "not an image file"),
        ("truncated", {"files": {"file": ("t.png", good[: len(good) // 2])}}, 400, "t.png"),
        ("empty upload", {"files": {"file": ("e.png", b"")}}, 400, "empty"),
        ("wrong field", {"files": {"image": ("a.png", good)}}, 400, "unknown form field 'image'"),
        ("text in file", {"data": {"file": "abc"}}, 400, "must be a file upload"),
        ("no image", {"data": {"topk": "3"}, "files": {"topk": (None, "3")}}, 400, "no image"),
        ("bad json", {"content": b"{", "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
        ("json list", {"json": [1, 2]}, 400, "must be an object"),
        ("bad base64", {"json": {"image": "%%%"}}, 400, "not valid base64"),
        ("unknown key", {"json": {"image": "", "size": 3}}, 400, "unknown JSON key"),
        ("images not list", {"json": {"images": "abc"}}, 400, "must be a list"),
        ("wrong type", {"content": b"abc", "headers": {"content-type": "text/plain"}}, 415, "multipart"),
        ("topk 0", {"files": {"file": ("a.png", good)}, "params": {"topk": "0"}}, 400, "topk"),
        ("topk text", {"files": {"file": ("a.png", good)}, "params": {"topk": "many"}}, 400, "integer"),
        ("invert text", {"files": {"file": ("a.png", good)}, "params": {"invert": "maybe"}}, 400, "invert"),
        ("too many files", {"files": [("file", (f"{i}.png", good)) for i in range(9)]}, 400, ""),
        ("too large body", {"content": b"0" * (2**20 + 10), "headers": {"content-type": "application/json"}}, 413, "MiB"),
        ("bomb", {"files": {"file": ("bomb.png", bomb)}}, 413, "--max-pixels"),
    ]  # fmt: skip


def test_bad_requests_get_clean_errors_and_the_server_stays_up(
    client: Any, fmnist: tuple[list[bytes], list[str]]
) -> None:
    for what, kwargs, status, words in bad_requests(fmnist):
        r = client.post("/v1/predict", **kwargs)
        assert r.status_code == status or (what == "too many files" and r.status_code in (400, 413)), (
            what,
            r.text,
        )
        assert r.headers["content-type"] == "application/json", what
        assert words in r.json()["error"], (what, r.json())
    assert client.get("/nope").json()["error"] == "Not Found"
    assert client.get("/v1/predict").status_code == 405
    r = client.post("/v1/predict", files={"file": ("a.png", fmnist[0][0])})
    assert r.status_code == 200 and r.json()["results"][0]["top"][0]["label"] == fmnist[1][0]


def test_full_queue_is_503_with_retry_after(engine: Engine, fmnist: tuple[list[bytes], list[str]]) -> None:
    cfg = dataclasses.replace(CFG, max_queue=2, max_files=4)
    with TestClient(create_app(engine, cfg)) as c:
        r = c.post("/v1/predict", files=[("file", (f"{i}.png", fmnist[0][0])) for i in range(3)])
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and "queue" in r.json()["error"]
        assert c.post("/v1/predict", files={"file": ("a.png", fmnist[0][0])}).status_code == 200


def test_timeout_is_504_and_a_failing_batch_is_500(
    engine: Engine, fmnist: tuple[list[bytes], list[str]]
) -> None:
    release = threading.Event()
    calls: list[int] = []

    def run(x: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        if len(calls) == 1:
            release.wait(30)  # held until the request has timed out
        if len(calls) == 2:
            raise RuntimeError("boom")
        return engine.run(x)

    slow = dataclasses.replace(engine, run=run)
    with TestClient(create_app(slow, dataclasses.replace(CFG, timeout_s=0.3))) as c:
        r = c.post("/v1/predict", files={"file": ("a.png", fmnist[0][0])})
        assert r.status_code == 504 and "--timeout" in r.json()["error"]
        release.set()
        r = c.post("/v1/predict", files={"file": ("a.png", fmnist[0][0])})
        assert r.status_code == 500 and "boom" in r.json()["error"]
        r = c.post("/v1/predict", files={"file": ("a.png", fmnist[0][0])})
        assert r.status_code == 200


def test_explain_endpoint(client: Any, fmnist: tuple[list[bytes], list[str]]) -> None:
    pngs, truth = fmnist
    r = client.post("/v1/explain", files={"file": ("boot.png", pngs[0])}, data={"block": "inception4c"})
    assert r.status_code == 200, r.text
    e = r.json()
    assert e["target"]["label"] == e["top"][0]["label"] == truth[0] and e["cam_layer"] == "inception5b"
    cam = Image.open(io.BytesIO(base64.b64decode(e["cam_png"].split(",", 1)[1])))
    assert cam.size == (224, 224) and cam.mode == "RGB"
    assert [b["label"] for b in e["branches"]][0] == "1x1" and len(e["branches"]) == 4
    assert abs(sum(b["share"] for b in e["branches"]) - 1) < 1e-6
    other = client.post(
        "/v1/explain", files={"file": ("b.png", pngs[0])}, data={"target": "Bag", "block": "none"}
    ).json()
    assert other["target"]["label"] == "Bag" and other["branches"] == [] and other["cam_png"] != e["cam_png"]
    for data, words in (({"block": "inception9z"}, "inception4c"), ({"target": "99"}, "target"),
                        ({"target": "Hat"}, "integer")):  # fmt: skip
        r = client.post("/v1/explain", files={"file": ("b.png", pngs[0])}, data=data)
        assert r.status_code == 400 and words in r.json()["error"], (data, r.text)
    two = client.post("/v1/explain", files=[("file", ("a.png", pngs[0])), ("file", ("b.png", pngs[1]))])
    assert two.status_code == 400 and "one image" in two.json()["error"]


def test_batcher_groups_concurrent_images() -> None:
    sizes: list[int] = []

    def run(x: torch.Tensor) -> torch.Tensor:
        sizes.append(len(x))
        return x.flatten(1) * 2

    async def scenario(max_batch: int) -> list[torch.Tensor]:
        b = Batcher(run, max_batch=max_batch, max_wait_s=0.05, max_queue=64)
        b.start()
        outs = await asyncio.gather(*(b.submit([torch.full((1, 1, 1), float(i))]) for i in range(10)))
        with pytest.raises(QueueFullError):
            await b.submit([torch.zeros(1, 1, 1)] * 65)
        await b.close()
        return outs

    outs = asyncio.run(scenario(4))
    assert sizes == [4, 4, 2]  # ten concurrent requests: three model calls
    assert [float(o[0, 0]) for o in outs] == [2.0 * i for i in range(10)]  # each request gets its own row
    sizes.clear()
    asyncio.run(scenario(1))
    assert sizes == [1] * 10


def test_batcher_close_runs_what_is_queued_and_refuses_more() -> None:
    from inceptionnet.serve.batching import ClosingError

    async def scenario() -> tuple[list[torch.Tensor], list[int]]:
        sizes: list[int] = []
        b = Batcher(lambda x: sizes.append(len(x)) or x + 1, max_batch=8, max_wait_s=60, max_queue=8)
        b.start()
        waiting = [asyncio.ensure_future(b.submit([torch.zeros(1)])) for _ in range(3)]
        while b.queued < 3:
            await asyncio.sleep(0)
        await b.close()  # without draining, the three would wait for the 60 s batch window
        with pytest.raises(ClosingError):
            await b.submit([torch.zeros(1)])
        return list(await asyncio.gather(*waiting)), sizes

    outs, sizes = asyncio.run(scenario())
    assert sizes == [3] and all(float(o[0, 0]) == 1.0 for o in outs)


def test_serve_cli_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        cases = [
            (["--port", str(port)], "in use"),
            (["--port", "70000"], "--port"),
            (["--max-batch", "0"], "--max-batch"),
            (["--max-wait-ms", "nan"], "--max-wait-ms"),
            (["--host", "no.such.host.invalid"], "--host"),
            (["--max-queue", "4", "--max-files", "8"], "--max-queue"),
        ]
        for extra, words in cases:
            rc = cli(["serve", "--model", "googlenet_small", "--weights", "fashion_mnist", *extra])
            err = capsys.readouterr().err.strip()
            assert rc == 2 and err.startswith("error: ") and len(err.splitlines()) == 1 and words in err, (
                extra,
                err,
            )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sigterm_drains_in_flight_requests(fmnist: tuple[list[bytes], list[str]], tmp_path: Path) -> None:
    """Three requests wait in the batch queue (--max-wait-ms 1500) when SIGTERM arrives: all three are
    answered, then the server exits."""
    httpx = pytest.importorskip("httpx")
    port = _free_port()
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "inceptionnet", "serve", "--model", "googlenet_small", "--weights", "fashion_mnist",
         "--backend", "eager", "--port", str(port), "--max-wait-ms", "1500", "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # up to 60 s for torch and the model to load
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("the server did not start: " + (tmp_path / "server.log").read_text())
        results: list[Any] = []

        def post(i: int) -> None:
            r = httpx.post(f"{url}/v1/predict", files={"file": (f"{i}.png", fmnist[0][i])}, timeout=30)
            results.append((r.status_code, r.json()["results"][0]["top"][0]["label"]))

        threads = [threading.Thread(target=post, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for _ in range(100):  # until the three images are queued
            if re.search(r"inceptionnet_queue_images 3\.0", httpx.get(f"{url}/metrics", timeout=5).text):
                break
            time.sleep(0.02)
        else:
            pytest.fail("the three requests were not queued together")
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(30)
        # uvicorn re-raises the signal once shut down (a supervisor sees "terminated by SIGTERM")
        assert proc.wait(30) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert sorted(results) == sorted((200, name) for name in fmnist[1][:3]), (
        tmp_path / "server.log"
    ).read_text()


def test_onnx_file_is_served_without_explanations(
    tmp_path: Path, fmnist: tuple[list[bytes], list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnxruntime")
    onnx = tmp_path / "fm.onnx"
    assert cli(["export", "googlenet_small", "--weights", "fashion_mnist", "-o", str(onnx)]) == 0
    capsys.readouterr()
    engine = load_engine(onnx=str(onnx))
    assert (
        engine.model is None
        and engine.backend == "onnxruntime"
        and engine.weights_id.startswith("fm.onnx sha256:")
    )
    with TestClient(create_app(engine, CFG)) as c:
        files = [("file", (f"{i}.png", fmnist[0][i])) for i in range(3)]
        names = [res["top"][0]["label"] for res in c.post("/v1/predict", files=files).json()["results"]]
        assert names == fmnist[1][:3]
        m = c.get("/v1/models").json()["models"][0]
        assert m["explain"] is False and m["blocks"] == [] and m["classes"] == list(D.FASHION_MNIST_CLASSES)
        r = c.post("/v1/explain", files={"file": ("a.png", fmnist[0][0])})
        assert r.status_code == 409 and "--onnx" in r.json()["error"]
    with pytest.raises(ValueError, match="drop --model"):
        load_engine(onnx=str(onnx), model_name="googlenet_small")
