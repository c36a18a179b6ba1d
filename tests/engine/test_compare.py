"""`resnetkit compare`: several models, one budget, resumable, report rebuilt from runs."""

from __future__ import annotations

import pytest
from PIL import Image

from resnetkit.cli.main import main
from resnetkit.engine import TrainConfig
from resnetkit.engine.compare import compare, report


def test_compare_trains_reports_and_resumes(tmp_path, capsys):
    out = tmp_path / "cmp"
    config = TrainConfig(data="digits", epochs=2, quiet=True)
    table = compare(["resnet20", "plain20"], config, out)
    assert [r["model"] for r in table] == ["resnet20", "plain20"]
    r20 = table[0]
    assert r20["params"] == 269_722 - 16 * 2 * 9  # one input channel: conv1 has 288 weights fewer
    assert r20["epochs"] == 2 and 0 <= r20["final_train_error"] <= 1 and r20["train_images_per_sec"] > 0
    assert r20["latency_ms"] > 0 and r20["macs"] > 0
    for name in ("compare.md", "compare.csv", "compare.json", "compare_curves.png", "accuracy_vs_params.png",
                 "accuracy_vs_macs.png"):
        assert (out / name).is_file(), name
    with Image.open(out / "compare_curves.png") as img:
        img.load()

    # A stopped comparison resumes: finished runs are kept as they are.
    before = (out / "resnet20" / "metrics.json").stat().st_mtime
    compare(["resnet20", "plain20"], config, out)
    assert (out / "resnet20" / "metrics.json").stat().st_mtime == before

    # --report rebuilds from the runs alone.
    (out / "compare.md").unlink()
    assert main(["compare", "--models", "resnet20,plain20", "--out", str(out), "--report", "--no-latency"]) == 0
    assert "| plain20 |" in capsys.readouterr().out and (out / "compare.md").exists()


def test_report_without_runs_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no finished run for resnet20"):
        report(tmp_path, ["resnet20"])
