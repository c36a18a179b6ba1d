"""Audio augmentation: its settings (presets with fields replaced, as for images) and the batched transforms.

Wave augmentations run first (time shift, speed, gain, equalization, noise), then the
features are computed (with each example's mel filterbank warped: VTLP) and normalized, then
stretched in time (tempo) and shifted along the mel axis, then SpecAugment masks them, then
mixup mixes the batch (the audio batch source applies them in that order). Every transform
works on a whole batch with per-example randomness and no Python loop over the batch.

Random functions take an optional ``torch.Generator``. Random numbers are drawn on the
generator's device and then moved to the data, so a seeded CPU generator gives the same
augmentation whether the batch lives on the CPU or a GPU.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import torch

from .checks import check_batch, check_float, check_int

SHIFT_MODES = ("zero", "roll")

# A range of values, (low, high); where a single number is accepted it is parsed by as_range.
Range = tuple[float, float]


def as_range(value: Any, name: str, symmetric: bool = False) -> Range:
    """A number or a (low, high) pair as a (low, high) tuple of floats: the one parser of ranges.

    A single number ``x`` is ``(-|x|, |x|)`` when ``symmetric`` (a gain) and ``(x, x)``
    otherwise (a fixed signal-to-noise ratio).
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number or a [low, high] pair, got {value!r}")
    if isinstance(value, (int, float)):
        value = (-abs(value), abs(value)) if symmetric else (value, value)
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"{name} must be a number or a [low, high] pair, got {value!r}")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
        raise TypeError(f"{name} must hold numbers, got {value!r}")
    low, high = check_float(value[0], name), check_float(value[1], name)
    if low > high:
        raise ValueError(f"{name} must have low <= high, got {list(value)}")
    return (low, high)


def _optional_range(value: Any, name: str, symmetric: bool) -> Optional[Range]:
    return None if value is None else as_range(value, name, symmetric)


# --------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioAugmentConfig:
    """What to do to each training clip. Zero / None turn a transform off.

    Wave augmentations run first (time shift, speed, gain, equalization, noise), then the
    features are computed (VTLP warps the filterbank) and normalized, stretched in time (tempo),
    shifted along the mel axis, masked by SpecAugment, and mixup mixes the batch.
    """

    time_shift_s: float = 0.0  # shift each clip by up to this many seconds either way (zeros fill in)
    speed: Optional[Range] = None  # resample each clip by a factor from this range (tempo and pitch; Ko et al. 2015)
    tempo: Optional[Range] = None  # stretch each clip's features in time by a factor from this range (pitch kept)
    vtlp: Optional[Range] = None  # warp each clip's mel filterbank by a factor from this range (Jaitly & Hinton 2013)
    mel_shift: int = 0  # shift each clip's features by up to this many mel bands either way (zeros fill in)
    gain_db: Optional[Range] = None  # random gain range in dB; one number g means (-g, g)
    eq_db: float = 0.0  # random smooth equalization: up to this many dB of boost or cut across the band
    noise_snr_db: Optional[Range] = None  # add noise at an SNR drawn from this range (dB); None: no noise
    noise_prob: float = 1.0  # fraction of clips that get noise
    noise_dir: Optional[str] = None  # folder of noise recordings; None: white noise
    freq_masks: int = 0  # SpecAugment frequency masks per clip
    freq_mask_width: int = 0  # widest frequency mask, in feature bins
    time_masks: int = 0  # SpecAugment time masks per clip
    time_mask_width: int = 0  # widest time mask, in frames
    mixup: float = 0.0  # Beta(alpha, alpha) of torchvision's MixUp; 0 is off

    def __post_init__(self) -> None:
        object.__setattr__(self, "gain_db", _optional_range(self.gain_db, "gain_db", symmetric=True))
        object.__setattr__(self, "noise_snr_db", _optional_range(self.noise_snr_db, "noise_snr_db", symmetric=False))
        for name in ("speed", "tempo", "vtlp"):
            factors = _optional_range(getattr(self, name), name, symmetric=False)
            if factors is not None and not factors[0] > 0:
                raise ValueError(f"{name} factors must be > 0, got {list(factors)}")
            object.__setattr__(self, name, factors)
        for name in ("time_shift_s", "noise_prob", "mixup", "eq_db"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if self.noise_prob > 1:
            raise ValueError(f"noise_prob is a probability in [0, 1], got {self.noise_prob}")
        for name in ("mel_shift", "freq_masks", "freq_mask_width", "time_masks", "time_mask_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if self.noise_dir is not None and not isinstance(self.noise_dir, (str, os.PathLike)):
            raise TypeError(f"noise_dir must be a folder path or None, got {type(self.noise_dir).__name__}")
        if self.noise_dir is not None:
            object.__setattr__(self, "noise_dir", str(self.noise_dir))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("gain_db", "noise_snr_db", "speed", "tempo", "vtlp"):
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
    # For new voices: the speech preset plus vocal-tract length perturbation over the range of
    # Jaitly & Hinton (2013), speed perturbation (Ko et al. 2015 use 0.9-1.1), shifts of two mel
    # bands, random equalization (another microphone) and SpecAugment's masks doubled in number.
    "speech-strong": AudioAugmentConfig(
        time_shift_s=0.1, speed=(0.9, 1.1), vtlp=(0.85, 1.15), mel_shift=2, gain_db=(-6.0, 6.0), eq_db=6.0,
        noise_snr_db=(10.0, 40.0), noise_prob=0.8, freq_masks=4, freq_mask_width=7, time_masks=4, time_mask_width=10,
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
        if overrides.get("noise_dir") and config.noise_snr_db is None:
            # Noise is added only at an SNR; without one the folder would be silently ignored.
            raise ValueError(
                f"noise_dir {overrides['noise_dir']!r} is given but no noise_snr_db (the {key!r} preset sets none): "
                "give --noise-snr-db LOW,HIGH (e.g. 10,40), or a preset that adds noise (speech, speech-strong)"
            )
    if config.noise_snr_db is not None and config.noise_dir is None and noise_dir:
        config = dataclasses.replace(config, noise_dir=noise_dir)
    return config


# --------------------------------------------------------------------------------------
# Random numbers drawn on the generator's device (see module docstring)
# --------------------------------------------------------------------------------------


def _uniform(shape: Sequence[int], generator: Optional[torch.Generator], device: torch.device) -> torch.Tensor:
    source = generator.device if generator is not None else device
    return torch.rand(tuple(shape), generator=generator, device=source).to(device)


def _randn(shape: Sequence[int], generator: Optional[torch.Generator], device: torch.device) -> torch.Tensor:
    source = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=source).to(device)


def _sample_range(
    value: Union[float, Range], name: str, n: int, generator: Optional[torch.Generator], device: torch.device
) -> torch.Tensor:
    """A fixed number or a per-example uniform draw from ``(low, high)``, as an (n,) float32 tensor."""
    if isinstance(value, (tuple, list)):
        low, high = as_range(value, name)
        return low + (high - low) * _uniform((n,), generator, device)
    return torch.full((n,), check_float(value, name), device=device)


# --------------------------------------------------------------------------------------
# Augmentations (batched, per-example randomness, no Python loop over the batch)
# --------------------------------------------------------------------------------------


def band_mask(
    batch: int,
    size: int,
    num_masks: int,
    max_width: int,
    generator: Optional[torch.Generator] = None,
    device: Union[str, torch.device] = "cpu",
) -> torch.Tensor:
    """Boolean ``(batch, size)`` mask, True inside ``num_masks`` random bands per row.

    Each band's width is uniform in ``[0, max_width]`` (capped at ``size``) and its start
    uniform over the positions where it fits, as in SpecAugment (Park et al. 2019).
    """
    check_int(batch, "batch")
    check_int(size, "size")
    check_int(num_masks, "num_masks", minimum=0)
    check_int(max_width, "max_width", minimum=0)
    device = torch.device(device)
    positions = torch.arange(size, device=device)
    if num_masks == 0 or max_width == 0:
        return torch.zeros(batch, size, dtype=torch.bool, device=device)
    max_width = min(max_width, size)
    widths = (_uniform((batch, num_masks), generator, device) * (max_width + 1)).long().clamp(max=max_width)
    starts = (_uniform((batch, num_masks), generator, device) * (size - widths + 1)).long()
    starts = torch.minimum(starts, size - widths)
    inside = (positions >= starts[..., None]) & (positions < (starts + widths)[..., None])
    return inside.any(dim=1)


def spec_augment(
    features: torch.Tensor,
    generator: Optional[torch.Generator] = None,
    *,
    num_freq_masks: int = 2,
    freq_mask_width: int = 8,
    num_time_masks: int = 2,
    time_mask_width: int = 20,
    mask_value: float = 0.0,
) -> torch.Tensor:
    """SpecAugment frequency and time masking of ``(N, C, F, T)`` features, independently per example.

    Defaults suit 40-bin, 101-frame keyword features (bands up to 20% of each axis). Masks
    are filled with ``mask_value``; 0 is the mean of normalized features, so apply this
    after normalization.
    """
    features = check_batch(features, "features", (4,))
    n, _, n_freq, n_time = features.shape
    fmask = band_mask(n, n_freq, num_freq_masks, freq_mask_width, generator, features.device)
    tmask = band_mask(n, n_time, num_time_masks, time_mask_width, generator, features.device)
    mask = fmask[:, None, :, None] | tmask[:, None, None, :]
    return features.masked_fill(mask, mask_value)


def random_time_shift(
    x: torch.Tensor,
    max_shift: int,
    generator: Optional[torch.Generator] = None,
    mode: str = "zero",
) -> torch.Tensor:
    """Shift each example along its last axis by a uniform integer in ``[-max_shift, max_shift]``.

    Works on ``(N, samples)`` waves and ``(N, C, F, T)`` features. ``mode="zero"`` fills the
    vacated part with zeros, ``"roll"`` wraps it around.
    """
    x = check_batch(x, "x", (2, 3, 4))
    check_int(max_shift, "max_shift", minimum=0)
    if mode not in SHIFT_MODES:
        raise ValueError(f"mode must be one of {SHIFT_MODES}, got {mode!r}")
    if max_shift == 0:
        return x
    n, length = x.shape[0], x.shape[-1]
    shifts = (_uniform((n,), generator, x.device) * (2 * max_shift + 1)).long().clamp(max=2 * max_shift) - max_shift
    source = torch.arange(length, device=x.device) - shifts[:, None]  # out[t] = x[t - shift]
    flat = x.reshape(n, -1, length)
    out = flat.gather(-1, (source % length)[:, None, :].expand_as(flat))
    if mode == "zero":
        valid = (source >= 0) & (source < length)
        out = out * valid[:, None, :].to(out.dtype)
    return out.reshape(x.shape)


def random_gain(
    waves: torch.Tensor,
    gain_db: Union[float, Range] = (-6.0, 6.0),
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Multiply each example by ``10 ** (g / 20)``, ``g`` drawn uniformly from ``gain_db`` (or fixed)."""
    waves = check_batch(waves, "waves", (2, 3, 4))
    g = _sample_range(gain_db, "gain_db", waves.shape[0], generator, waves.device)
    scale = torch.pow(10.0, g / 20.0).to(waves.dtype)
    return waves * scale.reshape(-1, *([1] * (waves.dim() - 1)))


def add_noise(waves: torch.Tensor, noise: torch.Tensor, snr_db: Union[float, torch.Tensor]) -> torch.Tensor:
    """Add ``noise`` scaled so that each example's signal-to-noise ratio is ``snr_db``.

    SNR is ``10 log10(mean(wave^2) / mean(scaled_noise^2))`` over the example, using the
    noise actually drawn, so it is met exactly. Silent examples and silent noise get no
    noise (the SNR of silence is undefined).
    """
    waves = check_batch(waves, "waves", (2,))
    noise = check_batch(noise, "noise", (2,))
    if noise.shape != waves.shape:
        raise ValueError(f"noise must match waves' shape {tuple(waves.shape)}, got {tuple(noise.shape)}")
    snr = torch.as_tensor(snr_db, dtype=torch.float32, device=waves.device).expand(waves.shape[0])
    signal_power = waves.float().pow(2).mean(dim=-1)
    noise_power = noise.float().pow(2).mean(dim=-1)
    target = signal_power / torch.pow(10.0, snr / 10.0)
    scale = torch.where(noise_power > 0, torch.sqrt(target / noise_power.clamp(min=1e-30)), torch.zeros_like(target))
    return waves + noise * scale[:, None].to(waves.dtype)


def add_white_noise(
    waves: torch.Tensor,
    snr_db: Union[float, Range] = (10.0, 40.0),
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Add Gaussian white noise at an SNR drawn per example from ``snr_db`` (or fixed)."""
    waves = check_batch(waves, "waves", (2,))
    snr = _sample_range(snr_db, "snr_db", waves.shape[0], generator, waves.device)
    return add_noise(waves, _randn(waves.shape, generator, waves.device).to(waves.dtype), snr)


class NoiseBank:
    """Noise recordings of any lengths, stored padded so crops for a whole batch are one gather."""

    def __init__(self, noises: Union[Sequence[torch.Tensor], torch.Tensor]) -> None:
        if isinstance(noises, torch.Tensor):
            if noises.dim() != 2:
                raise ValueError(f"a noise tensor must be (K, samples), got shape {tuple(noises.shape)}")
            noises = list(noises)
        if not isinstance(noises, Sequence) or len(noises) == 0:
            raise ValueError("noises must be a non-empty sequence of 1-D tensors")
        for i, noise in enumerate(noises):
            if not isinstance(noise, torch.Tensor) or noise.dim() != 1 or noise.numel() == 0:
                raise ValueError(f"noises[{i}] must be a non-empty 1-D tensor")
            if not noise.is_floating_point():
                raise TypeError(f"noises[{i}] must be floating point, got {noise.dtype}")
        self.lengths = torch.tensor([len(n) for n in noises])
        self.bank = torch.zeros(len(noises), int(self.lengths.max()))
        for i, noise in enumerate(noises):
            self.bank[i, : len(noise)] = noise.detach().float().cpu()

    def __len__(self) -> int:
        return self.bank.shape[0]

    def to(self, device: Union[str, torch.device]) -> "NoiseBank":
        """Move the bank (in place) to ``device``, where the batches are; returns self."""
        self.bank = self.bank.to(device)
        self.lengths = self.lengths.to(device)
        return self

    def sample(self, n: int, num_samples: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``(n, num_samples)`` crops of random noises at random offsets, looped when too short."""
        check_int(n, "n")
        check_int(num_samples, "num_samples")
        device = self.bank.device
        which = (_uniform((n,), generator, device) * len(self)).long().clamp(max=len(self) - 1)
        lengths = self.lengths[which]
        offsets = (_uniform((n,), generator, device) * lengths).long()
        positions = (offsets[:, None] + torch.arange(num_samples, device=device)) % lengths[:, None]
        return self.bank.reshape(-1)[which[:, None] * self.bank.shape[1] + positions]


def add_bank_noise(
    waves: torch.Tensor,
    bank: NoiseBank,
    snr_db: Union[float, Range] = (0.0, 20.0),
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Add a random crop of a random noise from ``bank`` to each example at ``snr_db`` (fixed or a range)."""
    waves = check_batch(waves, "waves", (2,))
    if not isinstance(bank, NoiseBank):
        raise TypeError(f"bank must be a NoiseBank, got {type(bank).__name__}")
    if bank.bank.device != waves.device:
        bank.to(waves.device)
    snr = _sample_range(snr_db, "snr_db", waves.shape[0], generator, waves.device)
    noise = bank.sample(waves.shape[0], waves.shape[-1], generator).to(waves.dtype)
    return add_noise(waves, noise, snr)


def _stretch_about_centre(x: torch.Tensor, factors: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """``out[..., t] = x[..., c + (t - c) * factor]`` along the last axis, by linear interpolation.

    ``x`` is ``(N, ..., L)``, ``factors`` and ``fill`` are ``(N,)``: one factor per example
    (> 1 plays it faster, so it ends sooner), and ``fill`` where a position falls outside it.
    """
    n, length = x.shape[0], x.shape[-1]
    flat = x.reshape(n, -1, length)
    centre = (length - 1) / 2
    positions = centre + (torch.arange(length, device=x.device, dtype=torch.float32) - centre) * factors[:, None]
    left = positions.floor()
    frac = (positions - left).to(x.dtype)[:, None, :]
    left = left.long()
    lo = flat.gather(2, left.clamp(0, length - 1)[:, None, :].expand_as(flat))
    hi = flat.gather(2, (left + 1).clamp(0, length - 1)[:, None, :].expand_as(flat))
    out = lo + (hi - lo) * frac
    inside = ((positions >= 0) & (positions <= length - 1))[:, None, :]
    return torch.where(inside, out, fill.to(x.dtype)[:, None, None]).reshape(x.shape)


def _check_factors(value: Union[float, Range], name: str) -> None:
    low = as_range(value, name)[0] if isinstance(value, (tuple, list)) else check_float(value, name)
    if not low > 0:
        raise ValueError(f"{name} factors must be > 0, got {value!r}")


def speed_perturb(
    waves: torch.Tensor,
    speed: Union[float, Range] = (0.9, 1.1),
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Play each ``(N, samples)`` clip ``factor`` times faster (tempo and pitch), about its centre.

    ``out[t] = x[c + (t - c) * factor]`` by linear interpolation, zeros outside the clip, one
    factor per example drawn from ``speed`` (or fixed): the batched form of Ko et al.'s (2015)
    resampling. No anti-aliasing filter: factors near 1 fold back only the top few percent of
    the band.
    """
    waves = check_batch(waves, "waves", (2,))
    _check_factors(speed, "speed")
    factors = _sample_range(speed, "speed", waves.shape[0], generator, waves.device)
    return _stretch_about_centre(waves, factors, torch.zeros(waves.shape[0], device=waves.device))


def tempo_perturb(
    features: torch.Tensor,
    tempo: Union[float, Range] = (0.8, 1.25),
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Say each ``(N, C, F, T)`` example ``factor`` times faster: its frames stretched in time, its bands kept.

    Unlike :func:`speed_perturb` the pitch and formants stay where they are: only the speaking
    rate changes, as between a quick and a slow talker. Frames are interpolated about the
    centre (``out[t] = x[c + (t - c) * factor]``); where a faster clip ends early, each
    example's own minimum fills in (its silence floor, after any normalization).
    """
    features = check_batch(features, "features", (4,))
    _check_factors(tempo, "tempo")
    factors = _sample_range(tempo, "tempo", features.shape[0], generator, features.device)
    return _stretch_about_centre(features, factors, features.amin(dim=(1, 2, 3)))


def random_equalization(
    waves: torch.Tensor,
    eq_db: float = 6.0,
    generator: Optional[torch.Generator] = None,
    terms: int = 3,
) -> torch.Tensor:
    """Filter each ``(N, samples)`` clip by a random smooth zero-phase EQ curve of up to ``eq_db`` dB.

    The curve is a sum of ``terms`` cosines over the band, ``sum_k a_k cos(pi k f / nyquist)``
    with ``a_k`` uniform in ``[-eq_db / terms, eq_db / terms]``: tilts and broad bumps as
    another microphone or room gives. Applied in the frequency domain (one rfft per batch).
    """
    waves = check_batch(waves, "waves", (2,))
    if check_float(eq_db, "eq_db") < 0:
        raise ValueError(f"eq_db must be >= 0, got {eq_db}")
    n, length = waves.shape
    spectrum = torch.fft.rfft(waves.float(), dim=-1)
    bins = spectrum.shape[-1]
    k = torch.arange(1, terms + 1, device=waves.device, dtype=torch.float32)
    f = torch.linspace(0.0, 1.0, bins, device=waves.device)
    amps = (2 * _uniform((n, terms), generator, waves.device) - 1) * (eq_db / terms)
    curve_db = amps @ torch.cos(torch.pi * k[:, None] * f[None, :])
    out = torch.fft.irfft(spectrum * torch.pow(10.0, curve_db / 20.0), n=length, dim=-1)
    return out.to(waves.dtype)


def random_mel_shift(
    features: torch.Tensor, max_shift: int, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """Shift each ``(N, C, F, T)`` example along its frequency axis by an integer in ``[-max_shift, max_shift]``.

    Vacated bands are 0, the mean of normalized features; a shift up moves energy to higher bands.
    """
    features = check_batch(features, "features", (4,))
    return random_time_shift(features.transpose(-1, -2), max_shift, generator, mode="zero").transpose(-1, -2)


def sample_factors(
    factors: Range, n: int, generator: Optional[torch.Generator] = None, device: Union[str, torch.device] = "cpu"
) -> torch.Tensor:
    """``(n,)`` factors uniform in ``factors`` (VTLP's warps), drawn on the generator's device."""
    return _sample_range(as_range(factors, "factors"), "factors", n, generator, torch.device(device))
