"""Batch sources: turn a data set into device batches, ready for the model.

Every source yields ``(inputs, targets)`` already on the training device, augmented (when
training) and normalized, so the trainer's loop is the same for images in memory, images
on disk, plain tensors and audio. Each epoch's order is a function of (seed, epoch) and the
augmentation generator's state is saved in checkpoints, so a resumed run sees the same
batches as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch
from torch.nn import functional as F

from ..data.augment import (
    AugmentConfig,
    BatchAugment,
    Normalize,
    eval_transform,
    gather_crop_flip,
    mix_transform,
    pad_store,
    sample_transform,
)
from ..data.images import ImageData, ImageFiles, collate_skipping_none
from .distributed import DistInfo


@dataclass
class ImageInputSpec:
    """How raw images become model input; stored in the run so predict/evaluate repeat it."""

    in_chans: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pct: float = 1.0
    kind: str = "image"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "in_chans": self.in_chans, "image_size": list(self.image_size),
                "mean": list(self.mean), "std": list(self.std), "crop_pct": self.crop_pct}

    @classmethod
    def from_dict(cls, d: dict) -> "ImageInputSpec":
        return cls(int(d["in_chans"]), tuple(d["image_size"]), tuple(d["mean"]), tuple(d["std"]), float(d.get("crop_pct", 1.0)))


def steps_per_epoch(num_samples: int, batch_size: int, train: bool, dist: DistInfo) -> int:
    """Batches per epoch for this process.

    Training drops the ragged last batch: a batch of one breaks BatchNorm, and under DDP
    every process must take the same number of steps. Evaluation keeps every sample.
    """
    if train:
        return max(1, (num_samples // dist.world_size) // batch_size)
    per_rank = len(range(dist.rank, num_samples, dist.world_size))
    return -(-per_rank // batch_size)


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


class BatchSource:
    """What every batch source shares: its share of each epoch's order, and its length.

    Subclasses set ``num_samples`` and yield ``(inputs, targets)`` from :meth:`epoch`, taking
    each step's sample indices from :meth:`step_indices`. ``generator`` draws the per-sample
    augmentation; its state is the source's checkpoint state.
    """

    def __init__(self, classes: Sequence[str], *, batch_size: int, device: torch.device, train: bool,
                 seed: int = 0, dist: DistInfo = DistInfo()) -> None:
        self.classes = list(classes)
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.train = train
        self.seed = seed
        self.dist = dist
        self.generator = torch.Generator().manual_seed(seed + 17)

    num_samples: int

    def __len__(self) -> int:
        return steps_per_epoch(self.num_samples, self.batch_size, self.train, self.dist)

    def indices(self, epoch: int) -> torch.Tensor:
        """This process's samples for ``epoch``, in order: every world_size-th of one permutation."""
        order = epoch_permutation(self.num_samples, self.seed, epoch) if self.train else torch.arange(self.num_samples)
        return order[self.dist.rank :: self.dist.world_size]

    def step_indices(self, epoch: int, start_step: int = 0) -> Iterator[torch.Tensor]:
        idx = self.indices(epoch).to(self.device)
        for step in range(start_step, len(self)):
            yield idx[step * self.batch_size : (step + 1) * self.batch_size]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if "generator" in state:
            self.generator.set_state(state["generator"])


class InMemoryBatches(BatchSource):
    """Images held as one uint8 tensor on the device, augmented a batch at a time."""

    def __init__(
        self,
        data: ImageData,
        spec: ImageInputSpec,
        *,
        batch_size: int,
        device: torch.device,
        train: bool,
        augment: AugmentConfig | None = None,
        channels_last: bool = False,
        seed: int = 0,
        dist: DistInfo = DistInfo(),
        num_classes: int | None = None,
    ) -> None:
        super().__init__(data.classes, batch_size=batch_size, device=device, train=train, seed=seed, dist=dist)
        images = data.images
        if tuple(images.shape[-2:]) != tuple(spec.image_size):
            from torchvision.transforms.v2 import functional as TF

            # Resize once, not every epoch.
            images = TF.resize(images, list(spec.image_size), antialias=True)
        self.size = tuple(spec.image_size)
        self.augment_config = augment if train else None
        self.padding = augment.crop_padding if self.augment_config else 0
        # Stored padded and channels-last once, so a batch is one gather (see gather_crop_flip).
        self.store = pad_store(images, self.padding).to(self.device)
        self.labels = data.labels.to(self.device)
        self.normalize = Normalize(spec.mean, spec.std, channels_last)
        self.augment = BatchAugment(augment) if self.augment_config else None
        self.mix = mix_transform(augment, num_classes or len(self.classes)) if self.augment_config else None

    @property
    def num_samples(self) -> int:
        return self.store.shape[0]

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        flip = bool(self.augment_config and self.augment_config.hflip)
        for sel in self.step_indices(epoch, start_step):
            x = gather_crop_flip(self.store, sel, self.size, self.padding, flip, self.generator)
            y = self.labels[sel]
            if self.augment is not None and self.augment.active:
                x = self.augment(x)
            x = self.normalize(x)
            if self.mix is not None:
                x, y = self.mix(x, y)
            yield x, y


class LoaderBatches(BatchSource):
    """Image files decoded and augmented per sample in DataLoader workers."""

    def __init__(
        self,
        data: ImageFiles,
        spec: ImageInputSpec,
        *,
        batch_size: int,
        device: torch.device,
        train: bool,
        augment: AugmentConfig | None = None,
        channels_last: bool = False,
        seed: int = 0,
        dist: DistInfo = DistInfo(),
        workers: int = 2,
        num_classes: int | None = None,
    ) -> None:
        super().__init__(data.classes, batch_size=batch_size, device=device, train=train, seed=seed, dist=dist)
        size = tuple(spec.image_size)
        transform = sample_transform(augment or AugmentConfig(), size) if train else eval_transform(size, spec.crop_pct)
        self.dataset = data.with_transform(transform)
        self.workers = workers
        self.normalize = Normalize(spec.mean, spec.std, channels_last)
        self.mix = mix_transform(augment, num_classes or len(self.classes)) if (train and augment) else None

    @property
    def num_samples(self) -> int:
        return len(self.dataset)

    def _loader(self, epoch: int):
        # Worker seeds come from this generator: the same epoch decodes and augments alike.
        g = torch.Generator().manual_seed(self.seed * 7919 + epoch)
        return torch.utils.data.DataLoader(
            torch.utils.data.Subset(self.dataset, self.indices(epoch).tolist()),
            batch_size=self.batch_size,
            shuffle=False,
            drop_last=self.train,
            num_workers=self.workers,
            collate_fn=collate_skipping_none,
            pin_memory=self.device.type == "cuda",
            generator=g,
            persistent_workers=False,
        )

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for step, batch in enumerate(self._loader(epoch)):
            if step >= len(self):
                break
            if step < start_step or batch is None:
                continue
            x, y = batch
            x = self.normalize(x.to(self.device, non_blocking=True))
            y = y.to(self.device, non_blocking=True)
            if self.mix is not None:
                x, y = self.mix(x, y)
            yield x, y


class TensorBatches(BatchSource):
    """Ready-made float inputs and integer labels (the Python API's ``(x, y)`` tuples)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, batch_size: int, device: torch.device, train: bool,
                 seed: int = 0, dist: DistInfo = DistInfo(), classes: Sequence[str] | None = None,
                 channels_last: bool = False) -> None:
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"inputs and labels differ in length: {x.shape[0]} vs {y.shape[0]}")
        if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise TypeError(f"labels must be integer class indices, got {y.dtype}")
        classes = list(classes) if classes else [str(i) for i in range(int(y.max()) + 1)]
        super().__init__(classes, batch_size=batch_size, device=device, train=train, seed=seed, dist=dist)
        self.x, self.y = x.to(self.device), y.long().to(self.device)
        self.channels_last = channels_last and x.ndim == 4

    @property
    def num_samples(self) -> int:
        return self.x.shape[0]

    def epoch(self, epoch: int, start_step: int = 0):
        for sel in self.step_indices(epoch, start_step):
            x = self.x[sel].float()
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.y[sel]


def soft_accuracy_hits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Correct top-1 predictions; with mixed (soft) targets the dominant class counts."""
    hard = targets.argmax(1) if targets.ndim == 2 else targets
    return (logits.argmax(1) == hard).sum()


def loss_fn(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0, reduction: str = "mean") -> torch.Tensor:
    # cross_entropy takes class indices or (mixup/cutmix) probabilities alike.
    return F.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing, reduction=reduction)
