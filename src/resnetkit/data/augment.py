"""Image augmentation: presets, batched on-device augmentation, and per-sample pipelines.

For data held in memory, whole batches are augmented on the training device. Random crop
with padding and horizontal flip draw their parameters per sample in one vectorized
operation (they are the CIFAR recipe and sit on the hot path). The other transforms come
from torchvision.transforms.v2, applied to small chunks of the batch so that samples in
different chunks get different parameters. Files on disk get the same transforms per
sample in DataLoader workers, after the crop and flip of :mod:`.image_pipeline`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Sequence

import torch
from torchvision.transforms import v2

AUTO_AUGMENT = ("randaugment", "trivialaugment")
FLIP_MODES = ("random", "alternate")
PAD_MODES = ("zero", "reflect")


@dataclass(frozen=True)
class AugmentConfig:
    """What to do to each training image. Zero / False / None turn a transform off."""

    crop_padding: int = 0  # random crop of the original size after padding (CIFAR: 4; airbench: 2)
    pad_mode: str = "zero"  # zero (He et al.) or reflect (airbench: the crop never shows a black border)
    hflip: bool = False  # wrong for digits and text, right for natural images
    # random: a coin per image and epoch; alternate: each image mirrored on every other epoch (a random
    # half starts mirrored), so two epochs see both views of every image (airbench).
    flip_mode: str = "random"
    scale: tuple[float, float] | None = None  # RandomResizedCrop area range (ImageNet: 0.08-1)
    rotation: float = 0.0  # max degrees either way
    color_jitter: float = 0.0  # brightness, contrast and saturation strength
    auto_augment: str | None = None  # randaugment or trivialaugment
    random_erasing: float = 0.0  # probability per sample
    mixup: float = 0.0  # Beta(alpha, alpha); 0 is off
    cutmix: float = 0.0  # Beta(alpha, alpha); 0 is off

    def __post_init__(self) -> None:
        if self.flip_mode not in FLIP_MODES:
            raise ValueError(f"unknown flip_mode {self.flip_mode!r}; allowed: {', '.join(FLIP_MODES)}")
        if self.pad_mode not in PAD_MODES:
            raise ValueError(f"unknown pad_mode {self.pad_mode!r}; allowed: {', '.join(PAD_MODES)}")
        if self.flip_mode == "alternate" and not self.hflip:
            raise ValueError("flip_mode 'alternate' mirrors images on every other epoch, but this augmentation "
                             "does not flip (hflip is off, e.g. augment none or digits): turn hflip on or drop flip_mode")
        if self.auto_augment is not None and self.auto_augment not in AUTO_AUGMENT:
            raise ValueError(f"unknown auto_augment {self.auto_augment!r}; allowed: {', '.join(AUTO_AUGMENT)}")
        if self.crop_padding < 0 or self.rotation < 0 or self.color_jitter < 0:
            raise ValueError("crop_padding, rotation and color_jitter must be >= 0")
        if not 0.0 <= self.random_erasing <= 1.0:
            raise ValueError(f"random_erasing is a probability in [0, 1], got {self.random_erasing}")
        if self.scale is not None and not (0 < self.scale[0] <= self.scale[1] <= 1):
            raise ValueError(f"scale must be (min, max) with 0 < min <= max <= 1, got {self.scale}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scale"] = list(self.scale) if self.scale else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "AugmentConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown augmentation option(s) {sorted(unknown)}; allowed: {sorted(known)}")
        d = dict(d)
        if d.get("scale") is not None:
            d["scale"] = tuple(d["scale"])
        return cls(**d)

    @property
    def mixes(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0


PRESETS: dict[str, AugmentConfig] = {
    "none": AugmentConfig(),
    # He et al. 2015, 4.2: 4-pixel padding, random 32x32 crop, horizontal flip.
    "cifar": AugmentConfig(crop_padding=4, hflip=True),
    "cifar-strong": AugmentConfig(crop_padding=4, hflip=True, auto_augment="trivialaugment", random_erasing=0.25),
    # Digits and characters: small shifts only; a flipped 2 is not a 2.
    "digits": AugmentConfig(crop_padding=1),
    "imagenet": AugmentConfig(scale=(0.08, 1.0), hflip=True),
    "imagenet-strong": AugmentConfig(scale=(0.08, 1.0), hflip=True, auto_augment="randaugment",
                                     random_erasing=0.25, mixup=0.2, cutmix=1.0),
}


def get_preset(name: str) -> AugmentConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown augmentation preset {name!r}; allowed: {', '.join(PRESETS)}")
    return PRESETS[name]


def augment_from(preset: str, overrides: dict | None = None) -> AugmentConfig:
    """A preset with some fields replaced (the recipe's or the command line's)."""
    config = get_preset(preset)
    if overrides:
        config = AugmentConfig.from_dict({**config.to_dict(), **overrides})
    return config


def _v2_pipeline(config: AugmentConfig, size: tuple[int, int] | None, per_sample: bool) -> list:
    ops: list = []
    if config.scale is not None and size is not None:
        ops.append(v2.RandomResizedCrop(size, scale=config.scale, antialias=True))
    if per_sample and config.crop_padding:
        ops.append(v2.RandomCrop(size, padding=config.crop_padding))
    if per_sample and config.hflip:
        ops.append(v2.RandomHorizontalFlip())
    if config.rotation:
        ops.append(v2.RandomRotation(config.rotation))
    if config.color_jitter:
        s = config.color_jitter
        ops.append(v2.ColorJitter(brightness=s, contrast=s, saturation=s))
    if config.auto_augment == "randaugment":
        ops.append(v2.RandAugment())
    elif config.auto_augment == "trivialaugment":
        ops.append(v2.TrivialAugmentWide())
    if config.random_erasing:
        ops.append(v2.RandomErasing(p=config.random_erasing, value=0))
    return ops


def sample_transform(config: AugmentConfig, size: tuple[int, int]) -> v2.Compose:
    """Per-sample training transform of an image already decoded whole (a shard's sample, in a worker):
    uint8 CHW in, uint8 at ``size`` out. Files on disk take :class:`~.image_pipeline.TrainCrop` instead,
    which decodes at reduced size when the crop allows."""
    ops = _v2_pipeline(config, size, per_sample=True)
    if config.scale is None:
        ops.insert(0, v2.Resize(size, antialias=True))
    return v2.Compose(ops)


def after_crop_transform(config: AugmentConfig, size: tuple[int, int]) -> v2.Compose | None:
    """What a file's training sample gets after its crop and flip (:class:`~.image_pipeline.TrainCrop`):
    a padded random crop, rotation, colour, auto-augment, erasing; uint8 (C, H, W) at ``size`` in and out.
    None when there is nothing to do."""
    ops = _v2_pipeline(config, None, per_sample=False)
    if config.crop_padding:
        ops.insert(0, v2.RandomCrop(size, padding=config.crop_padding))
    return v2.Compose(ops) if ops else None


def eval_transform(size: tuple[int, int], crop_pct: float) -> v2.Compose:
    """Resize the short side to size/crop_pct, then center-crop (the timm/torchvision eval policy)."""
    resize = tuple(int(round(s / crop_pct)) for s in size)
    return v2.Compose([v2.Resize(min(resize), antialias=True), v2.CenterCrop(size)])


class BatchAugment:
    """The torchvision transforms of ``config`` other than crop and flip, on a uint8 batch.

    Crop and flip are drawn per sample inside :func:`gather_crop_flip`; these run on chunks
    of ``chunk`` samples (one parameter draw per chunk) and use torch's global RNG, whose
    state training checkpoints save.
    """

    def __init__(self, config: AugmentConfig, chunk: int = 8) -> None:
        self.config = config
        self.chunk = chunk
        ops = _v2_pipeline(config, None, per_sample=False)
        self._v2 = v2.Compose(ops) if ops else None

    @property
    def active(self) -> bool:
        return self._v2 is not None or self.config.scale is not None

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.config.scale is not None:
            rrc = v2.RandomResizedCrop(list(images.shape[-2:]), scale=self.config.scale, antialias=True)
            images = torch.cat([rrc(part) for part in images.split(self.chunk)])
        if self._v2 is not None:
            images = torch.cat([self._v2(part) for part in images.split(self.chunk)])
        return images


def pad_store(images: torch.Tensor, padding: int, mode: str = "zero") -> torch.Tensor:
    """uint8 (N, C, H, W) -> padded (N, H+2p, W+2p, C), the layout :func:`gather_crop_flip` reads.

    ``mode`` zero or reflect (the border mirrored without repeating the edge pixel, as
    ``torch.nn.functional.pad(mode="reflect")``; done by indexing, which works on uint8).
    """
    if padding and mode == "reflect":
        h, w = images.shape[-2:]
        if padding >= min(h, w):
            raise ValueError(f"reflect padding of {padding} needs images larger than {padding} pixels, got {h}x{w}")
        rows = _reflected(h, padding, images.device)
        cols = _reflected(w, padding, images.device)
        images = images.index_select(-2, rows).index_select(-1, cols)
    elif padding:
        images = torch.nn.functional.pad(images, (padding,) * 4)
    return images.permute(0, 2, 3, 1).contiguous()


def _reflected(size: int, padding: int, device: torch.device) -> torch.Tensor:
    positions = torch.arange(-padding, size + padding, device=device)
    return torch.where(positions < 0, -positions, torch.where(positions >= size, 2 * (size - 1) - positions, positions))


def alternating_flips(num_samples: int, seed: int, epoch: int) -> torch.Tensor:
    """Which images are mirrored in ``epoch`` under flip_mode alternate: a fixed random half, inverted every other epoch."""
    start = torch.rand(num_samples, generator=torch.Generator().manual_seed(seed * 7_919 + 13)) < 0.5
    return start ^ bool(epoch % 2)


def gather_crop_flip(
    store: torch.Tensor,
    indices: torch.Tensor,
    size: tuple[int, int],
    padding: int,
    flip: bool,
    generator: torch.Generator,
    mirrored: torch.Tensor | None = None,
) -> torch.Tensor:
    """Select, randomly crop and flip samples of ``store`` in a single gather.

    ``store`` is (N, H+2p, W+2p, C) uint8 from :func:`pad_store`. Each sample gets its own
    offset in [0, 2p] and a coin flip, drawn from ``generator`` (or, with ``mirrored``, the
    given flips of these samples). The result is a (n, C, h, w) view with channels-last
    strides, the layout the convolutions want, so no copy follows.
    """
    n, (h, w) = indices.shape[0], size
    _, hp, wp, c = store.shape
    device = store.device
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(device)
    cols = torch.arange(w, device=device).expand(n, w)
    if flip:
        if mirrored is None:
            mirrored = torch.rand(n, generator=generator) < 0.5
        cols = torch.where(mirrored.to(device)[:, None], w - 1 - cols, cols)
    rows = torch.arange(h, device=device)[None, :] + dy[:, None]
    pixel = (indices[:, None, None] * hp + rows[:, :, None]) * wp + (cols + dx[:, None])[:, None, :]
    out = store.view(-1, c).index_select(0, pixel.reshape(-1))
    return out.view(n, h, w, c).permute(0, 3, 1, 2)


def mix_transform(config: AugmentConfig, num_classes: int):
    """MixUp and/or CutMix from torchvision (one of the two per batch when both are on)."""
    ops = []
    if config.mixup > 0:
        ops.append(v2.MixUp(alpha=config.mixup, num_classes=num_classes))
    if config.cutmix > 0:
        ops.append(v2.CutMix(alpha=config.cutmix, num_classes=num_classes))
    if not ops:
        return None
    return ops[0] if len(ops) == 1 else v2.RandomChoice(ops)


class Normalize:
    """uint8 batch -> float (x/255 - mean) / std on the batch's device, channels-last when asked."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], channels_last: bool = False) -> None:
        std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.scale = 1.0 / (std_t * 255.0)
        self.shift = -torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) / std_t
        self.channels_last = channels_last

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.scale.device != images.device:
            self.scale, self.shift = self.scale.to(images.device), self.shift.to(images.device)
        # float() keeps the input's strides: a channels-last view stays channels-last.
        x = images.float().mul_(self.scale).add_(self.shift)
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=memory_format)
