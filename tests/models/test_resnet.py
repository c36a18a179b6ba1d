"""ResNet families: torchvision parity, the paper's sizes, and every constructor option."""

from __future__ import annotations

import functools

import pytest
import torch
import torchvision
from torch import nn

from resnetkit import count_parameters, create_model
from resnetkit.models.resnet import Bottleneck


def _params(model: nn.Module) -> int:
    return count_parameters(model)


@pytest.mark.parametrize(
    "name",
    ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "wide_resnet50_2"],
)
def test_parameter_counts_equal_torchvision(name):
    with torch.device("meta"):
        ours = create_model(name)
        theirs = getattr(torchvision.models, name)()
    assert _params(ours) == _params(theirs)
    # Same names and shapes, so torchvision state dicts load with strict=True.
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}


# He et al. 2015, Table 6 (in millions).
PAPER_TABLE6 = {"resnet20": 0.27, "resnet32": 0.46, "resnet44": 0.66, "resnet56": 0.85, "resnet110": 1.7, "resnet1202": 19.4}


@pytest.mark.parametrize("name,millions", PAPER_TABLE6.items())
def test_cifar_resnets_match_paper_table6(name, millions):
    with torch.device("meta"):
        n = _params(create_model(name)) / 1e6
    assert round(n, 2 if millions < 1 else 1) == millions


def test_plain_nets_have_the_same_weights_without_shortcuts():
    with torch.device("meta"):
        assert _params(create_model("plain20")) == _params(create_model("resnet20"))
        # Plain-34 has no projection shortcuts, so it is smaller than ResNet-34 by exactly those.
        r34, p34 = create_model("resnet34"), create_model("plain34")
    proj = sum(p.numel() for n, p in r34.named_parameters() if "downsample" in n)
    assert _params(p34) == _params(r34) - proj


def test_plain_block_really_has_no_shortcut():
    torch.manual_seed(0)
    plain = create_model("plain20").eval()
    res = create_model("resnet20").eval()
    res.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 32, 32)
    assert not torch.allclose(plain(x), res(x))


def test_shortcut_option_b_adds_projections():
    with torch.device("meta"):
        a = _params(create_model("resnet20"))
        b = _params(create_model("resnet20", shortcut="B"))
    # Two projections (16->32, 32->64), each a 1x1 conv and a BN.
    assert b - a == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)


def _conv_geometry(model: nn.Module) -> dict[str, tuple]:
    return {n: (m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.groups)
            for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


@pytest.mark.parametrize("depth", [50, 101, 152])
def test_v1_differs_from_v15_only_in_where_the_stride_sits(depth):
    with torch.device("meta"):
        v1 = _conv_geometry(create_model(f"resnet{depth}_v1"))
        v15 = _conv_geometry(create_model(f"resnet{depth}"))
    assert v1.keys() == v15.keys()
    moved = sorted(n for n in v1 if v1[n] != v15[n])
    # The first block of stages 2-4: v1 (the paper) strides in the 1x1 reduce, v1.5 in the 3x3.
    assert moved == [f"layer{i}.0.conv{j}" for i in (2, 3, 4) for j in (1, 2)]
    for i in (2, 3, 4):
        assert v1[f"layer{i}.0.conv1"][3] == (2, 2) and v1[f"layer{i}.0.conv2"][3] == (1, 1)
        assert v15[f"layer{i}.0.conv1"][3] == (1, 1) and v15[f"layer{i}.0.conv2"][3] == (2, 2)


def test_v1_loads_torchvision_resnet50_weights_and_computes_another_function(tmp_path):
    torch.manual_seed(0)
    theirs = torchvision.models.resnet50().eval()
    path = tmp_path / "resnet50_tv.pth"
    torch.save(theirs.state_dict(), path)
    v1 = create_model("resnet50_v1", checkpoint_path=path).eval()  # strict: same names and shapes
    assert {k: v.shape for k, v in v1.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(v1(x), theirs(x))
        v15 = create_model("resnet50", checkpoint_path=path).eval()
        torch.testing.assert_close(v15(x), theirs(x))


def test_v1_names_fix_the_stride_placement():
    with pytest.raises(TypeError, match=r"resnet50_v1 has stride_in_1x1=True; use resnet50 for the v1.5"):
        create_model("resnet50_v1", stride_in_1x1=False)
    # A BasicBlock has no 1x1 conv: asking for v1 there is an error, not a silent no-op.
    for name in ("resnet18", "resnet34d", "seresnet18"):
        with pytest.raises(ValueError, match="stride_in_1x1=True applies to Bottleneck ResNets"):
            create_model(name, stride_in_1x1=True)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "gelu", "silu", "mish", "elu", "sigmoid", "tanh"])
def test_activation_by_name(activation):
    model = create_model("resnet20", activation=activation)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_activation_by_class_and_partial():
    m1 = create_model("resnet20", activation=nn.SiLU)
    assert isinstance(m1.layer1[0].act1, nn.SiLU)
    m2 = create_model("resnet20", activation=functools.partial(nn.LeakyReLU, 0.2))
    assert isinstance(m2.layer1[0].act1, nn.LeakyReLU) and m2.layer1[0].act1.negative_slope == 0.2


@pytest.mark.parametrize("norm,cls", [("batch", nn.BatchNorm2d), ("group", nn.GroupNorm), ("layer", nn.GroupNorm),
                                      ("instance", nn.InstanceNorm2d), ("none", nn.Identity)])
def test_norm_by_name(norm, cls):
    model = create_model("resnet20", norm=norm)
    assert isinstance(model.layer1[0].bn1, cls)
    out = model(torch.randn(2, 3, 32, 32))
    assert torch.isfinite(out).all()


def test_norm_none_keeps_deep_nets_finite():
    # Without normalization, each residual branch starts at zero so depth does not blow up.
    model = create_model("resnet110", norm="none")
    out = model(torch.randn(2, 3, 32, 32))
    assert torch.isfinite(out).all() and out.abs().max() < 1e3


@pytest.mark.parametrize("in_chans", [1, 4, 13])
def test_in_chans(in_chans):
    model = create_model("resnet18", in_chans=in_chans, num_classes=3)
    assert model.conv1.in_channels == in_chans
    assert len(model.data_config.mean) == in_chans
    assert model(torch.randn(2, in_chans, 64, 64)).shape == (2, 3)


@pytest.mark.parametrize("pool", ["avg", "max", "avgmax"])
def test_global_pool(pool):
    model = create_model("resnet18", global_pool=pool).eval()
    feats = torch.randn(2, 512, 2, 2)
    pooled = model.forward_head(feats, pre_logits=True)
    expected = {"avg": feats.mean((2, 3)), "max": feats.amax((2, 3)),
                "avgmax": 0.5 * (feats.mean((2, 3)) + feats.amax((2, 3)))}[pool]
    assert torch.allclose(pooled, expected)


def test_width_multiplier_and_dropout():
    half = create_model("resnet20", width_mult=0.5)
    assert half.conv1.out_channels == 8 and half.fc.in_features == 32
    model = create_model("resnet20", drop_rate=0.5)
    assert isinstance(model.head_drop, nn.Dropout) and model.head_drop.p == 0.5


def test_width_too_small_for_the_groups_is_refused():
    # ResNeXt 32x4d at an eighth of its width would have a 0-channel grouped 3x3.
    with pytest.raises(ValueError, match="width_mult=0.125 is too small for 32 group.*use width_mult >= 0.25"):
        create_model("resnext50_32x4d", width_mult=0.125)
    assert create_model("resnext50_32x4d", width_mult=0.25, num_classes=3)(torch.randn(1, 3, 64, 64)).shape == (1, 3)


def test_stochastic_depth_rises_linearly_and_only_in_training():
    model = create_model("resnet50", drop_path_rate=0.2)
    rates = [b.drop_path.drop_prob for layer in (model.layer1, model.layer2, model.layer3, model.layer4)
             for b in layer if hasattr(b.drop_path, "drop_prob")]
    assert rates[0] == pytest.approx(0.2 / 15) and rates[-1] == pytest.approx(0.2)
    assert rates == sorted(rates)
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(model(x), model(x))


def test_zero_init_last_bn():
    model = create_model("resnet50", zero_init_last=True)
    for m in model.modules():
        if isinstance(m, Bottleneck):
            assert m.bn3.weight.abs().sum() == 0
    assert create_model("resnet50").layer1[0].bn3.weight.abs().sum() > 0


def test_resnext_and_wide_structure():
    rx = create_model("resnext50_32x4d")
    assert rx.layer1[0].conv2.groups == 32 and rx.layer1[0].conv2.out_channels == 128
    wrn = create_model("wide_resnet50_2")
    assert wrn.layer1[0].conv2.out_channels == 128 and wrn.layer1[0].conv3.out_channels == 256


def test_resnet_d_has_deep_stem_and_avgpool_shortcut():
    model = create_model("resnet50d")
    assert isinstance(model.conv1, nn.Sequential) and len([m for m in model.conv1 if isinstance(m, nn.Conv2d)]) == 3
    assert isinstance(model.layer2[0].downsample[0], nn.AvgPool2d)


def test_se_blocks_change_the_function():
    model = create_model("seresnet50")
    assert model.layer1[0].se is not None
    assert model.layer1[0].se.fc1.out_channels == 16  # 256 / 16


def test_preact_parameter_counts_match_paper():
    # He et al. 2016, Table 3: ResNet-164 1.7M, ResNet-1001 10.2M.
    with torch.device("meta"):
        assert round(_params(create_model("preact_resnet164")) / 1e6, 1) == 1.7
        assert round(_params(create_model("preact_resnet110")) / 1e6, 1) == 1.7
        r1001 = create_model("preact_resnet1001")
    # The paper's 10.2M counts convs and the classifier; BN's scales and shifts add 149,216.
    bn_affine = sum(p.numel() for m in r1001.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
    assert _params(r1001) == 10_327_706
    assert _params(r1001) - bn_affine == 10_178_490 and round((_params(r1001) - bn_affine) / 1e6, 1) == 10.2


def test_preact_identity_path():
    # The addition is not followed by an activation: outputs of a stage can be negative.
    model = create_model("preact_resnet20").eval()
    x = torch.randn(2, 3, 32, 32)
    feats = model.forward_intermediates(x, [1])[0]
    assert (feats < 0).any()


@pytest.mark.parametrize("name", ["preact_resnet20", "preact_resnet164", "preact_resnet18"])
def test_preact_zero_init_last_makes_blocks_identities(name):
    # timm's ResNetV2 and SkipInit: the last conv of each residual branch starts at zero.
    torch.manual_seed(0)
    model = create_model(name, zero_init_last=True).eval()
    layers = [model.layer1, model.layer2, model.layer3, model.layer4]
    blocks = [b for layer in layers if layer is not None for b in layer]
    assert all(b.last_conv().weight.abs().sum() == 0 for b in blocks)
    identity_blocks = [b for b in blocks if b.downsample is None]
    x = torch.randn(2, identity_blocks[-1].bn1.num_features, 8, 8)
    with torch.no_grad():
        assert torch.equal(identity_blocks[-1](x.clone()), x)
    assert create_model(name).layer1[0].last_conv().weight.abs().sum() > 0
