"""benchmarks/fsdd.py's table: per-speaker means over seeds, the lowest speaker, mean ± std of the LOSO mean."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "fsdd.py"


def _fsdd():
    spec = importlib.util.spec_from_file_location("fsdd_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_loso_table_over_seeds():
    fsdd = _fsdd()
    results = []
    for seed, base in ((0, 0.80), (1, 0.90)):
        for i, speaker in enumerate(fsdd.SPEAKERS):
            results.append({"model": "resnet20", "split": f"speakers:{speaker}", "seed": seed,
                            "test_acc_last_epoch": base + 0.02 * i, "seconds": 100.0 + i})
    results.append({"model": "resnet20", "split": "official", "seed": 0, "test_acc_last_epoch": 1.0, "seconds": 90.0})
    row = fsdd.summary_table(results, ["resnet20"], [0, 1]).splitlines()[2].split(" | ")
    # george: mean of 0.80 and 0.90; LOSO means per seed 0.84 and 0.94 -> 89% ± 7.07%.
    assert row[1:4] == ["0,1", "100.00%", "85.00%"]
    assert row[8:11] == ["89.00%", "85.00%", "89.00% ± 7.07% (2 seeds)"]
    assert row[11].startswith("104 s")
    # A seed with a fold missing gives no LOSO mean of its own.
    partial = [r for r in results if not (r["seed"] == 1 and r["split"] == "speakers:lucas")]
    assert fsdd.summary_table(partial, ["resnet20"], [0, 1]).splitlines()[2].split(" | ")[10] == "-"


def test_overrides_reach_every_run_merged_into_the_recipe(tmp_path, monkeypatch):
    fsdd = _fsdd()
    configs = []

    def fake_train(config):  # the config each fold would train, without training it
        configs.append(config)
        raise SystemExit

    monkeypatch.setattr(fsdd, "train", fake_train)
    monkeypatch.setattr("sys.argv", ["fsdd.py", "--data", str(tmp_path), "--out", str(tmp_path / "out"),
                                     "--models", "resnet20", "--splits", "official", "--recipe", "audio_default",
                                     "--epochs", "3", "--overrides", '{"audio": {"normalize": "utterance"}}'])
    try:
        fsdd.main()
    except SystemExit:
        pass
    (config,) = configs
    assert config.out == str(tmp_path / "out" / "resnet20" / "official")
    # The one setting changed; the recipe's other audio settings kept; the time budget off.
    assert config.audio["normalize"] == "utterance" and config.audio["n_mels"] == 40
    assert config.epochs == 3 and config.time_budget_min is None


def test_an_unfinished_run_of_an_earlier_invocation_is_trained_again(tmp_path, monkeypatch):
    fsdd = _fsdd()
    stale = tmp_path / "out" / "resnet20" / "official-seed1"
    stale.mkdir(parents=True)
    (stale / "last.pt").write_bytes(b"half a run")
    seen = []

    def fake_train(config):
        seen.append(Path(config.out).exists())
        raise SystemExit

    monkeypatch.setattr(fsdd, "train", fake_train)
    try:
        fsdd.run_one("resnet20", "official", str(tmp_path), tmp_path / "out", {}, "audio_default", seed=1)
    except SystemExit:
        pass
    assert seen == [False]  # the stale directory is gone before the engine sees it
