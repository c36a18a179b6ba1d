"""Dynamic batching: concurrent requests queue up and one model worker runs them together.

The worker thread takes the first waiting request and whatever else is queued, then keeps
collecting until the batch holds ``max_batch`` requests or ``max_wait_ms`` have passed since
that first one, and runs the batch in one call. It waits only while requests arrive
together: after a batch of one with nothing queued, the next lone request runs at once.
Each request carries its own future, and results go back by position in the batch, so no
request can receive another's answer. The queue is bounded:
a full queue is refused at once (the server answers 503 with Retry-After) instead of
letting latency grow without limit. A request that gave up (timed out) before its batch
formed is dropped from it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

log = logging.getLogger(__name__)

# run_batch(items, top_k) -> one result per item, in order (LoadedRun.predict's contract).
RunBatch = Callable[[Sequence[Any], int], list]


class QueueFull(Exception):
    """The bounded request queue is full."""


@dataclass
class _Job:
    item: Any
    top_k: int
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


@dataclass
class BatchStats:
    requests: int = 0
    batches: int = 0
    largest: int = 0
    dropped: int = 0  # requests that timed out before their batch ran
    sizes: dict = field(default_factory=dict)  # batch size -> count

    def to_dict(self) -> dict:
        mean = self.requests / self.batches if self.batches else 0.0
        return {"requests": self.requests, "batches": self.batches, "mean_batch": round(mean, 2),
                "largest_batch": self.largest, "dropped": self.dropped,
                "batch_sizes": {str(k): v for k, v in sorted(self.sizes.items())}}


class DynamicBatcher:
    """One worker thread that runs queued requests in batches through ``run_batch``."""

    def __init__(self, run_batch: RunBatch, max_batch: int = 32, max_wait_ms: float = 5.0,
                 max_queue: int = 256) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.stats = BatchStats()
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="resnetkit-model-worker", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._queue.put(None)  # blocks only while the queue is full, which the worker drains
            self._thread.join(timeout)
            self._thread = None

    async def submit(self, item: Any, top_k: int) -> Any:
        """The result for ``item``; raises QueueFull at once when the queue is full."""
        loop = asyncio.get_running_loop()
        job = _Job(item, top_k, loop.create_future(), loop)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFull from None
        return await job.future

    def _work(self) -> None:
        company = True  # whether requests have been arriving together; the first burst batches
        while True:
            first = self._queue.get()
            if first is None:
                return
            deadline = time.monotonic() + self.max_wait
            batch = [first]
            stop = self._take(batch)  # what is queued already joins at once
            # Waiting for more pays only when requests come together. A lone client (its last
            # request ran alone and nothing is queued) is served at once instead of paying
            # max_wait on every request (one client of ResNet-20: 51 requests/s waiting 5 ms,
            # 100 without; BENCHMARKS.md).
            if not stop and (company or len(batch) > 1):
                stop = self._take(batch, deadline)
            company = len(batch) > 1
            self._run(batch)
            if stop:
                return

    def _take(self, batch: list[_Job], deadline: float | None = None) -> bool:
        """Add queued requests to ``batch`` up to max_batch; with a deadline, wait for more until
        then. True when the stop signal came."""
        while len(batch) < self.max_batch:
            remaining = 0.0 if deadline is None else deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                return False
            if job is None:
                return True
            batch.append(job)
        return False

    def _run(self, batch: list[_Job]) -> None:
        live = [job for job in batch if not job.future.done()]  # a timed-out request was cancelled
        self.stats.dropped += len(batch) - len(live)
        if not live:
            return
        try:
            results = self.run_batch([job.item for job in live], max(job.top_k for job in live))
            if len(results) != len(live):
                raise RuntimeError(f"the model returned {len(results)} results for {len(live)} inputs")
        except Exception as err:  # every request of the batch gets the error; the worker goes on
            log.exception("batch of %d failed", len(live))
            results = [err] * len(live)
        self.stats.requests += len(live)
        self.stats.batches += 1
        self.stats.largest = max(self.stats.largest, len(live))
        self.stats.sizes[len(live)] = self.stats.sizes.get(len(live), 0) + 1
        for job, result in zip(live, results):
            job.loop.call_soon_threadsafe(_resolve, job.future, result)


def _resolve(future: asyncio.Future, result: Any) -> None:
    if future.done():  # cancelled while the batch ran
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
