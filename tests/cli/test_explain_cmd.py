"""`resnetkit explain`: one PNG per file, named after it; errors are one clear line."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from resnetkit.cli.main import main


def test_writes_one_png_per_file(image_run, data_path, tmp_path, capsys):
    files = [str(p) for p in sorted(data_path("cifar10/train/frog").glob("*.jpg"))[200:202]]
    out = tmp_path / "explained"
    assert main(["explain", "--checkpoint", str(image_run), *files, "--out", str(out), "--top-k", "3", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["source"] for r in rows] == files
    for row in rows:
        assert len(row["top_k"]) == 3 and row["target"] == row["top_k"][0]["class"]
        assert Image.open(row["png"]).format == "PNG"
    expected = sorted(f.split("/")[-1].replace(".jpg", ".gradcam.png") for f in files)
    assert sorted(p.name for p in out.iterdir()) == expected


def test_target_and_method(image_run, data_path, tmp_path, capsys):
    file = str(sorted(data_path("cifar10/train/ship").glob("*.jpg"))[200])
    maps = {}
    for target, method in (("cat", "gradcam++"), ("cat", "gradcam"), ("frog", "gradcam")):
        out = tmp_path / f"{target}-{method}"
        assert main(["explain", "--checkpoint", str(image_run), file, "--out", str(out), "--target", target,
                     "--method", method, "--json"]) == 0
        (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert (row["target"], row["method"]) == (target, method) and row["layer"]
        maps[target, method] = np.asarray(Image.open(row["png"]).convert("RGB"), dtype=np.int16)
    # Another class or another method draws another map.
    assert np.abs(maps["cat", "gradcam++"] - maps["cat", "gradcam"]).mean() > 0.5
    assert np.abs(maps["cat", "gradcam"] - maps["frog", "gradcam"]).mean() > 0.5
    assert main(["explain", "--checkpoint", str(image_run), file, "--out", str(tmp_path), "--target", "cat"]) == 0
    assert "gradcam of cat ->" in capsys.readouterr().out
    assert main(["explain", "--checkpoint", str(image_run), file, "--out", str(tmp_path), "--target", "zebra"]) == 2
    err = capsys.readouterr().err
    assert "unknown target class 'zebra'" in err and "Traceback" not in err
