"""Parameter and MAC counts for any model and input size (torch.utils.flop_counter)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_size: Sequence[int] | None = None) -> int:
    """Multiply-accumulates of one forward pass for one sample of ``input_size`` (C, H, W).

    Counts convolutions and matrix products (what FlopCounterMode sees, halved: one MAC is
    two FLOPs), the convention of the papers' "FLOPs" tables. Norms, activations and
    pooling are not counted. Runs on the model's device; a model on the ``meta`` device
    is counted without allocating memory.
    """
    if input_size is None:
        config = getattr(model, "data_config", None)
        if config is None:
            raise ValueError("count_macs needs input_size for a model without a data_config")
        input_size = config.input_size
    try:
        param = next(model.parameters())
        device, dtype = param.device, param.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    x = torch.zeros((1, *input_size), device=device, dtype=dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def model_stats(name: str, input_size: Sequence[int] | None = None, **kwargs) -> dict:
    """Parameters and MACs of a registered model, built on the meta device (instant, no memory)."""
    from .registry import create_model

    with torch.device("meta"):
        model = create_model(name, **kwargs)
    size = tuple(input_size) if input_size else model.data_config.input_size
    return {"params": count_parameters(model), "macs": count_macs(model, size), "input_size": size}
