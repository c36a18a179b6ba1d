"""Grad-CAM (Selvaraju et al. 2017) and Grad-CAM++ (Chattopadhyay et al. 2018) for every model family.

One forward and one backward pass: a forward hook keeps the chosen layer's output ``A``
(N, K, h, w) and ``torch.autograd.grad`` gives ``dS/dA`` for the target class score ``S``.

- Grad-CAM weighs each channel by its average gradient: ``relu(sum_k mean(dS/dA_k) A_k)``.
- Grad-CAM++ weighs the positive gradients of each position by the closed-form ``alpha`` of
  the paper (written for ``exp(S)``, as pytorch-grad-cam and the authors' code do), which
  spreads the map over several instances of a class instead of the strongest one.

Grad-CAM gives the same maps as captum's ``LayerGradCam(..., relu_attributions=True)``
(tests/explain check it); Grad-CAM++ is not in captum, and writing both here keeps one code
path and keeps captum out of the runtime dependencies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

METHODS = ("gradcam", "gradcam++")
# Pooling at the end of a stage (VGG's last max pool) only halves the map Grad-CAM reads;
# the layer before it carries the same evidence at twice the resolution.
_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)

Target = Union[None, int, Sequence[int], torch.Tensor]


@dataclass
class Explanation:
    """What one Grad-CAM pass computed for a batch."""

    maps: torch.Tensor  # (N, H, W) at the input's height and width; [0, 1] per map when normalized
    targets: torch.Tensor  # (N,) the class index each map explains
    probabilities: torch.Tensor  # (N, num_classes) softmax of the logits of the same forward pass
    layer: str  # the module the maps were read from
    logits: Optional[torch.Tensor] = None  # (N, num_classes) of the same pass (multi-label runs score them per label)


def default_layer(model: nn.Module) -> tuple[str, nn.Module]:
    """The layer Grad-CAM reads by default: the output of the last stage of ``feature_info``.

    Trailing pooling layers of that stage are skipped (VGG ends its last stage with a max
    pool that would leave a 1x1 map on CIFAR-sized input).
    """
    info = getattr(model, "feature_info", None)
    if not info or not hasattr(model, "stages"):
        raise TypeError(f"{type(model).__name__} has no feature_info/stages (not a resnetkit model): "
                        "pass layer= (a module or its name) to explain it")
    modules = list(model.stages()[-1])
    while len(modules) > 1 and isinstance(modules[-1], _POOLS):
        modules.pop()
    layer = modules[-1]
    names = {id(m): n for n, m in model.named_modules()}
    return names.get(id(layer), info[-1].module), layer


def resolve_layer(model: nn.Module, layer: Union[None, str, nn.Module]) -> tuple[str, nn.Module]:
    """``(name, module)`` for ``layer``: None (the default), a module name or a module of ``model``."""
    if layer is None:
        return default_layer(model)
    if isinstance(layer, str):
        try:
            return layer, model.get_submodule(layer)
        except AttributeError:
            raise ValueError(f"{type(model).__name__} has no module named {layer!r}; "
                             "names are those of model.named_modules(), e.g. 'layer3'") from None
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer:
                return name, module
        raise ValueError(f"layer {type(layer).__name__} is not a module of {type(model).__name__}")
    raise TypeError(f"layer must be None, a module name or an nn.Module, got {type(layer).__name__}")


def _targets(target: Target, logits: torch.Tensor) -> torch.Tensor:
    n, num_classes = logits.shape
    if target is None:
        return logits.argmax(1)
    if isinstance(target, bool):
        raise TypeError("target must be a class index (int), a sequence of them or None, got a bool")
    if isinstance(target, int):
        t = torch.full((n,), target, dtype=torch.long, device=logits.device)
    else:
        t = torch.as_tensor(target, device=logits.device)
        if t.is_floating_point() or t.ndim != 1 or len(t) != n:
            raise ValueError(f"target must be one class index or {n} of them (one per input), got {target!r}")
        t = t.long()
    bad = t[(t < 0) | (t >= num_classes)]
    if len(bad):
        raise ValueError(f"target class {int(bad[0])} out of range: "
                         f"the model has {num_classes} classes (0..{num_classes - 1})")
    return t


def _cam(activations: torch.Tensor, grads: torch.Tensor, method: str) -> torch.Tensor:
    if method == "gradcam":
        weights = grads.mean(dim=(2, 3), keepdim=True)
    else:
        g2 = grads.pow(2)
        denominator = 2 * g2 + activations.sum(dim=(2, 3), keepdim=True) * g2 * grads
        alpha = g2 / torch.where(denominator != 0, denominator, torch.ones_like(denominator))
        weights = (alpha * F.relu(grads)).sum(dim=(2, 3), keepdim=True)
    return F.relu((weights * activations).sum(1))


def grad_cam(model: nn.Module, x: torch.Tensor, target: Target = None, layer: Union[None, str, nn.Module] = None,
             method: str = "gradcam", normalize: bool = True) -> Explanation:
    """Class-activation maps of ``model`` for the batch ``x`` (N, C, H, W), with the probabilities.

    ``target``: None (each input's predicted class), one class index, or one per input.
    ``layer``: None (the last stage, :func:`default_layer`), a module name or a module.
    ``normalize`` scales each map to [0, 1] (an all-zero map stays zero). The model is run
    in eval mode (BatchNorm statistics are not touched) and its mode is restored.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"x must be a 4-D batch (N, C, H, W), got {getattr(x, 'shape', type(x).__name__)}")
    name, module = resolve_layer(model, layer)
    captured: list[torch.Tensor] = []

    def keep(_module, _inputs, output):
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            raise ValueError(f"layer {name!r} gives {type(output).__name__}"
                             f"{tuple(output.shape) if isinstance(output, torch.Tensor) else ''}, "
                             "Grad-CAM needs a 4-D feature map (N, K, h, w)")
        captured.append(output)

    was_training = model.training
    handle = module.register_forward_hook(keep)
    model.eval()
    try:
        with torch.enable_grad():
            # The input requires grad so that the layer's output has a graph even when every
            # parameter is frozen; only dS/dA is computed, no parameter gradient accumulates.
            inputs = x.detach().clone().requires_grad_(True)
            logits = model(inputs)
            if not captured:
                raise ValueError(f"layer {name!r} did not run in the forward pass")
            if logits.ndim != 2:
                raise ValueError(f"the model returned shape {tuple(logits.shape)}; Grad-CAM needs logits (N, classes)")
            activations = captured[-1]
            targets = _targets(target, logits)
            score = logits.gather(1, targets[:, None]).sum()
            (grads,) = torch.autograd.grad(score, activations)
    finally:
        handle.remove()
        model.train(was_training)
    with torch.no_grad():
        cam = _cam(activations.detach().float(), grads.float(), method)
        cam = F.interpolate(cam[:, None], size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)[:, 0]
        cam = cam.clamp_min(0)  # bilinear interpolation of non-negative values stays >= 0; rounding aside
        if normalize:
            low = cam.amin(dim=(1, 2), keepdim=True)
            span = cam.amax(dim=(1, 2), keepdim=True) - low
            cam = torch.where(span > 0, (cam - low) / torch.where(span > 0, span, torch.ones_like(span)),
                              torch.zeros_like(cam))
        probabilities = logits.detach().float().softmax(1)
    return Explanation(cam, targets.detach(), probabilities, name, logits.detach().float())


def explain(model: nn.Module, x: torch.Tensor, target: Target = None, layer: Union[None, str, nn.Module] = None,
            method: str = "gradcam") -> torch.Tensor:
    """Grad-CAM maps (N, H, W) in [0, 1] of ``model`` for the batch ``x``; see :func:`grad_cam`.

    ``resnetkit.explain(model, x)`` explains each input's predicted class at the last stage
    of any resnetkit model (ResNets, pre-activation, VGG, Inception, keyword-spotting nets).
    """
    return grad_cam(model, x, target=target, layer=layer, method=method).maps
