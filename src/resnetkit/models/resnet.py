"""ResNet (He et al. 2015) and its descendants for ImageNet-sized input.

Covers ResNet v1 and v1.5, ResNeXt (Xie et al. 2017), Wide ResNet (Zagoruyko & Komodakis
2016), ResNet-D (He et al. 2019, "Bag of Tricks"), SE-ResNet (Hu et al. 2018), stochastic
depth (Huang et al. 2016) and the plain nets of the degradation experiment. Parameter names
follow torchvision (conv1, bn1, layer1..4, downsample, fc) and timm for the D stem and
SE modules, so their state dicts load with ``strict=True``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .base import IMAGENET_MEAN, IMAGENET_STD, ClassifierModel, FeatureEntry, FeatureInfo, make_data_config
from .layers import (
    DropPath,
    LayerSpec,
    SEModule,
    conv1x1,
    conv3x3,
    create_act,
    get_act_layer,
    get_norm_layer,
    init_conv_and_norm,
    norm_has_bias,
)
from .registry import register_model


class BasicBlock(nn.Module):
    """Two 3x3 convs (the paper's Figure 2, left)."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        groups: int = 1,
        base_width: int = 64,
        norm_layer=nn.BatchNorm2d,
        act_layer=nn.ReLU,
        conv_bias: bool = False,
        se: bool = False,
        drop_path: float = 0.0,
        residual: bool = True,
    ) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock supports only groups=1 and base_width=64 (use a Bottleneck model)")
        self.conv1 = conv3x3(inplanes, planes, stride, bias=conv_bias)
        self.bn1 = norm_layer(planes)
        self.act1 = create_act(act_layer)
        self.conv2 = conv3x3(planes, planes, bias=conv_bias)
        self.bn2 = norm_layer(planes)
        self.se = SEModule(planes) if se else None
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.act2 = create_act(act_layer)
        self.downsample = downsample
        self.residual = residual

    def last_norm(self) -> nn.Module:
        return self.bn2

    def last_conv(self) -> nn.Conv2d:
        return self.conv2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.act1(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.se is not None:
            out = self.se(out)
        if self.residual:
            shortcut = x if self.downsample is None else self.downsample(x)
            out = self.drop_path(out)
            out += shortcut  # in place, as torchvision: no extra activation-sized tensor
        return self.act2(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (Figure 5, right); groups and width give ResNeXt and WRN."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        groups: int = 1,
        base_width: int = 64,
        norm_layer=nn.BatchNorm2d,
        act_layer=nn.ReLU,
        conv_bias: bool = False,
        se: bool = False,
        drop_path: float = 0.0,
        residual: bool = True,
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        # ResNet v1.5 (torchvision, NVIDIA) strides in the 3x3 conv; the paper's v1 strides
        # in the first 1x1, which skips three quarters of the input.
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(inplanes, width, stride_1x1, bias=conv_bias)
        self.bn1 = norm_layer(width)
        self.act1 = create_act(act_layer)
        self.conv2 = conv3x3(width, width, stride_3x3, groups, bias=conv_bias)
        self.bn2 = norm_layer(width)
        self.act2 = create_act(act_layer)
        self.conv3 = conv1x1(width, planes * self.expansion, bias=conv_bias)
        self.bn3 = norm_layer(planes * self.expansion)
        self.se = SEModule(planes * self.expansion) if se else None
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.act3 = create_act(act_layer)
        self.downsample = downsample
        self.residual = residual

    def last_norm(self) -> nn.Module:
        return self.bn3

    def last_conv(self) -> nn.Conv2d:
        return self.conv3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.act1(out)
        out = self.conv2(out)
        out = self.bn2(out)
        out = self.act2(out)
        out = self.conv3(out)
        out = self.bn3(out)
        if self.se is not None:
            out = self.se(out)
        if self.residual:
            shortcut = x if self.downsample is None else self.downsample(x)
            out = self.drop_path(out)
            out += shortcut  # in place, as torchvision: no extra activation-sized tensor
        return self.act3(out)


def init_residual_branches(model: nn.Module, zero_init_last: bool, has_norm: bool) -> None:
    """Make each residual block start as (close to) the identity when asked.

    ``zero_init_last`` zeroes the last BN's scale (Goyal et al. 2017, torchvision's
    ``zero_init_residual``). Without normalization the last conv itself is zeroed, otherwise
    activations double with every block and deep nets diverge at the first step (SkipInit,
    De & Smith 2020).
    """
    for m in model.modules():
        if isinstance(m, (BasicBlock, Bottleneck)) and m.residual:
            if not has_norm:
                nn.init.zeros_(m.last_conv().weight)
            elif zero_init_last and getattr(m.last_norm(), "weight", None) is not None:
                nn.init.zeros_(m.last_norm().weight)


class ResNet(ClassifierModel):
    """ResNet for ImageNet-sized input (stem /4, four stages, /32 in all).

    Args:
        block: BasicBlock or Bottleneck.
        layers: blocks per stage.
        num_classes: classifier outputs (0: no classifier, the model returns pooled features).
        in_chans: input channels (1 for grayscale and spectrograms, 4+ for multispectral).
        activation: name, class or partial (relu, leaky_relu, gelu, silu, mish, elu, ...).
        norm: batch, group, layer, instance or none; or a class / partial taking channels.
        drop_rate: dropout before the classifier.
        drop_path_rate: stochastic depth, rising linearly to this rate in the last block.
        width_mult: multiplies every stage's width (0.5 halves the net).
        global_pool: avg, max or avgmax.
        groups, base_width: ResNeXt cardinality and width per group (WRN: base_width=128).
        stem: ``"default"`` (7x7 conv) or ``"deep"`` (three 3x3 convs, ResNet-C/D).
        stem_width: channels of the deep stem's first convs.
        avg_down: average-pool shortcut instead of a strided 1x1 conv (ResNet-D).
        stride_in_1x1: the paper's v1 stride placement, in the first 1x1 conv of a Bottleneck
            (default: v1.5, stride in the 3x3, as torchvision). Bottleneck only: a BasicBlock
            has no 1x1 conv, so v1 and v1.5 are the same net there.
        se: squeeze-and-excitation in every block.
        zero_init_last: zero the last BN of each block so blocks start as identities.
        residual: False removes every shortcut (the paper's plain nets).
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        activation: LayerSpec = "relu",
        norm: LayerSpec = "batch",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        width_mult: float = 1.0,
        global_pool: str = "avg",
        groups: int = 1,
        base_width: int = 64,
        stem: str = "default",
        stem_width: int = 32,
        avg_down: bool = False,
        stride_in_1x1: bool = False,
        se: bool = False,
        zero_init_last: bool = False,
        residual: bool = True,
    ) -> None:
        super().__init__()
        _check_common(num_classes, in_chans, drop_rate, drop_path_rate, width_mult)
        if stem not in ("default", "deep"):
            raise ValueError(f"unknown stem {stem!r}; allowed: 'default', 'deep'")
        if len(layers) != 4:
            raise ValueError(f"an ImageNet ResNet has 4 stages, got layers={list(layers)}")
        _check_shortcut_options(residual, zero_init_last, drop_path_rate, avg_down=avg_down)
        if stride_in_1x1 and block is not Bottleneck:
            # Accepting it silently would let a user believe they built a v1 ResNet-18/34.
            raise ValueError(
                "stride_in_1x1=True applies to Bottleneck ResNets (50 layers and deeper): a BasicBlock "
                "has no 1x1 conv and already strides in its first 3x3, so v1 and v1.5 are the same net"
            )
        self.in_chans = in_chans
        act_layer = get_act_layer(activation)
        norm_layer = get_norm_layer(norm)
        has_norm = not norm_has_bias(norm_layer)
        conv_bias = not has_norm
        widths = [_scaled(64 * 2**i, width_mult) for i in range(4)]
        if block is Bottleneck and int(widths[0] * base_width / 64) < 1:
            # The grouped 3x3 of the first stage would have zero channels per group.
            raise ValueError(
                f"width_mult={width_mult} is too small for {groups} group(s) of base width {base_width}: the first "
                f"stage's 3x3 would have 0 channels per group; use width_mult >= {1 / base_width:g}"
            )
        self.inplanes = _scaled(64, width_mult)

        if stem == "deep":
            sw = _scaled(stem_width, width_mult)
            self.conv1 = nn.Sequential(
                conv3x3(in_chans, sw, stride=2, bias=conv_bias), norm_layer(sw), create_act(act_layer),
                conv3x3(sw, sw, bias=conv_bias), norm_layer(sw), create_act(act_layer),
                conv3x3(sw, self.inplanes, bias=conv_bias),
            )
        else:
            self.conv1 = nn.Conv2d(in_chans, self.inplanes, kernel_size=7, stride=2, padding=3, bias=conv_bias)
        self.bn1 = norm_layer(self.inplanes)
        self.act1 = create_act(act_layer)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        block_kwargs = dict(
            groups=groups, base_width=base_width, norm_layer=norm_layer, act_layer=act_layer,
            conv_bias=conv_bias, se=se, residual=residual,
        )
        if block is Bottleneck:
            block_kwargs["stride_in_1x1"] = stride_in_1x1
        drop_paths = _drop_path_rates(drop_path_rate, layers)
        stages = []
        for i, (width, n) in enumerate(zip(widths, layers)):
            stages.append(
                self._make_layer(block, width, n, 1 if i == 0 else 2, avg_down, drop_paths[i], block_kwargs)
            )
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

        self.feature_info = FeatureInfo(
            [FeatureEntry(_scaled(64, width_mult), 2, "act1")]
            + [FeatureEntry(w * block.expansion, 4 * 2**i, f"layer{i + 1}") for i, w in enumerate(widths)]
        )
        self._make_head(widths[-1] * block.expansion, num_classes, global_pool, drop_rate)
        self.data_config = make_data_config(in_chans, 224, IMAGENET_MEAN, IMAGENET_STD)

        init_conv_and_norm(self)
        init_residual_branches(self, zero_init_last, has_norm)

    def _make_layer(self, block, planes, blocks, stride, avg_down, drop_paths, block_kwargs) -> nn.Sequential:
        out_planes = planes * block.expansion
        downsample = None
        if block_kwargs["residual"] and (stride != 1 or self.inplanes != out_planes):
            downsample = _projection_shortcut(
                self.inplanes, out_planes, stride, avg_down, block_kwargs["norm_layer"], block_kwargs["conv_bias"]
            )
        layers = [block(self.inplanes, planes, stride, downsample, drop_path=drop_paths[0], **block_kwargs)]
        self.inplanes = out_planes
        for j in range(1, blocks):
            layers.append(block(self.inplanes, planes, drop_path=drop_paths[j], **block_kwargs))
        return nn.Sequential(*layers)

    def stages(self):
        return [
            (self.conv1, self.bn1, self.act1),
            (self.maxpool, self.layer1),
            (self.layer2,),
            (self.layer3,),
            (self.layer4,),
        ]


def _projection_shortcut(inplanes, out_planes, stride, avg_down, norm_layer, conv_bias) -> nn.Sequential:
    if avg_down:
        # ResNet-D: a strided 1x1 conv ignores 3/4 of its input; average first, then project.
        pool = (
            nn.AvgPool2d(2, stride=2, ceil_mode=True, count_include_pad=False) if stride > 1 else nn.Identity()
        )
        return nn.Sequential(pool, conv1x1(inplanes, out_planes, bias=conv_bias), norm_layer(out_planes))
    return nn.Sequential(conv1x1(inplanes, out_planes, stride, bias=conv_bias), norm_layer(out_planes))


def _scaled(channels: int, width_mult: float) -> int:
    return max(1, int(round(channels * width_mult)))


def _drop_path_rates(rate: float, layers: Sequence[int]) -> list[list[float]]:
    total = sum(layers)
    rates = [rate * i / max(total - 1, 1) for i in range(total)]
    out, start = [], 0
    for n in layers:
        out.append(rates[start : start + n])
        start += n
    return out


def _check_shortcut_options(residual: bool, zero_init_last: bool, drop_path_rate: float, **shortcut_options) -> None:
    """Refuse options that act on shortcuts or residual branches when there are none.

    A plain net (residual=False) would silently ignore them: zero_init_last would zero every
    block's output, stochastic depth drops a residual branch, and the shortcut options shape
    a shortcut that does not exist.
    """
    if residual:
        return
    options = {"zero_init_last": zero_init_last, "drop_path_rate": drop_path_rate, **shortcut_options}
    given = [k for k, v in options.items() if v]
    if given:
        raise ValueError(
            f"{', '.join(given)} act on shortcuts and residual branches; a plain net (residual=False) has none"
        )


def _check_common(num_classes: int, in_chans: int, drop_rate: float, drop_path_rate: float, width_mult: float) -> None:
    if not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"num_classes must be an integer >= 0, got {num_classes!r}")
    if not isinstance(in_chans, int) or in_chans < 1:
        raise ValueError(f"in_chans must be an integer >= 1, got {in_chans!r}")
    if not 0.0 <= drop_rate < 1.0:
        raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate}")
    if not 0.0 <= drop_path_rate < 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
    if width_mult <= 0:
        raise ValueError(f"width_mult must be > 0, got {width_mult}")


# -- registered builders -------------------------------------------------------------------


@register_model("resnet", ResNet)
def resnet18(**kwargs) -> ResNet:
    """ResNet-18 (He et al. 2015), BasicBlock [2, 2, 2, 2]."""
    return ResNet(BasicBlock, [2, 2, 2, 2], **kwargs)


@register_model("resnet", ResNet)
def resnet34(**kwargs) -> ResNet:
    """ResNet-34 (He et al. 2015), BasicBlock [3, 4, 6, 3]."""
    return ResNet(BasicBlock, [3, 4, 6, 3], **kwargs)


@register_model("resnet", ResNet)
def resnet50(**kwargs) -> ResNet:
    """ResNet-50 v1.5 (He et al. 2015; stride in the 3x3 as torchvision), Bottleneck [3, 4, 6, 3]."""
    return ResNet(Bottleneck, [3, 4, 6, 3], **kwargs)


@register_model("resnet", ResNet)
def resnet101(**kwargs) -> ResNet:
    """ResNet-101 v1.5, Bottleneck [3, 4, 23, 3]."""
    return ResNet(Bottleneck, [3, 4, 23, 3], **kwargs)


@register_model("resnet", ResNet)
def resnet152(**kwargs) -> ResNet:
    """ResNet-152 v1.5, Bottleneck [3, 8, 36, 3]."""
    return ResNet(Bottleneck, [3, 8, 36, 3], **kwargs)


def _resnet_v1(layers: Sequence[int], name: str, kwargs: dict) -> ResNet:
    # The name fixes the stride placement, as vgg16_bn fixes batch_norm.
    given = kwargs.setdefault("stride_in_1x1", True)
    if given is not True:
        raise TypeError(f"{name} has stride_in_1x1=True; use {name.removesuffix('_v1')} for the v1.5 placement")
    return ResNet(Bottleneck, layers, **kwargs)


@register_model("resnet", ResNet, fixed=("stride_in_1x1",), builder_checks_fixed=True)
def resnet50_v1(**kwargs) -> ResNet:
    """ResNet-50 v1 (He et al. 2015 as published): stride in the first 1x1 conv; torchvision's weights load."""
    return _resnet_v1([3, 4, 6, 3], "resnet50_v1", kwargs)


@register_model("resnet", ResNet, fixed=("stride_in_1x1",), builder_checks_fixed=True)
def resnet101_v1(**kwargs) -> ResNet:
    """ResNet-101 v1 (He et al. 2015): stride in the first 1x1 conv, Bottleneck [3, 4, 23, 3]."""
    return _resnet_v1([3, 4, 23, 3], "resnet101_v1", kwargs)


@register_model("resnet", ResNet, fixed=("stride_in_1x1",), builder_checks_fixed=True)
def resnet152_v1(**kwargs) -> ResNet:
    """ResNet-152 v1 (He et al. 2015): stride in the first 1x1 conv, Bottleneck [3, 8, 36, 3]."""
    return _resnet_v1([3, 8, 36, 3], "resnet152_v1", kwargs)


def _resnet_d(block, layers, kwargs) -> ResNet:
    # The deep stem and average-pool shortcuts are what "-D" means: not overridable.
    return ResNet(block, layers, stem="deep", avg_down=True, **kwargs)


@register_model("resnet-d", ResNet, fixed=("stem", "avg_down"))
def resnet18d(**kwargs) -> ResNet:
    """ResNet-18-D (He et al. 2019): deep 3x3 stem and average-pool shortcuts (timm names)."""
    return _resnet_d(BasicBlock, [2, 2, 2, 2], kwargs)


@register_model("resnet-d", ResNet, fixed=("stem", "avg_down"))
def resnet34d(**kwargs) -> ResNet:
    """ResNet-34-D (He et al. 2019)."""
    return _resnet_d(BasicBlock, [3, 4, 6, 3], kwargs)


@register_model("resnet-d", ResNet, fixed=("stem", "avg_down"))
def resnet50d(**kwargs) -> ResNet:
    """ResNet-50-D (He et al. 2019)."""
    return _resnet_d(Bottleneck, [3, 4, 6, 3], kwargs)


@register_model("resnet-d", ResNet, fixed=("stem", "avg_down"))
def resnet101d(**kwargs) -> ResNet:
    """ResNet-101-D (He et al. 2019)."""
    return _resnet_d(Bottleneck, [3, 4, 23, 3], kwargs)


@register_model("resnet-d", ResNet, fixed=("stem", "avg_down"))
def resnet152d(**kwargs) -> ResNet:
    """ResNet-152-D (He et al. 2019)."""
    return _resnet_d(Bottleneck, [3, 8, 36, 3], kwargs)


@register_model("se-resnet", ResNet, fixed=("se",))
def seresnet18(**kwargs) -> ResNet:
    """SE-ResNet-18 (Hu et al. 2018), reduction 16."""
    return ResNet(BasicBlock, [2, 2, 2, 2], se=True, **kwargs)


@register_model("se-resnet", ResNet, fixed=("se",))
def seresnet34(**kwargs) -> ResNet:
    """SE-ResNet-34 (Hu et al. 2018)."""
    return ResNet(BasicBlock, [3, 4, 6, 3], se=True, **kwargs)


@register_model("se-resnet", ResNet, fixed=("se",))
def seresnet50(**kwargs) -> ResNet:
    """SE-ResNet-50 (Hu et al. 2018)."""
    return ResNet(Bottleneck, [3, 4, 6, 3], se=True, **kwargs)


@register_model("se-resnet", ResNet, fixed=("se",))
def seresnet101(**kwargs) -> ResNet:
    """SE-ResNet-101 (Hu et al. 2018)."""
    return ResNet(Bottleneck, [3, 4, 23, 3], se=True, **kwargs)


@register_model("se-resnet", ResNet, fixed=("se",))
def seresnet152(**kwargs) -> ResNet:
    """SE-ResNet-152 (Hu et al. 2018)."""
    return ResNet(Bottleneck, [3, 8, 36, 3], se=True, **kwargs)


@register_model("resnext", ResNet, fixed=("groups", "base_width"))
def resnext50_32x4d(**kwargs) -> ResNet:
    """ResNeXt-50 32x4d (Xie et al. 2017): 32 groups of width 4."""
    return ResNet(Bottleneck, [3, 4, 6, 3], groups=32, base_width=4, **kwargs)


@register_model("resnext", ResNet, fixed=("groups", "base_width"))
def resnext101_32x8d(**kwargs) -> ResNet:
    """ResNeXt-101 32x8d (Xie et al. 2017)."""
    return ResNet(Bottleneck, [3, 4, 23, 3], groups=32, base_width=8, **kwargs)


@register_model("resnext", ResNet, fixed=("groups", "base_width"))
def resnext101_64x4d(**kwargs) -> ResNet:
    """ResNeXt-101 64x4d (Xie et al. 2017)."""
    return ResNet(Bottleneck, [3, 4, 23, 3], groups=64, base_width=4, **kwargs)


@register_model("wide-resnet", ResNet, fixed=("base_width",))
def wide_resnet50_2(**kwargs) -> ResNet:
    """Wide ResNet-50-2 (Zagoruyko & Komodakis 2016): bottleneck twice as wide."""
    return ResNet(Bottleneck, [3, 4, 6, 3], base_width=128, **kwargs)


@register_model("wide-resnet", ResNet, fixed=("base_width",))
def wide_resnet101_2(**kwargs) -> ResNet:
    """Wide ResNet-101-2 (Zagoruyko & Komodakis 2016)."""
    return ResNet(Bottleneck, [3, 4, 23, 3], base_width=128, **kwargs)


@register_model("plain", ResNet, fixed=("residual",))
def plain18(**kwargs) -> ResNet:
    """Plain-18 (He et al. 2015, Table 2): ResNet-18 with every shortcut removed."""
    return ResNet(BasicBlock, [2, 2, 2, 2], residual=False, **kwargs)


@register_model("plain", ResNet, fixed=("residual",))
def plain34(**kwargs) -> ResNet:
    """Plain-34 (He et al. 2015, Figure 3 middle): ResNet-34 without shortcuts."""
    return ResNet(BasicBlock, [3, 4, 6, 3], residual=False, **kwargs)
