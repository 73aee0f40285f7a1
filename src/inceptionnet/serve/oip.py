"""The Open Inference Protocol v2 (KServe v2 / Triton), REST, beside the server's own routes:
``oip_router(engine, ...) -> APIRouter`` (``create_app`` includes it).

    GET  /v2/health/live                       200 {"live": true} while the process answers
    GET  /v2/health/ready                      200 {"ready": true}; 503 {"ready": false, "error"} while
                                               the server cannot answer (``app.serving_problem``)
    GET  /v2                                   server metadata (name, version, extensions)
    GET  /v2/models/NAME[/versions/1]          model metadata: inputs and outputs, datatype and shape
    GET  /v2/models/NAME[/versions/1]/ready    the model's readiness (as the server's)
    POST /v2/models/NAME[/versions/1]/infer    one of the two inputs -> the outputs asked for

Inputs (one per request; N at most --max-files):

    input   FP32  [-1, C, H, W]  the model's input as it takes it (resized, cropped, normalized with
                                 the model's mean/std: ``GET /v1/models`` "input"), JSON ``data`` flat
                                 or nested, or binary (Triton's binary tensor extension)
    image   BYTES [-1]           one encoded JPEG/PNG/... per element, base64 strings in JSON or raw
                                 (4-byte little-endian length, then the bytes) in binary; decoded and
                                 preprocessed by the server as /v1/predict does (same size limits)

Outputs (all four unless ``outputs`` names some; ``parameters.topk`` sets K, default 5):
``probabilities`` FP32 [-1, classes], ``top_labels`` BYTES [-1, K], ``top_indices`` INT64 [-1, K],
``top_probabilities`` FP32 [-1, K]. An output asked for with ``binary_data: true`` (or every output,
with the request's ``binary_data_output: true``) comes back binary after the JSON header, whose length
is in the ``Inference-Header-Content-Length`` response header; ``classification: K`` on
``probabilities`` returns Triton's classification strings "prob:index:label" (BYTES [-1, K]).

Every image or tensor goes through the dynamic batcher with the /v1 requests. Errors are the protocol's
``{"error": "..."}``: 400 for a request that does not fit (shape, datatype, base64, binary lengths, more
elements than --max-files), 404 for a model or version this server does not serve, and the server's
own 413 / 503 / 504 / 500 as /v1/predict has them.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from torch import Tensor

from ..errors import excerpt, first_line
from .engine import Engine

TENSOR_INPUT, IMAGE_INPUT = "input", "image"
OUTPUT_NAMES = ("probabilities", "top_labels", "top_indices", "top_probabilities")
VERSION = "1"  # one model, one version: /versions/1 names it, any other version is a 404
DEFAULT_TOPK = 5
EXTENSIONS = ("binary_tensor_data", "classification")
HEADER_LENGTH = "Inference-Header-Content-Length"
BYTES_PREFIX = struct.Struct("<I")  # a BYTES element in binary: its length, 4 bytes little-endian

Classify = Callable[[list[Tensor]], Awaitable[Tensor]]  # model inputs -> probabilities, via the batcher
Decode = Callable[[list[tuple[str, bytes]]], Awaitable[list[Tensor]]]  # (name, encoded) -> model inputs


def _bad(message: str) -> HTTPException:
    return HTTPException(400, message)


@dataclass
class _Input:
    """One ``$request_input`` after its checks; ``raw``: its bytes in the binary extension."""

    name: str
    shape: list[int]
    datatype: str
    data: Any = None
    raw: bytes | None = None


@dataclass
class _Wanted:
    """One output to return: binary or JSON, and for ``classification`` the number of classes."""

    name: str
    binary: bool = False
    classification: int = 0


def oip_router(
    engine: Engine,
    *,
    max_elements: int,
    classify: Classify,
    decode: Decode,
    problem: Callable[[], str | None],
) -> APIRouter:
    """The v2 routes for ``engine``: ``max_elements`` images or tensors per request (--max-files),
    ``classify`` runs model inputs through the batcher (its HTTP errors as /v1/predict's), ``decode``
    turns uploads into model inputs, ``problem()`` is None while the server can answer."""
    router = APIRouter()
    _add_health(router, problem)
    _add_model(router, engine, problem)
    _add_infer(router, engine, max_elements, classify, decode)
    return router


def _model_paths(suffix: str) -> list[str]:
    return [f"/v2/models/{{name}}{suffix}", f"/v2/models/{{name}}/versions/{{version}}{suffix}"]


def _check_model(engine: Engine, name: str, version: str | None) -> None:
    if name != engine.name:
        raise HTTPException(
            404,
            f"unknown model {excerpt(name)}: this server serves {engine.name!r} (GET /v2/models/{engine.name})",
        )
    if version is not None and version != VERSION:
        raise HTTPException(
            404, f"unknown version {excerpt(version)} of model {engine.name!r}: it has version {VERSION}"
        )


def _add_health(router: APIRouter, problem: Callable[[], str | None]) -> None:
    async def live() -> dict[str, bool]:
        return {"live": True}  # answering at all is being live (the protocol's liveness)

    async def ready() -> JSONResponse:
        why = problem()
        if why is not None:
            return JSONResponse({"ready": False, "error": why}, status_code=503)
        return JSONResponse({"ready": True})

    async def server() -> dict[str, Any]:
        from .. import __version__

        return {"name": "inceptionnet", "version": __version__, "extensions": list(EXTENSIONS)}

    router.add_api_route("/v2/health/live", live, methods=["GET"])
    router.add_api_route("/v2/health/ready", ready, methods=["GET"])
    router.add_api_route("/v2", server, methods=["GET"])


def _add_model(router: APIRouter, engine: Engine, problem: Callable[[], str | None]) -> None:
    async def metadata(name: str, version: str | None = None) -> dict[str, Any]:
        _check_model(engine, name, version)
        return model_metadata(engine)

    async def model_ready(name: str, version: str | None = None) -> JSONResponse:
        _check_model(engine, name, version)
        why = problem()
        if why is not None:
            return JSONResponse({"name": engine.name, "ready": False, "error": why}, status_code=503)
        return JSONResponse({"name": engine.name, "ready": True})

    for path in _model_paths(""):
        router.add_api_route(path, metadata, methods=["GET"])
    for path in _model_paths("/ready"):
        router.add_api_route(path, model_ready, methods=["GET"])


def _add_infer(
    router: APIRouter, engine: Engine, max_elements: int, classify: Classify, decode: Decode
) -> None:
    async def infer(request: Request, name: str, version: str | None = None) -> Response:
        _check_model(engine, name, version)
        if request.headers.get("content-encoding", "identity").lower() != "identity":
            raise _bad("compressed request bodies are not accepted: send the body without Content-Encoding")
        body = await request.body()  # bounded by --max-body-mb (app.BodyLimit)
        req, inp = await run_in_threadpool(_read_request, body, request.headers.get(HEADER_LENGTH))
        wanted, topk = _wanted_outputs(req)  # checked before any image is decoded
        if inp.name == TENSOR_INPUT:
            xs = await run_in_threadpool(_tensor_batch, inp, engine, max_elements)
        else:
            xs = await decode(_image_batch(inp, max_elements))
        probs = await classify(xs)
        head, blobs = _response(engine, req, probs, wanted, topk)
        return _encode(head, blobs)

    for path in _model_paths("/infer"):
        router.add_api_route(path, infer, methods=["POST"])


def model_metadata(engine: Engine) -> dict[str, Any]:
    """``$metadata_model_response``: the two inputs and four outputs (-1: any size)."""
    c, s, k = engine.icfg.in_chans, engine.icfg.input_size, len(engine.classes)
    return {
        "name": engine.name,
        "versions": [VERSION],
        "platform": "onnxruntime_onnx" if engine.model is None else "pytorch",
        "inputs": [
            {"name": TENSOR_INPUT, "datatype": "FP32", "shape": [-1, c, s, s]},
            {"name": IMAGE_INPUT, "datatype": "BYTES", "shape": [-1]},
        ],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, k]},
            {"name": "top_labels", "datatype": "BYTES", "shape": [-1, -1]},
            {"name": "top_indices", "datatype": "INT64", "shape": [-1, -1]},
            {"name": "top_probabilities", "datatype": "FP32", "shape": [-1, -1]},
        ],
    }


INPUTS_SHAPE = f"send one input: {TENSOR_INPUT!r} (FP32 [N, C, H, W]) or {IMAGE_INPUT!r} (BYTES [N], one encoded image each)"


def _read_request(body: bytes, header_length: str | None) -> tuple[dict[str, Any], _Input]:
    """The request's JSON object and its one input (its binary data cut from after the JSON)."""
    req, blob = _split_body(body, header_length)
    raw = req.get("inputs")
    if not isinstance(raw, list) or not raw:
        raise _bad(f"'inputs' must be a non-empty list of input objects; {INPUTS_SHAPE}")
    if len(raw) != 1:
        raise _bad(f"{len(raw)} inputs in one request; {INPUTS_SHAPE}")
    inp = _parse_input(raw[0])
    size = _params(raw[0], f"input {inp.name!r}").get("binary_data_size")
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise _bad(
                f"binary_data_size of input {inp.name!r} must be a non-negative integer, got {excerpt(size)}"
            )
        if size != len(blob):
            raise _bad(
                f"input {inp.name!r} declares binary_data_size {size} but {len(blob)} bytes follow the JSON "
                f"header ({HEADER_LENGTH} says where the JSON ends)"
            )
        inp.raw = blob
    elif blob:
        raise _bad(f"{len(blob)} bytes follow the JSON header but no input declares binary_data_size")
    elif "data" not in raw[0]:
        raise _bad(f"input {inp.name!r} has no 'data' (nor a binary_data_size parameter)")
    else:
        inp.data = raw[0]["data"]
    return req, inp


def _split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """(the JSON object, the binary data after it): the JSON is the first ``header_length`` bytes
    (the whole body without the header)."""
    head, blob = body, b""
    if header_length is not None:
        n = int(header_length) if header_length.strip().isdigit() else -1
        if not 0 < n <= len(body):
            raise _bad(
                f"{HEADER_LENGTH} must be the JSON header's length in bytes (1..{len(body)}, the body's "
                f"size), got {excerpt(header_length)}"
            )
        head, blob = body[:n], body[n:]
    try:
        req = json.loads(head)
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise _bad(f"the request is not valid JSON: {first_line(e)}") from None
    except RecursionError:
        raise _bad("the request is not valid JSON: it is nested too deeply") from None
    if not isinstance(req, dict):
        raise _bad(f"the request must be a JSON object with 'inputs', not a {type(req).__name__}")
    return req, blob


def _params(obj: dict[str, Any], where: str) -> dict[str, Any]:
    params = obj.get("parameters", {})
    if not isinstance(params, dict):
        raise _bad(f"'parameters' of {where} must be an object, not a {type(params).__name__}")
    return params


def _parse_input(item: Any) -> _Input:
    if not isinstance(item, dict):
        raise _bad(f"an input must be an object with name, shape, datatype; {INPUTS_SHAPE}")
    name, shape, dtype = item.get("name"), item.get("shape"), item.get("datatype")
    if name not in (TENSOR_INPUT, IMAGE_INPUT):
        raise _bad(f"unknown input {excerpt(name)}; {INPUTS_SHAPE}")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise _bad(
            f"the shape of input {name!r} must be a list of non-negative integers, got {excerpt(shape)}"
        )
    if not isinstance(dtype, str):
        raise _bad(f"the datatype of input {name!r} must be a string such as 'FP32', got {excerpt(dtype)}")
    return _Input(name, shape, dtype)


def _check_count(inp: _Input, n: int, max_elements: int) -> None:
    if not 1 <= n <= max_elements:
        raise _bad(
            f"input {inp.name!r} holds {n} {'images' if inp.name == IMAGE_INPUT else 'tensors'}; this server "
            f"takes 1 to {max_elements} per request (--max-files)"
        )


def _tensor_batch(inp: _Input, engine: Engine, max_elements: int) -> list[Tensor]:
    """``input``: FP32 [N, C, H, W] at the model's input size, finite -> N model inputs."""
    c, s = engine.icfg.in_chans, engine.icfg.input_size
    if inp.datatype != "FP32":
        raise _bad(
            f"input {TENSOR_INPUT!r} must be FP32 (the model's preprocessed input), got {excerpt(inp.datatype)}"
        )
    if len(inp.shape) != 4 or inp.shape[1:] != [c, s, s]:
        raise _bad(f"input {TENSOR_INPUT!r} must have shape [N, {c}, {s}, {s}], got {excerpt(inp.shape)}")
    n = inp.shape[0]
    _check_count(inp, n, max_elements)
    count = n * c * s * s
    if inp.raw is not None:
        if len(inp.raw) != count * 4:
            raise _bad(
                f"binary_data_size of input {TENSOR_INPUT!r} is {len(inp.raw)} bytes; shape {inp.shape} in FP32 "
                f"is {count * 4}"
            )
        arr = np.frombuffer(inp.raw, dtype="<f4").astype(np.float32)  # a copy: the buffer is read-only
    else:
        try:
            arr = np.asarray(inp.data, dtype=np.float32)
        except (ValueError, TypeError, OverflowError):
            raise _bad(f"'data' of input {TENSOR_INPUT!r} must be numbers (a flat or nested list)") from None
        if arr.size != count:
            raise _bad(
                f"'data' of input {TENSOR_INPUT!r} holds {arr.size} numbers; shape {inp.shape} needs {count}"
            )
    if not np.isfinite(arr).all():
        raise _bad(f"input {TENSOR_INPUT!r} holds NaN or infinite values")
    return list(torch.from_numpy(arr.reshape(n, c, s, s)))


def _image_batch(inp: _Input, max_elements: int) -> list[tuple[str, bytes]]:
    """``image``: BYTES [N] (or [N, 1]) -> N (name, encoded image); base64 in JSON, raw in binary."""
    if inp.datatype != "BYTES":
        raise _bad(
            f"input {IMAGE_INPUT!r} must be BYTES (one encoded image per element), got {excerpt(inp.datatype)}"
        )
    if len(inp.shape) not in (1, 2) or inp.shape[1:] not in ([], [1]):
        raise _bad(f"input {IMAGE_INPUT!r} must have shape [N] (or [N, 1]), got {excerpt(inp.shape)}")
    n = inp.shape[0]
    _check_count(inp, n, max_elements)
    if inp.raw is not None:
        images = _unpack_bytes(inp.raw, n)
    else:
        data = inp.data
        if isinstance(data, list) and all(isinstance(d, list) and len(d) == 1 for d in data):
            data = [d[0] for d in data]  # nested as [[b64], [b64]] for shape [N, 1]
        if not isinstance(data, list) or len(data) != n:
            got = f"{len(data)} elements" if isinstance(data, list) else f"a {type(data).__name__}"
            raise _bad(f"'data' of input {IMAGE_INPUT!r} must be a list of {n} base64 strings, got {got}")
        images = [_b64(d, i) for i, d in enumerate(data)]
    return [(f"image {i}", raw) for i, raw in enumerate(images)]


def _b64(text: Any, i: int) -> bytes:
    if not isinstance(text, str):
        raise _bad(
            f"element {i} of input {IMAGE_INPUT!r} must be a base64 string, got a {type(text).__name__}"
        )
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(f"element {i} of input {IMAGE_INPUT!r} is not valid base64") from None


def _unpack_bytes(raw: bytes, n: int) -> list[bytes]:
    """The binary form of a BYTES tensor: each element its 4-byte little-endian length, then itself;
    exactly ``n`` elements and nothing after them."""
    out: list[bytes] = []
    at = 0
    while at < len(raw) and len(out) < n:
        if at + BYTES_PREFIX.size > len(raw):
            raise _bad(
                f"binary data of input {IMAGE_INPUT!r}: element {len(out)} is cut in its 4-byte length"
            )
        (size,) = BYTES_PREFIX.unpack_from(raw, at)
        at += BYTES_PREFIX.size
        if at + size > len(raw):
            raise _bad(
                f"binary data of input {IMAGE_INPUT!r}: element {len(out)} declares {size} bytes, "
                f"{len(raw) - at} remain"
            )
        out.append(raw[at : at + size])
        at += size
    if len(out) != n or at != len(raw):
        raise _bad(
            f"binary data of input {IMAGE_INPUT!r} holds {len(out)} elements"
            f"{f' and {len(raw) - at} bytes more' if at != len(raw) else ''}; shape [{n}] needs {n}"
        )
    return out


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _bad(f"{where} must be true or false, got {excerpt(value)}")
    return value


def _wanted_outputs(req: dict[str, Any]) -> tuple[list[_Wanted], int]:
    """The outputs to return (all, when the request names none) and K for the top-K outputs."""
    params = _params(req, "the request")
    binary = _flag(params.get("binary_data_output", False), "parameter binary_data_output")
    topk = params.get("topk", DEFAULT_TOPK)
    if type(topk) is not int or topk < 1:
        raise _bad(f"parameter topk must be a positive integer, got {excerpt(topk)}")
    raw = req.get("outputs")
    if raw is None:
        return [_Wanted(name, binary) for name in OUTPUT_NAMES], topk
    if not isinstance(raw, list) or not all(isinstance(o, dict) for o in raw):
        raise _bad(f"'outputs' must be a list of objects with a name (one of {', '.join(OUTPUT_NAMES)})")
    wanted = []
    for o in raw:
        name = o.get("name")
        if name not in OUTPUT_NAMES:
            raise _bad(f"unknown output {excerpt(name)}; this model's outputs: {', '.join(OUTPUT_NAMES)}")
        p = _params(o, f"output {name!r}")
        k = p.get("classification", 0)
        if type(k) is not int or k < 0 or (k and name != "probabilities"):
            raise _bad(
                f"classification is a positive integer on output 'probabilities' only, got {excerpt(k)} on {name!r}"
            )
        wanted.append(
            _Wanted(name, _flag(p.get("binary_data", binary), f"binary_data of output {name!r}"), k)
        )
    return wanted, topk


def _output_arrays(probs: Tensor, classes: list[str], topk: int) -> dict[str, tuple[str, np.ndarray]]:
    top = probs.topk(min(topk, len(classes)), dim=1)
    labels = [[classes[i] for i in row] for row in top.indices.tolist()]
    return {
        "probabilities": ("FP32", probs.numpy().astype(np.float32)),
        "top_labels": ("BYTES", np.array(labels, dtype=object).reshape(top.indices.shape)),
        "top_indices": ("INT64", top.indices.numpy().astype(np.int64)),
        "top_probabilities": ("FP32", top.values.numpy().astype(np.float32)),
    }


def _classification(probs: Tensor, classes: list[str], k: int) -> np.ndarray:
    """Triton's classification extension: "prob:index:label" for the top ``k`` of each row."""
    top = probs.topk(min(k, len(classes)), dim=1)
    rows = [
        [f"{p:f}:{i}:{classes[i]}" for p, i in zip(ps, idx, strict=True)]
        for ps, idx in zip(top.values.tolist(), top.indices.tolist(), strict=True)
    ]
    return np.array(rows, dtype=object).reshape(top.indices.shape)


def _response(
    engine: Engine, req: dict[str, Any], probs: Tensor, wanted: list[_Wanted], topk: int
) -> tuple[dict[str, Any], list[bytes]]:
    """``$inference_response`` and the binary data of the outputs returned binary, in order."""
    arrays = _output_arrays(probs, engine.classes, topk)
    outputs, blobs = [], []
    for w in wanted:
        dtype, arr = (
            ("BYTES", _classification(probs, engine.classes, w.classification))
            if w.classification
            else arrays[w.name]
        )
        out: dict[str, Any] = {"name": w.name, "datatype": dtype, "shape": list(arr.shape)}
        if w.binary:
            blob = _to_bytes(dtype, arr)
            out["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            out["data"] = [str(v) for v in arr.flat] if dtype == "BYTES" else arr.ravel().tolist()
        outputs.append(out)
    head: dict[str, Any] = {"model_name": engine.name, "model_version": VERSION, "outputs": outputs}
    if "id" in req:
        head["id"] = req["id"] if isinstance(req["id"], str) else str(req["id"])
    return head, blobs


def _to_bytes(dtype: str, arr: np.ndarray) -> bytes:
    if dtype == "BYTES":
        parts = [str(v).encode() for v in arr.flat]
        return b"".join(BYTES_PREFIX.pack(len(p)) + p for p in parts)
    return arr.astype("<f4" if dtype == "FP32" else "<i8").tobytes()


def _encode(head: dict[str, Any], blobs: list[bytes]) -> Response:
    text = json.dumps(head, allow_nan=False).encode()
    if not blobs:
        return Response(text, media_type="application/json")
    return Response(
        text + b"".join(blobs), media_type="application/octet-stream", headers={HEADER_LENGTH: str(len(text))}
    )
