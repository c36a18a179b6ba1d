"""Model zoo: every registered network, the backbone interface and weight import."""

from . import cifar_resnet, inception, kws, preact, resnet, resnet9, vgg  # noqa: F401  (registers the builders)
from .base import ClassifierModel, DataConfig, FeatureInfo, FeatureListNet
from .finetune import freeze_batchnorm, freeze_stages
from .input_size import check_input_size, min_input_size
from .pretrained import (
    PretrainedWeights,
    PretrainedWeightsError,
    WeightsDownloadError,
    fetch_weights,
    list_pretrained,
    pretrained_models,
    pretrained_weights,
)
from .registry import create_model, get_model_entry, list_models, register_model
from .stats import count_macs, count_parameters, model_stats
from .weights import CheckpointError, load_checkpoint

__all__ = [
    "CheckpointError",
    "ClassifierModel",
    "DataConfig",
    "FeatureInfo",
    "FeatureListNet",
    "PretrainedWeights",
    "PretrainedWeightsError",
    "WeightsDownloadError",
    "check_input_size",
    "count_macs",
    "count_parameters",
    "create_model",
    "freeze_batchnorm",
    "freeze_stages",
    "fetch_weights",
    "get_model_entry",
    "list_models",
    "list_pretrained",
    "load_checkpoint",
    "min_input_size",
    "model_stats",
    "pretrained_models",
    "pretrained_weights",
    "register_model",
]
