"""Exact resume, Ctrl-C checkpoints and divergence handling."""

from __future__ import annotations

import pytest
import torch

from resnetkit.testing.callbacks import StopAtStep

from resnetkit.engine import TrainConfig, Trainer, TrainingDiverged, TrainingInterrupted, train


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def _config(out, **kw):
    # Digits: 1,437 training images, 11 steps per epoch; augmentation and bf16 stay on.
    return TrainConfig(data="digits", model="resnet20", epochs=3, batch_size=128, quiet=True,
                       deterministic=True, device="cpu", out=str(out), seed=3, **kw)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    full = train(_config(tmp_path / "full"))
    with pytest.raises(TrainingInterrupted, match="resnetkit train --resume"):
        train(_config(tmp_path / "cut"), callbacks=[StopAtStep(16)])  # mid-way through epoch 2
    state = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert state["global_step"] == 16 and state["epoch"] == 1 and state["step_in_epoch"] == 5
    resumed = train(resume=tmp_path / "cut", changes={"quiet": True})
    a, b = _weights(tmp_path / "full" / "last.pt"), _weights(tmp_path / "cut" / "last.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [r["train_loss"] for r in full.history] == pytest.approx([r["train_loss"] for r in resumed.history], abs=1e-6)
    assert len(resumed.history) == 3


def test_resume_can_extend_training(tmp_path):
    train(_config(tmp_path / "run", ema_decay=0.9))
    more = train(resume=tmp_path / "run", changes={"epochs": 4, "quiet": True})
    assert [r["epoch"] for r in more.history] == [1, 2, 3, 4]


def test_resume_needs_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="last.pt"):
        train(resume=tmp_path)
    (tmp_path / "last.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read .*last.pt: not a PyTorch checkpoint"):
        train(resume=tmp_path)


class PoisonAtEpoch:
    """Makes the loss NaN from the given epoch on, as an exploding learning rate would."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer, row) -> None:
        if row["epoch"] == self.epoch:
            with torch.no_grad():
                trainer.model.fc.weight.fill_(float("nan"))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    with pytest.raises(TrainingDiverged) as err:
        train(_config(tmp_path / "run"), callbacks=[PoisonAtEpoch(1)])
    msg = str(err.value)
    assert "nan" in msg and "epoch 2" in msg and "last.pt" in msg and "--lr" in msg
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_nan_in_the_data_is_reported(tmp_path):
    from resnetkit import create_model

    x = torch.randn(64, 1, 8, 8)
    x[5] = float("nan")
    y = torch.randint(0, 10, (64,))
    trainer = Trainer(create_model("resnet20", in_chans=1), (x, y), None, TrainConfig(batch_size=64, quiet=True))
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 1, step 1"):
        trainer.fit()


def test_unwritable_output_folder_is_named(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(PermissionError, match=r"cannot write the run directory .*a_file/run.*--out"):
        train(_config(blocker / "run"))


def test_a_flag_given_on_resume_counts_even_when_it_equals_the_default(tmp_path, capsys):
    # --epochs 30 is TrainConfig's default: comparing with the defaults took it for "not given"
    # and the resumed run stopped at its old epoch count.
    from resnetkit.cli.main import main

    run = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--lr", "0.05", "--quiet", "--out", str(run)]) == 0
    # --stop-after-min: stop (with a checkpoint) soon after the resume starts; the saved settings tell.
    code = main(["train", "--resume", str(run), "--epochs", "30", "--stop-after-min", "0.0001", "--quiet"])
    assert code in (0, 130)
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["config"]["epochs"] == 30 and state["global_step"] > 11  # it trained on past its first epoch
    capsys.readouterr()
    # A setting a resume may not change is refused when given, also at its default value (0.1).
    assert main(["train", "--resume", str(run), "--lr", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and "lr=0.1 (the run has 0.05)" in err
    assert main(["train", "--resume", str(run), "--recipe", "cifar10_resnet20_fast"]) == 2
    assert "--resume continues a run with its own recipe" in capsys.readouterr().err


def test_the_python_api_takes_the_changes_explicitly(tmp_path):
    train(_config(tmp_path / "run"))
    with pytest.raises(TypeError, match="pass what changes as changes="):
        train(TrainConfig(epochs=30), resume=tmp_path / "run")
    with pytest.raises(ValueError, match=r"cannot resume .* lr=0.5 \(the run has 0.1\)"):
        train(resume=tmp_path / "run", changes={"lr": 0.5})
