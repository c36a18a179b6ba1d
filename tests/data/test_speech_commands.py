"""Speech Commands' 12-class protocol on a small layout built from FSDD clips and noise."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

sf = pytest.importorskip("soundfile")

from resnetkit.data import DataRequest  # noqa: E402
from resnetkit.data.audio_layouts import load_audio_eval_data, resolve_audio_data  # noqa: E402
from resnetkit.data.audio_features import FeatureConfig  # noqa: E402
from resnetkit.data.speech_commands import SILENCE, SPEECH_COMMANDS_WORDS, UNKNOWN, parse_keywords  # noqa: E402

AUDIO = {"sample_rate": 8000, "kind": "logmel", "n_fft": 256, "win_length": 240, "hop_length": 80}
OTHER_WORDS = ("bed", "cat", "tree")


@pytest.fixture(scope="module")
def layout(tmp_path_factory, fsdd_subset) -> Path:
    """The ten keywords (digit 0 is "yes", ..., 9 is "go"), three other words, background noise and lists."""
    root = tmp_path_factory.mktemp("speech_commands")
    flat = root.parent / "flat"
    clips = fsdd_subset(flat, indices=range(0, 10))
    for clip in clips:
        digit, speaker, index = clip.stem.split("_")
        word = SPEECH_COMMANDS_WORDS[int(digit)] if int(index) < 6 else OTHER_WORDS[int(digit) % 3]
        (root / word).mkdir(exist_ok=True)
        clip.rename(root / word / f"{speaker}_nohash_{digit}{index}.wav")
    noise = root / "_background_noise_"
    noise.mkdir()
    rng = np.random.default_rng(0)
    sf.write(str(noise / "white_noise.wav"), rng.normal(0, 0.1, 8000 * 20).astype(np.float32), 8000)
    files = sorted(p.relative_to(root).as_posix() for p in root.glob("[a-z]*/*.wav"))
    # Index 4 (keywords) and 7 (other words) validate; 5 and 8 test.
    (root / "validation_list.txt").write_text("\n".join(f for f in files if f.endswith(("4.wav", "7.wav"))) + "\n")
    (root / "testing_list.txt").write_text("\n".join(f for f in files if f.endswith(("5.wav", "8.wav"))) + "\n")
    return root


def _request(root, **kw) -> DataRequest:
    return DataRequest(data=str(root), audio=FeatureConfig.from_dict(AUDIO), **kw)


def test_twelve_classes_detected_from_the_layout(layout, caplog):
    caplog.set_level(logging.INFO)
    splits = resolve_audio_data(_request(layout))
    assert splits.classes == [SILENCE, UNKNOWN, *SPEECH_COMMANDS_WORDS]
    assert "12-class protocol" in caplog.text
    train = splits.train
    counts = torch.bincount(train.labels, minlength=12)
    keyword_clips = int(counts[2:].sum())
    # Every keyword clip of the training split; unknown and silence each about a tenth of that.
    assert keyword_clips == 10 * 5 * 4  # 10 words x 5 speakers x indices 0-3 (4 and 5 are held out)
    assert counts[1] == round(0.1 * keyword_clips) and counts[0] == round(0.1 * len(train.labels[train.labels > 0]))
    unknown_paths = [p for p, y in zip(train.paths, train.labels) if y == 1]
    assert all(Path(p).parent.name in OTHER_WORDS for p in unknown_paths)
    silence = train.waves[train.labels == 0]
    assert silence.abs().max() > 0 and silence.abs().max() < 1  # noise at a random volume, not clips of speech
    # The held-out lists are applied to every class, unknown included.
    assert not {Path(p).name for p in splits.val.paths if "silence" not in p} & {Path(p).name for p in train.paths}


def test_every_word_a_class_when_asked(layout):
    splits = resolve_audio_data(_request(layout, keywords="none"))
    assert splits.classes == sorted([*SPEECH_COMMANDS_WORDS, *OTHER_WORDS])


def test_chosen_keywords_and_bad_ones(layout):
    splits = resolve_audio_data(_request(layout, keywords="yes,no"))
    assert splits.classes == [SILENCE, UNKNOWN, "yes", "no"]
    with pytest.raises(ValueError, match=r"keywords 'yes,maybe': no folder for \['maybe'\]"):
        resolve_audio_data(_request(layout, keywords="yes,maybe"))
    assert parse_keywords("auto", ["yes", "no"]) is None  # not the ten words: every word stays a class


def test_a_trained_models_protocol_is_applied_to_new_data(layout):
    splits = resolve_audio_data(_request(layout))
    spec = splits.train.input_spec()
    assert spec.keywords == list(SPEECH_COMMANDS_WORDS)
    test = load_audio_eval_data(spec, str(layout))
    assert test.classes == splits.classes and set(test.labels.tolist()) <= set(range(12))
    assert (test.labels == 0).any() and (test.labels == 1).any()


def test_the_protocol_takes_the_voice_front_end_and_augmentation(layout):
    from resnetkit.data.interface import BatchOptions

    request = DataRequest(data=str(layout), audio=FeatureConfig.from_dict({**AUDIO, "normalize": "cmvn"}))
    splits = resolve_audio_data(request)
    spec = splits.train.input_spec()
    assert spec.features.normalize == "cmvn" and spec.keywords == list(SPEECH_COMMANDS_WORDS)
    augment = splits.train.augment_config("speech-strong")
    # Noise from the data set's own recordings, with every voice augmentation on.
    assert augment.noise_dir == str(layout / "_background_noise_") and augment.vtlp and augment.speed
    source = splits.train.batches(spec, BatchOptions(train=True, batch_size=32, augment=augment))
    assert source.step.noise_bank is not None and len(source.step.noise_bank) == 1
    x, y = next(iter(source.epoch(0)))
    assert x.shape == (32, 1, 40, 101) and torch.isfinite(x).all() and y.max() < 12


def test_the_protocol_gets_what_the_default_audio_recipe_sets(layout):
    """`resnetkit train --data SPEECH_COMMANDS` with no recipe: audio_default's floor and equalization apply."""
    from resnetkit.data.interface import BatchOptions
    from resnetkit.engine.config import build_config
    from resnetkit.engine.run_data import load_data

    config = build_config("audio_default", {"data": str(layout), "in_chans": 1})
    splits = load_data(config)
    spec = splits.train.input_spec()
    assert spec.features.top_db == 40.0 and spec.features.normalize == "utterance"
    assert spec.keywords == list(SPEECH_COMMANDS_WORDS)
    augment = splits.train.augment_config(config.augment, config.augment_args)
    assert augment.eq_db == 12.0 and augment.noise_dir == str(layout / "_background_noise_")
    x, y = next(iter(splits.train.batches(spec, BatchOptions(train=True, batch_size=32, augment=augment)).epoch(0)))
    assert x.shape == (32, 1, 40, 51) and torch.isfinite(x).all() and y.max() < 12
