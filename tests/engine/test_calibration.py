"""Calibration: a temperature fitted on the validation split, ECE before and after, and the temperature
travelling into best.pt, predict, evaluate and exported files."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from resnetkit.engine import TrainConfig, train
from resnetkit.engine.calibration import fit_temperature
from resnetkit.engine.checkpoint import read_checkpoint
from resnetkit.engine.inference import load_model, load_run
from resnetkit.engine.metrics import ClassificationMetrics


def _ece_by_hand(logits, labels, bins=15):
    p = logits.softmax(1)
    conf, pred = p.max(1)
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = (conf >= lo) & (conf < hi) if b < bins - 1 else (conf >= lo) & (conf <= hi)
        if inside.any():
            total += inside.sum().item() * abs(conf[inside].mean().item() - (pred[inside] == labels[inside]).float().mean().item())
    return total / len(labels)


def test_ece_matches_its_definition():
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(500, 4, generator=g) * 3, torch.randint(0, 4, (500,), generator=g)
    m = ClassificationMetrics(4)
    m.update(logits, labels)
    assert m.compute()["ece"] == pytest.approx(_ece_by_hand(logits, labels), abs=1e-6)
    hot = ClassificationMetrics(4, temperature=2.0)
    hot.update(logits, labels)
    assert hot.compute()["ece"] == pytest.approx(_ece_by_hand(logits / 2, labels), abs=1e-6)


def test_the_temperature_minimises_the_nll():
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 10, (2000,), generator=g)
    # Logits of a model that is right 70% of the time, scaled up: over-confident by about 4x.
    logits = torch.randn(2000, 10, generator=g)
    right = torch.rand(2000, generator=g) < 0.7
    logits[right, labels[right]] += 2.0
    logits *= 4
    t = fit_temperature(logits, labels)
    nll = lambda temp: F.cross_entropy(logits / temp, labels).item()
    assert nll(t) <= min(nll(t * 1.05), nll(t / 1.05))
    assert 2.5 < t < 6


def test_no_temperature_is_fitted_when_every_validation_sample_is_right(caplog):
    g = torch.Generator().manual_seed(2)
    labels = torch.randint(0, 10, (500,), generator=g)
    logits = torch.randn(500, 10, generator=g)
    logits[torch.arange(500), labels] += 6.0  # every arg-max right
    caplog.set_level("INFO")
    assert fit_temperature(logits, labels) == 1.0  # not the search's bound, 0.05
    assert "every one of the 500 validation samples is right" in caplog.text
    logits[0] = -logits[0]  # one mistake: the fit is bounded again and sharpens these under-confident logits
    assert 0.05 < fit_temperature(logits, labels) < 1.0


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """resnet20 on the embedded digits (real scans), 2 epochs: calibrated at the end by default."""
    run = tmp_path_factory.mktemp("calibrated") / "run"
    train(TrainConfig(data="digits", epochs=2, quiet=True, device="cpu", seed=0, out=str(run)))
    return run


def test_an_overconfident_model_is_calibrated_at_the_end_of_its_run(digits_run):
    run = digits_run
    state = read_checkpoint(run / "best.pt")
    metrics = json.loads((run / "metrics.json").read_text())
    cal = metrics["calibration"]
    assert state["temperature"] == pytest.approx(cal["temperature"])
    # The temperature minimises the NLL; the ECE of a model that was nearly calibrated may move either way.
    assert cal["nll_after"] <= cal["nll_before"] + 1e-9
    assert metrics["ece"] == pytest.approx(cal["ece_after"])
    assert (run / "calibration.png").stat().st_size > 10_000

    # The same run made over-confident by hand (logits x 5): the temperature takes it back.
    loaded = load_run(run)
    with torch.no_grad():
        loaded.model.fc.weight.mul_(5)
        loaded.model.fc.bias.mul_(5)
    from resnetkit.engine.evaluation import collect_logits
    from resnetkit.data import BatchOptions
    from resnetkit.engine.run_data import run_splits

    val = run_splits(loaded.config, run).val
    source = val.batches(loaded.input_spec, BatchOptions(train=False, batch_size=256))
    logits, labels = collect_logits(loaded.model, source, torch.device("cpu"))
    before = ClassificationMetrics(10)
    before.update(logits, labels)
    t = fit_temperature(logits, labels)
    after = ClassificationMetrics(10, temperature=t)
    after.update(logits, labels)
    assert t > 3 * cal["temperature"]
    assert after.compute()["ece"] < 0.5 * before.compute()["ece"]


def test_predict_evaluate_and_exports_use_the_temperature(digits_run, tmp_path):
    from resnetkit.engine.exporting import export_run

    run = digits_run
    loaded = load_run(run)
    t = loaded.temperature
    assert t != 1.0
    from sklearn.datasets import load_digits

    image = torch.tensor(load_digits().images[1500], dtype=torch.float32).unsqueeze(0) / 16.0
    x = loaded.input_spec.prepare([image], loaded.device).batch
    with torch.no_grad():
        logits = loaded.model(x).float()
    expected = (logits / t).softmax(1)[0]
    top = loaded.predict([image], top_k=1)[0]["top_k"][0]
    assert top["probability"] == pytest.approx(float(expected.max()), rel=1e-4)
    # Compared on the probability left to the other classes: a sure digit is 0.9997 or 0.99999 either way.
    assert not math.isclose(1 - top["probability"], 1 - float(logits.softmax(1).max()), rel_tol=0.1)

    report = export_run(run, fmt="onnx", out=tmp_path / "model.onnx")
    exported = load_model(report.path)
    assert exported.temperature == pytest.approx(t)
    top_exported = exported.predict([image], top_k=1)[0]["top_k"][0]
    assert top_exported["probability"] == pytest.approx(top["probability"], abs=1e-4)

    result = loaded.evaluate("digits")
    assert result.metrics["temperature"] == pytest.approx(t)
    uncalibrated = load_run(run)
    uncalibrated.temperature = 1.0
    assert uncalibrated.evaluate("digits").metrics["ece"] != pytest.approx(result.metrics["ece"])


def test_calibrate_none_keeps_the_logits(tmp_path):
    run = tmp_path / "run"
    train(TrainConfig(data="digits", max_steps=3, quiet=True, device="cpu", calibrate="none", out=str(run)))
    assert load_run(run).temperature == 1.0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["calibration"] is None and not (run / "calibration.png").exists()
