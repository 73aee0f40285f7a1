"""``serve --workers N`` when a worker dies (issue 30 item 5: no silent half-capacity): a worker killed
with SIGKILL is replaced by a fresh process and the server keeps answering; a worker that cannot start
stops the server with a non-zero status. ``commands.serve.run_workers`` (uvicorn's supervisor with our
settings) in a subprocess, over a tiny app (``_worker_crash_app.py``) instead of the model's, so that a
worker starts in well under a second; the model's own workers are tests/serve/test_fleet.py's."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

HERE = Path(__file__).parent
# the parent: run_workers(2 workers) over the tiny app on a socket bound here; prints the port
PARENT = """
import argparse, sys
from inceptionnet.commands.serve import bound_socket, run_workers
from inceptionnet.errors import UsageError
sock = bound_socket("127.0.0.1", 0)
print(sock.getsockname()[1], flush=True)
args = argparse.Namespace(workers=2, log_level="info", timeout=1.0)
try:
    sys.exit(run_workers(args, sock, app="_worker_crash_app:app"))
except UsageError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(2)
"""


@contextlib.contextmanager
def supervisor(tmp_path: Path, **env: str) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", PARENT], stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path]), **env},
        )  # fmt: skip
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()
        assert port.isdigit(), log_path.read_text()
        yield proc, f"http://127.0.0.1:{port}", log_path
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


def _pids(url: str, tries: int = 8) -> set[int]:
    """The workers answering, over a few new connections (the kernel picks the worker)."""
    pids: set[int] = set()
    for _ in range(tries):
        with contextlib.suppress(httpx.TransportError):
            r = httpx.get(url, timeout=2)
            if r.status_code == 200:
                pids.add(int(r.text))
    return pids


def _wait(what: str, log: Path, until: Callable[[], bool], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if until():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}: {log.read_text()}")


def test_a_killed_worker_is_replaced_and_the_server_keeps_serving(tmp_path: Path) -> None:
    with supervisor(tmp_path) as (proc, url, log):
        seen: set[int] = set()

        def both() -> bool:
            seen.update(_pids(url))
            return len(seen) == 2

        _wait("two workers", log, both)
        victim = min(seen)
        os.kill(victim, signal.SIGKILL)
        after: set[int] = set()

        def replaced() -> bool:
            after.update(_pids(url))
            return bool(after - seen)

        _wait("a replacement worker", log, replaced)
        assert proc.poll() is None, log.read_text()  # the server runs on, at full capacity
        assert f"Child process [{victim}] died" in log.read_text()
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, 0)
            pytest.fail(f"the killed worker {victim} still exists")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()


def test_a_worker_that_cannot_start_stops_the_server_non_zero(tmp_path: Path) -> None:
    with supervisor(tmp_path, CRASH_APP_FAIL="1") as (proc, _, log):
        try:
            status = proc.wait(120)  # the supervisor looks every 0.5 s; a busy machine starts workers slowly
        except subprocess.TimeoutExpired:
            pytest.fail("the server did not stop: " + log.read_text())
        assert status == 2, log.read_text()
        text = log.read_text()
        assert "could not start: told to fail" in text and "error: a worker could not start" in text, text


def test_each_worker_takes_its_share_of_the_cores() -> None:
    """``--workers N``: each worker's model gets cores // N threads (not one per core each: N workers
    would oversubscribe the cores), unless $OMP_NUM_THREADS says; one worker keeps torch's default."""
    import torch

    from inceptionnet.commands.serve import share_cores

    before = torch.get_num_threads()
    try:
        cores = len(os.sched_getaffinity(0))
        torch.set_num_threads(cores)
        assert share_cores(1, environ={}) == cores
        assert share_cores(2, environ={"OMP_NUM_THREADS": "3"}) == cores  # the user's setting stands
        assert share_cores(2, environ={}) == max(1, cores // 2) == torch.get_num_threads()
        assert share_cores(4 * cores, environ={}) == 1
    finally:
        torch.set_num_threads(before)
