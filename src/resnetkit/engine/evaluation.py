"""Evaluation: loss, accuracy and the full metrics of a model on labelled data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..data import BatchOptions, InputSpec, as_labelled_data
from ..data.batching import BatchSource
from ..data.multilabel import is_multilabel
from ..runtime.device import autocast, resolve_device, resolve_precision
from .metrics import ClassificationMetrics
from .tta import with_tta


def loss_fn(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0, reduction: str = "mean",
            weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    # cross_entropy takes class indices or (mixup/cutmix) probabilities alike; ``weight`` (one per
    # class) weighs each sample's loss by its class, as torch defines it for both kinds of target.
    return F.cross_entropy(logits.float(), targets, weight=weight, label_smoothing=label_smoothing, reduction=reduction)


def soft_accuracy_hits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Correct top-1 predictions; with mixed (soft) targets the dominant class counts."""
    hard = targets.argmax(1) if targets.ndim == 2 else targets
    return (logits.argmax(1) == hard).sum()


@dataclass
class EvalResult:
    """``loss, accuracy = evaluate(...)``, as Keras' ``model.evaluate`` returns them; every metric in ``.metrics``."""

    loss: Optional[float]
    accuracy: float
    metrics: dict

    def __iter__(self):
        return iter((self.loss, self.accuracy))


@torch.no_grad()
def evaluate_batches(model: nn.Module, source: BatchSource, classes: Sequence[str], device: torch.device,
                     dtype: torch.dtype = torch.float32, temperature: float = 1.0) -> dict:
    """Metrics of ``model`` over one pass of ``source`` (summed across processes under DDP).

    ``temperature`` divides the logits before the loss and the calibration error (a calibrated
    run's probabilities); accuracy does not depend on it.
    """
    was_training = model.training
    model.eval()
    metrics = ClassificationMetrics(len(classes), device=device, temperature=temperature)
    try:
        for x, y in source.epoch(0):
            with autocast(device, dtype):
                logits = model(x)
            metrics.update(logits.float(), y, loss_fn(logits.float() / temperature, y, reduction="sum"))
    finally:
        model.train(was_training)
    metrics.reduce_across_processes()
    return metrics.compute(list(classes))


@torch.no_grad()
def metrics_of_logits(logits: torch.Tensor, labels: torch.Tensor, classes: Sequence[str], device: torch.device,
                      temperature: float = 1.0) -> dict:
    """The metrics of :func:`evaluate_batches` from logits already computed (this process's share)."""
    metrics = ClassificationMetrics(len(classes), device=device, temperature=temperature)
    if len(labels):
        metrics.update(logits.float(), labels, loss_fn(logits.float() / temperature, labels, reduction="sum"))
    metrics.reduce_across_processes()
    return metrics.compute(list(classes))


@torch.no_grad()
def collect_logits(model: nn.Module, source: BatchSource, device: torch.device,
                   dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """This process's logits (float32) and labels over one pass of ``source``."""
    was_training = model.training
    model.eval()
    logits, labels = [], []
    try:
        for x, y in source.epoch(0):
            with autocast(device, dtype):
                out = model(x)
            logits.append(out.float())
            labels.append(y)
    finally:
        model.train(was_training)
    if not logits:
        return torch.zeros(0, 0, device=device), torch.zeros(0, dtype=torch.long, device=device)
    return torch.cat(logits), torch.cat(labels)


def evaluate(
    model: nn.Module,
    data: Any,
    *,
    batch_size: int = 256,
    device: str | torch.device = "auto",
    amp: str = "auto",
    classes: Optional[Sequence[str]] = None,
    input_spec: Optional[InputSpec] = None,
    channels_last: bool = True,
    tta: str = "none",
    temperature: float | Sequence[float] = 1.0,
    thresholds: Optional[Sequence[float]] = None,
) -> EvalResult:
    """Loss, accuracy and the full metrics of ``model`` on ``data`` (Keras' ``model.evaluate``).

    ``data`` is any labelled data of :mod:`resnetkit.data` or an ``(inputs, labels)`` pair.
    ``tta="flip"`` averages the logits of each image and its mirror (images only).
    ``temperature`` divides the logits for the loss and the calibration error (``ece``).
    Multi-label data (:class:`~resnetkit.data.multilabel.MultiLabelData`) gets the metrics of
    :func:`~.multilabel.multilabel_metrics` (mAP, per-label AP, ...), its labels decided at
    ``thresholds`` (0.5 each by default) and ``accuracy`` the exact match.
    """
    device = resolve_device(device)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    data = as_labelled_data(data, classes)
    spec = input_spec or data.input_spec(model)
    classes = list(classes or data.classes)
    options = BatchOptions(train=False, batch_size=batch_size, device=device, channels_last=channels_last)
    model = with_tta(model, tta, spec.kind)
    source = data.batches(spec, options)
    if is_multilabel(data):
        from .multilabel import multilabel_metrics

        logits, targets = collect_logits(model, source, device, resolve_precision(amp, device))
        m = multilabel_metrics(logits, targets, classes, temperature, thresholds)
    else:
        m = evaluate_batches(model, source, classes, device, resolve_precision(amp, device), temperature=temperature)
    # Left out when the data was read, and by the batch source while decoding (DataLoader workers).
    skipped = {f.path: f for f in [*getattr(data, "skipped", ()), *source.skipped]}
    m["skipped"] = [{"path": f.path, "reason": f.reason} for f in skipped.values()]
    return EvalResult(m["loss"], m["top1"] if "top1" in m else m["exact_match"], m)
