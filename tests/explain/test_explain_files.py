"""Explaining files of a trained run: images drawn as the model sees them, audio as its log-mel spectrogram."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from resnetkit.engine import load_run
from resnetkit.explain import class_index, explain_inputs


def test_image_files_give_maps_top_k_and_png(image_run, data_path, tmp_path):
    run = load_run(image_run)
    files = sorted(data_path("cifar10/train/cat").glob("*.jpg"))[100:102]
    results = explain_inputs(run, files + [b"not an image"], top_k=3)
    good, bad = results[:2], results[2]
    assert bad.error and "not an image" in bad.error
    predicted = run.predict(files, top_k=3)
    for result, expected in zip(good, predicted):
        assert result.error is None and result.style == "image"
        assert result.cam.shape == (32, 32) and result.background.shape == (32, 32, 3)
        assert 0 <= result.background.min() and result.background.max() <= 1
        assert [t["class"] for t in result.top_k] == [t["class"] for t in expected["top_k"]]
        assert result.target == result.top_k[0]["class"]
    path = good[0].save(tmp_path / "cat.png")
    assert Image.open(path).size[0] > 800
    assert good[0].png()[:8] == b"\x89PNG\r\n\x1a\n"


def test_target_by_name_or_index(image_run, data_path):
    run = load_run(image_run)
    file = sorted(data_path("cifar10/train/ship").glob("*.jpg"))[100]
    (by_name,) = explain_inputs(run, [file], target="frog", method="gradcam++")
    (by_index,) = explain_inputs(run, [file], target=str(run.classes.index("frog")), method="gradcam++")
    assert by_name.target == by_index.target == "frog"
    assert 0 < by_name.target_probability < 1
    np.testing.assert_allclose(by_name.cam, by_index.cam)
    assert class_index(["0", "1", "2"], "2") == 2  # FSDD's classes are digits: names first
    with pytest.raises(ValueError, match="unknown target class 'zebra'.*airplane"):
        explain_inputs(run, [file], target="zebra")


def test_audio_is_drawn_on_its_log_mel_spectrogram(audio_run, fsdd_recordings, tmp_path):
    run = load_run(audio_run)
    clip = fsdd_recordings / "7_nicolas_3.wav"
    (result,) = explain_inputs(run, [io.BytesIO(clip.read_bytes())])
    features = run.input_spec.features
    assert result.style == "spectrogram"
    assert result.cam.shape == result.background.shape == (features.n_mels, features.num_frames)
    assert result.axes["ylabel"] == "frequency (Hz)" and result.axes["duration_s"] == pytest.approx(1.0)
    labels = [label for _, label in result.axes["yticks"]]
    assert "1k" in labels and labels == sorted(labels, key=lambda s: float(s.rstrip("k")) * (1000 if "k" in s else 1))
    assert result.background.max() > result.background.min() + 20, "dB values, not normalized features"
    assert result.save(tmp_path / "clip.png").stat().st_size > 10_000


def test_plot_explanation_checks_its_arguments(tmp_path):
    from resnetkit.report.plots import plot_explanation

    image, cam = np.zeros((8, 8, 3)), np.zeros((8, 8))
    with pytest.raises(ValueError, match="must match"):
        plot_explanation(tmp_path / "x.png", image, np.zeros((4, 4)), [("a", 1.0)])
    with pytest.raises(ValueError, match="style"):
        plot_explanation(tmp_path / "x.png", image, cam, [("a", 1.0)], style="video")
    with pytest.raises(ValueError, match="at least one"):
        plot_explanation(tmp_path / "x.png", image, cam, [])
    assert plot_explanation(tmp_path / "x.png", image, cam, [("a", 0.7), ("b", 0.3)], target="b").exists()
