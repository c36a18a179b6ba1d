"""torchrun support: process group set-up, rank queries and reductions across processes.

No rank waits forever: the process group, its store and the start-up handshake give up after
``RESNETKIT_DIST_TIMEOUT_S`` seconds (600 by default; NCCL's own default is 10 minutes, gloo's
30), so a peer that hangs (a frozen host, a cut cable) ends the run with an error on every rank
instead of leaving them waiting. A peer that dies is noticed at once (its sockets close).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 600
HANDSHAKE_POLL_S = 0.05


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def timeout_seconds() -> float:
    """How long a rank waits for the others in any collective or store call (``RESNETKIT_DIST_TIMEOUT_S``)."""
    value = os.environ.get("RESNETKIT_DIST_TIMEOUT_S")
    if value is None:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"RESNETKIT_DIST_TIMEOUT_S must be a number of seconds, got {value!r}") from None
    if not seconds > 0:
        raise ValueError(f"RESNETKIT_DIST_TIMEOUT_S must be > 0 seconds, got {value!r}")
    return seconds


def launched() -> DistInfo:
    """This process's place in a torchrun job as the environment says, before it joins the group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world)


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); a no-op otherwise.

    NCCL on CUDA, gloo on CPU. Multi-node needs nothing more: torchrun's --nnodes and
    --rdzv-endpoint provide the environment (README: Multi-node on separate hosts).
    """
    info = launched()
    if not info.enabled:
        return info
    rank, local_rank, world = info.rank, info.local_rank, info.world_size
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        timeout = timedelta(seconds=timeout_seconds())
        store, _, _ = next(dist.rendezvous("env://", timeout=timeout))
        store = attempt_store(store, rank, world, timeout)
        dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world, timeout=timeout)
    # torchrun sets OMP_NUM_THREADS=1 only with --nproc-per-node > 1; with one process per node each
    # takes every core. Thread counts change float summation order, hence results: say them.
    log.info("rank %d of %d (node-local rank %d): %d torch threads (OMP_NUM_THREADS=%s)", rank, world, local_rank,
             torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS", "unset"))
    return info


def attempt_store(store: dist.Store, rank: int, world: int, timeout: timedelta) -> dist.Store:
    """torchrun's ``store``, with keys of their own for this attempt of the worker group.

    torchrun keeps one store for every attempt (``--max-restarts``), so the peer addresses a
    killed attempt published are still there when the restarted ranks meet; a rank that reads
    one dials a dead process ("Gloo connectFullMesh failed ... Connection refused"; 5 of 6 runs
    of tests/reliability/test_torchrun_restart.py). Nor can the attempt be named by
    TORCHELASTIC_RESTART_COUNT: across nodes it differs (a node whose worker failed counts a
    restart, the others restart for the membership change and do not).

    So rank 0 names the attempt with a fresh random key, and each other rank learns it through a
    key only it can know: it posts a fresh nonce of its own under ``hello/RANK`` and waits for
    ``welcome/NONCE``. Rank 0 answers every nonce it finds there (a stale one from the killed
    attempt too: nobody waits for that answer) until every rank has confirmed under the new key.
    """
    nonce = uuid.uuid4().hex
    deadline = time.monotonic() + timeout.total_seconds()
    if rank == 0:
        ready, answered = f"resnetkit/ready/{nonce}", set()
        while store.add(ready, 0) < world - 1:
            for peer in range(1, world):
                hello = f"resnetkit/hello/{peer}"
                if store.check([hello]):
                    posted = store.get(hello).decode()
                    if posted not in answered:
                        store.set(f"resnetkit/welcome/{posted}", nonce)
                        answered.add(posted)
            if time.monotonic() > deadline:
                missing = world - 1 - store.add(ready, 0)
                raise TimeoutError(f"rank 0: {missing} of the {world - 1} other ranks did not join within "
                                   f"{timeout.total_seconds():g} s (RESNETKIT_DIST_TIMEOUT_S)")
            time.sleep(HANDSHAKE_POLL_S)
        attempt = nonce
    else:
        store.set(f"resnetkit/hello/{rank}", nonce)
        welcome = f"resnetkit/welcome/{nonce}"
        try:
            store.wait([welcome], timeout)
        except RuntimeError:  # the store's own timeout error (DistStoreError on recent torch)
            raise TimeoutError(f"rank {rank}: rank 0 did not answer within {timeout.total_seconds():g} s "
                               "(RESNETKIT_DIST_TIMEOUT_S); is node 0 up, and is the same job started there?") from None
        attempt = store.get(welcome).decode()
        store.add(f"resnetkit/ready/{attempt}", 1)
    return dist.PrefixStore(f"resnetkit/attempt/{attempt}", store)


def current() -> DistInfo:
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), dist.get_world_size())
    return DistInfo()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_ranks_true(flag: torch.Tensor) -> torch.Tensor:
    """True on every rank only when ``flag`` is true on every rank.

    Ranks that decide differently (one stops, the others step on) leave the others waiting
    forever in the next collective, so a decision to stop is taken together.
    """
    if dist.is_available() and dist.is_initialized():
        as_int = flag.to(torch.int32)
        dist.all_reduce(as_int, op=dist.ReduceOp.MIN)
        return as_int.bool()
    return flag


def gather_objects(obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order (``[obj]`` outside torchrun)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (pickled: for peers of one job, never for untrusted data)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    holder = [obj if dist.get_rank() == src else None]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
