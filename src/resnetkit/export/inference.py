"""``optimize_for_inference``: the fastest correct inference module for the current device."""

from __future__ import annotations

import copy
import logging
from typing import Any, Literal

import torch
from torch import nn

from ..runtime.device import resolve_precision
from .folding import fold_batchnorm

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16", "fp16", "off", "int8"]


class InferenceModule(nn.Module):
    """Wraps an optimized model: takes float32 input in any layout, returns float32 logits.

    The input is moved to the model's device, dtype and memory format, so callers keep
    writing ``module(x)`` exactly as for the original model.
    """

    def __init__(self, model: nn.Module, device: torch.device, dtype: torch.dtype, channels_last: bool,
                 description: str, source: nn.Module | None = None) -> None:
        super().__init__()
        self.model = model
        self.device = device
        self.dtype = dtype  # of the input the model takes (float32 for int8 models, which quantize it inside)
        self.channels_last = channels_last
        self.description = description
        for name in ("model_name", "in_chans", "num_classes", "data_config"):
            for holder in (source, model, getattr(model, "_orig_mod", None)):
                if holder is not None and getattr(holder, name, None) is not None:
                    setattr(self, name, getattr(holder, name))
                    break

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, self.dtype, non_blocking=True)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x).float()

    def extra_repr(self) -> str:
        return self.description


def optimize_for_inference(
    model: nn.Module,
    *,
    precision: Precision = "auto",
    device: str | torch.device | None = None,
    channels_last: bool = True,
    fold_bn: bool = True,
    compile: bool = True,
    calibration: Any = None,
) -> InferenceModule:
    """Return the fastest correct inference version of ``model`` for the current device.

    Steps: a copy in eval mode; Conv+BN folding; channels-last memory format; weights in
    the fastest precision the device computes natively (bf16 on CPUs with AVX-512 BF16/AMX
    and on recent GPUs, fp16 on older GPUs, fp32 otherwise; ``precision="fp32"`` keeps
    full precision, as does ``"off"``); and ``torch.compile``, which paid on every device
    measured: on the 2-core development CPU, ResNet-50 at batch 16 went from 2.90x to 3.24x
    torchvision's eager fp32 call in bf16 and from 1.43x to 1.58x in fp32, for 8-12 s of
    compilation (BENCHMARKS.md). Pass ``compile=False`` for one-off calls on few inputs. The
    original model is not modified.

    ``precision="int8"`` (CPU only): post-training static quantization with PT2E and
    torchao's X86InductorQuantizer, calibrated on ``calibration`` (a tensor of model inputs or
    an iterable of batches: a few hundred real training samples), run by oneDNN's int8
    kernels, through ``torch.compile`` (with inductor's freezing) or, with ``compile=False``,
    lowered without compiling. Measure its accuracy cost before serving it
    (``resnetkit evaluate --precision int8``).
    """
    if precision == "int8":
        return _optimize_int8(model, device, channels_last, compile, calibration)
    if calibration is not None:
        raise ValueError(f"calibration samples apply to precision='int8' only, not {precision!r}")
    if device is None:
        try:
            device = next(model.parameters()).device
        except StopIteration:
            device = torch.device("cpu")
    device = torch.device(device)
    dtype = resolve_precision(precision, device)
    optimized = copy.deepcopy(model).to(device).eval()
    steps = []
    if fold_bn:
        optimized = fold_batchnorm(optimized)
        steps.append("conv+bn folded")
    if channels_last:
        optimized = optimized.to(memory_format=torch.channels_last)
        steps.append("channels-last")
    optimized = optimized.to(dtype)
    steps.append(str(dtype).replace("torch.", ""))
    for p in optimized.parameters():
        p.requires_grad_(False)
    if compile:
        optimized = torch.compile(optimized)
        steps.append("torch.compile")
    return InferenceModule(optimized, device, dtype, channels_last, ", ".join(steps))


def _optimize_int8(model: nn.Module, device: str | torch.device | None, channels_last: bool, compile: bool,
                   calibration: Any) -> InferenceModule:
    from .quantize import FrozenInt8, calibration_batches, cpu_has_vnni, example_batch, lower_int8, quantize_pt2e

    device = torch.device(device or "cpu")
    if device.type != "cpu":
        raise ValueError(f"precision='int8' runs on the CPU (oneDNN int8 kernels through X86InductorQuantizer), "
                         f"not on {device}; use bf16 or fp16 on a GPU")
    config = getattr(model, "data_config", None)
    batches = calibration_batches(calibration)
    if config is not None and batches[0].ndim == 4 and batches[0].shape[1] != config.input_size[0]:
        raise ValueError(f"calibration inputs have {batches[0].shape[1]} channels, "
                         f"{getattr(model, 'model_name', type(model).__name__)} takes {config.input_size[0]}")
    if channels_last:
        batches = [b.contiguous(memory_format=torch.channels_last) if b.ndim == 4 else b for b in batches]
    converted = quantize_pt2e(model, batches)
    if compile:
        quantized, how = FrozenInt8(converted, compile=True), "torch.compile (freezing)"
    else:
        quantized, how = FrozenInt8(lower_int8(converted, example_batch(batches))), "lowered to oneDNN int8 ops"
    samples = sum(len(b) for b in batches)
    description = f"int8 PT2E (X86InductorQuantizer, {samples} calibration samples"
    description += ", 7-bit activations: no VNNI), " if not cpu_has_vnni() else "), "
    description += how
    if channels_last:
        description += ", channels-last"
    return InferenceModule(quantized, device, torch.float32, channels_last, description, source=model)
