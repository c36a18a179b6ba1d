"""GoogLeNet (Szegedy et al. 2014, "Going Deeper with Convolutions") with BatchNorm.

An Inception module runs four branches side by side on the same input and concatenates
them: a 1x1 conv, 1x1 -> 3x3, 1x1 -> "5x5", and 3x3 max-pool -> 1x1. The 1x1 convs reduce
channels before the expensive convs, which keeps the 22-layer net at 6.6M parameters.

Two sizes:

* ``googlenet``: torchvision's ``googlenet(aux_logits=False)``, module for module (BN after
  every conv, eps 1e-3), so its state dicts load with ``strict=True``. The auxiliary
  classifiers are left out: they only help training and torchvision drops them at inference.
* ``googlenet_cifar``: for 32x32 input, as the widely used kuangliu/pytorch-cifar GoogLeNet:
  a 3x3 stem conv with 192 filters and no early downsampling, inception 3a/3b, max-pool,
  4a-4e, max-pool, 5a/5b, global pool, dropout, fc; its "5x5" branch is two 3x3 convs.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

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

# Table 1 of the paper: in, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
INCEPTION_CONFIGS: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "3a": (192, 64, 96, 128, 16, 32, 32),
    "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64),
    "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64),
    "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128),
    "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}


class ConvBNAct(nn.Module):
    """Conv (no bias: BN's shift replaces it), BatchNorm, activation; torchvision's BasicConv2d."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        *,
        act_layer: Callable[..., nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride=stride, padding=padding, bias=False)
        # eps 1e-3 as torchvision, whose GoogLeNet weights come from a TensorFlow port.
        self.bn = nn.BatchNorm2d(out_chs, eps=0.001)
        self.act = create_act(act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Inception(nn.Module):
    """Four parallel branches, concatenated along channels (the paper's Figure 2b).

    Args:
        in_chs, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj: a row of Table 1.
        conv_layer: builds ConvBNAct(in, out, kernel_size, padding=...).
        double_3x3: the "5x5" branch as two 3x3 convs (same receptive field, fewer weights;
            the CIFAR form). False gives torchvision's single 3x3, see below.
    """

    def __init__(
        self,
        in_chs: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        *,
        conv_layer: Callable[..., nn.Module] = ConvBNAct,
        double_3x3: bool = False,
    ) -> None:
        super().__init__()
        self.branch1 = conv_layer(in_chs, ch1x1, 1)
        self.branch2 = nn.Sequential(conv_layer(in_chs, ch3x3red, 1), conv_layer(ch3x3red, ch3x3, 3, padding=1))
        if double_3x3:
            self.branch3 = nn.Sequential(
                conv_layer(in_chs, ch5x5red, 1),
                conv_layer(ch5x5red, ch5x5, 3, padding=1),
                conv_layer(ch5x5, ch5x5, 3, padding=1),
            )
        else:
            # The paper's 5x5 conv is a 3x3 in torchvision (a known bug, pytorch/vision#906),
            # and its released weights were trained that way; we keep the 3x3 so they load.
            self.branch3 = nn.Sequential(conv_layer(in_chs, ch5x5red, 1), conv_layer(ch5x5red, ch5x5, 3, padding=1))
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            conv_layer(in_chs, pool_proj, 1),
        )
        self.out_chs = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], dim=1)


def _inception_blocks(names: Sequence[str], conv_layer, double_3x3: bool, width_mult: float = 1.0) -> list[Inception]:
    blocks, in_chs = [], None
    for n in names:
        widths = [max(1, int(round(c * width_mult))) for c in INCEPTION_CONFIGS[n]]
        if in_chs is not None:
            widths[0] = in_chs  # the previous block's concatenated output, exactly
        block = Inception(*widths, conv_layer=conv_layer, double_3x3=double_3x3)
        in_chs = block.out_chs
        blocks.append(block)
    return blocks


def init_googlenet(module: nn.Module) -> None:
    """torchvision's initialization: truncated N(0, 0.01) conv and linear weights, BN as identity.

    Linear biases keep PyTorch's default, as in torchvision.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class GoogLeNet(ClassifierModel):
    """GoogLeNet for ImageNet-sized input, torchvision-compatible (``aux_logits=False``).

    torchvision's pretrained weights expect ``transform_input=True``, i.e. input scaled to
    [-1, 1]; with this model normalize with mean = std = 0.5 for them instead of the
    ImageNet statistics of ``data_config``.

    Args:
        num_classes: classifier outputs (0: no classifier, the model returns pooled features).
        in_chans: input channels.
        activation: name, class or partial, used after every BN.
        drop_rate: dropout before the classifier (torchvision's 0.2).
        global_pool: avg, max or avgmax.
    """

    # torchvision's checkpoints carry the two auxiliary training heads; inference does not use them.
    checkpoint_ignore_prefixes = ("aux1.", "aux2.")

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        activation: LayerSpec = "relu",
        drop_rate: float = 0.2,
        global_pool: str = "avg",
    ) -> None:
        super().__init__()
        _check_common(num_classes, in_chans, drop_rate, drop_path_rate=0.0, width_mult=1.0)
        self.in_chans = in_chans
        conv = functools.partial(ConvBNAct, act_layer=get_act_layer(activation))

        # Stem: /4 with 192 channels; ceil_mode pools as torchvision (and Caffe before it).
        self.conv1 = conv(in_chans, 64, 7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = conv(64, 64, 1)
        self.conv3 = conv(64, 192, 3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        self.inception3a, self.inception3b = _inception_blocks(("3a", "3b"), conv, double_3x3=False)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        (
            self.inception4a, self.inception4b, self.inception4c, self.inception4d, self.inception4e,
        ) = _inception_blocks(("4a", "4b", "4c", "4d", "4e"), conv, double_3x3=False)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a, self.inception5b = _inception_blocks(("5a", "5b"), conv, double_3x3=False)

        self.feature_info = FeatureInfo(
            [
                FeatureEntry(192, 4, "conv3"),
                FeatureEntry(self.inception3b.out_chs, 8, "inception3b"),
                FeatureEntry(self.inception4e.out_chs, 16, "inception4e"),
                FeatureEntry(self.inception5b.out_chs, 32, "inception5b"),
            ]
        )
        # Parameter-free pool and dropout, then ``fc``: torchvision's parameter names.
        self._make_head(self.inception5b.out_chs, num_classes, global_pool, drop_rate)
        self.data_config = make_data_config(in_chans, 224, IMAGENET_MEAN, IMAGENET_STD)
        init_googlenet(self)

    def stages(self) -> list[Sequence[nn.Module]]:
        return [
            (self.conv1, self.maxpool1, self.conv2, self.conv3),
            (self.maxpool2, self.inception3a, self.inception3b),
            (self.maxpool3, self.inception4a, self.inception4b, self.inception4c, self.inception4d, self.inception4e),
            (self.maxpool4, self.inception5a, self.inception5b),
        ]


class CifarGoogLeNet(ClassifierModel):
    """GoogLeNet for 32x32 input (kuangliu/pytorch-cifar's layout, with BN and bias-free convs).

    The stem is a single 3x3 conv with 192 filters and no downsampling, so the inception
    stages run at 32x32, 16x16 and 8x8.

    Args:
        num_classes: classifier outputs (0: no classifier, the model returns pooled features).
        in_chans: input channels.
        activation: name, class or partial, used after every BN.
        drop_rate: dropout before the classifier (none by default, as kuangliu's net).
        global_pool: avg, max or avgmax.
        width_mult: multiplies every branch's width (0.25 gives an Inception net at the
            cost of a CIFAR ResNet-56, for comparisons at equal MACs).
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        activation: LayerSpec = "relu",
        drop_rate: float = 0.0,
        global_pool: str = "avg",
        width_mult: float = 1.0,
    ) -> None:
        super().__init__()
        _check_common(num_classes, in_chans, drop_rate, drop_path_rate=0.0, width_mult=width_mult)
        self.in_chans = in_chans
        conv = functools.partial(ConvBNAct, act_layer=get_act_layer(activation))
        stem = max(1, int(round(192 * width_mult)))

        self.conv1 = conv(in_chans, stem, 3, padding=1)
        names = ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")
        blocks = _inception_blocks(names, conv, double_3x3=True, width_mult=width_mult)
        self.inception3a, self.inception3b = blocks[0:2]
        self.maxpool3 = nn.MaxPool2d(3, stride=2, padding=1)
        self.inception4a, self.inception4b, self.inception4c, self.inception4d, self.inception4e = blocks[2:7]
        self.maxpool4 = nn.MaxPool2d(3, stride=2, padding=1)
        self.inception5a, self.inception5b = blocks[7:9]

        self.feature_info = FeatureInfo(
            [
                FeatureEntry(stem, 1, "conv1"),
                FeatureEntry(self.inception3b.out_chs, 1, "inception3b"),
                FeatureEntry(self.inception4e.out_chs, 2, "inception4e"),
                FeatureEntry(self.inception5b.out_chs, 4, "inception5b"),
            ]
        )
        self._make_head(self.inception5b.out_chs, num_classes, global_pool, drop_rate)
        self.data_config = make_data_config(in_chans, 32, CIFAR_MEAN, CIFAR_STD, crop_pct=1.0)
        init_googlenet(self)

    def stages(self) -> list[Sequence[nn.Module]]:
        return [
            (self.conv1,),
            (self.inception3a, self.inception3b),
            (self.maxpool3, self.inception4a, self.inception4b, self.inception4c, self.inception4d, self.inception4e),
            (self.maxpool4, self.inception5a, self.inception5b),
        ]


@register_model("inception", GoogLeNet)
def googlenet(**kwargs) -> GoogLeNet:
    """GoogLeNet with BN (Szegedy et al. 2014), torchvision layout without aux heads, 6.6M parameters."""
    return GoogLeNet(**kwargs)


@register_model("inception", CifarGoogLeNet)
def googlenet_cifar(**kwargs) -> CifarGoogLeNet:
    """GoogLeNet with BN for 32x32 input (kuangliu/pytorch-cifar layout), 6.2M parameters."""
    return CifarGoogLeNet(**kwargs)


@register_model("inception", CifarGoogLeNet)
def googlenet_small_cifar(**kwargs) -> CifarGoogLeNet:
    """GoogLeNet for 32x32 input at a quarter width: an Inception baseline at the cost of a ResNet-56."""
    kwargs.setdefault("width_mult", 0.25)
    return CifarGoogLeNet(**kwargs)
