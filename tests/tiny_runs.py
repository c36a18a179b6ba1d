"""Small trained runs shared by the explain and serve tests (trained once per session, in tmp).

Imported by tests/explain/conftest.py and tests/serve/conftest.py; the cache makes both
directories share one run of each kind.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_CACHE: dict[str, Path] = {}

CIFAR_CLASSES = ("airplane", "automobile", "cat", "frog", "ship")
AUDIO = {"sample_rate": 8000, "kind": "logmel", "n_fft": 256, "win_length": 240, "hop_length": 80}


@pytest.fixture(scope="session")
def image_run(data_path, tmp_path_factory) -> Path:
    """resnet20 trained for 2 epochs on 5 CIFAR-10 classes x 40 real images (a few seconds)."""
    if "image" not in _CACHE:
        import shutil

        from resnetkit.engine import TrainConfig, train

        src = data_path("cifar10/train")
        root = tmp_path_factory.mktemp("image-run")
        for split, start, count in (("train", 0, 40), ("val", 40, 10)):
            for name in CIFAR_CLASSES:
                (root / "data" / split / name).mkdir(parents=True)
                for f in sorted((src / name).glob("*.jpg"))[start : start + count]:
                    shutil.copy(f, root / "data" / split / name / f.name)
        config = TrainConfig(data=str(root / "data"), model="resnet20", epochs=2, batch_size=32, lr=0.05,
                             quiet=True, out=str(root / "run"), seed=0)
        train(config)
        _CACHE["image"] = root / "run"
    return _CACHE["image"]


@pytest.fixture(scope="session")
def audio_run(fsdd_subset, tmp_path_factory) -> Path:
    """res8 on log-mel features of 100 real FSDD clips, 2 epochs (a few seconds)."""
    pytest.importorskip("soundfile")
    if "audio" not in _CACHE:
        from resnetkit.engine import TrainConfig, train

        root = tmp_path_factory.mktemp("audio-run")
        fsdd_subset(root / "fsdd", indices=[0, 5, 6], speakers=("george", "jackson", "lucas"))
        config = TrainConfig(model="res8", data=str(root / "fsdd"), audio=dict(AUDIO), epochs=2, batch_size=16,
                             optimizer="adamw", lr=3e-3, augment="none", seed=0, quiet=True, out=str(root / "run"))
        train(config)
        _CACHE["audio"] = root / "run"
    return _CACHE["audio"]
