"""ResNet-9 for fast CIFAR training (David Page, "How to train your ResNet", 2018; davidcpage/cifar10-fast).

A prep conv, then three stages of conv -> max-pool -> BN -> activation at halving
resolutions, with a residual block of two conv-BN-activation layers after the first and
the third; global max pooling, a linear classifier and a fixed scale on the logits (Page's
0.125: large logits early in training slow it down). Page's widths (64, 128, 256, 512)
reach 94% on CIFAR-10 in 24 epochs on a GPU; the smaller named sizes fit an hour of a
2-core CPU (BENCHMARKS.md says what each costs and reaches).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .base import CIFAR_MEAN, CIFAR_STD, ClassifierModel, FeatureEntry, FeatureInfo, make_data_config
from .layers import LayerSpec, conv3x3, create_act, get_norm_layer, init_conv_and_norm, norm_has_bias
from .registry import register_model
from .resnet import _check_common, _scaled


class ConvBlock(nn.Module):
    """conv 3x3 -> (max-pool 2) -> norm -> activation: Page's order, the pool before the norm."""

    def __init__(self, in_chs: int, out_chs: int, pool: bool, norm_layer, activation: LayerSpec, bias: bool) -> None:
        super().__init__()
        self.conv = conv3x3(in_chs, out_chs, bias=bias)
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.bn = norm_layer(out_chs)
        self.act = create_act(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = self.pool(x)
        x = self.bn(x)
        return self.act(x)


class Residual(nn.Module):
    """x + block2(block1(x)): two conv-norm-activation layers around an identity shortcut."""

    def __init__(self, chs: int, norm_layer, activation: LayerSpec, bias: bool) -> None:
        super().__init__()
        self.res1 = ConvBlock(chs, chs, False, norm_layer, activation, bias)
        self.res2 = ConvBlock(chs, chs, False, norm_layer, activation, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res2(self.res1(x))


class ResNet9(ClassifierModel):
    """Page's ResNet-9.

    Args:
        widths: channels of the prep conv and the three stages (Page: 64, 128, 256, 512). A prep
            width of 0 leaves the prep conv out: the first stage takes the input (airbench's net,
            whose whitening layer is the stem).
        residual_stages: which stages (1-3) get a residual block (Page: 1 and 3).
        double_conv: each stage's pooled conv is followed by a second conv -> norm -> activation
            at the pooled resolution (airbench's ConvGroup, Jordan 2024).
        logit_scale: the fixed factor on the logits (Page: 0.125).
        global_pool: ``max`` (Page) or ``avg``.
        num_classes, in_chans, activation, norm, drop_rate, width_mult: as the other models.
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        widths: Sequence[int] = (64, 128, 256, 512),
        residual_stages: Sequence[int] = (1, 3),
        activation: LayerSpec = "relu",
        norm: LayerSpec = "batch",
        logit_scale: float = 0.125,
        global_pool: str = "max",
        double_conv: bool = False,
        drop_rate: float = 0.0,
        width_mult: float = 1.0,
    ) -> None:
        super().__init__()
        _check_common(num_classes, in_chans, drop_rate, 0.0, width_mult)
        widths = tuple(widths)
        def is_count(w, minimum: int) -> bool:
            return isinstance(w, int) and not isinstance(w, bool) and w >= minimum

        if len(widths) != 4 or not is_count(widths[0], 0) or not all(is_count(w, 1) for w in widths[1:]):
            raise ValueError(f"widths must be 4 channel counts (prep, >= 0 where 0 is none, and three stages >= 1), "
                             f"got {widths!r}")
        if not isinstance(double_conv, bool):
            raise TypeError(f"double_conv must be true or false, got {double_conv!r}")
        stages = tuple(residual_stages)
        if any(s not in (1, 2, 3) for s in stages):
            raise ValueError(f"residual_stages must name stages 1, 2 or 3, got {stages!r}")
        if not logit_scale > 0:
            raise ValueError(f"logit_scale must be > 0, got {logit_scale}")
        self.in_chans = in_chans
        norm_layer = get_norm_layer(norm)
        bias = norm_has_bias(norm_layer)
        # Without a prep conv (width 0) the first stage takes the input's channels.
        chs = [_scaled(w, width_mult) if w else in_chans for w in widths]
        self.prep = ConvBlock(in_chans, chs[0], False, norm_layer, activation, bias) if widths[0] else None
        for i in (1, 2, 3):
            layer = [ConvBlock(chs[i - 1], chs[i], True, norm_layer, activation, bias)]
            if double_conv:
                layer.append(ConvBlock(chs[i], chs[i], False, norm_layer, activation, bias))
            if i in stages:
                layer.append(Residual(chs[i], norm_layer, activation, bias))
            setattr(self, f"layer{i}", nn.Sequential(*layer))
        self.logit_scale = float(logit_scale)
        prep_entry = [FeatureEntry(chs[0], 1, "prep")] if self.prep is not None else []
        self.feature_info = FeatureInfo(prep_entry + [FeatureEntry(chs[i], 2**i, f"layer{i}") for i in (1, 2, 3)])
        self._make_head(chs[3], num_classes, global_pool, drop_rate)
        self.data_config = make_data_config(in_chans, 32, CIFAR_MEAN, CIFAR_STD, crop_pct=1.0)
        init_conv_and_norm(self)

    def stages(self):
        prep = [(self.prep,)] if self.prep is not None else []
        return prep + [(self.layer1,), (self.layer2,), (self.layer3,)]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.global_pool(x))
        return x if pre_logits else self.fc(x) * self.logit_scale


@register_model("resnet9", ResNet9)
def resnet9(**kwargs) -> ResNet9:
    """ResNet-9 of Page (2018), widths 64-128-256-512: 6.6M parameters, 0.38G MACs."""
    return ResNet9(**kwargs)


@register_model("resnet9", ResNet9, fixed=("widths",))
def resnet9_m(**kwargs) -> ResNet9:
    """ResNet-9 at widths 32-64-256-256 (0.13G MACs): ten CIFAR-10 epochs in about an hour of 2 CPU cores."""
    return ResNet9(widths=(32, 64, 256, 256), **kwargs)


@register_model("resnet9", ResNet9, fixed=("widths",))
def resnet9_s(**kwargs) -> ResNet9:
    """ResNet-9 at widths 32-64-128-128 (0.07G MACs): ten CIFAR-10 epochs in about half an hour of 2 CPU cores."""
    return ResNet9(widths=(32, 64, 128, 128), **kwargs)


@register_model("resnet9", ResNet9, fixed=("widths", "double_conv", "residual_stages"))
def resnet9_airbench(**kwargs) -> ResNet9:
    """airbench94's net (Jordan 2024) in this family: no prep conv, stages of two convs at widths 64-256-256.

    No residual block; 118M MACs behind its 2x2 whitening layer, as airbench counts (134M without).
    """
    return ResNet9(widths=(0, 64, 256, 256), double_conv=True, residual_stages=(), **kwargs)
