"""Fixtures for engine tests: small real CIFAR-10 folders (copied from the shared data)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CLASSES = ("airplane", "automobile", "cat", "frog", "ship")


def _copy_subset(src: Path, dst: Path, classes, start: int, count: int) -> None:
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
    _copy_subset(src, root / "train", CLASSES, 0, 80)
    _copy_subset(src, root / "val", CLASSES, 80, 20)
    return root
