"""The start-up handshake that gives each attempt of a torchrun worker group keys of its own, and
the timeout every rank waits at most (no torchrun needed: a real TCPStore, ranks as threads)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import torch.distributed as dist

from resnetkit.runtime import distributed


def _stores(world: int):
    # A short store timeout: a key that never comes fails the test instead of holding it.
    wait = timedelta(seconds=15)
    server = dist.TCPStore("127.0.0.1", 0, world, is_master=True, wait_for_workers=False, timeout=wait)
    clients = [dist.TCPStore("127.0.0.1", server.port, world, is_master=False, timeout=wait) for _ in range(world - 1)]
    return server, [server, *clients]


def test_every_rank_gets_the_same_fresh_keys_even_with_a_killed_attempts_keys_left():
    server, stores = _stores(3)
    # What a killed attempt leaves: its ranks' nonces, answered with its own prefix.
    server.set("resnetkit/hello/1", "stale-1")
    server.set("resnetkit/hello/2", "stale-2")
    server.set("resnetkit/welcome/stale-1", "old-attempt")
    server.set("resnetkit/welcome/stale-2", "old-attempt")
    prefixes = []
    for _ in range(2):  # two attempts in a row on the same store, as after a restart
        world = len(stores)
        results = {}

        def rank(r):
            store = distributed.attempt_store(stores[r], r, world, timedelta(seconds=20))
            store.set(f"rank-{r}", str(r))
            results[r] = store

        with ThreadPoolExecutor(world) as pool:
            list(pool.map(rank, range(world)))
        nonces = [server.get(f"resnetkit/hello/{r}").decode() for r in (1, 2)]
        answers = {server.get(f"resnetkit/welcome/{n}").decode() for n in nonces}
        assert len(answers) == 1 and answers != {"old-attempt"}
        (attempt,) = answers
        # Every rank's keys went under that one fresh prefix.
        for r in range(world):
            assert server.get(f"resnetkit/attempt/{attempt}/rank-{r}").decode() == str(r)
        prefixes.append(attempt)
    assert prefixes[0] != prefixes[1]


def test_a_rank_whose_rank_0_never_comes_stops_at_the_timeout():
    server, stores = _stores(2)
    t0 = time.perf_counter()
    with pytest.raises(TimeoutError, match=r"rank 1: rank 0 did not answer within 1 s \(RESNETKIT_DIST_TIMEOUT_S\)"):
        distributed.attempt_store(stores[1], 1, 2, timedelta(seconds=1))
    assert time.perf_counter() - t0 < 10


def test_rank_0_stops_at_the_timeout_when_a_rank_never_comes():
    server, stores = _stores(3)
    t0 = time.perf_counter()
    with pytest.raises(TimeoutError, match=r"rank 0: 2 of the 2 other ranks did not join within 1 s"):
        distributed.attempt_store(stores[0], 0, 3, timedelta(seconds=1))
    assert time.perf_counter() - t0 < 10


def test_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("RESNETKIT_DIST_TIMEOUT_S", raising=False)
    assert distributed.timeout_seconds() == 600
    monkeypatch.setenv("RESNETKIT_DIST_TIMEOUT_S", "45")
    assert distributed.timeout_seconds() == 45
    for bad in ("soon", "0", "-3"):
        monkeypatch.setenv("RESNETKIT_DIST_TIMEOUT_S", bad)
        with pytest.raises(ValueError, match="RESNETKIT_DIST_TIMEOUT_S must be"):
            distributed.timeout_seconds()


def test_launched_reads_torchruns_environment(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.launched() == distributed.DistInfo(3, 1, 4)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.launched() == distributed.DistInfo()
