"""Test-time augmentation: average a model's logits over transformed copies of each input.

``flip`` averages the logits of each image and of its left-right mirror, the horizontal flip
that CIFAR and ImageNet training already use as augmentation, so the model has learned both
views. It costs one more forward pass per input. ``multiview`` (airbench's level 2) adds the
two images shifted one pixel up-left and down-right (reflect padding), each with its mirror:
six passes, the unshifted pair weighted as much as the four shifted views together. Both
apply to images only: mirroring a spectrogram reverses time, which a speech model never saw
in training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

TTA_MODES = ("none", "flip", "multiview")


class FlipAverage(nn.Module):
    """``(model(x) + model(x mirrored left-right)) / 2``: logits averaged over the two views."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        for name in ("model_name", "num_classes", "data_config", "in_chans"):
            if getattr(model, name, None) is not None:
                setattr(self, name, getattr(model, name))
        self.description = f"{getattr(model, 'description', type(model).__name__)}, flip TTA (2 views)"

    def forward(self, x):
        return (self.model(x) + self.model(x.flip(-1))) / 2


class MultiViewAverage(FlipAverage):
    """Flip TTA of the image, averaged with flip TTA of its 1-pixel translations (airbench, 6 views)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        self.description = f"{getattr(model, 'description', type(model).__name__)}, multiview TTA (6 views)"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        shifted = (super().forward(padded[..., :h, :w].contiguous()) +
                   super().forward(padded[..., 2:, 2:].contiguous())) / 2
        return (super().forward(x) + shifted) / 2


def check_tta(tta: str, kind: str) -> None:
    """Raise ValueError unless test-time augmentation ``tta`` applies to inputs of ``kind``."""
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}; got {tta!r}")
    if tta != "none" and kind != "image":
        raise ValueError(f"{tta} test-time augmentation mirrors images left-right; it does not apply to {kind} input "
                         "(use tta none)")


def with_tta(model: nn.Module, tta: str, kind: str) -> nn.Module:
    """``model`` wrapped for test-time augmentation ``tta`` on inputs of ``kind`` (``none``: unchanged)."""
    check_tta(tta, kind)
    return {"flip": FlipAverage, "multiview": MultiViewAverage}[tta](model) if tta != "none" else model
