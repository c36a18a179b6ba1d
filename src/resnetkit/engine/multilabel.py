"""Multi-label classification: sigmoid outputs, binary cross-entropy, mAP, per-label calibration and thresholds.

A multi-label model scores every label independently: p_k = sigmoid(z_k / T_k). Training
minimises the binary cross-entropy of each label (label smoothing pulls the 0/1 targets to
eps/2 and 1 - eps/2; mixed batches come with mixed targets). At the end of a run each label
gets its own temperature T_k (fitted on the validation BCE by :mod:`.calibration`'s golden-section
search on log T_k, all labels at once) and then its own decision threshold,
the one that maximises that label's F1 on the validation probabilities. Both travel with the
run; ``predict`` and ``serve`` report the labels whose probability reaches their threshold.

The metrics follow scikit-learn, which computes them: per-label average precision
(``average_precision_score``), its macro mean over the labels with a positive sample (``map``)
and the micro AP over every (sample, label) pair (``map_micro``); precision, recall and F1 at
the thresholds per label, macro and micro; exact match (subset accuracy) and Hamming loss.
The calibration error is that of the per-label probabilities: 15 equal-width bins of p, the
gap between mean p and the share of positives in each.

Under torchrun every process holds its share of the validation samples; the metrics gather
them all (they rank samples, which sums cannot do), the temperatures and thresholds are then
the same on every process.
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence

import torch
from torch.nn import functional as F

from ..runtime import distributed
from .calibration import search_temperatures
from .metrics import ECE_BINS, reliability_summary

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5


def bce_loss(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0,
             pos_weight: Optional[torch.Tensor] = None, reduction: str = "mean") -> torch.Tensor:
    """Binary cross-entropy over every label (mean over samples and labels; ``"sum"``: summed)."""
    targets = targets.float()
    if label_smoothing:
        targets = targets * (1 - label_smoothing) + label_smoothing / 2
    return F.binary_cross_entropy_with_logits(logits.float(), targets, pos_weight=pos_weight, reduction=reduction)


def label_hits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per sample, the share of labels decided right at p = 0.5 (mixed targets: the one above 0.5), summed."""
    return ((logits > 0) == (targets > 0.5)).float().mean(dim=1).sum()


def positive_weights(spec: str, targets: torch.Tensor, classes: Sequence[str]) -> Optional[torch.Tensor]:
    """``pos_weight`` of the BCE for ``class_weights``: balanced is negatives / positives of each label."""
    if spec == "none":
        return None
    if spec != "balanced":
        from .imbalance import class_weights

        return class_weights(spec, torch.zeros(0, dtype=torch.long), classes)
    positives = targets.sum(0).double()
    missing = [classes[i] for i in range(len(classes)) if positives[i] == 0]
    if missing:
        raise ValueError(f"class_weights balanced: label(s) {', '.join(missing)} have no positive training sample")
    return ((len(targets) - positives) / positives).clamp(min=1e-3).float()


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """Every process's rows of ``tensor`` (rows of different counts), in rank order; itself without torchrun."""
    import torch.distributed as dist

    if not distributed.current().enabled:
        return tensor
    count = torch.tensor([tensor.shape[0]], device=tensor.device)
    counts = [torch.zeros_like(count) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, count)
    most = int(max(int(c) for c in counts))
    padded = torch.zeros((most, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[: tensor.shape[0]] = tensor
    parts = [torch.zeros_like(padded) for _ in counts]
    dist.all_gather(parts, padded)
    return torch.cat([part[: int(c)] for part, c in zip(parts, counts)])


def fit_label_temperatures(logits: torch.Tensor, targets: torch.Tensor) -> list[float]:
    """One temperature per label minimising that label's validation BCE (golden section on log T, all labels at once).

    A label that every validation sample gets right (each logit on its target's side of 0) keeps
    1.0: its BCE falls without end as T falls, so the search would end on its bound (0.05, every
    probability 0 or 1), as single-label calibration would on a perfect split.
    """
    k = logits.shape[1] if logits.ndim == 2 else 0
    logits, targets = gather(logits.float()), gather(targets.float())
    if not len(targets) or not k:
        return [1.0] * k
    hard, logits = (targets > 0.5).double(), logits.double()

    def nll(log_t: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits / log_t.exp(), hard, reduction="none").sum(0)

    temperatures = search_temperatures(nll, k, logits.device)
    separated = ((logits > 0) == hard.bool()).all(dim=0)
    if bool(separated.any()):
        log.info("calibration: %d of %d labels are right on every validation sample, so no temperature can be "
                 "fitted for them (the likelihood grows without end as T falls); they keep T = 1",
                 int(separated.sum()), k)
    return torch.where(separated, torch.ones_like(temperatures), temperatures).tolist()


def probabilities(logits: torch.Tensor, temperature: float | Sequence[float] = 1.0) -> torch.Tensor:
    """sigmoid(logits / T), T one number or one per label."""
    t = torch.as_tensor(temperature, dtype=torch.float32, device=logits.device)
    return torch.sigmoid(logits.float() / t)


def tune_thresholds(probs: torch.Tensor, targets: torch.Tensor) -> list[float]:
    """Per label, the threshold on p that maximises F1 on these samples (0.5 for a label without positives).

    The threshold is midway between the lowest probability predicted positive and the next one
    below it, so the choice does not sit on a validation sample's own probability.
    """
    probs, targets = gather(probs.float()).cpu(), gather((targets > 0.5).float()).cpu()
    out = []
    for k in range(probs.shape[1] if probs.ndim == 2 else 0):
        positives = float(targets[:, k].sum())
        if positives == 0:
            out.append(DEFAULT_THRESHOLD)
            continue
        order = probs[:, k].argsort(descending=True)
        p, y = probs[order, k], targets[order, k]
        tp = y.cumsum(0)
        fp = (1 - y).cumsum(0)
        # Only the last index of a run of equal probabilities is a possible cut.
        last = torch.ones_like(p, dtype=torch.bool)
        last[:-1] = p[:-1] != p[1:]
        f1 = torch.where(last, 2 * tp / (tp + fp + positives), torch.full_like(tp, -1.0))
        best = int(f1.argmax())
        below = float(p[best + 1]) if best + 1 < len(p) else 0.0
        out.append((float(p[best]) + below) / 2)
    return out


def multilabel_metrics(logits: torch.Tensor, targets: torch.Tensor, classes: Sequence[str],
                       temperature: float | Sequence[float] = 1.0,
                       thresholds: Optional[Sequence[float]] = None) -> dict:
    """The metrics of a multi-label model on every process's samples (see the module's docstring)."""
    from sklearn.metrics import average_precision_score, hamming_loss, precision_recall_fscore_support

    k = len(classes)
    logits = gather(logits.float().reshape(-1, k))
    targets = gather(targets.float().reshape(-1, k))
    n = len(targets)
    t = [float(temperature)] * k if isinstance(temperature, (int, float)) else [float(v) for v in temperature]
    cut = [DEFAULT_THRESHOLD] * k if thresholds is None else [float(v) for v in thresholds]
    # float64: a float32 sigmoid saturates to 1.0 from z ~ 17 on, and ties would change the ranking AP reads.
    probs = torch.sigmoid(logits.cpu().double() / torch.tensor(t, dtype=torch.float64))
    truth = (targets > 0.5).cpu()
    loss = float(bce_loss(logits / torch.tensor(t, device=logits.device), targets)) if n else None
    predicted = probs >= torch.tensor(cut, dtype=torch.float64)
    y, s, pred = truth.numpy().astype(int), probs.numpy(), predicted.numpy().astype(int)
    support = truth.sum(0).tolist()
    ap = [float(average_precision_score(y[:, i], s[:, i])) if support[i] else None for i in range(k)]
    scored = [v for v in ap if v is not None]
    if n:
        precision, recall, f1, _ = precision_recall_fscore_support(y, pred, average=None, zero_division=0,
                                                                   labels=list(range(k)))
        micro = precision_recall_fscore_support(y, pred, average="micro", zero_division=0)[:3]
    else:
        precision = recall = f1 = [0.0] * k
        micro = (0.0, 0.0, 0.0)
    per_label = {name: {"ap": ap[i], "precision": float(precision[i]), "recall": float(recall[i]),
                        "f1": float(f1[i]), "support": int(support[i]), "threshold": cut[i], "temperature": t[i]}
                 for i, name in enumerate(classes)}
    exact = float((predicted == truth).all(dim=1).double().mean()) if n else 0.0
    return {
        "task": "multilabel",
        "num_samples": n,
        "loss": loss,
        "map": sum(scored) / len(scored) if scored else 0.0,
        "map_micro": float(average_precision_score(y.ravel(), s.ravel())) if n and y.any() else 0.0,
        "exact_match": exact,
        "hamming_loss": float(hamming_loss(y, pred)) if n else 0.0,
        "per_label": per_label,
        "macro_avg": {"precision": float(sum(precision) / k), "recall": float(sum(recall) / k),
                      "f1": float(sum(f1) / k)},
        "micro_avg": {"precision": float(micro[0]), "recall": float(micro[1]), "f1": float(micro[2])},
        "macro_f1": float(sum(f1) / k),
        "thresholds": cut,
        "temperature": t,
        **_calibration(probs, truth),
    }


def _calibration(probs: torch.Tensor, truth: torch.Tensor) -> dict:
    """The calibration error of every (sample, label) probability: bins of p, the share of positives in each."""
    p, y = probs.reshape(-1), truth.reshape(-1).double()
    bins = (p * ECE_BINS).long().clamp_(0, ECE_BINS - 1)
    sums = torch.zeros(3, ECE_BINS, dtype=torch.float64).index_add_(1, bins, torch.stack([torch.ones_like(p), p, y]))
    return reliability_summary(sums)
