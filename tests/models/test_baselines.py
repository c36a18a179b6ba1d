"""VGG and GoogLeNet baselines: torchvision parity and the CIFAR forms."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from resnetkit import create_model, list_models
from resnetkit.models.base import CIFAR_MEAN, IMAGENET_MEAN
from resnetkit.models.vgg import CifarVGG

VGG_NAMES = ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]
CIFAR_NAMES = [f"{n}_cifar" for n in VGG_NAMES] + ["googlenet_cifar"]


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _shapes(model: nn.Module) -> list[tuple[str, torch.Size]]:
    # Ordered names and shapes of parameters and buffers: what a strict load checks.
    return [(k, v.shape) for k, v in model.state_dict().items()]


def _torchvision(name: str) -> nn.Module:
    if name == "googlenet":
        return torchvision.models.googlenet(aux_logits=False, transform_input=False, init_weights=True)
    return getattr(torchvision.models, name)()


def test_registered_families():
    assert list_models(family="vgg") == VGG_NAMES
    assert list_models(family="vgg-cifar") == sorted(f"{n}_cifar" for n in VGG_NAMES)
    assert list_models(family="inception") == ["googlenet", "googlenet_cifar", "googlenet_small_cifar"]


def test_small_cifar_googlenet_costs_about_a_resnet56():
    from resnetkit import model_stats

    small, resnet56 = model_stats("googlenet_small_cifar"), model_stats("resnet56")
    assert 0.5 < small["macs"] / resnet56["macs"] < 1.0
    assert model_stats("googlenet_cifar")["params"] == 6_158_346  # width 1 is unchanged


@pytest.mark.parametrize("name", VGG_NAMES + ["googlenet"])
def test_structure_equals_torchvision(name):
    # On the meta device: names, shapes and counts without allocating (or initializing) 140M weights.
    with torch.device("meta"):
        ours, theirs = create_model(name), _torchvision(name)
    assert _params(ours) == _params(theirs)
    assert _shapes(ours) == _shapes(theirs)


def _calibrate_batchnorm(model: nn.Module, x: torch.Tensor) -> None:
    """Give every BN non-trivial affine parameters and running statistics.

    Fresh BNs (mean 0, var 1, scale 1, shift 0) hide a misplaced BN or a wrong eps; after one
    train-mode pass with cumulative averaging the running statistics are the batch's, so
    eval-mode outputs are well scaled and depend on every BN parameter.
    """
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()


@pytest.mark.parametrize("name", ["vgg16", "vgg16_bn", "googlenet"])
def test_torchvision_state_dict_loads_strictly_and_gives_same_outputs(name):
    torch.manual_seed(0)
    # VGG's adaptive 7x7 pool and GoogLeNet's global pool accept 64x64: same code path, 12x fewer FLOPs.
    x = torch.randn(2, 3, 64, 64)
    theirs = _torchvision(name)
    _calibrate_batchnorm(theirs, x)
    # Built on meta and loaded with assign=True: the same strict key and shape check as a copy,
    # without initializing another 138M weights only to overwrite them (about 2 s per VGG).
    with torch.device("meta"):
        ours = create_model(name)
    ours.load_state_dict(theirs.state_dict(), strict=True, assign=True)
    ours.eval()
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    # Guard: the tolerance below only means something if the outputs are not all near zero.
    assert expected.abs().max() > 1e-2
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def _features_and_named_outputs(backbone: nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The backbone's feature maps and, from the same pass, the outputs of the modules feature_info names."""
    names = backbone.feature_info.module_name()
    modules = dict(backbone.model.named_modules())
    seen: dict[str, torch.Tensor] = {}
    handles = [
        modules[n].register_forward_hook(lambda _m, _i, out, n=n: seen.__setitem__(n, out.clone())) for n in names
    ]
    try:
        with torch.no_grad():
            feats = backbone(x)
    finally:
        for h in handles:
            h.remove()
    return feats, [seen[n] for n in names]


@pytest.mark.parametrize("name", CIFAR_NAMES)
def test_cifar_forms(name):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    model = create_model(name, num_classes=7).eval()
    assert model.data_config.input_size == (3, 32, 32)
    assert model.data_config.mean == CIFAR_MEAN and model.data_config.crop_pct == 1.0
    with torch.no_grad():
        feats = model.forward_features(x)
        assert model.forward_head(feats).shape == (2, 7)
        assert model.forward_head(feats, pre_logits=True).shape == (2, model.num_features)

    backbone = create_model(name, features_only=True).eval()
    feats, named = _features_and_named_outputs(backbone, x[:1])
    assert [f.shape[1] for f in feats] == backbone.feature_info.channels()
    assert [32 // f.shape[-1] for f in feats] == backbone.feature_info.reduction()
    # feature_info's module names point at the modules whose outputs the stages return.
    assert all(torch.equal(f, h) for f, h in zip(feats, named))


def test_vgg_cifar_feature_levels_are_the_pools():
    model = create_model("vgg16_bn_cifar")
    info = model.feature_info
    assert info.channels() == [64, 128, 256, 512, 512]
    assert info.reduction() == [2, 4, 8, 16, 32]
    assert all(isinstance(model.get_submodule(n), nn.MaxPool2d) for n in info.module_name())
    # Stages partition `features`: every layer runs exactly once.
    assert sum(len(s) for s in model.stages()) == len(model.features)


def test_googlenet_features_only_imagenet_size():
    backbone = create_model("googlenet", features_only=True).eval()
    feats, named = _features_and_named_outputs(backbone, torch.randn(1, 3, 64, 64))
    assert backbone.feature_info.channels() == [192, 480, 832, 1024]
    assert [f.shape[1] for f in feats] == [192, 480, 832, 1024]
    assert [64 // f.shape[-1] for f in feats] == [4, 8, 16, 32]
    assert all(torch.equal(f, h) for f, h in zip(feats, named))


def test_vgg_imagenet_head_and_features():
    # Meta device: shapes only, no 130M-weight allocation.
    with torch.device("meta"):
        model = create_model("vgg11", drop_rate=0.25)
        backbone = create_model("vgg11", features_only=True)
        x = torch.randn(2, 3, 64, 64)
    assert model.data_config.input_size == (3, 224, 224) and model.data_config.mean == IMAGENET_MEAN
    assert [m.p for m in model.classifier if isinstance(m, nn.Dropout)] == [0.25, 0.25]
    assert [f.shape[1] for f in backbone(x)] == [64, 128, 256, 512, 512]
    assert [64 // f.shape[-1] for f in backbone(x)] == [2, 4, 8, 16, 32]

    feats = model.forward_features(x)
    assert feats.shape == (2, 512, 2, 2)
    assert model.forward_head(feats, pre_logits=True).shape == (2, 4096)
    assert model(x).shape == (2, 1000)
    assert model.get_classifier() is model.classifier[6]
    model.reset_classifier(5)
    assert model(x).shape == (2, 5) and model.get_classifier() is model.classifier[6]
    model.reset_classifier(0)
    assert isinstance(model.get_classifier(), nn.Identity)
    assert model(x).shape == (2, 4096)
    with pytest.raises(ValueError, match="global_pool"):
        model.reset_classifier(5, global_pool="max")


def test_cifar_head_reset():
    model = create_model("vgg11_cifar")
    x = torch.randn(2, 3, 32, 32)
    assert model.get_classifier().in_features == 512
    model.reset_classifier(0)
    assert model(x).shape == (2, 512)
    model.reset_classifier(100)
    assert model(x).shape == (2, 100)


# GoogLeNet-CIFAR runs at 16x16 here: its global pool takes any size, at a quarter of the cost.
@pytest.mark.parametrize("name,size", [("vgg11_bn_cifar", 32), ("googlenet_cifar", 16), ("googlenet", 64)])
def test_in_chans_1_and_wrong_channel_count(name, size):
    model = create_model(name, in_chans=1, num_classes=3).eval()
    assert model.data_config.input_size[0] == 1
    with torch.no_grad():
        assert model(torch.randn(1, 1, size, size)).shape == (1, 3)
    with pytest.raises(ValueError, match=r"expects 1 input channel\(s\), got 3"):
        model(torch.randn(2, 3, size, size))
    backbone = create_model(name, features_only=True)
    with pytest.raises(ValueError, match=r"expects 3 input channel\(s\), got 1"):
        backbone(torch.randn(1, 1, size, size))


def test_activation_option_reaches_every_layer():
    model = create_model("googlenet_cifar", activation="silu")
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    with torch.device("meta"):
        vgg = create_model("vgg11", activation="gelu")
    assert not any(isinstance(m, nn.ReLU) for m in vgg.modules())
    assert sum(isinstance(m, nn.GELU) for m in vgg.modules()) == 8 + 2  # 8 convs, 2 hidden Linears


def test_invalid_options_are_clear_errors():
    with pytest.raises(TypeError, match="use vgg16_cifar"):
        create_model("vgg16_bn_cifar", batch_norm=False)
    with pytest.raises(TypeError, match="batch_norm must be True or False"):
        create_model("vgg11_cifar", batch_norm="yes")
    with pytest.raises(ValueError, match="11, 13, 16, 19"):
        CifarVGG(12)
    with pytest.raises(ValueError, match="global pool"):
        create_model("googlenet_cifar", global_pool="median")
    with pytest.raises(ValueError, match="drop_rate"):
        create_model("vgg11_cifar", drop_rate=1.0)
    with pytest.raises(ValueError, match="unknown activation"):
        create_model("googlenet_cifar", activation="swishy")
