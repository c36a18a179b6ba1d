"""Input specs of the built-in kinds: how raw images and raw audio become model input.

A spec is stored with every trained model (``checkpoint["input"]``, ``data_config.json``)
and rebuilt with :func:`resnetkit.data.interface.input_spec_from_dict`, so evaluation,
prediction, export and serving preprocess exactly as training did.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn

from .audio_features import DatasetNormalizer, FeatureConfig, hz_to_mel, mel_to_hz
from .audio_io import AUDIO_EXTENSIONS, AudioFormatError, fix_length, load_audio
from .augment import Normalize, eval_transform
from .image_io import IMAGE_EXTENSIONS, ImageDataError, to_uint8_image
from .interface import Display, InputSpec, PreparedInputs, register_input_spec

# The normalization of a model without a data config (a plain nn.Module).
FALLBACK_MEAN, FALLBACK_STD, FALLBACK_SIZE = 0.5, 0.25, (224, 224)


@register_input_spec
@dataclass
class ImageInputSpec(InputSpec):
    """Resize, center-crop and normalize: uint8 images to the model's float input."""

    in_chans: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pct: float = 1.0

    kind = "image"
    file_extensions = IMAGE_EXTENSIONS
    resize_hint = "resize with --img-size {n}"

    def __post_init__(self) -> None:
        self.image_size = tuple(int(s) for s in self.image_size)
        self.mean, self.std = tuple(float(m) for m in self.mean), tuple(float(s) for s in self.std)
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            raise ValueError(f"image_size must be (height, width) >= 1, got {self.image_size}")
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise ValueError(f"mean and std need {self.in_chans} values (one per channel), got {self.mean} and {self.std}")
        if not 0 < self.crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct}")

    @property
    def input_size(self) -> tuple[int, int, int]:
        return (self.in_chans, *self.image_size)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "in_chans": self.in_chans, "image_size": list(self.image_size),
                "mean": list(self.mean), "std": list(self.std), "crop_pct": self.crop_pct}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ImageInputSpec":
        try:
            return cls(int(values["in_chans"]), tuple(values["image_size"]), tuple(values["mean"]),
                       tuple(values["std"]), float(values.get("crop_pct", 1.0)))
        except KeyError as err:
            raise ValueError(f"an image input spec needs {err.args[0]!r}; got keys {sorted(values)}") from None

    def normalizer(self, channels_last: bool = False) -> Normalize:
        return Normalize(self.mean, self.std, channels_last)

    def prepare(self, items: Sequence[Any], device: torch.device) -> PreparedInputs:
        transform = eval_transform(self.image_size, self.crop_pct)
        tensors, names, errors = [], [], []
        for item in items:
            try:
                name, image = to_uint8_image(item, self.in_chans)
            except ImageDataError as err:
                names.append(_item_name(item))
                errors.append(str(err))
                continue
            names.append(name)
            errors.append(None)
            tensors.append(transform(image))
        batch = self.normalizer()(torch.stack(tensors).to(device)) if tensors else None
        return PreparedInputs(batch, names, errors)

    def display(self, items: Sequence[Any], batch: torch.Tensor) -> Display:
        """The images as the model sees them (resized, cropped), back in [0, 1]."""
        m = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        s = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        images = (batch.detach().float().cpu() * s + m).clamp(0, 1).permute(0, 2, 3, 1).numpy()
        return Display(list(images), "image")


def image_spec_for_model(model: Optional[nn.Module], in_chans: int, size: Optional[tuple[int, int]] = None,
                         crop_pct: Optional[float] = None) -> ImageInputSpec:
    """The spec of ``model``'s data config (mean, std, crop), at ``size`` (default: the model's input size).

    A model built for another channel count than its data config lists (a 3-channel
    config on a 1-channel model) gets the channel-averaged statistics.
    """
    config = getattr(model, "data_config", None)
    if config is not None:
        mean, std, default_crop = tuple(config.mean), tuple(config.std), config.crop_pct
        default_size = tuple(config.input_size[1:])
    else:
        mean, std, default_crop, default_size = (FALLBACK_MEAN,), (FALLBACK_STD,), 1.0, FALLBACK_SIZE
    if len(mean) != in_chans:
        mean, std = (sum(mean) / len(mean),) * in_chans, (sum(std) / len(std),) * in_chans
    return ImageInputSpec(in_chans, tuple(size or default_size), mean, std,
                          default_crop if crop_pct is None else crop_pct)


@register_input_spec
@dataclass
class AudioInputSpec(InputSpec):
    """Decode, resample, crop or pad to the trained duration, then features and their normalization.

    ``normalizer`` holds the training set's feature statistics when ``features.normalize``
    is ``"dataset"`` (see :class:`~resnetkit.data.audio_features.DatasetNormalizer`).
    """

    features: FeatureConfig
    normalizer: Optional[dict[str, Any]] = None
    # The words of Speech Commands' 12-class protocol, when the model was trained on it: new
    # data is labelled the same way (other words _unknown_, silence cut from noise).
    keywords: Optional[list[str]] = None
    in_chans: int = field(default=1, init=False)

    kind = "audio"
    file_extensions = AUDIO_EXTENSIONS
    resize_hint = "more mel bands (--n-mels) or frames (--clip-seconds) make the features larger"

    def __post_init__(self) -> None:
        if not isinstance(self.features, FeatureConfig):
            raise TypeError(f"features must be a FeatureConfig, got {type(self.features).__name__}")
        self.features.validate()
        if self.features.normalize == "dataset":
            if self.normalizer is None:
                raise ValueError("an audio input spec with normalize='dataset' needs the normalizer statistics")
            DatasetNormalizer.from_dict(self.normalizer)  # validates

    @property
    def sample_rate(self) -> int:
        return self.features.sample_rate

    @property
    def num_samples(self) -> int:
        return self.features.num_samples

    @property
    def input_size(self) -> tuple[int, int, int]:
        return (1, self.features.num_bins, self.features.num_frames)

    def build_frontend(self) -> nn.Module:
        """Features followed by the stored normalization, ``(N, samples)`` -> ``(N, 1, F, T)``."""
        normalizer = DatasetNormalizer.from_dict(self.normalizer) if self.normalizer is not None else None
        return self.features.build(normalizer).eval()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "in_chans": 1, "sample_rate": self.sample_rate,
                "duration_s": self.features.duration_s, "input_size": list(self.input_size),
                "features": self.features.to_dict(), "normalizer": self.normalizer, "keywords": self.keywords}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "AudioInputSpec":
        if values.get("kind") != "audio" or not isinstance(values.get("features"), dict):
            raise ValueError(f"not an audio input spec (kind {values.get('kind')!r}); "
                             "expected kind 'audio' with a 'features' dict")
        return cls(FeatureConfig.from_dict(dict(values["features"])), values.get("normalizer"), values.get("keywords"))

    def prepare(self, items: Sequence[Any], device: torch.device) -> PreparedInputs:
        """Features of audio files, uploads (bytes) or 1-D float wave tensors at the spec's rate."""
        waves, names, errors = [], [], []
        for item in items:
            if isinstance(item, torch.Tensor):
                if item.ndim != 1 or not item.is_floating_point():
                    raise ValueError(f"an audio tensor must be a 1-D float wave at {self.sample_rate} Hz, "
                                     f"got {item.dtype} of shape {tuple(item.shape)}")
                names.append("tensor")
                wave = item.detach().float().cpu()
            elif isinstance(item, (str, Path, bytes, bytearray, memoryview, io.IOBase)):
                names.append(_item_name(item))
                try:
                    wave = load_audio(item, self.sample_rate)
                except (AudioFormatError, FileNotFoundError, PermissionError) as err:
                    errors.append(str(err))
                    continue
            else:
                raise TypeError(f"cannot read {type(item).__name__} as audio: pass file paths, bytes or 1-D wave tensors")
            errors.append(None)
            waves.append(fix_length(wave, self.num_samples, "center"))
        if not waves:
            return PreparedInputs(None, names, errors)
        with torch.no_grad():
            batch = self.build_frontend().to(device)(torch.stack(waves).to(device))
        return PreparedInputs(batch, names, errors)

    def display(self, items: Sequence[Any], batch: torch.Tensor) -> Display:
        """Each clip's features before the run's normalization (so colours mean decibels), time in
        seconds and, for log-mel features, frequency in Hz."""
        features = self.features
        waves = []
        for item in items:
            if isinstance(item, torch.Tensor):
                wave = item.detach().float().cpu()
            else:
                if isinstance(item, io.IOBase) and item.seekable():
                    item.seek(0)  # prepare() read it once already
                wave = load_audio(item, features.sample_rate)
            waves.append(fix_length(wave, features.num_samples, "center"))
        with torch.no_grad():
            # Decibels even for a PCEN front end: the picture is read as a spectrogram, on the model's grid.
            db = replace(features, compression="db").build_features()(torch.stack(waves))[:, 0]
        axes: dict[str, Any] = {"duration_s": features.num_samples / features.sample_rate}
        if features.kind == "logmel":
            axes["ylabel"] = "frequency (Hz)"
            edges = torch.linspace(float(hz_to_mel(torch.tensor(features.fmin))),
                                   float(hz_to_mel(torch.tensor(features.fmax))), features.n_mels + 2)
            centres = mel_to_hz(edges)[1:-1].numpy()
            ticks = [hz for hz in (50, 100, 250, 500, 1000, 2000, 4000, 8000, 16000) if centres[0] <= hz <= centres[-1]]
            # Band i covers [i, i + 1) on the drawn axis; place each frequency at its interpolated band centre.
            axes["yticks"] = [(float(np.interp(hz, centres, np.arange(len(centres)))) + 0.5,
                               f"{hz // 1000}k" if hz >= 1000 else str(hz)) for hz in ticks]
        else:
            axes["ylabel"] = "MFCC coefficient"
        return Display([d.numpy() for d in db], "spectrogram", axes)


def _item_name(item: Any) -> str:
    return str(item) if isinstance(item, (str, Path)) else "upload"
