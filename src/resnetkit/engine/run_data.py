"""A run's data, from its configuration: for training, and rebuilt later for a trained run.

Training reads ``--data`` through :func:`load_data`. A trained run keeps its configuration
in its checkpoint, so the same data can be rebuilt after the fact (:func:`run_splits`) for
int8 calibration, export parity and :meth:`LoadedRun.calibration_samples`; those take a few
samples of it, drawn without augmentation (:func:`sample_batches`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from ..data import BatchOptions, DataRequest, DataSplits, InputSpec, LabelledData, resolve_data
from .config import TrainConfig


def data_request(config: TrainConfig, for_evaluation: bool = False) -> DataRequest:
    """The data settings of ``config`` as the data layer reads them."""
    seed = config.seed if config.split_seed is None else config.split_seed
    return DataRequest(data=config.data, val_split=config.val_split, seed=seed, in_chans=config.in_chans,
                       on_corrupt=config.on_corrupt, audio=config.features, audio_layout=config.audio_layout,
                       fsdd_split=config.fsdd_split, keywords=config.keywords,
                       for_evaluation=for_evaluation, path_col=config.path_col, label_col=config.label_col,
                       label_sep=config.label_sep, task=config.task)


def load_data(config: TrainConfig, for_evaluation: bool = False) -> DataSplits:
    """``config.data`` as training and validation data (``for_evaluation``: the held-out part as ``val``)."""
    return resolve_data(data_request(config, for_evaluation))


def run_splits(config: Optional[Mapping[str, Any]], path: str | Path) -> DataSplits:
    """The training and validation data of the run at ``path``, rebuilt from the configuration it stored."""
    if not config:
        raise ValueError(f"{path} holds no training configuration, so its data cannot be rebuilt; "
                         "pass the data explicitly (--data / --calibration-data)")
    train_config = TrainConfig.from_dict(dict(config), f"checkpoint {path}")
    try:
        return load_data(train_config)
    except (ValueError, FileNotFoundError) as err:
        raise type(err)(f"cannot rebuild the data of {path} (data={train_config.data!r}): {err}; "
                        "pass the data explicitly (--data / --calibration-data)") from None


def sample_batches(data: LabelledData, spec: InputSpec, count: int, *, seed: int = 0, batch_size: int = 64,
                   device: str | torch.device = "cpu") -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Up to ``count`` samples of ``data`` drawn at random (seeded), prepared for ``spec`` without augmentation.

    Every class has its share (a data set stored class by class would give one class from
    its first ``count`` samples); the batches are what evaluation would feed the model.
    """
    if count < 1:
        raise ValueError(f"the number of samples must be >= 1, got {count}")
    source = data.batches(spec, BatchOptions(train=False, batch_size=batch_size, device=torch.device(device)))
    total = source.num_samples
    if total == 0:
        return []
    chosen = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:count].sort().values
    return [(x, y) for x, y in source.only(chosen).epoch(0) if len(x)]
