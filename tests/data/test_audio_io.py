"""Reading audio files: formats, bit depths, channels, resampling and broken files.

Broken and unusual files are written into ``tmp_path`` by soundfile; one test reads real
FSDD recordings (skipped without the data, see ``tests/conftest.py``).
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

sf = pytest.importorskip("soundfile")

from resnetkit.data.audio_io import (  # noqa: E402  (after importorskip on purpose)
    AudioFormatError,
    fix_length,
    fix_length_batch,
    is_silent,
    load_audio,
)


def _sine(freq: float, sample_rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float64)


def _peak_hz(wave: torch.Tensor, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave.double().numpy() * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / sample_rate)[spectrum.argmax()])


# ---------------------------------------------------------------------------- real data


def test_reads_fsdd_recordings(data_path):
    recordings = data_path("fsdd/recordings")
    for name in ("0_george_0.wav", "7_jackson_3.wav", "9_yweweler_12.wav"):
        path = recordings / name
        wave = load_audio(path, 8000)
        info = sf.info(str(path))
        assert wave.dtype == torch.float32 and wave.dim() == 1
        assert wave.shape[0] == info.frames
        assert 0 < wave.abs().max() <= 1.0
        assert not is_silent(wave)
        # The file's own samples, scaled to [-1, 1): 16-bit PCM divided by 32768.
        raw, _ = sf.read(str(path), dtype="int16")
        np.testing.assert_array_equal(wave.numpy(), raw.astype(np.float32) / 32768)


# ---------------------------------------------------------------------------- channels, bit depth, formats


def test_stereo_is_averaged_to_mono(tmp_path):
    left = _sine(440, 8000, 0.25)
    right = 0.5 * _sine(660, 8000, 0.25)
    path = tmp_path / "stereo.wav"
    sf.write(str(path), np.stack([left, right], axis=1), 8000, subtype="FLOAT")
    wave = load_audio(path, 8000)
    assert wave.shape == (len(left),)
    np.testing.assert_allclose(wave.numpy(), (left + right) / 2, atol=1e-7)


def test_any_channel_count_is_averaged(tmp_path):
    channels = np.stack([np.full(800, v) for v in (0.1, 0.2, 0.3, -0.4, 0.5)], axis=1)
    path = tmp_path / "five.wav"
    sf.write(str(path), channels, 8000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path, 8000).numpy(), np.full(800, 0.14), atol=1e-7)


@pytest.mark.parametrize(
    "fmt, subtype, ext, tol",
    [
        # 16-bit keeps the reference's exact 16-bit values; the others must reproduce them to
        # within their own quantization (half an LSB for 24 bits, float32 rounding for floats).
        ("WAV", "PCM_16", "wav", 0.0),
        ("WAV", "PCM_24", "wav", 2.0**-24),
        ("WAV", "PCM_32", "wav", 2.0**-31),
        ("WAV", "FLOAT", "wav", 1e-7),
        ("WAV", "DOUBLE", "wav", 1e-7),
        ("FLAC", "PCM_24", "flac", 2.0**-24),
    ],
)
def test_bit_depths_match_16bit_original(tmp_path, fmt, subtype, ext, tol):
    rng = np.random.default_rng(0)
    # A 16-bit original: every value is exactly representable at 24/32 bits and in float.
    original = (rng.integers(-20000, 20000, 4000) / 32768).astype(np.float64)
    ref_path = tmp_path / "ref16.wav"
    sf.write(str(ref_path), original, 8000, subtype="PCM_16")
    reference = load_audio(ref_path, 8000).numpy()
    np.testing.assert_array_equal(reference, original.astype(np.float32))

    path = tmp_path / f"copy.{ext}"
    sf.write(str(path), reference, 8000, format=fmt, subtype=subtype)
    wave = load_audio(path, 8000)
    assert wave.dtype == torch.float32 and wave.shape == (len(original),)
    assert np.abs(wave.numpy() - reference).max() <= tol


def test_ogg_vorbis_is_read(tmp_path):
    original = _sine(500, 16000, 0.5, amplitude=0.3)
    path = tmp_path / "tone.ogg"
    sf.write(str(path), original, 16000, format="OGG", subtype="VORBIS")
    wave = load_audio(path, 16000)
    # Vorbis is lossy: check length and that the tone survives, not the exact samples.
    assert abs(wave.shape[0] - len(original)) <= 16
    assert abs(_peak_hz(wave, 16000) - 500) <= 16000 / len(wave) * 1.5


def test_float_wav_keeps_values_beyond_full_scale(tmp_path):
    # Float files are not clipped or rescaled: a gain stage may have pushed them past 1.0.
    original = np.array([0.0, 1.5, -2.0, 0.25], dtype=np.float32)
    path = tmp_path / "hot.wav"
    sf.write(str(path), original, 8000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path, 8000).numpy(), original)


# ---------------------------------------------------------------------------- resampling


@pytest.mark.parametrize("file_rate, seconds", [(44100, 1.0), (44100, 0.37), (8000, 1.0), (8000, 0.6125)])
def test_resampled_to_16k_with_expected_length_and_pitch(tmp_path, file_rate, seconds):
    freq = 1000.0
    original = _sine(freq, file_rate, seconds)
    path = tmp_path / f"sine_{file_rate}.wav"
    sf.write(str(path), original, file_rate, subtype="PCM_16")
    wave = load_audio(path, 16000)
    assert wave.dtype == torch.float32
    # resample_poly returns ceil(n * up / down) samples.
    assert wave.shape[0] == math.ceil(len(original) * 16000 / file_rate)
    # The tone stays at its frequency (within one FFT bin) and keeps its level.
    assert abs(_peak_hz(wave, 16000) - freq) <= 16000 / wave.shape[0]
    middle = wave[len(wave) // 4 : -len(wave) // 4]
    assert abs(float(middle.pow(2).mean().sqrt()) - 0.5 / math.sqrt(2)) < 0.01


def test_same_rate_is_not_resampled(tmp_path):
    original = _sine(300, 16000, 0.1)
    path = tmp_path / "same.wav"
    sf.write(str(path), original, 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path, 16000).numpy(), original, atol=1e-7)


# ---------------------------------------------------------------------------- bad files


def test_zero_byte_file_raises_naming_path(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioFormatError, match="empty") as info:
        load_audio(path, 16000)
    assert str(path) in str(info.value)


def test_header_without_samples_raises_naming_path(tmp_path):
    path = tmp_path / "no_frames.wav"
    sf.write(str(path), np.zeros(0, dtype=np.float32), 8000)
    assert path.stat().st_size > 0  # a real WAV header, just no data
    with pytest.raises(AudioFormatError, match="no samples") as info:
        load_audio(path, 16000)
    assert str(path) in str(info.value)


def test_silent_file_is_read_and_reported_silent(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(str(path), np.zeros(8000), 8000, subtype="PCM_16")
    wave = load_audio(path, 16000)
    assert wave.shape == (16000,)
    assert is_silent(wave)
    assert not is_silent(wave + 1e-3)
    assert is_silent(wave + 1e-5, threshold=1e-4)


def test_corrupt_header_raises_naming_path(tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(np.random.default_rng(0).bytes(2048))
    with pytest.raises(AudioFormatError) as info:
        load_audio(path, 16000)
    assert str(path) in str(info.value)


def test_truncated_header_raises_naming_path(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(str(good), _sine(440, 8000, 0.1), 8000, subtype="PCM_16")
    path = tmp_path / "truncated.wav"
    path.write_bytes(good.read_bytes()[:30])  # RIFF header cut before the data chunk
    with pytest.raises(AudioFormatError) as info:
        load_audio(path, 16000)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", ["notes.mp3", "notes.txt", "notes.flac"])
def test_unsupported_format_raises(tmp_path, name):
    path = tmp_path / name
    path.write_text("this is not audio\n" * 50)
    with pytest.raises(AudioFormatError) as info:
        load_audio(path, 16000)
    assert str(path) in str(info.value)


def test_non_finite_samples_raise(tmp_path):
    path = tmp_path / "nan.wav"
    sf.write(str(path), np.array([0.0, np.nan, 0.1], dtype=np.float32), 8000, subtype="FLOAT")
    with pytest.raises(AudioFormatError, match="NaN"):
        load_audio(path, 8000)


def test_audio_format_error_is_a_value_error():
    assert issubclass(AudioFormatError, ValueError)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.wav"):
        load_audio(tmp_path / "nowhere.wav", 16000)


def test_directory_raises(tmp_path):
    with pytest.raises(AudioFormatError, match="directory"):
        load_audio(tmp_path, 16000)


@pytest.mark.parametrize("rate, error", [(0, ValueError), (-8000, ValueError), (16000.0, TypeError), (True, TypeError)])
def test_bad_sample_rate(tmp_path, rate, error):
    path = tmp_path / "x.wav"
    sf.write(str(path), np.zeros(10), 8000)
    with pytest.raises(error, match="sample_rate"):
        load_audio(path, rate)


def test_missing_soundfile_names_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "x.wav"
    sf.write(str(path), np.zeros(10), 8000)
    monkeypatch.setitem(sys.modules, "soundfile", None)  # makes `import soundfile` raise ImportError
    with pytest.raises(ImportError, match=r"pip install resnetkit\[audio\]"):
        load_audio(path, 8000)


# ---------------------------------------------------------------------------- length fixing


def test_fix_length_center():
    wave = torch.arange(1, 11, dtype=torch.float32)
    assert torch.equal(fix_length(wave, 4, "center"), torch.tensor([4.0, 5.0, 6.0, 7.0]))
    padded = fix_length(wave, 14, "center")
    assert torch.equal(padded, torch.cat([torch.zeros(2), wave, torch.zeros(2)]))
    assert fix_length(wave, 10, "center") is wave


def test_fix_length_random_is_seeded_and_in_bounds():
    wave = torch.arange(1, 101, dtype=torch.float32)
    crops = [fix_length(wave, 30, "random", torch.Generator().manual_seed(s)) for s in range(20)]
    for crop in crops:
        assert crop.shape == (30,)
        # A contiguous slice of the original.
        assert torch.equal(crop, torch.arange(crop[0].item(), crop[0].item() + 30))
    assert len({c[0].item() for c in crops}) > 1  # the offset really varies
    again = fix_length(wave, 30, "random", torch.Generator().manual_seed(3))
    assert torch.equal(again, crops[3])

    padded = fix_length(wave, 150, "random", torch.Generator().manual_seed(0))
    start = int(torch.nonzero(padded)[0])
    assert padded.shape == (150,) and 0 <= start <= 50
    assert torch.equal(padded[start : start + 100], wave) and padded.abs().sum() == wave.sum()


def test_fix_length_batch_stacks():
    waves = [torch.ones(5), torch.ones(12), torch.ones(8)]
    batch = fix_length_batch(waves, 8, "random", torch.Generator().manual_seed(0))
    assert batch.shape == (3, 8)
    assert batch.sum(dim=1).tolist() == [5.0, 8.0, 8.0]


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: fix_length(torch.zeros(5), 4, "middle"), ValueError),
        (lambda: fix_length(torch.zeros(2, 5), 4), ValueError),
        (lambda: fix_length(np.zeros(5), 4), TypeError),
        (lambda: fix_length(torch.zeros(5), 0), ValueError),
        (lambda: fix_length_batch([], 4), ValueError),
        (lambda: fix_length_batch(torch.zeros(2, 5), 4), TypeError),
    ],
)
def test_fix_length_bad_input(call, error):
    with pytest.raises(error):
        call()

