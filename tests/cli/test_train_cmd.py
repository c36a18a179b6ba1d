"""`resnetkit train --data FOLDER` picks the recipe of the kind of data it is given."""

from __future__ import annotations

import logging

import pytest
import yaml

from resnetkit.cli.main import main
from resnetkit.engine.inference import load_run

pytest.importorskip("soundfile")


def test_an_audio_folder_without_a_recipe_gets_the_audio_default(fsdd_subset, tmp_path, caplog):
    data = tmp_path / "recordings"
    fsdd_subset(data, indices=[0, 5])  # 100 real clips: index 0 held out (official split)
    caplog.set_level(logging.INFO)
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--epochs", "1", "--quiet", "--out", str(out)]) == 0
    assert "recipe audio_default" in caplog.text
    config = yaml.safe_load((out / "config.yaml").read_text())
    # Not the image default (resnet20 on RGB for 30 epochs): one channel of log-mel features, a time budget.
    assert config["model"] == "resnet20" and config["in_chans"] == 1
    assert config["audio"]["kind"] == "logmel" and config["audio"]["hop_length"] == 160
    assert config["time_budget_min"] == pytest.approx(2.7) and config["epochs"] == 1  # the flag still wins
    assert (out / "spectrograms.png").is_file()
    # The front end's normalization is the run's: loading it for predict, serve or explain applies it.
    assert config["audio"]["normalize"] == "utterance"
    features = load_run(out).input_spec.features
    assert features.normalize == "utterance" and features.top_db == 40.0  # the decibels' floor travels too
    assert config["augment_args"]["eq_db"] == 12.0
    assert config["label_smoothing"] == pytest.approx(0.1)
    cmvn = tmp_path / "cmvn"
    assert main(["train", "--data", str(data), "--epochs", "1", "--quiet", "--out", str(cmvn), "--normalize", "cmvn",
                 "--top-db", "60"]) == 0
    features = load_run(cmvn).input_spec.features
    assert features.normalize == "cmvn" and features.top_db == 60.0
