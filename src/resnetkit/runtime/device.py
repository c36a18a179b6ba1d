"""Device, numeric precision and seeding: the one place that knows the hardware.

Training, evaluation and ``optimize_for_inference`` all ask :func:`resolve_precision`, so a
run trains, validates and is served in the same precision unless told otherwise.
"""

from __future__ import annotations

import random
from contextlib import nullcontext

import torch

from .distributed import DistInfo

# What a user may ask for; "off" is the command line's spelling of fp32.
PRECISIONS = ("auto", "bf16", "fp16", "fp32", "off")


def resolve_device(name: str | torch.device = "auto", dist: DistInfo | None = None) -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``; under torchrun each process
    takes the GPU of its local rank."""
    if isinstance(name, torch.device):
        device = name
    else:
        if not isinstance(name, str) or not name:
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N; got {name!r}")
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            device = torch.device(name)
        except RuntimeError:
            raise ValueError(f"unknown device {name!r}; allowed: auto, cpu, cuda, cuda:N") from None
        if device.type not in ("cpu", "cuda"):
            raise ValueError(f"device {name!r} is not supported; allowed: auto, cpu, cuda, cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' asked for, but no CUDA GPU is available (use --device cpu or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {device} asked for, but only {torch.cuda.device_count()} GPU(s) are visible")
        if dist is not None and dist.enabled:
            device = torch.device("cuda", dist.local_rank)
    return device


def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX: bf16 matrix multiplies run at about twice the fp32 rate.

    Without them (AVX2 machines) PyTorch emulates bf16 and it runs many times slower than
    fp32, so ``auto`` must not choose it.
    """
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(torch.cpu, probe, None) or getattr(torch._C, f"_cpu{probe}", None)
        try:
            if fn is not None and fn():
                return True
        except Exception:
            continue
    return False


def resolve_precision(mode: str, device: torch.device) -> torch.dtype:
    """The compute dtype for ``mode`` (auto, bf16, fp16, fp32/off) on ``device``.

    ``auto``: bf16 on GPUs that have it and on CPUs with native bf16, fp16 on older GPUs,
    fp32 everywhere else.
    """
    if mode not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {mode!r}")
    if mode in ("fp32", "off"):
        return torch.float32
    if mode == "bf16":
        return torch.bfloat16
    if mode == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def autocast(device: torch.device, dtype: torch.dtype):
    """Mixed precision around a forward pass; fp32 needs none."""
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def precision_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))


def set_seed(seed: int, deterministic: bool = False) -> None:
    """Seed Python's and torch's generators; ``deterministic`` also asks for deterministic kernels."""
    random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
