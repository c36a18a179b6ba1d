"""The keyword-spotting ResNets of Tang & Lin 2018, "Deep Residual Learning for
Small-Footprint Keyword Spotting" (ICASSP 2018), as in their Honk code.

A 3x3 conv with 45 (19 in the narrow nets) feature maps, optional average pooling, then
pairs of 3x3 convs with an identity shortcut around each pair, global average pooling and
one linear layer. Every conv is bias-free and followed by ReLU, then by a BatchNorm
*without* affine parameters (the paper's Figure 1 and Honk's ``SpeechResModel``): the
network has no shift or scale parameters besides the convs and the classifier, which is
what gives the small parameter counts of the paper's Table 1. The shortcut adds the
pre-normalization sums, as Honk does.

- res8: 6 layers after the stem, average pooling after the stem over 4 frames and 3
  frequency bins (Honk's ``res_pool=(4, 3)`` in its (time, frequency) layout; ``(3, 4)`` here).
  The stem's 40 x 101 map becomes 13 x 25.
- res15: 13 layers, no pooling, dilation ``2 ** floor(i / 3)`` in layer ``i + 1`` so the
  receptive field covers the whole 1 s input; the 13th layer has no shortcut.
- res26: 24 layers, 2x2 average pooling after the stem (20 x 50).

The paper fixes the activation (ReLU), the norm (BatchNorm without affine parameters), the
widths and the depths, so these models take neither ``activation``, ``norm``,
``drop_path_rate``, ``width_mult`` nor ``zero_init_last``: only ``num_classes``, ``in_chans``,
``drop_rate`` and ``global_pool``.

Input is ``(N, 1, 40, 101)``: 40 MFCCs (or log-mel bands) of 101 frames, 10 ms apart, i.e.
(frequency, time). Honk feeds ``(N, 1, 101, 40)``, (time, frequency); every conv is 3x3 with
symmetric padding and dilation, so only the pooling shape depends on the layout.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .base import ClassifierModel, DataConfig, FeatureEntry, FeatureInfo
from .layers import init_conv_and_norm
from .registry import register_model
from .resnet import _check_common


class DilatedConv2d(nn.Conv2d):
    """A dilated Conv2d that runs in the standard (NCHW) memory format on the CPU.

    PyTorch's CPU (oneDNN) kernel returns NaN weight gradients for dilated convolutions in
    bf16 when the input or the weight is channels-last (seen with torch 2.14 on AVX-512 BF16
    CPUs; fp32 and dilation 1 are fine), which the trainer's defaults (bf16 autocast,
    channels-last) would hit at the first step of res15. The copy costs little next to
    the convolution.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu":
            return self._conv_forward(x.contiguous(), self.weight.contiguous(), self.bias)
        return super().forward(x)


def _conv(in_chs: int, out_chs: int, dilation: int = 1) -> nn.Conv2d:
    # "Same" padding at every dilation keeps the 40 x 101 map through all layers (res15).
    conv = DilatedConv2d if dilation > 1 else nn.Conv2d
    return conv(in_chs, out_chs, kernel_size=3, padding=dilation, dilation=dilation, bias=False)


def _norm(channels: int) -> nn.BatchNorm2d:
    # No affine parameters, as in the paper and Honk: the next conv can absorb scale and shift.
    return nn.BatchNorm2d(channels, affine=False)


class KWSResidualBlock(nn.Module):
    """Two conv-ReLU-BN layers with an identity shortcut (Tang & Lin, Figure 1).

    The block takes and returns the *un-normalized* residual stream ``s`` (Honk's ``old_x``);
    ``norm_in`` is the BatchNorm that the previous block applied to its sum before the next
    conv (Identity for the first block, whose input is the stem's ReLU output).
    """

    def __init__(self, channels: int, dilations: tuple[int, int], first: bool) -> None:
        super().__init__()
        self.norm_in = nn.Identity() if first else _norm(channels)
        self.conv1 = _conv(channels, channels, dilations[0])
        self.act1 = nn.ReLU(inplace=True)
        self.bn1 = _norm(channels)
        self.conv2 = _conv(channels, channels, dilations[1])
        self.act2 = nn.ReLU(inplace=True)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.act1(self.conv1(self.norm_in(s))))
        return self.act2(self.conv2(x)) + s


class KWSTail(nn.Module):
    """The normalization of the last sum and, for an odd layer count (res15), the last conv-ReLU-BN."""

    def __init__(self, channels: int, extra_dilation: int | None) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.conv = _conv(channels, channels, extra_dilation) if extra_dilation is not None else None
        self.act = nn.ReLU(inplace=True) if extra_dilation is not None else None
        self.bn = _norm(channels) if extra_dilation is not None else None

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        x = self.norm(s)
        if self.conv is not None:
            x = self.bn(self.act(self.conv(x)))
        return x


class KWSResNet(ClassifierModel):
    """Tang & Lin's keyword-spotting ResNet.

    Args:
        num_layers: convs after the stem (6 for res8, 13 for res15, 24 for res26).
        num_maps: feature maps of every layer (45, or 19 in the narrow nets).
        pool: average pooling after the stem as (frequency, time) sizes, or None. Honk's
            configs give (time, frequency): swap them.
        dilation: res15's exponentially growing dilation ``2 ** floor(i / 3)``.
        num_classes: 12 (Speech Commands: 10 words, unknown, silence) by default.
        in_chans: 1 (one feature image); more for stacked features.
        drop_rate: dropout before the classifier (not in the paper).
        global_pool: avg (the paper), max or avgmax.
    """

    # Said by create_model when a user passes an option this family does not take.
    options_note = "Tang & Lin 2018 fix ReLU, affine-free BatchNorm, the widths and the depths"

    def __init__(
        self,
        num_layers: int,
        num_maps: int,
        *,
        pool: tuple[int, int] | None = None,
        dilation: bool = False,
        num_classes: int = 12,
        in_chans: int = 1,
        drop_rate: float = 0.0,
        global_pool: str = "avg",
    ) -> None:
        super().__init__()
        _check_common(num_classes, in_chans, drop_rate, 0.0, 1.0)
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 2:
            raise ValueError(f"num_layers must be an integer >= 2, got {num_layers!r}")
        if isinstance(num_maps, bool) or not isinstance(num_maps, int) or num_maps < 1:
            raise ValueError(f"num_maps must be an integer >= 1, got {num_maps!r}")
        if pool is not None and (len(pool) != 2 or any(int(p) < 1 for p in pool)):
            raise ValueError(f"pool must be None or (frequency, time) sizes >= 1, got {pool!r}")
        self.in_chans = in_chans
        self.num_layers = num_layers
        # Honk: conv i (1-based) has dilation 2 ** ((i - 1) // 3) in res15, 1 elsewhere.
        dilations = [2 ** (i // 3) if dilation else 1 for i in range(num_layers)]

        self.conv0 = _conv(in_chans, num_maps)
        self.act0 = nn.ReLU(inplace=True)
        self.pool = nn.AvgPool2d(tuple(pool)) if pool is not None else nn.Identity()
        pairs = num_layers // 2
        self.blocks = nn.Sequential(
            *[KWSResidualBlock(num_maps, (dilations[2 * k], dilations[2 * k + 1]), first=k == 0) for k in range(pairs)]
        )
        self.tail = KWSTail(num_maps, dilations[-1] if num_layers % 2 else None)

        # Reductions are along time (the last axis), which is what a feature map's width means:
        # 4 for res8 (whose frequency axis shrinks by 3), 2 for res26.
        reduction = int(pool[1]) if pool is not None else 1
        stem_module = "pool" if pool is not None else "act0"
        self.feature_info = FeatureInfo(
            [FeatureEntry(num_maps, reduction, stem_module), FeatureEntry(num_maps, reduction, "tail")]
        )
        self._make_head(num_maps, num_classes, global_pool, drop_rate)
        # Features arrive normalized (per utterance or with data set statistics) from the
        # audio front end, so the model's own normalization is the identity.
        self.data_config = DataConfig(input_size=(in_chans, 40, 101), mean=(0.0,) * in_chans,
                                      std=(1.0,) * in_chans, interpolation="bilinear", crop_pct=1.0)
        init_conv_and_norm(self)

    def stages(self) -> list[Sequence[nn.Module]]:
        return [(self.conv0, self.act0, self.pool), (self.blocks, self.tail)]


# -- registered builders (Tang & Lin 2018, Table 1; Honk's configurations) ------------------------


@register_model("kws", KWSResNet, fixed=("pool", "dilation"))
def res8(**kwargs) -> KWSResNet:
    """res8 (Tang & Lin 2018): 6 layers, 45 maps, average pooling 4 in time x 3 in frequency; 110K parameters."""
    # Honk's res_pool=(4, 3) is (time, frequency); this model's input is (frequency, time).
    return KWSResNet(6, 45, pool=(3, 4), dilation=False, **kwargs)


@register_model("kws", KWSResNet, fixed=("pool", "dilation"))
def res8_narrow(**kwargs) -> KWSResNet:
    """res8-narrow (Tang & Lin 2018): res8 with 19 maps; 19.9K parameters."""
    return KWSResNet(6, 19, pool=(3, 4), dilation=False, **kwargs)


@register_model("kws", KWSResNet, fixed=("pool", "dilation"))
def res15(**kwargs) -> KWSResNet:
    """res15 (Tang & Lin 2018): 13 dilated layers, 45 maps, no pooling; 238K parameters."""
    return KWSResNet(13, 45, pool=None, dilation=True, **kwargs)


@register_model("kws", KWSResNet, fixed=("pool", "dilation"))
def res15_narrow(**kwargs) -> KWSResNet:
    """res15-narrow (Tang & Lin 2018): res15 with 19 maps; 42.6K parameters."""
    return KWSResNet(13, 19, pool=None, dilation=True, **kwargs)


@register_model("kws", KWSResNet, fixed=("pool", "dilation"))
def res26(**kwargs) -> KWSResNet:
    """res26 (Tang & Lin 2018): 24 layers, 45 maps, 2x2 average pooling; 438K parameters."""
    return KWSResNet(24, 45, pool=(2, 2), dilation=False, **kwargs)


@register_model("kws", KWSResNet, fixed=("pool", "dilation"))
def res26_narrow(**kwargs) -> KWSResNet:
    """res26-narrow (Tang & Lin 2018): res26 with 19 maps; 78.4K parameters."""
    return KWSResNet(24, 19, pool=(2, 2), dilation=False, **kwargs)
