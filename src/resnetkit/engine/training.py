"""``train(config)``: what ``resnetkit train`` does, from a configuration to a finished run directory."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch

from ..models import create_model, fetch_weights, pretrained_weights
from ..models.weights import CheckpointError
from ..runtime import distributed
from ..runtime.device import resolve_device, set_seed
from .checkpoint import read_checkpoint
from .config import TrainConfig, merge_settings
from .finetune import initialize_from, initialize_from_pretrained
from .history import History
from .run_data import load_data
from .run_dir import claim, holds_run, is_finished, resolve_run_dir
from .trainer import Trainer
from .tracking import check_tracking

log = logging.getLogger(__name__)


@dataclass
class TrainSummary:
    run_dir: Path
    best_val_acc: Optional[float]
    best_epoch: Optional[int]
    seconds: float
    history: History = field(default_factory=History)
    final_top1: Optional[float] = None  # metrics.json's top-1: the best weights, with the run's TTA
    tta: str = "none"
    final_map: Optional[float] = None  # multi-label runs: metrics.json's mAP (best_val_acc is the exact match)

    def __str__(self) -> str:
        acc = f"{self.best_val_acc:.2%} (epoch {self.best_epoch})" if self.best_val_acc is not None else "n/a"
        if self.final_map is not None:
            return (f"validation mAP {self.final_map:.2%}, exact match {acc}, {self.seconds:.0f} s, "
                    f"run written to {self.run_dir}")
        if self.tta != "none" and self.final_top1 is not None:
            acc += f", {self.final_top1:.2%} with {self.tta} TTA (metrics.json)"
        return f"validation accuracy {acc}, {self.seconds:.0f} s, run written to {self.run_dir}"


def _claim_run_dir(config: TrainConfig, dist: distributed.DistInfo, resume: bool, overwrite: bool,
                   folder: Optional[Path] = None):
    """The run directory, claimed by rank 0 (a lock for the life of the run); every rank learns its path."""
    lock = None
    if dist.is_main:
        created = False
        if folder is None:
            folder, created = resolve_run_dir(config.out, config.name, config.model, config.data)
        lock = claim(folder, resume=resume, overwrite=overwrite, created=created)
    if dist.enabled:
        holder = [str(folder) if dist.is_main else None]
        torch.distributed.broadcast_object_list(holder, src=0)
        folder = Path(holder[0])
    return folder, lock


# What a resumed run may change: how long it trains, where it runs and what it prints (and where
# it is tracked).
_RESUME_OVERRIDES = ("epochs", "max_steps", "quiet", "device", "workers", "out", "stop_after_min", "log", "log_every",
                     "mlflow_uri")


def _resume_config(changes: Mapping[str, Any], state: dict, ckpt_path: Path) -> TrainConfig:
    """The run's own configuration with ``changes`` (the settings the user gave) applied.

    Only the settings in ``_RESUME_OVERRIDES`` may change; any other given setting must have the
    run's value. ``changes`` merge as flags merge into a recipe (a mapping changes key by key).
    """
    saved = TrainConfig.from_dict(state["config"], f"checkpoint {ckpt_path}")
    wanted = TrainConfig.from_dict(merge_settings(saved.to_dict(), changes), f"resuming {ckpt_path.parent}")
    conflicts = [k for k in changes if k not in _RESUME_OVERRIDES and _setting(wanted, k) != _setting(saved, k)]
    if conflicts:
        listed = ", ".join(f"{k}={getattr(wanted, k)!r} (the run has {getattr(saved, k)!r})" for k in conflicts)
        raise ValueError(
            f"cannot resume {ckpt_path.parent} with other settings: {listed}. Resuming continues the same run; "
            "start a new run to change them."
        )
    for key in _RESUME_OVERRIDES:
        if key in changes:
            setattr(saved, key, getattr(wanted, key))
    saved.out = str(ckpt_path.parent)
    return saved


def _setting(config: TrainConfig, key: str) -> Any:
    # Audio settings are compared as the front end they give: {"n_mels": 40} is the default's 40.
    return config.features if key == "audio" else getattr(config, key)


def train(config: Optional[TrainConfig] = None, resume: str | Path | None = None, callbacks: Sequence[Any] = (), *,
          overwrite: bool = False, changes: Optional[Mapping[str, Any]] = None) -> TrainSummary:
    """Train as ``resnetkit train`` does: data, model, run directory, fit, report.

    ``resume``: a run directory (or its last.pt) to continue exactly with its own settings, or
    ``"auto"``: continue the run in ``config.out``/``config.name`` when it has a checkpoint, else
    start ``config`` there (what a restarted job, e.g. under ``torchrun --max-restarts``, wants).
    ``changes``: the settings given for a resumed run, as TrainConfig fields (``{"epochs": 30}``;
    the command line passes its flags); those of ``_RESUME_OVERRIDES`` are applied, any other
    must equal the run's. A resumed run never reads a TrainConfig: which of its fields were
    meant and which are defaults cannot be told. ``overwrite``: replace a run that already
    holds the chosen directory.
    """
    t0 = time.perf_counter()
    state, folder = None, None
    resuming_a_path = resume is not None and resume != "auto"
    if resuming_a_path and config is not None:
        raise TypeError("a resumed run keeps its own settings: pass what changes as changes={...} "
                        "(e.g. train(resume=run, changes={'epochs': 30})), not a TrainConfig")
    if config is None and not resuming_a_path:
        raise TypeError("train() needs a TrainConfig (or resume=RUN_DIR to continue a run)")
    changes = dict(changes or {})
    if resume == "auto":
        if not (config.out or config.name):
            raise ValueError("--auto-resume needs a fixed run directory: give --out or --name")
        folder = Path(config.out) if config.out else Path("runs") / config.name
        if (folder / "last.pt").is_file():
            resume = folder
        else:
            resume, overwrite = None, overwrite or not is_finished(folder)
            if is_finished(folder):
                raise ValueError(f"{folder} holds a finished run without last.pt; nothing to resume")
    if resume is not None:
        path = Path(resume)
        ckpt_path = path / "last.pt" if path.is_dir() else path
        if not ckpt_path.is_file():
            hint = (f"; it was stopped before its first checkpoint: start it again with --overwrite"
                    if path.is_dir() and holds_run(path) else "")
            raise FileNotFoundError(f"cannot resume: {ckpt_path} does not exist (expected a run directory with "
                                    f"last.pt){hint}")
        state = read_checkpoint(ckpt_path)
        config = _resume_config(changes, state, ckpt_path)
        folder = ckpt_path.parent
    check_tracking(config)  # a missing package or a bad $MLFLOW_TRACKING_URI: said before the data is read
    pretrained = None
    if config.pretrained and state is None:  # a resumed run has its own weights already
        # Before any data is read: an unknown tag or a machine without the file and without
        # internet stops here, not after the data set has loaded.
        pretrained = pretrained_weights(config.model, config.pretrained)
        pretrained_path = fetch_weights(pretrained)
    device = resolve_device(config.device)
    dist = distributed.init_distributed(device.type)
    set_seed(config.seed + dist.rank, config.deterministic)

    splits = load_data(config)
    if splits.train is None:
        raise ValueError(f"--data {config.data}: no training data found")
    if len(splits.classes) < 2:
        raise ValueError(f"--data {config.data} has one class ({splits.classes[0] if splits.classes else 'none'}); "
                         "a classifier needs at least two (one folder per class)")
    in_chans = config.in_chans or splits.train.in_chans
    model_args = dict(config.model_args)
    model = create_model(config.model, num_classes=len(splits.classes), in_chans=in_chans, **model_args)
    if config.init and state is None:  # a resumed run has its own weights already
        for line in initialize_from(model, config.init, splits.classes):
            log.info("--init: %s", line)
    if pretrained is not None:
        for line in initialize_from_pretrained(model, pretrained, pretrained_path, splits.classes):
            log.info("--pretrained %s: %s", pretrained.tag, line)
    if state is not None and list(state["classes"]) != list(splits.classes):
        raise CheckpointError(
            f"cannot resume {resume}: it was trained on classes {state['classes']}, "
            f"but --data {config.data} has {splits.classes}"
        )
    run_dir, lock = _claim_run_dir(config, dist, resume=state is not None, overwrite=overwrite, folder=folder)
    try:
        trainer = Trainer(model, splits.train, splits.val, config, run_dir=run_dir, classes=splits.classes,
                          callbacks=callbacks, model_args=model_args)
        if state is not None:
            trainer.load_checkpoint_state(state)
        history = trainer.fit()
    finally:
        if lock is not None:
            lock.release()
    final = trainer.final_metrics
    return TrainSummary(run_dir, trainer.best_acc if trainer.best_epoch else None, trainer.best_epoch,
                        time.perf_counter() - t0, history, final_top1=final.get("top1") if final else None,
                        tta=config.tta, final_map=final.get("map") if final else None)
