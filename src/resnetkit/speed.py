"""Speed measurement: training-step and inference throughput, latency, and the machine's peak.

Every timing excludes warm-up and compilation, repeats the measurement and reports the
median with its spread. Comparisons against torchvision and timm run in the same process and
alternate repeat by repeat, so a change in machine load hits every contender alike.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from torch import nn

from .runtime.device import autocast, cpu_has_native_bf16, resolve_device, resolve_precision
from .models import count_macs, create_model
from .export import optimize_for_inference

LIBRARIES = ("resnetkit", "torchvision", "timm")
MODES = ("train", "infer", "latency")


@dataclass
class Case:
    """One configuration to time."""

    model: str
    mode: str  # train (img/s of forward+backward+SGD), infer (img/s, large batch), latency (ms, batch 1)
    input_size: int
    batch_size: int
    precision: str = "fp32"  # fp32 or bf16/fp16 (autocast when training, weights when inferring)
    channels_last: bool = False
    compile: bool = False
    library: str = "resnetkit"
    optimized: bool = False  # optimize_for_inference(precision=...): "auto" is resnetkit's default path
    model_args: dict = field(default_factory=dict)  # resnetkit models: constructor and tweak options (whiten=2, ...)

    @property
    def label(self) -> str:
        if self.optimized:
            return f"{self.library} optimize_for_inference({self.precision})"
        parts = [self.library, self.precision, "channels-last" if self.channels_last else "NCHW"]
        if self.model_args:
            parts.append(",".join(f"{k}={v}" for k, v in sorted(self.model_args.items())))
        if self.compile:
            parts.append("compiled")
        return " ".join(parts)


@dataclass
class Result:
    case: Case
    seconds: list[float] = field(default_factory=list)  # per call
    macs_per_image: int = 0

    @property
    def images_per_call(self) -> int:
        return 1 if self.case.mode == "latency" else self.case.batch_size

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def images_per_sec(self) -> float:
        return self.images_per_call / self.median_s

    @property
    def gflops(self) -> float:
        # A training step costs about three forward passes (the backward pass twice one).
        passes = 3 if self.case.mode == "train" else 1
        return 2 * self.macs_per_image * passes * self.images_per_sec / 1e9

    def to_dict(self, peak: dict[str, float] | None = None) -> dict:
        d = {**asdict(self.case), "label": self.case.label, "median_s": self.median_s,
             "min_s": min(self.seconds), "max_s": max(self.seconds), "repeats": len(self.seconds),
             "images_per_sec": self.images_per_sec, "latency_ms": 1000 * self.median_s if self.case.mode == "latency" else None,
             "macs_per_image": self.macs_per_image, "gflops": self.gflops}
        if peak:
            precision = self.case.precision
            if precision == "auto":
                precision = "fp32" if resolve_precision("auto", torch.device("cpu")) == torch.float32 else "bf16"
            key = "bf16" if precision in ("bf16", "fp16") else "fp32"
            d["peak_gflops"] = peak.get(key)
            d["fraction_of_peak"] = self.gflops / peak[key] if peak.get(key) else None
        return d


def matmul_peak_gflops(dtype: torch.dtype, device: torch.device, n: int = 2048, repeats: int = 5) -> float | None:
    """The machine's measured matrix-multiply rate (the best of ``repeats``), the ceiling for convolutions.

    None for bf16 on a CPU without native bf16: PyTorch emulates it there, two orders of
    magnitude below fp32, and the measurement alone would take minutes.
    """
    if dtype == torch.bfloat16 and device.type == "cpu" and not cpu_has_native_bf16():
        return None
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_model(library: str, name: str, num_classes: int | None = None, model_args: dict | None = None) -> nn.Module:
    """The same architecture from resnetkit, torchvision or timm (random weights); ``model_args`` for resnetkit's.

    ``num_classes=None`` keeps each model's own head (1000 for the ImageNet nets, 10 for the CIFAR
    ones), so the MACs a benchmark reports are those of the model a user trains.
    """
    if library == "resnetkit":
        classes = {} if num_classes is None else {"num_classes": num_classes}
        return create_model(name, **classes, **(model_args or {}))
    num_classes = 1000 if num_classes is None else num_classes
    if library == "torchvision":
        import torchvision

        if not hasattr(torchvision.models, name):
            raise ValueError(f"torchvision has no model {name!r}")
        return getattr(torchvision.models, name)(num_classes=num_classes)
    if library == "timm":
        try:
            import timm
        except ImportError:
            raise ValueError("timm is not installed: pip install timm (or resnetkit[dev])") from None
        return timm.create_model(name, pretrained=False, num_classes=num_classes)
    raise ValueError(f"unknown library {library!r}; allowed: {', '.join(LIBRARIES)}")


def prepare(case: Case, device: torch.device) -> Callable[[], None]:
    """Build the model of ``case`` and return a function that runs one timed call."""
    torch.manual_seed(0)
    # auto and int8 are precisions of optimize_for_inference only, which sets its own input dtype.
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "auto": None, "int8": None}[case.precision]
    model = build_model(case.library, case.model, model_args=case.model_args).to(device)
    in_chans = getattr(model, "in_chans", 3)
    batch = 1 if case.mode == "latency" else case.batch_size
    x = torch.randn(batch, in_chans, case.input_size, case.input_size, device=device)
    memory_format = torch.channels_last if case.channels_last else torch.contiguous_format

    if case.mode == "train":
        model = model.train().to(memory_format=memory_format)
        x = x.contiguous(memory_format=memory_format)
        y = torch.randint(0, getattr(model, "num_classes", 1000), (batch,), device=device)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        fwd = torch.compile(model) if case.compile else model
        def step() -> None:
            with autocast(device, dtype):
                out = fwd(x)
            loss = nn.functional.cross_entropy(out.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step

    if case.optimized:
        # int8 needs calibration samples; for timing, random inputs of the right shape do (the
        # observed ranges change the scales, not the kernels that run).
        calibration = torch.randn(32, *x.shape[1:]) if case.precision == "int8" else None
        fwd = optimize_for_inference(model, device=device, precision=case.precision, calibration=calibration)
    else:
        model = model.eval().to(memory_format=memory_format).to(dtype)
        x = x.contiguous(memory_format=memory_format).to(dtype)
        fwd = torch.compile(model) if case.compile else model

    def infer() -> None:
        with torch.inference_mode():
            fwd(x)

    return infer


def run_cases(cases: list[Case], repeats: int = 5, warmup: int = 3, device: str = "auto",
              min_time_s: float = 0.2) -> list[Result]:
    """Time every case: build all, warm each up (compilation included), then alternate repeats."""
    dev = resolve_device(device)
    fns, results = [], []
    for case in cases:
        fn = prepare(case, dev)
        for _ in range(warmup):
            fn()
        _sync(dev)
        # Calls per repeat: enough that one repeat lasts min_time_s (latencies are short).
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        one = max(time.perf_counter() - t0, 1e-6)
        inner = max(1, int(min_time_s / one))
        fns.append((fn, inner))
        macs = _macs(case)
        results.append(Result(case, macs_per_image=macs))
    for _ in range(repeats):
        for (fn, inner), result in zip(fns, results):
            _sync(dev)
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            _sync(dev)
            result.seconds.append((time.perf_counter() - t0) / inner)
    return results


_MACS_CACHE: dict[tuple, int] = {}


def _macs(case: Case) -> int:
    key = (case.model, case.input_size, tuple(sorted(case.model_args.items())))
    if key not in _MACS_CACHE:
        with torch.device("meta"):
            model = build_model(case.library, case.model, model_args=case.model_args)
        chans = getattr(model, "in_chans", 3)
        _MACS_CACHE[key] = count_macs(model, (chans, case.input_size, case.input_size))
    return _MACS_CACHE[key]
