"""``inceptionnet serve``: an HTTP inference server with dynamic batching and a page that shows what
the network sees (docs/SERVING.md).

    inceptionnet serve --model googlenet_small --weights fashion_mnist
    curl -F file=@shirt.png http://127.0.0.1:8000/v1/predict
    open http://127.0.0.1:8000/

FastAPI on uvicorn, bound to loopback unless --host says otherwise. SIGTERM / Ctrl-C stop accepting
connections, let the requests in flight finish, then drain the batch queue.
"""

from __future__ import annotations

import argparse
import errno
import socket
import sys

from ..errors import UsageError
from ._args import add_image_limit_args, add_model_args, add_onnx_arg, check_empty_flags


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
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    return p


def check_args(args: argparse.Namespace) -> None:
    """Every flag on its own, then the flags against each other: one ``error:`` line before anything
    is loaded or bound."""
    check_empty_flags(
        args, "--checkpoint", "--model", "--weights", "--onnx", "--device", "--host", "--calibration"
    )
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


def main(args: argparse.Namespace) -> int:
    check_args(args)
    try:
        import uvicorn

        from ..serve.app import ServeConfig, create_app
    except ImportError as e:
        raise UsageError(f"serve needs the 'serve' extra: pip install 'inceptionnet[serve]' ({e})") from None
    from ..checkpoint import ModelSource
    from ..runtime import resolve_device
    from ..serve.engine import open_engine

    source = ModelSource.from_args(args, exported_verb="serves")
    sock = bound_socket(args.host, args.port)  # before loading: a port in use fails fast
    engine = open_engine(
        source, backend=args.backend, dtype=args.dtype, max_batch=args.max_batch, device=resolve_device(args.device),
        allow_nan=args.allow_nan, max_pixels=args.max_pixels, calibration=args.calibration,
        max_side=args.max_side,
    )  # fmt: skip
    cfg = ServeConfig(
        max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue, timeout_s=args.timeout,
        max_body_bytes=int(args.max_body_mb * 2**20), max_files=args.max_files, body_timeout_s=args.body_timeout,
    )  # fmt: skip
    app = create_app(engine, cfg)
    host, port = sock.getsockname()[:2]
    where = f"[{host}]" if ":" in host else host
    print(
        f"serving {engine.name} (weights {engine.weights_id}; {engine.backend}, {engine.dtype}) on "
        f"http://{where}:{port}/  (max batch {args.max_batch}, wait {args.max_wait_ms:g} ms)",
        file=sys.stderr, flush=True,
    )  # fmt: skip
    if host not in ("127.0.0.1", "::1", "localhost"):
        print(f"note: --host {args.host} accepts connections from other machines; there is no authentication",
              file=sys.stderr)  # fmt: skip
    config = uvicorn.Config(app, log_level=args.log_level, timeout_graceful_shutdown=args.timeout + 5)
    uvicorn.Server(config).run(sockets=[sock])
    return 0
