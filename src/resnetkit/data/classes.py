"""Class names: how a data set's labels map onto a model's classes (by name, never by position)."""

from __future__ import annotations

from typing import Sequence

import torch


def label_mapping(source: str, data_classes: Sequence[str], target_classes: Sequence[str],
                  error: type[Exception] = ValueError) -> torch.Tensor:
    """``mapping[i]`` is the index in ``target_classes`` of ``data_classes[i]``.

    A data class the model does not know raises ``error`` listing both sets: evaluating a
    folder of other classes must fail, not shift every label.
    """
    target = {name: i for i, name in enumerate(target_classes)}
    unknown = [c for c in data_classes if c not in target]
    if unknown:
        raise error(
            f"{source}: class(es) {unknown} are not among the model's classes.\n"
            f"  data classes:  {list(data_classes)}\n  model classes: {list(target_classes)}"
        )
    return torch.tensor([target[c] for c in data_classes], dtype=torch.long)
