"""The training loop (engine/trainer.py): the time budget."""

from __future__ import annotations

import pytest

from resnetkit.engine import TrainConfig, train
from resnetkit.engine.trainer import Trainer


def test_time_budget_cuts_epochs(tmp_path, monkeypatch):
    # The first epoch's duration is what the budget divides; fixed at 0.3 s here so that the
    # test does not depend on how busy the machine is: a 1.5 s budget leaves 5 of the 50 epochs.
    fit_to_budget = Trainer._fit_to_budget
    monkeypatch.setattr(Trainer, "_fit_to_budget", lambda self, seconds: fit_to_budget(self, 0.3))
    summary = train(TrainConfig(data="digits", epochs=50, time_budget_min=0.025, quiet=True, out=str(tmp_path / "b")))
    assert len(summary.history) == 5
    assert summary.history[-1]["lr"] == pytest.approx(0.0, abs=1e-9)  # the cosine still anneals to the end
