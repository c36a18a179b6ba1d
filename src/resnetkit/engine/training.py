"""``train(config)``: what ``resnetkit train`` does, from a configuration to a finished run directory."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from ..data import DataRequest, DataSplits, resolve_data
from ..models import create_model
from ..models.weights import CheckpointError
from ..runtime import distributed
from ..runtime.device import resolve_device, set_seed
from .checkpoint import read_checkpoint
from .config import TrainConfig
from .history import History
from .trainer import Trainer

log = logging.getLogger(__name__)


@dataclass
class TrainSummary:
    run_dir: Path
    best_val_acc: Optional[float]
    best_epoch: Optional[int]
    seconds: float
    history: History = field(default_factory=History)

    def __str__(self) -> str:
        acc = f"{self.best_val_acc:.2%} (epoch {self.best_epoch})" if self.best_val_acc is not None else "n/a"
        return f"validation accuracy {acc}, {self.seconds:.0f} s, run written to {self.run_dir}"


def data_request(config: TrainConfig, for_evaluation: bool = False) -> DataRequest:
    """The data settings of ``config`` as the data layer reads them."""
    return DataRequest(data=config.data, val_split=config.val_split, seed=config.seed, in_chans=config.in_chans,
                       on_corrupt=config.on_corrupt, audio=config.audio, audio_layout=config.audio_layout,
                       fsdd_split=config.fsdd_split, for_evaluation=for_evaluation)


def load_data(config: TrainConfig, for_evaluation: bool = False) -> DataSplits:
    """``config.data`` as training and validation data (``for_evaluation``: the held-out part as ``val``)."""
    return resolve_data(data_request(config, for_evaluation))


def _run_dir(config: TrainConfig, dist: distributed.DistInfo) -> Path:
    if config.out:
        return Path(config.out)
    name = config.name
    if not name:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        data = Path(config.data).name or config.data
        name = f"{config.model}-{data}-{stamp}"
        if dist.enabled:
            # Every process must write to (and agree on) rank 0's folder.
            holder = [name]
            torch.distributed.broadcast_object_list(holder, src=0)
            name = holder[0]
    return Path("runs") / name


# What a resumed run may change: how long it trains, where it runs and what it prints.
_RESUME_OVERRIDES = ("epochs", "max_steps", "quiet", "device", "workers", "out")


def _resume_config(config: TrainConfig, state: dict, ckpt_path: Path) -> TrainConfig:
    """The run's own configuration, with the settings a resume may change taken from ``config``."""
    saved = TrainConfig.from_dict(state["config"], f"checkpoint {ckpt_path}")
    defaults = TrainConfig()
    given = {k: getattr(config, k) for k in config.to_dict() if getattr(config, k) != getattr(defaults, k)}
    conflicts = {k: v for k, v in given.items() if k not in _RESUME_OVERRIDES and v != getattr(saved, k)}
    if conflicts:
        listed = ", ".join(f"{k}={v!r} (the run has {getattr(saved, k)!r})" for k, v in conflicts.items())
        raise ValueError(
            f"cannot resume {ckpt_path.parent} with other settings: {listed}. Resuming continues the same run; "
            "start a new run to change them."
        )
    for key in _RESUME_OVERRIDES:
        if key in given:
            setattr(saved, key, given[key])
    saved.out = str(ckpt_path.parent)
    return saved


def train(config: TrainConfig, resume: str | Path | None = None, callbacks: Sequence[Any] = ()) -> TrainSummary:
    """Train as ``resnetkit train`` does: data, model, run directory, fit, report."""
    t0 = time.perf_counter()
    state = None
    if resume is not None:
        path = Path(resume)
        ckpt_path = path / "last.pt" if path.is_dir() else path
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"cannot resume: {ckpt_path} does not exist (expected a run directory with last.pt)")
        state = read_checkpoint(ckpt_path)
        config = _resume_config(config, state, ckpt_path)
    device = resolve_device(config.device)
    dist = distributed.init_distributed(device.type)
    set_seed(config.seed + dist.rank, config.deterministic)

    splits = load_data(config)
    if splits.train is None:
        raise ValueError(f"--data {config.data}: no training data found")
    in_chans = config.in_chans or splits.train.in_chans
    model_args = dict(config.model_args)
    model = create_model(config.model, num_classes=len(splits.classes), in_chans=in_chans, **model_args)
    if state is not None and list(state["classes"]) != list(splits.classes):
        raise CheckpointError(
            f"cannot resume {resume}: it was trained on classes {state['classes']}, "
            f"but --data {config.data} has {splits.classes}"
        )
    run_dir = _run_dir(config, dist)
    trainer = Trainer(model, splits.train, splits.val, config, run_dir=run_dir, classes=splits.classes,
                      callbacks=callbacks, model_args=model_args)
    if state is not None:
        trainer.load_checkpoint_state(state)
    history = trainer.fit()
    return TrainSummary(run_dir, trainer.best_acc if trainer.best_epoch else None, trainer.best_epoch,
                        time.perf_counter() - t0, history)
