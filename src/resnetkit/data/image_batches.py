"""Image batch sources: images held in memory and augmented a batch at a time, or files decoded in workers."""

from __future__ import annotations

from typing import Iterator

import torch

from .augment import (
    AugmentConfig,
    BatchAugment,
    alternating_flips,
    eval_transform,
    gather_crop_flip,
    mix_transform,
    pad_store,
    sample_transform,
)
from .batching import BatchSource
from .image_io import ImageDataError, UnreadableFile, collate_readable
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


class LoaderBatches(BatchSource):
    """Image files decoded and augmented per sample in DataLoader workers."""

    def __init__(self, data, spec, options: BatchOptions) -> None:
        super().__init__(data.classes, options)
        size = tuple(spec.image_size)
        augment = options.augment if options.train else None
        if augment is not None and (augment.flip_mode != "random" or augment.pad_mode != "zero"):
            raise ValueError(f"{data.source}: flip_mode {augment.flip_mode!r} and pad_mode {augment.pad_mode!r} are "
                             "batched on the device for images held in memory (up to 96 px); these images are decoded "
                             "per file: use flip_mode random and pad_mode zero")
        transform = sample_transform(augment or AugmentConfig(), size) if options.train else eval_transform(size, spec.crop_pct)
        self.dataset = data.with_transform(transform)
        self.workers = options.workers
        self.normalize = spec.normalizer(options.channels_last)
        self.mix = mix_transform(augment, options.num_classes or len(self.classes)) if augment else None

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
            # The ragged last batch is dropped by stopping at len(self) (steps_per_epoch), which
            # keeps it when it is the only one: fewer samples than the batch size still train.
            drop_last=False,
            num_workers=self.workers,
            collate_fn=collate_readable,
            pin_memory=self.device.type == "cuda",
            generator=g,
            persistent_workers=False,
        )

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for step, batch in enumerate(self._loader(epoch)):
            if isinstance(batch, UnreadableFile):
                raise ImageDataError(f"{batch.message} (stopping: --on-corrupt stop)")
            if step >= len(self):
                break
            if step < start_step:
                continue
            x, y, skipped = batch
            self.note_skipped(skipped)
            if x is None:
                continue
            x = self.normalize(x.to(self.device, non_blocking=True))
            y = y.to(self.device, non_blocking=True)
            if self.mix is not None:
                x, y = self.mix(x, y)
            yield x, y
