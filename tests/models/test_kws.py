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
    # (frequency, time): res8 pools 3 bins and 4 frames (Honk's (4, 3) in its (time, frequency) layout).
    assert create_model("res8").pool.kernel_size == (3, 4) and create_model("res26").pool.kernel_size == (2, 2)


@pytest.mark.parametrize("name,shape,reduction", [
    ("res8", (13, 25), 4), ("res15", (40, 101), 1), ("res26", (20, 50), 2),
])
def test_feature_maps_and_reductions_along_time(name, shape, reduction):
    model = create_model(name, features_only=True).eval()
    feats = model(torch.randn(1, 1, 40, 101))
    assert all(tuple(f.shape[-2:]) == shape for f in feats)
    assert model.feature_info.reduction() == [reduction, reduction]


# Honk's configurations (castorini/honk, utils/model.py, ``_configs``), in Honk's own terms:
# its input is (time 101, frequency 40), so ``res_pool`` is (time, frequency).
HONK_CONFIGS = {
    "res8": dict(n_labels=12, n_layers=6, n_feature_maps=45, res_pool=(4, 3), use_dilation=False),
    "res8_narrow": dict(n_labels=12, n_layers=6, n_feature_maps=19, res_pool=(4, 3), use_dilation=False),
    "res15": dict(n_labels=12, n_layers=13, n_feature_maps=45, use_dilation=True),
    "res15_narrow": dict(n_labels=12, n_layers=13, n_feature_maps=19, use_dilation=True),
    "res26": dict(n_labels=12, n_layers=24, n_feature_maps=45, res_pool=(2, 2), use_dilation=False),
    "res26_narrow": dict(n_labels=12, n_layers=24, n_feature_maps=19, res_pool=(2, 2), use_dilation=False),
}


class HonkSpeechResModel(nn.Module):
    """Honk's ``SpeechResModel`` (Tang & Lin's code), transcribed: input (N, time, frequency).

    Built from Honk's config alone (its own pool, dilation rule and affine-free BatchNorms),
    so it shares nothing with the model under test but the weights copied into it.
    """

    def __init__(self, config: dict) -> None:
        super().__init__()
        n_maps = config["n_feature_maps"]
        self.conv0 = nn.Conv2d(1, n_maps, (3, 3), padding=(1, 1), bias=False)
        if "res_pool" in config:
            self.pool = nn.AvgPool2d(config["res_pool"])
        self.n_layers = n_layers = config["n_layers"]
        for i in range(n_layers):
            d = int(2 ** (i // 3)) if config["use_dilation"] else 1
            self.add_module(f"bn{i + 1}", nn.BatchNorm2d(n_maps, affine=False))
            self.add_module(f"conv{i + 1}", nn.Conv2d(n_maps, n_maps, (3, 3), padding=d, dilation=d, bias=False))
        self.output = nn.Linear(n_maps, config["n_labels"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1)
        for i in range(self.n_layers + 1):
            y = F.relu(getattr(self, f"conv{i}")(x))
            if i == 0:
                if hasattr(self, "pool"):
                    y = self.pool(y)
                old_x = y
            if i > 0 and i % 2 == 0:
                x = y + old_x
                old_x = x
            else:
                x = y
            if i > 0:
                x = getattr(self, f"bn{i}")(x)
        x = x.view(x.size(0), x.size(1), -1)
        x = torch.mean(x, 2)
        return self.output(x)


def _honk_twin(model) -> HonkSpeechResModel:
    """A Honk model carrying ``model``'s weights, moved to Honk's (time, frequency) layout.

    A conv over (time, frequency) whose kernel is transposed in its two spatial dimensions
    computes the same as the original conv over (frequency, time), transposed.
    """
    honk = HonkSpeechResModel(HONK_CONFIGS[model.model_name])
    ours = [m for m in model.modules() if isinstance(m, nn.Conv2d)]  # conv0, then in forward order
    assert len(ours) == honk.n_layers + 1
    with torch.no_grad():
        for i, conv in enumerate(ours):
            getattr(honk, f"conv{i}").weight.copy_(conv.weight.transpose(2, 3))
        honk.output.load_state_dict(model.fc.state_dict())
    return honk


@pytest.mark.parametrize("name", ["res8", "res8_narrow", "res15_narrow", "res26_narrow"])
def test_forward_is_honks(name):
    torch.manual_seed(0)
    model = create_model(name)
    honk = _honk_twin(model)
    x = torch.randn(4, 1, 40, 101)  # (N, 1, frequency, time)
    x_honk = x[:, 0].transpose(1, 2)  # Honk's (N, time 101, frequency 40)
    model.train(), honk.train()
    torch.testing.assert_close(model(x), honk(x_honk))
    # Eval mode with the running statistics that each model's own training pass left behind.
    model.eval(), honk.eval()
    torch.testing.assert_close(model(x), honk(x_honk))


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
