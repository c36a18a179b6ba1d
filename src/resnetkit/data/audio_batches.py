"""The audio batch source: waves on the device, augmented, turned into features and normalized there."""

from __future__ import annotations

from typing import Iterator, Optional, Sequence

import torch

from .audio_augment import (
    NoiseBank,
    add_bank_noise,
    add_white_noise,
    random_equalization,
    random_gain,
    random_mel_shift,
    random_time_shift,
    sample_factors,
    spec_augment,
    speed_perturb,
    tempo_perturb,
)
from .audio_io import fix_length_batch
from .batching import BatchSource
from .interface import BatchOptions


class AudioDeviceStep:
    """What becomes of a batch of waves on the device: augmentation, features, SpecAugment, mixup.

    Order: wave augmentations (time shift, speed, gain, equalization, noise), features
    (filterbanks warped by VTLP) and their normalization (the spec's front end), time
    stretches (tempo), shifts along the mel axis, SpecAugment masks, mixup. Shared by the
    in-memory source below and the streaming shard source (:mod:`.shards`); ``generator``
    draws the augmentation (the owning source's, saved in its checkpoints).
    """

    def __init__(self, spec, options: BatchOptions, num_classes: int, generator: torch.Generator,
                 noise_bank: Optional[NoiseBank] = None) -> None:
        device = torch.device(options.device)
        self.options = options
        self.generator = generator
        self.frontend = spec.build_frontend().to(device)
        self.augment = options.augment if options.train else None
        self.max_shift = int(round(self.augment.time_shift_s * spec.sample_rate)) if self.augment else 0
        self.noise_bank = noise_bank.to(device) if noise_bank is not None else None
        self.mix = None
        if self.augment is not None and self.augment.mixup > 0:
            from torchvision.transforms import v2

            self.mix = v2.MixUp(alpha=self.augment.mixup, num_classes=options.num_classes or num_classes)

    def _augment_waves(self, waves: torch.Tensor) -> torch.Tensor:
        cfg, g = self.augment, self.generator
        if self.max_shift:
            waves = random_time_shift(waves, self.max_shift, g, mode="zero")
        if cfg.speed is not None:
            waves = speed_perturb(waves, cfg.speed, g)
        if cfg.gain_db is not None:
            waves = random_gain(waves, cfg.gain_db, g)
        if cfg.eq_db > 0:
            waves = random_equalization(waves, cfg.eq_db, g)
        if cfg.noise_snr_db is not None:
            if self.noise_bank is not None:
                noisy = add_bank_noise(waves, self.noise_bank, cfg.noise_snr_db, g)
            else:
                noisy = add_white_noise(waves, cfg.noise_snr_db, g)
            if cfg.noise_prob < 1:
                pick = torch.rand(waves.shape[0], generator=g).to(waves.device) < cfg.noise_prob
                noisy = torch.where(pick[:, None], noisy, waves)
            waves = noisy
        return waves

    def __call__(self, waves: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            cfg = self.augment
            warp = None
            if cfg is not None:
                waves = self._augment_waves(waves)
                if cfg.vtlp is not None:
                    warp = sample_factors(cfg.vtlp, waves.shape[0], self.generator, waves.device)
            # Only training warps; an exported file's spec (waves in, no features) is never trained.
            x = self.frontend(waves) if warp is None else self.frontend(waves, warp)
            if cfg is not None and cfg.tempo is not None:
                x = tempo_perturb(x, cfg.tempo, self.generator)
            if cfg is not None and cfg.mel_shift > 0:
                x = random_mel_shift(x, cfg.mel_shift, self.generator)
            if cfg is not None and cfg.masks:
                x = spec_augment(x, self.generator, num_freq_masks=cfg.freq_masks, freq_mask_width=cfg.freq_mask_width,
                                 num_time_masks=cfg.time_masks, time_mask_width=cfg.time_mask_width)
        if self.mix is not None:
            x, y = self.mix(x, y)
        if self.options.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y


class AudioBatches(BatchSource):
    """Clips held on the device as one ``(N, samples)`` tensor; each batch becomes ``(n, 1, F, T)`` features.

    Each batch goes through :class:`AudioDeviceStep`. The order of an epoch depends only on
    (seed, epoch), each process of a DDP run takes every world_size-th clip, and the
    augmentation generator's state is saved in checkpoints.
    """

    def __init__(self, waves: torch.Tensor, labels: torch.Tensor, classes: Sequence[str], spec, options: BatchOptions,
                 noise_bank: Optional[NoiseBank] = None) -> None:
        super().__init__(classes, options)
        if waves.shape[1] != spec.num_samples:
            # Same rate, another duration: crop or pad once (centred, as evaluation does).
            waves = fix_length_batch(list(waves), spec.num_samples, "center")
        self.waves = waves.to(self.device)
        self.labels = labels.to(self.device)
        self.step = AudioDeviceStep(spec, options, len(self.classes), self.generator, noise_bank)

    @property
    def num_samples(self) -> int:
        return self.waves.shape[0]

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for sel in self.step_indices(epoch, start_step):
            yield self.step(self.waves[sel], self.labels[sel])
