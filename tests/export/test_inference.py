"""Conv+BN folding and optimize_for_inference keep the function, on every foldable model."""

from __future__ import annotations

import pytest
import torch

from resnetkit import create_model, list_models
from resnetkit.export import fold_batchnorm, optimize_for_inference


def _input(model, batch=2):
    c, h, w = model.data_config.input_size
    return torch.randn(batch, c, min(h, 64), min(w, 64))


def _trained_like(model):
    # Random BN statistics, as after training: folding fresh (identity) BNs would prove little.
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d) and m.affine:
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


@pytest.mark.parametrize("name", ["resnet18", "resnet50d", "seresnet18", "resnext50_32x4d", "resnet20", "plain20",
                                  "preact_resnet20", "vgg11_bn", "vgg11_bn_cifar", "googlenet_cifar", "res8"])
def test_folding_keeps_outputs(name):
    torch.manual_seed(0)
    model = _trained_like(create_model(name))
    x = _input(model)
    folded = fold_batchnorm(model)
    with torch.no_grad():
        a, b = model(x), folded(x)
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * a.abs().max().item())
    if not name.startswith(("preact", "res8")):
        # Every BN of these nets follows a conv: none may be left.
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())


def test_unfoldable_model_is_returned_unchanged():
    model = create_model("res15_narrow").eval()  # its CPU dilated-conv workaround branches on the device
    assert fold_batchnorm(model) is model


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_optimize_for_inference_agrees_with_fp32(precision):
    torch.manual_seed(0)
    model = _trained_like(create_model("resnet20"))
    fast = optimize_for_inference(model, precision=precision, compile=False)
    x = torch.randn(64, 3, 32, 32)
    with torch.no_grad():
        ref, out = model(x), fast(x)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    tol = 1e-4 if precision == "fp32" else 5e-2
    assert (out - ref).abs().max() <= tol * ref.abs().max()
    assert model.training is False and next(model.parameters()).dtype == torch.float32  # original untouched
    assert fast.model_name == "resnet20" and fast.num_classes == 10


def test_optimize_for_inference_rejects_bad_precision():
    with pytest.raises(ValueError, match="precision must be one of auto, bf16, fp16, fp32, off"):
        optimize_for_inference(create_model("resnet20"), precision="int4")
