"""Speaker and channel normalization (CMVN, PCEN) and voice augmentation (VTLP, speed, tempo, EQ, mel shifts, mixup)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from resnetkit.data import AudioInputSpec
from resnetkit.data.audio_augment import (
    AudioAugmentConfig,
    audio_augment_from,
    random_equalization,
    random_mel_shift,
    speed_perturb,
    tempo_perturb,
)
from resnetkit.data.audio_batches import AudioBatches
from resnetkit.data.audio_data import AudioDataError, load_noise_bank
from resnetkit.data.audio_features import (
    FeatureConfig,
    LogMelSpectrogram,
    mel_filterbank,
    normalize_bands,
    pcen,
    warp_frequencies,
    warped_mel_filterbank,
)
from resnetkit.data.interface import BatchOptions

RATE = 8000
FSDD_FEATURES = {"kind": "logmel", "sample_rate": RATE, "n_fft": 256, "win_length": 240, "hop_length": 160}


def _tone(hz: float, n: int = 1, seconds: float = 1.0) -> torch.Tensor:
    t = torch.arange(int(RATE * seconds)) / RATE
    return (0.5 * torch.sin(2 * math.pi * hz * t)).repeat(n, 1)


def _speech_like(n: int = 4, seed: int = 0) -> torch.Tensor:
    """Noise bursts with a changing envelope: every band varies over time, as in speech."""
    g = torch.Generator().manual_seed(seed)
    envelope = torch.sin(torch.linspace(0, 6 * math.pi, RATE)).abs()
    return 0.1 * torch.randn(n, RATE, generator=g) * envelope


# ----------------------------------------------------------------------------------------
# VTLP
# ----------------------------------------------------------------------------------------


def test_vtlp_factor_one_is_the_plain_filterbank_and_front_end():
    plain = mel_filterbank(RATE, 256, 40, 20.0, 4000.0)
    warped = warped_mel_filterbank(RATE, 256, 40, 20.0, 4000.0, torch.ones(3))
    assert warped.shape == (3, 40, 129)
    torch.testing.assert_close(warped, plain.expand(3, -1, -1), atol=1e-7, rtol=1e-5)
    front = FeatureConfig.from_dict({**FSDD_FEATURES, "normalize": "cmvn"}).build()
    waves = _speech_like()
    torch.testing.assert_close(front(waves, torch.ones(4)), front(waves), atol=1e-3, rtol=1e-4)


def test_vtlp_moves_a_tone_to_higher_bands_above_one_and_lower_below():
    logmel = FeatureConfig.from_dict(FSDD_FEATURES).build_features()
    out = logmel(_tone(1000.0, 3), torch.tensor([1.0, 1.15, 0.85]))[:, 0, :, 25]
    peak = out.argmax(dim=-1).tolist()
    assert peak[1] > peak[0] > peak[2]
    with pytest.raises(ValueError, match="one factor per example"):
        logmel(_tone(1000.0, 3), torch.ones(2))


def test_warp_keeps_the_band_edges_and_stays_monotone():
    freqs = torch.linspace(0.0, 4000.0, 200)
    warped = warp_frequencies(freqs, torch.tensor([0.85, 1.0, 1.15]), 4000.0)
    assert warped.shape == (3, 200)
    torch.testing.assert_close(warped[:, -1], torch.full((3,), 4000.0))
    torch.testing.assert_close(warped[1], freqs)
    assert bool((warped.diff(dim=-1) > 0).all())
    # Below the knee a filter at f reads f / factor.
    assert warped[2, 50].item() == pytest.approx(freqs[50].item() / 1.15, rel=1e-5)


# ----------------------------------------------------------------------------------------
# CMVN and PCEN
# ----------------------------------------------------------------------------------------


def test_cmvn_gives_each_band_zero_mean_unit_variance_and_ignores_gain():
    front = FeatureConfig.from_dict({**FSDD_FEATURES, "normalize": "cmvn"}).build()
    waves = _speech_like()
    out = front(waves)
    torch.testing.assert_close(out.mean(dim=-1), torch.zeros(4, 1, 40), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.std(dim=-1, unbiased=False), torch.ones(4, 1, 40), atol=1e-3, rtol=0)
    # A gain is a constant in dB: it moves every band's mean, and CMVN takes it out again.
    louder = front(waves * 10 ** (12 / 20))
    torch.testing.assert_close(louder, out, atol=1e-3, rtol=0)
    raw = FeatureConfig.from_dict({**FSDD_FEATURES, "normalize": "none"}).build()
    assert (raw(waves * 10 ** (12 / 20)) - raw(waves)).mean().item() == pytest.approx(12.0, abs=0.05)


def test_cmvn_removes_a_static_channel_but_utterance_norm_does_not():
    # A fixed per-band offset (a microphone's response) in dB: per-band CMVN removes it exactly.
    feats = torch.randn(2, 1, 40, 51)
    tilt = torch.linspace(-10, 10, 40)[None, None, :, None]
    torch.testing.assert_close(normalize_bands(feats + tilt), normalize_bands(feats), atol=1e-4, rtol=0)
    utterance = FeatureConfig.from_dict({**FSDD_FEATURES, "normalize": "utterance"}).build()[1]
    assert (utterance(feats + tilt) - utterance(feats)).abs().max() > 0.5


def test_preemphasis_matches_librosa_and_lifts_high_bands():
    import librosa

    plain = FeatureConfig.from_dict({**FSDD_FEATURES, "normalize": "none"}).build()
    emphasized = FeatureConfig.from_dict({**FSDD_FEATURES, "normalize": "none", "preemphasis": 0.97}).build()
    waves = _speech_like(2)
    filtered = torch.from_numpy(np.stack([librosa.effects.preemphasis(w, coef=0.97, zi=0.0) for w in waves.numpy()]))
    torch.testing.assert_close(emphasized(waves), plain(filtered.float()), atol=1e-3, rtol=0)
    # |1 - 0.97 e^{-jw}|: about -30 dB near 0 Hz and +6 dB at 4 kHz, so the top band gains on the bottom one.
    gain = (emphasized(waves) - plain(waves)).mean(dim=(0, 1, 3))
    assert gain[-1] - gain[1] > 20.0
    with pytest.raises(ValueError, match="preemphasis must be in"):
        FeatureConfig.from_dict({**FSDD_FEATURES, "preemphasis": 1.0})
    assert FeatureConfig.from_dict(FSDD_FEATURES).preemphasis == 0.0  # off unless asked, as older runs were trained


def _librosa_pcen(energy: np.ndarray, rate: int, hop: int) -> np.ndarray:
    """librosa.pcen's defaults written out with scipy (librosa 0.11, pcen with zi from lfilter_zi)."""
    from scipy import signal

    t = 0.4 * rate / hop
    b = (math.sqrt(1 + 4 * t**2) - 1) / (2 * t**2)
    zi = signal.lfilter_zi([b], [1, b - 1])[None, :] * energy[:, :1]
    smooth, _ = signal.lfilter([b], [1, b - 1], energy, zi=zi, axis=-1)
    smooth = np.exp(-0.98 * (np.log(1e-6) + np.log1p(smooth / 1e-6)))
    return 2.0**0.5 * np.expm1(0.5 * np.log1p(energy * smooth / 2.0))


def test_pcen_matches_librosas_formula():
    logmel = LogMelSpectrogram(RATE, n_fft=256, win_length=240, hop_length=160, n_mels=40, fmin=20.0, fmax=4000.0)
    waves = _speech_like(2)
    with torch.no_grad():
        energy = torch.matmul(logmel.mel_fb, logmel.power_spectrogram(waves))
        ours = pcen(energy, RATE, 160).double().numpy()
    expected = np.stack([_librosa_pcen(e, RATE, 160) for e in (energy.double().numpy() * 2.0**31)])
    np.testing.assert_allclose(ours, expected, rtol=2e-3, atol=1e-3)
    front = FeatureConfig.from_dict({**FSDD_FEATURES, "compression": "pcen", "normalize": "none"}).build()
    np.testing.assert_allclose(front(waves)[:, 0].double().numpy(), expected, rtol=2e-3, atol=1e-3)


def test_a_record_without_the_new_settings_reads_as_before():
    old = {**FSDD_FEATURES, "duration_s": 1.0, "n_mels": 40, "n_mfcc": 40, "fmin": 20.0, "fmax": 4000.0,
           "top_db": 80.0, "normalize": "utterance"}
    spec = AudioInputSpec.from_dict({"kind": "audio", "features": old, "normalizer": None})
    assert spec.features.compression == "db" and spec.features.normalize == "utterance"
    waves = _speech_like()
    expected = LogMelSpectrogram(RATE, n_fft=256, win_length=240, hop_length=160, n_mels=40, fmin=20.0,
                                 fmax=4000.0)(waves)
    mean = expected.mean(dim=(1, 2, 3), keepdim=True)
    std = expected.var(dim=(1, 2, 3), keepdim=True, unbiased=False).add(1e-5).sqrt()
    torch.testing.assert_close(spec.build_frontend()(waves), (expected - mean) / std)
    with pytest.raises(ValueError, match="compression"):
        FeatureConfig.from_dict({"compression": "log10"})


# ----------------------------------------------------------------------------------------
# Wave and feature augmentations
# ----------------------------------------------------------------------------------------


def _zero_crossings(wave: torch.Tensor) -> int:
    return int(((wave[:-1] >= 0) != (wave[1:] >= 0)).sum())


def test_speed_perturbation_scales_frequency_about_the_centre():
    wave = _tone(200.0)
    torch.testing.assert_close(speed_perturb(wave, 1.0), wave)
    faster = speed_perturb(wave, 1.25)[0]
    middle = slice(2000, 6000)
    assert _zero_crossings(faster[middle]) == pytest.approx(1.25 * _zero_crossings(wave[0, middle]), rel=0.02)
    slower = speed_perturb(_speech_like(1), 0.5)
    # Slowed down about the centre: the centre sample stays where it was.
    assert slower[0, 3999:4001].tolist() == pytest.approx(_speech_like(1)[0, 3999:4001].tolist(), abs=1e-3)
    assert speed_perturb(_speech_like(1), 2.0)[0, :1900].abs().max() == 0  # sped up: zeros outside
    for bad in ((-1.0, 1.0), 0.0):
        with pytest.raises(ValueError, match="> 0"):
            speed_perturb(wave, bad)


def test_tempo_stretches_time_and_keeps_the_bands():
    # A word from frame 20 to 30 of 51 with one spectral shape (a vowel), the rest at the clip's floor (-1).
    profile = torch.linspace(0.5, 2.0, 8)
    feats = torch.full((2, 1, 8, 51), -1.0)
    feats[:, 0, :, 20:31] = profile[:, None]
    torch.testing.assert_close(tempo_perturb(feats, 1.0), feats)
    faster, slower = tempo_perturb(feats[:1], 2.0)[0, 0], tempo_perturb(feats[:1], 0.5)[0, 0]

    def active(x):  # the frames where the word is
        return (x > 0).all(dim=0).nonzero().flatten()

    assert len(active(faster)) < 8 < 11 < len(active(slower))  # a quicker and a slower talker
    centre = 25
    assert abs(active(faster).float().mean() - centre) <= 1 and abs(active(slower).float().mean() - centre) <= 1
    # Pitch and formants stay put (speed perturbation would move them): the word's frames keep its spectral shape.
    torch.testing.assert_close(slower[:, active(slower)], profile[:, None].expand(-1, len(active(slower))))
    # Far outside the word, and where a faster clip runs out, the clip's own floor fills in, not 0.
    assert faster[:, :5].eq(-1.0).all() and tempo_perturb(feats[:1], 3.0)[0, 0, :, 0].eq(-1.0).all()
    # One factor per example from the range, reproducible by its generator.
    batch = feats.repeat(16, 1, 1, 1)
    out = tempo_perturb(batch, (0.8, 1.25), torch.Generator().manual_seed(0))
    again = tempo_perturb(batch, (0.8, 1.25), torch.Generator().manual_seed(0))
    assert torch.equal(out, again) and len({int((x > 0).sum()) for x in out}) > 3
    for bad in ((0.0, 1.2), -1.0):
        with pytest.raises(ValueError, match="tempo factors must be > 0"):
            tempo_perturb(feats, bad)


def test_equalization_bounds_and_smoothness():
    waves = _speech_like(3)
    torch.testing.assert_close(random_equalization(waves, 0.0), waves, atol=1e-6, rtol=0)
    g = torch.Generator().manual_seed(0)
    out = random_equalization(waves, 6.0, g)
    assert out.shape == waves.shape
    ratio_db = 20 * torch.log10(torch.fft.rfft(out).abs() / torch.fft.rfft(waves).abs())
    assert ratio_db.abs().max() <= 6.0 + 1e-3 and ratio_db.abs().max() > 0.5
    assert ratio_db.diff(dim=-1).abs().max() < 0.01  # a broad curve, no narrow notches
    assert (ratio_db[0] - ratio_db[1]).abs().max() > 0.1  # each clip its own curve


def test_mel_shift_moves_features_along_the_frequency_axis():
    feats = torch.arange(10.0).reshape(1, 1, 10, 1).repeat(64, 1, 1, 3)
    assert torch.equal(random_mel_shift(feats, 0), feats)
    out = random_mel_shift(feats, 2, torch.Generator().manual_seed(0))
    shifts = set()
    for row in out[:, 0, :, 0]:
        kept = row[row != 0]
        shift = int(row.nonzero()[0]) - int(kept[0]) if len(kept) else 0
        shifts.add(shift)
        assert torch.equal(kept, torch.arange(kept[0], kept[0] + len(kept)))  # order kept, no wrap-around
    assert shifts <= {-2, -1, 0, 1, 2} and len(shifts) >= 3


def test_voice_settings_parse_check_and_round_trip():
    strong = audio_augment_from("speech-strong")
    assert strong.vtlp == (0.85, 1.15) and strong.speed == (0.9, 1.1) and strong.mel_shift == 2 and strong.eq_db == 6
    assert AudioAugmentConfig.from_dict(strong.to_dict()) == strong
    assert audio_augment_from("speech", {"vtlp": [0.9, 1.1]}).vtlp == (0.9, 1.1)
    with pytest.raises(ValueError, match="vtlp factors must be > 0"):
        AudioAugmentConfig(vtlp=(0.0, 1.1))
    with pytest.raises(ValueError, match="mel_shift"):
        AudioAugmentConfig(mel_shift=-1)
    assert AudioAugmentConfig.from_dict({"tempo": [0.8, 1.25]}).to_dict()["tempo"] == [0.8, 1.25]
    with pytest.raises(ValueError, match="tempo factors must be > 0"):
        AudioAugmentConfig(tempo=(0.0, 1.25))
    with pytest.raises(ValueError, match="put them under augment_args"):
        FeatureConfig.from_dict({"vtlp": [0.9, 1.1]})


def test_cli_flags_reach_the_front_end_and_augment_args():
    import argparse

    from resnetkit.cli.train_cmd import add_arguments, config_overrides

    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["--normalize", "cmvn", "--compression", "pcen", "--vtlp", "0.9,1.1", "--speed", "0.95,1.05",
                         "--mel-shift", "1", "--gain-db", "3", "--eq-db", "4", "--mixup", "0.2",
                         "--noise-dir", "noise", "--freq-masks", "3", "--tempo", "0.8,1.25", "--top-db", "50",
                         "--preemphasis", "0.97"])
    values = config_overrides(args)
    assert values["audio"] == {"normalize": "cmvn", "compression": "pcen", "top_db": 50.0, "preemphasis": 0.97}
    assert values["augment_args"] == {"vtlp": [0.9, 1.1], "speed": [0.95, 1.05], "tempo": [0.8, 1.25], "mel_shift": 1,
                                      "gain_db": 3.0,
                                      "eq_db": 4.0, "mixup": 0.2, "noise_dir": "noise", "freq_masks": 3}
    cfg = AudioAugmentConfig.from_dict(values["augment_args"])
    assert cfg.gain_db == (-3.0, 3.0) and cfg.speed == (0.95, 1.05)


# ----------------------------------------------------------------------------------------
# The batch source: every augmentation together, and mixup's targets
# ----------------------------------------------------------------------------------------


def _batches(augment, n=32, seed=0, classes=4):
    spec = AudioInputSpec(FeatureConfig.from_dict({**FSDD_FEATURES, "normalize": "cmvn"}))
    waves = _speech_like(n, seed=seed)
    labels = torch.arange(n) % classes
    options = BatchOptions(train=augment is not None, batch_size=16, augment=augment, seed=seed)
    return AudioBatches(waves, labels, [str(c) for c in range(classes)], spec, options)


def test_batches_with_every_voice_augmentation_are_seeded_and_differ_from_plain():
    strong = audio_augment_from("speech-strong")
    first = [x for x, _ in _batches(strong).epoch(0)]
    again = [x for x, _ in _batches(strong).epoch(0)]
    assert first[0].shape == (16, 1, 40, 51) and torch.isfinite(first[0]).all()
    torch.testing.assert_close(first[0], again[0])
    # VTLP alone changes the features of the same clips in the same order.
    plain = [x for x, _ in _batches(AudioAugmentConfig()).epoch(0)]
    vtlp = [x for x, _ in _batches(AudioAugmentConfig(vtlp=(0.85, 1.15))).epoch(0)]
    assert (vtlp[0] - plain[0]).abs().mean() > 0.05
    tempo = [x for x, _ in _batches(AudioAugmentConfig(tempo=(0.8, 1.25))).epoch(0)]
    assert (tempo[0] - plain[0]).abs().mean() > 0.05 and torch.isfinite(tempo[0]).all()


def test_audio_mixup_targets_are_convex_mixes_of_two_labels():
    batches = _batches(AudioAugmentConfig(mixup=0.4))
    torch.manual_seed(0)
    for x, y in batches.epoch(0):
        assert y.shape == (16, 4) and y.dtype.is_floating_point
        torch.testing.assert_close(y.sum(dim=1), torch.ones(16))
        assert int((y > 0).sum(dim=1).max()) <= 2
        assert bool(((y > 0) & (y < 1)).any())  # mixed, not one-hot


def test_a_noise_folder_with_no_snr_to_add_it_at_is_refused():
    with pytest.raises(ValueError, match=r"noise_dir 'my_noise' is given but no noise_snr_db .*'none' preset.*--noise-snr-db"):
        audio_augment_from("none", {"noise_dir": "my_noise"})
    assert audio_augment_from("none", {"noise_dir": "my_noise", "noise_snr_db": [10, 40]}).noise_dir == "my_noise"
    assert audio_augment_from("speech", {"noise_dir": "my_noise"}).noise_snr_db == (10.0, 40.0)


def test_a_noise_folder_without_audio_is_named(tmp_path):
    empty = tmp_path / "my_noise"
    empty.mkdir()
    (empty / "readme.txt").write_text("no audio here")
    with pytest.raises(AudioDataError, match=r"noise_dir .*my_noise: no readable noise recordings"):
        load_noise_bank(empty, RATE)
    with pytest.raises(AudioDataError, match=r"my_nothing: no such folder"):
        load_noise_bank(tmp_path / "my_nothing", RATE)
