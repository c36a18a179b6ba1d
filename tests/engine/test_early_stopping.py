"""Early stopping: the run ends `early_stop` epochs after the monitored metric's best, keeps that epoch, and resumes exactly."""

from __future__ import annotations

import json

import pytest
import torch

from torch import nn

from resnetkit.data.tensors import TensorData
from resnetkit.engine import TrainConfig, TrainingInterrupted
from resnetkit.engine.checkpoint import read_checkpoint
from resnetkit.engine.trainer import Trainer


def _digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    return TensorData(x[:1200], y[:1200]), TensorData(x[1200:], y[1200:])


def _trainer(out, monitor="val_loss", **changes) -> Trainer:
    # A linear model on real digits at a constant, too-high learning rate: validation stops
    # improving within a few epochs, and an epoch takes milliseconds.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    settings = dict(epochs=60, lr=2.0, momentum=0.9, schedule="constant", early_stop=2, monitor=monitor,
                    batch_size=64, quiet=True, device="cpu", amp="off", channels_last=False, augment="none",
                    calibrate="none", seed=1)
    train_data, val_data = _digits()
    return Trainer(model, train_data, val_data, TrainConfig(**{**settings, **changes}), run_dir=out)


@pytest.mark.parametrize("monitor,key,better", [("val_loss", "val_loss", min), ("val_accuracy", "val_acc", max)])
def test_the_run_stops_after_patience_epochs_without_improvement(tmp_path, monitor, key, better):
    trainer = _trainer(tmp_path / monitor, monitor)
    history = list(trainer.fit())
    values = [row[key] for row in history]
    best_epoch = history[values.index(better(values))]["epoch"]  # the first of equal values: improvement is strict
    last = history[-1]["epoch"]
    assert last < 60, "the metric never stopped improving; the test needs a run that plateaus"
    assert last - best_epoch == 2
    assert trainer.best_epoch == best_epoch and trainer.stopped_early == last
    run = tmp_path / monitor
    assert read_checkpoint(run / "best.pt")["epoch"] == best_epoch
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epoch"] == best_epoch
    assert metrics["stopped_early"] == {"after_epoch": last, "monitor": monitor, "patience": 2}


def test_an_interrupted_run_stops_at_the_same_epoch_after_resume(tmp_path):
    whole = _trainer(tmp_path / "whole")
    whole.fit()
    stopped_at = whole.history[-1]["epoch"]
    assert stopped_at >= 3

    class StopInEpoch:
        def on_step_end(self, trainer):
            if trainer.epoch == stopped_at - 2 and trainer.step_in_epoch == 3:
                trainer.request_stop()

    split = _trainer(tmp_path / "split")
    split.callbacks.append(StopInEpoch())
    with pytest.raises(TrainingInterrupted):
        split.fit()
    resumed = _trainer(tmp_path / "split")
    resumed.load_checkpoint_state(read_checkpoint(tmp_path / "split" / "last.pt"))
    resumed.fit()
    assert [r["epoch"] for r in resumed.history] == list(range(1, stopped_at + 1))
    assert [r["val_loss"] for r in resumed.history] == [r["val_loss"] for r in whole.history]
    assert resumed.best_epoch == whole.best_epoch
    a = read_checkpoint(tmp_path / "whole" / "best.pt")["model"]
    b = read_checkpoint(tmp_path / "split" / "best.pt")["model"]
    for name in a:
        assert torch.equal(a[name], b[name]), name
    # A run killed after the stopping epoch's checkpoint resumes to nothing more.
    again = _trainer(tmp_path / "split")
    again.load_checkpoint_state(read_checkpoint(tmp_path / "split" / "last.pt"))
    again.fit()
    assert len(again.history) == stopped_at


def test_early_stopping_needs_a_validation_split(tmp_path):
    x, y = torch.randn(64, 1, 8, 8), torch.randint(0, 2, (64,))
    from resnetkit import create_model

    with pytest.raises(ValueError, match="early_stop 3 watches val_loss on a validation split; the data has none"):
        Trainer(create_model("resnet20", in_chans=1, num_classes=2), (x, y), None,
                TrainConfig(early_stop=3, monitor="val_loss", device="cpu", quiet=True))
