"""``inceptionnet serve``: an HTTP inference server with dynamic batching and a page that shows what
the network sees (docs/SERVING.md).

    inceptionnet serve --model googlenet_small --weights fashion_mnist
    curl -F file=@shirt.png http://127.0.0.1:8000/v1/predict
    open http://127.0.0.1:8000/

FastAPI on uvicorn, bound to loopback unless --host says otherwise. SIGTERM / Ctrl-C: /readyz turns
503 at once; --drain-seconds later the server stops accepting connections, lets the requests in flight
finish, then drains the batch queue. --workers N: N processes on one port (uvicorn's supervisor, which
replaces a worker that dies; a worker that cannot start stops the server, exit status 2), each with its
model, built from this command's flags again (``worker_app``).
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import os
import shutil
import socket
import sys
import tempfile
from typing import Any

from ..errors import UsageError, first_line
from ._args import add_image_limit_args, add_model_args, add_onnx_arg, check_empty_flags

KEYS_ENV = "INCEPTIONNET_API_KEYS"  # serve/auth.py's ENV (not imported here: --help needs no FastAPI)
ARGS_ENV = "INCEPTIONNET_SERVE_ARGS"  # the parent's flags, as JSON, for worker_app in each worker
MAX_WORKERS = 64
WORKER_APP = "inceptionnet.commands.serve:worker_app"  # what each --workers process runs (an app factory)


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    from ..serve.engine import backend_choices, dtype_choices

    p = argparse.ArgumentParser(
        description="Serve a model over HTTP, with a page that explains it.", add_help=add_help
    )
    add_model_args(p)
    add_onnx_arg(p, "an exported .onnx file (dynamic batch), run with ONNX Runtime")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    p.add_argument("--max-batch", type=int, default=32, help="most images per model call (default 32)")
    p.add_argument(
        "--max-wait-ms", type=float, default=5.0,
        help="how long the first queued image waits for others to join its batch (default 5)",
    )  # fmt: skip
    p.add_argument(
        "--backend", default="auto", choices=backend_choices(), help="the fast path's backend (default auto)"
    )
    p.add_argument(
        "--dtype", default="fp32", choices=list(dtype_choices()), help="the fast path's dtype (default fp32)"
    )
    p.add_argument(
        "--calibration", default=None,
        help="images the int8 dtype is calibrated on (the fast path's calibration, e.g. fashion_mnist:train)",
    )  # fmt: skip
    p.add_argument(
        "--max-queue", type=int, default=256, help="images waiting at most; beyond: HTTP 503 (default 256)"
    )
    p.add_argument(
        "--timeout", type=float, default=30.0, help="seconds per request, queueing included (default 30)"
    )
    p.add_argument("--max-body-mb", type=float, default=20.0, help="request body limit in MiB (default 20)")
    p.add_argument(
        "--body-timeout", type=float, default=30.0,
        help="seconds a request body may take to arrive in full; beyond: HTTP 408, connection closed (default 30)",
    )  # fmt: skip
    p.add_argument("--max-files", type=int, default=32, help="images per request at most (default 32)")
    add_image_limit_args(p, max_pixels=16_000_000)  # --max-pixels / --max-side, checked from the header
    p.add_argument(
        "--workers", type=int, default=1,
        help="server processes sharing the port, each with its own model and batcher (default 1)",
    )  # fmt: skip
    p.add_argument(
        "--drain-seconds", type=float, default=0.0,
        help="after SIGTERM, keep serving this long with /readyz at 503 before closing the port, so a load "
        "balancer stops sending first (default 0)",
    )  # fmt: skip
    p.add_argument(
        "--api-key-file", default=None,
        help="API keys, one a line: the model's routes then need 'Authorization: Bearer KEY' "
        f"(default: ${KEYS_ENV}, comma-separated, or no keys)",
    )  # fmt: skip
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    return p


def check_args(args: argparse.Namespace) -> None:
    """Every flag on its own, then the flags against each other: one ``error:`` line before anything
    is loaded or bound."""
    check_empty_flags(
        args, "--checkpoint", "--model", "--weights", "--onnx", "--device", "--host", "--calibration",
        "--api-key-file",
    )  # fmt: skip
    if not 1 <= args.workers <= MAX_WORKERS:
        raise UsageError(f"--workers must be between 1 and {MAX_WORKERS}, got {args.workers}")
    if not 0 <= args.drain_seconds < float("inf"):
        raise UsageError(f"--drain-seconds must be 0 or more, got {args.drain_seconds}")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {args.port}")
    for flag, value, lo in (("--max-batch", args.max_batch, 1), ("--max-queue", args.max_queue, 1),
                            ("--max-files", args.max_files, 1), ("--max-pixels", args.max_pixels, 1)):  # fmt: skip
        if value < lo:
            raise UsageError(f"{flag} must be at least {lo}, got {value}")
    for flag, value in (
        ("--max-wait-ms", args.max_wait_ms),
        ("--timeout", args.timeout),
        ("--max-body-mb", args.max_body_mb),
        ("--body-timeout", args.body_timeout),
    ):
        if not 0 <= value < float("inf") or (flag != "--max-wait-ms" and value == 0):
            raise UsageError(f"{flag} must be a positive number, got {value}")
    check_combinations(args)


def check_combinations(args: argparse.Namespace) -> None:
    """Flags that each make sense but not together (a limit that can never be reached, a wait that
    outlasts the request, an option the chosen model ignores)."""
    if args.max_queue < args.max_files:
        raise UsageError(
            f"--max-queue {args.max_queue} is below --max-files {args.max_files}: a full request would never fit"
        )
    if args.max_queue < args.max_batch:
        raise UsageError(
            f"--max-batch {args.max_batch} is above --max-queue {args.max_queue}: a batch could never fill; "
            "lower --max-batch or raise --max-queue"
        )
    if args.max_wait_ms / 1000 >= args.timeout:
        raise UsageError(
            f"--max-wait-ms {args.max_wait_ms:g} is not below --timeout {args.timeout:g} s: a lone request "
            "would time out while waiting for its batch; lower --max-wait-ms or raise --timeout"
        )
    if args.max_body_mb * 2**20 < 1024:
        raise UsageError(f"--max-body-mb {args.max_body_mb:g} is under 1 KiB: no image would fit")
    if args.calibration is not None and args.dtype != "int8":
        raise UsageError(
            f"--calibration calibrates --dtype int8 only (not {args.dtype}): drop it or add --dtype int8"
        )
    if args.onnx is not None:
        ignored = [f for f, given in (("--device", args.device != "cpu"), ("--calibration", args.calibration),
                                      ("--backend", args.backend not in ("auto", "onnxruntime")),
                                      ("--dtype", args.dtype != "fp32")) if given]  # fmt: skip
        if ignored:
            raise UsageError(f"--onnx runs in ONNX Runtime on the CPU, in fp32: drop {', '.join(ignored)}")


def bound_socket(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a port in use is one clear line (uvicorn would log
    a traceback-like message and exit 1)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise UsageError(f"--host {host!r} is not an address of this machine ({e.strerror})") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        hint = "; stop the other server or choose another --port" if e.errno == errno.EADDRINUSE else ""
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror}{hint}") from None
    sock.listen(2048)
    return sock


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def build_app(args: argparse.Namespace) -> Any:
    """The model opened from the flags and the app around it (the one process, or one worker)."""
    from ..checkpoint import ModelSource
    from ..runtime import resolve_device
    from ..serve.app import ServeConfig, create_app
    from ..serve.auth import read_keys
    from ..serve.engine import open_engine

    keys = read_keys(args.api_key_file)
    threads = share_cores(args.workers)
    engine = open_engine(
        ModelSource.from_args(args, exported_verb="serves"), backend=args.backend, dtype=args.dtype,
        max_batch=args.max_batch, device=resolve_device(args.device), allow_nan=args.allow_nan,
        max_pixels=args.max_pixels, calibration=args.calibration, max_side=args.max_side,
    )  # fmt: skip
    cfg = ServeConfig(
        max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue, timeout_s=args.timeout,
        max_body_bytes=int(args.max_body_mb * 2**20), max_files=args.max_files, body_timeout_s=args.body_timeout,
        warm_up=True, drain_s=args.drain_seconds, api_keys=keys, workers=args.workers,
    )  # fmt: skip
    worker = f"worker {os.getpid()}: " if args.workers > 1 else ""
    print(
        f"{worker}serving {engine.name} (weights {engine.weights_id}; {engine.backend}, {engine.dtype}; "
        f"max batch {args.max_batch}, wait {args.max_wait_ms:g} ms; {threads} threads"
        f"{'; API keys required' if keys else ''})",
        file=sys.stderr, flush=True,
    )  # fmt: skip
    return create_app(engine, cfg)


def share_cores(workers: int, environ: Any = os.environ) -> int:
    """The model's intra-op threads in this process: with ``--workers N`` > 1, its share of the cores
    it may run on (at least 1), so that N workers do not each start one thread per core and fight
    over them (unless ``$OMP_NUM_THREADS`` says otherwise); one worker keeps torch's default.
    ONNX Runtime and OpenVINO take the same number (``torch.get_num_threads()``)."""
    import torch

    if workers > 1 and not environ.get("OMP_NUM_THREADS"):
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        torch.set_num_threads(max(1, cores // workers))
    return torch.get_num_threads()


def worker_app() -> Any:
    """uvicorn's app factory in each ``--workers`` process: the parent's flags (``$INCEPTIONNET_SERVE_ARGS``)
    and the model built here. A worker that cannot build its app exits with uvicorn's startup-failure
    status, which stops the whole server instead of restarting the worker forever."""
    from uvicorn.config import STARTUP_FAILURE

    try:
        return build_app(argparse.Namespace(**json.loads(os.environ[ARGS_ENV])))
    except Exception as e:  # noqa: BLE001 - any failure here would repeat in every replacement
        print(f"error: worker {os.getpid()} could not start: {first_line(e)}", file=sys.stderr, flush=True)
        sys.exit(STARTUP_FAILURE)


def warn_if_open(host: str, flag_host: str, keys: bool) -> None:
    if is_loopback(host):
        return
    if keys:
        print(f"note: --host {flag_host} accepts connections from other machines; the model's routes need an "
              "API key", file=sys.stderr)  # fmt: skip
    else:
        print(f"warning: --host {flag_host} accepts connections from other machines and no API key is set: "
              f"anyone who can reach this port can use the model; give --api-key-file FILE (or set ${KEYS_ENV})",
              file=sys.stderr, flush=True)  # fmt: skip


def run_workers(args: argparse.Namespace, sock: socket.socket, app: str = WORKER_APP) -> int:
    """``--workers N``: uvicorn's supervisor over N processes sharing ``sock``, each running the app
    factory ``app``; their metrics summed in a temporary folder (prometheus_client's multiprocess
    mode). SIGTERM goes to every worker. A worker that dies is replaced (every 0.5 s the supervisor
    looks); one that exits with uvicorn's startup-failure status stops them all: ``UsageError``."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors.multiprocess import Multiprocess

    plain = {k: v for k, v in vars(args).items() if isinstance(v, str | int | float | bool | type(None))}
    metrics_dir = tempfile.mkdtemp(prefix="inceptionnet-metrics-")
    os.environ[ARGS_ENV] = json.dumps(plain)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # read by each worker's prometheus_client
    config = uvicorn.Config(
        app, factory=True, workers=args.workers, log_level=args.log_level,
        timeout_graceful_shutdown=int(args.timeout + 5), timeout_worker_healthcheck=30,
    )  # fmt: skip
    supervisor = Multiprocess(config, sockets=[sock])
    try:
        supervisor.run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        raise UsageError("a worker could not start (its error is above); the server stopped")
    return 0


def main(args: argparse.Namespace) -> int:
    check_args(args)
    try:
        import uvicorn

        from ..serve.app import create_app  # noqa: F401 - the serve extra, checked before binding
        from ..serve.auth import read_keys
    except ImportError as e:
        raise UsageError(f"serve needs the 'serve' extra: pip install 'inceptionnet[serve]' ({e})") from None
    from ..checkpoint import ModelSource

    ModelSource.from_args(args, exported_verb="serves")  # a wrong model flag: one line, before binding
    keys = read_keys(args.api_key_file)
    sock = bound_socket(args.host, args.port)  # before loading: a port in use fails fast
    host, port = sock.getsockname()[:2]
    where = f"[{host}]" if ":" in host else host
    print(f"listening on http://{where}:{port}/ ({args.workers} worker{'s' if args.workers > 1 else ''})",
          file=sys.stderr, flush=True)  # fmt: skip
    warn_if_open(host, args.host, bool(keys))
    if args.workers > 1:
        return run_workers(args, sock)
    app = build_app(args)
    config = uvicorn.Config(app, log_level=args.log_level, timeout_graceful_shutdown=args.timeout + 5)
    uvicorn.Server(config).run(sockets=[sock])
    return 0
