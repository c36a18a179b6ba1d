"""``train(config)``: what ``resnetkit train`` does, from a configuration to a finished run directory."""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch

from ..models import create_model, fetch_weights, pretrained_weights
from ..models.weights import CheckpointError
from ..runtime import distributed
from ..runtime.device import resolve_device, set_seed
from .checkpoint import file_digest, read_checkpoint
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


# Settings each node may have its own of: where rank 0 writes, and what each process prints or uses
# to read data. Every other setting must be the same on every rank.
_NODE_LOCAL = ("out", "name", "workers", "quiet", "device", "log", "log_every", "mlflow_uri")


def _shared_settings(config: TrainConfig) -> dict:
    return {k: v for k, v in config.to_dict().items() if k not in _NODE_LOCAL}


def _check_same_on_every_rank(what: str, mine: dict, dist: distributed.DistInfo) -> None:
    """The same ``what`` on every rank, or a ValueError on every rank that names the differences.

    Ranks of one job that train with other settings or data would not fail: they would compute
    different things, or wait in different collectives until the timeout.
    """
    everyone = distributed.gather_objects((socket.gethostname(), mine))
    host0, first = everyone[0]
    problems = []
    for rank, (host, theirs) in enumerate(everyone[1:], start=1):
        differs = [f"{k}={theirs.get(k)!r} (rank 0 has {first.get(k)!r})" for k in sorted(set(first) | set(theirs))
                   if theirs.get(k) != first.get(k)]
        if differs:
            problems.append(f"rank {rank} on {host}: {', '.join(differs)}")
    if problems:
        fix = ("Run the same command on every node (only --out, --name, --workers, --device, --quiet and the "
               "tracking flags may differ)" if what == "settings"
               else "Every node needs the same data at the path --data names")
        raise ValueError(f"the ranks of this job have different {what} than rank 0 on {host0}: "
                         f"{'; '.join(problems)}. {fix}")


def _say_why_rank_stopped(err: BaseException, dist: distributed.DistInfo, run_dir: Path) -> None:
    """A rank that stops on an error says where it was and how to go on: under torchrun the error is
    often a peer that died (its sockets closed) or hung (the timeout), and the traceback alone does
    not say which rank, which host, or what the run kept."""
    first_line = (str(err).strip().splitlines() or [""])[0]
    last = run_dir / "last.pt"
    kept = (f"the last checkpoint is {last} on rank 0's node" if dist.is_main and last.is_file()
            else f"checkpoints are in {run_dir} on rank 0's node")
    log.error("rank %d of %d on %s stopped: %s: %s. A rank stops at once when a peer dies, and after "
              "RESNETKIT_DIST_TIMEOUT_S=%g s when one stops answering; %s. Restart the job with --auto-resume "
              "(torchrun --max-restarts does) to continue from it.", dist.rank, dist.world_size, socket.gethostname(),
              type(err).__name__, first_line, distributed.timeout_seconds(), kept)


def _checkpoint_of_rank_0(state: Optional[dict], ckpt_path: Optional[Path],
                          dist: distributed.DistInfo) -> tuple[Optional[dict], Optional[Path]]:
    """Rank 0's checkpoint on every rank (with its path on rank 0's disk), or None on every rank.

    ``state``: rank 0's checkpoint (None elsewhere); ``ckpt_path``: the file each rank holds at
    the run's path, if any. Only rank 0 writes the run directory, so on hosts that share no disk
    the other ranks hold no checkpoint, or an older one: when any rank's file differs from rank
    0's, rank 0 sends its checkpoint to all. A checkpoint on another rank when rank 0 has none
    is an error: that node probably wrote the run as rank 0 before, and starting over would
    lose it.
    """
    digest = file_digest(ckpt_path) if ckpt_path is not None else None
    held = distributed.gather_objects((digest, str(ckpt_path) if ckpt_path else None, socket.gethostname()))
    digest0, path0, host0 = held[0]
    if digest0 is None:
        elsewhere = [f"rank {rank} on {host} ({path})" for rank, (d, path, host) in enumerate(held) if d is not None]
        if elsewhere:
            raise ValueError(
                f"rank 0 on {host0} has no checkpoint to resume, but {', '.join(elsewhere)} has one: the node that "
                "holds the run directory must be rank 0 (torchrun's c10d rendezvous orders nodes by --local-addr, "
                "else by host name). Start it so, or remove that run directory to start over")
        return None, None
    if all(d == digest0 for d, _, _ in held):  # one shared disk, or copies of one file: each reads its own
        return state if dist.is_main else read_checkpoint(ckpt_path), Path(path0)
    t0 = time.perf_counter()
    state = distributed.broadcast_object(state if dist.is_main else None)
    if not dist.is_main:
        log.info("rank %d: resuming from rank 0's checkpoint %s on %s (received in %.1f s)", dist.rank, path0, host0,
                 time.perf_counter() - t0)
    return state, Path(path0)


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
    state, folder, ckpt_path = None, None, None
    resuming_a_path = resume is not None and resume != "auto"
    if resuming_a_path and config is not None:
        raise TypeError("a resumed run keeps its own settings: pass what changes as changes={...} "
                        "(e.g. train(resume=run, changes={'epochs': 30})), not a TrainConfig")
    if config is None and not resuming_a_path:
        raise TypeError("train() needs a TrainConfig (or resume=RUN_DIR to continue a run)")
    changes = dict(changes or {})
    given = config  # what a new run trains with, should rank 0 hold no checkpoint
    # Under torchrun only rank 0 writes the run directory: on hosts that share no disk, the
    # other ranks may have no checkpoint (or an old one); they take rank 0's once joined.
    launch = distributed.launched()
    if resume == "auto":
        if not (config.out or config.name):
            raise ValueError("--auto-resume needs a fixed run directory: give --out or --name")
        folder = Path(config.out) if config.out else Path("runs") / config.name
        if (folder / "last.pt").is_file():
            resume = folder
        else:
            resume, overwrite = None, overwrite or not is_finished(folder)
            if is_finished(folder) and launch.is_main:
                raise ValueError(f"{folder} holds a finished run without last.pt; nothing to resume")
    if resume is not None:
        path = Path(resume)
        ckpt_path = path / "last.pt" if path.is_dir() else path
        if launch.is_main:
            if not ckpt_path.is_file():
                hint = ("; it was stopped before its first checkpoint: start it again with --overwrite"
                        if path.is_dir() and holds_run(path) else "")
                raise FileNotFoundError(f"cannot resume: {ckpt_path} does not exist (expected a run directory with "
                                        f"last.pt){hint}")
            state = read_checkpoint(ckpt_path)
            config = _resume_config(changes, state, ckpt_path)
            folder = ckpt_path.parent
        elif not ckpt_path.is_file():
            ckpt_path = None  # this node has none: rank 0 sends its own once the ranks have joined
    if config is not None:
        check_tracking(config)  # a missing package or a bad $MLFLOW_TRACKING_URI: said before the data is read
    pretrained = None
    if config is not None and config.pretrained and state is None and resume is None:
        # A resumed run has its own weights already.
        # Before any data is read: an unknown tag or a machine without the file and without
        # internet stops here, not after the data set has loaded.
        pretrained = pretrained_weights(config.model, config.pretrained)
        pretrained_path = fetch_weights(pretrained)
    # A rank other than 0 resuming a path learns the run's settings from rank 0 after joining;
    # until then the device it joins with is the one given.
    device = resolve_device(config.device if config is not None else changes.get("device", "auto"))
    dist = distributed.init_distributed(device.type)
    if dist.enabled:
        state, ckpt_path = _checkpoint_of_rank_0(state, ckpt_path, dist)
        if state is not None:
            config = _resume_config(changes, state, ckpt_path)
            folder, pretrained = ckpt_path.parent, None
        else:
            config = given
        if resolve_device(config.device).type != device.type:
            raise ValueError(f"rank {dist.rank} joined on {device.type} but the run trains on "
                             f"{resolve_device(config.device).type}: give --device on every node")
        _check_same_on_every_rank("settings", _shared_settings(config), dist)
    set_seed(config.seed + dist.rank, config.deterministic)

    splits = load_data(config)
    if splits.train is None:
        raise ValueError(f"--data {config.data}: no training data found")
    if len(splits.classes) < 2:
        raise ValueError(f"--data {config.data} has one class ({splits.classes[0] if splits.classes else 'none'}); "
                         "a classifier needs at least two (one folder per class)")
    if dist.enabled:
        _check_same_on_every_rank("data", {"classes": list(splits.classes), "training samples": len(splits.train),
                                           "validation samples": len(splits.val) if splits.val is not None else 0},
                                  dist)
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
    except RuntimeError as err:
        if dist.enabled:
            _say_why_rank_stopped(err, dist, run_dir)
        raise
    finally:
        if lock is not None:
            lock.release()
    final = trainer.final_metrics
    return TrainSummary(run_dir, trainer.best_acc if trainer.best_epoch else None, trainer.best_epoch,
                        time.perf_counter() - t0, history, final_top1=final.get("top1") if final else None,
                        tta=config.tta, final_map=final.get("map") if final else None)
