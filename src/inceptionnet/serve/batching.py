"""Dynamic batching: requests put their images in one queue; one asyncio worker takes up to
``max_batch`` of them, waiting at most ``max_wait_s`` after the first one arrived, and runs them as
ONE batch in a single worker thread (so the event loop keeps accepting requests meanwhile).

A full queue refuses new images at once (``QueueFullError``: HTTP 503 with Retry-After) instead of
letting latency grow without bound; ``close()`` refuses new work and lets the worker finish what is
queued (SIGTERM drains in-flight requests).
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

from ..errors import UsageError

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

    @property
    def queued(self) -> int:
        return len(self._items)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._worker(), name="inceptionnet-batcher")

    async def close(self) -> None:
        """Refuse new images, run what is queued, stop the worker and its thread."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        self._thread.shutdown(wait=True)

    async def submit(self, xs: Sequence[Tensor]) -> Tensor:
        """Queue all of ``xs`` (or none: ``QueueFullError`` / ``ClosingError``) and wait for their rows.
        Cancelling the wait (a request timeout) drops the images not yet run."""
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

    def _run(self, x: Tensor) -> Tensor:
        """``run`` in the model thread, then a heap trim at most every TRIM_INTERVAL_S."""
        out = self.run(x)
        now = time.monotonic()
        if now - self._last_trim >= TRIM_INTERVAL_S:
            self._last_trim = now
            trim_heap()
        return out

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if not batch:
                if self._closing and not self._items:
                    return
                continue
            if self.on_batch is not None:
                self.on_batch(len(batch))
            try:
                out = await loop.run_in_executor(self._thread, self._run, torch.stack([it.x for it in batch]))
            except Exception as e:  # noqa: BLE001 - the requests of this batch get the error; the server lives
                for it in batch:
                    if not it.future.done():
                        it.future.set_exception(e)
                continue
            for it, row in zip(batch, out, strict=True):
                if not it.future.done():
                    it.future.set_result(row)
