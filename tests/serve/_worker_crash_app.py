"""A tiny ASGI app factory for tests/serve/test_worker_crash.py: what ``run_workers`` supervises there
in place of ``worker_app`` (which builds a model: tens of seconds per worker on a busy machine). Every
HTTP request gets 200 with the worker's pid as the body; ``$CRASH_APP_FAIL`` set: the factory exits
with uvicorn's startup-failure status, as ``worker_app`` does when its model cannot be built."""

from __future__ import annotations

import os
import sys
from typing import Any


def app() -> Any:
    from uvicorn.config import STARTUP_FAILURE

    if os.environ.get("CRASH_APP_FAIL"):
        print(f"error: worker {os.getpid()} could not start: told to fail", file=sys.stderr, flush=True)
        sys.exit(STARTUP_FAILURE)
    pid = str(os.getpid()).encode()

    async def serve(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                kind = msg["type"].rsplit(".", 1)[-1]  # startup / shutdown
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": pid})

    return serve
