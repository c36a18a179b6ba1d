"""Multi-label data: each sample carries any number of labels, as a row of 0/1 targets.

A multi-label data set is any single-label data of :mod:`resnetkit.data` (images held in
memory, image files, audio features) whose integer label is the sample's *row*, beside a
(rows, labels) table of 0/1 targets. The inner data decodes, augments and batches exactly as
for single-label training; :class:`MultiLabelBatches` turns each batch's rows into their
target rows on the device. Mixing (mixup, cutmix) is done here rather than by the inner
source, because torchvision's MixUp/CutMix one-hot integer labels: here the multi-hot rows
themselves are mixed, which is what the mixed input holds.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Optional, Sequence

import torch

from .batching import BatchSource
from .interface import BatchOptions, InputSpec, LabelledData, Preview

# Shown between the labels of one sample (previews, messages).
JOIN = "+"


class MultiLabelData(LabelledData):
    """``inner`` (labels: row numbers into ``targets``) with ``targets`` (rows, K) float 0/1 and K label names."""

    multilabel = True

    def __init__(self, inner: LabelledData, targets: torch.Tensor, classes: Sequence[str]) -> None:
        targets = torch.as_tensor(targets, dtype=torch.float32)
        if targets.ndim != 2 or targets.shape[1] != len(classes):
            raise ValueError(f"{inner.source}: multi-label targets must be (samples, {len(classes)}), "
                             f"got {tuple(targets.shape)}")
        self.inner = inner
        self.targets = targets
        self.classes = list(classes)
        self.source = inner.source

    @property
    def skipped(self):
        return self.inner.skipped

    @property
    def in_chans(self) -> int:
        return self.inner.in_chans

    def __len__(self) -> int:
        return len(self.inner)

    def rows(self) -> torch.Tensor:
        """The targets' row of each sample the inner data holds (files that could not be read are absent)."""
        return torch.as_tensor(self.inner.labels, dtype=torch.long)

    def sample_targets(self) -> torch.Tensor:
        """(len(self), K) 0/1 targets of the samples, in the data's order."""
        return self.targets[self.rows()]

    def subset(self, indices: torch.Tensor) -> "MultiLabelData":
        return MultiLabelData(self.inner.subset(indices), self.targets, self.classes)

    def input_spec(self, model=None, img_size=None) -> InputSpec:
        return self.inner.input_spec(model, img_size)

    def augment_config(self, preset: str = "auto", overrides: dict[str, Any] | None = None) -> Any:
        return self.inner.augment_config(preset, overrides)

    def batches(self, spec: InputSpec, options: BatchOptions) -> "MultiLabelBatches":
        return MultiLabelBatches(self, spec, options)

    def remap_classes(self, classes: Sequence[str]) -> "MultiLabelData":
        """The columns in the order of ``classes`` (by name); a label the data lacks is all 0."""
        columns = torch.zeros(len(self.targets), len(classes))
        index = {name: i for i, name in enumerate(self.classes)}
        for j, name in enumerate(classes):
            if name in index:
                columns[:, j] = self.targets[:, index[name]]
        return MultiLabelData(self.inner, columns, classes)

    def preview(self, max_examples: int = 10) -> Preview | None:
        n = min(max_examples, len(self))
        if not n:
            return None
        inner = self.inner.subset(torch.arange(n)).preview(n)
        if inner is None:
            return None
        # The inner preview names its samples by row; they are named by their labels here.
        names = [self.label_text(self.targets[int(row)]) for row in inner.labels]
        return dataclasses.replace(inner, labels=names)

    def label_text(self, target: torch.Tensor) -> str:
        on = [self.classes[i] for i in target.nonzero().flatten().tolist()]
        return JOIN.join(on) if on else "(none)"


class MultiLabelBatches(BatchSource):
    """The inner data's batches with each row number replaced by its 0/1 targets (mixed when asked)."""

    def __init__(self, data: MultiLabelData, spec: InputSpec, options: BatchOptions) -> None:
        super().__init__(data.classes, options)
        augment = options.augment if options.train else None
        self.mix = _mix_settings(augment)
        # The inner source mixes nothing: its labels are row numbers, which cannot be mixed.
        self.inner = data.inner.batches(spec, dataclasses.replace(options, augment=_without_mixing(augment)))
        self.targets = data.targets.to(self.device)
        self.skipped = self.inner.skipped  # one list: what the inner source notes, evaluation reads here

    @property
    def num_samples(self) -> int:
        return self.inner.num_samples

    def __len__(self) -> int:
        return len(self.inner)

    def only(self, chosen: torch.Tensor) -> "MultiLabelBatches":
        self.inner.only(chosen)
        return self

    def indices(self, epoch: int) -> torch.Tensor:
        return self.inner.indices(epoch)

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, rows in self.inner.epoch(epoch, start_step):
            y = self.targets[rows.to(self.device)]
            if self.mix is not None:
                x, y = mix_multi_hot(x, y, self.mix, self.inner.generator)
            yield x, y

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)


@dataclasses.dataclass(frozen=True)
class MixSettings:
    mixup: float  # Beta(alpha, alpha); 0 off
    cutmix: float


def _mix_settings(augment: Any) -> Optional[MixSettings]:
    mixup, cutmix = float(getattr(augment, "mixup", 0) or 0), float(getattr(augment, "cutmix", 0) or 0)
    return MixSettings(mixup, cutmix) if mixup > 0 or cutmix > 0 else None


def _without_mixing(augment: Any) -> Any:
    if augment is None or not dataclasses.is_dataclass(augment):
        return augment
    names = {f.name for f in dataclasses.fields(augment)}
    off = {name: 0.0 for name in ("mixup", "cutmix") if name in names}
    return dataclasses.replace(augment, **off) if off else augment


def mix_multi_hot(x: torch.Tensor, y: torch.Tensor, mix: MixSettings,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """MixUp or CutMix of a batch with its multi-hot targets (one of the two per batch when both are on).

    The batch is mixed with itself rolled by one, as torchvision does; the targets mix by the same
    share: lam * y + (1 - lam) * y_rolled, lam the mixing weight (mixup) or the kept area (cutmix).
    """
    use_cutmix = mix.cutmix > 0 and (mix.mixup <= 0 or bool(torch.rand((), generator=generator) < 0.5))
    alpha = mix.cutmix if use_cutmix else mix.mixup
    lam = _beta(alpha, generator)
    rolled_x, rolled_y = x.roll(1, 0), y.roll(1, 0)
    if use_cutmix and x.ndim == 4:
        h, w = x.shape[-2:]
        cut_h, cut_w = int(h * (1 - lam) ** 0.5), int(w * (1 - lam) ** 0.5)
        cy = int(torch.randint(h, (), generator=generator))
        cx = int(torch.randint(w, (), generator=generator))
        y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
        x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
        x = x.clone()
        x[..., y0:y1, x0:x1] = rolled_x[..., y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)
    else:
        x = x * lam + rolled_x * (1 - lam)
    return x, y * lam + rolled_y * (1 - lam)


def _beta(alpha: float, generator: torch.Generator) -> float:
    # Beta(a, a) seeded from the source's own generator (its state is checkpointed): a resumed run mixes alike.
    import numpy as np

    seed = int(torch.randint(2**62, (), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def random_split(n: int, val_split: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and validation indices of ``n`` multi-label samples: a seeded shuffle (no stratification by label sets)."""
    if not 0 < val_split < 1:
        raise ValueError(f"val_split must be in (0, 1), got {val_split}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, round(n * val_split)) if n > 1 else 0
    return order[n_val:].sort().values, order[:n_val].sort().values


def is_multilabel(data: Any) -> bool:
    return bool(getattr(data, "multilabel", False))


TASKS = ("single", "multilabel")


def check_decision(task: Any, temperature: Any, thresholds: Any, num_classes: int
                   ) -> tuple[str, float | list[float], Optional[list[float]]]:
    """How a trained model's logits become its answer, as a run or an exported file stores it, checked.

    ``task`` single (softmax) or multilabel (a sigmoid per label); ``temperature`` one number > 0,
    or for a multi-label model one per label; ``thresholds`` (multi-label) one probability in
    [0, 1] per label, or None (0.5 each). Raises ValueError saying what is wrong.
    """
    if task not in TASKS:
        raise ValueError(f"its task {task!r} is not one of {', '.join(TASKS)}")

    def positive(value: Any) -> bool:
        return not isinstance(value, bool) and isinstance(value, (int, float)) and value > 0

    if isinstance(temperature, (list, tuple)):
        if task != "multilabel" or len(temperature) != num_classes or not all(positive(t) for t in temperature):
            raise ValueError(f"its temperature {list(temperature)[:4]!r}... must be one number > 0"
                             + (f", or one per label ({num_classes})" if task == "multilabel" else ""))
        temperature = [float(t) for t in temperature]
    elif positive(temperature):
        temperature = float(temperature)
    else:
        raise ValueError(f"its temperature {temperature!r} is not a number > 0")
    if thresholds is not None:
        ok = (task == "multilabel" and isinstance(thresholds, (list, tuple)) and len(thresholds) == num_classes
              and all(not isinstance(t, bool) and isinstance(t, (int, float)) and 0 <= t <= 1 for t in thresholds))
        if not ok:
            raise ValueError(f"its thresholds must be one probability in [0, 1] per label ({num_classes}) of a "
                             f"multi-label model, got {thresholds!r}")
        thresholds = [float(t) for t in thresholds]
    return task, temperature, thresholds
