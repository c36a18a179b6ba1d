"""Image folders and bad files: every problem is named with its path."""

from __future__ import annotations

import logging
import shutil

import pytest
import torch

from resnetkit.data import SkippedFile
from resnetkit.data.images import ImageDataError, ImageFiles, load_folder, resolve_image_data, scan_image_folder
from resnetkit.engine import TrainConfig, train


@pytest.fixture
def small_folder(cifar_folder, tmp_path):
    root = tmp_path / "data"
    for name in ("cat", "ship"):
        (root / name).mkdir(parents=True)
        for f in sorted((cifar_folder / "train" / name).glob("*.jpg"))[:12]:
            shutil.copy(f, root / name / f.name)
    return root


def _corrupt(root):
    good = sorted((root / "cat").glob("*.jpg"))[0].read_bytes()
    (root / "cat" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "cat" / "empty.jpg").write_bytes(b"")
    (root / "ship" / "notes.jpg").write_text("this is a text file, not a JPEG")
    return {"truncated.jpg", "empty.jpg", "notes.jpg"}


def test_corrupt_files_are_skipped_and_named(small_folder, caplog):
    bad = _corrupt(small_folder)
    with caplog.at_level(logging.WARNING):
        data = load_folder(small_folder)
    assert len(data) == 24  # only the good images, none given a label
    assert {s.path.split("/")[-1] for s in data.skipped} == bad
    reasons = {s.path.split("/")[-1]: s.reason for s in data.skipped}
    assert "truncated" in reasons["truncated.jpg"] and "empty" in reasons["empty.jpg"]
    assert "not an image" in reasons["notes.jpg"]
    assert "skipped 3 unreadable file(s)" in caplog.text and "truncated.jpg" in caplog.text


@pytest.mark.parametrize("name,content,match", [
    ("truncated.jpg", "half", "corrupt or truncated"),
    ("empty.jpg", b"", "empty file"),
    ("notes.jpg", b"plain text", "not an image"),
])
def test_stop_on_corrupt_names_the_file(small_folder, name, content, match):
    path = small_folder / "cat" / name
    if content == "half":
        good = sorted((small_folder / "cat").glob("*.jpg"))[0].read_bytes()
        content = good[: len(good) // 2]
    path.write_bytes(content)
    with pytest.raises(ImageDataError, match=rf"{name}.*{match}"):
        load_folder(small_folder, on_corrupt="stop")


def test_corrupt_files_on_the_disk_path_are_skipped(small_folder):
    _corrupt(small_folder)
    data = load_folder(small_folder, in_memory=False)
    assert isinstance(data, ImageFiles)
    items = [data[i] for i in range(len(data))]
    skipped = [item for item in items if isinstance(item, SkippedFile)]  # what a worker hands back
    assert len(skipped) == 3 and all(s.path in s.reason for s in skipped)
    stopping = ImageFiles(data.samples, data.classes, on_corrupt="stop")
    idx = next(i for i, (p, _) in enumerate(data.samples) if p.endswith("empty.jpg"))
    assert "empty.jpg" in stopping[idx].message  # handed back by the worker, raised by the batch source
    # Through DataLoader workers: the file's own message, not a worker's traceback.
    from resnetkit.data import BatchOptions
    from resnetkit.data.specs import ImageInputSpec

    spec = ImageInputSpec(3, (32, 32), (0.5,) * 3, (0.25,) * 3)
    source = stopping.batches(spec, BatchOptions(train=False, batch_size=4, workers=1))
    with pytest.raises(ImageDataError, match=r"empty.jpg.*stopping: --on-corrupt stop") as info:
        list(source.epoch(0))
    assert "Traceback" not in str(info.value) and "worker" not in str(info.value)


def test_empty_class_folder_is_named(small_folder):
    (small_folder / "dog").mkdir()
    (small_folder / "dog" / "readme.txt").write_text("no images here")
    with pytest.raises(ImageDataError, match=r"class folder .*dog has no image files"):
        scan_image_folder(small_folder)


def test_folder_without_classes_and_missing_folder(tmp_path):
    with pytest.raises(ImageDataError, match="no class subfolders"):
        scan_image_folder(tmp_path)
    with pytest.raises(ImageDataError, match="no such folder, and not a known data set name"):
        resolve_image_data(str(tmp_path / "nowhere"))


def test_split_is_stratified_and_seeded(cifar_folder):
    a = resolve_image_data(str(cifar_folder / "train"), val_split=0.25, seed=1)
    b = resolve_image_data(str(cifar_folder / "train"), val_split=0.25, seed=1)
    assert len(a.val) == 100 and len(a.train) == 300
    assert torch.equal(a.val.labels, b.val.labels) and torch.equal(a.val.images, b.val.images)
    assert torch.bincount(a.val.labels).tolist() == [20] * 5


def test_train_val_layout_and_mixed_sizes(cifar_folder, tmp_path):
    from PIL import Image

    splits = resolve_image_data(str(cifar_folder))
    assert (len(splits.train), len(splits.val)) == (400, 100)
    root = tmp_path / "mixed"
    shutil.copytree(cifar_folder / "val", root)
    Image.new("RGB", (40, 48), "red").save(root / "cat" / "big.png")
    data = load_folder(root)
    assert data.images.shape[1:] == (3, 32, 32) and len(data) == 101


def test_checkpoint_with_other_data_cannot_resume(tmp_path, small_folder):
    train(TrainConfig(data="digits", epochs=1, quiet=True, out=str(tmp_path / "run")))
    with pytest.raises(ValueError, match=r"cannot resume .*run with other settings: data=.*data' \(the run has 'digits'\)"):
        train(resume=tmp_path / "run", changes={"data": str(small_folder), "quiet": True})


def test_checkpoint_with_other_classes_cannot_resume(tmp_path, small_folder):
    train(TrainConfig(data=str(small_folder), epochs=1, quiet=True, out=str(tmp_path / "run")))
    shutil.copytree(small_folder / "cat", small_folder / "dog")  # the folder now has 3 classes
    with pytest.raises(ValueError, match=r"cannot resume .*trained on classes \['cat', 'ship'\].*\['cat', 'dog', 'ship'\]"):
        train(resume=tmp_path / "run")


def test_named_dataset_offline_says_what_to_put_where(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(ImageDataError, match=r"(?s)could not download cifar10.*cifar-10-python.tar.gz.*--data PATH"):
        resolve_image_data("cifar10", cache_dir=tmp_path)
