"""Audio clips decoded into memory: the audio kind of :class:`~.interface.LabelledData`.

Every file is decoded once (:func:`resnetkit.data.audio_io.load_audio`: any bit depth and
channel count, resampled to the configured rate) and cropped or padded to the configured
duration, so a data set is one float32 ``(N, samples)`` tensor. Features are computed a
batch at a time on the training device (:mod:`.audio_batches`).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
from torch import nn

from .audio_batches import AudioBatches
from .audio_augment import AudioAugmentConfig, NoiseBank, audio_augment_from
from .audio_features import DatasetNormalizer, FeatureConfig
from .audio_io import AUDIO_EXTENSIONS, AudioFormatError, fix_length, is_silent, load_audio
from .classes import label_mapping
from .folders import check_on_corrupt
from .interface import SHOW_PATHS, BatchOptions, LabelledData, Preview, SkippedFile
from .specs import AudioInputSpec

log = logging.getLogger(__name__)


class AudioDataError(ValueError):
    """Bad audio data (empty folder, unreadable file, unknown class or layout); the message names it."""


@dataclass
class AudioData(LabelledData):
    """Labelled clips decoded into memory: ``waves`` float32 (N, samples), ``labels`` int64 (N,)."""

    waves: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    features: FeatureConfig
    source: str = ""
    paths: list[str] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    silent: list[str] = field(default_factory=list)
    # Noise recordings the data set ships (Speech Commands' _background_noise_).
    noise_dir: Optional[str] = None
    # The keywords of the 12-class protocol when the labels follow it (other words: _unknown_).
    keywords: Optional[list[str]] = None

    in_chans = 1

    def __post_init__(self) -> None:
        name = self.source or "audio data"
        if self.waves.dtype != torch.float32 or self.waves.ndim != 2:
            raise AudioDataError(f"{name}: expected float32 waves (N, samples), got {self.waves.dtype} {tuple(self.waves.shape)}")
        if self.labels.shape != (self.waves.shape[0],):
            raise AudioDataError(f"{name}: {self.waves.shape[0]} clips but {tuple(self.labels.shape)} labels")
        if self.paths and len(self.paths) != self.waves.shape[0]:
            raise AudioDataError(f"{name}: {self.waves.shape[0]} clips but {len(self.paths)} paths")
        self._normalizer: Optional[DatasetNormalizer] = None

    def __len__(self) -> int:
        return self.waves.shape[0]

    def _replace(self, **changes: Any) -> "AudioData":
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values.update(changes)
        return AudioData(**values)

    def subset(self, indices: Union[torch.Tensor, Sequence[int]]) -> "AudioData":
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        paths = [self.paths[i] for i in idx.tolist()] if self.paths else []
        return self._replace(waves=self.waves[idx], labels=self.labels[idx], classes=list(self.classes),
                             paths=paths, skipped=list(self.skipped), silent=list(self.silent))

    def remap_classes(self, classes: Sequence[str]) -> "AudioData":
        mapping = label_mapping(self.source, self.classes, classes, AudioDataError)
        return self._replace(labels=mapping[self.labels], classes=list(classes))

    def fit_normalizer(self, batch_size: int = 256) -> DatasetNormalizer:
        """Per-bin mean and std of this data's features (computed once, on the CPU)."""
        if self._normalizer is None:
            extractor = self.features.build_features()
            with torch.no_grad():
                batches = (extractor(chunk) for chunk in self.waves.split(batch_size))
                self._normalizer = DatasetNormalizer(per_bin=True).fit(batches)
        return self._normalizer

    # -- the LabelledData interface ------------------------------------------------------------------
    def input_spec(self, model: Optional[nn.Module] = None, img_size: Optional[int] = None) -> AudioInputSpec:
        """This data's features (with its statistics when normalized by them); the size is the features'."""
        in_chans = getattr(model, "in_chans", 1) if model is not None else 1
        if in_chans != 1:
            name = getattr(model, "model_name", type(model).__name__)
            raise AudioDataError(
                f"{self.source}: audio features have 1 channel (one spectrogram image), but {name} expects "
                f"{in_chans} input channels; build it with in_chans=1"
            )
        if img_size is not None:
            raise AudioDataError(f"{self.source}: img_size does not apply to audio; the feature settings "
                                 "(sample rate, n_mels, hop length, clip seconds) fix the input size")
        normalizer = self.fit_normalizer().to_dict() if self.features.normalize == "dataset" else None
        return AudioInputSpec(self.features, normalizer, keywords=self.keywords)

    def augment_config(self, preset: str = "auto", overrides: Optional[dict[str, Any]] = None) -> AudioAugmentConfig:
        return audio_augment_from(preset, overrides, self.noise_dir)

    def batches(self, spec: AudioInputSpec, options: BatchOptions) -> AudioBatches:
        if not isinstance(spec, AudioInputSpec):
            raise TypeError(f"{self.source}: audio data needs an AudioInputSpec, got {type(spec).__name__}")
        if options.augment is not None and not isinstance(options.augment, AudioAugmentConfig):
            raise TypeError(f"{self.source}: audio data needs an AudioAugmentConfig, got {type(options.augment).__name__}")
        if self.features.sample_rate != spec.sample_rate:
            raise AudioDataError(f"{self.source}: clips were decoded at {self.features.sample_rate} Hz, "
                                 f"the model's front end expects {spec.sample_rate} Hz")
        noise = None
        aug = options.augment if options.train else None
        if aug is not None and aug.noise_snr_db is not None and aug.noise_dir:
            noise = load_noise_bank(aug.noise_dir, spec.sample_rate)
        return AudioBatches(self.waves, self.labels, self.classes, spec, options, noise)

    def preview(self, max_examples: int = 10) -> Preview:
        """One log-mel spectrogram per class (in dB, whatever the model eats: MFCCs are unreadable as pictures)."""
        chosen: list[int] = []
        for c in range(len(self.classes)):
            hits = (self.labels == c).nonzero().flatten()
            if len(hits):
                chosen.append(int(hits[0]))
            if len(chosen) >= max_examples:
                break
        config = dataclasses.replace(self.features, kind="logmel", normalize="none", compression="db")
        with torch.no_grad():
            specs = config.build_features()(self.waves[chosen])
        labels = [self.classes[int(self.labels[i])] for i in chosen]
        title = f"log-mel spectrograms ({config.n_mels} bands, {config.sample_rate} Hz)"
        return Preview(specs, labels, "spectrogram", "spectrograms.png", title)


def load_noise_bank(folder: Union[str, Path], sample_rate: int) -> NoiseBank:
    """Every audio file under ``folder`` at ``sample_rate``; unreadable ones are skipped and named."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise AudioDataError(f"noise_dir {root}: no such folder; expected a folder of noise recordings ({', '.join(AUDIO_EXTENSIONS)})")
    noises, bad = [], []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS):
        try:
            noises.append(load_audio(path, sample_rate))
        except AudioFormatError as err:
            bad.append(str(err))
    if bad:
        log.warning("noise_dir %s: skipped %d unreadable file(s): %s", root, len(bad), "; ".join(bad[:SHOW_PATHS]))
    if not noises:
        raise AudioDataError(f"noise_dir {root}: no readable noise recordings ({', '.join(AUDIO_EXTENSIONS)})")
    return NoiseBank(noises)


def decode_audio_files(
    samples: Sequence[tuple[str, int]],
    classes: Sequence[str],
    features: FeatureConfig,
    *,
    on_corrupt: str = "skip",
    source: str = "",
    ignored: Sequence[SkippedFile] = (),
) -> AudioData:
    """Decode every file once at ``features.sample_rate``, centred and cropped/padded to its duration.

    Unreadable files (empty, corrupt, unsupported) are skipped and named in one log warning
    together with ``ignored`` (files the scan passed over), the count of silent files (kept)
    and of clips longer than the duration (cropped to their middle); ``on_corrupt="stop"``
    raises at the first unreadable file instead.
    """
    check_on_corrupt(on_corrupt)
    num_samples = features.num_samples
    waves = torch.zeros(len(samples), num_samples, dtype=torch.float32)
    keep: list[int] = []
    skipped = list(ignored)
    silent: list[str] = []
    cropped: list[tuple[float, str]] = []
    for row, (path, _) in enumerate(samples):
        try:
            wave = load_audio(path, features.sample_rate)
        except (AudioFormatError, FileNotFoundError, PermissionError) as err:
            if on_corrupt == "stop":
                raise AudioDataError(f"{err} (stopping: on_corrupt is 'stop'; 'skip' leaves such files out)") from None
            skipped.append(SkippedFile(str(path), str(err)))
            continue
        if is_silent(wave):
            silent.append(str(path))
        if wave.shape[0] > num_samples:
            cropped.append((wave.shape[0] / features.sample_rate, str(path)))
        waves[row] = fix_length(wave, num_samples, "center")
        keep.append(row)
    _report(source, skipped, silent, cropped, features.duration_s, len(samples))
    if not keep:
        raise AudioDataError(f"{source}: no readable audio among {len(samples)} file(s)")
    idx = torch.tensor(keep, dtype=torch.long)
    labels = torch.tensor([samples[i][1] for i in keep], dtype=torch.long)
    return AudioData(waves[idx] if len(keep) < len(samples) else waves, labels, list(classes), features,
                     source, [str(samples[i][0]) for i in keep], skipped, silent)


def _report(source: str, skipped: Sequence[SkippedFile], silent: Sequence[str], cropped: Sequence[tuple[float, str]],
            duration_s: float, total: int) -> None:
    """One warning for everything a data set left out or changed."""
    parts = []
    if skipped:
        shown = "; ".join(s.reason for s in skipped[:SHOW_PATHS])
        more = f" and {len(skipped) - SHOW_PATHS} more" if len(skipped) > SHOW_PATHS else ""
        parts.append(f"skipped {len(skipped)} file(s): {shown}{more}")
    if silent:
        shown = ", ".join(silent[:SHOW_PATHS])
        more = f" and {len(silent) - SHOW_PATHS} more" if len(silent) > SHOW_PATHS else ""
        parts.append(f"{len(silent)} silent file(s), kept: {shown}{more}")
    if cropped:
        longest, name = max(cropped)
        parts.append(f"{len(cropped)} clip(s) longer than {duration_s:g} s cropped to their middle {duration_s:g} s "
                     f"(longest {longest:.1f} s: {name}; --clip-seconds changes the duration)")
    if parts:
        log.warning("%s (%d files): %s", source, total, " | ".join(parts))
