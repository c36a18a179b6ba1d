"""The training loop (engine/trainer.py): the time budget."""

from __future__ import annotations

import pytest

from resnetkit.engine import TrainConfig, train
from resnetkit.engine.trainer import Trainer, epochs_within_budget


def _fake_epoch_seconds(monkeypatch, durations):
    """Feed the budget these epoch durations instead of the measured ones, so that the test
    does not depend on how busy the machine is."""
    fit_to_budget = Trainer._fit_to_budget
    monkeypatch.setattr(Trainer, "_fit_to_budget",
                        lambda self, seconds: fit_to_budget(self, durations[: len(seconds)]))


def test_time_budget_cuts_epochs(tmp_path, monkeypatch):
    _fake_epoch_seconds(monkeypatch, [0.3] * 50)  # a 1.5 s budget leaves 5 of the 50 epochs
    summary = train(TrainConfig(data="digits", epochs=50, time_budget_min=0.025, quiet=True, out=str(tmp_path / "b")))
    assert len(summary.history) == 5
    assert summary.history[-1]["lr"] == pytest.approx(0.0, abs=1e-9)  # the cosine still anneals to the end


def test_time_budget_is_refitted_when_later_epochs_run_slower(tmp_path, monkeypatch):
    # A fast first epoch (0.15 s) alone would fit 10 epochs into 1.5 s; at 0.45 s for each of
    # the others the run must stop after 4 (0.15 + 3 * 0.45 = 1.5 s), and still anneal.
    _fake_epoch_seconds(monkeypatch, [0.15] + [0.45] * 49)
    summary = train(TrainConfig(data="digits", epochs=50, time_budget_min=0.025, quiet=True, out=str(tmp_path / "b")))
    assert len(summary.history) == 4
    assert summary.history[-1]["lr"] == pytest.approx(0.0, abs=1e-9)


def test_time_budget_grows_back_after_a_slow_first_epoch(tmp_path, monkeypatch):
    # A slow first epoch (0.6 s: the run's one-off costs) alone fits 2 epochs into 1.5 s; at
    # 0.15 s for each of the others 7 fit (0.6 + 6 * 0.15 = 1.5 s), and the run trains them.
    _fake_epoch_seconds(monkeypatch, [0.6] + [0.15] * 49)
    summary = train(TrainConfig(data="digits", epochs=50, time_budget_min=0.025, quiet=True, out=str(tmp_path / "b")))
    assert len(summary.history) == 7
    assert summary.history[-1]["lr"] == pytest.approx(0.0, abs=1e-9)  # annealed at the new end


def test_time_budget_grows_no_further_than_the_configured_epochs(tmp_path, monkeypatch):
    _fake_epoch_seconds(monkeypatch, [0.6] + [0.01] * 49)  # over a hundred would fit
    summary = train(TrainConfig(data="digits", epochs=5, time_budget_min=0.025, quiet=True, out=str(tmp_path / "b")))
    assert len(summary.history) == 5


DDP_BUDGET = """
import json, os
import torch
from torch import nn
from resnetkit import TrainConfig, Trainer
from resnetkit.data.tensors import TensorData
from resnetkit.runtime import distributed

distributed.init_distributed("cpu")
rank = distributed.current().rank
# Each rank sees other epoch durations: rank 0 a slow first epoch and fast ones after (7 of 20
# fit in 1.5 s), rank 1 slow ones throughout (2 fit). Every rank must train rank 0's count.
durations = [0.6] + [0.15] * 19 if rank == 0 else [0.6] * 20
fit_to_budget = Trainer._fit_to_budget
Trainer._fit_to_budget = lambda self, seconds: fit_to_budget(self, durations[: len(seconds)])
g = torch.Generator().manual_seed(0)
x, y = torch.randn(128, 1, 8, 8, generator=g), torch.randint(0, 10, (128,), generator=g)
torch.manual_seed(0)
config = TrainConfig(batch_size=32, epochs=20, time_budget_min=0.025, lr=0.1, device="cpu", amp="off",
                     channels_last=False, quiet=True, augment="none")
trainer = Trainer(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), TensorData(x, y), None, config)
trainer.fit()
# One file per rank: both ranks share one stdout, where their lines can interleave.
with open(f"result-{rank}.json", "w") as f:
    json.dump({"rank": rank, "epochs": len(trainer.history), "lr": trainer.history[-1]["lr"]}, f)
os._exit(0)  # what is checked is written; skip the teardown that can abort a rank (test_accumulation.py)
"""


@pytest.mark.slow
def test_every_rank_trains_the_count_that_rank_0_fits(tmp_path):
    import json
    import os
    import sys

    from resnetkit.testing.processes import run_with_deadline

    script = tmp_path / "budget.py"
    script.write_text(DDP_BUDGET)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29643", str(script)]
    done = run_with_deadline(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=tmp_path, timeout=180)
    assert not done.timed_out and done.returncode == 0, done.stderr[-3000:]
    results = [json.loads((tmp_path / f"result-{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["rank"] for r in results] == [0, 1]
    assert [r["epochs"] for r in results] == [7, 7]  # grown back from 2 on rank 0's durations
    assert all(r["lr"] == pytest.approx(0.0, abs=1e-9) for r in results)


@pytest.mark.parametrize("seconds, budget, expected", [
    ([10.0], 100.0, 10),              # the first epoch alone: budget // epoch
    ([10.0, 30.0], 100.0, 4),         # slower since: 60 s left at the 30 s of the epochs after the first
    ([30.0, 10.0], 100.0, 8),         # faster since: 60 s left at 10 s
    ([30.0, 10.0, 20.0], 100.0, 5),   # the mean of the epochs after the first: 15 s
    ([50.0, 60.0], 100.0, 2),         # already over: no epoch more
])
def test_epochs_within_budget(seconds, budget, expected):
    assert epochs_within_budget(seconds, budget) == expected


def test_an_instant_epoch_does_not_divide_by_zero():
    assert epochs_within_budget([0.0], 100.0) > 10**10  # capped by the configured epochs in the trainer


def test_epochs_within_budget_needs_an_epoch():
    with pytest.raises(ValueError, match="after an epoch"):
        epochs_within_budget([], 100.0)


def _speedrun_config(out, **changes):
    """Every speedrun technique at once, on digits (11 steps per epoch of 128) resized to 16x16."""
    from resnetkit.engine import TrainConfig

    settings = dict(
        data="digits", model="resnet9_s", epochs=3, batch_size=128, quiet=True, device="cpu", deterministic=True,
        seed=4, out=str(out), img_size=16,  # 8x8 digits are too small for a 2x2 whitening patch and three pools
        model_args={"whiten": 2, "dirac_init": True, "bn_frozen_scale": True, "bn_momentum": 0.4, "bn_eps": 1e-12,
                    "activation": "gelu"},
        lr_unit="example", lr=0.002, momentum=0.85, nesterov=True, weight_decay=5e-6, schedule="linear",
        warmup_epochs=0.5, warmup_from=0.2, lr_floor=0.07, label_smoothing=0.2, norm_lr_mult=16, lookahead_every=3,
        whiten_bias_epochs=1, augment="cifar",
        augment_args={"crop_padding": 1, "pad_mode": "reflect", "flip_mode": "alternate"}, tta="multiview")
    return TrainConfig(**{**settings, **changes})


def test_every_speedrun_technique_resumes_exactly(tmp_path):
    import torch

    from resnetkit.engine import TrainingInterrupted
    from resnetkit.testing.callbacks import StopAtStep

    full = train(_speedrun_config(tmp_path / "full"))
    with pytest.raises(TrainingInterrupted):
        train(_speedrun_config(tmp_path / "cut"), callbacks=[StopAtStep(17)])  # mid epoch 2, between lookahead steps
    resumed = train(resume=tmp_path / "cut")
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["lookahead"]["average"]:
        assert torch.equal(a["lookahead"]["average"][key], b["lookahead"]["average"][key]), key
    assert [r["train_loss"] for r in full.history] == [r["train_loss"] for r in resumed.history]
    assert full.best_val_acc > 0.3  # it learns (chance is 0.1)


def test_the_whitening_bias_learns_for_its_epochs_only(tmp_path):
    import torch

    biases = []

    class Record:
        def on_epoch_end(self, trainer, row):
            biases.append(trainer.whitening.conv.bias.detach().clone())

    # Without Lookahead, which averages the bias with its earlier values as it does every weight.
    train(_speedrun_config(tmp_path / "run", lookahead_every=0), callbacks=[Record()])
    assert biases[0].abs().sum() > 0  # it learned in epoch 1 (from zero)
    assert torch.equal(biases[0], biases[1]) and torch.equal(biases[1], biases[2])  # frozen after


def test_whiten_bias_epochs_need_a_whitening_layer(tmp_path):
    from resnetkit.engine import TrainConfig

    with pytest.raises(ValueError, match="whiten_bias_epochs trains the bias of a whitening layer"):
        train(TrainConfig(data="digits", epochs=1, whiten_bias_epochs=2, quiet=True, out=str(tmp_path / "r")))
