"""Dynamic batching: concurrent requests become one ``backend.generate`` call.

Requests wait in a queue. A batch closes when it holds ``max_batch`` requests or when its
oldest request has waited ``max_wait_ms``, whichever comes first; while the backend works on
one batch the next one fills, so under load batches close full without waiting. Requests with
different sampling parameters cannot share a call (``generate`` takes one
:class:`SamplingParams`), so a closed batch runs as one call per distinct parameter set.

The backend runs on one worker thread, off the event loop: the server keeps answering health
checks and accepting requests while the model works, and the model is never entered twice.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from habitat_eqarm.rewards.backends.base import (
    GenerationRequest,
    GenerationResult,
    RewardBackend,
    SamplingParams,
)


class BatcherClosed(RuntimeError):
    """The server is shutting down and takes no new work."""


@dataclass
class _Item:
    request: GenerationRequest
    params: SamplingParams
    future: asyncio.Future[GenerationResult]
    enqueued: float = field(default_factory=time.monotonic)


@dataclass
class BatchStats:
    """What the batcher did: batches run, their sizes, generate time, requests done.

    ``running``: requests inside a ``generate`` call right now.
    """

    running: int = 0
    batches: int = 0
    calls: int = 0
    requests: int = 0
    failed_requests: int = 0
    generate_s: float = 0.0
    sizes: Counter[int] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counters (``sizes``: batch size -> how many calls had it)."""
        out = dataclasses.asdict(self)
        out["sizes"] = {str(k): v for k, v in sorted(self.sizes.items())}
        out["max_size"] = max(self.sizes, default=0)
        out["mean_size"] = self.requests / self.calls if self.calls else 0.0
        return out


class DynamicBatcher:
    """Batch concurrent :meth:`submit` calls into ``backend.generate`` calls (see module doc)."""

    def __init__(self, backend: RewardBackend, *, max_batch: int = 8, max_wait_ms: float = 10.0):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.backend = backend
        self.max_batch = int(max_batch)
        self.max_wait = max(0.0, float(max_wait_ms)) / 1000.0
        self.stats = BatchStats()
        self._pending: collections.deque[_Item] = collections.deque()
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="eqarm-generate")
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def closing(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._closing

    @property
    def queued(self) -> int:
        """Requests waiting for a batch."""
        return len(self._pending)

    def start(self) -> None:
        """Start the batching loop on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def submit(self, request: GenerationRequest, params: SamplingParams) -> GenerationResult:
        """Queue one request; its result once its batch has run."""
        if self._closing:
            raise BatcherClosed("the server is shutting down")
        item = _Item(request, params, asyncio.get_running_loop().create_future())
        self._pending.append(item)
        self._arrived.set()
        return await item.future

    async def stop(self) -> None:
        """Take no new work, finish what is queued, then stop the worker thread."""
        self._closing = True
        self._arrived.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def _loop(self) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            await self._fill()
            batch = [self._pending.popleft() for _ in range(min(self.max_batch, self.queued))]
            await self._run(batch)

    async def _fill(self) -> None:
        """Wait until the queue holds a full batch or its oldest request has waited enough."""
        deadline = self._pending[0].enqueued + self.max_wait
        while self.queued < self.max_batch and not self._closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:  # builtin TimeoutError only from Python 3.11
                return

    async def _run(self, batch: list[_Item]) -> None:
        self.stats.batches += 1
        groups: dict[tuple[Any, ...], list[_Item]] = {}
        for item in batch:
            if not item.future.done():  # a client that went away is not served
                groups.setdefault(dataclasses.astuple(item.params), []).append(item)
        loop = asyncio.get_running_loop()
        for items in groups.values():
            t0, started = time.perf_counter(), time.monotonic()
            requests = [it.request for it in items]
            self.stats.running = len(items)
            try:
                results = await loop.run_in_executor(
                    self._executor, self.backend.generate, requests, items[0].params
                )
            except Exception as err:  # every waiting client hears of it
                self.stats.failed_requests += len(items)
                for it in items:
                    if not it.future.done():
                        it.future.set_exception(err)
                continue
            finally:
                self.stats.running = 0
                self._record(len(items), time.perf_counter() - t0)
            for it, result in zip(items, results, strict=True):
                result.timings["queue_s"] = started - it.enqueued
                if not it.future.done():
                    it.future.set_result(result)

    def _record(self, size: int, seconds: float) -> None:
        self.stats.calls += 1
        self.stats.requests += size
        self.stats.sizes[size] += 1
        self.stats.generate_s += seconds
