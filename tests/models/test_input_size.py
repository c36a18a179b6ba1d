"""min_input_size / check_input_size: the smallest input, found without running the model."""

from __future__ import annotations

import pytest
import torch

from resnetkit import create_model
from resnetkit.models import check_input_size, min_input_size


@pytest.mark.parametrize("name,expected", [
    ("vgg16_bn_cifar", (32, 32)),  # five unpadded 2x2 max-pools
    ("vgg11", (32, 32)),           # the same stack; the 7x7 adaptive pool does not help
    ("googlenet", (15, 15)),
    ("resnet18", (1, 1)),          # every downsampling layer is padded
    ("resnet20", (1, 1)),
    ("res8", (3, 4)),              # the 3 (frequency) x 4 (time) average pool
    ("res26", (2, 2)),
])
def test_min_input_size(name, expected):
    with torch.device("meta"):
        model = create_model(name)
    assert min_input_size(model) == expected


@pytest.mark.parametrize("name", ["vgg11_cifar", "googlenet", "res8_narrow"])
def test_min_input_size_is_the_real_boundary(name):
    # The meta-device answer agrees with real CPU tensors: the minimum runs, one less does not.
    model = create_model(name).eval()
    h, w = min_input_size(model)
    with torch.no_grad():
        model(torch.randn(1, model.in_chans, h, w))
        for smaller in ((h - 1, w), (h, w - 1)):
            with pytest.raises(RuntimeError):
                model(torch.randn(1, model.in_chans, *smaller))


def test_check_input_size_message_and_model_left_alone():
    model = create_model("vgg16_bn_cifar")  # real weights, training mode
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"^vgg16_bn_cifar needs inputs of at least 32x32; got 8x8 "
                                         r"\(resize with --img-size 32\)$"):
        check_input_size(model, (3, 8, 8))
    check_input_size(model, (3, 32, 32))
    check_input_size(model, (3, 64, 48))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_check_input_size_other_cases():
    with torch.device("meta"):
        res8, resnet20 = create_model("res8"), create_model("resnet20")
    with pytest.raises(ValueError, match=r"^res8 needs inputs of at least 3x4; got 40x3$"):
        check_input_size(res8, (1, 40, 3), hint="")
    with pytest.raises(ValueError, match="expects 1 input channel"):
        check_input_size(res8, (3, 40, 101))
    check_input_size(resnet20, (3, 1, 1))
    features = create_model("vgg11_cifar", features_only=True)
    assert min_input_size(features) == (32, 32)
    with pytest.raises(TypeError, match="needs a resnetkit model"):
        min_input_size(torch.nn.Conv2d(3, 3, 3))


@pytest.mark.parametrize("norm", ["instance", "group"])
def test_instance_and_group_norm_models_pass_the_size_check(norm):
    # InstanceNorm refuses a 1x1 map with a ValueError ("Expected more than 1 spatial element"), and so
    # does GroupNorm with one channel per group ("... value per channel"), not the RuntimeError of a
    # too-small conv. The search treats them as "does not fit" in that probe, so a model built with
    # such a norm trains instead of failing in the trainer's size check.
    for in_chans, size in ((1, (40, 51)), (3, (32, 32))):
        model = create_model("resnet20", norm=norm, in_chans=in_chans)
        check_input_size(model, (in_chans, *size))
        assert model.training
        model(torch.randn(2, in_chans, *size)).sum().backward()
