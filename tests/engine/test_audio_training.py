"""Audio through the whole engine: train on real FSDD clips, then evaluate and predict, API and CLI.

One short training run (res8, 300 clips, about ten seconds on two CPU cores) is shared by
the module; its data sets are copies of real recordings in a temporary folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

sf = pytest.importorskip("soundfile")

from resnetkit.cli.main import main  # noqa: E402  (after importorskip on purpose)
from resnetkit.engine import TrainConfig, load_run, train  # noqa: E402

from resnetkit.testing.callbacks import StopAtStep  # noqa: E402

AUDIO = {"sample_rate": 8000, "kind": "logmel", "n_fft": 256, "win_length": 240, "hop_length": 80}


@pytest.fixture(scope="module")
def run(tmp_path_factory, fsdd_subset):
    """res8 trained on FSDD indices 5-10 (300 clips), validated on indices 0-1 (100 clips)."""
    root = tmp_path_factory.mktemp("audio")
    data = root / "fsdd"
    fsdd_subset(data, indices=[0, 1, 5, 6, 7, 8, 9, 10])
    config = TrainConfig(
        model="res8", data=str(data), audio=dict(AUDIO), epochs=10, batch_size=16, optimizer="adamw", lr=3e-3,
        weight_decay=1e-2, augment="none", seed=0, quiet=True, out=str(root / "run"),
    )
    summary = train(config)
    return summary, data, root


def test_short_training_beats_chance(run):
    summary, _, _ = run
    # Chance is 10%; this run reaches about 80% (see the commit notes).
    assert summary.best_val_acc > 0.5, summary.history
    assert len(summary.history) == 10 and all(np.isfinite(h["train_loss"]) for h in summary.history)
    assert summary.history[-1]["train_acc"] > 0.5


def test_run_directory_holds_the_audio_front_end(run):
    summary, _, _ = run
    from PIL import Image

    run_dir = summary.run_dir
    for name in ("best.pt", "last.pt", "metrics.csv", "metrics.json", "curves.png", "confusion.png"):
        assert (run_dir / name).is_file(), name
    with Image.open(run_dir / "spectrograms.png") as image:
        image.verify()
    with Image.open(run_dir / "spectrograms.png") as image:
        assert image.size[0] > 200 and image.size[1] > 100
    info = json.loads((run_dir / "data_config.json").read_text())
    assert info["input"]["kind"] == "audio" and info["input"]["input_size"] == [1, 40, 101]
    assert info["input"]["features"]["sample_rate"] == 8000 and info["augment"]["mixup"] == 0.0
    assert json.loads((run_dir / "classes.json").read_text()) == [str(d) for d in range(10)]
    loaded = load_run(run_dir)
    assert loaded.kind == "audio" and loaded.model.in_chans == 1 and loaded.classes == [str(d) for d in range(10)]


def _copy_clips(clips: list[Path], dest: Path, by_class: bool) -> Path:
    for clip in clips:
        folder = dest / clip.name.split("_")[0] if by_class else dest
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, folder / clip.name)
    return dest


def test_evaluate_class_folder_maps_classes_by_name(run):
    summary, data, root = run
    # Validation clips of three digits, in class folders whose sorted order (2, 5, 7) is not
    # the model's label order, and the same clips in FSDD form.
    clips = sorted(p for p in data.glob("[752]_*_[01].wav"))
    folders = _copy_clips(clips, root / "eval-folders", by_class=True)
    flat = _copy_clips(clips, root / "eval-fsdd", by_class=False)
    loaded = load_run(summary.run_dir)
    by_folder = loaded.evaluate(str(folders))
    by_fsdd = loaded.evaluate(str(flat))
    assert by_folder.metrics["num_samples"] == by_fsdd.metrics["num_samples"] == 30
    assert by_folder.accuracy == pytest.approx(by_fsdd.accuracy)
    assert by_folder.loss == pytest.approx(by_fsdd.loss, rel=1e-4)
    assert by_folder.accuracy > 0.4
    # Supports are counted under the model's names: only 2, 5 and 7 have clips.
    support = {name: c["support"] for name, c in by_folder.metrics["per_class"].items()}
    assert {k for k, v in support.items() if v} == {"2", "5", "7"}


def test_evaluate_unknown_class_names_both_sets(run, tmp_path):
    summary, data, _ = run
    clip = next(data.glob("3_*_0.wav"))
    (tmp_path / "three").mkdir()
    shutil.copy(clip, tmp_path / "three" / clip.name)
    with pytest.raises(ValueError, match=r"(?s)\['three'\] are not among the model's classes.*model classes"):
        load_run(summary.run_dir).evaluate(str(tmp_path))


def test_predict_returns_top_k_class_names(run):
    summary, data, _ = run
    wav = data / "4_jackson_0.wav"
    results = load_run(summary.run_dir).predict([wav], top_k=3)
    assert len(results) == 1 and results[0]["source"] == str(wav)
    top = results[0]["top_k"]
    assert len(top) == 3 and all(t["class"] in [str(d) for d in range(10)] for t in top)
    assert [t["class"] for t in top] == [str(t["index"]) for t in top]
    probs = [t["probability"] for t in top]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6


def test_cli_evaluate_json(run, capsys):
    summary, data, _ = run
    assert main(["evaluate", "--checkpoint", str(summary.run_dir), "--data", str(data), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    # FSDD form: the evaluation set is the test split, indices 0-1 here, the run's validation set.
    # bf16 results can differ in the last bit between batch sizes: allow one clip to flip.
    assert metrics["num_samples"] == 100 and metrics["top1"] == pytest.approx(summary.best_val_acc, abs=0.011)


def test_cli_predict_json(run, capsys, tmp_path):
    summary, data, _ = run
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF....WAVEfmt garbage")
    assert main(["predict", "--checkpoint", str(summary.run_dir), "--top-k", "2", "--json",
                 str(data / "6_george_1.wav"), str(bad)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2 and len(lines[0]["top_k"]) == 2 and lines[0]["top_k"][0]["class"] in "0123456789"
    assert lines[1]["source"] == str(bad) and str(bad) in lines[1]["error"]


def test_mixed_formats_train_with_speech_augmentation(tmp_path, fsdd_subset):
    """Stereo, 24-bit, float, 44.1 kHz and 8 kHz files in one class-folder set: all resampled, training works."""
    flat = fsdd_subset(tmp_path / "flat", indices=[5, 6, 7, 8], digits=[0, 1])
    rng = np.random.default_rng(0)
    variants = [("PCM_16", 8000, 1), ("PCM_24", 44100, 1), ("FLOAT", 16000, 2), ("PCM_16", 44100, 2)]
    for i, clip in enumerate(flat):
        wave, rate = sf.read(str(clip), dtype="float64")
        subtype, new_rate, channels = variants[i % len(variants)]
        if new_rate != rate:
            from scipy.signal import resample_poly

            wave = resample_poly(wave, new_rate // np.gcd(new_rate, rate), rate // np.gcd(new_rate, rate))
        if channels == 2:
            wave = np.stack([wave, wave * rng.uniform(0.5, 1.0)], axis=1)
        dest = tmp_path / "ds" / ("zero" if clip.name[0] == "0" else "one")
        dest.mkdir(parents=True, exist_ok=True)
        sf.write(str(dest / f"{clip.stem}.wav"), wave, new_rate, subtype=subtype)
    assert {sf.info(str(p)).samplerate for p in (tmp_path / "ds").rglob("*.wav")} == {8000, 16000, 44100}
    config = TrainConfig(
        model="res8_narrow", data=str(tmp_path / "ds"), audio=dict(AUDIO), augment_args={"mixup": 0.2}, val_split=0.25, epochs=2,
        batch_size=8, optimizer="adamw", lr=3e-3, augment="speech", quiet=True, out=str(tmp_path / "run"),
    )
    summary = train(config)
    assert len(summary.history) == 2 and all(np.isfinite(h["train_loss"]) for h in summary.history)
    assert (tmp_path / "run" / "spectrograms.png").is_file()
    loaded = load_run(tmp_path / "run")
    assert loaded.classes == ["one", "zero"]
    result = loaded.evaluate(str(tmp_path / "ds"))
    assert result.metrics["num_samples"] == 40 and np.isfinite(result.loss)  # no test/ folder: all of it
    info = json.loads((tmp_path / "run" / "data_config.json").read_text())
    assert info["augment"]["time_masks"] == 2 and info["augment"]["mixup"] == 0.2


def test_resume_continues_an_audio_run_exactly(tmp_path, fsdd_subset):
    from resnetkit.engine import TrainingInterrupted

    data = tmp_path / "fsdd"
    fsdd_subset(data, indices=[0, 5, 6], digits=[3, 8])  # 20 training clips: 5 steps per epoch
    common = dict(model="res8_narrow", data=str(data), audio=dict(AUDIO), batch_size=4, optimizer="adamw", lr=3e-3,
                  augment="speech", quiet=True, amp="off", seed=1, epochs=2)
    full = train(TrainConfig(**common, out=str(tmp_path / "full")))
    with pytest.raises(TrainingInterrupted):
        train(TrainConfig(**common, out=str(tmp_path / "half")), callbacks=[StopAtStep(7)])  # mid second epoch
    resumed = train(resume=tmp_path / "half", changes=common)
    assert resumed.history[-1]["step"] == full.history[-1]["step"] == 10
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "half" / "last.pt", weights_only=True)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)


def test_audio_data_needs_one_input_channel(tmp_path, fsdd_subset):
    fsdd_subset(tmp_path / "fsdd", indices=[0, 5], digits=[1, 2])
    with pytest.raises(ValueError, match="1 channel"):
        train(TrainConfig(model="res8_narrow", data=str(tmp_path / "fsdd"), audio=dict(AUDIO), in_chans=3, epochs=1,
                          quiet=True, out=str(tmp_path / "run")))
