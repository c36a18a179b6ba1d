"""Ready-made tensors as labelled data: the Python API's ``(inputs, labels)`` pairs."""

from __future__ import annotations

from typing import Any, Iterator, Optional, Sequence

import torch
from torch import nn

from .batching import BatchSource
from .classes import label_mapping
from .interface import BatchOptions, LabelledData, SkippedFile
from .specs import ImageInputSpec, image_spec_for_model


class TensorData(LabelledData):
    """Float inputs ``x`` (N, ...) already preprocessed, and integer class indices ``y`` (N,)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, classes: Optional[Sequence[str]] = None,
                 source: str = "tensors") -> None:
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise TypeError("TensorData needs tensors: (inputs, labels)")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"inputs and labels differ in length: {x.shape[0]} vs {y.shape[0]}")
        if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise TypeError(f"labels must be integer class indices, got {y.dtype}")
        self.x, self.y = x, y.long()
        self.classes = list(classes) if classes else [str(i) for i in range(int(self.y.max()) + 1 if len(y) else 0)]
        self.source = source
        self.skipped: list[SkippedFile] = []

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def labels(self) -> torch.Tensor:
        return self.y

    def input_spec(self, model: Optional[nn.Module] = None, img_size: Optional[int] = None) -> ImageInputSpec:
        """Recorded with the run: the model's own data config at the tensors' size (they are used as given)."""
        in_chans = self.x.shape[1] if self.x.ndim == 4 else (getattr(model, "in_chans", None) or 1)
        size = tuple(self.x.shape[-2:]) if self.x.ndim == 4 else None
        return image_spec_for_model(model, in_chans, size, crop_pct=1.0)

    def augment_config(self, preset: str = "auto", overrides: Optional[dict[str, Any]] = None) -> None:
        if preset not in ("auto", "none") or overrides:
            raise ValueError(f"{self.source}: tensors are used as given; augmentation ({preset!r}) needs image or audio data")
        return None

    def batches(self, spec: Any, options: BatchOptions) -> "TensorBatches":
        return TensorBatches(self.x, self.y, self.classes, options)

    def remap_classes(self, classes: Sequence[str]) -> "TensorData":
        mapping = label_mapping(self.source, self.classes, classes)
        return TensorData(self.x, mapping[self.y], classes, self.source)


class TensorBatches(BatchSource):
    def __init__(self, x: torch.Tensor, y: torch.Tensor, classes: Sequence[str], options: BatchOptions) -> None:
        super().__init__(classes, options)
        self.x, self.y = x.to(self.device), y.to(self.device)
        self.channels_last = options.channels_last and x.ndim == 4

    @property
    def num_samples(self) -> int:
        return self.x.shape[0]

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for sel in self.step_indices(epoch, start_step):
            x = self.x[sel].float()
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.y[sel]


def as_labelled_data(data: Any, classes: Optional[Sequence[str]] = None) -> LabelledData:
    """``data`` as :class:`LabelledData`: itself, or an ``(inputs, labels)`` pair of tensors."""
    if isinstance(data, LabelledData):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        return TensorData(data[0], data[1], classes)
    raise TypeError(
        f"unsupported data type {type(data).__name__}: pass image or audio data (resnetkit.data), "
        "any LabelledData, or a tuple (inputs, labels) of tensors"
    )
