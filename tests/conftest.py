"""Shared fixtures.

Real data sets live outside the repository (never copy them in). ``RESNETKIT_DATA`` points at
the folder that holds them; by default it is ``../shared/data`` beside the repository root.
Tests that need data skip when it is absent, or fail when ``RESNETKIT_REQUIRE_DATA=1``
(CI machines that are supposed to have the data).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOT = REPO_ROOT.parent / "shared" / "data"


def _missing_data(reason: str) -> None:
    # Skipping silently on a machine that should have the data would hide a broken setup.
    if os.environ.get("RESNETKIT_REQUIRE_DATA") == "1":
        pytest.fail(f"{reason} (RESNETKIT_REQUIRE_DATA=1, so this is an error)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """Folder with the real data sets: ``$RESNETKIT_DATA`` or ``<repo>/../shared/data``."""
    root = Path(os.environ.get("RESNETKIT_DATA", DEFAULT_DATA_ROOT)).expanduser()
    if not root.is_dir():
        _missing_data(f"real data not found at {root}; set RESNETKIT_DATA to the folder holding the data sets")
    return root


@pytest.fixture(scope="session")
def data_path(data_root: Path) -> Callable[[str], Path]:
    """``data_path("fsdd/recordings")``: a path under ``data_root``, skipping (or failing) when it is missing."""

    def lookup(relative: str) -> Path:
        path = data_root / relative
        if not path.exists():
            _missing_data(f"{relative} not found under {data_root}")
        return path

    return lookup


@pytest.fixture(scope="session")
def fsdd_recordings(data_path) -> Path:
    """The real FSDD recordings folder (``{digit}_{speaker}_{index}.wav``, 8 kHz mono)."""
    return data_path("fsdd/recordings")


@pytest.fixture(scope="session")
def fsdd_subset(fsdd_recordings) -> Callable[..., list[Path]]:
    """``fsdd_subset(dest, indices, digits=range(10), speakers=None)``: copy FSDD recordings into ``dest``.

    Tests build their small data sets in ``tmp_path`` this way; the real data is never
    modified and never copied into the repository.
    """
    import shutil

    def copy(dest: Path, indices, digits=range(10), speakers=None) -> list[Path]:
        dest.mkdir(parents=True, exist_ok=True)
        wanted = set(indices)
        copied = []
        for path in sorted(fsdd_recordings.glob("*.wav")):
            digit, speaker, index = path.stem.split("_")
            if int(index) in wanted and int(digit) in digits and (speakers is None or speaker in speakers):
                copied.append(Path(shutil.copy(path, dest / path.name)))
        return copied

    return copy


CIFAR_CLASSES = ("airplane", "automobile", "cat", "frog", "ship")


def _copy_subset(src: Path, dst: Path, classes, start: int, count: int) -> None:
    import shutil

    for name in classes:
        files = sorted((src / name).glob("*.jpg"))[start : start + count]
        (dst / name).mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(f, dst / name / f.name)


@pytest.fixture(scope="session")
def cifar_folder(data_path, tmp_path_factory) -> Path:
    """An ImageFolder layout with train/ (5 classes x 80) and val/ (5 x 20) real CIFAR-10 images."""
    src = data_path("cifar10/train")
    root = tmp_path_factory.mktemp("cifar5")
    _copy_subset(src, root / "train", CIFAR_CLASSES, 0, 80)
    _copy_subset(src, root / "val", CIFAR_CLASSES, 80, 20)
    return root


# -- small trained runs, shared by tests/cli, tests/explain and tests/serve (trained once per session) --
# tests/export/conftest.py has larger ones of the same names for its parity checks.

TINY_AUDIO = {"sample_rate": 8000, "kind": "logmel", "n_fft": 256, "win_length": 240, "hop_length": 80}


@pytest.fixture(scope="session")
def image_run(data_path, tmp_path_factory) -> Path:
    """resnet20 trained for 2 epochs on 5 CIFAR-10 classes x 40 real images (a few seconds)."""
    from resnetkit.engine import TrainConfig, train

    src = data_path("cifar10/train")
    root = tmp_path_factory.mktemp("image-run")
    _copy_subset(src, root / "data" / "train", CIFAR_CLASSES, 0, 40)
    _copy_subset(src, root / "data" / "val", CIFAR_CLASSES, 40, 10)
    train(TrainConfig(data=str(root / "data"), model="resnet20", epochs=2, batch_size=32, lr=0.05, quiet=True,
                      out=str(root / "run"), seed=0))
    return root / "run"


@pytest.fixture(scope="session")
def audio_run(fsdd_subset, tmp_path_factory) -> Path:
    """res8 on log-mel features of 100 real FSDD clips, 2 epochs (a few seconds)."""
    pytest.importorskip("soundfile")
    from resnetkit.engine import TrainConfig, train

    root = tmp_path_factory.mktemp("audio-run")
    fsdd_subset(root / "fsdd", indices=[0, 5, 6], speakers=("george", "jackson", "lucas"))
    train(TrainConfig(model="res8", data=str(root / "fsdd"), audio=dict(TINY_AUDIO), epochs=2, batch_size=16,
                      optimizer="adamw", lr=3e-3, augment="none", seed=0, quiet=True, out=str(root / "run")))
    return root / "run"


# -- published weights without a download ----------------------------------------------------------


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty torch.hub cache for this test: ``$TORCH_HOME`` (files go to ``hub/checkpoints``)."""
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


@pytest.fixture
def publish_weights(torch_home, monkeypatch) -> Callable:
    """``publish_weights(model, state_dict, tag=None)``: a stand-in for a published file, no network.

    The state dict is saved, named as torchvision names its files (``<model>-<sha256[:8]>.pth``)
    and put in the test's torch.hub cache; the entry of ``model``/``tag`` (default: its default)
    then points at that name, so the hash check passes for this file exactly. Everything else of
    the entry (classes, preprocessing, accuracy) stays the publisher's. Returns the entry.
    """
    import dataclasses
    import hashlib

    import torch

    from resnetkit.models import pretrained

    real_entries = pretrained._entries
    published: dict[tuple[str, str], pretrained.PretrainedWeights] = {}

    def entries(name: str):
        return tuple(published.get((name, w.tag), w) for w in real_entries(name))

    def publish(model: str, state: dict, tag: str | None = None) -> pretrained.PretrainedWeights:
        entry = pretrained.pretrained_weights(model, tag or True)
        checkpoints = torch_home / "hub" / "checkpoints"
        checkpoints.mkdir(parents=True, exist_ok=True)
        staging = checkpoints / "staging.pth"
        torch.save(state, staging)
        prefix = hashlib.sha256(staging.read_bytes()).hexdigest()[:8]
        name = f"{model}-{prefix}.pth"
        staging.rename(checkpoints / name)
        published[(model, entry.tag)] = dataclasses.replace(
            entry, url=f"https://download.pytorch.org/models/{name}", sha256_prefix=prefix)
        monkeypatch.setattr(pretrained, "_entries", entries)
        return published[(model, entry.tag)]

    return publish


# -- multi-label tasks built from the real data ------------------------------------------------------

MOSAIC_CLASSES = ("airplane", "automobile", "cat", "frog")


def write_cifar_mosaics(src: Path, dest: Path, count: int, seed: int = 0, split_every: int = 0) -> Path:
    """``count`` mosaics of two real CIFAR-10 images side by side (32 x 64), labelled with both classes.

    The two halves are drawn independently from MOSAIC_CLASSES, so a mosaic has one or two
    labels; ``labels.csv`` lists ``path,label`` with ``;`` between the labels (and a ``split``
    column, every ``split_every``-th row val, when asked). Returns the CSV's path.
    """
    import random

    from PIL import Image

    rng = random.Random(seed)
    files = {c: sorted((src / c).glob("*.jpg"))[:200] for c in MOSAIC_CLASSES}
    dest.mkdir(parents=True, exist_ok=True)
    lines = ["path,label" + (",split" if split_every else "")]
    for i in range(count):
        left, right = rng.choice(MOSAIC_CLASSES), rng.choice(MOSAIC_CLASSES)
        mosaic = Image.new("RGB", (64, 32))
        mosaic.paste(Image.open(rng.choice(files[left])).convert("RGB"), (0, 0))
        mosaic.paste(Image.open(rng.choice(files[right])).convert("RGB"), (32, 0))
        mosaic.save(dest / f"mosaic{i:04d}.png")
        split = ("," + ("val" if i % split_every == 0 else "train")) if split_every else ""
        lines.append(f"mosaic{i:04d}.png,{';'.join(sorted({left, right}))}{split}")
    (dest / "labels.csv").write_text("\n".join(lines) + "\n")
    return dest / "labels.csv"


@pytest.fixture(scope="session")
def cifar_mosaics(data_path, tmp_path_factory) -> Path:
    """labels.csv of 480 two-image CIFAR-10 mosaics (one or two of 4 labels each)."""
    return write_cifar_mosaics(data_path("cifar10/train"), tmp_path_factory.mktemp("mosaics"), 480)


@pytest.fixture(scope="session")
def multilabel_run(cifar_mosaics, tmp_path_factory) -> Path:
    """resnet20 trained multi-label on the mosaics for 3 epochs (calibrated, thresholds tuned)."""
    from resnetkit.engine import TrainConfig, train

    out = tmp_path_factory.mktemp("multilabel-run")
    train(TrainConfig(data=str(cifar_mosaics), model="resnet20", epochs=3, batch_size=32, lr=0.05, val_split=0.25,
                      quiet=True, out=str(out / "run"), seed=0))
    return out / "run"


@pytest.fixture(scope="session")
def fsdd_pairs(fsdd_recordings, tmp_path_factory) -> Path:
    """labels.csv of 120 clips that join two real FSDD recordings (digits 0-3), labelled with both digits."""
    import random

    import numpy as np
    import soundfile as sf

    rng = random.Random(0)
    digits = ("0", "1", "2", "3")
    clips = {d: sorted(fsdd_recordings.glob(f"{d}_jackson_*.wav"))[:20] + sorted(fsdd_recordings.glob(f"{d}_george_*.wav"))[:20]
             for d in digits}
    dest = tmp_path_factory.mktemp("fsdd-pairs")
    lines = ["path,label"]
    for i in range(120):
        first, second = rng.choice(digits), rng.choice(digits)
        a, rate = sf.read(rng.choice(clips[first]), dtype="float32")
        b, _ = sf.read(rng.choice(clips[second]), dtype="float32")
        sf.write(dest / f"pair{i:03d}.wav", np.concatenate([a, np.zeros(400, np.float32), b]), rate)
        lines.append(f"pair{i:03d}.wav,{';'.join(sorted({first, second}))}")
    (dest / "labels.csv").write_text("\n".join(lines) + "\n")
    return dest / "labels.csv"
