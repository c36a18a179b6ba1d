"""Model zoo: every registered network, the backbone interface and weight import."""

from . import cifar_resnet, inception, kws, preact, resnet, vgg  # noqa: F401  (registers the builders)
from .base import ClassifierModel, DataConfig, FeatureInfo, FeatureListNet
from .finetune import freeze_batchnorm, freeze_stages
from .registry import create_model, get_model_entry, list_models, register_model
from .stats import count_macs, count_parameters, model_stats
from .weights import CheckpointError, load_checkpoint

__all__ = [
    "CheckpointError",
    "ClassifierModel",
    "DataConfig",
    "FeatureInfo",
    "FeatureListNet",
    "count_macs",
    "count_parameters",
    "create_model",
    "freeze_batchnorm",
    "freeze_stages",
    "get_model_entry",
    "list_models",
    "load_checkpoint",
    "model_stats",
    "register_model",
]
