"""Image batch sources: images held in memory and augmented a batch at a time, or files decoded in workers."""

from __future__ import annotations

from typing import Iterator

import torch

from .augment import (
    AugmentConfig,
    BatchAugment,
    after_crop_transform,
    alternating_flips,
    gather_crop_flip,
    mix_transform,
    pad_store,
)
from .batching import BatchSource
from .image_io import ImageDataError, UnreadableFile, collate_readable
from .image_pipeline import EvalCrop, TrainCrop
from .interface import BatchOptions


class InMemoryBatches(BatchSource):
    """Images held as one uint8 tensor on the device, augmented a batch at a time."""

    def __init__(self, data, spec, options: BatchOptions) -> None:
        super().__init__(data.classes, options)
        images = data.images
        if tuple(images.shape[-2:]) != tuple(spec.image_size):
            from torchvision.transforms.v2 import functional as TF

            # Resize once, not every epoch.
            images = TF.resize(images, list(spec.image_size), antialias=True)
        self.size = tuple(spec.image_size)
        augment = options.augment if options.train else None
        self.augment_config = augment
        self.padding = augment.crop_padding if augment else 0
        # Stored padded and channels-last once, so a batch is one gather (see gather_crop_flip).
        self.store = pad_store(images, self.padding, augment.pad_mode if augment else "zero").to(self.device)
        self.labels = data.labels.to(self.device)
        self.normalize = spec.normalizer(options.channels_last)
        self.augment = BatchAugment(augment) if augment else None
        self.mix = mix_transform(augment, options.num_classes or len(self.classes)) if augment else None

    @property
    def num_samples(self) -> int:
        return self.store.shape[0]

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        flip = bool(self.augment_config and self.augment_config.hflip)
        alternate = flip and self.augment_config.flip_mode == "alternate"
        flips = alternating_flips(self.num_samples, self.seed, epoch) if alternate else None
        for sel in self.step_indices(epoch, start_step):
            mirrored = flips[sel.cpu()] if flips is not None else None
            x = gather_crop_flip(self.store, sel, self.size, self.padding, flip, self.generator, mirrored)
            y = self.labels[sel]
            if self.augment is not None and self.augment.active:
                x = self.augment(x)
            x = self.normalize(x)
            if self.mix is not None:
                x, y = self.mix(x, y)
            yield x, y


class EpochBatches(torch.utils.data.Sampler):
    """The batch sampler of :class:`LoaderBatches`: one epoch's batches of ``(index, seed)`` keys.

    The source sets the epoch before each pass, so one DataLoader (and its persistent workers)
    serves every epoch, and a resumed epoch starts at its step without decoding the ones before.
    """

    def __init__(self) -> None:
        self.keys: list[tuple[int, int | None]] = []
        self.batch_size = 1
        self.steps = 0
        self.start = 0

    def set_epoch(self, keys: list[tuple[int, int | None]], batch_size: int, steps: int, start: int) -> None:
        self.keys, self.batch_size, self.steps, self.start = keys, batch_size, steps, start

    def __iter__(self):
        for step in range(self.start, self.steps):
            yield self.keys[step * self.batch_size : (step + 1) * self.batch_size]

    def __len__(self) -> int:
        return max(0, self.steps - self.start)


class LoaderBatches(BatchSource):
    """Image files decoded, cropped and flipped per sample in DataLoader workers (:mod:`.image_pipeline`).

    Workers hand over uint8 batches (in pinned memory for a CUDA device) and stay alive across
    epochs; each batch is normalized on the device as it arrives. A training sample's crop,
    flip and other augmentation are drawn from a seed of (seed, epoch, rank, place in the epoch).
    """

    def __init__(self, data, spec, options: BatchOptions) -> None:
        super().__init__(data.classes, options)
        size = tuple(spec.image_size)
        augment = options.augment if options.train else None
        if augment is not None and (augment.flip_mode != "random" or augment.pad_mode != "zero"):
            raise ValueError(f"{data.source}: flip_mode {augment.flip_mode!r} and pad_mode {augment.pad_mode!r} are "
                             "batched on the device for images held in memory (up to 96 px); these images are decoded "
                             "per file: use flip_mode random and pad_mode zero")
        draft = getattr(data, "draft", True)
        if options.train:
            config = augment or AugmentConfig()
            reader = TrainCrop(size, scale=config.scale, hflip=config.hflip, draft=draft)
            self.dataset = data.with_reader(reader, after_crop_transform(config, size))
        else:
            self.dataset = data.with_reader(EvalCrop(size, spec.crop_pct, draft=draft))
        self.workers = options.workers
        self.normalize = spec.normalizer(options.channels_last)
        self.mix = mix_transform(augment, options.num_classes or len(self.classes)) if augment else None
        self.sampler = EpochBatches()
        # Built once: persistent workers keep their processes (and the files' page cache
        # warm) from one epoch to the next instead of starting again.
        self.loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=self.sampler,
            num_workers=self.workers,
            collate_fn=collate_readable,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(self.seed * 7919),
            persistent_workers=self.workers > 0,
        )

    @property
    def num_samples(self) -> int:
        return len(self.dataset)

    def epoch_keys(self, epoch: int) -> list[tuple[int, int | None]]:
        """``(sample index, augmentation seed)`` in this process's order for ``epoch`` (seed None: evaluation)."""
        order = self.indices(epoch).tolist()
        if not self.train:
            return [(i, None) for i in order]
        g = torch.Generator().manual_seed((self.seed * 7919 + epoch) * 1009 + self.dist.rank)
        seeds = torch.randint(0, 2**62, (len(order),), generator=g).tolist()
        return list(zip(order, seeds))

    def host_batches(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's batches as the workers hand them over: uint8 (N, C, H, W) and labels on the host
        (pinned for a CUDA device), before the copy to the device and the normalization."""
        # Only len(self) batches: training drops the ragged last one (unless it is the only one).
        self.sampler.set_epoch(self.epoch_keys(epoch), self.batch_size, len(self), start_step)
        for batch in self.loader:
            if isinstance(batch, UnreadableFile):
                raise ImageDataError(f"{batch.message} (stopping: --on-corrupt stop)")
            x, y, skipped = batch
            self.note_skipped(skipped)
            if x is not None:
                yield x, y

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self.host_batches(epoch, start_step):
            x = self.normalize(x.to(self.device, non_blocking=True))
            y = y.to(self.device, non_blocking=True)
            if self.mix is not None:
                x, y = self.mix(x, y)
            yield x, y
