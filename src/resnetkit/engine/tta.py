"""Test-time augmentation: average a model's logits over transformed copies of each input.

``flip`` averages the logits of each image and of its left-right mirror, the horizontal flip
that CIFAR and ImageNet training already use as augmentation, so the model has learned both
views. It costs one more forward pass per input. It applies to images only: mirroring a
spectrogram reverses time, which a speech model never saw in training.
"""

from __future__ import annotations

from torch import nn

TTA_MODES = ("none", "flip")


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


def check_tta(tta: str, kind: str) -> None:
    """Raise ValueError unless test-time augmentation ``tta`` applies to inputs of ``kind``."""
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}; got {tta!r}")
    if tta == "flip" and kind != "image":
        raise ValueError(f"flip test-time augmentation mirrors images left-right; it does not apply to {kind} input "
                         "(use tta none)")


def with_tta(model: nn.Module, tta: str, kind: str) -> nn.Module:
    """``model`` wrapped for test-time augmentation ``tta`` on inputs of ``kind`` (``none``: unchanged)."""
    check_tta(tta, kind)
    return FlipAverage(model) if tta == "flip" else model
