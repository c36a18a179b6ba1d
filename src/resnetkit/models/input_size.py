"""The smallest input a model can take, found by shape inference on the meta device.

Every downsampling layer (strided conv, pooling without padding) shrinks the feature map; an
input that is too small reaches zero size somewhere inside and PyTorch fails there, with a
message such as ``Output size is too small`` that names neither the model nor the input.
:func:`check_input_size` says it up front instead.

The minimum is not stored per architecture: it is found by running the model's forward on
meta tensors of the weights' shapes (no memory, no arithmetic), so it is exact for every
model, including ones built with unusual options. Output sizes of convolutions and poolings
never decrease when the input grows, so "fits" is monotone in each axis and a binary search
finds the boundary.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import torch
from torch import nn
from torch.func import functional_call


def _fits(model: nn.Module, state: dict[str, torch.Tensor], in_chans: int, height: int, width: int) -> bool:
    x = torch.empty(1, in_chans, height, width, device="meta")
    try:
        functional_call(model, state, (x,))
    except RuntimeError:  # "Output size is too small", "Kernel size can't be greater than input"
        return False
    except ValueError as error:
        # InstanceNorm on a 1x1 map ("Expected more than 1 spatial element") and GroupNorm with one
        # channel per group ("Expected more than 1 value per channel") refuse too small an input.
        if "Expected more than 1" not in str(error):
            raise
        return False
    return True


def _smallest(fits, upper: int) -> int:
    lo, hi = 1, upper
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def min_input_size(model: nn.Module) -> tuple[int, int]:
    """Smallest (height, width) the model accepts, e.g. (32, 32) for a VGG, (1, 1) for a ResNet.

    The model keeps its weights, device and mode: the search runs in eval mode (batch 1 would
    stop BatchNorm in training mode, which is about batch size, not input size) on meta copies
    of its parameters and buffers.
    """
    config = getattr(model, "data_config", None)
    in_chans = getattr(model, "in_chans", None)
    if config is None or in_chans is None:
        raise TypeError(
            f"min_input_size needs a resnetkit model (with data_config and in_chans), got {type(model).__name__}"
        )
    _, ref_h, ref_w = config.input_size
    state = {
        name: torch.empty_like(t, device="meta")
        for name, t in itertools.chain(model.named_parameters(), model.named_buffers())
    }
    was_training = model.training
    model.eval()
    try:
        # Most nets pad every downsampling layer and take any size: one probe settles them.
        if _fits(model, state, in_chans, 1, 1):
            return 1, 1
        if not _fits(model, state, in_chans, ref_h, ref_w):
            raise RuntimeError(f"{_name(model)} fails on its own data_config input size {ref_h}x{ref_w}")
        height = _smallest(lambda h: _fits(model, state, in_chans, h, ref_w), ref_h)
        width = _smallest(lambda w: _fits(model, state, in_chans, ref_h, w), ref_w)
    finally:
        model.train(was_training)
    return height, width


def check_input_size(
    model: nn.Module, input_size: Sequence[int], hint: str = "resize with --img-size {n}"
) -> None:
    """Raise ValueError unless ``input_size`` (C, H, W) fits the model.

    ``hint`` ends the message; ``{n}`` (the larger minimum side), ``{h}`` and ``{w}`` are
    filled in. Pass ``hint=""`` where resizing is not the remedy (audio features).
    """
    if len(input_size) != 3:
        raise ValueError(f"input_size must be (channels, height, width), got {tuple(input_size)}")
    chans, height, width = (int(v) for v in input_size)
    in_chans = getattr(model, "in_chans", None)
    if in_chans is not None and chans != in_chans:
        raise ValueError(f"{_name(model)} expects {in_chans} input channel(s), got {chans}")
    min_h, min_w = min_input_size(model)
    if height < min_h or width < min_w:
        tail = hint.format(n=max(min_h, min_w), h=min_h, w=min_w) if hint else ""
        message = f"{_name(model)} needs inputs of at least {min_h}x{min_w}; got {height}x{width}"
        raise ValueError(message + (f" ({tail})" if tail else ""))


def _name(model: nn.Module) -> str:
    return getattr(model, "model_name", type(model).__name__)
