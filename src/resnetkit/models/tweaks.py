"""Options every model of the zoo takes through ``create_model``, beside its own constructor's.

They are what the CIFAR speedruns (Page 2018; Jordan 2024, airbench) change in a network
without changing its design, so that any model can try them:

- ``whiten=k``: a frozen first layer whose filters whiten the k x k patches of the training
  images (the eigenvectors of their covariance, scaled by the inverse square root of the
  eigenvalues, each with its negative), followed by GELU. The filters are computed from
  training images when a run starts (:meth:`PatchWhitening.fit`); they are weights of the
  model, so checkpoints and exported files carry them.
- ``dirac_init=True``: every 3x3 convolution starts as the identity on its first
  min(in, out) output channels (``torch.nn.init.dirac_``), the rest as initialized.
- ``bn_eps``, ``bn_momentum`` (PyTorch's convention: the weight of the new batch), and
  ``bn_frozen_scale=True`` (BatchNorm scales fixed at 1; only the shifts learn).

They are plain values, so they live in a run's ``model_args`` and ``--model-arg KEY=VALUE``
sets them; ``load_run`` rebuilds the same model from them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Optional

import torch
from torch import nn


@dataclass(frozen=True)
class ModelTweaks:
    """The generic options of ``create_model``; each default leaves the model as its family builds it."""

    whiten: int = 0  # patch size of a frozen whitening first layer (airbench: 2); 0 is none
    dirac_init: bool = False  # 3x3 convs start as identity maps (airbench); keeps early signals alive
    bn_eps: Optional[float] = None  # airbench: 1e-12
    bn_momentum: Optional[float] = None  # weight of each new batch in the running statistics (airbench: 0.4)
    bn_frozen_scale: bool = False  # BatchNorm scales stay 1 (airbench, Page): fewer parameters, no loss

    def __post_init__(self) -> None:
        if isinstance(self.whiten, bool) or not isinstance(self.whiten, int) or not 0 <= self.whiten <= 7:
            raise ValueError(f"whiten is the patch size of the whitening layer, 1-7 (0: none), got {self.whiten!r}")
        for name in ("dirac_init", "bn_frozen_scale"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.bn_eps is not None and not (isinstance(self.bn_eps, (int, float)) and 0 < self.bn_eps < 1):
            raise ValueError(f"bn_eps must be a number in (0, 1), got {self.bn_eps!r}")
        if self.bn_momentum is not None and not (isinstance(self.bn_momentum, (int, float)) and 0 < self.bn_momentum <= 1):
            raise ValueError(f"bn_momentum must be a number in (0, 1] (the weight of each new batch), "
                             f"got {self.bn_momentum!r}")

    @classmethod
    def take(cls, kwargs: dict[str, Any]) -> "ModelTweaks":
        """The generic options in ``kwargs``, removed from it (the rest go to the family's builder)."""
        return cls(**{f.name: kwargs.pop(f.name) for f in fields(cls) if f.name in kwargs})

    def given(self) -> dict[str, Any]:
        """The options that differ from the defaults (what a run's model_args records)."""
        default = ModelTweaks()
        return {k: v for k, v in asdict(self).items() if v != getattr(default, k)}

    def apply(self, model: nn.Module) -> nn.Module:
        """Set the BatchNorm options and the Dirac initialization on ``model`` (in place)."""
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                if self.bn_eps is not None:
                    module.eps = float(self.bn_eps)
                if self.bn_momentum is not None:
                    module.momentum = float(self.bn_momentum)
                if self.bn_frozen_scale and module.weight is not None:
                    with torch.no_grad():
                        module.weight.fill_(1.0)
                    module.weight.requires_grad_(False)
            elif self.dirac_init and isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3) \
                    and module.groups == 1:
                with torch.no_grad():
                    nn.init.dirac_(module.weight[: min(module.in_channels, module.out_channels)])
        return model


GENERIC_OPTIONS = tuple(f.name for f in fields(ModelTweaks))


class PatchWhitening(nn.Module):
    """A frozen convolution that whitens k x k patches, then GELU: ``in_chans`` -> ``2 * in_chans * k * k`` channels.

    No padding, as airbench: a 32x32 image becomes 31x31 with k=2. Until :meth:`fit` runs the
    filters are zero (``fitted`` says whether it did); the bias starts at zero and learns only
    while the trainer lets it (``TrainConfig.whiten_bias_epochs``).
    """

    def __init__(self, in_chans: int, patch_size: int, eps: float = 5e-4) -> None:
        super().__init__()
        self.in_chans, self.patch_size, self.eps = in_chans, patch_size, eps
        self.conv = nn.Conv2d(in_chans, self.out_chans, patch_size, bias=True)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.conv.weight.requires_grad_(False)
        self.act = nn.GELU()
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @property
    def out_chans(self) -> int:
        return 2 * self.in_chans * self.patch_size**2

    @torch.no_grad()
    def fit(self, images: torch.Tensor, chunk: int = 512) -> None:
        """Compute the filters from ``images``: a (N, C, H, W) float batch of model inputs (normalized)."""
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != self.in_chans:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"whitening needs (N, {self.in_chans}, H, W) images, got {shape}")
        k = self.patch_size
        if min(images.shape[-2:]) < k:
            raise ValueError(f"whitening patches of {k}x{k} need images of at least {k}x{k} pixels, "
                             f"got {tuple(images.shape[-2:])}")
        dim = self.in_chans * k * k
        cov = torch.zeros(dim, dim, dtype=torch.float64)
        count = 0
        for part in images.split(chunk):
            # (n, C, H', W', k, k) -> one row per patch, in the conv weight's (C, kh, kw) order
            patches = part.float().cpu().unfold(2, k, 1).unfold(3, k, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, dim)
            cov += (patches.T.double() @ patches.double())
            count += patches.shape[0]
        cov /= max(count, 1)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)  # ascending
        order = torch.arange(dim - 1, -1, -1)
        eigenvalues, eigenvectors = eigenvalues[order].clamp(min=0), eigenvectors[:, order]
        filters = (eigenvectors.T / torch.sqrt(eigenvalues + self.eps)[:, None]).reshape(dim, self.in_chans, k, k)
        weight = torch.cat([filters, -filters]).to(self.conv.weight)
        if not torch.isfinite(weight).all():
            raise ValueError("the whitening filters are not finite: are the training images constant?")
        self.conv.weight.copy_(weight)
        self.conv.bias.zero_()
        self.fitted.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))

    def extra_repr(self) -> str:
        return f"in_chans={self.in_chans}, patch_size={self.patch_size}, out_chans={self.out_chans}"


def whitening_of(model: nn.Module) -> Optional[PatchWhitening]:
    """The model's whitening layer, or None."""
    found = getattr(model, "whiten", None)
    return found if isinstance(found, PatchWhitening) else None


