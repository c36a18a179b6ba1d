"""Bad options and bad files get a message that names them; a diverged run saves nothing bad."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from resnetkit import TrainConfig, load_run, train
from resnetkit.cli.main import main
from resnetkit.data.image_io import ImageDataError, read_image
from resnetkit.engine import TrainingDiverged


@pytest.mark.parametrize("flags,message", [
    (["--grad-clip", "-1"], "grad_clip must be a finite number > 0, got -1"),
    (["--lr", "nan"], "lr must be a finite number > 0, got nan"),
    (["--lr", "inf"], "lr must be a finite number > 0, got inf"),
    (["--label-smoothing", "nan"], "label_smoothing must be a finite number >= 0 and < 1, got nan"),
    (["--img-size", "0"], "img_size must be >= 1, got 0"),
    (["--device", "tpu"], "device must be auto, cpu, cuda or cuda:N; got 'tpu'"),
    (["--weight-decay", "-0.1"], "weight_decay must be a finite number >= 0"),
    (["--epochs", "0"], "epochs must be >= 1, got 0"),
    (["--ema-decay", "1.5"], "ema_decay must be a finite number > 0 and < 1"),
    (["--momentum", "inf"], "momentum must be a finite number >= 0 and < 1"),
    (["--val-split", "1"], "val_split must be a finite number > 0 and < 1"),
    (["--model-arg", "width_mult=-2"], "width_mult"),
])
def test_every_option_is_checked_before_any_work(flags, message, tmp_path, capsys):
    assert main(["train", "--quiet", "--out", str(tmp_path / "run"), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_divergence_never_writes_a_non_finite_checkpoint(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="non-finite|became"):
        train(TrainConfig(data="digits", epochs=3, lr=60, quiet=True, device="cpu", out=str(out)))
    for name in ("last.pt", "best.pt"):
        if (out / name).exists():
            state = torch.load(out / name, weights_only=True)
            assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point()), name
    assert not (out / "metrics.json").exists()


def test_one_class_is_refused(tmp_path, cifar_folder, capsys):
    import shutil

    shutil.copytree(cifar_folder / "train" / "cat", tmp_path / "one" / "cat")
    assert main(["train", "--data", str(tmp_path / "one"), "--quiet", "--out", str(tmp_path / "run")]) == 2
    assert "has one class (cat); a classifier needs at least two" in capsys.readouterr().err


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    ramp = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    with Image.open(path) as img:
        assert img.mode.startswith("I")  # a real 16-bit PNG
    gray = read_image(path, 1)[0].float()
    expected = torch.from_numpy(ramp.astype(np.float64) / 257.0).float()
    assert (gray - expected).abs().max() <= 0.5 + 1e-6
    assert (gray == 255).float().mean() < 0.01  # before: 99.6% white
    rgb = read_image(path, 3)
    assert rgb.shape == (3, 64, 64) and torch.equal(rgb[0], rgb[2])


def test_huge_images_are_bad_files_with_the_limit(tmp_path, monkeypatch, cifar_folder):
    monkeypatch.setenv("RESNETKIT_MAX_IMAGE_PIXELS", "2000")  # a small limit stands in for 14000x14000
    big = tmp_path / "big.png"
    Image.new("RGB", (50, 50), "white").save(big)
    with pytest.raises(ImageDataError, match=r"big.png: 50x50 = 2,500 pixels, above the limit of 2,000 pixels"):
        read_image(big)
    # --on-corrupt skip leaves it out of training and names it; predict reports it per file.
    import shutil

    data = tmp_path / "data"
    for cls in ("cat", "ship"):
        shutil.copytree(cifar_folder / "val" / cls, data / cls)
    shutil.copy(big, data / "cat" / "big.png")
    from resnetkit.data import DataRequest, resolve_data

    splits = resolve_data(DataRequest(data=str(data), val_split=0.25))
    assert [s.path.endswith("big.png") for s in splits.train.skipped] == [True]


def test_pillow_bomb_error_is_a_bad_file(tmp_path):
    # Above twice Pillow's own limit, Pillow raises before our check: still a named bad file.
    path = tmp_path / "bomb.png"
    Image.new("1", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    import struct
    import zlib

    data[16:24] = struct.pack(">II", 14000, 14000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    with pytest.raises(ImageDataError, match=r"bomb.png: .*(limit|pixels)"):
        read_image(path)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("agree") / "run"
    return train(TrainConfig(data="digits", epochs=2, quiet=True, device="cpu", out=str(out), ema_decay=0.9)).run_dir


def test_metrics_json_is_what_evaluate_says(digits_run, capsys):
    """One path for both: metrics.json and `evaluate --json` on the same data and checkpoint agree."""
    recorded = json.loads((digits_run / "metrics.json").read_text())
    folder = digits_run.parent / "digits-val"
    run = load_run(digits_run)
    from resnetkit.data.images import resolve_image_data

    val = resolve_image_data("digits", seed=0).val  # the run's own validation split
    result = run.evaluate(val)
    assert result.metrics["top1"] == recorded["top1"] and result.metrics["inference"] == recorded["inference"]
    assert math.isclose(result.metrics["loss"], recorded["loss"], rel_tol=1e-6)
    assert result.metrics["confusion_matrix"] == recorded["confusion_matrix"]
    del folder


def test_evaluate_json_is_strict_json_with_skipped_files(digits_run, cifar_folder, tmp_path, capsys):
    data = tmp_path / "eval"
    (data / "3").mkdir(parents=True)
    img = np.asarray(Image.open(sorted((cifar_folder / "val" / "cat").glob("*.jpg"))[0]).convert("L").resize((8, 8)))
    Image.fromarray(img).save(data / "3" / "a.png")
    (data / "3" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert main(["evaluate", "--checkpoint", str(digits_run), "--data", str(data), "--json"]) == 0
    text = capsys.readouterr().out
    metrics = json.loads(text, parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))
    assert [s["path"].endswith("broken.png") for s in metrics["skipped"]] == [True]
    assert metrics["num_samples"] == 1


def test_zero_byte_and_truncated_checkpoints_are_named(digits_run, tmp_path, capsys):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    assert main(["evaluate", "--checkpoint", str(empty), "--data", "digits"]) == 2
    assert f"{empty} is empty (0 bytes); expected a resnetkit run checkpoint" in capsys.readouterr().err
    cut = tmp_path / "cut.pt"
    cut.write_bytes((digits_run / "last.pt").read_bytes()[:5000])
    assert main(["predict", "--checkpoint", str(cut), "x.png"]) == 2
    assert f"cannot read {cut}" in capsys.readouterr().err


def test_files_skipped_by_dataloader_workers_are_listed_in_evaluate_json(digits_run, cifar_folder, tmp_path, capsys):
    # 128-px images are decoded in DataLoader workers (not in memory): their skips happened in
    # another process and were only logged, while the in-memory path listed them.
    data = tmp_path / "eval"
    (data / "3").mkdir(parents=True)
    for i, src in enumerate(sorted((cifar_folder / "val" / "cat").glob("*.jpg"))[:3]):
        Image.open(src).convert("L").resize((128, 128)).save(data / "3" / f"{i}.png")
    good = (data / "3" / "0.png").read_bytes()
    (data / "3" / "broken.png").write_bytes(good[: len(good) // 2])  # a readable header, truncated pixels
    assert main(["evaluate", "--checkpoint", str(digits_run), "--data", str(data), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert [s["path"].endswith("broken.png") for s in metrics["skipped"]] == [True]
    assert "truncated" in metrics["skipped"][0]["reason"] and metrics["num_samples"] == 3
