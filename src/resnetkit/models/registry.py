"""Model registry: ``create_model(name, **kwargs)`` and ``list_models(pattern)``."""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from .pretrained import load_pretrained, pretrained_weights
from .tweaks import GENERIC_OPTIONS, ModelTweaks, PatchWhitening


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    builder: Callable[..., nn.Module]
    model_class: type
    description: str
    fixed: tuple[str, ...] = ()
    builder_checks_fixed: bool = False  # the builder takes a fixed option and checks its value itself

    @property
    def options(self) -> list[str]:
        """Keyword arguments ``create_model(name, ...)`` accepts, in the constructor's order."""
        return [k for k in _accepted_kwargs(self.model_class) if k not in self.fixed]


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    family: str, model_class: type, fixed: Sequence[str] = (), *, builder_checks_fixed: bool = False
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a builder under its function name; the docstring's first line describes it.

    ``model_class`` is the class the builder returns: its keyword-only constructor arguments
    are the options a user may pass, except those in ``fixed``, which the builder sets
    itself because they are what the name means (``se`` for seresnet50, ``batch_norm`` for
    vgg16_bn). Error messages and ``ModelEntry.options`` list what remains. A fixed option
    given to ``create_model`` is refused before the builder runs, unless
    ``builder_checks_fixed``: then the builder receives it, accepts the value its name implies
    and names the builder of any other (``vgg16_bn(batch_norm=False)``: use vgg16).
    """

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = fn.__name__
        if name in _REGISTRY:
            raise RuntimeError(f"model {name!r} registered twice")
        unknown = [k for k in fixed if k not in _accepted_kwargs(model_class)]
        if unknown:
            raise RuntimeError(f"{name}: fixed {unknown} are not keyword-only arguments of {model_class.__name__}")
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = ModelEntry(name, family, fn, model_class, doc[0] if doc else "", tuple(fixed),
                                     builder_checks_fixed)
        return fn

    return wrap


def list_models(pattern: str | None = None, family: str | None = None) -> list[str]:
    """Registered model names, optionally filtered by a shell pattern (``resnet*``) or family."""
    names = sorted(_REGISTRY, key=_natural_key)
    if pattern:
        glob = pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"
        names = [n for n in names if fnmatch.fnmatch(n, glob)]
    if family:
        names = [n for n in names if _REGISTRY[n].family == family]
    return names


def _natural_key(name: str) -> list:
    # resnet18 < resnet34 < resnet101, not lexicographic order.
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def get_model_entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise ValueError(f"unknown model {name!r}{hint} (see `resnetkit models` for all {len(_REGISTRY)})")
    return _REGISTRY[name]


def create_model(
    name: str,
    *,
    checkpoint_path: str | Path | None = None,
    pretrained: bool | str = False,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    **kwargs,
) -> nn.Module:
    """Build a registered model.

    Args:
        name: a registered name (``list_models()``).
        checkpoint_path: weights to load (torchvision, timm or resnetkit; .pth/.pt/.safetensors).
            conv1 is adapted when ``in_chans`` differs and the classifier is re-initialized
            when ``num_classes`` differs.
        pretrained: published weights by name (:mod:`resnetkit.models.pretrained`): True for the
            default, or a tag (``"IMAGENET1K_V2"``, timm's ``"ra2_in1k"``), fetched through
            torch.hub's cache with the hash checked. The model gets their preprocessing as
            ``data_config``, ``pretrained_cfg`` and, with the published classifier, ``class_names``.
            With another ``num_classes`` the whole file still loads strictly, then the
            classifier is replaced (fresh, ``num_classes`` outputs; 0 removes it).
        features_only: return a backbone that outputs a list of feature maps.
        out_indices: which feature levels ``features_only`` returns (default: all).
        **kwargs: the builder's keyword arguments (num_classes, in_chans, activation, norm, ...),
            and the options every model takes (:mod:`resnetkit.models.tweaks`: whiten,
            dirac_init, bn_eps, bn_momentum, bn_frozen_scale).
    """
    entry = get_model_entry(name)
    tweaks = ModelTweaks.take(kwargs)  # whiten, dirac_init, bn_*: options of every model (tweaks.py)
    weights, num_classes = None, kwargs.get("num_classes")
    if pretrained is not False and pretrained is not None:
        if checkpoint_path is not None:
            raise ValueError("give pretrained (published weights by name) or checkpoint_path (a file), not both")
        if tweaks.whiten:
            raise ValueError("whiten puts a whitening layer before conv1; pretrained weights expect the image at conv1")
        weights = pretrained_weights(name, pretrained)  # before building: an unknown tag costs nothing
        # Built as published, so that the whole file loads strictly; another head replaces it below.
        kwargs["num_classes"] = len(weights.classes)
    for key in kwargs:
        if key in entry.fixed and not entry.builder_checks_fixed:  # the builder sets it itself
            raise TypeError(_option_error(entry, key, f"fixes {key} (it is part of what the name means)"))
        if key not in entry.options and key not in entry.fixed:
            raise TypeError(_option_error(entry, key, f"does not take {key!r}"))
    if tweaks.whiten:
        whitening = PatchWhitening(kwargs.get("in_chans", 3), tweaks.whiten)
        with torch.device("meta"):
            raw = entry.builder(**kwargs)  # the model as it would take the raw input: its data config
        model = entry.builder(**{**kwargs, "in_chans": whitening.out_chans})
        model.set_input_whitening(whitening.to(next(model.parameters()).device), raw.data_config)
    else:
        model = entry.builder(**kwargs)
    tweaks.apply(model)
    model.model_name = name
    if checkpoint_path is not None:
        from .weights import load_checkpoint

        load_checkpoint(model, checkpoint_path)
    if weights is not None:
        load_pretrained(model, weights)
        if num_classes is not None and num_classes != len(weights.classes):
            model.reset_classifier(num_classes)
            model.class_names = None
    if features_only:
        from .base import FeatureListNet

        return FeatureListNet(model, out_indices)
    if out_indices is not None:
        raise ValueError("out_indices is only meaningful with features_only=True")
    return model


def _accepted_kwargs(model_class: type) -> list[str]:
    """The keyword-only arguments of the class's constructor: the user-facing options.

    Positional arguments (block, layers, depth) define the architecture and come from the
    builder, never from the user.
    """
    params = inspect.signature(model_class.__init__).parameters.values()
    return [p.name for p in params if p.kind is p.KEYWORD_ONLY]


def _option_error(entry: ModelEntry, key: str, problem: str) -> str:
    note = getattr(entry.model_class, "options_note", "")
    # Suggest only for typos: drop_path_rate is a real option elsewhere, not a misspelt drop_rate.
    known = {k for e in _REGISTRY.values() for k in _accepted_kwargs(e.model_class)}
    close = [] if key in known else difflib.get_close_matches(key, [*entry.options, *GENERIC_OPTIONS], n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (
        f"{entry.name} {problem}{hint}; accepted arguments: {', '.join(entry.options)} "
        f"({entry.family} family{': ' + note if note else ''}), and those of every model: {', '.join(GENERIC_OPTIONS)}"
    )
