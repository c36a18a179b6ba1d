"""A checkpoint with a pickle payload is refused everywhere a checkpoint is read, and the
payload never runs (its side effect, a file, must not appear)."""

from __future__ import annotations

import os

import pytest
import torch

from resnetkit import TrainConfig, create_model, load_run, train
from resnetkit.cli.main import main


class Payload:
    """Pickles to a call of os.system: what a hostile checkpoint does."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def hostile(tmp_path):
    """A run directory whose last.pt and best.pt carry the payload beside real-looking keys."""
    marker = tmp_path / "payload-ran"
    run = tmp_path / "run"
    run.mkdir()
    state = {"format": "resnetkit-checkpoint-1", "model_name": "resnet20", "model_args": {}, "classes": ["a", "b"],
             "input": {"kind": "image"}, "model": {}, "config": {}, "evil": Payload(str(marker))}
    for name in ("last.pt", "best.pt"):
        torch.save(state, run / name)
    weights = tmp_path / "weights.pth"
    torch.save({"conv1.weight": torch.zeros(1), "evil": Payload(str(marker))}, weights)
    return run, weights, marker


def test_payload_is_refused_everywhere(hostile, tmp_path, capsys):
    run, weights, marker = hostile
    refused = "refused: it asks to run code when loaded"

    with pytest.raises(ValueError, match=refused):  # load_run
        load_run(run)
    with pytest.raises(ValueError, match=refused):  # create_model(checkpoint_path=...)
        create_model("resnet18", checkpoint_path=weights)
    with pytest.raises(ValueError, match=refused):  # resume
        train(resume=run)
    assert main(["evaluate", "--checkpoint", str(run), "--data", "digits"]) == 2
    assert refused in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(run / "best.pt"), str(weights)]) == 2
    assert refused in capsys.readouterr().err
    assert main(["train", "--resume", str(run)]) == 2
    assert refused in capsys.readouterr().err
    assert not marker.exists(), "the payload ran"
