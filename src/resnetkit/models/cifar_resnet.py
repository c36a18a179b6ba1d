"""The CIFAR-10 ResNets of He et al. 2015, section 4.2, and their plain counterparts.

A 3x3 conv with 16 filters, then three stages of n BasicBlocks on 32x32, 16x16 and 8x8
maps with 16, 32 and 64 filters: 6n+2 weighted layers. Shortcuts are option A (identity,
zero-padded channels, no parameters) by default, which gives the parameter counts of the
paper's Table 6; option B projects with a 1x1 conv where the shape changes.
"""

from __future__ import annotations

from torch import nn

from .base import CIFAR_MEAN, CIFAR_STD, ClassifierModel, FeatureEntry, FeatureInfo, make_data_config
from .layers import LayerSpec, ShortcutA, conv1x1, create_act, get_act_layer, get_norm_layer, init_conv_and_norm, norm_has_bias
from .registry import register_model
from .resnet import (
    BasicBlock,
    _check_common,
    _check_shortcut_options,
    _drop_path_rates,
    _scaled,
    init_residual_branches,
)

SHORTCUT_OPTIONS = ("A", "B")


class CifarResNet(ClassifierModel):
    """ResNet for 32x32 input (6n+2 layers, 16-32-64 channels).

    Args:
        depth: 6n+2 (20, 32, 44, 56, 110, 1202, ...).
        shortcut: ``"A"`` (zero-padded identity) or ``"B"`` (projection where shapes change).
        residual: False removes the shortcuts (the paper's plain nets).
        widths: channels of the three stages (16, 32, 64 in the paper).
        Other arguments as :class:`resnetkit.models.resnet.ResNet`.
    """

    def __init__(
        self,
        depth: int,
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        activation: LayerSpec = "relu",
        norm: LayerSpec = "batch",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        width_mult: float = 1.0,
        global_pool: str = "avg",
        shortcut: str = "A",
        widths: tuple[int, int, int] = (16, 32, 64),
        zero_init_last: bool = False,
        residual: bool = True,
    ) -> None:
        super().__init__()
        _check_common(num_classes, in_chans, drop_rate, drop_path_rate, width_mult)
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"a CIFAR ResNet has 6n+2 layers (20, 32, 44, 56, 110, 1202, ...), got depth={depth}")
        shortcut = str(shortcut).upper()
        if shortcut not in SHORTCUT_OPTIONS:
            raise ValueError(f"unknown shortcut option {shortcut!r}; allowed: 'A' (zero-padded identity), 'B' (projection)")
        _check_shortcut_options(residual, zero_init_last, drop_path_rate, **{"shortcut='B'": shortcut == "B"})
        n = (depth - 2) // 6
        self.in_chans = in_chans
        self.depth = depth
        act_layer = get_act_layer(activation)
        norm_layer = get_norm_layer(norm)
        has_norm = not norm_has_bias(norm_layer)
        conv_bias = not has_norm
        chs = [_scaled(w, width_mult) for w in widths]

        self.conv1 = nn.Conv2d(in_chans, chs[0], kernel_size=3, padding=1, bias=conv_bias)
        self.bn1 = norm_layer(chs[0])
        self.act1 = create_act(act_layer)
        drop_paths = _drop_path_rates(drop_path_rate, [n, n, n])
        inplanes, stages = chs[0], []
        for i, planes in enumerate(chs):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                downsample = None
                if residual and (stride != 1 or inplanes != planes):
                    if shortcut == "A":
                        downsample = ShortcutA(inplanes, planes, stride)
                    else:
                        downsample = nn.Sequential(conv1x1(inplanes, planes, stride, bias=conv_bias), norm_layer(planes))
                blocks.append(
                    BasicBlock(
                        inplanes, planes, stride, downsample, norm_layer=norm_layer, act_layer=act_layer,
                        conv_bias=conv_bias, drop_path=drop_paths[i][j], residual=residual,
                    )
                )
                inplanes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages

        self.feature_info = FeatureInfo(
            [FeatureEntry(chs[0], 1, "act1")] + [FeatureEntry(c, 2**i, f"layer{i + 1}") for i, c in enumerate(chs)]
        )
        self._make_head(chs[-1], num_classes, global_pool, drop_rate)
        self.data_config = make_data_config(in_chans, 32, CIFAR_MEAN, CIFAR_STD, crop_pct=1.0)
        init_conv_and_norm(self)
        init_residual_branches(self, zero_init_last, has_norm)

    def stages(self):
        return [(self.conv1, self.bn1, self.act1), (self.layer1,), (self.layer2,), (self.layer3,)]


def _cifar(depth: int, kwargs: dict, residual: bool = True) -> CifarResNet:
    return CifarResNet(depth, residual=residual, **kwargs)


@register_model("cifar-resnet", CifarResNet, fixed=("residual",))
def resnet20(**kwargs) -> CifarResNet:
    """CIFAR ResNet-20 (He et al. 2015, 4.2): n=3, 0.27M parameters."""
    return _cifar(20, kwargs)


@register_model("cifar-resnet", CifarResNet, fixed=("residual",))
def resnet32(**kwargs) -> CifarResNet:
    """CIFAR ResNet-32: n=5, 0.46M parameters."""
    return _cifar(32, kwargs)


@register_model("cifar-resnet", CifarResNet, fixed=("residual",))
def resnet44(**kwargs) -> CifarResNet:
    """CIFAR ResNet-44: n=7, 0.66M parameters."""
    return _cifar(44, kwargs)


@register_model("cifar-resnet", CifarResNet, fixed=("residual",))
def resnet56(**kwargs) -> CifarResNet:
    """CIFAR ResNet-56: n=9, 0.85M parameters."""
    return _cifar(56, kwargs)


@register_model("cifar-resnet", CifarResNet, fixed=("residual",))
def resnet110(**kwargs) -> CifarResNet:
    """CIFAR ResNet-110: n=18, 1.7M parameters."""
    return _cifar(110, kwargs)


@register_model("cifar-resnet", CifarResNet, fixed=("residual",))
def resnet1202(**kwargs) -> CifarResNet:
    """CIFAR ResNet-1202: n=200, 19.4M parameters."""
    return _cifar(1202, kwargs)


@register_model("plain", CifarResNet, fixed=("residual",))
def plain20(**kwargs) -> CifarResNet:
    """Plain-20 for CIFAR (He et al. 2015, Figure 6 left): ResNet-20 without shortcuts."""
    return _cifar(20, kwargs, residual=False)


@register_model("plain", CifarResNet, fixed=("residual",))
def plain32(**kwargs) -> CifarResNet:
    """Plain-32 for CIFAR."""
    return _cifar(32, kwargs, residual=False)


@register_model("plain", CifarResNet, fixed=("residual",))
def plain44(**kwargs) -> CifarResNet:
    """Plain-44 for CIFAR."""
    return _cifar(44, kwargs, residual=False)


@register_model("plain", CifarResNet, fixed=("residual",))
def plain56(**kwargs) -> CifarResNet:
    """Plain-56 for CIFAR (the net that trains worse than Plain-20 in Figure 1)."""
    return _cifar(56, kwargs, residual=False)


@register_model("plain", CifarResNet, fixed=("residual",))
def plain110(**kwargs) -> CifarResNet:
    """Plain-110 for CIFAR."""
    return _cifar(110, kwargs, residual=False)
