"""`resnetkit compare --seeds N`: every model N times on one validation split, spread and paired tests."""

from __future__ import annotations

import csv
import json
import statistics

import numpy as np
import pytest
import yaml
from PIL import Image

from resnetkit.cli.main import main
from resnetkit.engine import TrainConfig
from resnetkit.engine.compare import compare, report
from resnetkit.engine.run_data import load_data
from resnetkit.report.stats import ALPHA, discordant, mcnemar_exact

MODELS = ["resnet20", "plain20"]


def _predictions(run_dir):
    rows = list(csv.DictReader(open(run_dir / "val_predictions.csv")))
    return np.array([int(r["target"]) for r in rows]), np.array([int(r["prediction"]) for r in rows])


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp") / "seeds"
    # A few steps each: the statistics, not the accuracy, are under test.
    config = TrainConfig(data="digits", max_steps=4, batch_size=32, quiet=True, seed=3)
    return out, config, compare(MODELS, config, out, measure_latency=False, seeds=2)


def test_every_model_trains_every_seed_on_one_split(seeded):
    out, _, table = seeded
    for model in MODELS:
        for seed in (3, 4):
            run = out / model / f"seed{seed}"
            saved = yaml.safe_load((run / "config.yaml").read_text())
            assert (saved["seed"], saved["split_seed"], saved["model"]) == (seed, 3, model)
            assert (run / "metrics.json").is_file() and (run / "val_predictions.csv").is_file()
    targets = [_predictions(out / m / f"seed{s}")[0] for m in MODELS for s in (3, 4)]
    assert all(np.array_equal(t, targets[0]) for t in targets) and len(targets[0]) == 359
    # The seeds trained differently: their histories are not the same run twice.
    losses = [list(csv.DictReader(open(out / "resnet20" / f"seed{s}" / "metrics.csv")))[0]["train_loss"] for s in (3, 4)]
    assert losses[0] != losses[1]
    assert [r["model"] for r in table] == MODELS


def test_the_table_is_the_spread_over_seeds(seeded):
    out, _, table = seeded
    for row in table:
        accs = []
        for seed in (3, 4):
            y, pred = _predictions(out / row["model"] / f"seed{seed}")
            metrics = json.loads((out / row["model"] / f"seed{seed}" / "metrics.json").read_text())
            assert np.mean(pred == y) == pytest.approx(metrics["top1"], abs=1e-12)  # the best weights' record
            accs.append(float(np.mean(pred == y)))
        assert row["val_acc_per_seed"] == pytest.approx(accs) and row["seeds"] == [3, 4]
        assert row["val_acc_mean"] == pytest.approx(statistics.fmean(accs))
        assert row["val_acc_std"] == pytest.approx(statistics.stdev(accs))
        assert row["val_acc_ci_low"] <= row["val_acc_mean"] <= row["val_acc_ci_high"]
        assert row["val_acc_ci_high"] - row["val_acc_ci_low"] > 0
        assert row["epochs"] == [1, 1] and row["latency_ms"] is None

    data = json.loads((out / "compare.json").read_text())
    assert len(data["runs"]) == 4 and {(r["model"], r["seed"]) for r in data["runs"]} == {(m, s) for m in MODELS for s in (3, 4)}
    assert len(list(csv.DictReader(open(out / "compare_seeds.csv")))) == 4
    summary = list(csv.DictReader(open(out / "compare.csv")))
    assert [r["model"] for r in summary] == MODELS and len(summary[0]["val_acc_per_seed"].split()) == 2
    md = (out / "compare.md").read_text()
    assert "| resnet20 |" in md and " ± " in md and "McNemar" in md and "bootstrap" in md
    with Image.open(out / "compare_curves.png") as img:
        img.load()


def test_pairs_are_mcnemar_between_seed_matched_runs(seeded):
    out, _, _ = seeded
    pairs = json.loads((out / "compare.json").read_text())["pairs"]
    assert [(p["model_a"], p["model_b"]) for p in pairs] == [("resnet20", "plain20")]
    pair = pairs[0]
    expected = []
    for entry, seed in zip(pair["per_seed"], (3, 4)):
        y, a = _predictions(out / "resnet20" / f"seed{seed}")
        _, b = _predictions(out / "plain20" / f"seed{seed}")
        counts = discordant(a == y, b == y)
        assert (entry["a_only_correct"], entry["b_only_correct"]) == counts
        assert entry["p"] == mcnemar_exact(*counts)
        expected.append(entry["p"])
    assert pair["mcnemar_p"] == max(expected)
    assert pair["seeds_below_alpha"] == sum(p < ALPHA for p in expected)
    ahead = {np.sign(e["a_only_correct"] - e["b_only_correct"]) for e in pair["per_seed"]}
    assert pair["verdict"] == ("beyond noise" if max(expected) < ALPHA and len(ahead) == 1 and 0 not in ahead
                               else "within noise")
    assert f"| resnet20 | plain20 | {100 * pair['difference']:+.2f} points |" in (out / "compare.md").read_text()
    assert list(csv.DictReader(open(out / "compare_pairs.csv")))[0]["verdict"] == pair["verdict"]


def test_resume_keeps_finished_seeds_and_report_rebuilds(seeded, capsys):
    out, config, table = seeded
    before = (out / "plain20" / "seed4" / "metrics.json").stat().st_mtime
    compare(MODELS, config, out, measure_latency=False, seeds=2)
    assert (out / "plain20" / "seed4" / "metrics.json").stat().st_mtime == before

    # Predictions are recomputed from the best weights when their record is gone, and agree with it.
    recorded = (out / "plain20" / "seed3" / "val_predictions.csv").read_text()
    (out / "plain20" / "seed3" / "val_predictions.csv").unlink()
    (out / "compare.md").unlink()
    assert main(["compare", "--models", ",".join(MODELS), "--out", str(out), "--report", "--no-latency"]) == 0
    assert (out / "plain20" / "seed3" / "val_predictions.csv").read_text() == recorded
    assert "| plain20 |" in capsys.readouterr().out and (out / "compare.md").exists()
    assert report(out, measure_latency=False) == report(out, sorted(MODELS), measure_latency=False, seeds=[3, 4])

    # --report with another number of seeds than the folder holds says so.
    assert main(["compare", "--models", ",".join(MODELS), "--out", str(out), "--report", "--seeds", "3"]) == 2
    assert "holds 2 seed(s) per model" in capsys.readouterr().err


def test_a_missing_seed_is_named(seeded, tmp_path):
    out, _, _ = seeded
    with pytest.raises(FileNotFoundError, match="plain20 seed 5"):
        report(out, MODELS, measure_latency=False, seeds=[3, 5])


@pytest.mark.parametrize("seeds", ["0", "-2"])
def test_seeds_below_one_is_a_clear_error(tmp_path, capsys, seeds):
    assert main(["compare", "--models", "resnet20", "--out", str(tmp_path / "c"), "--seeds", seeds, "--epochs", "1"]) == 2
    assert f"--seeds must be at least 1 (training runs per model, each with its own seed), got {seeds}" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
    with pytest.raises(TypeError, match="whole number"):
        compare(["resnet20"], TrainConfig(), tmp_path / "d", seeds=2.0)


def test_a_single_run_folder_is_not_reused_for_seeds(tmp_path):
    (tmp_path / "resnet20").mkdir()
    (tmp_path / "resnet20" / "config.yaml").write_text("model: resnet20\n")
    with pytest.raises(ValueError, match="holds a single run of resnet20"):
        compare(["resnet20"], TrainConfig(epochs=1), tmp_path, seeds=2)
    (tmp_path / "plain20" / "seed0").mkdir(parents=True)
    with pytest.raises(ValueError, match="holds runs of several seeds"):
        compare(["plain20"], TrainConfig(epochs=1), tmp_path)


def test_split_seed_fixes_the_validation_split():
    base = load_data(TrainConfig(data="digits", seed=0)).val
    same = load_data(TrainConfig(data="digits", seed=1, split_seed=0)).val
    other = load_data(TrainConfig(data="digits", seed=1)).val
    assert base.images.equal(same.images) and base.labels.equal(same.labels)
    assert not base.images.equal(other.images)  # the training seed alone also moves the split
