"""Audio features against librosa, normalization and configuration.

The librosa comparisons use real FSDD recordings (skipped without the data, see
``tests/conftest.py``), zero-padded to 1 s as in training so that the digital silence of the
padding exercises ``amin`` and ``top_db``. The reference is librosa in float64; ours is
float32. Measured on the five files below (librosa 0.11, torch 2.14 CPU), max abs difference:

=====================  =======================  =========================  ==========
features               8 kHz (n_fft 240/hop 80)  16 kHz resampled (480/160)  tolerance
=====================  =======================  =========================  ==========
log-mel, top_db=80     1.5e-4 dB                6.7e-4 dB                  2e-3 dB
log-mel, no top_db     1.5e-4 dB                5.9e-3 dB (all bins)       2e-2 dB
  bins within 80 dB    1.5e-4 dB                6.7e-4 dB                  2e-3 dB
MFCC, top_db=80        2.6e-4                   2.6e-4                     1e-3
MFCC, no top_db        2.8e-4                   2.2e-3                     5e-3
=====================  =======================  =========================  ==========

Without ``top_db`` the largest differences sit in bins more than 100 dB below the utterance
peak (the empty 4-8 kHz band of 8 kHz speech resampled to 16 kHz), where float32 STFT
rounding is no longer small relative to the bin's power.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from resnetkit.data.audio_features import (
    MFCC,
    DatasetNormalizer,
    FeatureConfig,
    LogMelSpectrogram,
    dct_matrix,
    mel_filterbank,
    normalize_utterance,
)

librosa = pytest.importorskip("librosa")

FSDD_FILES = ("0_george_0.wav", "3_jackson_17.wav", "5_lucas_33.wav", "7_nicolas_8.wav", "9_yweweler_45.wav")
# (sample_rate, n_fft, hop_length): 30 ms windows and 10 ms hops at each rate.
RATES = [(8000, 240, 80), (16000, 480, 160)]

TOL_DB = 2e-3  # log-mel, every bin with top_db=80, or bins within 80 dB of the peak
TOL_DB_ALL_BINS = 2e-2  # log-mel without top_db, every bin down to amin
TOL_MFCC = 1e-3  # MFCC with librosa's top_db=80
TOL_MFCC_NO_TOP_DB = 5e-3


@pytest.fixture(scope="module")
def fsdd_batches(data_path) -> dict[int, torch.Tensor]:
    """The five recordings at 8 kHz and resampled to 16 kHz, zero-padded to 1 s: {rate: (5, rate)}."""
    from resnetkit.data.audio_io import fix_length_batch, load_audio

    root = data_path("fsdd/recordings")
    return {
        rate: fix_length_batch([load_audio(root / name, rate) for name in FSDD_FILES], rate, "center")
        for rate, _, _ in RATES
    }


def _librosa_mel(waves: torch.Tensor, rate: int, n_fft: int, hop: int, **mel) -> np.ndarray:
    return librosa.feature.melspectrogram(
        y=waves.double().numpy(), sr=rate, n_fft=n_fft, hop_length=hop, dtype=np.float64, **mel
    )


# ---------------------------------------------------------------------------- filterbank and DCT


@pytest.mark.parametrize(
    "rate, n_fft, n_mels, fmin, fmax",
    [(8000, 240, 40, 0.0, None), (16000, 480, 40, 20.0, 4000.0), (16000, 512, 64, 0.0, None), (22050, 2048, 128, 0.0, None)],
)
def test_mel_filterbank_matches_librosa(rate, n_fft, n_mels, fmin, fmax):
    ours = mel_filterbank(rate, n_fft, n_mels, fmin, fmax, dtype=torch.float64).numpy()
    ref = librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, dtype=np.float64)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


def test_mel_filterbank_htk_matches_librosa():
    ours = mel_filterbank(16000, 512, 40, htk=True, dtype=torch.float64).numpy()
    ref = librosa.filters.mel(sr=16000, n_fft=512, n_mels=40, htk=True, dtype=np.float64)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


def test_mel_filterbank_bad_input_names_field():
    with pytest.raises(ValueError, match="fmax"):
        mel_filterbank(8000, 256, 40, fmax=5000)
    with pytest.raises(TypeError, match="n_mels"):
        mel_filterbank(8000, 256, 40.0)


def test_dct_matrix_matches_scipy():
    from scipy.fft import dct

    x = np.random.default_rng(0).normal(size=(40, 7))
    ours = dct_matrix(13, 40, dtype=torch.float64).numpy() @ x
    np.testing.assert_allclose(ours, dct(x, type=2, norm="ortho", axis=0)[:13], atol=1e-12)


# ---------------------------------------------------------------------------- librosa agreement on FSDD


@pytest.mark.parametrize("rate, n_fft, hop", RATES)
@pytest.mark.parametrize("ref", ["max", 1.0])
def test_logmel_matches_librosa_with_top_db(fsdd_batches, rate, n_fft, hop, ref):
    waves = fsdd_batches[rate]
    module = LogMelSpectrogram(rate, n_fft=n_fft, hop_length=hop, n_mels=40, top_db=80.0, ref=ref)
    ours = module(waves)
    assert ours.shape == (len(FSDD_FILES), 1, 40, 1 + rate // hop) and ours.dtype == torch.float32

    mel = _librosa_mel(waves, rate, n_fft, hop, n_mels=40)
    # power_to_db per file: ref and top_db are per utterance, as in our batched module.
    ref_db = np.stack([librosa.power_to_db(m, ref=np.max if ref == "max" else 1.0, top_db=80.0) for m in mel])
    floor = ref_db.max(axis=(1, 2), keepdims=True) - 80.0
    assert (np.isclose(ref_db, floor)).any(axis=(1, 2)).all(), "top_db clipping should be active on every file"
    assert np.abs(ours[:, 0].double().numpy() - ref_db).max() < TOL_DB


@pytest.mark.parametrize("rate, n_fft, hop", RATES)
def test_logmel_matches_librosa_without_top_db(fsdd_batches, rate, n_fft, hop):
    waves = fsdd_batches[rate]
    ours = LogMelSpectrogram(rate, n_fft=n_fft, hop_length=hop, n_mels=40, top_db=None, ref="max")(waves)
    mel = _librosa_mel(waves, rate, n_fft, hop, n_mels=40)
    ref_db = np.stack([librosa.power_to_db(m, ref=np.max, top_db=None) for m in mel])
    diff = np.abs(ours[:, 0].double().numpy() - ref_db)
    assert ref_db.min() < -80.0  # the range really extends below where top_db would clip
    assert diff[ref_db >= -80.0].max() < TOL_DB
    assert diff.max() < TOL_DB_ALL_BINS


@pytest.mark.parametrize("rate, n_fft, hop", RATES)
@pytest.mark.parametrize("top_db", [80.0, None])
def test_mfcc_matches_librosa(fsdd_batches, rate, n_fft, hop, top_db):
    waves = fsdd_batches[rate]
    ours = MFCC(rate, n_mfcc=20, n_fft=n_fft, hop_length=hop, n_mels=40, top_db=top_db)(waves)
    assert ours.shape == (len(FSDD_FILES), 1, 20, 1 + rate // hop)
    if top_db == 80.0:
        # librosa.feature.mfcc itself, which uses power_to_db's defaults (ref=1.0, top_db=80).
        ref = np.stack([
            librosa.feature.mfcc(y=w, sr=rate, n_mfcc=20, n_fft=n_fft, hop_length=hop, n_mels=40, dtype=np.float64)
            for w in waves.double().numpy()
        ])
        tol = TOL_MFCC
    else:
        mel = _librosa_mel(waves, rate, n_fft, hop, n_mels=40)
        ref = np.stack([librosa.feature.mfcc(S=librosa.power_to_db(m, top_db=None), n_mfcc=20) for m in mel])
        tol = TOL_MFCC_NO_TOP_DB
    assert np.abs(ours[:, 0].double().numpy() - ref).max() < tol


def test_default_config_matches_librosa(fsdd_batches):
    config = FeatureConfig(normalize="none")
    waves = fsdd_batches[config.sample_rate]
    ours = config.build()(waves)
    ref = np.stack([
        librosa.feature.mfcc(
            y=w, sr=config.sample_rate, n_mfcc=config.n_mfcc, n_fft=config.n_fft, hop_length=config.hop_length,
            win_length=config.win_length, n_mels=config.n_mels, fmin=config.fmin, fmax=config.fmax, dtype=np.float64,
        )
        for w in waves.double().numpy()
    ])
    assert ours.shape == (len(FSDD_FILES), 1, config.num_bins, config.num_frames)
    assert np.abs(ours[:, 0].double().numpy() - ref).max() < TOL_MFCC


# ---------------------------------------------------------------------------- module behaviour


def test_one_dim_input_and_batch_consistency():
    torch.manual_seed(0)
    module = LogMelSpectrogram(8000, n_fft=256, hop_length=80, n_mels=32)
    waves = torch.randn(3, 4000) * torch.tensor([[1.0], [0.01], [0.3]])
    batched = module(waves)
    assert batched.shape == (3, 1, 32, module.num_frames(4000)) == (3, 1, 32, 51)
    single = module(waves[1])
    assert single.shape == (1, 1, 32, 51)
    # ref and top_db are per utterance: a quiet example is not clipped by a loud neighbour.
    torch.testing.assert_close(single[0], batched[1], atol=1e-4, rtol=0)


def test_float32_under_autocast():
    module = MFCC(16000, n_mfcc=13)
    waves = torch.randn(2, 16000)
    expected = module(waves)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module(waves)
        out_half_input = module(waves.to(torch.bfloat16))
    assert out.dtype == torch.float32 and out_half_input.dtype == torch.float32
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"fmax": 4001.0}, "fmax"),
        ({"n_fft": 256, "win_length": 400}, "n_fft"),
        ({"window": "kaiser"}, "window"),
        ({"pad_mode": "edge"}, "pad_mode"),
        ({"top_db": -5.0}, "top_db"),
        ({"ref": "min"}, "ref"),
        ({"fmin": 3000.0, "fmax": 2000.0}, "fmin"),
    ],
)
def test_logmel_bad_arguments_name_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        LogMelSpectrogram(8000, **kwargs)


def test_logmel_bad_input():
    module = LogMelSpectrogram(8000)
    with pytest.raises(TypeError, match="floating"):
        module(torch.zeros(2, 800, dtype=torch.int16))
    with pytest.raises(ValueError, match="dims"):
        module(torch.zeros(2, 1, 800))


# ---------------------------------------------------------------------------- configuration


def test_feature_config_defaults_and_round_trip():
    config = FeatureConfig()
    assert (config.sample_rate, config.n_mels, config.win_length, config.hop_length) == (16000, 40, 480, 160)
    assert config.num_samples == 16000 and config.num_frames == 101
    restored = FeatureConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    out = config.build()(torch.randn(4, config.num_samples))
    assert out.shape == (4, 1, 40, 101)
    # Default normalization is per utterance.
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), torch.zeros(4), atol=1e-4, rtol=0)

    logmel = FeatureConfig(kind="logmel", n_mels=64, sample_rate=8000, n_fft=256, win_length=240, hop_length=80)
    assert isinstance(logmel.build_features(), LogMelSpectrogram)
    assert logmel.build()(torch.randn(2, 8000)).shape == (2, 1, 64, 101)


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"fmax": 9000.0}, "fmax"),
        ({"sample_rate": 8000, "fmax": 4000.1}, "fmax"),
        ({"n_fft": 256}, "n_fft"),
        ({"kind": "spectrogram"}, "kind"),
        ({"normalize": "global"}, "normalize"),
        ({"n_mfcc": 41}, "n_mfcc"),
        ({"duration_s": 0.0}, "duration_s"),
        ({"hop_length": 0}, "hop_length"),
        ({"top_db": 0.0}, "top_db"),
    ],
)
def test_feature_config_validation_names_field(changes, field):
    with pytest.raises(ValueError, match=field):
        FeatureConfig(**changes)


def test_feature_config_rejects_unknown_keys_and_wrong_types():
    with pytest.raises(ValueError, match="n_melz"):
        FeatureConfig.from_dict({"n_melz": 40})
    with pytest.raises(TypeError, match="n_mels"):
        FeatureConfig(n_mels=40.0)


def test_feature_config_dataset_normalization_needs_fitted_normalizer():
    config = FeatureConfig(normalize="dataset")
    with pytest.raises(ValueError, match="DatasetNormalizer"):
        config.build()
    features = config.build_features()
    normalizer = DatasetNormalizer().fit(features(torch.randn(3, 16000)) for _ in range(2))
    out = config.build(normalizer)(torch.randn(2, 16000))
    assert out.shape == (2, 1, 40, 101)
    with pytest.raises(ValueError, match="normalize"):
        FeatureConfig().build(normalizer)


# ---------------------------------------------------------------------------- normalization


def test_normalize_utterance():
    x = torch.randn(4, 1, 40, 101) * torch.tensor([1.0, 10.0, 0.1, 3.0])[:, None, None, None] + 7.0
    y = normalize_utterance(x)
    torch.testing.assert_close(y.mean(dim=(1, 2, 3)), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(dim=(1, 2, 3), unbiased=False), torch.ones(4), atol=1e-3, rtol=0)
    assert torch.isfinite(normalize_utterance(torch.full((1, 1, 4, 4), -80.0))).all()


@pytest.mark.parametrize("per_bin", [True, False])
def test_dataset_normalizer_fit_apply_and_save(per_bin):
    gen = torch.Generator().manual_seed(0)
    bins = torch.linspace(-60, 0, 40)[None, None, :, None]
    batches = [torch.randn(n, 1, 40, 21, generator=gen) * 5 + bins for n in (7, 3, 11)]
    normalizer = DatasetNormalizer(per_bin=per_bin).fit(iter(batches))

    everything = torch.cat(batches).double()
    dims = (0, 1, 3) if per_bin else (0, 1, 2, 3)
    torch.testing.assert_close(normalizer.mean.double(), everything.mean(dim=dims).reshape(-1), atol=1e-4, rtol=0)
    torch.testing.assert_close(
        normalizer.std.double(), everything.std(dim=dims, unbiased=False).reshape(-1), atol=1e-4, rtol=0
    )
    out = normalizer(torch.cat(batches))
    if per_bin:
        torch.testing.assert_close(out.mean(dim=dims), torch.zeros(40), atol=1e-4, rtol=0)

    restored = DatasetNormalizer.from_dict(json.loads(json.dumps(normalizer.to_dict())))
    torch.testing.assert_close(restored(batches[0]), normalizer(batches[0]))
    assert restored.count == normalizer.count == 21 * 21 * (1 if per_bin else 40)


def test_dataset_normalizer_errors():
    with pytest.raises(RuntimeError, match="not fitted"):
        DatasetNormalizer()(torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="empty"):
        DatasetNormalizer().fit([])
    fitted = DatasetNormalizer().fit([torch.randn(2, 1, 4, 5)])
    with pytest.raises(ValueError, match="frequency bins"):
        fitted(torch.zeros(1, 1, 6, 5))
    with pytest.raises(ValueError, match="missing"):
        DatasetNormalizer.from_dict({"mean": [0.0]})
