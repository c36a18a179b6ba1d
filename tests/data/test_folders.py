"""Data folders that would hang or break a run: links out of the folder, names that are not text, endless scans,
fewer images than one batch, and class names matplotlib would read as math. Each is built here from real images."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time

import pytest
from PIL import Image

from resnetkit.cli.main import main
from resnetkit.data.folders import scan_class_folders
from resnetkit.engine import TrainConfig, train

EXT = (".jpg",)


@pytest.fixture
def photos(data_path):
    """Ten real CIFAR-10 JPEGs of each of two classes."""
    src = data_path("cifar10/train")
    return {name: sorted((src / name).glob("*.jpg"))[:10] for name in ("cat", "ship")}


def _folder(root, photos, names=None, size=None):
    for (cls, files), name in zip(photos.items(), names or photos):
        (root / name).mkdir(parents=True)
        for f in files:
            if size:
                Image.open(f).resize((size, size)).save(root / name / f.name)
            else:
                shutil.copy(f, root / name / f.name)
    return root


def test_a_class_folder_linked_to_the_root_of_the_disk_is_refused_at_once(photos, tmp_path):
    data = _folder(tmp_path / "data", photos)
    os.symlink("/", data / "everything")
    started = time.monotonic()
    with pytest.raises(ValueError, match=r"class folder .*everything is a link to /, which contains the data folder"):
        scan_class_folders(data, EXT)
    assert time.monotonic() - started < 5
    (data / "everything").unlink()
    os.symlink(tmp_path, data / "parent")  # an ancestor of the data folder: the same loop
    with pytest.raises(ValueError, match="parent is a link to .*contains the data folder itself"):
        scan_class_folders(data, EXT)


def test_a_class_folder_linked_elsewhere_is_read_and_named(photos, tmp_path, caplog):
    data = _folder(tmp_path / "data", {"cat": photos["cat"]})
    elsewhere = _folder(tmp_path / "elsewhere", {"ship": photos["ship"]})
    os.symlink(elsewhere / "ship", data / "ship")
    with caplog.at_level(logging.WARNING):
        scan = scan_class_folders(data, EXT)
    assert scan.classes == ["cat", "ship"] and len(scan.samples) == 20
    assert f"{data / 'ship'} is a link to {elsewhere / 'ship'}, outside {data}" in caplog.text


def test_the_scan_is_bounded(photos, tmp_path, monkeypatch):
    data = _folder(tmp_path / "data", photos)
    monkeypatch.setenv("RESNETKIT_MAX_SCAN_FILES", "15")
    with pytest.raises(ValueError, match=r"more than 15 files under its class folders .*RESNETKIT_MAX_SCAN_FILES"):
        scan_class_folders(data, EXT)


def test_a_class_folder_name_that_is_not_utf8_is_refused_before_training(photos, tmp_path, capsys):
    data = _folder(tmp_path / "data", photos, names=["cat", os.fsdecode(b"\xff\xfeship")])
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--epochs", "1", "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert r"the class folder b'\xff\xfeship' has a name that is not valid UTF-8" in err
    assert not (out / "last.pt").exists()  # refused up front, not after an epoch


@pytest.mark.timeout(180)
def test_fewer_images_than_one_batch_still_train_from_files(photos, tmp_path):
    # 128-px images are read by DataLoader workers (not held in memory); 16 training images, batch 64.
    data = _folder(tmp_path / "data", photos, size=128)
    train(TrainConfig(data=str(data), model="resnet20", epochs=2, batch_size=64, val_split=0.2, quiet=True,
                      out=str(tmp_path / "run"), img_size=32))
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[-1].split(",")[0] == "2"  # header + epochs 1 and 2, then it stopped


@pytest.mark.timeout(180)
def test_an_epoch_without_a_single_readable_batch_is_an_error(photos, tmp_path, capsys):
    data = tmp_path / "data"
    _folder(data / "train", photos, size=128)
    _folder(data / "val", photos, size=128)
    for f in (data / "train").rglob("*.jpg"):  # the header survives (so the files are read in workers), the pixels not
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    out = tmp_path / "run"
    code = main(["train", "--data", str(data), "--epochs", "3", "--batch-size", "8", "--img-size", "32", "--quiet",
                 "--out", str(out)])
    assert code == 2
    assert "epoch 1 gave no training batch (20 training samples, batch size 8)" in capsys.readouterr().err


def test_class_names_with_dollar_signs_are_text_everywhere(photos, tmp_path):
    names = ["$x^$", "cost $\\undefinedmacro$"]
    data = _folder(tmp_path / "data", photos, names=names)
    out = tmp_path / "run"
    train(TrainConfig(data=str(data), model="resnet20", epochs=1, batch_size=8, val_split=0.3, quiet=True, out=str(out)))
    assert json.loads((out / "classes.json").read_text()) == sorted(names)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["per_class"]) == set(names)
    for png in ("curves.png", "confusion.png", "examples.png"):
        assert (out / png).stat().st_size > 1000


def test_a_plot_that_fails_costs_neither_metrics_nor_the_run(photos, tmp_path, monkeypatch, caplog):
    import resnetkit.report.plots as plots

    def broken(*args, **kwargs):
        raise ValueError("matplotlib could not lay this out")

    monkeypatch.setattr(plots, "plot_confusion", broken)
    data = _folder(tmp_path / "data", photos)
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING):
        train(TrainConfig(data=str(data), model="resnet20", epochs=1, batch_size=8, val_split=0.3, quiet=True,
                          out=str(out)))
    assert (out / "metrics.json").exists() and (out / "curves.png").exists()
    assert not (out / "confusion.png").exists()
    assert "confusion.png was not drawn (ValueError: matplotlib could not lay this out)" in caplog.text
