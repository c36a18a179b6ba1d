"""Batched audio features and their normalization in pure torch, and the settings that rebuild them.

Everything here runs on batches on any device (CPU or CUDA) and computes features in
float32 even inside ``torch.autocast``: log compression of fp16/bf16 power spectra loses
most of the dynamic range. :class:`LogMelSpectrogram` and :class:`MFCC` reproduce
``librosa.feature.melspectrogram`` + ``librosa.power_to_db`` and ``librosa.feature.mfcc``
(librosa 0.11 defaults: Slaney mel scale and area normalization, periodic Hann window,
centred frames with zero padding); ``tests/data/test_audio_features.py`` states the
measured agreement. Speaker and channel normalization belong to the front end, so they
travel with runs and exported graphs: per-band CMVN (:func:`normalize_bands`) and PCEN
(:func:`pcen`) in place of decibels; VTLP (:func:`warped_mel_filterbank`) warps the
filterbank per example during training. :class:`FeatureConfig` holds every setting of the front end; its
``from_dict`` is the one parser of feature settings (recipes, flags, checkpoints, exported
files). The augmentations of audio training live in :mod:`.audio_augment`.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any, Iterable, Optional, Union

import torch
from torch import nn

from .audio_augment import AudioAugmentConfig
from .checks import check_batch, check_float, check_int

WINDOWS = ("hann", "hamming", "blackman")
PAD_MODES = ("constant", "reflect", "replicate", "circular")
FEATURE_KINDS = ("logmel", "mfcc")
# utterance: one mean/std over the whole clip; cmvn: one per band over time (per-utterance
# cepstral/band mean and variance normalization, which removes a static channel or voice colour).
NORMALIZE_MODES = ("utterance", "cmvn", "dataset", "none")
# How mel energies are compressed: decibels (log), or PCEN (Wang et al. 2017).
COMPRESSIONS = ("db", "pcen")


def _check_spectral(
    owner: str,
    sample_rate: int,
    n_fft: int,
    hop_length: int,
    win_length: int,
    n_mels: int,
    fmin: float,
    fmax: float,
    top_db: Optional[float],
) -> None:
    """Shared checks of :class:`LogMelSpectrogram` and :class:`FeatureConfig`; messages name the field."""
    check_int(sample_rate, f"{owner}.sample_rate")
    check_int(n_fft, f"{owner}.n_fft", minimum=2)
    check_int(hop_length, f"{owner}.hop_length")
    check_int(win_length, f"{owner}.win_length")
    check_int(n_mels, f"{owner}.n_mels")
    if win_length > n_fft:
        raise ValueError(f"{owner}.n_fft must be >= win_length, got n_fft={n_fft} < win_length={win_length}")
    fmin = check_float(fmin, f"{owner}.fmin")
    fmax = check_float(fmax, f"{owner}.fmax")
    if fmin < 0:
        raise ValueError(f"{owner}.fmin must be >= 0, got {fmin}")
    if fmax > sample_rate / 2:
        raise ValueError(
            f"{owner}.fmax must be <= sample_rate/2 = {sample_rate / 2:g} Hz (Nyquist), got {fmax:g}"
        )
    if fmin >= fmax:
        raise ValueError(f"{owner}.fmin must be < fmax, got fmin={fmin:g} >= fmax={fmax:g}")
    if top_db is not None and check_float(top_db, f"{owner}.top_db") <= 0:
        raise ValueError(f"{owner}.top_db must be None or > 0, got {top_db}")


# --------------------------------------------------------------------------------------
# Mel filterbank and DCT (float64 construction, like librosa)
# --------------------------------------------------------------------------------------

# Slaney's Auditory Toolbox mel scale, librosa's htk=False: linear below 1 kHz, log above.
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel(freqs: torch.Tensor, htk: bool = False) -> torch.Tensor:
    """Hz to mel, as ``librosa.hz_to_mel``."""
    if htk:
        return 2595.0 * torch.log10(1.0 + freqs / 700.0)
    linear = freqs / _F_SP
    log = _MIN_LOG_MEL + torch.log(torch.clamp(freqs, min=_MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return torch.where(freqs >= _MIN_LOG_HZ, log, linear)


def mel_to_hz(mels: torch.Tensor, htk: bool = False) -> torch.Tensor:
    """Mel to Hz, as ``librosa.mel_to_hz``."""
    if htk:
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    linear = _F_SP * mels
    log = _MIN_LOG_HZ * torch.exp(_LOGSTEP * (mels - _MIN_LOG_MEL))
    return torch.where(mels >= _MIN_LOG_MEL, log, linear)


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: Optional[float] = None,
    *,
    htk: bool = False,
    norm: Optional[str] = "slaney",
    dtype: torch.dtype = torch.float32,
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    """Triangular mel filters of shape ``(n_mels, n_fft // 2 + 1)``, as ``librosa.filters.mel``.

    Defaults are librosa's: Slaney mel scale (``htk=False``) and ``norm="slaney"`` (each
    triangle divided by its bandwidth in Hz, so bands have equal area). ``fmax`` defaults
    to ``sample_rate / 2``. Built in float64 and cast to ``dtype``.
    """
    fmax = sample_rate / 2 if fmax is None else fmax
    _check_spectral("mel_filterbank", sample_rate, n_fft, 1, n_fft, n_mels, fmin, fmax, None)
    if norm not in ("slaney", None):
        raise ValueError(f"mel_filterbank.norm must be 'slaney' or None, got {norm!r}")
    f64 = torch.float64
    fft_freqs = torch.linspace(0.0, sample_rate / 2, n_fft // 2 + 1, dtype=f64)
    mel_min = hz_to_mel(torch.tensor(float(fmin), dtype=f64), htk)
    mel_max = hz_to_mel(torch.tensor(float(fmax), dtype=f64), htk)
    # n_mels + 2 edges: each band rises from edge i to i+1 and falls to i+2.
    edges = mel_to_hz(torch.linspace(float(mel_min), float(mel_max), n_mels + 2, dtype=f64), htk)
    widths = edges.diff()
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = torch.clamp(torch.minimum(lower, upper), min=0.0)
    if norm == "slaney":
        weights = weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    if bool(((edges[:-2] != 0) & (weights.amax(dim=1) == 0)).any()):
        # Same condition librosa warns about: bands narrower than an FFT bin stay all zero.
        warnings.warn(
            f"mel_filterbank: some of the {n_mels} mel bands are empty; use fewer n_mels or a larger n_fft",
            stacklevel=2,
        )
    return weights.to(dtype=dtype, device=device)


def warp_frequencies(freqs: torch.Tensor, factors: torch.Tensor, fmax: float, cutoff: float = 0.8) -> torch.Tensor:
    """Vocal-tract length warping of frequencies (Jaitly & Hinton 2013, "VTLP"), one factor per row.

    ``freqs`` ``(..., K)`` Hz, ``factors`` ``(N,)`` -> ``(N, ..., K)``: the frequency of the
    unwarped spectrum that a filter placed at ``f`` reads, ``f / factor`` below a knee and a
    straight line to ``fmax`` above it, so the band's top edge stays put. A factor above 1
    moves a tone's energy to higher filters (a shorter vocal tract); 1 is the identity.
    """
    factors = factors.reshape(-1, *([1] * freqs.dim())).to(freqs.dtype)
    # The knee keeps f / factor below fmax for factors < 1 (Kaldi's VTLN uses the same shape).
    knee = cutoff * fmax * torch.clamp(factors, max=1.0)
    low = freqs / factors
    top = knee / factors + (fmax - knee / factors) * (freqs - knee) / (fmax - knee)
    return torch.where(freqs <= knee, low, top)


def warped_mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float, factors: torch.Tensor
) -> torch.Tensor:
    """Per-example mel filterbanks ``(N, n_mels, n_fft // 2 + 1)`` with edges warped by ``factors`` (VTLP).

    Slaney-normalized like :func:`mel_filterbank` (area over the warped band), built in
    float32 on ``factors``' device; ``factors`` of 1 give :func:`mel_filterbank`'s weights.
    """
    device = factors.device
    f32 = torch.float32
    fft_freqs = torch.linspace(0.0, sample_rate / 2, n_fft // 2 + 1, dtype=f32, device=device)
    mels = torch.linspace(float(hz_to_mel(torch.tensor(float(fmin), dtype=torch.float64))),
                          float(hz_to_mel(torch.tensor(float(fmax), dtype=torch.float64))), n_mels + 2,
                          dtype=torch.float64)
    edges = mel_to_hz(mels).to(f32).to(device)
    edges = warp_frequencies(edges, factors.to(f32), float(fmax))  # (N, n_mels + 2)
    widths = edges.diff(dim=-1)
    ramps = edges[:, :, None] - fft_freqs[None, None, :]
    lower = -ramps[:, :-2] / widths[:, :-1, None]
    upper = ramps[:, 2:] / widths[:, 1:, None]
    weights = torch.clamp(torch.minimum(lower, upper), min=0.0)
    return weights * (2.0 / (edges[:, 2:] - edges[:, :-2]))[:, :, None]


def dct_matrix(n_out: int, n_in: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Orthonormal DCT-II as an ``(n_out, n_in)`` matrix: ``scipy.fft.dct(x, type=2, norm="ortho")[:n_out]``."""
    check_int(n_in, "dct_matrix.n_in")
    check_int(n_out, "dct_matrix.n_out")
    if n_out > n_in:
        raise ValueError(f"dct_matrix.n_out must be <= n_in, got {n_out} > {n_in}")
    k = torch.arange(n_out, dtype=torch.float64)[:, None]
    n = torch.arange(n_in, dtype=torch.float64)[None, :]
    basis = torch.cos(math.pi / n_in * (n + 0.5) * k) * math.sqrt(2.0 / n_in)
    basis[0] /= math.sqrt(2.0)
    return basis.to(dtype)


# --------------------------------------------------------------------------------------
# Spectral features
# --------------------------------------------------------------------------------------


def power_to_db(
    power: torch.Tensor,
    ref: Union[str, float] = 1.0,
    amin: float = 1e-10,
    top_db: Optional[float] = 80.0,
) -> torch.Tensor:
    """``10 log10(power / ref)`` per example, as ``librosa.power_to_db``.

    ``power`` is ``(..., F, T)``; ``ref="max"`` (librosa's ``ref=np.max``) and ``top_db``
    clipping use each example's own maximum over its last two dims.
    """
    db = 10.0 * torch.log10(torch.clamp(power, min=amin))
    if ref == "max":
        db = db - db.amax(dim=(-2, -1), keepdim=True)
    elif isinstance(ref, str):
        raise ValueError(f"power_to_db.ref must be 'max' or a positive number, got {ref!r}")
    else:
        db = db - 10.0 * math.log10(max(amin, abs(float(ref))))
    if top_db is not None:
        db = torch.maximum(db, db.amax(dim=(-2, -1), keepdim=True) - top_db)
    return db


# PCEN constants are librosa.pcen's defaults (Wang et al. 2017; Lostanlen et al. 2019).
PCEN_TIME_CONSTANT_S = 0.4  # smoother's time constant: long against a syllable, short against a session
PCEN_GAIN = 0.98  # alpha: how much of the smoothed energy is divided out (1 would be full AGC)
PCEN_BIAS = 2.0  # delta
PCEN_POWER = 0.5  # r: root compression in place of the log
PCEN_EPS = 1e-6
# librosa's documentation scales power of [-1, 1] audio by 2**31 (int32 full scale) before pcen,
# the range its bias and gain were tuned for.
PCEN_INPUT_SCALE = float(2**31)


def pcen_smoothing_matrix(frames: int, s: float, dtype: torch.dtype = torch.float32,
                          device: Optional[torch.device] = None) -> torch.Tensor:
    """``(frames, frames)`` matrix ``W`` with ``M = E @ W.T`` the first-order IIR smoother of PCEN.

    ``M[t] = (1 - s) M[t - 1] + s E[t]`` started at its steady state for the first frame
    (``M[-1] = E[0]``, scipy's ``lfilter_zi`` as librosa uses): a matrix product instead of a
    loop over frames, which exports to ONNX as one MatMul.
    """
    t = torch.arange(frames, dtype=torch.float64)
    lag = t[:, None] - t[None, :]
    w = torch.where(lag >= 0, s * (1.0 - s) ** lag.clamp(min=0), torch.zeros(()))
    w[:, 0] += (1.0 - s) ** (t + 1)
    return w.to(dtype=dtype, device=device)


def pcen(energy: torch.Tensor, sample_rate: int, hop_length: int) -> torch.Tensor:
    """Per-channel energy normalization of ``(..., F, T)`` mel energies, as ``librosa.pcen`` (defaults).

    ``(E / (eps + M) ** gain + bias) ** power - bias ** power`` with ``M`` the smoothed energy
    of each band; ``energy`` is power of [-1, 1] audio, scaled by :data:`PCEN_INPUT_SCALE` here.
    """
    t = PCEN_TIME_CONSTANT_S * sample_rate / hop_length
    s = (math.sqrt(1 + 4 * t**2) - 1) / (2 * t**2)
    energy = energy * PCEN_INPUT_SCALE
    smooth = torch.matmul(energy, pcen_smoothing_matrix(energy.shape[-1], s, energy.dtype, energy.device).T)
    # exp(-gain * log(eps + M)) is librosa's form: it keeps huge M from overflowing in the power.
    agc = energy * torch.exp(-PCEN_GAIN * torch.log(PCEN_EPS + smooth))
    return (agc + PCEN_BIAS) ** PCEN_POWER - PCEN_BIAS**PCEN_POWER


def _window(name: str, length: int) -> torch.Tensor:
    # Periodic windows, like scipy.signal.get_window(..., fftbins=True) that librosa uses.
    factories = {"hann": torch.hann_window, "hamming": torch.hamming_window, "blackman": torch.blackman_window}
    return factories[name](length, periodic=True, dtype=torch.float64).to(torch.float32)


def _no_autocast(device: torch.device) -> Any:
    # Features are computed in float32 even when the training step runs under autocast.
    return torch.autocast(device_type=device.type, enabled=False)


class LogMelSpectrogram(nn.Module):
    """Log-mel spectrogram in dB: ``(N, samples)`` or ``(samples,)`` -> ``(N, 1, n_mels, frames)``.

    Matches ``librosa.power_to_db(librosa.feature.melspectrogram(...), ref=..., top_db=...)``
    with the same arguments. ``frames = 1 + samples // hop_length`` when ``center=True``.
    ``ref`` is ``"max"`` (each utterance's loudest bin is 0 dB, librosa's ``ref=np.max``) or
    a number (1.0 gives absolute dB re full-scale power). ``top_db`` clips each utterance
    at its maximum minus ``top_db``; ``None`` keeps the full range down to ``amin``.
    ``compression="pcen"`` replaces the decibels with :func:`pcen` (``ref``, ``top_db`` and
    ``amin`` then do not apply). ``forward(waves, warp)`` warps each example's filterbank by
    its factor in ``warp`` (VTLP, training only). ``preemphasis`` ``p`` first filters each
    wave by ``y[n] = x[n] - p x[n - 1]`` (as ``librosa.effects.preemphasis`` with ``zi=0``): about
    6 dB more per octave, so consonants stand out of the floor that ``top_db`` sets.
    """

    def __init__(
        self,
        sample_rate: int,
        n_fft: int = 480,
        hop_length: int = 160,
        win_length: Optional[int] = None,
        window: str = "hann",
        n_mels: int = 40,
        fmin: float = 0.0,
        fmax: Optional[float] = None,
        power: float = 2.0,
        top_db: Optional[float] = 80.0,
        center: bool = True,
        pad_mode: str = "constant",
        ref: Union[str, float] = 1.0,
        amin: float = 1e-10,
        compression: str = "db",
        preemphasis: float = 0.0,
    ) -> None:
        super().__init__()
        win_length = n_fft if win_length is None else win_length
        fmax = sample_rate / 2 if fmax is None else fmax
        if compression not in COMPRESSIONS:
            raise ValueError(f"LogMelSpectrogram.compression must be one of {COMPRESSIONS}, got {compression!r}")
        _check_spectral("LogMelSpectrogram", sample_rate, n_fft, hop_length, win_length, n_mels, fmin, fmax, top_db)
        if window not in WINDOWS:
            raise ValueError(f"LogMelSpectrogram.window must be one of {WINDOWS}, got {window!r}")
        # librosa 0.11's stft pads centred frames with zeros ("constant"); earlier librosa used "reflect".
        if pad_mode not in PAD_MODES:
            raise ValueError(f"LogMelSpectrogram.pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
        if check_float(power, "LogMelSpectrogram.power") <= 0:
            raise ValueError(f"LogMelSpectrogram.power must be > 0, got {power}")
        if ref != "max" and (isinstance(ref, str) or check_float(ref, "LogMelSpectrogram.ref") <= 0):
            raise ValueError(f"LogMelSpectrogram.ref must be 'max' or a positive number, got {ref!r}")
        if check_float(amin, "LogMelSpectrogram.amin") <= 0:
            raise ValueError(f"LogMelSpectrogram.amin must be > 0, got {amin}")
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.win_length = win_length
        self.window_name = window
        self.n_mels = n_mels
        self.fmin = float(fmin)
        self.fmax = float(fmax)
        self.power = float(power)
        self.top_db = None if top_db is None else float(top_db)
        self.center = bool(center)
        self.pad_mode = pad_mode
        self.ref = ref if ref == "max" else float(ref)
        self.amin = float(amin)
        self.compression = compression
        self.preemphasis = float(preemphasis)
        # Derived from the arguments above, so kept out of the state dict (persistent=False):
        # checkpoints stay small and loading never fights a changed configuration.
        self.register_buffer("window", _window(window, win_length), persistent=False)
        self.register_buffer(
            "mel_fb", mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax), persistent=False
        )

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for an input of ``num_samples`` samples."""
        if self.center:
            return 1 + num_samples // self.hop_length
        return 1 + (num_samples - self.n_fft) // self.hop_length

    def power_spectrogram(self, waves: torch.Tensor) -> torch.Tensor:
        """``|STFT|^power`` of float32 ``(N, samples)`` waves: ``(N, n_fft // 2 + 1, frames)``."""
        spec = torch.stft(
            waves,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window.to(dtype=torch.float32),
            center=self.center,
            pad_mode=self.pad_mode,
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        if self.power == 2.0:
            # re^2 + im^2 avoids the sqrt-then-square rounding of abs() ** 2.
            return torch.view_as_real(spec).pow(2).sum(-1)
        return spec.abs().pow(self.power)

    def forward(self, waves: torch.Tensor, warp: Optional[torch.Tensor] = None) -> torch.Tensor:
        waves = check_batch(waves, "waves", (1, 2))
        if waves.dim() == 1:
            waves = waves.unsqueeze(0)
        if not self.center and waves.shape[-1] < self.n_fft:
            raise ValueError(f"waves must have >= n_fft={self.n_fft} samples when center=False, got {waves.shape[-1]}")
        with _no_autocast(waves.device):
            waves = waves.to(torch.float32)
            if self.preemphasis:
                waves = torch.cat([waves[:, :1], waves[:, 1:] - self.preemphasis * waves[:, :-1]], dim=1)
            spec = self.power_spectrogram(waves)
            if warp is None:
                mel = torch.matmul(self.mel_fb.to(torch.float32), spec)
            else:
                if warp.shape != (waves.shape[0],):
                    raise ValueError(f"warp must hold one factor per example, shape ({waves.shape[0]},), "
                                     f"got {tuple(warp.shape)}")
                fb = warped_mel_filterbank(self.sample_rate, self.n_fft, self.n_mels, self.fmin, self.fmax,
                                           warp.to(device=waves.device, dtype=torch.float32))
                mel = torch.bmm(fb, spec)
            if self.compression == "pcen":
                out = pcen(mel, self.sample_rate, self.hop_length)
            else:
                out = power_to_db(mel, ref=self.ref, amin=self.amin, top_db=self.top_db)
        return out.unsqueeze(1)

    def extra_repr(self) -> str:
        return (
            f"sample_rate={self.sample_rate}, n_fft={self.n_fft}, hop_length={self.hop_length}, "
            f"win_length={self.win_length}, n_mels={self.n_mels}, fmin={self.fmin:g}, fmax={self.fmax:g}, "
            f"top_db={self.top_db}, ref={self.ref}, compression={self.compression}, preemphasis={self.preemphasis:g}"
        )


class MFCC(nn.Module):
    """MFCCs: orthonormal DCT-II of the log-mel (dB) spectrogram, as ``librosa.feature.mfcc``.

    ``(N, samples)`` or ``(samples,)`` -> ``(N, 1, n_mfcc, frames)``. Defaults of ``top_db``
    (80) and ``ref`` (1.0) are librosa's ``power_to_db`` defaults, which ``mfcc`` uses.
    """

    def __init__(
        self,
        sample_rate: int,
        n_mfcc: int = 40,
        n_fft: int = 480,
        hop_length: int = 160,
        win_length: Optional[int] = None,
        window: str = "hann",
        n_mels: int = 40,
        fmin: float = 0.0,
        fmax: Optional[float] = None,
        power: float = 2.0,
        top_db: Optional[float] = 80.0,
        center: bool = True,
        pad_mode: str = "constant",
        ref: Union[str, float] = 1.0,
        amin: float = 1e-10,
        compression: str = "db",
        preemphasis: float = 0.0,
    ) -> None:
        super().__init__()
        self.logmel = LogMelSpectrogram(
            sample_rate, n_fft=n_fft, hop_length=hop_length, win_length=win_length, window=window,
            n_mels=n_mels, fmin=fmin, fmax=fmax, power=power, top_db=top_db, center=center,
            pad_mode=pad_mode, ref=ref, amin=amin, compression=compression, preemphasis=preemphasis,
        )
        check_int(n_mfcc, "MFCC.n_mfcc")
        if n_mfcc > n_mels:
            raise ValueError(f"MFCC.n_mfcc must be <= n_mels, got n_mfcc={n_mfcc} > n_mels={n_mels}")
        self.n_mfcc = n_mfcc
        self.register_buffer("dct", dct_matrix(n_mfcc, n_mels), persistent=False)

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for an input of ``num_samples`` samples."""
        return self.logmel.num_frames(num_samples)

    def forward(self, waves: torch.Tensor, warp: Optional[torch.Tensor] = None) -> torch.Tensor:
        logmel = self.logmel(waves, warp)
        with _no_autocast(logmel.device):
            return torch.matmul(self.dct.to(torch.float32), logmel)


# --------------------------------------------------------------------------------------
# Normalization
# --------------------------------------------------------------------------------------


def normalize_utterance(features: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Zero mean, unit variance per example (over all dims but the first)."""
    features = check_batch(features, "features", (2, 3, 4))
    dims = tuple(range(1, features.dim()))
    mean = features.mean(dim=dims, keepdim=True)
    var = features.var(dim=dims, keepdim=True, unbiased=False)
    # eps keeps an all-constant example (digital silence clipped by top_db) at 0 instead of NaN.
    return (features - mean) / torch.sqrt(var + eps)


def normalize_bands(features: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-utterance CMVN: zero mean, unit variance of each band over time, ``(N, C, F, T)`` features.

    A fixed gain, microphone response or voice colour is a constant offset of each log band
    and goes away; ``eps`` keeps a constant band (silence clipped by top_db) at 0, not NaN.
    """
    features = check_batch(features, "features", (3, 4))
    mean = features.mean(dim=-1, keepdim=True)
    var = features.var(dim=-1, keepdim=True, unbiased=False)
    return (features - mean) / torch.sqrt(var + eps)


class UtteranceNorm(nn.Module):
    """Module form of :func:`normalize_utterance` (``per_band=False``) and :func:`normalize_bands`."""

    def __init__(self, eps: float = 1e-5, per_band: bool = False) -> None:
        super().__init__()
        self.eps = eps
        self.per_band = bool(per_band)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.per_band:
            return normalize_bands(features, self.eps)
        return normalize_utterance(features, self.eps)


class FrontEnd(nn.Sequential):
    """Features, then their normalization: ``(N, samples)`` -> ``(N, 1, F, T)``.

    A Sequential whose first module may take per-example VTLP factors: ``forward(waves, warp)``
    passes ``warp`` to the features (training); inference calls it with the waves alone.
    """

    def forward(self, waves: torch.Tensor, warp: Optional[torch.Tensor] = None) -> torch.Tensor:
        modules = list(self)
        x = modules[0](waves) if warp is None else modules[0](waves, warp)
        for module in modules[1:]:
            x = module(x)
        return x


class DatasetNormalizer(nn.Module):
    """Mean and standard deviation of training features, applied as ``(x - mean) / std``.

    ``per_bin=True`` keeps one mean/std per frequency bin (the ``F`` axis of ``(N, C, F, T)``
    features, as cepstral mean and variance normalization does); ``False`` uses one scalar.
    Fit once on the training set's features, save with :meth:`to_dict`, and restore with
    :meth:`from_dict` so evaluation uses the training statistics.
    """

    def __init__(self, per_bin: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        self.per_bin = bool(per_bin)
        self.eps = float(eps)
        self.count = 0
        self.register_buffer("mean", torch.zeros(0))
        self.register_buffer("std", torch.ones(0))

    @property
    def fitted(self) -> bool:
        return self.count > 0

    def _reduce_dims(self, x: torch.Tensor) -> tuple[int, ...]:
        return tuple(d for d in range(x.dim()) if d != x.dim() - 2) if self.per_bin else tuple(range(x.dim()))

    @torch.no_grad()
    def fit(self, batches: Iterable[torch.Tensor]) -> "DatasetNormalizer":
        """Compute mean/std over every element of ``batches`` of ``(N, C, F, T)`` features."""
        count = 0
        mean: Optional[torch.Tensor] = None
        m2: Optional[torch.Tensor] = None
        for i, batch in enumerate(batches):
            batch = check_batch(batch, f"batches[{i}]", (3, 4))
            dims = self._reduce_dims(batch)
            n = batch.numel() // (batch.shape[-2] if self.per_bin else 1)
            # Per-batch centred moments in float32 on the batch's device, merged in float64 on
            # the CPU (Chan et al.'s parallel update): summing squares of dB values over a whole
            # data set in float32 would lose the variance to rounding.
            b_mean = batch.float().mean(dim=dims).double().cpu()
            b_m2 = batch.float().var(dim=dims, unbiased=False).double().cpu() * n
            if mean is None:
                mean, m2, count = b_mean, b_m2, n
                continue
            if b_mean.shape != mean.shape:
                raise ValueError(
                    f"batches[{i}] has {b_mean.numel()} frequency bins, earlier batches had {mean.numel()}"
                )
            total = count + n
            delta = b_mean - mean
            mean = mean + delta * (n / total)
            m2 = m2 + b_m2 + delta.pow(2) * (count * n / total)
            count = total
        if mean is None or m2 is None:
            raise ValueError("batches is empty; DatasetNormalizer.fit needs at least one batch of features")
        self.count = count
        self.mean = mean.float().reshape(-1).to(self.mean.device)
        self.std = (m2 / count).sqrt().clamp(min=self.eps).float().reshape(-1).to(self.std.device)
        return self

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if not self.fitted:
            raise RuntimeError("DatasetNormalizer is not fitted; call fit() or load it with from_dict()")
        features = check_batch(features, "features", (3, 4))
        if self.per_bin:
            if features.shape[-2] != self.mean.numel():
                raise ValueError(
                    f"features have {features.shape[-2]} frequency bins, the normalizer was fitted on {self.mean.numel()}"
                )
            return (features - self.mean[:, None]) / self.std[:, None]
        return (features - self.mean) / self.std

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready statistics."""
        return {
            "per_bin": self.per_bin,
            "eps": self.eps,
            "count": self.count,
            "mean": self.mean.cpu().tolist(),
            "std": self.std.cpu().tolist(),
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "DatasetNormalizer":
        """Inverse of :meth:`to_dict`."""
        if not isinstance(state, dict):
            raise TypeError(f"DatasetNormalizer state must be a dict, got {type(state).__name__}")
        missing = {"per_bin", "count", "mean", "std"} - set(state)
        if missing:
            raise ValueError(f"DatasetNormalizer state is missing {sorted(missing)}")
        norm = cls(per_bin=state["per_bin"], eps=state.get("eps", 1e-5))
        mean = torch.as_tensor(state["mean"], dtype=torch.float32).reshape(-1)
        std = torch.as_tensor(state["std"], dtype=torch.float32).reshape(-1)
        if mean.shape != std.shape or mean.numel() == 0:
            raise ValueError(f"DatasetNormalizer state: mean and std must be equal-length, non-empty lists, "
                             f"got {mean.numel()} and {std.numel()} values")
        if not bool((std > 0).all()):
            raise ValueError("DatasetNormalizer state: std must be > 0 everywhere")
        if not norm.per_bin and mean.numel() != 1:
            raise ValueError(f"DatasetNormalizer state: per_bin=False needs one mean, got {mean.numel()}")
        norm.mean, norm.std = mean, std
        norm.count = check_int(state["count"], "DatasetNormalizer state count")
        return norm


# --------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class FeatureConfig:
    """Everything needed to rebuild the feature front end; saved next to a checkpoint.

    Defaults follow Tang & Lin (2018), "Deep Residual Learning for Small-Footprint Keyword
    Spotting", and their Honk code: 16 kHz, 40 MFCCs from 40 mel bands between 20 Hz and
    4 kHz, 30 ms windows, 10 ms hop. Lengths are in samples at ``sample_rate``.
    """

    # MFCCs are what Tang & Lin's res8/res15 consume; "logmel" keeps frequency locality instead.
    kind: str = "mfcc"
    # 16 kHz is the Speech Commands rate Tang & Lin used; 8 kHz FSDD files are upsampled to it.
    sample_rate: int = 16000
    # Keyword clips are 1 s in Speech Commands; 99% of FSDD recordings are shorter.
    duration_s: float = 1.0
    # One FFT per 30 ms window without zero padding, as in Honk (n_fft=480 at 16 kHz).
    n_fft: int = 480
    # 10 ms frame shift: 101 frames per second with centred frames.
    hop_length: int = 160
    # 30 ms analysis window (Tang & Lin).
    win_length: int = 480
    # 40 mel bands (Tang & Lin).
    n_mels: int = 40
    # 40 coefficients: all of them, as Tang & Lin keep; fewer smooth the spectral envelope.
    n_mfcc: int = 40
    # 20 Hz - 4 kHz band (Tang & Lin's band-pass): below 20 Hz is rumble, and 4 kHz is the
    # Nyquist rate of 8 kHz data such as FSDD, so both data sets see the same band.
    fmin: float = 20.0
    fmax: float = 4000.0
    # librosa's default range: bounds digital silence (zero padding) to max - 80 dB instead
    # of -100 dB outliers that would dominate normalization statistics.
    top_db: Optional[float] = 80.0
    # Per-utterance statistics need no fitting pass and remove recording-level gain. The speech
    # recipes set "cmvn" (per band); this default stays what runs saved before it were trained with.
    normalize: str = "utterance"
    # "db" is librosa's power_to_db; "pcen" is per-channel energy normalization. A record
    # without this key (a run saved before it existed) reads as "db", as it was trained.
    compression: str = "db"
    # Pre-emphasis coefficient (Kaldi and most speech front ends use 0.97); 0 is off, and a
    # record without this key (a run saved before it existed) reads as 0, as it was trained.
    preemphasis: float = 0.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError/TypeError naming the first invalid field."""
        if self.kind not in FEATURE_KINDS:
            raise ValueError(f"FeatureConfig.kind must be one of {FEATURE_KINDS}, got {self.kind!r}")
        if self.normalize not in NORMALIZE_MODES:
            raise ValueError(f"FeatureConfig.normalize must be one of {NORMALIZE_MODES}, got {self.normalize!r}")
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"FeatureConfig.compression must be one of {COMPRESSIONS}, got {self.compression!r}")
        if check_float(self.duration_s, "FeatureConfig.duration_s") <= 0:
            raise ValueError(f"FeatureConfig.duration_s must be > 0, got {self.duration_s}")
        _check_spectral(
            "FeatureConfig", self.sample_rate, self.n_fft, self.hop_length, self.win_length,
            self.n_mels, self.fmin, self.fmax, self.top_db,
        )
        check_int(self.n_mfcc, "FeatureConfig.n_mfcc")
        if not 0.0 <= check_float(self.preemphasis, "FeatureConfig.preemphasis") < 1.0:
            raise ValueError(f"FeatureConfig.preemphasis must be in [0, 1), got {self.preemphasis}")
        if self.kind == "mfcc" and self.n_mfcc > self.n_mels:
            raise ValueError(f"FeatureConfig.n_mfcc must be <= n_mels, got {self.n_mfcc} > {self.n_mels}")

    @property
    def num_samples(self) -> int:
        """Samples per clip after :func:`resnetkit.data.audio_io.fix_length`."""
        return int(round(self.duration_s * self.sample_rate))

    @property
    def num_frames(self) -> int:
        """Frames per clip (centred STFT frames)."""
        return 1 + self.num_samples // self.hop_length

    @property
    def num_bins(self) -> int:
        """Height of the feature image: ``n_mfcc`` or ``n_mels``."""
        return self.n_mfcc if self.kind == "mfcc" else self.n_mels

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "FeatureConfig":
        """The one parser of feature settings: a recipe's ``audio:``, flags, a checkpoint, an exported file.

        Settings left out take the defaults, with two that follow the ones given: a sample rate
        below 8 kHz without ``fmax`` gets ``fmax`` at its Nyquist frequency instead of 4 kHz
        (which only 8 kHz and faster data allow), and ``n_mels`` below the default ``n_mfcc``
        without ``n_mfcc`` keeps one coefficient per band. A complete record (what checkpoints
        hold) is read as it is.
        """
        if not isinstance(values, dict):
            raise TypeError(f"audio feature settings must be a mapping, got {type(values).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            augment = sorted(set(unknown) & {f.name for f in dataclasses.fields(AudioAugmentConfig)})
            hint = (f"; {', '.join(augment)} {'is an augmentation setting' if len(augment) == 1 else 'are augmentation settings'}: "
                    "put them under augment_args") if augment else ""
            raise ValueError(f"unknown setting(s) {unknown}; feature settings: {', '.join(known)}{hint}")
        values = dict(values)
        rate = values.get("sample_rate")
        if "fmax" not in values and isinstance(rate, int) and not isinstance(rate, bool) and rate > 0:
            values["fmax"] = min(cls.fmax, rate / 2)
        mels = values.get("n_mels")
        if "n_mfcc" not in values and isinstance(mels, int) and not isinstance(mels, bool) and 0 < mels < cls.n_mfcc:
            values["n_mfcc"] = mels
        return cls(**values)

    def build_features(self) -> nn.Module:
        """The feature extractor alone (no normalization): fit a DatasetNormalizer on its output."""
        self.validate()  # the dataclass is mutable; catch fields changed after construction
        common = dict(
            n_fft=self.n_fft, hop_length=self.hop_length, win_length=self.win_length, n_mels=self.n_mels,
            fmin=self.fmin, fmax=self.fmax, top_db=self.top_db, compression=self.compression,
            preemphasis=self.preemphasis,
        )
        if self.kind == "mfcc":
            return MFCC(self.sample_rate, n_mfcc=self.n_mfcc, **common)
        return LogMelSpectrogram(self.sample_rate, **common)

    def build(self, normalizer: Optional[DatasetNormalizer] = None) -> FrontEnd:
        """Feature extractor followed by the configured normalization.

        ``normalize="dataset"`` needs ``normalizer``, fitted on :meth:`build_features` outputs of
        the training set; the other modes take none.
        """
        features = self.build_features()
        if self.normalize == "none":
            norm: Optional[nn.Module] = None
        elif self.normalize in ("utterance", "cmvn"):
            norm = UtteranceNorm(per_band=self.normalize == "cmvn")
        else:
            if not isinstance(normalizer, DatasetNormalizer) or not normalizer.fitted:
                raise ValueError(
                    "FeatureConfig.normalize='dataset' needs a fitted DatasetNormalizer: fit one on "
                    "build_features() outputs of the training set and pass it to build()"
                )
            if normalizer.per_bin and normalizer.mean.numel() != self.num_bins:
                raise ValueError(
                    f"normalizer was fitted on {normalizer.mean.numel()} bins, FeatureConfig gives {self.num_bins}"
                )
            norm = normalizer
        if normalizer is not None and self.normalize != "dataset":
            raise ValueError(f"a normalizer was given but FeatureConfig.normalize={self.normalize!r}, not 'dataset'")
        return FrontEnd(features) if norm is None else FrontEnd(features, norm)
