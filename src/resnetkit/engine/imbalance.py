"""Imbalanced classes: loss weights per class and the weights of a balanced sampler.

``class_weights: balanced`` is scikit-learn's ``compute_class_weight("balanced")``:
n_samples / (n_classes * count of the class), so a class ten times rarer weighs ten times
more and the weights average 1 over the training samples. A file gives them by class name:
JSON ``{"cat": 2.0, ...}`` or one ``name,weight`` per line; classes it leaves out weigh 1.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import torch


def training_labels(data) -> torch.Tensor:
    """The class index of every training sample, in the data's order."""
    labels = getattr(data, "labels", None)
    if labels is None:
        raise ValueError(f"{getattr(data, 'source', 'the training data')}: its labels cannot be counted, so class "
                         "weights and the balanced sampler do not apply to it")
    return torch.as_tensor(labels, dtype=torch.long).cpu()


def class_counts(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.bincount(labels, minlength=num_classes)[:num_classes]


def class_weights(spec: str, labels: torch.Tensor, classes: Sequence[str]) -> torch.Tensor | None:
    """The loss weight of each class for ``spec`` (none, balanced or a file), or None for none."""
    if spec == "none":
        return None
    k = len(classes)
    if spec == "balanced":
        counts = class_counts(labels, k).double()
        missing = [classes[i] for i in range(k) if counts[i] == 0]
        if missing:
            raise ValueError(f"class_weights balanced: class(es) {', '.join(missing)} have no training sample")
        return (counts.sum() / (k * counts)).float()
    return _weights_from_file(Path(spec).expanduser(), classes)


def _weights_from_file(path: Path, classes: Sequence[str]) -> torch.Tensor:
    if not path.is_file():
        raise FileNotFoundError(f"class_weights {path}: no such file (expected none, balanced, or a JSON file "
                                "{class: weight} or a file of 'class,weight' lines)")
    text = path.read_text(encoding="utf-8", errors="replace")
    entries: list[tuple[str, object, str]] = []  # (class, weight, where)
    if path.suffix.lower() == ".json":
        try:
            values = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"class_weights {path} is not valid JSON: {err}") from None
        if not isinstance(values, dict):
            raise ValueError(f"class_weights {path}: expected a JSON object {{class: weight}}, got {type(values).__name__}")
        entries = [(str(k), v, f"{path}: key {k!r}") for k, v in values.items()]
    else:
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            name, sep, value = line.rpartition(",")
            if not sep:
                raise ValueError(f"class_weights {path}, line {number}: expected 'class,weight', got {line.strip()!r}")
            entries.append((name.strip(), value.strip(), f"{path}, line {number}"))
    weights = torch.ones(len(classes))
    index = {name: i for i, name in enumerate(classes)}
    for name, value, where in entries:
        if name not in index:
            raise ValueError(f"class_weights {where}: unknown class {name!r} (the classes are {', '.join(classes)})")
        try:
            weight = float(value)
        except (TypeError, ValueError):
            weight = float("nan")
        if isinstance(value, bool) or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"class_weights {where}: the weight must be a finite number >= 0, got {value!r}")
        weights[index[name]] = weight
    if not bool((weights > 0).any()):
        raise ValueError(f"class_weights {path}: every weight is 0; nothing would be learned")
    return weights


def balanced_sample_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """One weight per sample so that each class is drawn equally often: 1 / (its class's count)."""
    counts = class_counts(labels, num_classes).double()
    return (1.0 / counts.clamp(min=1))[labels]
