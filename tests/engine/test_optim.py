"""Optimizers and schedules (engine/optim.py): per-example hyperparameters, the norm rate, linear decay, Lookahead."""

from __future__ import annotations

import pytest
import torch

from resnetkit import create_model
from resnetkit.engine.config import TrainConfig
from resnetkit.engine.optim import Lookahead, build_optimizer, lr_factor, torch_hyperparameters


def test_per_example_hyperparameters_are_airbenchs():
    # airbench94: lr 11.5 and weight decay 0.0153 per 1024 examples, momentum 0.85, batch 1024.
    config = TrainConfig(lr_unit="example", lr=11.5 / 1024, weight_decay=0.0153 / 1024, momentum=0.85,
                         batch_size=1024, nesterov=True)
    lr, wd = torch_hyperparameters(config)
    kilostep = 1024 * (1 + 1 / (1 - 0.85))
    # airbench sums the loss over the batch; a mean loss takes batch_size times its rate.
    assert lr == pytest.approx(11.5 / kilostep * 1024)
    assert lr * wd == pytest.approx(0.0153 * 1024 / kilostep)  # its weight decay per step
    # Half the batch: half the step, the same rate per example.
    half = torch_hyperparameters(TrainConfig(lr_unit="example", lr=11.5 / 1024, momentum=0.85, batch_size=512))
    assert half[0] == pytest.approx(lr / 2)
    assert torch_hyperparameters(TrainConfig(lr=0.1, weight_decay=5e-4)) == (0.1, 5e-4)
    with pytest.raises(ValueError, match="lr_unit 'example' states SGD's"):
        TrainConfig(lr_unit="example", optimizer="adamw")


def test_normalization_parameters_get_their_own_rate_and_no_decay():
    model = create_model("resnet9_s", bn_frozen_scale=True)
    optimizer = build_optimizer(model, TrainConfig(lr=0.1, weight_decay=5e-4, norm_lr_mult=64))
    norm_params = {id(m.bias) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    for group in optimizer.param_groups:
        ids = {id(p) for p in group["params"]}
        if ids & norm_params:
            assert ids <= norm_params and group["lr"] == pytest.approx(6.4) and group["weight_decay"] == 0
        else:
            assert group["lr"] == pytest.approx(0.1)
    frozen = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert not frozen & {id(p) for g in optimizer.param_groups for p in g["params"]}  # frozen scales stay out


def test_warmup_from_a_fraction_then_linear_decay_to_a_floor():
    config = TrainConfig(schedule="linear", warmup_epochs=2, warmup_from=0.2, lr_floor=0.07)
    steps = [lr_factor(s, 100, 10, config) for s in (0, 10, 20, 60, 99, 100)]
    assert steps == pytest.approx([0.2, 0.6, 1.0, 1.0 + (0.07 - 1.0) * 40 / 80, 1.0 + (0.07 - 1) * 79 / 80, 0.07])


def test_lookahead_averages_and_copies_back():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    start = model.weight.detach().clone()
    look = Lookahead(model, every=2, decay=0.9)
    with torch.no_grad():
        model.weight.add_(1.0)
    look.step(model, 1, 10)  # not a multiple of every: nothing
    torch.testing.assert_close(model.weight, start + 1)
    look.step(model, 2, 10)
    alpha = 0.9**2 * (2 / 10) ** 3
    expected = start * alpha + (start + 1) * (1 - alpha)
    torch.testing.assert_close(model.weight, expected)
    torch.testing.assert_close(look.average["weight"], expected)
    with torch.no_grad():
        model.weight.add_(5.0)
    look.finish(model)  # the run ends on the average
    torch.testing.assert_close(model.weight, expected)
    restored = Lookahead(model, every=2, decay=0.9)
    restored.load_state_dict(look.state_dict())
    torch.testing.assert_close(restored.average["weight"], expected)


def test_ema_decay_warms_up_so_that_the_first_weights_fade():
    from torch.optim.swa_utils import AveragedModel

    from resnetkit.engine.optim import ema_with_warmup

    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = AveragedModel(model, multi_avg_fn=ema_with_warmup(0.998), use_buffers=True)
    ema.update_parameters(model)  # the first update copies the weights (0)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update_parameters(model)  # n = 1: decay (1 + 1) / (10 + 1)
    assert ema.module.weight.item() == pytest.approx(9 / 11)
    for _ in range(698):
        ema.update_parameters(model)
    # A fixed decay of 0.998 would keep 0.998**699 = 25% of the untrained weights after 700 steps.
    assert 1 - ema.module.weight.item() < 0.1


def test_ema_warmup_copies_counters():
    from resnetkit.engine.optim import ema_with_warmup

    averaged, current = [torch.tensor(3)], [torch.tensor(7)]
    ema_with_warmup(0.9)(averaged, current, torch.tensor(5))
    assert averaged[0].item() == 7
