"""Bad input gets ValueError/TypeError with a message that says what is allowed."""

from __future__ import annotations

import pytest
import torch

from resnetkit import create_model


def test_unknown_model_lists_closest_names():
    with pytest.raises(ValueError, match=r"unknown model 'resnet51'.*closest: .*resnet50"):
        create_model("resnet51")


def test_unknown_activation_lists_allowed():
    with pytest.raises(ValueError, match=r"unknown activation 'swishy'.*relu.*gelu.*silu"):
        create_model("resnet18", activation="swishy")


def test_bad_activation_type():
    with pytest.raises(TypeError, match="activation must be"):
        create_model("resnet18", activation=3)


def test_unknown_norm_lists_allowed():
    with pytest.raises(ValueError, match=r"unknown norm 'batchy'.*batch, group, layer, instance, none"):
        create_model("resnet20", norm="batchy")


def test_unknown_keyword_lists_accepted_arguments():
    with pytest.raises(TypeError, match=r"accepted arguments: .*in_chans"):
        create_model("resnet18", in_channels=1)


def test_wrong_channel_count_names_both():
    model = create_model("resnet18")
    with pytest.raises(ValueError, match=r"expects 3 input channel\(s\), got 1"):
        model(torch.randn(1, 1, 64, 64))
    gray = create_model("resnet20", in_chans=1)
    with pytest.raises(ValueError, match=r"expects 1 input channel\(s\), got 3"):
        gray(torch.randn(1, 3, 32, 32))


def test_wrong_rank_is_a_clear_error():
    with pytest.raises(ValueError, match="4-D batch"):
        create_model("resnet20")(torch.randn(3, 32, 32))


@pytest.mark.parametrize("kwargs,match", [
    ({"num_classes": -1}, "num_classes"),
    ({"in_chans": 0}, "in_chans"),
    ({"drop_rate": 1.5}, "drop_rate"),
    ({"global_pool": "median"}, "global pool"),
    ({"shortcut": "C"}, "shortcut"),
])
def test_invalid_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_model("resnet20", **kwargs)


def test_cifar_depth_must_be_6n_plus_2():
    from resnetkit.models.cifar_resnet import CifarResNet

    with pytest.raises(ValueError, match="6n\\+2"):
        CifarResNet(21)


@pytest.mark.parametrize("option", ["activation", "norm", "drop_path_rate", "width_mult", "zero_init_last"])
def test_kws_nets_say_what_they_take(option):
    # Tang & Lin fix these; the message names the family, the reason and what it does take.
    with pytest.raises(TypeError, match=r"res8 does not take '%s'; accepted arguments: num_classes, in_chans, "
                                        r"drop_rate, global_pool \(kws family: Tang & Lin 2018 fix ReLU" % option):
        create_model("res8", **{option: None})


@pytest.mark.parametrize("name,kwargs,match", [
    ("seresnet50", {"se": False}, "seresnet50 fixes se"),
    ("resnext50_32x4d", {"groups": 8}, "resnext50_32x4d fixes groups"),
    ("resnet50d", {"stem": "default"}, "resnet50d fixes stem"),
    ("plain20", {"residual": True}, "plain20 fixes residual"),
    ("res15", {"pool": (2, 2)}, "res15 fixes pool"),
    ("preact_resnet20", {"stem": "imagenet"}, "preact_resnet20 fixes stem"),
    ("vgg16_bn", {"batch_norm": False}, "vgg16_bn has batch_norm=True; use vgg16"),
])
def test_options_a_name_fixes_are_refused(name, kwargs, match):
    with pytest.raises(TypeError, match=match):
        create_model(name, **kwargs)


def test_misspelt_option_gets_a_suggestion():
    with pytest.raises(TypeError, match=r"does not take 'drop_path'.*did you mean 'drop_path_rate'"):
        create_model("resnet18", drop_path=0.1)


@pytest.mark.parametrize("name,kwargs", [
    ("plain18", {"zero_init_last": True}), ("plain34", {"drop_path_rate": 0.1}), ("plain18", {"avg_down": True}),
    ("plain20", {"zero_init_last": True}), ("plain56", {"shortcut": "B"}),
])
def test_plain_nets_refuse_options_that_need_shortcuts(name, kwargs):
    with pytest.raises(ValueError, match=r"plain net \(residual=False\) has none"):
        create_model(name, **kwargs)
