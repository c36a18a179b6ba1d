"""Parity: does an exported (or quantized) model compute what the PyTorch model computes?"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

import torch
from torch import nn

# fp32 exports must agree with the PyTorch model on the top-1 class of at least this share of samples.
MIN_FP32_AGREEMENT = 0.999


@dataclass
class Parity:
    """How closely ``candidate`` follows ``reference`` on the same inputs."""

    samples: int
    max_abs_diff: float  # largest |logit difference| over all samples and classes
    mean_abs_diff: float
    top1_agreement: float  # share of samples with the same top-1 class
    reference_accuracy: float | None = None  # top-1 accuracy against the labels, when given
    candidate_accuracy: float | None = None
    # Multi-label models: share of (sample, label) decisions (label at or above its threshold) that agree.
    label_agreement: float | None = None

    @property
    def agreement(self) -> float:
        """What an export must keep: top-1 agreement, and for multi-label models also the label decisions'."""
        return min(self.top1_agreement, self.label_agreement if self.label_agreement is not None else 1.0)

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        text = (f"top-1 agreement {self.top1_agreement:.2%} on {self.samples} samples, "
                f"max |logit diff| {self.max_abs_diff:.3g} (mean {self.mean_abs_diff:.3g})")
        if self.label_agreement is not None:
            text += f"; label decisions agree {self.label_agreement:.2%}"
        if self.reference_accuracy is not None:
            text += f"; accuracy {self.reference_accuracy:.2%} (PyTorch fp32) vs {self.candidate_accuracy:.2%}"
        return text


@torch.no_grad()
def measure_parity(reference: nn.Module, candidate: nn.Module, batches: Iterable,
                   label_cuts: torch.Tensor | None = None) -> Parity:
    """Run both models on every batch (tensors, or ``(inputs, labels)`` pairs) and compare their logits.

    ``label_cuts`` (multi-label models): per label the logit at which it is predicted
    (T_k * logit(threshold_k)); the share of decisions on which both models agree is measured too.
    """
    n = hits_agree = decisions_agree = 0
    max_diff = sum_diff = 0.0
    correct_ref = correct_cand = labelled = 0
    reference.eval()
    candidate.eval()
    for batch in batches:
        x, y = (batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, None)
        ref = reference(x).float().cpu()
        out = candidate(x).float().cpu()
        if out.shape != ref.shape:
            raise ValueError(f"the exported model gives logits of shape {tuple(out.shape)}, "
                             f"the PyTorch model {tuple(ref.shape)}")
        diff = (out - ref).abs()
        max_diff = max(max_diff, float(diff.max()))
        sum_diff += float(diff.mean()) * len(x)
        hits_agree += int((out.argmax(1) == ref.argmax(1)).sum())
        if label_cuts is not None:
            cuts = label_cuts.float().cpu()
            decisions_agree += int(((out >= cuts) == (ref >= cuts)).sum())
        n += len(x)
        if y is not None and y.ndim == 1:
            y = y.cpu()
            correct_ref += int((ref.argmax(1) == y).sum())
            correct_cand += int((out.argmax(1) == y).sum())
            labelled += len(y)
    if n == 0:
        raise ValueError("no samples to compare the exported model with the PyTorch model")
    labels = label_cuts.numel() if label_cuts is not None else 0
    return Parity(n, max_diff, sum_diff / n, hits_agree / n,
                  correct_ref / labelled if labelled else None, correct_cand / labelled if labelled else None,
                  decisions_agree / (n * labels) if labels else None)
