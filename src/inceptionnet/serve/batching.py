"""Dynamic batching: requests put their images in one queue; one asyncio worker takes up to
``max_batch`` of them, waiting at most ``max_wait_s`` after the first one arrived, and runs them as
ONE batch in a single worker thread (so the event loop keeps accepting requests meanwhile).

A full queue refuses new images at once (``QueueFullError``: HTTP 503 with Retry-After) instead of
letting latency grow without bound; ``close()`` refuses new work and lets the worker finish what is
queued (SIGTERM drains in-flight requests).

The worker cannot die silently: whatever a batch raises, or an answer that does not fit the batch
(``BatchError``: "the model returned 1 rows for a batch of 3"), fails that batch's requests only and the
worker takes the next batch. Should the worker stop all the same (a bug of ours, a cancelled task),
every queued and later request fails at once with ``WorkerGoneError`` and ``problem()`` says why, for
``/healthz`` (503) and readiness.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..errors import UsageError, first_line

# How often the model thread gives freed heap memory back to the system (glibc's malloc_trim). Batches
# of varying sizes leave freed activations scattered over the heap that glibc keeps: measured with
# googlenet_small, 2,000 batches of random sizes 1..32 grew the RSS from 858 to 1,280-1,400 MiB;
# trimming every 20 batches kept it between 909 and 1,051 MiB (docs/SERVING.md).
TRIM_INTERVAL_S = 1.0


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None


def trim_heap() -> None:
    """Give the free memory of every malloc arena back to the system (glibc; a no-op elsewhere)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class QueueFullError(RuntimeError):
    """The queue holds ``max_queue`` images already."""


class ClosingError(RuntimeError):
    """The server is shutting down: queued work is finished, new work refused."""


class BatchError(RuntimeError):
    """The model's answer does not fit the batch (not a tensor, or not one row per image): the
    requests of that batch fail (HTTP 500 naming the mismatch), the worker goes on."""


class WorkerGoneError(RuntimeError):
    """The batch worker has stopped: nothing queued can be answered (HTTP 503; /healthz says so)."""


def check_rows(out: Any, n: int) -> Tensor:
    """``out`` when it is a tensor with one row per image of a batch of ``n``, else ``BatchError``."""
    if not isinstance(out, Tensor):
        raise BatchError(f"the model returned a {type(out).__name__}, not a tensor, for a batch of {n}")
    rows = out.shape[0] if out.ndim else 0
    if rows != n:
        raise BatchError(f"the model returned {rows} rows for a batch of {n} (one row per image expected)")
    return out


@dataclass
class _Item:
    x: Tensor
    future: asyncio.Future[Tensor]
    queued_at: float


class Batcher:
    """``await batcher.submit(images) -> probabilities`` (one row per image, in order).

    ``run``: N x C x H x W -> N x classes, called in the worker thread with batches of 1..max_batch.
    ``on_batch(size)``: called for every batch run (the metrics' batch-size histogram).
    """

    def __init__(
        self,
        run: Callable[[Tensor], Tensor],
        *,
        max_batch: int,
        max_wait_s: float,
        max_queue: int,
        on_batch: Callable[[int], Any] | None = None,
    ) -> None:
        if max_batch < 1 or max_queue < 1 or not max_wait_s >= 0:
            raise UsageError(
                f"max_batch, max_queue must be >= 1, max_wait_s >= 0 ({max_batch}, {max_queue}, {max_wait_s})"
            )
        self.run, self.max_batch, self.max_wait_s, self.max_queue = run, max_batch, max_wait_s, max_queue
        self.on_batch = on_batch
        self._items: deque[_Item] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inceptionnet-batch")
        self._last_trim = time.monotonic()
        self._current: list[_Item] = []  # the batch in the model thread
        self._running_since: float | None = None  # monotonic start of that batch
        self._gone: str | None = None  # why the worker stopped, once it has

    @property
    def queued(self) -> int:
        return len(self._items)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._worker(), name="inceptionnet-batcher")

    def problem(self, stuck_after_s: float | None = None) -> str | None:
        """None while the worker can answer requests; else one line saying why not: not started,
        stopped (and why), or one batch in the model for more than ``stuck_after_s`` seconds (a hung
        model: every request would time out). The one check /healthz and readiness share."""
        if self._task is None:
            return "the batch worker has not started"
        if self._gone is not None:
            return self._gone
        if self._task.done() and not self._closing:  # ended without passing through _worker's handler
            return "the batch worker stopped"
        since = self._running_since
        if stuck_after_s is not None and since is not None and time.monotonic() - since > stuck_after_s:
            return (
                f"the model has been running one batch of {len(self._current)} images for "
                f"{time.monotonic() - since:.0f} s (over {stuck_after_s:g} s)"
            )
        return None

    async def close(self) -> None:
        """Refuse new images, run what is queued, stop the worker and its thread."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await asyncio.wait([self._task])  # not `await task`: a worker that died must not stop the shutdown
        self._thread.shutdown(wait=True)

    async def submit(self, xs: Sequence[Tensor]) -> Tensor:
        """Queue all of ``xs`` (or none: ``QueueFullError`` / ``ClosingError``) and wait for their rows.
        Cancelling the wait (a request timeout) drops the images not yet run."""
        if self._gone is not None:
            raise WorkerGoneError(self._gone)
        if self._closing:
            raise ClosingError("the server is shutting down")
        if len(self._items) + len(xs) > self.max_queue:
            raise QueueFullError(f"the queue holds {len(self._items)} images (limit {self.max_queue})")
        loop = asyncio.get_running_loop()
        items = [_Item(x, loop.create_future(), time.perf_counter()) for x in xs]
        self._items.extend(items)
        self._wake.set()
        try:
            rows = await asyncio.gather(*(it.future for it in items))
        except BaseException:
            for it in items:
                it.future.cancel()  # the worker skips cancelled items
            raise
        return torch.stack(list(rows))

    async def _next_batch(self) -> list[_Item]:
        """Wait for a first item, then for more until max_batch or max_wait_s after the first arrived
        (no waiting while closing: drain)."""
        while not self._items:
            if self._closing:
                return []
            self._wake.clear()
            await self._wake.wait()
        deadline = self._items[0].queued_at + self.max_wait_s
        while len(self._items) < self.max_batch and not self._closing:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                break
        batch: list[_Item] = []
        while self._items and len(batch) < self.max_batch:
            it = self._items.popleft()
            if not it.future.done():  # done: cancelled by a timed-out request
                batch.append(it)
        return batch

    def _run(self, xs: list[Tensor]) -> Tensor:
        """The images stacked and ``run`` in the model thread (a batch of 32 at 224 is 19 MB to copy:
        not in the event loop), then a heap trim at most every TRIM_INTERVAL_S."""
        out = self.run(torch.stack(xs))
        now = time.monotonic()
        if now - self._last_trim >= TRIM_INTERVAL_S:
            self._last_trim = now
            trim_heap()
        return out

    async def _worker(self) -> None:
        try:
            while True:
                batch = await self._next_batch()
                if not batch:
                    if self._closing and not self._items:
                        return
                    continue
                await self._run_batch(batch)
        except BaseException as e:  # a bug of ours or a cancelled task: fail everything, loudly
            self._gone = f"the batch worker stopped ({type(e).__name__}: {first_line(e)}); restart the server"
            gone = WorkerGoneError(self._gone)
            for it in [*self._current, *self._items]:
                if not it.future.done():
                    it.future.set_exception(gone)
            self._items.clear()
            raise

    async def _run_batch(self, batch: list[_Item]) -> None:
        """One batch in the model thread; any failure (the model's, or an answer that does not fit the
        batch) goes to the batch's requests, and the worker lives on."""
        self._current, self._running_since = batch, time.monotonic()
        try:
            if self.on_batch is not None:
                self.on_batch(len(batch))
            out = await asyncio.get_running_loop().run_in_executor(
                self._thread, self._run, [it.x for it in batch]
            )
            rows = list(check_rows(out, len(batch)))
        except Exception as e:  # noqa: BLE001 - the requests of this batch get the error; the server lives
            self._current, self._running_since = [], None
            for it in batch:
                if not it.future.done():
                    it.future.set_exception(e)
            return
        # not in a `finally`: on a BaseException _worker's handler fails this batch's requests too
        self._current, self._running_since = [], None
        for it, row in zip(batch, rows, strict=True):
            if not it.future.done():
                it.future.set_result(row)
