"""API keys: ``serve --api-key-file FILE`` or ``$INCEPTIONNET_API_KEYS`` (comma-separated).

``read_keys`` reads them once, when the server starts (one ``error:`` line for a file that is missing,
empty or holds something that cannot be a key; the line never shows a key). ``require_key`` is the
FastAPI dependency of every route that runs or describes the model (``/v1/predict``, ``/v1/explain``,
``/v1/models``, ``/v2`` metadata and infer): with keys set, a request needs ``Authorization: Bearer
KEY`` or gets 401 with ``WWW-Authenticate: Bearer``. The token is compared with every key by
``hmac.compare_digest`` (constant time, and no early exit on the first match, so the time says nothing
about which key or how much of one matched). Keys are never logged or echoed. Health routes stay open.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from pathlib import Path

from fastapi import Request
from starlette.exceptions import HTTPException

from ..errors import UsageError

ENV = "INCEPTIONNET_API_KEYS"
MAX_KEY_FILE_BYTES = 1 << 20  # a key file is a few lines; anything this big is the wrong file
CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _check_key(key: str, where: str) -> str:
    """``key`` when it can travel in an Authorization header (visible ASCII, no spaces); the error
    names ``where`` but never the key."""
    if not key.isascii() or not key.isprintable() or any(c.isspace() for c in key):
        raise UsageError(f"{where} is not a usable API key: use visible ASCII characters without spaces")
    return key


def read_key_file(path: str) -> tuple[str, ...]:
    """The keys of ``path``: one a line, blank lines and lines starting with '#' ignored."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--api-key-file {path}: no such file (one API key a line)")
    if p.stat().st_size > MAX_KEY_FILE_BYTES:
        raise UsageError(f"--api-key-file {path} is over {MAX_KEY_FILE_BYTES >> 20} MiB: not a key file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"--api-key-file {path} is not UTF-8 text (one API key a line)") from None
    keys = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            keys.append(_check_key(line, f"line {n} of --api-key-file {path}"))
    if not keys:
        raise UsageError(
            f"--api-key-file {path} holds no key (one a line; blank lines and # comments are skipped)"
        )
    return tuple(keys)


def read_keys(key_file: str | None, environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """The server's keys: from ``key_file`` when given, else from ``$INCEPTIONNET_API_KEYS``; () when
    neither is set (every route open)."""
    if key_file is not None:
        return read_key_file(key_file)
    raw = environ.get(ENV)
    if raw is None:
        return ()
    keys = tuple(
        _check_key(k.strip(), f"item {i} of ${ENV}") for i, k in enumerate(raw.split(","), 1) if k.strip()
    )
    if not keys:
        raise UsageError(
            f"${ENV} is set but holds no key (comma-separated keys); unset it to serve without keys"
        )
    return keys


def key_matches(token: str, keys: tuple[str, ...]) -> bool:
    """Whether ``token`` is one of ``keys``, compared in constant time with every key."""
    given = token.encode()
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key.encode())
    return found


async def require_key(request: Request) -> None:
    """FastAPI dependency: 401 unless the request carries one of ``request.app.state.api_keys`` as a
    Bearer token (no keys there: every request passes)."""
    keys: tuple[str, ...] = getattr(request.app.state, "api_keys", ())
    if not keys:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "this server needs an API key: send 'Authorization: Bearer KEY'", CHALLENGE)
    if not key_matches(token.strip(), keys):
        raise HTTPException(401, "the API key is not valid for this server", CHALLENGE)
