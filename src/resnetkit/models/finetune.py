"""Fine-tuning helpers: freeze early stages and BatchNorm statistics."""

from __future__ import annotations

from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d


def freeze_stages(model: nn.Module, num_stages: int) -> nn.Module:
    """Stop gradients through the first ``num_stages`` entries of ``model.stages()``.

    Stage 0 is the stem, 1 the first residual stage, and so on (the levels of
    ``feature_info``). Their BatchNorm layers are frozen too, since a frozen conv under a
    BN that keeps adapting its statistics no longer computes what it was trained for.
    """
    stages = model.stages()
    if not 0 <= num_stages <= len(stages):
        raise ValueError(f"num_stages must be in 0..{len(stages)}, got {num_stages}")
    frozen_bns: set[int] = set()
    for group in stages[:num_stages]:
        for module in group:
            for p in module.parameters():
                p.requires_grad_(False)
            frozen_bns.update(id(m) for m in module.modules() if isinstance(m, nn.BatchNorm2d))
    return _replace_batchnorm(model, lambda bn: id(bn) in frozen_bns)


def freeze_batchnorm(model: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d by torchvision's FrozenBatchNorm2d (fixed statistics and affine).

    Use for fine-tuning with small batches, where batch statistics are too noisy. The state
    dict keeps its keys, so checkpoints still load.
    """
    return _replace_batchnorm(model, lambda bn: True)


def _replace_batchnorm(module: nn.Module, select) -> nn.Module:
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and select(child):
            setattr(module, name, _frozen_copy(child))
        else:
            _replace_batchnorm(child, select)
    return module


def _frozen_copy(bn: nn.BatchNorm2d) -> FrozenBatchNorm2d:
    frozen = FrozenBatchNorm2d(bn.num_features, eps=bn.eps).to(bn.running_mean.device)
    if bn.affine:
        frozen.weight.copy_(bn.weight.detach())
        frozen.bias.copy_(bn.bias.detach())
    frozen.running_mean.copy_(bn.running_mean)
    frozen.running_var.copy_(bn.running_var)
    return frozen
