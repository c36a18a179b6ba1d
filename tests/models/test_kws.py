"""Tang & Lin's keyword-spotting ResNets: sizes of the paper's Table 1 and Honk's forward pass."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from resnetkit import count_parameters, create_model, list_models

# Tang & Lin 2018, Table 1 ("Par."), for 12 output classes.
PAPER_PARAMS = {
    "res8": 110e3, "res8_narrow": 19.9e3,
    "res15": 238e3, "res15_narrow": 42.6e3,
    "res26": 438e3, "res26_narrow": 78.4e3,
}
# What these implementations have: 3x3 bias-free convs, no affine BN, a 12-way linear layer.
EXACT_PARAMS = {
    "res8": 110_307, "res8_narrow": 19_905,
    "res15": 237_882, "res15_narrow": 42_648,
    "res26": 438_357, "res26_narrow": 78_387,
}


def test_family_is_registered():
    assert list_models(family="kws") == ["res8", "res8_narrow", "res15", "res15_narrow", "res26", "res26_narrow"]


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS))
def test_parameter_counts_match_the_paper(name):
    model = create_model(name)
    assert model.num_classes == 12 and model.in_chans == 1
    params = count_parameters(model)
    assert params == EXACT_PARAMS[name]
    assert abs(params - PAPER_PARAMS[name]) / PAPER_PARAMS[name] < 0.01


@pytest.mark.parametrize("name", ["res8", "res15_narrow", "res26_narrow"])
def test_layers_are_as_in_the_paper(name):
    model = create_model(name)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(c.bias is None and c.kernel_size == (3, 3) for c in convs)
    assert all(not n.affine for n in norms) and len(norms) == len(convs) - 1  # none after the first conv
    assert model.data_config.input_size == (1, 40, 101)
    assert model.data_config.mean == (0.0,) and model.data_config.std == (1.0,)
    out = model.eval()(torch.randn(2, 1, 40, 101))
    assert out.shape == (2, 12)


def test_res15_dilation_grows_every_three_layers():
    model = create_model("res15")
    dilations = [m.dilation[0] for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert dilations == [1, 1, 1, 1, 2, 2, 2, 4, 4, 4, 8, 8, 8, 16]  # conv0, then 2 ** floor(i / 3)
    assert isinstance(model.pool, nn.Identity)
    assert create_model("res8").pool.kernel_size == (4, 3) and create_model("res26").pool.kernel_size == (2, 2)


def _honk_forward(model, x: torch.Tensor) -> torch.Tensor:
    """Honk's ``SpeechResModel.forward`` (Tang & Lin's code) with this model's layers."""
    blocks = list(model.blocks)
    convs = [model.conv0]
    bns = []
    for k, block in enumerate(blocks):
        convs += [block.conv1, block.conv2]
        bns += [block.bn1, blocks[k + 1].norm_in if k + 1 < len(blocks) else model.tail.norm]
    if model.tail.conv is not None:
        convs.append(model.tail.conv)
        bns.append(model.tail.bn)
    for i, conv in enumerate(convs):
        y = F.relu(conv(x))
        if i == 0:
            y = model.pool(y)
            old_x = y
        if i > 0 and i % 2 == 0:
            x = y + old_x
            old_x = x
        else:
            x = y
        if i > 0:
            x = bns[i - 1](x)
    x = x.reshape(x.shape[0], x.shape[1], -1).mean(2)
    return model.fc(x)


@pytest.mark.parametrize("name", ["res8_narrow", "res15_narrow", "res26_narrow"])
def test_forward_is_honks(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10)
    x = torch.randn(4, 1, 40, 101)
    model.train()
    torch.testing.assert_close(model(x), _honk_forward(model, x))
    model.eval()  # with the running statistics the training passes above left behind
    torch.testing.assert_close(model(x), _honk_forward(model, x))


def test_dilated_convs_train_in_bf16_channels_last_on_cpu():
    # The trainer's CPU defaults; PyTorch's CPU kernel gives NaN weight gradients for
    # dilated bf16 channels-last convolutions unless the model works around it.
    torch.manual_seed(0)
    model = create_model("res15_narrow", num_classes=10).to(memory_format=torch.channels_last)
    x = torch.randn(4, 1, 40, 101).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(x).float().logsumexp(1).mean()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
