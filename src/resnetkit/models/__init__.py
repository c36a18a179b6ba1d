"""Model zoo: every registered network, the backbone interface and weight import."""

from . import cifar_resnet, inception, kws, preact, resnet, resnet9, vgg  # noqa: F401  (registers the builders)
from .base import ClassifierModel, DataConfig, FeatureInfo, FeatureListNet
from .finetune import freeze_batchnorm, freeze_stages
from .input_size import check_input_size, min_input_size
from .registry import create_model, get_model_entry, list_models, register_model
from .stats import count_macs, count_parameters, model_stats
from .weights import CheckpointError, load_checkpoint

__all__ = [
    "CheckpointError",
    "ClassifierModel",
    "DataConfig",
    "FeatureInfo",
    "FeatureListNet",
    "check_input_size",
    "count_macs",
    "count_parameters",
    "create_model",
    "freeze_batchnorm",
    "freeze_stages",
    "get_model_entry",
    "list_models",
    "load_checkpoint",
    "min_input_size",
    "model_stats",
    "register_model",
]
