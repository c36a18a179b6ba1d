"""The dynamic batcher alone: batches close at max_batch or max_wait, answers go to their own request,
a full queue refuses, a failing batch fails its requests and the worker goes on."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from resnetkit.serve.batching import DynamicBatcher, QueueFull


def _echo(calls):
    def run(items, top_k):
        calls.append(list(items))
        time.sleep(0.01)
        return [{"echo": item, "top_k": top_k} for item in items]
    return run


async def _submit_all(batcher, items, top_k=1):
    return await asyncio.gather(*(batcher.submit(item, top_k) for item in items), return_exceptions=True)


def test_concurrent_requests_are_batched_and_answered_in_their_own_slot():
    calls = []
    batcher = DynamicBatcher(_echo(calls), max_batch=8, max_wait_ms=50, max_queue=100)
    batcher.start()
    try:
        results = asyncio.run(_submit_all(batcher, list(range(20))))
    finally:
        batcher.stop()
    assert [r["echo"] for r in results] == list(range(20))
    assert max(len(c) for c in calls) == 8 and sum(len(c) for c in calls) == 20
    assert len(calls) <= 4  # 20 requests at once: 8 + 8 + 4, not one call each
    assert batcher.stats.requests == 20 and batcher.stats.largest == 8


def test_full_queue_refuses_at_once():
    release = threading.Event()

    def blocked(items, top_k):
        release.wait(10)
        return [{} for _ in items]

    batcher = DynamicBatcher(blocked, max_batch=1, max_wait_ms=0, max_queue=2)
    batcher.start()

    async def flood():
        tasks = [asyncio.ensure_future(batcher.submit(i, 1)) for i in range(6)]
        await asyncio.sleep(0.2)
        release.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    try:
        results = asyncio.run(flood())
    finally:
        release.set()
        batcher.stop()
    refused = [r for r in results if isinstance(r, QueueFull)]
    assert 1 <= len(refused) <= 4 and len(results) - len(refused) >= 2


def test_a_failing_batch_fails_its_requests_only():
    def flaky(items, top_k):
        if "boom" in items:
            raise RuntimeError("model exploded")
        return [{"ok": item} for item in items]

    batcher = DynamicBatcher(flaky, max_batch=4, max_wait_ms=30)
    batcher.start()
    try:
        first = asyncio.run(_submit_all(batcher, ["a", "boom"]))
        second = asyncio.run(_submit_all(batcher, ["c"]))
    finally:
        batcher.stop()
    assert all(isinstance(r, RuntimeError) for r in first)
    assert second == [{"ok": "c"}]


def test_arguments_are_checked():
    for kwargs in ({"max_batch": 0}, {"max_wait_ms": -1}, {"max_queue": 0}):
        with pytest.raises(ValueError):
            DynamicBatcher(lambda items, k: items, **kwargs)


def test_a_lone_client_is_served_without_waiting_and_a_burst_still_batches():
    calls = []
    batcher = DynamicBatcher(_echo(calls), max_batch=8, max_wait_ms=400, max_queue=100)
    batcher.start()
    try:
        start = time.perf_counter()
        asyncio.run(_submit_all(batcher, ["first"]))  # the first request may wait for company
        first = time.perf_counter() - start
        start = time.perf_counter()
        for item in ["a", "b", "c"]:  # one client, one request after another
            assert asyncio.run(_submit_all(batcher, [item]))[0]["echo"] == item
        lone = (time.perf_counter() - start) / 3
        results = asyncio.run(_submit_all(batcher, list(range(20))))
    finally:
        batcher.stop()
    assert first >= 0.35, "a request that may have company waits up to max_wait"
    assert lone < 0.2, f"a lone client's request waited {lone:.3f} s for company that never came"
    assert [r["echo"] for r in results] == list(range(20))
    burst = calls[4:]
    assert max(len(c) for c in burst) == 8 and len(burst) <= 5, [len(c) for c in burst]
