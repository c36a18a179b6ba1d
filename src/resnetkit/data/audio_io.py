"""Reading audio files into mono float32 tensors and fixing their length.

Decoding is soundfile's (libsndfile: WAV, FLAC, OGG/Vorbis and more, any bit depth),
resampling is :func:`scipy.signal.resample_poly`. soundfile is an optional dependency
(``pip install resnetkit[audio]``) and is imported only when a file is read.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from types import ModuleType
from typing import BinaryIO, Optional, Sequence, Union

import numpy as np
import torch

PathLike = Union[str, os.PathLike]

FIX_LENGTH_MODES = ("random", "center")
# What the data loaders look for; libsndfile decodes more, but these are the formats data sets ship in.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
# Longer recordings are refused rather than decoded: a corrupt or hostile header can claim
# hours of audio, and no clip a classifier reads is that long.
MAX_AUDIO_SECONDS = 3600.0
MAX_AUDIO_VALUES = 2**30
# Rates outside this range are a broken header, not a recording (telephony is 8 kHz, studio 192 kHz).
SAMPLE_RATE_RANGE = (1000, 768_000)


class AudioFormatError(ValueError):
    """A file that exists but cannot be used as audio: empty, corrupt or of an unsupported format."""


def _import_soundfile() -> ModuleType:
    try:
        import soundfile
    except ImportError as exc:
        raise ImportError(
            "reading audio files needs the 'soundfile' package: pip install resnetkit[audio]"
        ) from exc
    except OSError as exc:
        # soundfile raises OSError at import when the libsndfile shared library is missing.
        raise ImportError(
            f"soundfile is installed but cannot load libsndfile ({exc}); reinstall it with "
            "pip install --force-reinstall resnetkit[audio]"
        ) from exc
    return soundfile


def _check_positive_int(value: object, name: str) -> int:
    # bool is an int subclass; sample_rate=True is a bug, not 1 Hz.
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return int(value)


def resample(wave: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Resample a 1-D array with a polyphase filter (up/down reduced by their gcd).

    The output has ``ceil(len(wave) * target_rate / orig_rate)`` samples.
    """
    orig_rate = _check_positive_int(orig_rate, "orig_rate")
    target_rate = _check_positive_int(target_rate, "target_rate")
    if orig_rate == target_rate:
        return wave
    from scipy.signal import resample_poly  # scipy is heavy; only pay for it when resampling

    g = math.gcd(orig_rate, target_rate)
    return resample_poly(wave, target_rate // g, orig_rate // g)


def load_audio(source: Union[PathLike, bytes, BinaryIO], sample_rate: int, name: Optional[str] = None) -> torch.Tensor:
    """Read an audio file (a path, its bytes, or a binary file object) as 1-D float32 mono at ``sample_rate``.

    Channels are averaged; PCM of any width is scaled to [-1, 1), float files keep their
    values. A file at another rate is resampled with :func:`resample`. Uploads are decoded
    in memory.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        AudioFormatError: the file is empty, corrupt, of an unsupported format, absurdly
            long, or holds non-finite samples. The message names the file (``name``).
    """
    sample_rate = _check_positive_int(sample_rate, "sample_rate")
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise AudioFormatError(f"{name or 'upload'}: empty file (0 bytes), expected audio")
        source = io.BytesIO(source)
    if isinstance(source, io.IOBase):
        label = name or "upload"
    else:
        path = Path(source)
        label = name or str(path)
        if not path.exists():
            raise FileNotFoundError(f"audio file {label!r} does not exist")
        if path.is_dir():
            raise AudioFormatError(f"{label!r} is a directory, expected an audio file")
        if path.stat().st_size == 0:
            # libsndfile's message for this case ("Format not recognised") hides the real problem.
            raise AudioFormatError(f"audio file {label!r} is empty (0 bytes)")
        source = str(path)

    sf = _import_soundfile()
    try:
        with sf.SoundFile(source) as fh:
            frames, file_rate, channels = fh.frames, fh.samplerate, fh.channels
            # A header can claim anything; refuse what would not fit in memory before reading it.
            low, high = SAMPLE_RATE_RANGE
            if not low <= file_rate <= high or channels <= 0 or frames < 0:
                raise AudioFormatError(f"audio file {label!r} has an impossible header: {channels} channel(s) at "
                                       f"{file_rate} Hz (expected {low}-{high} Hz)")
            if frames / file_rate > MAX_AUDIO_SECONDS or frames * channels > MAX_AUDIO_VALUES:
                raise AudioFormatError(
                    f"audio file {label!r} claims {frames:,} frames x {channels} channel(s) at {file_rate} Hz "
                    f"({frames / file_rate / 60:.1f} min), above the limit of {MAX_AUDIO_SECONDS / 60:.0f} min"
                )
            # always_2d gives (frames, channels) for mono and multichannel alike.
            data = fh.read(dtype="float32", always_2d=True)
    except AudioFormatError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, EOFError, OSError, MemoryError) as exc:
        # soundfile reports corrupt headers, unknown formats and truncated files through
        # several exception types; callers only need to know this file is unusable.
        raise AudioFormatError(
            f"cannot read audio file {label!r}: {exc} "
            "(expected a WAV, FLAC or OGG file that libsndfile can decode)"
        ) from None
    path = label

    if data.shape[0] == 0 or data.shape[1] == 0:
        raise AudioFormatError(f"audio file {path!r} has a valid header but contains no samples")
    # Float files can hold NaN/inf; they would poison every feature and loss downstream.
    if not np.isfinite(data).all():
        raise AudioFormatError(f"audio file {path!r} contains NaN or infinite samples")

    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    wave = resample(wave, int(file_rate), sample_rate)
    return torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))


def _check_wave(wave: torch.Tensor, name: str = "wave") -> None:
    if not isinstance(wave, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(wave).__name__}")
    if wave.dim() != 1:
        raise ValueError(f"{name} must be 1-D (samples,), got shape {tuple(wave.shape)}")


def _random_offset(high: int, generator: Optional[torch.Generator]) -> int:
    """Uniform integer in [0, high] inclusive."""
    if high <= 0:
        return 0
    return int(torch.randint(0, high + 1, (1,), generator=generator).item())


def fix_length(
    wave: torch.Tensor,
    num_samples: int,
    mode: str = "center",
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Crop or zero-pad a 1-D wave to exactly ``num_samples``.

    ``mode="center"`` keeps the middle of a long wave and centres a short one in the padding
    (deterministic: evaluation). ``mode="random"`` crops at a random offset or places the
    wave at a random position in the padding (training); ``generator`` seeds it. The
    generator is a CPU generator: this runs in data-loading code, before batching. A wave
    that already has ``num_samples`` samples is returned as is, not copied.
    """
    _check_wave(wave)
    num_samples = _check_positive_int(num_samples, "num_samples")
    if mode not in FIX_LENGTH_MODES:
        raise ValueError(f"mode must be one of {FIX_LENGTH_MODES}, got {mode!r}")
    length = wave.shape[0]
    if length == num_samples:
        return wave
    slack = abs(length - num_samples)
    offset = _random_offset(slack, generator) if mode == "random" else slack // 2
    if length > num_samples:
        return wave[offset : offset + num_samples]
    out = wave.new_zeros(num_samples)
    out[offset : offset + length] = wave
    return out


def fix_length_batch(
    waves: Sequence[torch.Tensor],
    num_samples: int,
    mode: str = "center",
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Fix each wave's length with :func:`fix_length` and stack them into ``(N, num_samples)``."""
    if isinstance(waves, torch.Tensor) or not isinstance(waves, Sequence):
        raise TypeError(f"waves must be a sequence of 1-D tensors, got {type(waves).__name__}")
    if len(waves) == 0:
        raise ValueError("waves is empty; expected at least one 1-D tensor")
    for i, wave in enumerate(waves):
        _check_wave(wave, f"waves[{i}]")
    return torch.stack([fix_length(w, num_samples, mode, generator) for w in waves])


def is_silent(wave: torch.Tensor, threshold: float = 1e-4) -> bool:
    """True when no sample's magnitude exceeds ``threshold`` (about -80 dBFS by default).

    A silent file is legal data; the caller decides whether to count or skip it.
    """
    if not isinstance(wave, torch.Tensor):
        raise TypeError(f"wave must be a torch.Tensor, got {type(wave).__name__}")
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    if wave.numel() == 0:
        return True
    return bool(wave.abs().max() <= threshold)
