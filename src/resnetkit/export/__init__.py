"""Deployment: Conv+BN folding, the fastest inference module, export to ONNX / TorchScript / pt2, int8."""

from .exported import ExportedModel, WaveformInput, load_exported
from .folding import fold_batchnorm
from .formats import export_model, sniff_format
from .inference import InferenceModule, optimize_for_inference
from .metadata import FORMATS, ExportMetadata
from .parity import MIN_FP32_AGREEMENT, Parity, measure_parity
from .quantize import quantize_onnx, quantize_pt2e

__all__ = [
    "FORMATS",
    "MIN_FP32_AGREEMENT",
    "ExportMetadata",
    "ExportedModel",
    "InferenceModule",
    "Parity",
    "WaveformInput",
    "export_model",
    "fold_batchnorm",
    "load_exported",
    "measure_parity",
    "optimize_for_inference",
    "quantize_onnx",
    "quantize_pt2e",
    "sniff_format",
]
