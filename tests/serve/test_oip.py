"""The Open Inference Protocol v2 (issue 30, items 1-2) through Triton's own HTTP client (``tritonclient``):
one real ``inceptionnet serve`` of the shipped Fashion-MNIST model in a subprocess for the module; health,
metadata, inference with the preprocessed FP32 tensor (JSON and binary) and with encoded images (base64
JSON and binary BYTES), the right class for real test images, and every malformed request a protocol
error (``{"error": ...}``, 400 / 404) with the server still answering afterwards."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from inceptionnet import data as D

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

from inceptionnet.serve.engine import Engine  # noqa: E402

MODEL = "googlenet_small"
N_IMAGES = 6
MAX_FILES = 4  # the server's --max-files: a request of 5 images or tensors is refused


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """``inceptionnet serve`` of the shipped model starting on a free loopback port (process, port, log)."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("oip") / "server.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "inceptionnet", "serve", "--model", MODEL, "--weights", "fashion_mnist",
         "--backend", "eager", "--port", str(port), "--max-batch", "4", "--max-files", str(MAX_FILES),
         "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    try:
        yield proc, port, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def server(started: tuple[subprocess.Popen[bytes], int, Path], fmnist: tuple[list[bytes], list[str]]) -> str:
    """The started server's host:port once it is ready (the images load meanwhile)."""
    proc, port, log_path = started
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):  # up to 120 s for torch and the model to load on a busy machine
        if proc.poll() is not None:
            pytest.fail("the server exited: " + log_path.read_text())
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    else:
        pytest.fail("the server did not become ready: " + log_path.read_text())
    return f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def client(server: str) -> Any:
    return httpclient.InferenceServerClient(url=server, network_timeout=60.0)


@pytest.fixture(scope="module")
def preprocess(server: str) -> Engine:
    """The server's preprocessing without its model: an Engine of the served input config whose
    ``decode`` is the one /v1/predict and the v2 BYTES input use."""
    m = httpx.get(f"http://{server}/v1/models", timeout=10).json()["models"][0]
    icfg = D.InputConfig.from_dict(m["input"])
    return Engine(m["name"], "", icfg, m["classes"], run=lambda x: x, backend="none", dtype="fp32")


def _tensors(preprocess: Engine, pngs: list[bytes]) -> np.ndarray:
    return torch.stack([preprocess.decode(b, f"{i}.png") for i, b in enumerate(pngs)]).numpy()


def _labels(result: Any, name: str = "top_labels") -> list[str]:
    return [row[0].decode() if isinstance(row[0], bytes) else str(row[0]) for row in result.as_numpy(name)]


def _v1_labels(server: str, pngs: list[bytes]) -> list[str]:
    files = [("file", (f"{i}.png", b, "image/png")) for i, b in enumerate(pngs)]
    r = httpx.post(f"http://{server}/v1/predict", files=files, timeout=60)
    return [res["top"][0]["label"] for res in r.json()["results"]]


def test_health_and_metadata(client: Any) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL) and client.is_model_ready(MODEL, "1")
    assert not client.is_model_ready("resnet50")
    server_md = client.get_server_metadata()
    assert server_md["name"] == "inceptionnet" and "binary_tensor_data" in server_md["extensions"]
    md = client.get_model_metadata(MODEL)
    assert md["name"] == MODEL and md["versions"] == ["1"]
    assert {i["name"]: (i["datatype"], i["shape"]) for i in md["inputs"]} == {
        "input": ("FP32", [-1, 1, 28, 28]),
        "image": ("BYTES", [-1]),
    }
    outputs = {o["name"]: (o["datatype"], o["shape"]) for o in md["outputs"]}
    assert outputs["probabilities"] == ("FP32", [-1, 10]) and outputs["top_labels"][0] == "BYTES"
    assert outputs["top_indices"][0] == "INT64"


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_fp32_tensor_names_the_garments(
    client: Any, server: str, preprocess: Engine, fmnist: tuple[list[bytes], list[str]], binary: bool
) -> None:
    pngs, truth = fmnist[0][:MAX_FILES], fmnist[1][:MAX_FILES]
    x = _tensors(preprocess, pngs)
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    outs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("top_labels", "probabilities")]
    r = client.infer(MODEL, [inp], outputs=outs, request_id="42")
    labels = _labels(r)
    assert labels == _v1_labels(server, pngs)  # the same model and preprocessing as /v1/predict
    assert sum(a == b for a, b in zip(labels, truth, strict=True)) >= len(truth) - 1, (labels, truth)
    probs = r.as_numpy("probabilities")
    assert probs.shape == (len(pngs), 10) and probs.dtype == np.float32
    assert np.allclose(probs.sum(1), 1, atol=1e-4)
    assert [D.FASHION_MNIST_CLASSES[i] for i in probs.argmax(1)] == labels
    assert r.get_response()["id"] == "42" and r.get_response()["model_name"] == MODEL


def test_encoded_images_as_binary_bytes(
    client: Any, server: str, fmnist: tuple[list[bytes], list[str]]
) -> None:
    pngs, truth = fmnist[0][:MAX_FILES], fmnist[1][:MAX_FILES]
    inp = httpclient.InferInput("image", [len(pngs)], "BYTES")
    inp.set_data_from_numpy(np.array(pngs, dtype=np.object_), binary_data=True)
    r = client.infer(MODEL, [inp])  # no outputs named: all four, binary (the client asks binary_data_output)
    labels = _labels(r)
    assert labels == _v1_labels(server, pngs)
    assert sum(a == b for a, b in zip(labels, truth, strict=True)) >= len(truth) - 1, (labels, truth)
    idx, top = r.as_numpy("top_indices"), r.as_numpy("top_probabilities")
    assert idx.dtype == np.int64 and idx.shape == top.shape == (len(pngs), 5)
    assert [D.FASHION_MNIST_CLASSES[i] for i in idx[:, 0]] == labels
    assert (np.diff(top, axis=1) <= 0).all() and np.allclose(top[:, 0], r.as_numpy("probabilities").max(1))


def test_encoded_images_as_base64_json_and_classification(
    client: Any, fmnist: tuple[list[bytes], list[str]]
) -> None:
    pngs = fmnist[0][MAX_FILES - 2 : MAX_FILES + 2]  # the last two above and two more
    inp = httpclient.InferInput("image", [len(pngs)], "BYTES")
    inp.set_data_from_numpy(
        np.array([base64.b64encode(b).decode() for b in pngs], dtype=np.object_), binary_data=False
    )
    outs = [httpclient.InferRequestedOutput("top_labels", binary_data=False),
            httpclient.InferRequestedOutput("probabilities", binary_data=False, class_count=3)]  # fmt: skip
    r = client.infer(MODEL, [inp], outputs=outs, parameters={"topk": 2})
    labels = _labels(r)
    assert r.as_numpy("top_labels").shape == (len(pngs), 2)
    classes = r.as_numpy("probabilities")  # Triton's classification strings: "prob:index:label"
    assert classes.shape == (len(pngs), 3)
    for row, label in zip(classes, labels, strict=True):
        prob, index, name = str(row[0]).split(":", 2)
        assert name == label == D.FASHION_MNIST_CLASSES[int(index)] and 0 < float(prob) <= 1


def _post(server: str, path: str, body: bytes, headers: dict[str, str] | None = None) -> Any:
    return httpx.post(f"http://{server}{path}", content=body, headers=headers or {}, timeout=60)


def _json(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def _image_req(data: Any, shape: list[int] | None = None) -> bytes:
    n = len(data) if isinstance(data, list) else 1
    return _json({"inputs": [{"name": "image", "shape": shape or [n], "datatype": "BYTES", "data": data}]})


def _binary_req(
    name: str, dtype: str, shape: list[int], blob: bytes, size: int | None = None
) -> tuple[bytes, dict[str, str]]:
    head = _json({"inputs": [{"name": name, "shape": shape, "datatype": dtype,
                              "parameters": {"binary_data_size": len(blob) if size is None else size}}]})  # fmt: skip
    return head + blob, {"Inference-Header-Content-Length": str(len(head))}


def _bad_raw_requests(png: bytes) -> list[tuple[str, bytes, dict[str, str], int, str]]:
    tensor = np.zeros((1, 1, 28, 28), "<f4").tobytes()
    cases: list[tuple[str, bytes, dict[str, str], int, str]] = [
        ("bad base64", _image_req(["%%%"]), {}, 400, "not valid base64"),
        ("not an image", _image_req([base64.b64encode(b"hello").decode()]), {}, 400, "not an image"),
        ("count vs shape", _image_req([base64.b64encode(png).decode()], [2]), {}, 400, "list of 2"),
        ("not JSON", b"{", {}, 400, "not valid JSON"),
        ("no inputs", _json({"inputs": []}), {}, 400, "non-empty list"),
        ("unknown input", _json({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}), {}, 400, "unknown input"),
        ("NaN tensor", _json({"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32",
                                          "data": [float("nan")] * 784}]}), {}, 400, "NaN"),
        ("JSON count", _json({"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [0.5] * 10}]}), {}, 400, "holds 10 numbers"),
        ("unknown output", _json({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(png).decode()]}],
                                  "outputs": [{"name": "logits"}]}), {}, 400, "unknown output"),
    ]  # fmt: skip
    body, h = _binary_req("input", "FP32", [1, 1, 28, 28], tensor[:-4])
    cases.append(("FP32 binary too short", body, h, 400, "is 3136"))
    body, h = _binary_req("input", "FP32", [1, 1, 28, 28], tensor, size=len(tensor) + 8)
    cases.append(("binary_data_size over the body", body, h, 400, "binary_data_size"))
    body, h = _binary_req("image", "BYTES", [1], struct.pack("<I", len(png) + 100) + png)
    cases.append(("BYTES length over its data", body, h, 400, "declares"))
    body, h = _binary_req("image", "BYTES", [2], struct.pack("<I", len(png)) + png)
    cases.append(("BYTES fewer elements", body, h, 400, "holds 1 elements"))
    body, h = _binary_req("image", "BYTES", [1], struct.pack("<I", len(png)) + png + b"xx")
    cases.append(("BYTES trailing bytes", body, h, 400, "2 bytes more"))
    cases.append(("header length over body", body, {"Inference-Header-Content-Length": str(len(body) + 1)}, 400,
                  "Inference-Header-Content-Length"))  # fmt: skip
    cases.append(("binary without a header length", body, {}, 400, "not valid JSON"))
    return cases


def test_malformed_requests_are_protocol_errors_and_the_server_goes_on(
    client: Any, server: str, fmnist: tuple[list[bytes], list[str]]
) -> None:
    png = fmnist[0][0]
    for what, body, headers, status, words in _bad_raw_requests(png):
        r = _post(server, f"/v2/models/{MODEL}/infer", body, {"content-type": "application/json", **headers})
        assert r.status_code == status and r.headers["content-type"] == "application/json", (what, r.text)
        assert words in r.json()["error"], (what, r.json())
    assert client.is_server_live() and client.is_server_ready()
    assert _v1_labels(server, [png]) == [fmnist[1][0]]


def _status(call: Any) -> tuple[str, str]:
    with pytest.raises(InferenceServerException) as e:
        call()
    return str(e.value.status()), str(e.value.message())


def test_client_side_errors_carry_the_protocol_status(
    client: Any, preprocess: Engine, fmnist: tuple[list[bytes], list[str]]
) -> None:
    x = _tensors(preprocess, fmnist[0][:1])

    def tensor(arr: np.ndarray, dtype: str = "FP32") -> Any:
        inp = httpclient.InferInput("input", list(arr.shape), dtype)
        inp.set_data_from_numpy(arr, binary_data=True)
        return inp

    too_many = httpclient.InferInput("image", [MAX_FILES + 1], "BYTES")
    too_many.set_data_from_numpy(np.array([fmnist[0][0]] * (MAX_FILES + 1), dtype=np.object_))
    cases = [
        ("unknown model", lambda: client.infer("resnet50", [tensor(x)]), "404", "unknown model 'resnet50'"),
        ("unknown version", lambda: client.infer(MODEL, [tensor(x)], model_version="7"), "404", "version"),
        ("unknown model metadata", lambda: client.get_model_metadata("nope"), "404", "unknown model"),
        ("wrong shape", lambda: client.infer(MODEL, [tensor(x[:, :, :20, :20].copy())]), "400", "[N, 1, 28, 28]"),
        ("wrong datatype", lambda: client.infer(MODEL, [tensor(x.astype(np.float64), "FP64")]), "400", "must be FP32"),
        ("too many images", lambda: client.infer(MODEL, [too_many]), "400", f"1 to {MAX_FILES} per request (--max-files)"),
        ("too many tensors", lambda: client.infer(MODEL, [tensor(np.repeat(x, MAX_FILES + 1, 0))]), "400", "--max-files"),
    ]  # fmt: skip
    for what, call, status, words in cases:
        got_status, message = _status(call)
        assert got_status == status and words in message, (what, got_status, message)
    r = client.infer(MODEL, [tensor(x)])
    assert _labels(r) == fmnist[1][:1]
