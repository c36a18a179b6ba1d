"""Classification metrics accumulated over batches on the device of the model's outputs.

:class:`ClassificationMetrics` keeps a confusion matrix, the top-5 hit count, the loss sum
and the sample count as tensors on the device of the logits, so that ``update`` never waits
for the accelerator: the only host sync of an evaluation is the one in ``compute``. The
counts are sums, so several processes combine their partial results with one
``all_reduce`` (:meth:`ClassificationMetrics.reduce_across_processes`).

``compute`` agrees with scikit-learn's ``precision_recall_fscore_support(...,
zero_division=0)``, ``confusion_matrix`` and ``top_k_accuracy_score`` (checked in
``tests/engine/test_metrics.py``).
"""

from __future__ import annotations

import numbers
from typing import Any, Optional, Sequence, Union

import torch

DeviceLike = Union[torch.device, str, int]

# Equal-width confidence bins of the expected calibration error (Guo et al. 2017 use 15).
ECE_BINS = 15


def _loss_dtype(device: torch.device) -> torch.dtype:
    # float64 keeps the loss sum exact to ~1e-15 over millions of samples; MPS has no float64.
    return torch.float32 if device.type == "mps" else torch.float64


def reliability_summary(bins: torch.Tensor) -> dict[str, Any]:
    """``ece`` and ``reliability`` from per-bin sums (3, ECE_BINS): samples, summed confidence, summed hits.

    ECE = sum over bins of n_b * |mean confidence_b - accuracy_b|, over all samples; the
    reliability record gives each bin's count, mean confidence and accuracy (0 where empty).
    """
    counts, confidence, correct = bins.cpu().double()
    total = float(counts.sum())
    gaps = (confidence - correct).abs().sum()
    occupied = counts > 0
    mean = lambda values: torch.where(occupied, values / counts.clamp(min=1), torch.zeros_like(values))
    return {
        "ece": float(gaps) / total if total else 0.0,
        "reliability": {"bins": ECE_BINS, "count": counts.long().tolist(),
                        "confidence": [round(v, 6) for v in mean(confidence).tolist()],
                        "accuracy": [round(v, 6) for v in mean(correct).tolist()]},
    }


class ClassificationMetrics:
    """Top-1/top-5 accuracy, mean loss, per-class precision/recall/F1 and the confusion matrix.

    ``device=None`` keeps the state on the device of the first batch's logits; pass a device
    explicitly when every process must hold its state on a known device (distributed runs
    with NCCL need CUDA tensors even on a process that saw no batch).
    """

    def __init__(self, num_classes: int, device: Optional[DeviceLike] = None, temperature: float = 1.0) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int):
            raise TypeError(f"num_classes must be an int, got {type(num_classes).__name__}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = num_classes
        # "top-5" of a problem with fewer than 5 classes is top-K, as torchvision's references do.
        self.topk = min(5, num_classes)
        # The probabilities whose calibration is measured are softmax(logits / temperature): the
        # ones predict and serve report for a calibrated run.
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
        self.temperature = float(temperature)
        self._fixed_device = torch.device(device) if device is not None else None
        self.reset()

    # ----------------------------------------------------------------------------------
    # State
    # ----------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every batch seen so far (the state stays on its device)."""
        placed = getattr(self, "_placed", False)
        if self._fixed_device is not None:
            device = self._fixed_device
        elif placed:
            device = self._confusion.device
        else:
            device = torch.device("cpu")
        self._allocate(device)
        # With no fixed device the state moves to the first batch's device (free: it is empty).
        self._placed = placed or self._fixed_device is not None
        self._reduced = False

    def _allocate(self, device: torch.device) -> None:
        k = self.num_classes
        # Tensors created inside torch.inference_mode() cannot be updated in place outside it;
        # the first update() typically runs inside an evaluation's inference_mode block while
        # reduce_across_processes()/reset() run outside, so the state is always a normal tensor.
        with torch.inference_mode(False):
            self._confusion = torch.zeros((k, k), dtype=torch.int64, device=device)
            # topk hits, samples, samples that came with a loss, targets outside [0, K)
            self._counts = torch.zeros(4, dtype=torch.int64, device=device)
            self._loss_sum = torch.zeros((), dtype=_loss_dtype(device), device=device)
            # Per confidence bin: samples, summed top-1 confidence, correct top-1 predictions.
            self._calibration = torch.zeros((3, ECE_BINS), dtype=_loss_dtype(device), device=device)

    @property
    def device(self) -> torch.device:
        """Device that holds the accumulated state."""
        return self._confusion.device

    # ----------------------------------------------------------------------------------
    # Accumulation
    # ----------------------------------------------------------------------------------

    def update(
        self,
        logits: torch.Tensor,
        targets: torch.Tensor,
        loss: Union[torch.Tensor, float, None] = None,
    ) -> None:
        """Add one batch: ``logits`` (N, K), ``targets`` (N,) class indices in [0, K).

        ``loss`` is the **sum** of the per-sample losses of the batch, for example
        ``F.cross_entropy(logits, targets, reduction="sum")`` or ``mean_loss * N``, so that
        batches of different sizes weigh by their samples; an (N,) tensor of per-sample
        losses is also accepted and summed. A mean loss here would be under-counted N times.
        """
        if self._reduced:
            raise RuntimeError("update() after reduce_across_processes() would mix local and global counts; call reset() first")
        if not isinstance(logits, torch.Tensor):
            raise TypeError(f"logits must be a torch.Tensor of shape (N, {self.num_classes}), got {type(logits).__name__}")
        if not isinstance(targets, torch.Tensor):
            raise TypeError(f"targets must be a torch.Tensor of shape (N,), got {type(targets).__name__}")
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"logits must have shape (N, {self.num_classes}), got {tuple(logits.shape)}")
        if not logits.is_floating_point():
            raise TypeError(f"logits must be a floating point tensor, got {logits.dtype}")
        n = logits.shape[0]
        if targets.ndim != 1 or targets.shape[0] != n:
            raise ValueError(
                f"targets must have shape ({n},) to match logits {tuple(logits.shape)} "
                f"(class indices, not one-hot or soft labels), got {tuple(targets.shape)}"
            )
        if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
            raise TypeError(f"targets must be an integer tensor of class indices (torch.int64), got {targets.dtype}")
        k = self.num_classes
        if targets.device.type == "cpu" and n:
            # Checking a CPU tensor costs no device sync, so bad labels fail here, at their batch.
            bad = (targets < 0) | (targets >= k)
            if bool(bad.any()):
                values = sorted(set(targets[bad].tolist()))
                raise ValueError(f"targets must be class indices in [0, {k}), got {values[:10]}")

        if not self._placed:
            self._allocate(logits.device)
            self._placed = True
        device = self.device
        logits = logits.detach().to(device)
        targets = targets.detach().to(device=device, dtype=torch.int64)

        # On an accelerator the range check above would need a sync; instead out-of-range
        # targets are masked out here (index_add_ would hit a device-side assert) and
        # counted, and compute() raises.
        valid = (targets >= 0) & (targets < k)
        preds = logits.argmax(dim=1)
        flat = torch.where(valid, targets * k + preds, torch.zeros_like(targets))
        self._confusion.view(-1).index_add_(0, flat, valid.to(torch.int64))

        top = logits.topk(self.topk, dim=1).indices
        hits = ((top == targets.unsqueeze(1)).any(dim=1) & valid).sum()
        self._counts[0].add_(hits)
        self._counts[1].add_(n)
        self._counts[3].add_((~valid).sum())

        confidence = (logits.float() / self.temperature).softmax(dim=1).amax(dim=1)
        bins = (confidence * ECE_BINS).long().clamp_(0, ECE_BINS - 1)
        kept = valid.to(self._calibration.dtype)
        per_sample = torch.stack([kept, confidence.to(kept.dtype), (preds == targets).to(kept.dtype)]) * kept
        self._calibration.index_add_(1, bins, per_sample)

        if loss is not None:
            self._add_loss(loss, n)

    def _add_loss(self, loss: Union[torch.Tensor, float], n: int) -> None:
        if isinstance(loss, torch.Tensor):
            if loss.numel() not in (1, n):
                raise ValueError(
                    "loss must be the sum of the batch's per-sample losses (one value) or the "
                    f"{n} per-sample losses, got a tensor of shape {tuple(loss.shape)}"
                )
            self._loss_sum += loss.detach().to(device=self.device, dtype=self._loss_sum.dtype).sum()
        elif isinstance(loss, numbers.Real) and not isinstance(loss, bool):
            self._loss_sum += float(loss)
        else:
            raise TypeError(f"loss must be a tensor, a float or None, got {type(loss).__name__}")
        self._counts[2].add_(n)

    def reduce_across_processes(self) -> None:
        """Sum the state over all processes (a no-op unless torch.distributed is initialized).

        A collective: every process must call it, once, after its last ``update``. The
        batch sources give each process a disjoint share of the samples (no padding), so
        the sums count every sample once.
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        if self._reduced:
            raise RuntimeError("reduce_across_processes() was already called; a second call would double the counts")
        k = self.num_classes
        # One all_reduce for every integer count instead of one per tensor.
        packed = torch.cat([self._confusion.view(-1), self._counts])
        dist.all_reduce(packed)
        loss_sum = self._loss_sum.clone()
        dist.all_reduce(loss_sum)
        calibration = self._calibration.clone()
        dist.all_reduce(calibration)
        self._calibration.copy_(calibration)
        # copy_ rather than rebinding keeps the state a normal tensor if this runs in inference_mode.
        self._confusion.view(-1).copy_(packed[: k * k])
        self._counts.copy_(packed[k * k :])
        self._loss_sum.copy_(loss_sum)
        self._reduced = True

    # ----------------------------------------------------------------------------------
    # Results
    # ----------------------------------------------------------------------------------

    def _check_names(self, class_names: Optional[Sequence[str]]) -> list[str]:
        if class_names is None:
            return [str(i) for i in range(self.num_classes)]
        if isinstance(class_names, str) or not isinstance(class_names, Sequence):
            raise TypeError(f"class_names must be a list of {self.num_classes} strings, got {type(class_names).__name__}")
        names = list(class_names)
        if len(names) != self.num_classes:
            raise ValueError(f"class_names must have {self.num_classes} entries (one per class), got {len(names)}")
        if not all(isinstance(name, str) for name in names):
            raise TypeError("class_names must be strings")
        if len(set(names)) != len(names):
            duplicates = sorted({name for name in names if names.count(name) > 1})
            raise ValueError(f"class_names must be unique (they key per_class), duplicates: {duplicates}")
        return names

    def compute(self, class_names: Optional[Sequence[str]] = None) -> dict[str, Any]:
        """The metrics as a JSON-serializable dict (``class_names`` default to "0", "1", ...).

        Keys: ``num_samples``, ``loss`` (mean per-sample loss over the batches that came with
        a loss, None if none did), ``top1``, ``top5`` (top-min(5, K)), ``per_class``
        ({name: {precision, recall, f1, support}}), ``macro_avg`` ({precision, recall, f1},
        unweighted means over all K classes) and ``confusion_matrix`` (rows: true class,
        columns: predicted). A class never predicted has precision 0.0, one absent from the
        targets recall 0.0, as scikit-learn with ``zero_division=0``. ``balanced_accuracy`` is the
        mean recall over the classes present in the targets (scikit-learn's
        ``balanced_accuracy_score``), ``macro_f1`` the unweighted mean F1; ``ece`` the expected
        calibration error of softmax(logits / temperature) over 15 equal-width confidence bins,
        and ``reliability`` those bins (samples, mean confidence, accuracy), for a reliability diagram.
        """
        names = self._check_names(class_names)
        # The one host sync of an evaluation.
        confusion = self._confusion.cpu()
        hits, count, loss_count, invalid = self._counts.tolist()
        loss_sum = float(self._loss_sum)
        if invalid:
            raise ValueError(f"{invalid} targets passed to update() were outside [0, {self.num_classes})")

        cm = confusion.to(torch.float64)
        tp = cm.diagonal()
        predicted = cm.sum(dim=0)
        support = cm.sum(dim=1)
        zero = torch.zeros_like(tp)
        precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), zero)
        recall = torch.where(support > 0, tp / support.clamp(min=1), zero)
        # 2TP / (2TP + FP + FN), the form scikit-learn uses; FP + FN + 2TP = predicted + support.
        f1_denominator = predicted + support
        f1 = torch.where(f1_denominator > 0, 2 * tp / f1_denominator.clamp(min=1), zero)

        present = support > 0
        balanced = float(recall[present].mean()) if bool(present.any()) else 0.0
        per_class = {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(names)
        }
        return {
            "num_samples": int(count),
            "loss": loss_sum / loss_count if loss_count else None,
            "top1": float(tp.sum()) / count if count else 0.0,
            "top5": hits / count if count else 0.0,
            "per_class": per_class,
            "balanced_accuracy": balanced,
            "macro_f1": float(f1.mean()),
            "macro_avg": {
                "precision": float(precision.mean()),
                "recall": float(recall.mean()),
                "f1": float(f1.mean()),
            },
            **self._calibration_metrics(),
            "confusion_matrix": confusion.tolist(),
        }

    def _calibration_metrics(self) -> dict[str, Any]:
        return {**reliability_summary(self._calibration), "temperature": self.temperature}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_classes={self.num_classes}, device={self.device})"
