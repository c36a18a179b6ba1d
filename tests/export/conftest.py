"""Small trained runs to export: ResNet-20 on 5 CIFAR-10 classes, res8 on FSDD clips."""

from __future__ import annotations

import pytest

from resnetkit.engine import TrainConfig, train

AUDIO = {"sample_rate": 8000, "kind": "logmel", "n_fft": 256, "win_length": 240, "hop_length": 80}


@pytest.fixture(scope="session")
def image_run(cifar_folder, tmp_path_factory):
    """resnet20 trained 4 epochs on 400 real CIFAR-10 images of 5 classes (validation: 100 images)."""
    out = tmp_path_factory.mktemp("export-image") / "cifar5"
    train(TrainConfig(data=str(cifar_folder), model="resnet20", epochs=4, batch_size=32, lr=0.05, quiet=True,
                      out=str(out), seed=0))
    return out


@pytest.fixture(scope="session")
def audio_data(fsdd_subset, tmp_path_factory):
    """FSDD clips: index 0 of every digit and speaker is the held-out split (50 clips), 5-7 train (150)."""
    data = tmp_path_factory.mktemp("export-audio") / "fsdd"
    fsdd_subset(data, indices=[0, 5, 6, 7])
    return data


@pytest.fixture(scope="session")
def audio_run(audio_data, tmp_path_factory):
    """res8 on log-mel features of 8 kHz clips, trained 3 epochs: enough for logits with real margins."""
    out = tmp_path_factory.mktemp("export-audio-run") / "res8"
    train(TrainConfig(model="res8", data=str(audio_data), audio=dict(AUDIO), epochs=3, batch_size=16,
                      optimizer="adamw", lr=3e-3, augment="none", seed=0, quiet=True, out=str(out)))
    return out
