"""Micro-batching: requests from many clients become few calls of one batch function.

Requests wait in groups keyed by what must be equal within a batch (for the server: the
generator and the sampling options). One consumer task takes the group whose oldest request
is oldest, waits until that request is `max_wait_ms` old or the group holds `max_batch_size`
requests, and runs the batch in the single worker thread, off the event loop. While the worker
is busy new requests queue up, so batches grow with concurrency and the short wait is only paid
when the server is nearly idle. `max_batch_size=1` turns batching off.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

BatchFn = Callable[[Hashable, list[Any]], list[Any]]


class Overloaded(Exception):
    """The queue is full: the client should retry later."""


class ShuttingDown(Exception):
    """The batcher was closed while the request waited."""


@dataclass
class _Pending:
    item: Any
    future: asyncio.Future
    arrived: float  # time.monotonic()


def _shut_down(pending: list) -> int:
    """Fail the requests still waiting among `pending` with ShuttingDown; return how many."""
    waiting = [p for p in pending if not p.future.done()]
    for p in waiting:
        p.future.set_exception(ShuttingDown("the server is shutting down"))
    return len(waiting)


class MicroBatcher:
    """Groups `submit(key, item)` calls with equal keys into `fn(key, items) -> results` calls.

    `fn` runs in one worker thread, one batch at a time, and returns one result per item in
    order. When a batch of several items raises, its items are retried one by one so that one
    bad item fails only its own request.
    """

    def __init__(self, fn: BatchFn, max_batch_size: int = 16, max_wait_ms: float = 5.0,
                 max_queue: int = 1024):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.max_wait_ms = max_wait_ms
        self.max_queue = max_queue
        self._executor: ThreadPoolExecutor | None = None
        self._groups: dict[Hashable, list[_Pending]] = {}
        self._inflight: list[_Pending] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._arrived: asyncio.Event | None = None
        self.batch_sizes: Counter[int] = Counter()
        self.model_seconds = 0.0
        self._refusing = False  # set by refuse_waiting (a server shutting down)

    # ---------------------------------------------------------------- public

    def start(self) -> None:
        """Start the consumer task on the running loop (also done by the first submit)."""
        loop = asyncio.get_running_loop()
        if self._task is not None and not self._task.done() and self._loop is loop:
            return
        if self._loop is not loop:
            self._groups = {}  # futures of another (closed) loop can never be resolved
        self._loop = loop
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seqgan-model")
        self._arrived = asyncio.Event()
        self._task = loop.create_task(self._consume(), name="seqgan-batcher")

    async def submit(self, key: Hashable, item: Any) -> Any:
        """Queue one item and wait for its result (or the exception its batch raised)."""
        if self._refusing:
            raise ShuttingDown("the server is shutting down")
        self.start()
        if self.queued() >= self.max_queue:
            raise Overloaded(f"too many requests waiting ({self.max_queue}); retry shortly")
        future = asyncio.get_running_loop().create_future()
        self._groups.setdefault(key, []).append(_Pending(item, future, time.monotonic()))
        assert self._arrived is not None
        self._arrived.set()
        return await future

    def queued(self) -> int:
        return sum(len(g) for g in self._groups.values())

    def refuse_waiting(self) -> int:
        """Fail every request still waiting for a batch with ShuttingDown, and any that arrives
        later, at once: a server that is stopping answers them now rather than cancel them when
        its grace period ends. The batch being computed finishes. Returns how many were failed."""
        self._refusing = True
        failed = _shut_down([p for group in self._groups.values() for p in group])
        self._groups = {}
        return failed

    def stats(self) -> dict:
        """Counters for /v1/info: how many requests went through in how many batches."""
        n = sum(size * count for size, count in self.batch_sizes.items())
        batches = sum(self.batch_sizes.values())
        return {
            "max_batch_size": self.max_batch_size,
            "max_wait_ms": self.max_wait_ms,
            "requests": n,
            "batches": batches,
            "largest_batch": max(self.batch_sizes, default=0),
            "mean_batch_size": round(n / batches, 3) if batches else 0.0,
            "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
            "queued": self.queued(),
            "model_seconds": round(self.model_seconds, 3),
        }

    async def close(self) -> None:
        """Stop the consumer, fail what still waits, and let the worker finish its batch."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        _shut_down([p for group in self._groups.values() for p in group] + self._inflight)
        self._groups, self._inflight = {}, []
        self._refusing = False  # closed: a new lifespan may start it again
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    # ---------------------------------------------------------------- internals

    async def _consume(self) -> None:
        assert self._arrived is not None
        while True:
            for key in [k for k, g in self._groups.items() if all(p.future.done() for p in g)]:
                del self._groups[key]  # every waiter of the group has gone (client disconnected)
            if not self._groups:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            key = min(self._groups, key=lambda k: self._groups[k][0].arrived)
            group = self._groups[key]
            deadline = group[0].arrived + self.max_wait_ms / 1000
            while len(group) < self.max_batch_size:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), left)
                except TimeoutError:
                    break
            live = [p for p in group if not p.future.done()]
            batch, rest = live[: self.max_batch_size], live[self.max_batch_size :]
            if rest:
                self._groups[key] = rest
            else:  # refuse_waiting may have emptied the groups while this one filled
                self._groups.pop(key, None)
            if batch:
                await self._run_batch(key, batch)

    async def _run_batch(self, key: Hashable, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        assert self._executor is not None
        self._inflight = batch
        t0 = time.perf_counter()
        outcomes = await loop.run_in_executor(self._executor, self._call, key, [p.item for p in batch])
        self._inflight = []
        self.model_seconds += time.perf_counter() - t0
        self.batch_sizes[len(batch)] += 1
        for p, (ok, value) in zip(batch, outcomes, strict=True):
            if p.future.done():
                continue
            if ok:
                p.future.set_result(value)
            else:
                p.future.set_exception(value)

    def _call(self, key: Hashable, items: list[Any]) -> list[tuple[bool, Any]]:
        """Runs in the worker thread: (ok, result or exception) per item."""
        try:
            out = self.fn(key, items)
            if len(out) != len(items):
                raise RuntimeError(f"batch function returned {len(out)} results for {len(items)} items")
            return [(True, r) for r in out]
        except Exception as e:  # noqa: BLE001 - handed to the waiting requests
            if len(items) == 1:
                return [(False, e)]
        outcomes: list[tuple[bool, Any]] = []
        for item in items:  # one bad item must not fail the others
            try:
                outcomes.append((True, self.fn(key, [item])[0]))
            except Exception as e:  # noqa: BLE001
                outcomes.append((False, e))
        return outcomes
