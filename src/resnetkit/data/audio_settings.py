"""Audio settings: the feature front end a run uses and the augmentation of its training clips.

Parsed once, from a recipe's ``audio:`` mapping or the command line's flags, into typed
objects: a :class:`~resnetkit.data.audio_features.FeatureConfig` and an
:class:`AudioAugmentConfig` (a preset with fields replaced, as for images).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Optional

from .audio_features import FeatureConfig

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
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
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


def audio_augment_from(preset: str, overrides: Optional[dict[str, Any]] = None,
                       noise_dir: Optional[str] = None) -> AudioAugmentConfig:
    """A preset (``auto`` is ``speech``) with fields replaced by ``overrides``.

    ``noise_dir``: noise recordings the data set ships (Speech Commands'
    ``_background_noise_``), used instead of white noise when the settings add noise and
    name no folder of their own: they are closer to what the model will hear.
    """
    key = "speech" if preset == "auto" else preset
    if key not in AUDIO_AUGMENT_PRESETS:
        raise ValueError(
            f"unknown audio augmentation preset {preset!r}; allowed: auto, {', '.join(AUDIO_AUGMENT_PRESETS)} "
            "(image presets such as cifar do not apply to audio)"
        )
    config = AUDIO_AUGMENT_PRESETS[key]
    if overrides:
        config = AudioAugmentConfig.from_dict({**config.to_dict(), **overrides})
    if config.noise_snr_db is not None and config.noise_dir is None and noise_dir:
        config = dataclasses.replace(config, noise_dir=noise_dir)
    return config


def feature_config_from(values: Optional[dict[str, Any]]) -> FeatureConfig:
    """A recipe's or the command line's ``audio:`` settings as a FeatureConfig.

    A sample rate below 8 kHz without an explicit ``fmax`` gets ``fmax`` at its Nyquist
    frequency instead of FeatureConfig's 4 kHz, which only 8 kHz and faster data allow;
    ``n_mels`` below the default ``n_mfcc`` without an explicit ``n_mfcc`` keeps one
    coefficient per band.
    """
    if values is None:
        return FeatureConfig()
    if isinstance(values, FeatureConfig):
        return values
    if not isinstance(values, dict):
        raise TypeError(f"audio settings must be a mapping, got {type(values).__name__}")
    known = [f.name for f in dataclasses.fields(FeatureConfig)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        aug = sorted(set(unknown) & {f.name for f in dataclasses.fields(AudioAugmentConfig)})
        hint = f"; {', '.join(aug)} {'is an augmentation setting' if len(aug) == 1 else 'are augmentation settings'}: " \
               "put them under augment_args" if aug else ""
        raise ValueError(f"audio: unknown setting(s) {unknown}; feature settings: {', '.join(known)}{hint}")
    values = dict(values)
    rate = values.get("sample_rate")
    if "fmax" not in values and isinstance(rate, int) and not isinstance(rate, bool) and rate > 0:
        values["fmax"] = min(FeatureConfig.fmax, rate / 2)
    mels = values.get("n_mels")
    if "n_mfcc" not in values and isinstance(mels, int) and not isinstance(mels, bool) and 0 < mels < FeatureConfig.n_mfcc:
        values["n_mfcc"] = mels
    try:
        return FeatureConfig(**values)
    except (TypeError, ValueError) as err:
        raise type(err)(f"audio: {err}") from None
