"""Audio data sets: class folders of WAV/FLAC/OGG files, FSDD and Speech Commands.

Every file is decoded once (:func:`resnetkit.data.audio_io.load_audio`: any bit depth and
channel count, resampled to the configured rate) and cropped or padded to the configured
duration, so a data set is one float32 ``(N, samples)`` tensor in memory. Features are
computed a batch at a time on the training device by the front end of
:mod:`resnetkit.data.audio_features`, after the wave augmentations and before SpecAugment,
so the engine's loop sees ``(N, 1, F, T)`` feature images like any image batch.

Layouts (``TrainConfig.audio_layout``, detected when ``auto``):

- ``folders``: ``ROOT/<class>/<audio files>``, optionally ``ROOT/train`` with ``ROOT/val``
  (or ``validation``, ``test``), as the image loader reads them.
- ``fsdd``: the Free Spoken Digit Dataset's flat folder of ``{digit}_{speaker}_{index}.wav``
  (or a folder holding ``recordings/``). Classes ``"0"``..``"9"``; the held-out part is the
  data set's own test split (indices 0-4) or named speakers (``TrainConfig.fsdd_split``).
- ``speech-commands``: class folders with ``validation_list.txt`` and ``testing_list.txt``;
  ``_background_noise_`` is a source of noise for augmentation, not a class.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import torch
from torch import nn

from ..engine.batches import BatchSource
from ..engine.distributed import DistInfo
from .audio_features import (
    FeatureConfig,
    DatasetNormalizer,
    NoiseBank,
    add_bank_noise,
    add_white_noise,
    random_gain,
    random_time_shift,
    spec_augment,
)
from .audio_io import AUDIO_EXTENSIONS, AudioFormatError, fix_length, fix_length_batch, is_silent, load_audio
from .classes import label_mapping
from .images import IMAGE_EXTENSIONS, DataSplits, SkippedFile, default_cache_dir, stratified_split

log = logging.getLogger(__name__)

AUDIO_LAYOUTS = ("auto", "folders", "fsdd", "speech-commands")
NAMED_AUDIO_DATASETS = ("fsdd",)
FSDD_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset"
FSDD_ARCHIVE_URL = f"{FSDD_URL}/archive/refs/heads/master.zip"
# {digit}_{speaker}_{index}.wav, e.g. 7_jackson_32.wav.
FSDD_PATTERN = re.compile(r"^(\d)_([^_]+)_(\d+)\.wav$", re.IGNORECASE)
# The data set's README: "The test set officially consists of the first 10% of the recordings.
# Recordings numbered 0-4 (inclusive) are in the test and 5-49 are in the training set."
FSDD_TEST_INDICES = range(0, 5)
SPEECH_COMMANDS_NOISE = "_background_noise_"
SPEECH_COMMANDS_LISTS = ("validation_list.txt", "testing_list.txt")
# How many skipped or silent files one log warning names.
SHOW_PATHS = 5


class AudioDataError(ValueError):
    """Bad audio data (empty folder, unreadable file, unknown class or layout); the message names it."""


# -- settings ------------------------------------------------------------------------------------

Range = Optional[tuple[float, float]]


def _as_range(value: Any, name: str, symmetric: bool) -> Range:
    """None, a number or a (low, high) pair as a (low, high) tuple of floats.

    A single number is ``(-x, x)`` for a gain (``symmetric``) and the fixed value ``(x, x)``
    for a signal-to-noise ratio.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number or a [low, high] pair, got {value!r}")
    if isinstance(value, (int, float)):
        value = (-abs(value), abs(value)) if symmetric else (value, value)
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"{name} must be a number or a [low, high] pair, got {value!r}")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
        raise TypeError(f"{name} must hold numbers, got {value!r}")
    low, high = float(value[0]), float(value[1])
    if low > high:
        raise ValueError(f"{name} must have low <= high, got {list(value)}")
    return (low, high)


@dataclass(frozen=True)
class AudioAugmentConfig:
    """What to do to each training clip. Zero / None turn a transform off.

    Wave augmentations run first (time shift, gain, noise), then the features are
    computed and normalized, then SpecAugment masks them, then mixup mixes the batch.
    """

    time_shift_s: float = 0.0  # shift each clip by up to this many seconds either way (zeros fill in)
    gain_db: Range = None  # random gain range in dB; one number g means (-g, g)
    noise_snr_db: Range = None  # add noise at an SNR drawn from this range (dB); None: no noise
    noise_prob: float = 1.0  # fraction of clips that get noise
    noise_dir: Optional[str] = None  # folder of noise recordings; None: white noise
    freq_masks: int = 0  # SpecAugment frequency masks per clip
    freq_mask_width: int = 0  # widest frequency mask, in feature bins
    time_masks: int = 0  # SpecAugment time masks per clip
    time_mask_width: int = 0  # widest time mask, in frames
    mixup: float = 0.0  # Beta(alpha, alpha) of torchvision's MixUp; 0 is off

    def __post_init__(self) -> None:
        object.__setattr__(self, "gain_db", _as_range(self.gain_db, "gain_db", symmetric=True))
        object.__setattr__(self, "noise_snr_db", _as_range(self.noise_snr_db, "noise_snr_db", symmetric=False))
        for name in ("time_shift_s", "noise_prob", "mixup"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if self.noise_prob > 1:
            raise ValueError(f"noise_prob is a probability in [0, 1], got {self.noise_prob}")
        for name in ("freq_masks", "freq_mask_width", "time_masks", "time_mask_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if self.noise_dir is not None and not isinstance(self.noise_dir, (str, os.PathLike)):
            raise TypeError(f"noise_dir must be a folder path or None, got {type(self.noise_dir).__name__}")
        if self.noise_dir is not None:
            object.__setattr__(self, "noise_dir", str(self.noise_dir))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("gain_db", "noise_snr_db"):
            d[key] = list(d[key]) if d[key] is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AudioAugmentConfig":
        if not isinstance(d, dict):
            raise TypeError(f"audio augmentation settings must be a mapping, got {type(d).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(
                f"unknown audio augmentation option(s) {unknown}; allowed: {', '.join(known)} "
                "(image options such as cutmix or auto_augment do not apply to audio)"
            )
        return cls(**d)

    @property
    def masks(self) -> bool:
        return (self.freq_masks > 0 and self.freq_mask_width > 0) or (self.time_masks > 0 and self.time_mask_width > 0)


AUDIO_AUGMENT_PRESETS: dict[str, AudioAugmentConfig] = {
    "none": AudioAugmentConfig(),
    # Honk's recipe (Tang & Lin 2018: shifts of up to 100 ms, noise on 80% of the clips) plus
    # random gain and SpecAugment (Park et al. 2019) masks scaled to 40 x 101 features.
    "speech": AudioAugmentConfig(
        time_shift_s=0.1, gain_db=(-6.0, 6.0), noise_snr_db=(10.0, 40.0), noise_prob=0.8,
        freq_masks=2, freq_mask_width=7, time_masks=2, time_mask_width=10,
    ),
}


def get_audio_preset(name: str) -> AudioAugmentConfig:
    """An audio augmentation preset; ``auto`` is ``speech``."""
    key = "speech" if name == "auto" else name
    if key not in AUDIO_AUGMENT_PRESETS:
        raise ValueError(
            f"unknown audio augmentation preset {name!r}; allowed: auto, {', '.join(AUDIO_AUGMENT_PRESETS)} "
            "(image presets such as cifar do not apply to audio)"
        )
    return AUDIO_AUGMENT_PRESETS[key]


_FEATURE_FIELDS = tuple(f.name for f in dataclasses.fields(FeatureConfig))
_AUGMENT_FIELDS = tuple(f.name for f in dataclasses.fields(AudioAugmentConfig))


def split_audio_settings(values: dict[str, Any]) -> tuple[FeatureConfig, dict[str, Any]]:
    """``TrainConfig.audio`` as a FeatureConfig and the augmentation overrides.

    A sample rate below 8 kHz without an explicit ``fmax`` gets ``fmax`` at its Nyquist
    frequency instead of FeatureConfig's 4 kHz, which only 8 kHz and faster data allow.
    """
    if not isinstance(values, dict):
        raise TypeError(f"audio settings must be a mapping, got {type(values).__name__}")
    unknown = sorted(set(values) - set(_FEATURE_FIELDS) - set(_AUGMENT_FIELDS))
    if unknown:
        raise ValueError(
            f"audio: unknown setting(s) {unknown}; feature settings: {', '.join(_FEATURE_FIELDS)}; "
            f"augmentation settings: {', '.join(_AUGMENT_FIELDS)}"
        )
    feature_values = {k: v for k, v in values.items() if k in _FEATURE_FIELDS}
    rate = feature_values.get("sample_rate")
    if "fmax" not in feature_values and isinstance(rate, int) and not isinstance(rate, bool) and rate > 0:
        feature_values["fmax"] = min(FeatureConfig.fmax, rate / 2)
    try:
        features = FeatureConfig(**feature_values)
    except (TypeError, ValueError) as err:
        raise type(err)(f"audio: {err}") from None
    augment = {k: v for k, v in values.items() if k in _AUGMENT_FIELDS}
    AudioAugmentConfig.from_dict(augment)  # checked now, applied on top of the preset later
    return features, augment


def check_audio_settings(values: dict[str, Any]) -> None:
    """Raise ValueError/TypeError naming the first bad entry of ``TrainConfig.audio``."""
    split_audio_settings(values)


# -- the input spec stored with a run ---------------------------------------------------------------


@dataclass
class AudioInputSpec:
    """How audio files become model input; stored in the checkpoint under ``"input"``.

    ``features`` is a :class:`FeatureConfig` as a dict; ``normalizer`` holds the training
    set's statistics when ``features["normalize"] == "dataset"``.
    """

    features: dict[str, Any]
    normalizer: Optional[dict[str, Any]] = None
    kind: str = "audio"
    in_chans: int = 1

    def __post_init__(self) -> None:
        config = FeatureConfig.from_dict(dict(self.features))  # validates
        self.features = config.to_dict()
        if config.normalize == "dataset" and self.normalizer is None:
            raise AudioDataError("AudioInputSpec: normalize='dataset' needs the normalizer statistics")

    @property
    def feature_config(self) -> FeatureConfig:
        return FeatureConfig.from_dict(dict(self.features))

    @property
    def sample_rate(self) -> int:
        return int(self.features["sample_rate"])

    @property
    def duration_s(self) -> float:
        return float(self.features["duration_s"])

    @property
    def num_samples(self) -> int:
        return self.feature_config.num_samples

    @property
    def input_size(self) -> tuple[int, int, int]:
        config = self.feature_config
        return (1, config.num_bins, config.num_frames)

    def build_frontend(self) -> nn.Module:
        """Features followed by the stored normalization, ``(N, samples)`` -> ``(N, 1, F, T)``."""
        normalizer = DatasetNormalizer.from_dict(self.normalizer) if self.normalizer is not None else None
        return self.feature_config.build(normalizer).eval()

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "in_chans": self.in_chans,
            "sample_rate": self.sample_rate,
            "duration_s": self.duration_s,
            "input_size": list(self.input_size),
            "features": dict(self.features),
            "normalizer": self.normalizer,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AudioInputSpec":
        if not isinstance(d, dict):
            raise TypeError(f"an audio input spec must be a dict, got {type(d).__name__}")
        if d.get("kind") != "audio" or "features" not in d:
            raise AudioDataError(
                f"not an audio input spec (kind {d.get('kind')!r}); expected kind 'audio' with a 'features' dict"
            )
        return cls(dict(d["features"]), d.get("normalizer"))


# -- data in memory ------------------------------------------------------------------------------


@dataclass
class AudioData:
    """Labelled clips decoded into memory: ``waves`` float32 (N, samples), ``labels`` int64 (N,)."""

    waves: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    features: FeatureConfig
    source: str = ""
    paths: list[str] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    silent: list[str] = field(default_factory=list)
    # Augmentation settings from TrainConfig.audio, applied on top of the preset.
    augment_overrides: dict[str, Any] = field(default_factory=dict)
    # Noise recordings the data set ships (Speech Commands' _background_noise_).
    noise_dir: Optional[str] = None

    kind = "audio"
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

    def remap_classes(self, target_classes: Sequence[str]) -> "AudioData":
        """Relabel so that label i means ``target_classes[i]``, matching by class name."""
        mapping = label_mapping(self.source, self.classes, target_classes, AudioDataError)
        return self._replace(labels=mapping[self.labels], classes=list(target_classes))

    # -- the engine's hooks ------------------------------------------------------------------------
    def fit_normalizer(self, batch_size: int = 256) -> DatasetNormalizer:
        """Per-bin mean and std of this data's features (computed once, on the CPU)."""
        if self._normalizer is None:
            extractor = self.features.build_features()
            with torch.no_grad():
                batches = (extractor(chunk) for chunk in self.waves.split(batch_size))
                self._normalizer = DatasetNormalizer(per_bin=True).fit(batches)
        return self._normalizer

    def input_spec(self, model: Optional[nn.Module] = None) -> AudioInputSpec:
        """The front end for ``model``: this data's features, with its statistics if normalized by them."""
        in_chans = getattr(model, "in_chans", 1) if model is not None else 1
        if in_chans != 1:
            name = getattr(model, "model_name", type(model).__name__)
            raise AudioDataError(
                f"{self.source}: audio features are one-channel images, but {name} expects {in_chans} "
                "input channels; build it with in_chans=1"
            )
        normalizer = self.fit_normalizer().to_dict() if self.features.normalize == "dataset" else None
        return AudioInputSpec(self.features.to_dict(), normalizer)

    def augment_config(self, preset: str, overrides: Optional[dict[str, Any]] = None) -> AudioAugmentConfig:
        """A preset (``auto`` is ``speech``), then TrainConfig.audio's settings, then ``overrides``."""
        config = get_audio_preset(preset)
        merged = {**config.to_dict(), **self.augment_overrides, **(overrides or {})}
        config = AudioAugmentConfig.from_dict(merged)
        if config.noise_snr_db is not None and config.noise_dir is None and self.noise_dir:
            # The data set's own noise recordings are closer to deployment than white noise.
            config = dataclasses.replace(config, noise_dir=self.noise_dir)
        return config

    def make_batches(
        self,
        *,
        spec: Any,
        augment: Optional[AudioAugmentConfig],
        channels_last: bool,
        num_classes: Optional[int],
        batch_size: int,
        device: torch.device,
        train: bool,
        seed: int,
        dist: DistInfo,
    ) -> "AudioBatches":
        if not isinstance(spec, AudioInputSpec):
            spec = self.input_spec()
        if augment is not None and not isinstance(augment, AudioAugmentConfig):
            raise TypeError(
                f"{self.source}: audio data needs an AudioAugmentConfig (presets: {', '.join(AUDIO_AUGMENT_PRESETS)}), "
                f"got {type(augment).__name__}"
            )
        return AudioBatches(self, spec, batch_size=batch_size, device=device, train=train, augment=augment,
                            channels_last=channels_last, seed=seed, dist=dist, num_classes=num_classes)

    def write_examples(self, run_dir: Union[str, Path], max_examples: int = 10) -> Path:
        """``spectrograms.png`` in ``run_dir``: a log-mel spectrogram of one clip per class."""
        from ..report.plots import plot_spectrograms

        chosen: list[int] = []
        for c in range(len(self.classes)):
            hits = (self.labels == c).nonzero().flatten()
            if len(hits):
                chosen.append(int(hits[0]))
            if len(chosen) >= max_examples:
                break
        # Log-mel in dB whatever the model eats: MFCCs and normalized values are unreadable as pictures.
        config = dataclasses.replace(self.features, kind="logmel", normalize="none")
        with torch.no_grad():
            specs = config.build_features()(self.waves[chosen])
        labels = [self.classes[int(self.labels[i])] for i in chosen]
        title = f"log-mel spectrograms ({config.n_mels} bands, {config.sample_rate} Hz)"
        return plot_spectrograms(specs, labels, Path(run_dir) / "spectrograms.png", ncols=5, title=title)


class AudioBatches(BatchSource):
    """Waves held on the device; each batch is augmented, turned into features and normalized there.

    Same interface as :class:`resnetkit.engine.batches.InMemoryBatches`: the order of an epoch
    depends only on (seed, epoch), each process of a DDP run takes every world_size-th clip,
    and the augmentation generator's state is saved in checkpoints.
    """

    def __init__(
        self,
        data: AudioData,
        spec: AudioInputSpec,
        *,
        batch_size: int,
        device: torch.device,
        train: bool,
        augment: Optional[AudioAugmentConfig] = None,
        channels_last: bool = False,
        seed: int = 0,
        dist: DistInfo = DistInfo(),
        num_classes: Optional[int] = None,
    ) -> None:
        if data.features.sample_rate != spec.sample_rate:
            raise AudioDataError(
                f"{data.source}: clips were decoded at {data.features.sample_rate} Hz, "
                f"the model's front end expects {spec.sample_rate} Hz"
            )
        waves = data.waves
        if waves.shape[1] != spec.num_samples:
            # Same rate, another duration: crop or pad once (centred, as evaluation does).
            waves = fix_length_batch(list(waves), spec.num_samples, "center")
        super().__init__(data.classes, batch_size=batch_size, device=device, train=train, seed=seed, dist=dist)
        self.waves = waves.to(self.device)
        self.labels = data.labels.to(self.device)
        self.spec = spec
        self.channels_last = channels_last
        self.frontend = spec.build_frontend().to(self.device)
        self.augment = augment if (train and augment is not None) else None
        self.max_shift = int(round(self.augment.time_shift_s * spec.sample_rate)) if self.augment else 0
        self.noise_bank: Optional[NoiseBank] = None
        if self.augment is not None and self.augment.noise_snr_db is not None and self.augment.noise_dir:
            self.noise_bank = load_noise_bank(self.augment.noise_dir, spec.sample_rate).to(self.device)
        self.mix = None
        if self.augment is not None and self.augment.mixup > 0:
            from torchvision.transforms import v2

            self.mix = v2.MixUp(alpha=self.augment.mixup, num_classes=num_classes or len(self.classes))

    @property
    def num_samples(self) -> int:
        return self.waves.shape[0]

    def _augment_waves(self, waves: torch.Tensor) -> torch.Tensor:
        cfg, g = self.augment, self.generator
        if self.max_shift:
            waves = random_time_shift(waves, self.max_shift, g, mode="zero")
        if cfg.gain_db is not None:
            waves = random_gain(waves, cfg.gain_db, g)
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

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for sel in self.step_indices(epoch, start_step):
            waves, y = self.waves[sel], self.labels[sel]
            with torch.no_grad():
                if self.augment is not None:
                    waves = self._augment_waves(waves)
                x = self.frontend(waves)
                if self.augment is not None and self.augment.masks:
                    cfg = self.augment
                    x = spec_augment(x, self.generator, num_freq_masks=cfg.freq_masks, freq_mask_width=cfg.freq_mask_width,
                                     num_time_masks=cfg.time_masks, time_mask_width=cfg.time_mask_width)
            if self.mix is not None:
                x, y = self.mix(x, y)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y


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


# -- decoding ------------------------------------------------------------------------------------


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
    together with ``ignored`` (files the scan passed over) and the count of silent files,
    which are kept; ``on_corrupt="stop"`` raises at the first unreadable file instead.
    """
    if on_corrupt not in ("skip", "stop"):
        raise ValueError(f"on_corrupt must be 'skip' or 'stop', got {on_corrupt!r}")
    num_samples = features.num_samples
    waves = torch.zeros(len(samples), num_samples, dtype=torch.float32)
    keep: list[int] = []
    skipped = list(ignored)
    silent: list[str] = []
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
        waves[row] = fix_length(wave, num_samples, "center")
        keep.append(row)
    _report(source, skipped, silent, len(samples))
    if not keep:
        raise AudioDataError(f"{source}: no readable audio among {len(samples)} file(s)")
    idx = torch.tensor(keep, dtype=torch.long)
    labels = torch.tensor([samples[i][1] for i in keep], dtype=torch.long)
    return AudioData(waves[idx] if len(keep) < len(samples) else waves, labels, list(classes), features,
                     source, [str(samples[i][0]) for i in keep], skipped, silent)


def _report(source: str, skipped: Sequence[SkippedFile], silent: Sequence[str], total: int) -> None:
    if not skipped and not silent:
        return
    parts = []
    if skipped:
        shown = "; ".join(s.reason for s in skipped[:SHOW_PATHS])
        more = f" and {len(skipped) - SHOW_PATHS} more" if len(skipped) > SHOW_PATHS else ""
        parts.append(f"skipped {len(skipped)} file(s): {shown}{more}")
    if silent:
        shown = ", ".join(silent[:SHOW_PATHS])
        more = f" and {len(silent) - SHOW_PATHS} more" if len(silent) > SHOW_PATHS else ""
        parts.append(f"{len(silent)} silent file(s), kept: {shown}{more}")
    log.warning("%s (%d files): %s", source, total, " | ".join(parts))


# -- scanning folders ----------------------------------------------------------------------------


def _ignored(path: Path) -> SkippedFile:
    return SkippedFile(
        str(path), f"{path}: unsupported format {path.suffix or '(no extension)'!r}, ignored "
        f"(expected {', '.join(AUDIO_EXTENSIONS)})"
    )


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _walk_files(root: Path) -> Iterator[Path]:
    """Files under ``root``, depth first in sorted order, hidden entries skipped."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(folder) / name


def is_audio_source(spec: Any, sample: int = 64) -> bool:
    """True for ``fsdd`` and for a folder whose files (a sample of them) are mostly audio files."""
    if not isinstance(spec, (str, os.PathLike)):
        return False
    path = Path(spec).expanduser()
    if str(spec).lower() in NAMED_AUDIO_DATASETS and not path.exists():
        return True
    if not path.is_dir():
        return False
    audio = images = 0
    for looked, file in enumerate(_walk_files(path)):
        suffix = file.suffix.lower()
        audio += suffix in AUDIO_EXTENSIONS
        images += suffix in IMAGE_EXTENSIONS
        if audio + images >= sample or looked >= 20 * sample:
            break
    return audio > 0 and audio >= images


def scan_class_folders(root: Path, ignored: list[SkippedFile], exclude: Sequence[str] = ()) -> tuple[list[tuple[str, int]], list[str]]:
    """Audio files and class names of ``root/<class>/<files>``; other files go to ``ignored``."""
    if not root.is_dir():
        raise AudioDataError(f"{root}: not a folder; expected an audio folder with one subfolder per class")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and _visible(d) and d.name not in exclude)
    if not classes:
        raise AudioDataError(
            f"{root}: no class subfolders; expected {root}/<class name>/<audio files> ({', '.join(AUDIO_EXTENSIONS)}), "
            f"an FSDD folder of {{digit}}_{{speaker}}_{{index}}.wav files, or {root}/train/<class name>/..."
        )
    samples: list[tuple[str, int]] = []
    for index, name in enumerate(classes):
        files = list(_walk_files(root / name))
        audio = [str(p) for p in files if p.suffix.lower() in AUDIO_EXTENSIONS]
        ignored.extend(_ignored(p) for p in files if p.suffix.lower() not in AUDIO_EXTENSIONS)
        if not audio:
            raise AudioDataError(
                f"class folder {root / name} has no audio files (expected {', '.join(AUDIO_EXTENSIONS)}); "
                "remove it or add recordings"
            )
        samples.extend((f, index) for f in audio)
    return samples, classes


@dataclass(frozen=True)
class FsddFile:
    path: str
    digit: int
    speaker: str
    index: int


def scan_fsdd(folder: Path, ignored: list[SkippedFile]) -> list[FsddFile]:
    """The ``{digit}_{speaker}_{index}.wav`` files of an FSDD folder; other files go to ``ignored``."""
    entries = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and _visible(p)):
        match = FSDD_PATTERN.match(path.name)
        if match is None:
            if path.suffix.lower() in AUDIO_EXTENSIONS:
                ignored.append(SkippedFile(str(path), f"{path}: name is not {{digit}}_{{speaker}}_{{index}}.wav, ignored"))
            else:
                ignored.append(_ignored(path))
            continue
        entries.append(FsddFile(str(path), int(match.group(1)), match.group(2).lower(), int(match.group(3))))
    if not entries:
        raise AudioDataError(
            f"{folder}: no FSDD recordings; expected files named {{digit}}_{{speaker}}_{{index}}.wav "
            "(e.g. 7_jackson_32.wav)"
        )
    return entries


def _looks_like_fsdd(folder: Path, sample: int = 200) -> bool:
    if not folder.is_dir():
        return False
    audio = matches = 0
    with os.scandir(folder) as it:
        for entry in it:
            if entry.is_file() and Path(entry.name).suffix.lower() in AUDIO_EXTENSIONS:
                audio += 1
                matches += FSDD_PATTERN.match(entry.name) is not None
                if audio >= sample:
                    break
    return audio > 0 and matches >= 0.9 * audio


def detect_layout(root: Path, layout: str = "auto") -> tuple[str, Path]:
    """The layout of an audio folder and the folder that holds its data."""
    if layout not in AUDIO_LAYOUTS:
        raise ValueError(f"audio_layout must be one of {', '.join(AUDIO_LAYOUTS)}; got {layout!r}")
    lists = any((root / name).is_file() for name in SPEECH_COMMANDS_LISTS)
    fsdd = next((f for f in (root, root / "recordings") if _looks_like_fsdd(f)), None)
    if layout == "auto":
        if lists:
            return "speech-commands", root
        if fsdd is not None:
            return "fsdd", fsdd
        return "folders", root
    if layout == "speech-commands" and not lists:
        raise AudioDataError(
            f"{root}: audio_layout is speech-commands but neither {' nor '.join(SPEECH_COMMANDS_LISTS)} is there"
        )
    if layout == "fsdd":
        if fsdd is None:
            folder = root / "recordings" if (root / "recordings").is_dir() else root
            return "fsdd", folder  # scan_fsdd names what is missing
        return "fsdd", fsdd
    return layout, root


# -- FSDD: the named data set --------------------------------------------------------------------


def _fsdd_files_present(folder: Path) -> bool:
    return folder.is_dir() and any(FSDD_PATTERN.match(p.name) for p in folder.iterdir())


def _fetch(url: str, dest: Path) -> None:
    """Download ``url`` to ``dest`` (tests replace this: nothing in them downloads)."""
    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
        shutil.copyfileobj(response, out)


def fsdd_recordings(cache_dir: Union[str, Path, None] = None) -> Path:
    """The folder of FSDD recordings in the cache, downloaded from GitHub on first use."""
    root = (Path(cache_dir) if cache_dir else default_cache_dir()) / "fsdd"
    recordings = root / "recordings"
    if _fsdd_files_present(recordings):
        return recordings
    try:
        root.mkdir(parents=True, exist_ok=True)
        archive = root / "fsdd.zip.part"
        _fetch(FSDD_ARCHIVE_URL, archive)
        staging = root / "recordings.part"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                parts = member.split("/")
                if len(parts) >= 2 and parts[-2] == "recordings" and FSDD_PATTERN.match(parts[-1]):
                    (staging / parts[-1]).write_bytes(zf.read(member))
        if not _fsdd_files_present(staging):
            raise AudioDataError(f"the archive {FSDD_ARCHIVE_URL} holds no recordings/ folder")
        shutil.rmtree(recordings, ignore_errors=True)
        os.replace(staging, recordings)
        archive.unlink(missing_ok=True)
    except Exception as err:  # offline: URLError, timeouts, HTTP errors, a broken archive
        raise AudioDataError(
            f"could not download FSDD ({type(err).__name__}: {err}).\n"
            f"  Offline? Download {FSDD_ARCHIVE_URL} (the repository {FSDD_URL}) elsewhere and put the\n"
            f"  WAV files of its recordings/ folder ({{digit}}_{{speaker}}_{{index}}.wav, e.g. 7_jackson_32.wav)\n"
            f"  into {recordings}/, then run again; or pass --data PATH to a folder of those files."
        ) from None
    return recordings


def _fsdd_held_out(entries: Sequence[FsddFile], split: str, folder: Path) -> list[bool]:
    """Which recordings form the validation/test side of ``split``."""
    if split == "official":
        return [e.index in FSDD_TEST_INDICES for e in entries]
    if not isinstance(split, str) or not split.startswith("speakers:"):
        raise ValueError(f"fsdd_split must be 'official' or 'speakers:NAME[,NAME]'; got {split!r}")
    names = {n.strip().lower() for n in split[len("speakers:"):].split(",") if n.strip()}
    found = sorted({e.speaker for e in entries})
    unknown = sorted(names - set(found))
    if not names or unknown:
        raise AudioDataError(
            f"{folder}: fsdd_split {split!r} names speaker(s) {unknown or '(none)'} that have no recordings; "
            f"speakers found: {', '.join(found)}"
        )
    if set(found) <= names:
        raise AudioDataError(f"{folder}: fsdd_split {split!r} holds out every speaker; nothing is left to train on")
    return [e.speaker in names for e in entries]


# -- resolving --data ----------------------------------------------------------------------------


def _first_existing(root: Path, names: Sequence[str]) -> Optional[Path]:
    return next((root / n for n in names if (root / n).is_dir()), None)


def _resolve(
    spec: str,
    features: FeatureConfig,
    *,
    layout: str = "auto",
    fsdd_split: str = "official",
    val_split: Optional[float] = None,
    seed: int = 0,
    on_corrupt: str = "skip",
    for_evaluation: bool = False,
    cache_dir: Union[str, Path, None] = None,
) -> DataSplits:
    if on_corrupt not in ("skip", "stop"):
        raise ValueError(f"on_corrupt must be 'skip' or 'stop', got {on_corrupt!r}")
    path = Path(spec).expanduser()
    name = str(spec)
    if str(spec).lower() in NAMED_AUDIO_DATASETS and not path.exists():
        path, layout, name = fsdd_recordings(cache_dir), "fsdd", "fsdd"
    if not path.is_dir():
        raise AudioDataError(
            f"--data {spec}: no such folder, and not a known audio data set name ({', '.join(NAMED_AUDIO_DATASETS)})"
        )
    layout, folder = detect_layout(path, layout)
    common = dict(features=features, on_corrupt=on_corrupt, for_evaluation=for_evaluation)
    if layout == "fsdd":
        if val_split is not None and not for_evaluation:
            log.warning("%s: val_split is ignored for FSDD; the held-out part is fsdd_split=%r", folder, fsdd_split)
        train, val = _load_fsdd(folder, fsdd_split, **common)
    elif layout == "speech-commands":
        train, val = _load_speech_commands(folder, **common)
    else:
        train, val = _load_class_folders(folder, val_split, seed, **common)
    classes = list(val.classes if train is None else train.classes)
    return DataSplits(train, val, classes, name, None)


def _load_fsdd(folder: Path, split: str, *, features, on_corrupt, for_evaluation):
    ignored: list[SkippedFile] = []
    entries = scan_fsdd(folder, ignored)
    held = _fsdd_held_out(entries, split, folder)
    if for_evaluation:
        entries = [e for e, h in zip(entries, held) if h]
        held = [True] * len(entries)
    classes = [str(d) for d in range(10)]
    data = decode_audio_files([(e.path, e.digit) for e in entries], classes, features,
                              on_corrupt=on_corrupt, source=str(folder), ignored=ignored)
    kept = set(data.paths)
    held_paths = {e.path for e, h in zip(entries, held) if h and e.path in kept}
    mask = torch.tensor([p in held_paths for p in data.paths], dtype=torch.bool)
    val = data.subset(mask.nonzero().flatten())
    if not len(val):
        raise AudioDataError(f"{folder}: fsdd_split {split!r} holds out no recordings")
    if for_evaluation:
        return None, val
    train = data.subset((~mask).nonzero().flatten())
    if not len(train):
        raise AudioDataError(f"{folder}: fsdd_split {split!r} leaves no recordings to train on")
    return train, val


def _read_list(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    return {line.strip().replace("\\", "/") for line in path.read_text().splitlines() if line.strip()}


def _load_speech_commands(root: Path, *, features, on_corrupt, for_evaluation):
    ignored: list[SkippedFile] = []
    samples, classes = scan_class_folders(root, ignored, exclude=(SPEECH_COMMANDS_NOISE,))
    validation = _read_list(root / "validation_list.txt")
    testing = _read_list(root / "testing_list.txt")
    rel = [Path(p).relative_to(root).as_posix() for p, _ in samples]
    noise = root / SPEECH_COMMANDS_NOISE
    noise_dir = str(noise) if noise.is_dir() else None
    if for_evaluation:
        held = testing or validation
        picked = [s for s, r in zip(samples, rel) if r in held]
        if not picked:
            raise AudioDataError(f"{root}: testing_list.txt and validation_list.txt name none of the files found")
        val = decode_audio_files(picked, classes, features, on_corrupt=on_corrupt, source=f"{root} (test)", ignored=ignored)
        return None, val
    held = validation or testing  # no validation list: validate on the test list
    train_samples = [s for s, r in zip(samples, rel) if r not in validation and r not in testing]
    val_samples = [s for s, r in zip(samples, rel) if r in held]
    if not train_samples or not val_samples:
        raise AudioDataError(
            f"{root}: the list files leave {len(train_samples)} training and {len(val_samples)} validation clips; "
            "both must be > 0"
        )
    train = decode_audio_files(train_samples, classes, features, on_corrupt=on_corrupt, source=f"{root} (train)",
                               ignored=ignored)
    val = decode_audio_files(val_samples, classes, features, on_corrupt=on_corrupt, source=f"{root} (validation)")
    train.noise_dir = noise_dir
    return train, val


def _load_class_folders(root: Path, val_split, seed, *, features, on_corrupt, for_evaluation):
    def load(folder: Path) -> AudioData:
        ignored: list[SkippedFile] = []
        samples, classes = scan_class_folders(folder, ignored, exclude=(SPEECH_COMMANDS_NOISE,))
        return decode_audio_files(samples, classes, features, on_corrupt=on_corrupt, source=str(folder), ignored=ignored)

    train_dir = _first_existing(root, ("train", "training"))
    held_dir = _first_existing(root, ("test", "val", "validation") if for_evaluation else ("val", "validation", "test"))
    if for_evaluation:
        return None, load(held_dir or root)
    if train_dir is not None and held_dir is not None and val_split is None:
        train, val = load(train_dir), load(held_dir)
        if val.classes != train.classes:
            val = val.remap_classes(train.classes)
        return train, val
    data = load(train_dir or root)
    train_idx, val_idx = stratified_split(data.labels, val_split if val_split is not None else 0.1, seed)
    return data.subset(train_idx), data.subset(val_idx)


def resolve_audio_data(config: Any, for_evaluation: bool = False) -> DataSplits:
    """``TrainConfig.data`` as audio train/validation data (``for_evaluation``: the held-out part as ``val``)."""
    features, augment_overrides = split_audio_settings(dict(config.audio))
    splits = _resolve(
        config.data, features, layout=config.audio_layout, fsdd_split=config.fsdd_split,
        val_split=config.val_split, seed=config.seed, on_corrupt=config.on_corrupt, for_evaluation=for_evaluation,
    )
    if splits.train is not None:
        splits.train.augment_overrides = augment_overrides
    return splits


def load_audio_eval_data(spec: str, input_spec: AudioInputSpec, on_corrupt: str = "skip") -> AudioData:
    """The held-out part of ``spec`` (a class folder's test/ or the folder itself, FSDD's test split)
    decoded for the model's front end (``input_spec``)."""
    if not isinstance(input_spec, AudioInputSpec):
        raise TypeError(f"input_spec must be an AudioInputSpec, got {type(input_spec).__name__}")
    splits = _resolve(spec, input_spec.feature_config, on_corrupt=on_corrupt, for_evaluation=True)
    return splits.val


# -- predict -------------------------------------------------------------------------------------


def prepare_audio_batch(
    items: Sequence[Any], input_spec: AudioInputSpec, device: Union[str, torch.device]
) -> tuple[Optional[torch.Tensor], list[str], list[Optional[str]]]:
    """Features ``(N, 1, F, T)`` of the readable items, their names, and an error (or None) per item.

    Items are audio file paths or 1-D float wave tensors at the spec's sample rate; clips are
    centred and cropped or padded to the trained duration. A file that cannot be read gets
    its error message instead of stopping the whole batch.
    """
    waves, names, errors = [], [], []
    for item in items:
        if isinstance(item, (str, Path)):
            names.append(str(item))
            try:
                wave = load_audio(item, input_spec.sample_rate)
            except (AudioFormatError, FileNotFoundError, PermissionError) as err:
                errors.append(str(err))
                continue
        elif isinstance(item, torch.Tensor):
            names.append("tensor")
            if item.ndim != 1 or not item.is_floating_point():
                raise ValueError(
                    f"an audio tensor must be a 1-D float wave at {input_spec.sample_rate} Hz, "
                    f"got {item.dtype} of shape {tuple(item.shape)}"
                )
            wave = item.detach().float().cpu()
        else:
            raise TypeError(f"cannot predict on {type(item).__name__}: pass audio file paths or 1-D wave tensors")
        errors.append(None)
        waves.append(fix_length(wave, input_spec.num_samples, "center"))
    if not waves:
        return None, names, errors
    device = torch.device(device)
    with torch.no_grad():
        batch = input_spec.build_frontend().to(device)(torch.stack(waves).to(device))
    return batch, names, errors
