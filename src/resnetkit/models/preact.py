"""Pre-activation ResNet (ResNetV2; He et al. 2016, "Identity Mappings in Deep Residual Networks").

Each block computes BN -> activation -> conv twice (or three times in the bottleneck), and the
addition is not followed by an activation, so the shortcut path is a pure identity from the
stem to the classifier. Where a projection is needed it takes the pre-activated input, as in
the paper's code ("both_preact"), and the last stage is followed by BN -> activation.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .base import CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD, ClassifierModel, FeatureEntry, FeatureInfo, make_data_config
from .layers import (
    DropPath,
    LayerSpec,
    ShortcutA,
    conv1x1,
    conv3x3,
    create_act,
    get_act_layer,
    get_norm_layer,
    init_conv_and_norm,
    norm_has_bias,
)
from .registry import register_model
from .resnet import _check_common, _drop_path_rates, _scaled


class PreActBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, *, norm_layer, act_layer, conv_bias=False, drop_path=0.0):
        super().__init__()
        self.bn1 = norm_layer(inplanes)
        self.act1 = create_act(act_layer)
        self.conv1 = conv3x3(inplanes, planes, stride, bias=conv_bias)
        self.bn2 = norm_layer(planes)
        self.act2 = create_act(act_layer)
        self.conv2 = conv3x3(planes, planes, bias=conv_bias)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.downsample = downsample

    def last_conv(self) -> nn.Conv2d:
        return self.conv2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        preact = self.act1(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(preact)
        out = self.conv1(preact)
        out = self.conv2(self.act2(self.bn2(out)))
        out = self.drop_path(out)
        out += shortcut
        return out


class PreActBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, *, norm_layer, act_layer, conv_bias=False, drop_path=0.0):
        super().__init__()
        self.bn1 = norm_layer(inplanes)
        self.act1 = create_act(act_layer)
        self.conv1 = conv1x1(inplanes, planes, bias=conv_bias)
        self.bn2 = norm_layer(planes)
        self.act2 = create_act(act_layer)
        self.conv2 = conv3x3(planes, planes, stride, bias=conv_bias)
        self.bn3 = norm_layer(planes)
        self.act3 = create_act(act_layer)
        self.conv3 = conv1x1(planes, planes * self.expansion, bias=conv_bias)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.downsample = downsample

    def last_conv(self) -> nn.Conv2d:
        return self.conv3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        preact = self.act1(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(preact)
        out = self.conv1(preact)
        out = self.conv2(self.act2(self.bn2(out)))
        out = self.conv3(self.act3(self.bn3(out)))
        out = self.drop_path(out)
        out += shortcut
        return out


class PreActResNet(ClassifierModel):
    """Pre-activation ResNet for ImageNet-sized (``stem="imagenet"``) or CIFAR-sized input.

    Args:
        block: PreActBasicBlock or PreActBottleneck.
        layers: blocks per stage (4 stages for ImageNet, 3 for CIFAR).
        stem: ``"imagenet"`` (7x7/2 conv and max-pool, widths 64-512) or ``"cifar"``
            (3x3 conv, widths 16-64).
        shortcut: ``"B"`` projects where shapes change (the paper's code), ``"A"`` zero-pads
            (basic blocks only).
        zero_init_last: zero the last conv of each block so blocks start as identities. No
            norm follows that conv in a pre-activation block, so the conv itself is zeroed, as
            timm's ResNetV2 (``zero_init_last``) and SkipInit (De & Smith 2020) do.
        Other arguments as :class:`resnetkit.models.resnet.ResNet`.
    """

    def __init__(
        self,
        block: type[PreActBasicBlock] | type[PreActBottleneck],
        layers: Sequence[int],
        *,
        stem: str = "imagenet",
        num_classes: int = 1000,
        in_chans: int = 3,
        activation: LayerSpec = "relu",
        norm: LayerSpec = "batch",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        width_mult: float = 1.0,
        global_pool: str = "avg",
        shortcut: str = "B",
        zero_init_last: bool = False,
    ) -> None:
        super().__init__()
        _check_common(num_classes, in_chans, drop_rate, drop_path_rate, width_mult)
        shortcut = str(shortcut).upper()
        if shortcut not in ("A", "B"):
            raise ValueError(f"unknown shortcut option {shortcut!r}; allowed: 'A', 'B'")
        if shortcut == "A" and block is not PreActBasicBlock:
            raise ValueError("shortcut 'A' needs basic blocks: a bottleneck's first block changes width at stride 1")
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"unknown stem {stem!r}; allowed: 'imagenet', 'cifar'")
        n_stages = 4 if stem == "imagenet" else 3
        if len(layers) != n_stages:
            raise ValueError(f"a {stem} pre-activation ResNet has {n_stages} stages, got layers={list(layers)}")
        self.in_chans = in_chans
        act_layer = get_act_layer(activation)
        norm_layer = get_norm_layer(norm)
        conv_bias = norm_has_bias(norm_layer)
        base = 64 if stem == "imagenet" else 16
        widths = [_scaled(base * 2**i, width_mult) for i in range(n_stages)]
        inplanes = widths[0]

        if stem == "imagenet":
            # No norm or activation in the stem: the first block pre-activates its input.
            self.conv1 = nn.Conv2d(in_chans, inplanes, kernel_size=7, stride=2, padding=3, bias=conv_bias)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            stem_reduction, first_reduction = 2, 4
        else:
            self.conv1 = nn.Conv2d(in_chans, inplanes, kernel_size=3, padding=1, bias=conv_bias)
            self.maxpool = nn.Identity()
            stem_reduction, first_reduction = 1, 1

        drop_paths = _drop_path_rates(drop_path_rate, layers)
        stages = []
        for i, (planes, n) in enumerate(zip(widths, layers)):
            out_planes = planes * block.expansion
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                downsample = None
                if stride != 1 or inplanes != out_planes:
                    downsample = ShortcutA(inplanes, out_planes, stride) if shortcut == "A" else conv1x1(
                        inplanes, out_planes, stride, bias=conv_bias
                    )
                blocks.append(
                    block(inplanes, planes, stride, downsample, norm_layer=norm_layer, act_layer=act_layer,
                          conv_bias=conv_bias, drop_path=drop_paths[i][j])
                )
                inplanes = out_planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages[:3]
        self.layer4 = stages[3] if n_stages == 4 else None
        # The blocks end in an addition; this is the only norm + activation on the identity path.
        self.norm = norm_layer(inplanes)
        self.act = create_act(act_layer)

        names = [f"layer{i + 1}" for i in range(n_stages)]
        names[-1] = "act"
        self.feature_info = FeatureInfo(
            [FeatureEntry(widths[0], stem_reduction, "conv1")]
            + [
                FeatureEntry(w * block.expansion, first_reduction * 2**i, names[i])
                for i, w in enumerate(widths)
            ]
        )
        self._make_head(inplanes, num_classes, global_pool, drop_rate)
        if stem == "imagenet":
            self.data_config = make_data_config(in_chans, 224, IMAGENET_MEAN, IMAGENET_STD)
        else:
            self.data_config = make_data_config(in_chans, 32, CIFAR_MEAN, CIFAR_STD, crop_pct=1.0)
        init_conv_and_norm(self)
        if zero_init_last:
            for m in self.modules():
                if isinstance(m, (PreActBasicBlock, PreActBottleneck)):
                    nn.init.zeros_(m.last_conv().weight)
                    if m.last_conv().bias is not None:
                        nn.init.zeros_(m.last_conv().bias)

    def stages(self):
        body = [self.layer1, self.layer2, self.layer3] + ([self.layer4] if self.layer4 is not None else [])
        groups = [(self.conv1,), (self.maxpool, body[0])] + [(layer,) for layer in body[1:]]
        groups[-1] = groups[-1] + (self.norm, self.act)
        return groups


def _imagenet(block, layers, kwargs) -> PreActResNet:
    return PreActResNet(block, layers, stem="imagenet", **kwargs)


def _cifar(block, depth: int, kwargs) -> PreActResNet:
    per_block = 2 if block is PreActBasicBlock else 3
    n = (depth - 2) // (3 * per_block)
    kwargs.setdefault("num_classes", 10)
    return PreActResNet(block, [n, n, n], stem="cifar", **kwargs)


@register_model("preact-resnet", PreActResNet, fixed=("stem",))
def preact_resnet18(**kwargs) -> PreActResNet:
    """Pre-activation ResNet-18 (He et al. 2016)."""
    return _imagenet(PreActBasicBlock, [2, 2, 2, 2], kwargs)


@register_model("preact-resnet", PreActResNet, fixed=("stem",))
def preact_resnet34(**kwargs) -> PreActResNet:
    """Pre-activation ResNet-34 (He et al. 2016)."""
    return _imagenet(PreActBasicBlock, [3, 4, 6, 3], kwargs)


@register_model("preact-resnet", PreActResNet, fixed=("stem",))
def preact_resnet50(**kwargs) -> PreActResNet:
    """Pre-activation ResNet-50 (He et al. 2016), bottleneck."""
    return _imagenet(PreActBottleneck, [3, 4, 6, 3], kwargs)


@register_model("preact-resnet", PreActResNet, fixed=("stem",))
def preact_resnet101(**kwargs) -> PreActResNet:
    """Pre-activation ResNet-101 (He et al. 2016)."""
    return _imagenet(PreActBottleneck, [3, 4, 23, 3], kwargs)


@register_model("preact-resnet", PreActResNet, fixed=("stem",))
def preact_resnet152(**kwargs) -> PreActResNet:
    """Pre-activation ResNet-152 (He et al. 2016)."""
    return _imagenet(PreActBottleneck, [3, 8, 36, 3], kwargs)


@register_model("preact-cifar", PreActResNet, fixed=("stem",))
def preact_resnet20(**kwargs) -> PreActResNet:
    """Pre-activation ResNet-20 for CIFAR: the v2 twin of resnet20 for v1-vs-v2 comparisons."""
    return _cifar(PreActBasicBlock, 20, kwargs)


@register_model("preact-cifar", PreActResNet, fixed=("stem",))
def preact_resnet56(**kwargs) -> PreActResNet:
    """Pre-activation ResNet-56 for CIFAR: the v2 twin of resnet56."""
    return _cifar(PreActBasicBlock, 56, kwargs)


@register_model("preact-cifar", PreActResNet, fixed=("stem",))
def preact_resnet110(**kwargs) -> PreActResNet:
    """Pre-activation ResNet-110 for CIFAR (He et al. 2016, Table 2), basic blocks, 1.7M parameters."""
    return _cifar(PreActBasicBlock, 110, kwargs)


@register_model("preact-cifar", PreActResNet, fixed=("stem",))
def preact_resnet164(**kwargs) -> PreActResNet:
    """Pre-activation ResNet-164 for CIFAR (He et al. 2016, Table 3), bottleneck, 1.7M parameters."""
    return _cifar(PreActBottleneck, 164, kwargs)


@register_model("preact-cifar", PreActResNet, fixed=("stem",))
def preact_resnet1001(**kwargs) -> PreActResNet:
    """Pre-activation ResNet-1001 for CIFAR (He et al. 2016, Table 3), bottleneck, 10.33M parameters.

    10,327,706 parameters for 10 classes; 10,178,490 (10.18M) without the BatchNorm scales and
    shifts, which is the count that rounds to the paper's 10.2M.
    """
    return _cifar(PreActBottleneck, 1001, kwargs)
