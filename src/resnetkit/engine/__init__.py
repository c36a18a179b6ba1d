"""Training and evaluation engine: loops, metrics and the state of a run."""

from .config import TrainConfig, build_config, load_recipe
from .run import LoadedRun, TrainSummary, load_run, train
from .trainer import EvalResult, Trainer, TrainingDiverged, TrainingInterrupted, evaluate

__all__ = [
    "EvalResult",
    "LoadedRun",
    "TrainConfig",
    "TrainSummary",
    "Trainer",
    "TrainingDiverged",
    "TrainingInterrupted",
    "build_config",
    "evaluate",
    "load_recipe",
    "load_run",
    "train",
]
