"""Properties that hold for every registered model (timm's contract)."""

from __future__ import annotations

import inspect

import pytest
import torch

from resnetkit import create_model, list_models
from resnetkit.models import get_model_entry

ALL_MODELS = list_models()


def _small_input(model, batch: int = 2) -> torch.Tensor:
    c, h, w = model.data_config.input_size
    # ImageNet-sized nets run at 64x64 here: every stage still sees >= 2x2 maps, in a fraction of the time.
    return torch.randn(batch, c, min(h, 64), min(w, 64))


def test_registry_holds_the_issue_models():
    expected = {
        "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
        "resnet50_v1", "resnet101_v1", "resnet152_v1",
        "resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2", "wide_resnet101_2",
        "resnet50d", "seresnet50",
        "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202",
        "preact_resnet18", "preact_resnet34", "preact_resnet50", "preact_resnet101", "preact_resnet152",
        "preact_resnet110", "preact_resnet164", "preact_resnet1001",
        "plain18", "plain34", "plain20", "plain32", "plain44", "plain56", "plain110",
    }
    assert expected <= set(ALL_MODELS)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_backward_every_model(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7)
    model.train()
    x = _small_input(model)
    out = model(x)
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    out.float().pow(2).mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad[:5]}"
    # A net whose gradients are all zero is not training: most tensors must get a signal.
    nonzero = sum(bool(p.grad.abs().sum() > 0) for p in model.parameters())
    assert nonzero >= 0.9 * len(list(model.parameters()))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_features_only_matches_feature_info(name):
    model = create_model(name, features_only=True)
    model.eval()
    x = _small_input(model, batch=1)
    with torch.no_grad():
        feats = model(x)
    assert isinstance(feats, list) and len(feats) == len(model.feature_info)
    for f, info in zip(feats, model.feature_info):
        assert f.shape[1] == info.num_chs, info
        assert x.shape[-1] // f.shape[-1] == info.reduction, (info, f.shape)
    names = dict(model.model.named_modules())
    assert all(info.module in names for info in model.feature_info)


def test_features_only_out_indices_and_head_interface():
    backbone = create_model("resnet50", features_only=True, out_indices=(2, 4))
    assert backbone.feature_info.channels() == [512, 2048]
    assert backbone.feature_info.reduction() == [8, 32]
    feats = backbone(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [512, 2048]

    model = create_model("resnet18", num_classes=5)
    x = torch.randn(2, 3, 64, 64)
    feats = model.forward_features(x)
    assert feats.shape == (2, 512, 2, 2)
    assert model.forward_head(feats, pre_logits=True).shape == (2, 512)
    model.eval()
    assert torch.allclose(model.forward_head(model.forward_features(x)), model(x))
    model.reset_classifier(3)
    assert model(x).shape == (2, 3)
    model.reset_classifier(0)
    assert model(x).shape == (2, 512)


def test_bad_out_indices_is_a_clear_error():
    with pytest.raises(ValueError, match="feature levels"):
        create_model("resnet18", features_only=True, out_indices=(7,))


def _defaults(entry) -> dict:
    params = inspect.signature(entry.model_class.__init__).parameters
    return {k: params[k].default for k in entry.options}


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_listed_option_is_accepted(name):
    # ModelEntry.options is what the README's option table is generated from: every option
    # listed must reach the constructor, i.e. the builder does not set it itself.
    entry = get_model_entry(name)
    with torch.device("meta"):
        create_model(name, **_defaults(entry))


@pytest.mark.parametrize("name", [n for n in ALL_MODELS if get_model_entry(n).fixed])
def test_fixed_options_are_refused(name):
    entry = get_model_entry(name)
    params = inspect.signature(entry.model_class.__init__).parameters
    for key in entry.fixed:
        default = params[key].default
        values = [True, False] if isinstance(default, bool) else [default]
        errors = []
        for value in values:
            try:
                with torch.device("meta"):
                    create_model(name, **{key: value})
            except TypeError as err:
                errors.append(str(err))
        assert errors, f"{name} accepted every value of its fixed option {key!r}"
        assert any(name in e and key in e for e in errors), errors
