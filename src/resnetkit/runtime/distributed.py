"""torchrun support: process group set-up, rank queries and reductions across processes."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


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


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); a no-op otherwise.

    NCCL on CUDA, gloo on CPU. Multi-node needs nothing more: torchrun's --nnodes and
    --rdzv-endpoint provide the environment.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, store=_store_for_this_attempt(), rank=rank, world_size=world)
    # torchrun sets OMP_NUM_THREADS=1 only with --nproc-per-node > 1; with one process per node each
    # takes every core. Thread counts change float summation order, hence results: say them.
    log.info("rank %d of %d (node-local rank %d): %d torch threads (OMP_NUM_THREADS=%s)", rank, world, local_rank,
             torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS", "unset"))
    return DistInfo(rank, local_rank, world)


def _store_for_this_attempt() -> dist.Store:
    """torchrun's store, with keys of their own for this restart attempt.

    With ``--max-restarts``, torchrun's static rendezvous keeps one store for every attempt,
    so the peer addresses the killed attempt published are still there when the restarted
    ranks meet; a rank that reads one dials a dead process ("Gloo connectFullMesh failed ...
    Connection refused"; 5 of 6 runs of tests/reliability/test_torchrun_restart.py). A prefix per attempt keeps
    the attempts apart.
    """
    store, _, _ = next(dist.rendezvous("env://"))
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"resnetkit/attempt_{attempt}", store)


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


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
