"""Batch sources: a data set as device batches, ready for the model.

Every source yields ``(inputs, targets)`` already on the training device, augmented (when
training) and normalized, so the trainer's loop is the same for every kind of input. Each
epoch's order is a function of (seed, epoch) and the augmentation generator's state is
saved in checkpoints, so a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch

from .interface import BatchOptions, SkippedFile


def steps_per_epoch(num_samples: int, batch_size: int, train: bool, world_size: int = 1, rank: int = 0) -> int:
    """Batches per epoch for one process.

    Training drops the ragged last batch: a batch of one breaks BatchNorm, and under DDP
    every process must take the same number of steps. Evaluation keeps every sample.
    """
    if train:
        return max(1, (num_samples // world_size) // batch_size)
    per_rank = len(range(rank, num_samples, world_size))
    return -(-per_rank // batch_size)


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def epoch_draw(weights: torch.Tensor, seed: int, epoch: int) -> torch.Tensor:
    """``len(weights)`` sample indices drawn with replacement in proportion to ``weights``.

    A function of (seed, epoch) only, like :func:`epoch_permutation`: every process draws the
    same order and takes its share, and a resumed epoch sees the same samples.
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 7_919)
    return torch.multinomial(weights.double().cpu(), len(weights), replacement=True, generator=g)


class BatchSource:
    """What every batch source shares: its share of each epoch's order, and its length.

    Subclasses set ``num_samples`` and yield ``(inputs, targets)`` from :meth:`epoch`, taking
    each step's sample indices from :meth:`step_indices`. ``generator`` draws the per-sample
    augmentation; its state is the source's checkpoint state.
    """

    num_samples: int

    def __init__(self, classes: Sequence[str], options: BatchOptions) -> None:
        self.classes = list(classes)
        self.options = options
        self.batch_size = options.batch_size
        self.device = torch.device(options.device)
        self.train = options.train
        self.seed = options.seed
        self.dist = options.dist
        self.generator = torch.Generator().manual_seed(options.seed + 17)
        self._chosen: torch.Tensor | None = None  # set by only(): the samples every epoch iterates
        # Files left out while reading (data decoded on demand), each once: evaluation lists them.
        self.skipped: list[SkippedFile] = []

    def only(self, chosen: torch.Tensor) -> "BatchSource":
        """Iterate just the samples ``chosen`` (indices, in this order) from now on; returns the source.

        For an evaluation pass over a few samples of a large data set (int8 calibration, export
        parity) without building the data set again.
        """
        if self.train:
            raise ValueError("only() selects samples for evaluation; a training source shuffles all of them")
        self._chosen = torch.as_tensor(chosen, dtype=torch.long)
        return self

    def __len__(self) -> int:
        count = self.num_samples if self._chosen is None else len(self._chosen)
        return steps_per_epoch(count, self.batch_size, self.train, self.dist.world_size, self.dist.rank)

    def indices(self, epoch: int) -> torch.Tensor:
        """This process's samples for ``epoch``, in order: every world_size-th of one permutation."""
        if self._chosen is not None:
            order = self._chosen
        elif self.train and self.options.sample_weights is not None:
            if len(self.options.sample_weights) != self.num_samples:
                raise ValueError(f"sample_weights has {len(self.options.sample_weights)} entries for "
                                 f"{self.num_samples} samples")
            order = epoch_draw(self.options.sample_weights, self.seed, epoch)
        elif self.train:
            order = epoch_permutation(self.num_samples, self.seed, epoch)
        else:
            order = torch.arange(self.num_samples)
        return order[self.dist.rank :: self.dist.world_size]

    def step_indices(self, epoch: int, start_step: int = 0) -> Iterator[torch.Tensor]:
        idx = self.indices(epoch).to(self.device)
        for step in range(start_step, len(self)):
            yield idx[step * self.batch_size : (step + 1) * self.batch_size]

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError

    def note_skipped(self, files: Sequence[SkippedFile]) -> None:
        """Record files this source could not read (each path once)."""
        known = {f.path for f in self.skipped}
        self.skipped.extend(f for f in files if f.path not in known)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if "generator" in state:
            self.generator.set_state(state["generator"])
