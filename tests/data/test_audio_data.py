"""Audio data sets: layouts, FSDD splits, the batch source, the stored front end and bad files.

Data sets are built in ``tmp_path`` from real FSDD recordings (``fsdd_subset`` in
``tests/conftest.py``) plus files written by soundfile; nothing here downloads.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

sf = pytest.importorskip("soundfile")

from resnetkit.data import BatchOptions, DataRequest  # noqa: E402  (after importorskip on purpose)
from resnetkit.data import audio_layouts  # noqa: E402
from resnetkit.data.audio_data import AudioData, AudioDataError  # noqa: E402
from resnetkit.data.audio_features import FeatureConfig  # noqa: E402
from resnetkit.data.audio_io import AUDIO_EXTENSIONS  # noqa: E402
from resnetkit.data.audio_layouts import (  # noqa: E402
    detect_layout,
    is_audio_source,
    load_audio_eval_data,
    resolve_audio_data,
)
from resnetkit.data.audio_augment import AUDIO_AUGMENT_PRESETS, AudioAugmentConfig  # noqa: E402
from resnetkit.data.batching import epoch_permutation  # noqa: E402
from resnetkit.data.specs import AudioInputSpec  # noqa: E402
from resnetkit.engine.config import TrainConfig  # noqa: E402
from resnetkit.runtime.distributed import DistInfo  # noqa: E402

# 8 kHz log-mel with 30 ms windows and a 10 ms hop: 40 x 101 features per 1 s clip.
AUDIO = {"sample_rate": 8000, "kind": "logmel", "n_fft": 256, "win_length": 240, "hop_length": 80}


def _config(data, **kwargs) -> DataRequest:
    return DataRequest(data=str(data), audio=FeatureConfig.from_dict(kwargs.pop("audio", AUDIO)), **kwargs)


def _speaker_and_index(path: str) -> tuple[str, int]:
    _, speaker, index = Path(path).stem.split("_")
    return speaker, int(index)


def _class_folders(fsdd_subset, root: Path, indices, digits=range(10), names=None) -> Path:
    """FSDD recordings sorted into ``root/<class name>/`` (class names default to the digits)."""
    flat = root.parent / f"{root.name}-flat"
    for path in fsdd_subset(flat, indices, digits):
        digit = path.name.split("_")[0]
        folder = root / (names[int(digit)] if names else digit)
        folder.mkdir(parents=True, exist_ok=True)
        path.rename(folder / path.name)
    flat.rmdir()
    return root


def _batches(data: AudioData, *, train: bool, augment=None, seed: int = 0, dist=DistInfo(), batch_size=8,
             num_classes=None):
    options = BatchOptions(train=train, batch_size=batch_size, augment=augment, seed=seed, dist=dist,
                           num_classes=num_classes or len(data.classes))
    return data.batches(data.input_spec(), options)


# ---------------------------------------------------------------------------- detection


def test_is_audio_source(fsdd_recordings, tmp_path):
    assert is_audio_source("fsdd")
    for suffix in AUDIO_EXTENSIONS:  # FLAC and OGG folders are audio too, whatever the names
        (tmp_path / suffix[1:] / "a").mkdir(parents=True)
        sf.write(str(tmp_path / suffix[1:] / "a" / f"x{suffix}"), _speech_like(0.2, 8000), 8000)
        assert is_audio_source(str(tmp_path / suffix[1:]))
    assert is_audio_source(str(fsdd_recordings)) and is_audio_source(str(fsdd_recordings.parent))
    images = tmp_path / "images" / "cat"
    images.mkdir(parents=True)
    (images / "a.png").write_bytes(b"\x89PNG")
    assert not is_audio_source(str(tmp_path / "images"))
    assert not is_audio_source(str(tmp_path / "missing"))
    assert not is_audio_source("digits") and not is_audio_source("cifar10")
    (tmp_path / "empty").mkdir()
    assert not is_audio_source(str(tmp_path / "empty"))


def test_detects_fsdd_flat_folder_and_its_parent(fsdd_recordings):
    assert detect_layout(fsdd_recordings) == ("fsdd", fsdd_recordings)
    # The data set's repository layout: a folder that holds recordings/.
    assert detect_layout(fsdd_recordings.parent) == ("fsdd", fsdd_recordings)


def test_detects_class_folders(fsdd_subset, tmp_path):
    root = _class_folders(fsdd_subset, tmp_path / "digits", indices=[5, 6], digits=[1, 2, 3])
    assert detect_layout(root) == ("folders", root)
    splits = resolve_audio_data(_config(root, val_split=0.5, seed=3))
    assert splits.classes == ["1", "2", "3"]
    assert len(splits.train) + len(splits.val) == 3 * 5 * 2
    # Stratified: every class is on both sides, in the same proportion.
    assert torch.bincount(splits.val.labels).tolist() == [5, 5, 5]
    assert not set(splits.train.paths) & set(splits.val.paths)
    again = resolve_audio_data(_config(root, val_split=0.5, seed=3))
    other = resolve_audio_data(_config(root, val_split=0.5, seed=4))
    assert again.val.paths == splits.val.paths and other.val.paths != splits.val.paths
    assert splits.train.waves.shape[1] == 8000 and splits.train.input_spec().kind == "audio" and splits.train.in_chans == 1


def test_class_folders_with_val_subfolder(fsdd_subset, tmp_path):
    _class_folders(fsdd_subset, tmp_path / "ds" / "train", indices=[5, 6, 7], digits=[4, 8])
    _class_folders(fsdd_subset, tmp_path / "ds" / "val", indices=[0], digits=[8])  # one class only: remapped
    splits = resolve_audio_data(_config(tmp_path / "ds"))
    assert splits.classes == ["4", "8"]
    assert len(splits.train) == 2 * 5 * 3 and len(splits.val) == 5
    assert splits.val.classes == ["4", "8"] and set(splits.val.labels.tolist()) == {1}
    held = resolve_audio_data(_config(tmp_path / "ds", for_evaluation=True))
    assert held.train is None and len(held.val) == 5


def test_speech_commands_layout(fsdd_subset, tmp_path):
    root = _class_folders(fsdd_subset, tmp_path / "sc", indices=[5, 6, 7, 8], digits=[0, 1, 2],
                          names={0: "no", 1: "up", 2: "yes"})
    noise = root / "_background_noise_"
    noise.mkdir()
    sf.write(str(noise / "white_noise.wav"), np.random.default_rng(0).normal(0, 0.1, 16000), 16000)
    (root / "README.md").write_text("not a class")
    files = sorted(p.relative_to(root).as_posix() for p in root.glob("[a-z]*/*.wav"))
    assert len(files) == 3 * 5 * 4
    val = [f for f in files if f.endswith("_5.wav")]
    test = [f for f in files if f.endswith("_6.wav")]
    (root / "validation_list.txt").write_text("\n".join(val) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    assert detect_layout(root) == ("speech-commands", root)
    splits = resolve_audio_data(_config(root))
    assert splits.classes == ["no", "up", "yes"]  # _background_noise_ is not a class
    assert len(splits.val) == 15 and len(splits.train) == 30  # the test list is neither
    assert {Path(p).relative_to(root).as_posix() for p in splits.val.paths} == set(val)
    # The speech preset's noise comes from the data set's own noise recordings.
    assert splits.train.augment_config("auto").noise_dir == str(noise)
    held = resolve_audio_data(_config(root, for_evaluation=True))
    assert {Path(p).relative_to(root).as_posix() for p in held.val.paths} == set(test)


def test_named_layout_must_match(fsdd_subset, tmp_path):
    root = _class_folders(fsdd_subset, tmp_path / "digits", indices=[5], digits=[1, 2])
    with pytest.raises(AudioDataError, match="validation_list.txt"):
        resolve_audio_data(_config(root, audio_layout="speech-commands"))
    with pytest.raises(AudioDataError, match=r"no FSDD recordings.*\{digit\}_\{speaker\}_\{index\}\.wav"):
        resolve_audio_data(_config(root, audio_layout="fsdd"))


# ---------------------------------------------------------------------------- FSDD splits (real data)


@pytest.fixture(scope="module")
def fsdd_official(fsdd_recordings):
    return resolve_audio_data(_config(fsdd_recordings.parent))


def test_official_fsdd_split(fsdd_official):
    train, val = fsdd_official.train, fsdd_official.val
    assert fsdd_official.classes == [str(d) for d in range(10)]
    # 5 speakers x 10 digits x 50 recordings; indices 0-4 are the test split.
    assert len(train) == 2250 and len(val) == 250
    assert not set(train.paths) & set(val.paths)
    assert all(_speaker_and_index(p)[1] <= 4 for p in val.paths)
    assert all(_speaker_and_index(p)[1] >= 5 for p in train.paths)
    assert torch.bincount(val.labels, minlength=10).tolist() == [25] * 10
    assert all(int(Path(p).name[0]) == int(y) for p, y in zip(val.paths, val.labels))
    assert train.waves.shape == (2250, 8000) and train.waves.dtype == torch.float32


def test_held_out_speaker_split(fsdd_recordings):
    splits = resolve_audio_data(_config(fsdd_recordings, fsdd_split="speakers:george,Lucas"))
    assert len(splits.val) == 1000 and len(splits.train) == 1500
    assert {_speaker_and_index(p)[0] for p in splits.val.paths} == {"george", "lucas"}
    assert {_speaker_and_index(p)[0] for p in splits.train.paths} == {"jackson", "nicolas", "yweweler"}
    assert not set(splits.train.paths) & set(splits.val.paths)


def test_unknown_speaker_lists_the_speakers(fsdd_subset, tmp_path):
    fsdd_subset(tmp_path / "fsdd", indices=[0, 5], digits=[1])
    with pytest.raises(AudioDataError, match=r"'bob'.*speakers found: george, jackson, lucas, nicolas, yweweler"):
        resolve_audio_data(_config(tmp_path / "fsdd", fsdd_split="speakers:bob"))


def test_evaluation_reads_only_the_test_split(fsdd_subset, tmp_path):
    fsdd_subset(tmp_path / "fsdd", indices=[0, 1, 5, 6], digits=[3, 4])
    held = resolve_audio_data(_config(tmp_path / "fsdd", for_evaluation=True))
    assert held.train is None and len(held.val) == 2 * 5 * 2
    spec = AudioInputSpec(FeatureConfig.from_dict(AUDIO))
    data = load_audio_eval_data(spec, str(tmp_path / "fsdd"))
    # The classes are the digits present; evaluation maps them onto the model's by name.
    assert sorted(data.paths) == sorted(held.val.paths) and data.classes == ["3", "4"]


def test_fsdd_subset_trains_on_the_digits_present(fsdd_subset, tmp_path, caplog):
    fsdd_subset(tmp_path / "fsdd", indices=[0, 5], digits=[0, 1, 2])
    caplog.set_level(logging.WARNING)
    splits = resolve_audio_data(_config(tmp_path / "fsdd"))
    assert splits.classes == ["0", "1", "2"] and set(splits.train.labels.tolist()) == {0, 1, 2}
    assert "3 digit(s) only (0, 1, 2)" in caplog.text


# ---------------------------------------------------------------------------- --data fsdd (no download)


def test_fsdd_name_uses_the_cache_without_downloading(fsdd_subset, tmp_path, monkeypatch):
    monkeypatch.setenv("RESNETKIT_CACHE", str(tmp_path / "cache"))
    fsdd_subset(tmp_path / "cache" / "datasets" / "fsdd" / "recordings", indices=[0, 5, 6], digits=[2, 7])

    def no_download(url, dest):
        raise AssertionError(f"tried to download {url}")

    monkeypatch.setattr(audio_layouts, "_fetch", no_download)
    splits = resolve_audio_data(_config("fsdd"))
    assert splits.name == "fsdd" and len(splits.val) == 10 and len(splits.train) == 20


def test_fsdd_offline_says_which_files_to_put_where(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNETKIT_CACHE", str(tmp_path / "cache"))

    def offline(url, dest):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(audio_layouts, "_fetch", offline)
    recordings = tmp_path / "cache" / "datasets" / "fsdd" / "recordings"
    with pytest.raises(AudioDataError) as info:
        resolve_audio_data(_config("fsdd"))
    message = str(info.value)
    assert "could not download FSDD" in message and "URLError" in message
    assert str(recordings) in message and "{digit}_{speaker}_{index}.wav" in message
    assert "free-spoken-digit-dataset" in message and "--data PATH" in message


def test_fsdd_download_extracts_the_recordings(fsdd_recordings, tmp_path, monkeypatch):
    monkeypatch.setenv("RESNETKIT_CACHE", str(tmp_path / "cache"))
    names = ["0_george_0.wav", "0_george_5.wav", "1_jackson_0.wav", "1_jackson_7.wav"]

    def fake_archive(url, dest):
        # The shape of GitHub's archive of the repository.
        assert url == audio_layouts.FSDD_ARCHIVE_URL
        with zipfile.ZipFile(dest, "w") as zf:
            zf.writestr("free-spoken-digit-dataset-master/README.md", "FSDD")
            for name in names:
                zf.write(fsdd_recordings / name, f"free-spoken-digit-dataset-master/recordings/{name}")

    monkeypatch.setattr(audio_layouts, "_fetch", fake_archive)
    splits = resolve_audio_data(_config("fsdd"))
    cached = tmp_path / "cache" / "datasets" / "fsdd" / "recordings"
    assert sorted(p.name for p in cached.iterdir()) == sorted(names)
    assert len(splits.train) == 2 and len(splits.val) == 2


# ---------------------------------------------------------------------------- configuration


@pytest.mark.parametrize("kwargs,error,match", [
    ({"audio_layout": "flat"}, ValueError, "audio_layout must be one of auto, folders, fsdd, speech-commands"),
    ({"fsdd_split": "random"}, ValueError, "fsdd_split must be 'official' or 'speakers:NAME"),
    ({"fsdd_split": "speakers:"}, ValueError, "fsdd_split"),
    ({"audio": {"n_mel": 40}}, ValueError, r"unknown setting\(s\) \['n_mel'\].*n_mels"),
    ({"audio": {"kind": "cqt"}}, ValueError, "FeatureConfig.kind"),
    ({"audio": {"gain_db": [6, -6]}}, ValueError, r"gain_db is an augmentation setting: put them under augment_args"),
    ({"audio": ["sample_rate"]}, TypeError, "audio: audio feature settings must be a mapping"),
])
def test_config_rejects_bad_audio_settings(kwargs, error, match):
    with pytest.raises(error, match=match):
        TrainConfig(**kwargs)


def test_audio_settings_have_one_parser_and_one_record():
    config = TrainConfig(audio={"sample_rate": 4000, "n_mels": 32})
    # Below 8 kHz fmax follows the Nyquist frequency; fewer bands than n_mfcc keep one coefficient per band.
    features = config.features
    assert features.fmax == 2000 and features.n_mfcc == 32
    assert config.audio == {"sample_rate": 4000, "n_mels": 32}  # the settings as given, nothing added
    assert TrainConfig.from_dict(config.to_dict()) == config  # as config.yaml and checkpoints store it
    # The complete record (an input spec's, in checkpoints and exported files) reads back through the same parser.
    assert FeatureConfig.from_dict(features.to_dict()) == features
    assert AudioInputSpec.from_dict(AudioInputSpec(features).to_dict()).features == features
    assert TrainConfig().audio is None and TrainConfig().features is None


def test_augment_presets_and_overrides(fsdd_subset, tmp_path):
    assert set(AUDIO_AUGMENT_PRESETS) == {"none", "speech", "speech-strong"}
    speech = AUDIO_AUGMENT_PRESETS["speech"]
    assert speech.time_shift_s > 0 and speech.gain_db and speech.noise_snr_db and speech.masks and speech.mixup == 0
    assert AudioAugmentConfig.from_dict(speech.to_dict()) == speech
    json.dumps(speech.to_dict())
    assert AudioAugmentConfig(gain_db=3).gain_db == (-3.0, 3.0)
    assert AudioAugmentConfig(noise_snr_db=20).noise_snr_db == (20.0, 20.0)
    with pytest.raises(ValueError, match=r"unknown audio augmentation option\(s\) \['cutmix'\]"):
        AudioAugmentConfig.from_dict({"cutmix": 1.0})

    fsdd_subset(tmp_path / "fsdd", indices=[0, 5], digits=[1])
    data = resolve_audio_data(_config(tmp_path / "fsdd")).train
    # auto is the speech preset; augment_args replace its fields.
    auto = data.augment_config("auto", {"time_masks": 3, "mixup": 0.3})
    assert auto.time_masks == 3 and auto.mixup == 0.3 and auto.freq_masks == speech.freq_masks
    assert data.augment_config("none", {"time_masks": 3}) == AudioAugmentConfig(time_masks=3)
    with pytest.raises(ValueError, match="unknown audio augmentation preset 'cifar'.*none, speech"):
        data.augment_config("cifar")


# ---------------------------------------------------------------------------- input spec and batches


@pytest.fixture(scope="module")
def small(tmp_path_factory, fsdd_subset):
    """Digits 1-3 of all five speakers in FSDD form: indices 5 and 6 train (30 clips), 0 validates (15)."""
    root = tmp_path_factory.mktemp("small")
    fsdd_subset(root, indices=[0, 5, 6], digits=[1, 2, 3])
    return resolve_audio_data(_config(root))


def test_input_spec_round_trip(small):
    spec = small.train.input_spec()
    d = json.loads(json.dumps(spec.to_dict()))
    assert d["kind"] == "audio" and d["in_chans"] == 1 and d["sample_rate"] == 8000 and d["duration_s"] == 1.0
    assert d["input_size"] == [1, 40, 101] and d["normalizer"] is None
    assert AudioInputSpec.from_dict(d) == spec
    with pytest.raises(ValueError, match="not an audio input spec"):
        AudioInputSpec.from_dict({"kind": "image", "in_chans": 3})


def test_dataset_normalization_is_stored_and_applied(fsdd_subset, tmp_path):
    fsdd_subset(tmp_path / "fsdd", indices=[0, 5, 6], digits=[1, 2])
    splits = resolve_audio_data(_config(tmp_path / "fsdd", audio={**AUDIO, "normalize": "dataset"}))
    spec = splits.train.input_spec()
    assert len(spec.normalizer["mean"]) == 40 and spec.normalizer["count"] > 0
    restored = AudioInputSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    x = torch.cat([x for x, _ in _batches(splits.train, train=False).epoch(0)])
    # Per-bin statistics of the training features: each bin comes out with mean 0, std 1.
    assert x.mean(dim=(0, 1, 3)).abs().max() < 1e-3 and (x.std(dim=(0, 1, 3)) - 1).abs().max() < 1e-2
    wave = splits.train.waves[:2]
    assert torch.allclose(restored.build_frontend()(wave), spec.build_frontend()(wave))


def test_eval_batches_cover_every_clip_in_order(small):
    source = _batches(small.val, train=False)
    assert source.num_samples == len(small.val) == 15 and len(source) == 2 and source.classes == small.classes
    xs, ys = zip(*source.epoch(0))
    x, y = torch.cat(xs), torch.cat(ys)
    assert x.shape == (15, 1, 40, 101) and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert torch.equal(y, small.val.labels)
    # The same features the spec gives predict.
    prepared = small.train.input_spec().prepare(small.val.paths[:3], torch.device("cpu"))
    assert prepared.errors == [None] * 3 and prepared.names == small.val.paths[:3]
    torch.testing.assert_close(prepared.batch, x[:3])


def test_train_batches_are_seeded_and_resume_exactly(small):
    augment = small.train.augment_config("speech", {"mixup": 0.2})
    source = _batches(small.train, train=True, augment=augment, seed=5, num_classes=10)
    assert len(source) == 30 // 8  # the ragged last batch is dropped in training

    def run(src, epoch, start=0):
        torch.manual_seed(0)  # MixUp draws from torch's global generator, which checkpoints save
        return [(x.clone(), y.clone()) for x, y in src.epoch(epoch, start)]

    state = source.state_dict()
    first = run(source, 0)
    x, y = first[0]
    assert x.shape == (8, 1, 40, 101) and torch.isfinite(x).all()
    assert y.shape == (8, 10) and torch.allclose(y.sum(1), torch.ones(8))  # mixup's soft targets
    fresh = _batches(small.train, train=True, augment=augment, seed=5, num_classes=10)
    fresh.load_state_dict(state)
    again = run(fresh, 0)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    # Another epoch, another order and other augmentations.
    assert not torch.equal(run(source, 1)[0][0], x)
    # Without augmentation the batches are the plain features in the epoch's permutation.
    plain = _batches(small.train, train=True, seed=5)
    order = epoch_permutation(30, 5, 0)[:8]
    x0, y0 = next(plain.epoch(0))
    assert torch.equal(y0, small.train.labels[order])
    ref = small.train.input_spec().build_frontend()(small.train.waves[order])
    torch.testing.assert_close(x0, ref)


def test_ddp_shards_are_disjoint(small):
    seen = []
    for rank in range(2):
        source = _batches(small.train, train=True, dist=DistInfo(rank=rank, world_size=2), batch_size=5)
        assert len(source) == 3
        seen.append(source.indices(0).tolist())
    assert not set(seen[0]) & set(seen[1]) and sorted(seen[0] + seen[1]) == list(range(30))


def test_remap_classes_by_name(small):
    reverse = [str(d) for d in range(9, -1, -1)]
    remapped = small.val.remap_classes(reverse)
    assert small.val.classes == ["1", "2", "3"] and remapped.classes == reverse
    assert torch.equal(remapped.labels, 8 - small.val.labels)  # "1" (label 0) is index 8 of the reversed list
    with pytest.raises(AudioDataError, match=r"(?s)not among the model's classes.*data classes.*model classes"):
        small.val.remap_classes(["1", "2"])


def test_preview_is_drawn_by_the_report_layer(small, tmp_path):
    from PIL import Image

    from resnetkit.report.plots import plot_preview

    preview = small.train.preview()
    assert preview.style == "spectrogram" and preview.filename == "spectrograms.png"
    assert preview.labels == ["1", "2", "3"] and preview.samples.shape == (3, 1, 40, 101)
    path = plot_preview(preview, tmp_path / preview.filename)
    with Image.open(path) as image:
        image.verify()


# ---------------------------------------------------------------------------- unusual and broken files


@pytest.fixture
def folder_data(fsdd_subset, tmp_path):
    """A class-folder data set of two digits, 10 good 8 kHz clips each, to add odd files to."""
    return _class_folders(fsdd_subset, tmp_path / "ds", indices=[5, 6], digits=[1, 2])


def _speech_like(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return 0.3 * np.sin(2 * np.pi * 440 * t) * np.hanning(len(t))


def _load(root: Path, caplog, **kwargs):
    """(the training AudioData, the splits); skip and silence counts live on the training side."""
    caplog.set_level(logging.WARNING, logger="resnetkit.data.audio_data")
    splits = resolve_audio_data(_config(root, val_split=0.2, **kwargs))
    return splits.train, splits


def _all_paths(splits) -> list[str]:
    return splits.train.paths + splits.val.paths


def test_stereo_file_is_mixed_down(folder_data, caplog):
    stereo = folder_data / "1" / "stereo.wav"
    left = _speech_like(0.5, 8000)
    sf.write(str(stereo), np.stack([left, -0.5 * left], axis=1), 8000)
    _, splits = _load(folder_data, caplog)
    assert str(stereo) in _all_paths(splits) and not caplog.records
    data = splits.train if str(stereo) in splits.train.paths else splits.val
    wave = data.waves[data.paths.index(str(stereo))]
    assert torch.allclose(wave[2000:6000], torch.from_numpy(0.25 * left).float(), atol=1e-4)


@pytest.mark.parametrize("subtype", ["PCM_24", "FLOAT"])
def test_24_bit_and_float_files_are_read(folder_data, caplog, subtype):
    path = folder_data / "2" / f"odd_{subtype}.wav"
    sf.write(str(path), _speech_like(0.5, 8000), 8000, subtype=subtype)
    _, splits = _load(folder_data, caplog)
    assert str(path) in _all_paths(splits) and len(_all_paths(splits)) == 21 and not caplog.records


def test_mixed_sample_rates_are_resampled(folder_data, caplog):
    fast = folder_data / "1" / "cd_rate.wav"
    sf.write(str(fast), _speech_like(0.5, 44100), 44100)
    slow = folder_data / "2" / "phone_rate.flac"
    sf.write(str(slow), _speech_like(0.5, 8000), 8000)
    _, splits = _load(folder_data, caplog)
    paths = _all_paths(splits)
    assert str(fast) in paths and str(slow) in paths and len(paths) == 22
    assert splits.train.waves.shape[1] == splits.val.waves.shape[1] == 8000  # 1 s at the configured 8 kHz
    data = splits.train if str(fast) in splits.train.paths else splits.val
    wave = data.waves[data.paths.index(str(fast))]
    # 0.5 s of 44.1 kHz audio is 4000 samples at 8 kHz, centred in the 1 s clip.
    assert wave[:1900].abs().max() < 1e-3 and wave[6100:].abs().max() < 1e-3 and wave.abs().max() > 0.2


def test_zero_length_file_is_skipped_and_named(folder_data, caplog):
    empty = folder_data / "1" / "empty.wav"
    empty.write_bytes(b"")
    data, splits = _load(folder_data, caplog)
    assert str(empty) not in _all_paths(splits) and len(_all_paths(splits)) == 20
    assert [s.path for s in data.skipped] == [str(empty)]
    assert len(caplog.records) == 1
    assert "skipped 1 file(s)" in caplog.text and str(empty) in caplog.text and "empty" in caplog.text


def test_silent_file_is_kept_and_counted(folder_data, caplog):
    silent = folder_data / "2" / "silence.wav"
    sf.write(str(silent), np.zeros(4000), 8000, subtype="PCM_16")
    data, splits = _load(folder_data, caplog)
    assert str(silent) in _all_paths(splits) and data.silent == [str(silent)]
    assert "1 silent file(s), kept" in caplog.text and str(silent) in caplog.text
    x = torch.cat([x for x, _ in _batches(data, train=False).epoch(0)])
    assert torch.isfinite(x).all()  # a constant spectrogram normalizes to zeros, not NaN


def test_corrupt_header_is_skipped_and_named(folder_data, caplog):
    corrupt = folder_data / "1" / "corrupt.wav"
    good = sorted((folder_data / "1").glob("*.wav"))[0].read_bytes()
    corrupt.write_bytes(b"RIFX" + b"\x00" * 40 + good[44:])
    data, splits = _load(folder_data, caplog)
    assert str(corrupt) not in _all_paths(splits) and [s.path for s in data.skipped] == [str(corrupt)]
    assert "skipped 1 file(s)" in caplog.text and str(corrupt) in caplog.text


def test_unsupported_format_is_ignored_and_named(folder_data, caplog):
    mp3 = folder_data / "2" / "song.mp3"
    mp3.write_text("this is not audio")
    data, splits = _load(folder_data, caplog)
    assert len(_all_paths(splits)) == 20 and str(mp3) in caplog.text and "unsupported format '.mp3'" in caplog.text


def test_all_skips_are_in_one_warning(folder_data, caplog):
    for i in range(7):
        (folder_data / "1" / f"empty{i}.wav").write_bytes(b"")
    data, _ = _load(folder_data, caplog)
    assert len(data.skipped) == 7 and len(caplog.records) == 1
    assert "skipped 7 file(s)" in caplog.text and "and 2 more" in caplog.text


def test_on_corrupt_stop_names_the_file(folder_data):
    empty = folder_data / "2" / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioDataError, match=rf"{empty}.*stopping"):
        resolve_audio_data(_config(folder_data, on_corrupt="stop"))


def test_predict_batch_reports_bad_files_per_item(small, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wave file at all")
    items = [small.val.paths[0], str(bad), str(tmp_path / "missing.wav"), torch.zeros(4000)]
    batch, names, errors = vars(small.train.input_spec().prepare(items, torch.device("cpu"))).values()
    assert batch.shape == (2, 1, 40, 101) and names[1] == str(bad) and names[3] == "tensor"
    assert errors[0] is None and errors[3] is None
    assert str(bad) in errors[1] and "missing.wav" in errors[2]
    with pytest.raises(TypeError, match="audio: pass file paths"):
        small.train.input_spec().prepare([3.0], torch.device("cpu"))


def test_empty_class_folder_and_no_classes_are_errors(tmp_path):
    (tmp_path / "ds" / "a").mkdir(parents=True)
    sf.write(str(tmp_path / "ds" / "a" / "x.wav"), _speech_like(0.2, 8000), 8000)
    (tmp_path / "ds" / "b").mkdir()
    (tmp_path / "ds" / "b" / "notes.txt").write_text("nothing")
    with pytest.raises(AudioDataError, match=r"class folder .*b has no audio files"):
        resolve_audio_data(_config(tmp_path / "ds"))
    with pytest.raises(AudioDataError, match="no such folder"):
        resolve_audio_data(_config(tmp_path / "nowhere"))
