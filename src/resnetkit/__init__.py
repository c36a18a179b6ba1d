"""resnetkit: residual networks that are faithful to the papers and fast on the machine at hand."""

from .engine import EvalResult, History, Trainer, TrainConfig, evaluate, load_run, train
from .explain import explain
from .export import optimize_for_inference
from .models import (
    CheckpointError,
    count_macs,
    count_parameters,
    create_model,
    freeze_batchnorm,
    freeze_stages,
    list_models,
    list_pretrained,
    load_checkpoint,
    model_stats,
)
from .version import __version__

__all__ = [
    "CheckpointError",
    "EvalResult",
    "History",
    "TrainConfig",
    "Trainer",
    "evaluate",
    "explain",
    "load_run",
    "train",
    "__version__",
    "count_macs",
    "count_parameters",
    "create_model",
    "freeze_batchnorm",
    "freeze_stages",
    "list_models",
    "list_pretrained",
    "load_checkpoint",
    "model_stats",
    "optimize_for_inference",
]
