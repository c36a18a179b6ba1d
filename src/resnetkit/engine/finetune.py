"""Fine-tuning from pretrained weights: ``--init``, frozen stages and BatchNorm, learning-rate
multipliers for backbone and head, and a head-only warm-up before the whole net trains."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Sequence

from torch import nn

from ..data import ImageInputSpec, input_spec_from_dict
from ..models import PretrainedWeights, freeze_batchnorm, freeze_stages
from ..models.pretrained import load_pretrained
from ..models.weights import CheckpointError, load_weights, read_state_dict
from .checkpoint import checkpoint_weights, read_checkpoint
from .checkpoint import find_checkpoint

log = logging.getLogger(__name__)


def initialize_from(model: nn.Module, source: str | Path, classes: Sequence[str]) -> list[str]:
    """Load pretrained weights into ``model`` (in place) from a torchvision/timm/resnetkit file or a run.

    The classifier starts fresh when the classes differ (another count, or for a resnetkit
    run other names); ``conv1`` is adapted to the model's input channels. A resnetkit run
    also brings its preprocessing (mean, std, input size), which becomes the model's data
    config. Returns the report of what was loaded and adapted.
    """
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"--init {source}: no such file or run directory")
    if path.is_dir():
        path = find_checkpoint(path, "best")
    state = _resnetkit_state(path)
    if state is None:  # torchvision, timm or a plain state dict
        return load_weights(model, read_state_dict(path), path)
    same_classes = list(state["classes"]) == list(classes)
    report = load_weights(model, checkpoint_weights(state), path, keep_head=same_classes)
    spec = input_spec_from_dict(dict(state["input"]))
    config = getattr(model, "data_config", None)
    if isinstance(spec, ImageInputSpec) and config is not None and spec.in_chans == model.in_chans:
        model.data_config = dataclasses.replace(config, mean=spec.mean, std=spec.std,
                                                input_size=(spec.in_chans, *spec.image_size), crop_pct=spec.crop_pct)
        report.append(f"preprocessing from {path.name}: mean {spec.mean}, std {spec.std}, "
                      f"size {spec.image_size[0]}x{spec.image_size[1]}")
    return report


def initialize_from_pretrained(model: nn.Module, weights: PretrainedWeights, path: Path,
                               classes: Sequence[str]) -> list[str]:
    """``--pretrained``: :func:`initialize_from` for the published file at ``path`` (already fetched).

    The published classifier is kept only for the same classes in the same order (training on
    ImageNet's own labels); otherwise it starts fresh. The weights' preprocessing (mean, std,
    resize and crop) becomes the model's data config, as a resnetkit run's does for ``--init``.
    """
    return load_pretrained(model, weights, path, keep_head=list(classes) == list(weights.classes))


def _resnetkit_state(path: Path):
    """The run checkpoint at ``path``, or None when it is another kind of weights file."""
    if path.suffix == ".safetensors":
        return None
    try:
        return read_checkpoint(path)
    except CheckpointError as err:
        if "is not a resnetkit run checkpoint" in str(err):
            return None
        raise


def is_head_parameter(model: nn.Module) -> set[int]:
    """ids of the classifier's parameters (``get_classifier()``), empty for models without one."""
    get = getattr(model, "get_classifier", None)
    head = get() if get is not None else None
    return {id(p) for p in head.parameters()} if isinstance(head, nn.Module) else set()


class FineTuning:
    """What stays fixed while a pretrained model trains, epoch by epoch.

    ``freeze_stages`` and ``freeze_bn`` hold for the whole run; during the first
    ``head_only_epochs`` only the classifier learns and every other BatchNorm keeps its
    pretrained statistics. The plan is a function of the epoch, so a resumed run is in the
    same phase as an uninterrupted one.
    """

    def __init__(self, model: nn.Module, freeze_stages_: int = 0, freeze_bn: bool = False,
                 head_only_epochs: int = 0) -> None:
        if freeze_stages_:
            stages = getattr(model, "stages", None)
            if stages is None:
                raise ValueError(f"freeze_stages needs a model with stages(); {type(model).__name__} has none")
            freeze_stages(model, freeze_stages_)
        if freeze_bn:
            freeze_batchnorm(model)
        self.model = model
        self.head_only_epochs = head_only_epochs
        head = is_head_parameter(model)
        if head_only_epochs and not head:
            raise ValueError(f"head_only_epochs needs a model with a classifier (get_classifier()); "
                             f"{type(model).__name__} has none")
        # The parameters the warm-up holds still: trainable ones outside the head.
        self._backbone = [p for p in model.parameters() if p.requires_grad and id(p) not in head]
        self._backbone_norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                                and any(id(p) not in head for p in m.parameters(recurse=False))]

    @property
    def active(self) -> bool:
        return self.head_only_epochs > 0

    def apply(self, epoch: int) -> None:
        """Set what trains in ``epoch`` (0-based); call after ``model.train()``."""
        if not self.active:
            return
        warm_up = epoch < self.head_only_epochs
        for p in self._backbone:
            p.requires_grad_(not warm_up)
        if warm_up:
            for m in self._backbone_norms:
                m.eval()  # the pretrained statistics stay while only the head learns

