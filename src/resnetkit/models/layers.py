"""Layer factories and small building blocks shared by every model family.

Activations and norms are chosen by name, by class or by a partial, as in timm's
``create_act`` / ``create_norm``: ``activation="silu"``, ``activation=nn.SiLU`` and
``activation=functools.partial(nn.LeakyReLU, 0.2)`` all work.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Union

import torch
import torch.nn.functional as F
from torch import nn

LayerSpec = Union[str, type, Callable[..., nn.Module], None]

_ACTIVATIONS: dict[str, Callable[..., nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": functools.partial(nn.LeakyReLU, 0.01),
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "mish": nn.Mish,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "prelu": nn.PReLU,
    "hardswish": nn.Hardswish,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "identity": nn.Identity,
}
# Activations whose constructor accepts ``inplace``; in-place saves one activation copy per block.
_INPLACE = (nn.ReLU, nn.LeakyReLU, nn.SiLU, nn.Mish, nn.ELU, nn.SELU, nn.Hardswish)

NORM_NAMES = ("batch", "group", "layer", "instance", "none")


def _describe(spec: object) -> str:
    return repr(spec) if isinstance(spec, str) else type(spec).__name__


def get_act_layer(activation: LayerSpec) -> Callable[..., nn.Module]:
    """Return a zero-argument-friendly constructor for an activation.

    ``activation`` is a name (see :data:`ACTIVATION_NAMES`), an ``nn.Module`` class, or a
    callable (for example ``functools.partial``) returning a module.
    """
    if activation is None:
        return nn.Identity
    if isinstance(activation, str):
        key = activation.lower().replace("-", "_")
        if key not in _ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; allowed names: {', '.join(ACTIVATION_NAMES)} "
                "(or pass an nn.Module class or a functools.partial)"
            )
        return _ACTIVATIONS[key]
    if callable(activation):
        return activation
    raise TypeError(
        f"activation must be a name, an nn.Module class or a callable, got {_describe(activation)}"
    )


ACTIVATION_NAMES = tuple(_ACTIVATIONS)


def create_act(activation: LayerSpec, inplace: bool = True) -> nn.Module:
    """Instantiate an activation, in place where the module supports it."""
    factory = get_act_layer(activation)
    base = factory.func if isinstance(factory, functools.partial) else factory
    if inplace and isinstance(base, type) and issubclass(base, _INPLACE):
        try:
            return factory(inplace=True)
        except TypeError:
            pass
    module = factory()
    if not isinstance(module, nn.Module):
        raise TypeError(f"activation factory {factory!r} returned {type(module).__name__}, not an nn.Module")
    return module


def _group_count(channels: int, max_groups: int = 32) -> int:
    # GroupNorm needs a divisor of the channel count; 32 groups is the paper's default
    # (Wu & He 2018), fewer when the layer is narrow (CIFAR nets start at 16 channels).
    return math.gcd(channels, max_groups)


def get_norm_layer(norm: LayerSpec) -> Callable[[int], nn.Module]:
    """Return a constructor ``f(num_channels) -> nn.Module`` for a normalization layer.

    Names: ``batch`` (BatchNorm2d), ``group`` (GroupNorm, 32 groups or the largest divisor),
    ``layer`` (GroupNorm with one group: normalizes over C, H, W per sample), ``instance``
    (InstanceNorm2d with affine parameters), ``none`` (Identity). A class or partial is
    called with the channel count as its only positional argument.
    """
    if norm is None:
        return lambda channels: nn.Identity()
    if isinstance(norm, str):
        key = norm.lower()
        if key in ("batch", "batchnorm", "bn"):
            return nn.BatchNorm2d
        if key in ("group", "groupnorm", "gn"):
            return lambda channels: nn.GroupNorm(_group_count(channels), channels)
        if key in ("layer", "layernorm", "ln"):
            return lambda channels: nn.GroupNorm(1, channels)
        if key in ("instance", "instancenorm", "in"):
            return lambda channels: nn.InstanceNorm2d(channels, affine=True)
        if key in ("none", "identity"):
            return lambda channels: nn.Identity()
        raise ValueError(f"unknown norm {norm!r}; allowed names: {', '.join(NORM_NAMES)} (or pass a class or partial)")
    if callable(norm):
        return norm
    raise TypeError(f"norm must be a name, a class or a callable, got {_describe(norm)}")


def norm_has_bias(norm_factory: Callable[[int], nn.Module]) -> bool:
    """True when convolutions before this norm need their own bias (the norm has no shift)."""
    probe = norm_factory(8)
    return isinstance(probe, nn.Identity)


def drop_path(x: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth (Huang et al. 2016): drop a residual branch per sample."""
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask.div_(keep)


class DropPath(nn.Module):
    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop path probability must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


def make_divisible(value: float, divisor: int = 8) -> int:
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


class SEModule(nn.Module):
    """Squeeze-and-Excitation (Hu et al. 2018), with timm's parameter names (fc1, fc2)."""

    def __init__(self, channels: int, reduction: int = 16, activation: LayerSpec = "relu") -> None:
        super().__init__()
        hidden = make_divisible(channels / reduction, 8)
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1, bias=True)
        self.act = create_act(activation)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        scale = self.fc2(self.act(self.fc1(scale)))
        return x * scale.sigmoid()


POOL_NAMES = ("avg", "max", "avgmax")


class GlobalPool(nn.Module):
    """Global pooling to a flat vector: ``avg``, ``max`` or ``avgmax`` (mean of the two)."""

    def __init__(self, pool_type: str = "avg") -> None:
        super().__init__()
        if pool_type not in POOL_NAMES:
            raise ValueError(f"unknown global pool {pool_type!r}; allowed: {', '.join(POOL_NAMES)}")
        self.pool_type = pool_type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool_type == "avg":
            return x.mean((2, 3))
        if self.pool_type == "max":
            return x.amax((2, 3))
        return 0.5 * (x.mean((2, 3)) + x.amax((2, 3)))

    def extra_repr(self) -> str:
        return f"pool_type={self.pool_type!r}"


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(
        in_planes, out_planes, kernel_size=3, stride=stride, padding=dilation,
        groups=groups, bias=bias, dilation=dilation,
    )


def conv1x1(in_planes: int, out_planes: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=bias)


def init_conv_and_norm(module: nn.Module) -> None:
    """He initialization (fan_out, as torchvision) for convs; norms start as identity."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ShortcutA(nn.Module):
    """Option A shortcut of He et al. 2015, section 4.2: subsample, then zero-pad channels.

    Parameter-free, so the CIFAR nets keep the paper's parameter counts (Table 6).
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        if out_planes < in_planes:
            raise ValueError("option A shortcut cannot reduce channels")
        self.stride = stride
        self.pad = out_planes - in_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad:
            front = self.pad // 2
            x = F.pad(x, (0, 0, 0, 0, front, self.pad - front))
        return x
