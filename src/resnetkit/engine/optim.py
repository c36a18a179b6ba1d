"""Optimizers and learning-rate schedules."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import TrainConfig


def param_groups(model: nn.Module, weight_decay: float, lr: float, head: frozenset[int] = frozenset(),
                 backbone_lr_mult: float = 1.0) -> list[dict]:
    """Weight decay on conv and linear weights only; the backbone's rate scaled when fine-tuning.

    Decaying BN/GN scales and biases only shrinks them towards zero, which the next layer
    undoes; leaving them out is the "no bias decay" of He et al. 2019. ``head`` holds the
    ids of the classifier's parameters, which keep the base rate.
    """
    groups: dict[tuple[bool, bool], list] = {}
    for p in model.parameters():
        if p.requires_grad:
            groups.setdefault((id(p) in head, p.ndim > 1), []).append(p)
    return [
        {"params": params, "weight_decay": weight_decay if decays else 0.0,
         "lr": lr if is_head or not head else lr * backbone_lr_mult}
        for (is_head, decays), params in sorted(groups.items(), key=lambda kv: (kv[0][0], not kv[0][1]))
    ]


def build_optimizer(model: nn.Module, config: TrainConfig, head: frozenset[int] = frozenset()) -> torch.optim.Optimizer:
    groups = param_groups(model, config.weight_decay, config.lr, head, config.backbone_lr_mult)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)
    return torch.optim.AdamW(groups, lr=config.lr)


def lr_factor(step: int, total_steps: int, steps_per_epoch: int, config: TrainConfig) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based).

    Linear warm-up over ``warmup_epochs``, then: ``step`` multiplies by ``gamma`` at each
    milestone (He et al. 2015: /10 at 32k and 48k iterations), ``cosine`` decays to zero,
    ``onecycle`` rises to the peak over the first 30% and anneals (Smith 2018; warm-up is its
    first phase), ``constant`` stays.
    """
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    if config.schedule == "onecycle":
        peak = max(1, warmup or int(0.3 * total_steps))
        if step < peak:
            return 0.04 + 0.96 * step / peak  # from lr/25, torch's OneCycleLR default
        progress = (step - peak) / max(1, total_steps - peak)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    if warmup and step < warmup:
        return (step + 1) / warmup
    if config.schedule == "constant":
        return 1.0
    if config.schedule == "step":
        scale = steps_per_epoch if config.milestone_unit == "epoch" else 1
        passed = sum(step >= m * scale for m in config.milestones)
        return config.gamma**passed
    progress = (step - warmup) / max(1, total_steps - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps, steps_per_epoch: int, config: TrainConfig):
    """A LambdaLR stepping once per optimizer step (its state dict resumes exactly).

    ``total_steps`` is an int or a function returning it: a wall-clock budget only fixes the
    length of the run once the first epoch has been timed.
    """
    total = total_steps if callable(total_steps) else (lambda: total_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total(), steps_per_epoch, config)
    )
