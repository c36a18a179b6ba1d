"""The interface every resnetkit model shares (timm's contract, torchvision's names).

A model is split into *stages*: running them one after another turns an image into the
final feature map, and the output of stage ``i`` is the feature map described by
``feature_info[i]``. From that one description the base class derives
``forward_features``, ``forward_intermediates`` (multi-scale features for backbones) and
the helpers that freeze early stages.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable, Optional, Sequence

import torch
import torch.fx
from torch import nn

from .layers import GlobalPool

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class DataConfig:
    """How to prepare input for a model: size, normalization, resize policy."""

    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bilinear"
    crop_pct: float = 0.875

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DataConfig":
        return cls(
            input_size=tuple(d["input_size"]),
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
            interpolation=d.get("interpolation", "bilinear"),
            crop_pct=float(d.get("crop_pct", 0.875)),
        )


def make_data_config(in_chans: int, size: int, mean: Sequence[float], std: Sequence[float], crop_pct: float = 0.875) -> DataConfig:
    """Data config for ``in_chans`` channels from RGB statistics.

    One channel (grayscale, spectrograms) takes the mean of the RGB statistics; other
    channel counts repeat them cyclically, which keeps a pretrained conv1 adapted the
    way :func:`resnetkit.models.weights.adapt_input_conv` does in a sensible range.
    """
    if in_chans == 3:
        m, s = tuple(mean), tuple(std)
    elif in_chans == 1:
        m, s = (sum(mean) / 3,), (sum(std) / 3,)
    else:
        m = tuple(mean[i % 3] for i in range(in_chans))
        s = tuple(std[i % 3] for i in range(in_chans))
    return DataConfig(input_size=(in_chans, size, size), mean=m, std=s, crop_pct=crop_pct)


@dataclass(frozen=True)
class FeatureEntry:
    num_chs: int
    reduction: int
    module: str


class FeatureInfo(list):
    """List of :class:`FeatureEntry` with timm-style accessors."""

    def channels(self) -> list[int]:
        return [f.num_chs for f in self]

    def reduction(self) -> list[int]:
        return [f.reduction for f in self]

    def module_name(self) -> list[str]:
        return [f.module for f in self]


def check_input_channels(x: torch.Tensor, in_chans: int, model_name: str) -> None:
    """Raise ValueError/TypeError unless ``x`` is a (N, in_chans, H, W) tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{model_name} expects a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{model_name} expects a 4-D batch (N, {in_chans}, H, W); got a tensor of shape {tuple(x.shape)}")
    if x.shape[1] != in_chans:
        raise ValueError(
            f"{model_name} expects {in_chans} input channel(s), got {x.shape[1]} (input shape {tuple(x.shape)}); "
            f"build the model with in_chans={x.shape[1]} or convert the input"
        )


# torch.fx records the check as one call instead of tracing into its shape-dependent branches,
# so models stay traceable for Conv+BN folding (resnetkit.export.folding).
torch.fx.wrap("check_input_channels")


class ClassifierModel(nn.Module):
    """Base of every model: input checks, head, backbone interface.

    Subclasses build their layers, set ``self.feature_info`` and implement :meth:`stages`.
    The head is ``global_pool -> dropout -> fc`` unless a subclass overrides
    :meth:`forward_head` (VGG keeps torchvision's classifier).
    """

    # Set by the subclass constructors.
    in_chans: int
    num_classes: int
    num_features: int
    feature_info: FeatureInfo
    data_config: DataConfig

    def __init__(self) -> None:
        super().__init__()
        self.model_name = type(self).__name__
        # A frozen whitening layer in front of the first stage (create_model(..., whiten=k)), or None.
        self.whiten: Optional[nn.Module] = None

    # -- structure ---------------------------------------------------------------
    def stages(self) -> list[Sequence[nn.Module]]:
        """Module groups whose outputs are the feature maps of ``feature_info``, in order."""
        raise NotImplementedError

    def _make_head(self, num_features: int, num_classes: int, global_pool: str, drop_rate: float) -> None:
        self.num_features = num_features
        self.num_classes = num_classes
        self.global_pool = GlobalPool(global_pool)
        self.drop_rate = drop_rate
        self.head_drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.fc = nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()

    # -- forward -----------------------------------------------------------------
    def set_input_whitening(self, whitening: nn.Module, data_config: DataConfig) -> None:
        """Put ``whitening`` in front of the first stage; the model then takes ``whitening.in_chans`` channels.

        ``data_config`` describes that raw input (the model was built for the whitened channels).
        """
        self.whiten = whitening
        self.in_chans = whitening.in_chans
        self.data_config = data_config

    def check_input(self, x: torch.Tensor) -> None:
        """Fail early, with the channel counts named, instead of deep inside a conv."""
        check_input_channels(x, self.in_chans, self.model_name)

    def _stem_input(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return x if self.whiten is None else self.whiten(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image batch to the last feature map (before pooling)."""
        x = self._stem_input(x)
        for stage in self.stages():
            for module in stage:
                x = module(x)
        return x

    def forward_intermediates(self, x: torch.Tensor, indices: Iterable[int] | None = None) -> list[torch.Tensor]:
        """Feature maps of the stages listed in ``indices`` (all by default)."""
        x = self._stem_input(x)
        wanted = set(range(len(self.feature_info))) if indices is None else set(indices)
        outputs = []
        for i, stage in enumerate(self.stages()):
            if i > max(wanted):
                break
            for module in stage:
                x = module(x)
            if i in wanted:
                outputs.append(x)
        return outputs

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.global_pool(x))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    # -- classifier --------------------------------------------------------------
    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier (0 removes it: the model then returns pooled features)."""
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        if global_pool is not None:
            self.global_pool = GlobalPool(global_pool)
        self.num_classes = num_classes
        device = next(self.parameters()).device
        self.fc = nn.Linear(self.num_features, num_classes, device=device) if num_classes > 0 else nn.Identity()


class FeatureListNet(nn.Module):
    """A model's stages as a backbone: returns a list of feature maps (``features_only``)."""

    def __init__(self, model: ClassifierModel, out_indices: Sequence[int] | None = None) -> None:
        super().__init__()
        n = len(model.feature_info)
        indices = tuple(range(n)) if out_indices is None else tuple(out_indices)
        bad = [i for i in indices if not -n <= i < n]
        if bad or not indices:
            raise ValueError(
                f"out_indices {tuple(out_indices or ())} invalid for {model.model_name}: "
                f"it has {n} feature levels (0..{n - 1})"
            )
        self.out_indices = tuple(sorted({i % n for i in indices}))
        model.reset_classifier(0)
        self.model = model
        self.feature_info = FeatureInfo(model.feature_info[i] for i in self.out_indices)
        self.in_chans = model.in_chans
        self.data_config = model.data_config
        self.model_name = model.model_name

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.model.forward_intermediates(x, self.out_indices)

    def stages(self) -> list[Sequence[nn.Module]]:
        return self.model.stages()
