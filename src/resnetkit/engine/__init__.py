"""Training and evaluation engine: the loop, evaluation, loading a run, and the state of a run.

- :mod:`.trainer`: ``Trainer(model, train, val, config).fit()``
- :mod:`.training`: ``train(config)``, what ``resnetkit train`` does
- :mod:`.evaluation`: ``evaluate(model, data)`` and the loss
- :mod:`.inference`: ``load_run(path)`` for evaluate and predict; ``load_model(path)`` also opens exported files
- :mod:`.config`, :mod:`.optim`, :mod:`.checkpoint`, :mod:`.history`, :mod:`.metrics`, :mod:`.compare`
"""

from .config import TrainConfig, build_config, load_recipe
from .evaluation import EvalResult, evaluate
from .history import History
from .inference import LoadedRun, load_model, load_run
from .trainer import Trainer, TrainingDiverged, TrainingInterrupted
from .training import TrainSummary, train

__all__ = [
    "EvalResult",
    "History",
    "LoadedRun",
    "TrainConfig",
    "TrainSummary",
    "Trainer",
    "TrainingDiverged",
    "TrainingInterrupted",
    "build_config",
    "evaluate",
    "load_recipe",
    "load_model",
    "load_run",
    "train",
]
