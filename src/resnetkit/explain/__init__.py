"""Grad-CAM and Grad-CAM++ explanations for images and spectrograms.

``resnetkit.explain(model, x)`` returns the maps; :func:`grad_cam` also returns the explained
classes and the probabilities; :func:`explain_inputs` explains files and uploads of a loaded
run and draws them (``resnetkit explain``, ``POST /v1/explain``).
"""

from .explainer import ExplainedInput, class_index, explain_inputs, explain_unavailable
from .gradcam import METHODS, Explanation, default_layer, explain, grad_cam, resolve_layer

__all__ = [
    "METHODS",
    "ExplainedInput",
    "Explanation",
    "class_index",
    "default_layer",
    "explain",
    "explain_inputs",
    "explain_unavailable",
    "grad_cam",
    "resolve_layer",
]
