"""The server cannot die silently (issue 35, item 4): a batch whose answer does not fit it fails its
own requests and the worker goes on; a worker that is gone (or a batch that hangs) turns /healthz to
503; a request body has a read deadline (408, connection closed); malformed and ambiguous JSON is one
400 line; contradictory serve flags are refused before anything loads.

A fake engine (8 x 8 gray input, three classes, a plain function for the model) keeps these fast; one
test runs a real ONNX graph that returns one row whatever the batch, and one a real uvicorn server.
"""

from __future__ import annotations

import asyncio
import base64
import io
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from PIL import Image

from inceptionnet import data as D
from inceptionnet.errors import UsageError

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from inceptionnet.commands.serve import check_args, get_args_parser  # noqa: E402
from inceptionnet.serve.app import ServeConfig, create_app  # noqa: E402
from inceptionnet.serve.batching import Batcher, BatchError  # noqa: E402
from inceptionnet.serve.engine import Engine  # noqa: E402

CLASSES = ["ant", "bee", "cat"]
CFG = ServeConfig(max_batch=4, max_wait_ms=2, max_queue=16, timeout_s=5, max_body_bytes=2**20, max_files=8)


def fake_engine(run: Callable[[torch.Tensor], Any]) -> Engine:
    icfg = D.InputConfig(8, 1, (0.5,), (0.5,))
    return Engine("fake", "fake weights", icfg, list(CLASSES), run, "eager", "fp32", max_pixels=10_000)


def good(x: torch.Tensor) -> torch.Tensor:
    return torch.arange(3.0).repeat(len(x), 1)


@pytest.fixture(scope="module")
def png() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (8, 8), 128).save(buf, format="PNG")
    return buf.getvalue()


def files(png: bytes, n: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("file", (f"{i}.png", png, "image/png")) for i in range(n)]


def test_a_batch_with_wrong_rows_fails_its_requests_and_the_worker_goes_on(png: bytes) -> None:
    calls: list[int] = []

    def run(x: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        return good(x)[:1] if len(calls) == 1 else good(x)  # the first batch: one row for all

    with TestClient(create_app(fake_engine(run), CFG)) as c:
        r = c.post("/v1/predict", files=files(png, 3))
        assert r.status_code == 500 and "returned 1 rows for a batch of 3" in r.json()["error"], r.text
        assert c.get("/healthz").status_code == 200
        r = c.post("/v1/predict", files=files(png, 2))
        assert r.status_code == 200 and r.json()["results"][1]["top"][0]["label"] == "cat"


def test_an_output_with_the_wrong_class_count_is_a_500_naming_it(png: bytes) -> None:
    with TestClient(create_app(fake_engine(lambda x: torch.zeros(len(x), 5)), CFG)) as c:
        r = c.post("/v1/predict", files=files(png, 1))
        assert (
            r.status_code == 500 and "shape (1, 5) for a batch of 1 (expected 1 x 3" in r.json()["error"]
        ), r.text


def test_the_batcher_survives_any_answer_that_does_not_fit() -> None:
    answers: list[Any] = [torch.zeros(1, 3), torch.zeros(3), "not a tensor", torch.zeros(0, 3)]

    async def scenario() -> list[str]:
        b = Batcher(lambda x: answers.pop(0) if answers else x + 1, max_batch=2, max_wait_s=0.01, max_queue=8)
        b.start()
        errors = []
        for _ in range(4):
            with pytest.raises(BatchError) as e:
                await asyncio.wait_for(b.submit([torch.zeros(1)] * 2), 5)
            errors.append(str(e.value))
        out = await asyncio.wait_for(b.submit([torch.zeros(1)] * 2), 5)  # the worker still serves
        assert b.problem() is None and out.tolist() == [[1.0], [1.0]]
        await b.close()
        return errors

    errors = asyncio.run(scenario())
    assert "returned 1 rows for a batch of 2" in errors[0] and "returned 3 rows" in errors[1]
    assert "a str, not a tensor" in errors[2] and "returned 0 rows" in errors[3]


def test_a_real_onnx_graph_returning_one_row_fails_only_its_batch(png: bytes) -> None:
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(torch.ones(64, 3).numpy(), "w")
    graph = helper.make_graph(
        [
            helper.make_node("Slice", ["x", "zero", "one", "zero"], ["first"]),  # x[0:1]: one row, always
            helper.make_node("Flatten", ["first"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["y"]),
        ],
        "one_row",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [w, numpy_helper.from_array(torch.zeros(1, dtype=torch.int64).numpy(), "zero"),
         numpy_helper.from_array(torch.ones(1, dtype=torch.int64).numpy(), "one")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert onnx.checker.check_model(model) is None

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"x": x.numpy()})[0])

    with TestClient(create_app(fake_engine(run), CFG)) as c:
        r = c.post("/v1/predict", files=files(png, 2))
        assert r.status_code == 500 and "returned 1 rows for a batch of 2" in r.json()["error"], r.text
        assert c.post("/v1/predict", files=files(png, 1)).status_code == 200  # a batch of 1 fits
        assert c.get("/healthz").json()["status"] == "ok"


def test_a_gone_worker_turns_healthz_to_503_and_requests_fail_at_once(png: bytes) -> None:
    app = create_app(fake_engine(good), CFG)
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 200
        assert c.portal is not None
        c.portal.call(lambda: app.state.batcher._task.cancel())  # the worker ends, as a bug of ours would
        r = c.get("/healthz")
        assert r.status_code == 503 and "batch worker stopped" in r.json()["error"], r.text
        r = c.post("/v1/predict", files=files(png, 1))  # no wait for --timeout: 503 naming the cause
        assert r.status_code == 503 and "restart the server" in r.json()["error"], r.text


def test_a_hung_batch_turns_healthz_to_503_until_it_returns(png: bytes) -> None:
    release = threading.Event()

    def run(x: torch.Tensor) -> torch.Tensor:
        release.wait(30)
        return good(x)

    cfg = ServeConfig(max_batch=4, max_wait_ms=1, max_queue=16, timeout_s=0.2, max_files=8)
    with TestClient(create_app(fake_engine(run), cfg)) as c:
        assert c.post("/v1/predict", files=files(png, 1)).status_code == 504
        for _ in range(100):  # the batch passes --timeout in the model at most moments after the 504
            r = c.get("/healthz")
            if r.status_code == 503:
                break
            time.sleep(0.02)
        assert r.status_code == 503 and "running one batch of 1 images" in r.json()["error"], r.text
        release.set()
        for _ in range(100):
            if c.get("/healthz").status_code == 200:
                break
            time.sleep(0.02)
        assert c.post("/v1/predict", files=files(png, 1)).status_code == 200


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with TestClient(create_app(fake_engine(good), CFG)) as c:
        yield c


def test_json_with_both_image_and_images_is_400(client: Any, png: bytes) -> None:
    b64 = base64.b64encode(png).decode()
    r = client.post("/v1/predict", json={"image": b64, "images": [b64, b64]})
    assert r.status_code == 400 and "both 'image' and 'images'" in r.json()["error"], r.text


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"[" * 100_000, "nested too deeply"),  # json.loads raises RecursionError: it was a 500
        (b'{"image": ', "not valid JSON: Expecting value"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b"[1, 2]", "must be an object, not a list"),
    ],
)
def test_malformed_json_is_one_400_line_showing_the_expected_shape(
    client: Any, body: bytes, words: str
) -> None:
    r = client.post("/v1/predict", content=body, headers={"content-type": "application/json"})
    err = r.json()["error"]
    assert r.status_code == 400 and words in err and "\n" not in err and len(err) < 300, (r.status_code, err)
    assert 'send {"image": "<base64>"} or {"images": [' in err


def test_error_lines_show_bounded_excerpts(client: Any, png: bytes) -> None:
    b64 = base64.b64encode(png).decode()
    for body in ({"image": b64, "topk": "9" * 100_000 + "x"}, {"image": b64, "invert": "y" * 100_000},
                 {"image": b64, **{f"k{i}" * 50: 1 for i in range(2_000)}}):  # fmt: skip
        r = client.post("/v1/predict", json=body)
        assert r.status_code == 400 and len(r.json()["error"]) < 300, r.text[:300]


def test_too_many_json_images_are_refused_before_decoding(client: Any) -> None:
    r = client.post("/v1/predict", json={"images": ["not base64!"] * (CFG.max_files + 1)})
    assert r.status_code == 413 and "--max-files" in r.json()["error"], r.text


def _http_server(app: Any) -> Iterator[int]:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def slow_body_port() -> Iterator[int]:
    cfg = ServeConfig(max_batch=4, max_wait_ms=1, max_queue=16, timeout_s=5, max_files=8, body_timeout_s=0.5)
    yield from _http_server(create_app(fake_engine(good), cfg))


def test_a_dripped_body_is_cut_off_with_408_and_the_connection_closed(slow_body_port: int) -> None:
    """One byte every 50 ms (each well within 0.5 s of the last) never completes the declared 1,000."""
    with socket.create_connection(("127.0.0.1", slow_body_port), timeout=10) as s:
        s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000\r\n\r\n{")  # fmt: skip
        got = b""
        for _ in range(200):  # at most 10 s of dripping; the server answers after 0.5 s
            if select.select([s], [], [], 0.05)[0]:
                break
            s.sendall(b" ")
        while chunk := s.recv(4096):  # until the server closes the connection
            got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408") and b"connection: close" in head.lower(), got
    assert b"--body-timeout" in body


def test_a_prompt_body_on_the_same_server_is_answered(slow_body_port: int, png: bytes) -> None:
    httpx = pytest.importorskip("httpx")
    r = httpx.post(f"http://127.0.0.1:{slow_body_port}/v1/predict", files=files(png, 2), timeout=10)
    assert r.status_code == 200 and len(r.json()["results"]) == 2


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--max-wait-ms", "40000", "--timeout", "30"], "--max-wait-ms 40000 is not below --timeout 30"),
        (
            ["--max-batch", "64", "--max-queue", "16", "--max-files", "8"],
            "--max-batch 64 is above --max-queue",
        ),
        (["--body-timeout", "0"], "--body-timeout"),
        (["--body-timeout", "nan"], "--body-timeout"),
        (["--body-timeout", "inf"], "--body-timeout"),
        (["--max-body-mb", "0.0001"], "under 1 KiB"),
        (["--calibration", "fashion_mnist:train"], "--dtype int8"),
        (["--onnx", "m.onnx", "--device", "cuda"], "drop --device"),
        (["--onnx", "m.onnx", "--dtype", "bf16"], "drop --dtype"),
    ],
)
def test_contradictory_flags_are_refused_before_loading(flags: list[str], words: str) -> None:
    model = [] if "--onnx" in flags else ["--model", "googlenet_small", "--weights", "fashion_mnist"]
    with pytest.raises(UsageError) as e:
        check_args(get_args_parser().parse_args([*model, *flags]))
    assert words in str(e.value) and "\n" not in str(e.value), str(e.value)
