"""The FastAPI app: ``create_app(engine, ServeConfig(...))``.

    POST /v1/predict   images (multipart field ``file``, repeatable; or JSON ``{"image": b64}`` /
                       ``{"images": [b64, ...]}``) -> top-k per image, the model name and weights id;
                       options ``topk`` and ``invert`` as query parameters, form fields or JSON keys
    POST /v1/explain   one image -> top-5, Grad-CAM PNG of ``target`` (index or class name; default
                       top-1), and for GoogLeNet-family models the branch energies of ``block``
    POST /v1/feature_maps  one image and ``layer`` -> that layer's channels as a gray grid PNG
                       (analysis.feature_maps); GET /v1/feature_maps/layers: the layer names
    GET  /v1/models    the model: input config, classes, backend, blocks
    GET  /healthz      liveness: {"status": "ok"}; 503 with {"status", "error"} when the batch worker
                       has stopped or one batch has run longer than --timeout (200 while warming up
                       and draining: the process is alive until it exits)
    GET  /readyz       readiness: {"status": "ready"}; 503 with {"status", "error"} also while the
                       warm-up batch has not run and while draining after SIGTERM (``serving_problem``)
    GET  /metrics      Prometheus text: requests, latency histogram, batch sizes, queue length (all
                       workers' together under --workers N)
    GET  /             the page (static/, served from the package)
    /v2/...            the Open Inference Protocol v2 (KServe / Triton), REST: serve/oip.py

With API keys (``ServeConfig.api_keys``; serve/auth.py) the routes that run or describe the model
need ``Authorization: Bearer KEY``; health, readiness, /metrics and the page stay open.

Every error is JSON ``{"error": "..."}`` with a 4xx status (5xx: the server's own fault); no request
can stop the server: a failing batch fails its requests only (500 naming the problem, e.g. "the model
returned 1 rows for a batch of 3"), and a body that does not arrive within --body-timeout is cut
off (408, connection closed).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
import logging
import os
import re
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic_core import to_json
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ImageReadError, NonFiniteError, UsageError, excerpt, first_line
from .auth import require_key
from .batching import Batcher, BatchError, ClosingError, QueueFullError, WorkerGoneError
from .engine import Engine, ImageTooLargeError
from .oip import oip_router

log = logging.getLogger("inceptionnet.serve")

STATIC = Path(__file__).parent / "static"  # package data (pyproject's package-data)
ROUTES = ("/", "/v1/predict", "/v1/explain", "/v1/feature_maps", "/v1/feature_maps/layers", "/v1/models",
          "/healthz", "/readyz", "/metrics")  # fmt: skip
# the v2 routes open without a key: the protocol's health checks (liveness, readiness, model readiness)
OPEN_V2 = re.compile(r"/v2/health/(live|ready)|/v2/models/[^/]+(/versions/[^/]+)?/ready")
WORKER_HEADER = "X-Inceptionnet-Worker"  # the worker's pid, under --workers N > 1
FIELDS = {"file", "topk", "invert", "target", "block", "layer"}  # the form fields / JSON keys we read
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass
class ServeConfig:
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 256  # images waiting; beyond: 503 + Retry-After
    timeout_s: float = 30.0  # per request, queueing included; beyond: 504
    max_body_bytes: int = 20 * 2**20
    max_files: int = 32  # images per request
    max_explain: int = 2  # explanations in flight (each a forward + backward of the eager model)
    body_timeout_s: float = 30.0  # the whole body must arrive within this, from its headers; beyond: 408
    warm_up: bool = False  # ready only after one batch has run (the CLI sets it; False: ready at once)
    drain_s: float = 0.0  # after SIGTERM: not ready, still serving, for this long; then uvicorn's shutdown
    api_keys: tuple[str, ...] = ()  # with keys, the model's routes need 'Authorization: Bearer KEY'
    workers: int = 1  # > 1: responses name their worker (WORKER_HEADER), metrics are summed over workers


class BodyLimit:
    """413 for a body over ``max_bytes``: from Content-Length before reading, and while reading a
    chunked body (the app never holds more than the limit). 408 for a body not complete within
    ``timeout_s`` of the request's arrival (a client dripping bytes holds no connection longer);
    both close the connection, since the rest of the body is never read."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float = 30.0) -> None:
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await _error(413, self._message(), CLOSE)(scope, receive, send)
            return
        seen, complete = 0, False
        deadline = time.monotonic() + self.timeout_s

        async def limited() -> Message:
            nonlocal seen, complete
            if complete:  # the body is in: what follows is the wait for a disconnect, not bounded here
                return await receive()
            try:
                msg = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise HTTPException(
                    408,
                    f"the request body did not arrive within {self.timeout_s:g} s (--body-timeout)",
                    CLOSE,
                ) from None
            seen += len(msg.get("body", b""))
            complete = msg["type"] != "http.request" or not msg.get("more_body", False)
            if seen > self.max_bytes:
                raise HTTPException(413, self._message(), CLOSE)
            return msg

        await self.app(scope, limited, send)

    def _message(self) -> str:
        return (
            f"the request body is over this server's limit of {self.max_bytes / 2**20:g} MiB (--max-body-mb)"
        )


class Metrics:
    """The app's Prometheus metrics, in a registry of its own (two apps in one process do not mix).
    Under ``--workers N`` (``$PROMETHEUS_MULTIPROC_DIR`` set by the parent) every worker writes its
    values there and ``text()`` sums them over the workers (prometheus_client's multiprocess mode)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.shared = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.queue_size: Callable[[], int] = lambda: 0
        r = self.registry
        self.requests = Counter("inceptionnet_requests", "HTTP requests", ["path", "status"], registry=r)
        self.latency = Histogram(
            "inceptionnet_request_seconds", "request latency", ["path"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.images = Counter("inceptionnet_images", "images classified", registry=r)
        self.batch_size = Histogram(
            "inceptionnet_batch_size", "images per model call", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )  # fmt: skip
        self.queue = Gauge(
            "inceptionnet_queue_images", "images waiting for a batch", registry=r, multiprocess_mode="livesum"
        )

    def watch_queue(self, size: Callable[[], int]) -> None:
        """The queue gauge reads ``size()``: at each scrape, or (shared) after each request."""
        self.queue_size = size
        if not self.shared:  # a callback is read by this process's registry only
            self.queue.set_function(size)

    def text(self) -> bytes:
        if not self.shared:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)

    def middleware(self, app: ASGIApp) -> ASGIApp:
        async def measured(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            path = scope["path"] if scope["path"] in ROUTES else "other"
            status = [500]
            t0 = time.perf_counter()

            async def tracked(msg: Message) -> None:
                if msg["type"] == "http.response.start":
                    status[0] = int(msg["status"])
                await send(msg)

            try:
                await app(scope, receive, tracked)
            finally:
                self.latency.labels(path).observe(time.perf_counter() - t0)
                self.requests.labels(path, str(status[0])).inc()
                if self.shared:
                    self.queue.set(self.queue_size())

        return measured


CLOSE = {"Connection": "close"}  # an answer sent before the whole body was read ends the connection


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    s = str(value).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off", ""):
        return False
    raise HTTPException(400, f"{name} must be true or false, got {excerpt(value)}")


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    try:
        n = int(str(value).strip())
    except ValueError:
        raise HTTPException(400, f"{name} must be an integer, got {excerpt(value)}") from None
    if not lo <= n <= hi:
        raise HTTPException(400, f"{name} must be between {lo} and {hi}, got {n}")
    return n


def _b64(text: Any, where: str) -> bytes:
    if not isinstance(text, str):
        raise HTTPException(400, f"{where} must be a base64 string, got {type(text).__name__}")
    if text.startswith("data:") and "," in text:  # a data: URL, as a browser's FileReader gives it
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(400, f"{where} is not valid base64") from None


async def read_request(request: Request, cfg: ServeConfig) -> tuple[list[tuple[str, bytes]], dict[str, Any]]:
    """(images as (name, bytes), options) from a multipart form or a JSON body; 400/415 otherwise."""
    options: dict[str, Any] = dict(request.query_params)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    images: list[tuple[str, bytes]] = []
    if ctype in (
        "multipart/form-data",
        "application/x-www-form-urlencoded",
    ):  # a urlencoded form has no files
        form = await request.form(max_files=cfg.max_files, max_fields=len(FIELDS) * 2)
        for key, value in form.multi_items():
            if key not in FIELDS:
                raise HTTPException(400, f"unknown form field {excerpt(key)}; send images as field 'file'")
            if key != "file":
                options[key] = value
            elif not isinstance(value, UploadFile):
                raise HTTPException(400, "form field 'file' must be a file upload, not a text value")
            else:
                images.append((value.filename or f"file{len(images)}", await value.read()))
    elif ctype == "application/json":
        images = await _read_json(request, cfg, options)
    else:
        got = excerpt(ctype) if ctype else "no type"
        raise HTTPException(415, f"send multipart/form-data (field 'file') or application/json, not {got}")
    if not images:
        raise HTTPException(
            400, 'no image: send multipart field \'file\' (repeatable) or JSON {"image": "<base64>"}'
        )
    _check_count(len(images), cfg)
    return images, options


def _check_count(n: int, cfg: ServeConfig) -> None:
    if n > cfg.max_files:
        raise HTTPException(
            413, f"{n} images in one request, over the limit of {cfg.max_files} (--max-files)"
        )


JSON_SHAPE = 'send {"image": "<base64>"} or {"images": ["<base64>", ...]}'


async def _read_json(request: Request, cfg: ServeConfig, options: dict[str, Any]) -> list[tuple[str, bytes]]:
    """The images of a JSON body (its options go into ``options``); one 400 line for anything else."""
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise HTTPException(400, f"the body is not valid JSON: {first_line(e)}; {JSON_SHAPE}") from None
    except RecursionError:
        raise HTTPException(
            400, f"the body is not valid JSON: it is nested too deeply; {JSON_SHAPE}"
        ) from None
    if not isinstance(body, dict):
        raise HTTPException(
            400, f"the JSON body must be an object, not a {type(body).__name__}: {JSON_SHAPE}"
        )
    unknown = set(body) - FIELDS - {"image", "images"}
    if unknown:
        raise HTTPException(400, f"unknown JSON key(s) {excerpt(sorted(unknown))}; {JSON_SHAPE}")
    if "image" in body and "images" in body:
        raise HTTPException(400, f"the JSON body has both 'image' and 'images': {JSON_SHAPE}, not both")
    raw = [body["image"]] if "image" in body else body.get("images", [])
    if not isinstance(raw, list):
        raise HTTPException(400, f"'images' must be a list of base64 strings, not a {type(raw).__name__}")
    _check_count(len(raw), cfg)  # before decoding any of them
    options.update({k: v for k, v in body.items() if k in FIELDS})
    return [(f"image{i}", _b64(v, f"image {i}")) for i, v in enumerate(raw)]


def decode_pool(threads: int | None = None) -> ThreadPoolExecutor:
    """The threads that decode uploads, ``threads`` of them (default: the model's intra-op threads,
    ``torch.get_num_threads()``, which ``serve --workers N`` sets to this worker's share of the cores).
    Not anyio's pool of 40: 32 clients would decode in 32 threads at once, each image's transform
    starting its own OpenMP team, all of them fighting the model thread for the same cores and the GIL."""
    n = max(1, threads or torch.get_num_threads())
    return ThreadPoolExecutor(max_workers=n, thread_name_prefix="inceptionnet-decode")


async def decode_all(
    engine: Engine, images: list[tuple[str, bytes]], invert: bool, pool: Executor | None = None
) -> list[Any]:
    """The model inputs of ``images``, decoded in ``pool`` (one hand-over per request; None:
    Starlette's thread pool); the first unreadable image a 400, a too large one a 413."""

    def decode() -> list[Any]:
        return [engine.decode(raw, name, invert) for name, raw in images]

    try:
        if pool is None:
            return await run_in_threadpool(decode)
        return await asyncio.get_running_loop().run_in_executor(pool, decode)
    except ImageTooLargeError as e:
        raise HTTPException(413, str(e)) from None
    except ImageReadError as e:
        raise HTTPException(400, first_line(e)) from None


def top_rows(probs: Any, classes: list[str], k: int) -> list[dict[str, Any]]:
    """The ``k`` most probable classes of one row of probabilities, most probable first."""
    return top_table(probs.unsqueeze(0), classes, k)[0]


def top_table(probs: Any, classes: list[str], k: int) -> list[list[dict[str, Any]]]:
    """``top_rows`` of every row of an N x classes batch, with one ``topk`` and one ``tolist`` for the
    batch (not a tensor element at a time)."""
    top = probs.topk(min(k, len(classes)), dim=1)
    return [
        [{"label": classes[i], "index": i, "prob": p} for p, i in zip(ps, ix, strict=True)]
        for ps, ix in zip(top.values.tolist(), top.indices.tolist(), strict=True)
    ]


def create_app(engine: Engine, cfg: ServeConfig | None = None) -> FastAPI:
    cfg = cfg or ServeConfig()
    metrics = Metrics()
    state: dict[str, Any] = {"explaining": 0, "warm": not cfg.warm_up}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        batcher = Batcher(
            engine.probabilities, max_batch=cfg.max_batch, max_wait_s=cfg.max_wait_ms / 1000,
            max_queue=cfg.max_queue, on_batch=metrics.batch_size.observe,
        )  # fmt: skip
        metrics.watch_queue(lambda: batcher.queued)
        batcher.start()
        state["batcher"] = _app.state.batcher = batcher
        state["decode_pool"] = pool = decode_pool()
        _drain_on_signals(state, cfg.drain_s)
        if cfg.warm_up:  # in the background: /healthz answers meanwhile, /readyz says "warming up"
            state["warm_task"] = asyncio.create_task(_warm_up(engine, batcher, state, cfg))
        try:
            yield
        finally:
            state["closing"] = True
            await batcher.close()  # uvicorn has let in-flight requests finish: this drains the queue
            pool.shutdown(wait=False)

    # no /docs: FastAPI's Swagger page loads its scripts from a CDN; /openapi.json stays
    app = FastAPI(title="inceptionnet", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.api_keys = tuple(cfg.api_keys)
    app.add_middleware(BodyLimit, max_bytes=cfg.max_body_bytes, timeout_s=cfg.body_timeout_s)
    app.add_middleware(_Wrap, wrap=metrics.middleware)
    if cfg.workers > 1:
        app.add_middleware(_Wrap, wrap=_worker_header)
    _add_error_handlers(app)
    _add_predict(app, engine, cfg, metrics, state)
    _add_explain(app, engine, cfg, state)

    _add_feature_maps(app, engine, cfg, state)
    app.include_router(oip_router(
        engine, max_elements=cfg.max_files, classify=functools.partial(classify, state, cfg, metrics),
        decode=lambda images: decode_all(engine, images, False, state.get("decode_pool")),
        problem=lambda: serving_problem(state, cfg, ready=True),
    ), dependencies=[Depends(_v2_key)] if cfg.api_keys else [])  # fmt: skip
    _add_health(app, engine, cfg, state, metrics)

    @app.get("/v1/models", dependencies=key_dependency(cfg))
    async def models() -> dict[str, Any]:
        return {"models": [engine.describe()]}

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    return app


def _add_health(
    app: FastAPI, engine: Engine, cfg: ServeConfig, state: dict[str, Any], metrics: Metrics
) -> None:
    """/healthz (liveness), /readyz (readiness) and /metrics: open, with or without API keys."""

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        problem = serving_problem(state, cfg)
        if problem is not None:
            status = "shutting down" if state.get("closing") else "unavailable"
            return JSONResponse({"status": status, "error": problem}, status_code=503)
        return JSONResponse({"status": "ok", "model": engine.name})

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        problem = serving_problem(state, cfg, ready=True)
        if problem is not None:
            return JSONResponse({"status": "not ready", "error": problem}, status_code=503)
        return JSONResponse({"status": "ready", "model": engine.name})

    @app.get("/metrics")  # open: scrapers poll it; it holds counts and latencies, no inputs or keys
    async def prometheus() -> Response:
        return Response(metrics.text(), media_type=CONTENT_TYPE_LATEST)


def key_dependency(cfg: ServeConfig) -> list[Any]:
    """The routes' ``dependencies``: ``require_key`` with API keys; none without (no dependency to
    solve on every request of a server that has no keys)."""
    return [Depends(require_key)] if cfg.api_keys else []


async def _v2_key(request: Request) -> None:
    """``require_key`` for the v2 routes except the protocol's health checks."""
    if not OPEN_V2.fullmatch(request.url.path):
        await require_key(request)


async def _warm_up(engine: Engine, batcher: Batcher, state: dict[str, Any], cfg: ServeConfig) -> None:
    """One full batch of blank inputs through the batcher and the model (first-call costs: thread
    pools, the allocator at the largest batch, lazy kernels); full, so that it runs at once instead of
    waiting --max-wait-ms for company. The server is ready once it has run; a failure keeps it not
    ready, naming it."""
    c, s = engine.icfg.in_chans, engine.icfg.input_size
    n = max(1, min(cfg.max_batch, cfg.max_queue - batcher.queued))  # nothing is queued yet: max_batch
    try:
        await asyncio.wait_for(batcher.submit([torch.zeros(c, s, s)] * n), cfg.timeout_s)
    except Exception as e:  # noqa: BLE001 - the model failed on a blank input: say so, stay not ready
        state["warm_error"] = f"the warm-up batch failed: {type(e).__name__}: {first_line(e)}"
        log.error("%s", state["warm_error"])
        return
    state["warm"] = True


def _drain_on_signals(state: dict[str, Any], drain_s: float) -> None:
    """SIGTERM / SIGINT mark the server draining (not ready) at once; uvicorn's own handler (stop
    accepting, finish the requests in flight) runs ``drain_s`` seconds later, so that a load balancer
    polling readiness stops sending first. A second signal goes to uvicorn at once. Only in the main
    thread (a TestClient runs the app elsewhere; uvicorn restores its handlers on exit)."""
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(signum: int, frame: Any, previous: Callable[..., Any] = previous) -> None:
            first = not state.get("draining")
            state["draining"] = True
            if first and drain_s > 0:
                loop.call_soon_threadsafe(loop.call_later, drain_s, previous, signum, None)
            else:
                previous(signum, frame)

        signal.signal(sig, handler)


def _worker_header(app: ASGIApp) -> ASGIApp:
    pid = str(os.getpid()).encode()

    async def named(scope: Scope, receive: Receive, send: Send) -> None:
        async def add(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                msg["headers"] = [*msg.get("headers", []), (WORKER_HEADER.lower().encode(), pid)]
            await send(msg)

        await app(scope, receive, add if scope["type"] == "http" else send)

    return named


def serving_problem(state: dict[str, Any], cfg: ServeConfig, *, ready: bool = False) -> str | None:
    """None while the app can answer predictions; else why not, in one line. Liveness (/healthz):
    shutting down, the batch worker not started or stopped, or a batch in the model for longer than
    the request timeout (every request would get 504). Readiness (``ready=True``: /readyz,
    /v2/health/ready) adds: draining after SIGTERM, and warming up (the first batch has not run)."""
    if state.get("closing"):
        return "the server is shutting down"
    batcher = state.get("batcher")
    if batcher is None:
        return "the batch worker has not started"
    problem: str | None = batcher.problem(stuck_after_s=cfg.timeout_s)
    if problem is not None or not ready:
        return problem
    if state.get("draining"):
        return "draining: the server got SIGTERM and finishes the requests in flight"
    if not state.get("warm"):
        return state.get("warm_error") or "warming up: the first batch has not run yet"
    return None


class _Wrap:
    """``app.add_middleware`` for a plain ASGI wrapper function."""

    def __init__(self, app: ASGIApp, wrap: Callable[[ASGIApp], ASGIApp]) -> None:
        self.inner = wrap(app)

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        return self.inner(scope, receive, send)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(_r: Request, e: HTTPException) -> JSONResponse:
        return _error(e.status_code, str(e.detail), dict(e.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def invalid(_r: Request, e: RequestValidationError) -> JSONResponse:
        return _error(422, "; ".join(str(err.get("msg")) for err in e.errors()) or "invalid request")

    @app.exception_handler(Exception)
    async def internal(_r: Request, e: Exception) -> JSONResponse:
        log.exception("internal error")
        return _error(500, f"internal error: {first_line(e)}")


async def classify(state: dict[str, Any], cfg: ServeConfig, metrics: Metrics, xs: list[Any]) -> torch.Tensor:
    """Probabilities of model inputs ``xs`` through the batcher (/v1/predict and /v2 infer); what can
    go wrong as an HTTPException: 503 busy / shutting down / no worker, 504 timeout, 500 a failed batch."""
    try:
        probs: torch.Tensor = await asyncio.wait_for(state["batcher"].submit(xs), cfg.timeout_s)
    except QueueFullError as e:
        raise HTTPException(503, f"busy: {e}; retry shortly", headers={"Retry-After": "1"}) from None
    except ClosingError:
        raise HTTPException(503, "the server is shutting down", headers={"Retry-After": "5"}) from None
    except WorkerGoneError as e:
        raise HTTPException(503, str(e)) from None
    except TimeoutError:
        raise HTTPException(504, f"no answer within {cfg.timeout_s:g} s (--timeout); retry later") from None
    except (NonFiniteError, BatchError) as e:
        log.error("batch failed: %s", e)
        raise HTTPException(500, str(e)) from None
    except Exception as e:  # noqa: BLE001 - the model failed on this batch: its requests fail, the server lives
        log.exception("batch failed")
        raise HTTPException(500, f"the model failed on this batch: {first_line(e)}") from None
    metrics.images.inc(len(xs))
    return probs


def _add_predict(
    app: FastAPI, engine: Engine, cfg: ServeConfig, metrics: Metrics, state: dict[str, Any]
) -> None:
    @app.post("/v1/predict", dependencies=key_dependency(cfg))
    async def predict(request: Request) -> Response:
        images, options = await read_request(request, cfg)
        topk = _int(options.get("topk", 5), "topk", 1, 10**6)  # more than the classes: all of them
        invert = _flag(options.get("invert", False), "invert")
        xs = await decode_all(engine, images, invert, state.get("decode_pool"))
        probs = await classify(state, cfg, metrics, xs)
        results = [
            {"file": name, "top": top}
            for (name, _), top in zip(images, top_table(probs, engine.classes, topk), strict=True)
        ]
        payload = {
            "model": engine.name,
            "weights": engine.weights_id,
            "backend": engine.backend,
            "results": results,
        }
        # the bytes FastAPI would send for the dict (pydantic's JSON encoder), without validating it first
        return Response(to_json(payload), media_type="application/json")


def _add_explain(app: FastAPI, engine: Engine, cfg: ServeConfig, state: dict[str, Any]) -> None:
    from .explain import default_block, explain, four_branch_blocks, overlay, png_bytes

    def data_url(rgb: Any) -> str:
        return "data:image/png;base64," + base64.b64encode(png_bytes(rgb)).decode()

    def target_index(value: Any) -> int | None:
        if value is None or str(value).strip() == "":
            return None
        if str(value) in engine.classes:
            return engine.classes.index(str(value))
        return _int(value, "target", 0, len(engine.classes) - 1)

    @app.post("/v1/explain", dependencies=key_dependency(cfg))
    async def explain_image(request: Request) -> dict[str, Any]:
        name, x, options = await one_image(request, engine, cfg, "/v1/explain")
        target = target_index(options.get("target"))
        block = options.get("block", default_block(four_branch_blocks(engine.model)))
        block = None if block in (None, "", "none") else str(block)
        e = await explaining(
            state, cfg, "explanation", explain, engine.model, engine.icfg, x, target=target, block=block
        )
        return {
            "model": engine.name, "weights": engine.weights_id, "file": name,
            "top": top_rows(torch.from_numpy(e.probs), engine.classes, 5),
            "target": {"index": e.target, "label": engine.classes[e.target]}, "cam_layer": e.cam_layer,
            "input_png": data_url(overlay(e.image, e.cam, alpha=0.0)), "cam_png": data_url(overlay(e.image, e.cam)),
            "block": e.block,
            "branches": [
                {"label": lab, "share": share, "png": data_url(overlay(e.image, m))}
                for lab, share, m in zip(e.branch_labels, e.branch_shares, e.branch_maps if e.branch_maps is not None else [], strict=True)
            ],
        }  # fmt: skip


SHAPE_HEADER = "X-Feature-Maps-Shape"  # /v1/feature_maps: the layer's output shape, "C x H x W"


def _add_feature_maps(app: FastAPI, engine: Engine, cfg: ServeConfig, state: dict[str, Any]) -> None:
    """POST /v1/feature_maps (one image and ``layer`` -> the layer's channels as a gray grid PNG) and
    GET /v1/feature_maps/layers (the names)."""
    from ..analysis.feature_maps import feature_layer_names
    from .explain import default_layer, layer_grid, png_bytes

    layers = feature_layer_names(engine.model) if engine.model is not None else []

    def chosen(options: dict[str, Any]) -> str:
        name = str(options.get("layer", "")).strip()
        if name not in layers:
            said = f"{excerpt(name)} is not a layer of this model" if name else "no layer given"
            raise HTTPException(
                400, f"{said}: send field 'layer', one of {', '.join(layers)} (GET /v1/feature_maps/layers)"
            )
        return name

    @app.get("/v1/feature_maps/layers", dependencies=key_dependency(cfg))
    async def layer_names() -> dict[str, Any]:
        default = default_layer(engine.model) if engine.model is not None else None
        return {"model": engine.name, "layers": layers, "default": default}

    @app.post("/v1/feature_maps", dependencies=key_dependency(cfg))
    async def grid(request: Request) -> Response:
        _, x, options = await one_image(request, engine, cfg, "/v1/feature_maps")
        layer = chosen(options)
        r = await explaining(state, cfg, "feature maps", layer_grid, engine.model, x, layer)
        pic = (r.grid * 255).round().astype(np.uint8)
        c, h, w = r.maps.shape
        return Response(png_bytes(pic), media_type="image/png", headers={SHAPE_HEADER: f"{c} x {h} x {w}"})


async def one_image(
    request: Request, engine: Engine, cfg: ServeConfig, route: str
) -> tuple[str, Any, dict[str, Any]]:
    """(file name, model input, options) of a request for one image to a route that needs the eager
    model (/v1/explain, /v1/feature_maps): 409 for an ONNX model, the upload and size checks of
    ``read_request`` and ``decode_all``, 400 for more than one image."""
    if engine.model is None:
        raise HTTPException(
            409, f"{route} needs the PyTorch model: serve --checkpoint or --model/--weights, not --onnx"
        )
    images, options = await read_request(request, cfg)
    if len(images) != 1:
        raise HTTPException(400, f"{route} takes one image, got {len(images)}")
    (x,) = await decode_all(engine, images, _flag(options.get("invert", False), "invert"))
    return images[0][0], x, options


async def explaining(
    state: dict[str, Any], cfg: ServeConfig, what: str, fn: Callable[..., Any], *args: Any, **kw: Any
) -> Any:
    """``fn(*args, **kw)`` in a thread, at most ``cfg.max_explain`` at once (503 beyond), within
    --timeout (504); its NonFiniteError a 500, its UsageError (a block, layer or class the model
    does not have) a 400."""
    if state["explaining"] >= cfg.max_explain:
        raise HTTPException(503, "busy explaining other images; retry shortly", headers={"Retry-After": "1"})
    state["explaining"] += 1
    try:
        return await asyncio.wait_for(run_in_threadpool(fn, *args, **kw), cfg.timeout_s)
    except NonFiniteError as err:
        raise HTTPException(500, str(err)) from None
    except UsageError as err:
        raise HTTPException(400, str(err)) from None
    except TimeoutError:
        raise HTTPException(504, f"no {what} within {cfg.timeout_s:g} s (--timeout)") from None
    finally:
        state["explaining"] -= 1
