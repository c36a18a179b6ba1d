"""Devices and precisions: what a user may ask for, and what the CPU at hand gets."""

from __future__ import annotations

import pytest
import torch

from resnetkit.runtime.device import autocast, cpu_has_native_bf16, resolve_device, resolve_precision
from resnetkit.runtime.distributed import DistInfo


def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("tpu", "", "cuda:x"):
        with pytest.raises(ValueError, match="device"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is available"):
            resolve_device("cuda", DistInfo(0, 0, 2))


def test_precisions_on_this_cpu():
    cpu = torch.device("cpu")
    assert resolve_precision("off", cpu) == resolve_precision("fp32", cpu) == torch.float32
    assert resolve_precision("bf16", cpu) == torch.bfloat16
    # auto never picks emulated bf16: on a CPU without native bf16 it runs many times slower than fp32.
    assert resolve_precision("auto", cpu) == (torch.bfloat16 if cpu_has_native_bf16() else torch.float32)
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("int4", cpu)


def test_autocast_is_off_for_fp32_and_on_for_bf16():
    x = torch.randn(4, 4)
    with autocast(torch.device("cpu"), torch.float32):
        assert (x @ x).dtype == torch.float32
    with autocast(torch.device("cpu"), torch.bfloat16):
        assert (x @ x).dtype == torch.bfloat16
