"""Deployment: Conv+BN folding and the fastest inference module for the current device."""

from .folding import fold_batchnorm
from .inference import InferenceModule, optimize_for_inference

__all__ = ["InferenceModule", "fold_batchnorm", "optimize_for_inference"]
