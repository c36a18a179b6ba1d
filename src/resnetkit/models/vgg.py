"""VGG (Simonyan & Zisserman 2014): plain stacks of 3x3 convs, the baseline ResNet replaced.

Configurations A, B, D and E of the paper's Table 1 give VGG-11, 13, 16 and 19, each with
and without BatchNorm (Ioffe & Szegedy 2015, added after the paper).

Two sizes:

* ImageNet (``vgg11`` ... ``vgg19_bn``): torchvision's module layout and parameter names
  (``features.N``, ``avgpool``, ``classifier.0/3/6``) and its initialization, so a
  torchvision VGG state dict loads with ``strict=True`` and gives the same outputs.
* CIFAR (``vgg11_cifar`` ... ``vgg19_bn_cifar``): the same conv stack on 32x32 input, whose
  five max-pools leave a 1x1 map, then global pooling and one ``Linear(512, num_classes)``
  instead of the two 4096-wide layers (the common CIFAR VGG, e.g. kuangliu/pytorch-cifar).
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import nn

from .base import (
    CIFAR_MEAN,
    CIFAR_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClassifierModel,
    FeatureEntry,
    FeatureInfo,
    make_data_config,
)
from .layers import LayerSpec, create_act, get_act_layer
from .registry import register_model
from .resnet import _check_common

# Table 1 of the paper: conv widths, "M" a 2x2 max-pool. Keyed by weight layers (convs + 3 FC).
VGG_CONFIGS: dict[int, list[Union[int, str]]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def make_vgg_features(
    depth: int, in_chans: int, act_layer, batch_norm: bool
) -> tuple[nn.Sequential, FeatureInfo, list[int]]:
    """The conv stack as torchvision's ``features`` Sequential.

    Returns the Sequential, one feature entry per max-pool and the indices of the pools.
    The convs keep their bias even before BatchNorm, as torchvision does: dropping it would
    change the parameter names and counts that torchvision checkpoints expect.
    """
    layers: list[nn.Module] = []
    info, pool_indices = FeatureInfo(), []
    channels, reduction = in_chans, 1
    for v in VGG_CONFIGS[depth]:
        if v == "M":
            reduction *= 2
            pool_indices.append(len(layers))
            info.append(FeatureEntry(channels, reduction, f"features.{len(layers)}"))
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers.append(nn.Conv2d(channels, v, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(create_act(act_layer))
            channels = v
    return nn.Sequential(*layers), info, pool_indices


def init_vgg(module: nn.Module) -> None:
    """torchvision's VGG initialization: He (fan_out) convs, N(0, 0.01) linears, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def _check_vgg_args(depth: int, batch_norm: bool) -> None:
    if depth not in VGG_CONFIGS:
        raise ValueError(f"VGG depth must be one of {', '.join(map(str, VGG_CONFIGS))}, got {depth!r}")
    if not isinstance(batch_norm, bool):
        raise TypeError(f"batch_norm must be True or False, got {type(batch_norm).__name__}")


class _VGGBase(ClassifierModel):
    """The part both sizes share: ``features`` split at its max-pools."""

    features: nn.Sequential
    _pool_indices: list[int]

    def stages(self) -> list[Sequence[nn.Module]]:
        # Stage i runs up to and including the i-th max-pool, whose output feature_info[i] names.
        layers = list(self.features)
        bounds = [-1] + self._pool_indices
        return [layers[a + 1 : b + 1] for a, b in zip(bounds[:-1], bounds[1:])]


class VGG(_VGGBase):
    """VGG for ImageNet-sized input, torchvision-compatible.

    The head is torchvision's: 7x7 adaptive average pool, then
    ``Linear(25088, 4096) - act - dropout - Linear(4096, 4096) - act - dropout - Linear(4096, num_classes)``.
    ``num_features`` is 4096, the width of the vector the last Linear receives (what
    ``forward_head(x, pre_logits=True)`` returns); the last feature map has 512 channels.

    Args:
        depth: 11, 13, 16 or 19.
        num_classes: classifier outputs (0: no last Linear, the model returns 4096-d features).
        in_chans: input channels (1 for grayscale, 4+ for multispectral).
        activation: name, class or partial, used after every conv and hidden Linear.
        batch_norm: BatchNorm after every conv (the ``_bn`` models).
        drop_rate: dropout after each hidden Linear (torchvision's 0.5).
    """

    def __init__(
        self,
        depth: int,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        activation: LayerSpec = "relu",
        batch_norm: bool = False,
        drop_rate: float = 0.5,
    ) -> None:
        super().__init__()
        _check_common(num_classes, in_chans, drop_rate, drop_path_rate=0.0, width_mult=1.0)
        _check_vgg_args(depth, batch_norm)
        self.in_chans = in_chans
        self.depth = depth
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        act_layer = get_act_layer(activation)

        self.features, self.feature_info, self._pool_indices = make_vgg_features(depth, in_chans, act_layer, batch_norm)
        last_chs = self.feature_info[-1].num_chs
        self.num_features = 4096
        # Adaptive 7x7 pooling lets any input size reach the 25088-wide first Linear.
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        # Dropout stays in the Sequential even at p=0 so the Linears keep indices 0, 3 and 6.
        self.classifier = nn.Sequential(
            nn.Linear(last_chs * 7 * 7, self.num_features),
            create_act(act_layer),
            nn.Dropout(drop_rate),
            nn.Linear(self.num_features, self.num_features),
            create_act(act_layer),
            nn.Dropout(drop_rate),
            nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity(),
        )
        self.data_config = make_data_config(in_chans, 224, IMAGENET_MEAN, IMAGENET_STD)
        init_vgg(self)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)
        # Module by module rather than a slice: a slice is a new Sequential, which torch.fx
        # (Conv+BN folding) cannot trace.
        *hidden, last = self.classifier
        for layer in hidden:
            x = layer(x)
        return x if pre_logits else last(x)

    def get_classifier(self) -> nn.Module:
        return self.classifier[-1]

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the last Linear (0 removes it: the model then returns 4096-d features)."""
        if not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an integer >= 0, got {num_classes!r}")
        if global_pool is not None:
            # The first Linear is sized for the 7x7 adaptive pool; another pool would not fit it.
            raise ValueError(
                f"{self.model_name} keeps torchvision's 7x7 adaptive pool before its classifier; "
                "global_pool must be None (use a *_cifar VGG for a globally pooled head)"
            )
        self.num_classes = num_classes
        ref = self.classifier[0].weight
        self.classifier[-1] = (
            nn.Linear(self.num_features, num_classes, device=ref.device, dtype=ref.dtype)
            if num_classes > 0
            else nn.Identity()
        )


class CifarVGG(_VGGBase):
    """VGG for 32x32 input: the ImageNet conv stack, global pooling, one Linear(512, num_classes).

    Args:
        depth: 11, 13, 16 or 19.
        num_classes: classifier outputs (0: no classifier, the model returns pooled features).
        in_chans: input channels.
        activation: name, class or partial, used after every conv.
        batch_norm: BatchNorm after every conv (the ``_bn`` models).
        drop_rate: dropout before the classifier (none by default, as the common CIFAR VGG).
        global_pool: avg, max or avgmax. At 32x32 the last map is 1x1, where all three agree;
            they differ on larger input.
    """

    def __init__(
        self,
        depth: int,
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        activation: LayerSpec = "relu",
        batch_norm: bool = False,
        drop_rate: float = 0.0,
        global_pool: str = "avg",
    ) -> None:
        super().__init__()
        _check_common(num_classes, in_chans, drop_rate, drop_path_rate=0.0, width_mult=1.0)
        _check_vgg_args(depth, batch_norm)
        self.in_chans = in_chans
        self.depth = depth
        act_layer = get_act_layer(activation)

        self.features, self.feature_info, self._pool_indices = make_vgg_features(depth, in_chans, act_layer, batch_norm)
        self._make_head(self.feature_info[-1].num_chs, num_classes, global_pool, drop_rate)
        self.data_config = make_data_config(in_chans, 32, CIFAR_MEAN, CIFAR_STD, crop_pct=1.0)
        init_vgg(self)


def _vgg(cls: type[_VGGBase], depth: int, batch_norm: bool, name: str, kwargs: dict) -> _VGGBase:
    # The builder's name fixes batch_norm: vgg16_bn(batch_norm=False) would build another net
    # under a misleading name, so point at the right builder instead.
    given = kwargs.setdefault("batch_norm", batch_norm)
    if isinstance(given, bool) and given != batch_norm:
        other = name.replace("_bn", "") if batch_norm else name.replace(f"vgg{depth}", f"vgg{depth}_bn")
        raise TypeError(f"{name} has batch_norm={batch_norm}; use {other} for batch_norm={given}")
    return cls(depth, **kwargs)


# -- registered builders: ImageNet --------------------------------------------------------


@register_model("vgg", VGG, fixed=("batch_norm",), builder_checks_fixed=True)
def vgg11(**kwargs) -> VGG:
    """VGG-11 (Simonyan & Zisserman 2014, config A), torchvision layout, 132.9M parameters."""
    return _vgg(VGG, 11, False, "vgg11", kwargs)


@register_model("vgg", VGG, fixed=("batch_norm",), builder_checks_fixed=True)
def vgg11_bn(**kwargs) -> VGG:
    """VGG-11 with BatchNorm, torchvision layout, 132.9M parameters."""
    return _vgg(VGG, 11, True, "vgg11_bn", kwargs)


@register_model("vgg", VGG, fixed=("batch_norm",), builder_checks_fixed=True)
def vgg13(**kwargs) -> VGG:
    """VGG-13 (config B), torchvision layout, 133.0M parameters."""
    return _vgg(VGG, 13, False, "vgg13", kwargs)


@register_model("vgg", VGG, fixed=("batch_norm",), builder_checks_fixed=True)
def vgg13_bn(**kwargs) -> VGG:
    """VGG-13 with BatchNorm, torchvision layout, 133.1M parameters."""
    return _vgg(VGG, 13, True, "vgg13_bn", kwargs)


@register_model("vgg", VGG, fixed=("batch_norm",), builder_checks_fixed=True)
def vgg16(**kwargs) -> VGG:
    """VGG-16 (config D), torchvision layout, 138.4M parameters."""
    return _vgg(VGG, 16, False, "vgg16", kwargs)


@register_model("vgg", VGG, fixed=("batch_norm",), builder_checks_fixed=True)
def vgg16_bn(**kwargs) -> VGG:
    """VGG-16 with BatchNorm, torchvision layout, 138.4M parameters."""
    return _vgg(VGG, 16, True, "vgg16_bn", kwargs)


@register_model("vgg", VGG, fixed=("batch_norm",), builder_checks_fixed=True)
def vgg19(**kwargs) -> VGG:
    """VGG-19 (config E), torchvision layout, 143.7M parameters."""
    return _vgg(VGG, 19, False, "vgg19", kwargs)


@register_model("vgg", VGG, fixed=("batch_norm",), builder_checks_fixed=True)
def vgg19_bn(**kwargs) -> VGG:
    """VGG-19 with BatchNorm, torchvision layout, 143.7M parameters."""
    return _vgg(VGG, 19, True, "vgg19_bn", kwargs)


# -- registered builders: CIFAR -----------------------------------------------------------


@register_model("vgg-cifar", CifarVGG, fixed=("batch_norm",), builder_checks_fixed=True)
def vgg11_cifar(**kwargs) -> CifarVGG:
    """VGG-11 for 32x32 input: conv stack, global pool, Linear(512, num_classes), 9.2M parameters (10 classes)."""
    return _vgg(CifarVGG, 11, False, "vgg11_cifar", kwargs)


@register_model("vgg-cifar", CifarVGG, fixed=("batch_norm",), builder_checks_fixed=True)
def vgg11_bn_cifar(**kwargs) -> CifarVGG:
    """VGG-11 with BatchNorm for 32x32 input, 9.2M parameters (10 classes)."""
    return _vgg(CifarVGG, 11, True, "vgg11_bn_cifar", kwargs)


@register_model("vgg-cifar", CifarVGG, fixed=("batch_norm",), builder_checks_fixed=True)
def vgg13_cifar(**kwargs) -> CifarVGG:
    """VGG-13 for 32x32 input, 9.4M parameters (10 classes)."""
    return _vgg(CifarVGG, 13, False, "vgg13_cifar", kwargs)


@register_model("vgg-cifar", CifarVGG, fixed=("batch_norm",), builder_checks_fixed=True)
def vgg13_bn_cifar(**kwargs) -> CifarVGG:
    """VGG-13 with BatchNorm for 32x32 input, 9.4M parameters (10 classes)."""
    return _vgg(CifarVGG, 13, True, "vgg13_bn_cifar", kwargs)


@register_model("vgg-cifar", CifarVGG, fixed=("batch_norm",), builder_checks_fixed=True)
def vgg16_cifar(**kwargs) -> CifarVGG:
    """VGG-16 for 32x32 input, 14.7M parameters (10 classes)."""
    return _vgg(CifarVGG, 16, False, "vgg16_cifar", kwargs)


@register_model("vgg-cifar", CifarVGG, fixed=("batch_norm",), builder_checks_fixed=True)
def vgg16_bn_cifar(**kwargs) -> CifarVGG:
    """VGG-16 with BatchNorm for 32x32 input, 14.7M parameters (10 classes)."""
    return _vgg(CifarVGG, 16, True, "vgg16_bn_cifar", kwargs)


@register_model("vgg-cifar", CifarVGG, fixed=("batch_norm",), builder_checks_fixed=True)
def vgg19_cifar(**kwargs) -> CifarVGG:
    """VGG-19 for 32x32 input, 20.0M parameters (10 classes)."""
    return _vgg(CifarVGG, 19, False, "vgg19_cifar", kwargs)


@register_model("vgg-cifar", CifarVGG, fixed=("batch_norm",), builder_checks_fixed=True)
def vgg19_bn_cifar(**kwargs) -> CifarVGG:
    """VGG-19 with BatchNorm for 32x32 input, 20.0M parameters (10 classes)."""
    return _vgg(CifarVGG, 19, True, "vgg19_bn_cifar", kwargs)
