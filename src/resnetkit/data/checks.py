"""Checks of arguments shared by the audio front end and the audio augmentations; messages name the argument."""

from __future__ import annotations

import math
from typing import Sequence

import torch


def check_int(value: object, name: str, minimum: int = 1) -> int:
    # bool is an int subclass; n_mels=True is a bug, not one band.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_float(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def check_batch(x: object, name: str, dims: Sequence[int]) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in dims:
        raise ValueError(f"{name} must have {' or '.join(map(str, dims))} dims, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        # Integer PCM would give features 90 dB off; load_audio returns float in [-1, 1).
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    return x
