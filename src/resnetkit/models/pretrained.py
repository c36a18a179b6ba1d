"""Published weights by name: ``create_model("resnet50", pretrained=True)``.

The zoo's torchvision-compatible models take torchvision's published ImageNet weights, and
the ResNet-D / SE-ResNet models timm's (their parameter names and shapes equal the
publisher's model of the same name; tests/models/test_pretrained.py checks every entry).
Everything about a file (URL, hash prefix, accuracy, class names, preprocessing) is read
from the publisher's own tables at run time (torchvision's weight enums, timm's pretrained
configs), never copied by hand.

Files go through torch.hub's cache (``<torch.hub.get_dir()>/checkpoints``, i.e.
``$TORCH_HOME/hub/checkpoints``), the place torchvision and timm use, and the file's sha256
must start with the hash prefix in its published name, for a download and for a file
already in the cache alike.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.client
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch
import torch.hub
import torchvision.models
from torch import nn

from .base import DataConfig, make_data_config
from .weights import CheckpointError, load_weights, read_state_dict

log = logging.getLogger(__name__)

# Zoo models whose parameter names and shapes are those of torchvision's model of the same name.
TORCHVISION_MODELS = (
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
    "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
    "googlenet",
)
# Zoo models torchvision has no weights for, whose names and shapes are timm's (ResNet-D, SE-ResNet).
# timm's other ResNet weights are left out: torchvision's cover those models.
TIMM_MODELS = ("resnet18d", "resnet34d", "resnet50d", "resnet101d", "resnet152d", "seresnet50")

# torchvision's GoogLeNet weights are used with transform_input=True, which maps ImageNet-normalized
# input to (x - 0.5) / 0.5; resnetkit's GoogLeNet has no such step, so its input is normalized that way.
_PREPROCESSING_OVERRIDES = {"googlenet": {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}}

Tag = Union[bool, str]


class PretrainedWeightsError(CheckpointError):
    """Published weights that cannot be used: unknown, damaged in the cache, or not fitting the model."""


class WeightsDownloadError(PretrainedWeightsError):
    """The file is not in the cache and cannot be downloaded; ``url`` and ``path`` say what to put where."""

    def __init__(self, message: str, url: str, path: Path) -> None:
        super().__init__(message)
        self.url, self.path = url, path


@dataclass(frozen=True)
class PretrainedWeights:
    """One published weights file of a zoo model, as its publisher describes it."""

    model: str  # the zoo's name
    tag: str  # torchvision's enum member (IMAGENET1K_V2) or timm's tag (ra2_in1k)
    source: str  # torchvision or timm
    url: str
    sha256_prefix: str  # from the file's published name (resnet50-11ad3fa6.pth)
    classes: tuple[str, ...]  # the classifier's outputs, in order
    data_config: DataConfig  # the evaluation preprocessing the published accuracy was measured with
    default: bool  # what pretrained=True picks
    acc1: Optional[float] = None  # published ImageNet-1K top-1 (%), where the publisher states it
    acc5: Optional[float] = None
    num_params: Optional[int] = None  # of the published file (GoogLeNet's includes its auxiliary heads)
    file_size_mb: Optional[float] = None

    @property
    def label(self) -> str:
        return f"{self.model} {self.tag} ({self.source})"

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def cache_path(self) -> Path:
        """Where torch.hub keeps the file: ``<torch.hub.get_dir()>/checkpoints/<filename>``."""
        return Path(torch.hub.get_dir()) / "checkpoints" / self.filename

    @property
    def resize_size(self) -> int:
        """The short side images are resized to before the center crop."""
        return int(round(self.data_config.input_size[-1] / self.data_config.crop_pct))

    def data_config_for(self, in_chans: int) -> DataConfig:
        """The weights' preprocessing for a model with ``in_chans`` inputs (statistics as conv1 is adapted)."""
        dc = self.data_config
        adapted = make_data_config(in_chans, dc.input_size[-1], dc.mean, dc.std, dc.crop_pct)
        return dataclasses.replace(adapted, interpolation=dc.interpolation)


def pretrained_models() -> list[str]:
    """Zoo models that have published weights (timm's only count with timm installed)."""
    return [m for m in (*TORCHVISION_MODELS, *TIMM_MODELS) if _entries(m)]


def list_pretrained(model: Optional[str] = None) -> list[PretrainedWeights]:
    """Every published weights file (of ``model`` only, when given), the default first per model."""
    names = [model] if model is not None else pretrained_models()
    return [w for name in names for w in sorted(_entries(name), key=lambda w: not w.default)]


def pretrained_weights(model: str, tag: Tag = True) -> PretrainedWeights:
    """The weights ``tag`` names for ``model``: True or ``"DEFAULT"`` for the default, else a tag (any case).

    Raises :class:`PretrainedWeightsError` naming the models that have weights, or the model's tags.
    """
    if isinstance(tag, bool) or tag is None:
        if not tag:
            raise ValueError(f"pretrained must be True or a tag, got {tag!r}")
    elif not isinstance(tag, str) or not tag.strip():
        raise TypeError(f"pretrained must be True or a tag such as 'IMAGENET1K_V2' or 'DEFAULT', got {tag!r}")
    entries = _entries(model)
    if not entries:
        raise PretrainedWeightsError(_no_weights_message(model))
    wanted = "DEFAULT" if tag is True else tag.strip()
    for w in entries:
        if (w.default and wanted.upper() == "DEFAULT") or w.tag.lower() == wanted.lower():
            return w
    tags = ", ".join(w.tag + (" (DEFAULT)" if w.default else "") for w in entries)
    raise PretrainedWeightsError(f"{model} has no weights tagged {wanted!r}; its tags: {tags} "
                                 "(see `resnetkit models --pretrained`)")


def _no_weights_message(model: str) -> str:
    have = pretrained_models()
    timm_note = ""
    if not _timm_available():
        timm_note = f"; with timm installed also {', '.join(TIMM_MODELS)} (pip install timm)"
    return (f"{model} has no published pretrained weights; models with weights: {', '.join(have)}{timm_note} "
            "(see `resnetkit models --pretrained`)")


# -- the publishers' tables -------------------------------------------------------------------------


@functools.cache
def _entries(model: str) -> tuple[PretrainedWeights, ...]:
    if model in TORCHVISION_MODELS:
        return _torchvision_entries(model)
    if model in TIMM_MODELS and _timm_available():
        return _timm_entries(model)
    return ()


def _torchvision_entries(model: str) -> tuple[PretrainedWeights, ...]:
    enum = torchvision.models.get_model_weights(model)
    out = []
    for w in enum:  # iterating an Enum skips the DEFAULT alias
        meta = w.meta
        prefix = _hash_prefix(w.url)
        metrics = meta.get("_metrics", {}).get("ImageNet-1K", {})
        # vgg16's IMAGENET1K_FEATURES has no classifier worth the name (no categories, NaN accuracy).
        if meta.get("categories") is None or prefix is None:
            continue
        t = w.transforms()
        crop, resize = t.crop_size[0], t.resize_size[0]
        stats = {"mean": tuple(t.mean), "std": tuple(t.std), **_PREPROCESSING_OVERRIDES.get(model, {})}
        config = DataConfig((3, crop, crop), stats["mean"], stats["std"], t.interpolation.value, crop / resize)
        out.append(PretrainedWeights(model, w.name, "torchvision", w.url, prefix, tuple(meta["categories"]), config,
                                     default=w is enum.DEFAULT, acc1=metrics.get("acc@1"), acc5=metrics.get("acc@5"),
                                     num_params=meta.get("num_params"), file_size_mb=meta.get("_file_size")))
    return tuple(out)


def _timm_available() -> bool:
    try:
        import timm  # noqa: F401  (an optional dependency: only its weight tables are read)
    except ImportError:
        return False
    return True


def _timm_entries(model: str) -> tuple[PretrainedWeights, ...]:
    import timm
    from timm.models import get_pretrained_cfg

    default_tag = get_pretrained_cfg(model).tag
    # timm's ImageNet-1K classes are torchvision's, in the same (synset) order.
    imagenet = tuple(torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    out = []
    for full in timm.list_pretrained(f"{model}.*"):
        cfg = get_pretrained_cfg(full)
        prefix = _hash_prefix(cfg.url or "")
        # Only files timm publishes by URL with a hash in the name (not those on the Hugging Face hub
        # alone, which carry no hash to check) and with ImageNet-1K's 1000 classes.
        if prefix is None or cfg.num_classes != len(imagenet) or not cfg.tag.endswith("in1k"):
            continue
        size = cfg.input_size[-1]
        config = DataConfig((3, size, size), tuple(cfg.mean), tuple(cfg.std), cfg.interpolation, float(cfg.crop_pct))
        out.append(PretrainedWeights(model, cfg.tag, "timm", cfg.url, prefix, imagenet, config,
                                     default=cfg.tag == default_tag))
    if out and not any(w.default for w in out):  # timm's default is on the hub only: the first by URL
        out[0] = dataclasses.replace(out[0], default=True)
    return tuple(out)


def _hash_prefix(url: str) -> Optional[str]:
    # torch.hub's convention: the file name ends in "-<first hex digits of its sha256>.<ext>".
    match = torch.hub.HASH_REGEX.search(url.rsplit("/", 1)[-1])
    return match.group(1) if match and len(match.group(1)) >= 6 else None


# -- the file: cache, download, hash ----------------------------------------------------------------


def fetch_weights(weights: PretrainedWeights, progress: bool = True) -> Path:
    """The checked file of ``weights`` in torch.hub's cache, downloaded first when it is not there."""
    path = weights.cache_path
    if not path.is_file():
        _download(weights, path, progress)
    _check_hash(weights, path)
    return path


def _download(weights: PretrainedWeights, path: Path, progress: bool) -> None:
    log.info("downloading %s to %s", weights.url, path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".download")
        os.close(fd)
        torch.hub.download_url_to_file(weights.url, tmp, progress=progress)
        _check_hash(weights, Path(tmp), downloaded=True)
        os.replace(tmp, path)  # only a checked file ever has the cache's name
        tmp = None
    except (OSError, http.client.HTTPException) as err:  # URLError is an OSError, so are refused connections
        reason = getattr(err, "reason", None) or err
        raise WeightsDownloadError(
            f"cannot download the pretrained weights {weights.label}: {type(err).__name__}: {reason}\n"
            f"  Download {weights.url} where there is internet and put it at\n  {path}\n"
            f"  (torch.hub's cache, <TORCH_HOME>/hub/checkpoints; set TORCH_HOME to use another folder).",
            weights.url, path) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _check_hash(weights: PretrainedWeights, path: Path, downloaded: bool = False) -> None:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    actual = digest.hexdigest()
    expected = weights.sha256_prefix
    if actual.startswith(expected):
        return
    if downloaded:
        raise PretrainedWeightsError(
            f"the download of {weights.url} has sha256 {actual[:len(expected)]}..., but its published name says "
            f"{expected}...; nothing was kept. Run again (a truncated transfer or a proxy's page?).")
    raise PretrainedWeightsError(
        f"{path} is not the published file of {weights.label}: its sha256 starts with {actual[:len(expected)]}, "
        f"the published {weights.filename} with {expected}. Delete it and run again to download it anew "
        f"({weights.url}), or put the right file there.")


# -- into a model -----------------------------------------------------------------------------------


def load_pretrained(model: nn.Module, weights: PretrainedWeights, path: Optional[Path] = None,
                    keep_head: bool = True, progress: bool = True) -> list[str]:
    """Load ``weights`` into ``model`` (in place) and attach their preprocessing and class names.

    The file is fetched (or ``path``, already fetched, is used), then loaded as
    :func:`~resnetkit.models.weights.load_weights` does: strictly, conv1 adapted to the model's
    input channels, the classifier fresh when its shape differs or ``keep_head`` is False.
    The model gets ``pretrained_cfg`` (``weights``), a ``data_config`` of the weights'
    preprocessing and, when the published classifier was loaded, ``class_names``. Returns
    what was loaded and adapted.
    """
    path = path or fetch_weights(weights, progress)
    try:
        report = load_weights(model, read_state_dict(path), path, keep_head=keep_head)
    except CheckpointError as err:
        name = getattr(model, "model_name", type(model).__name__)
        raise PretrainedWeightsError(
            f"the pretrained weights {weights.label} do not fit this {name} (they are for the model's published "
            f"architecture, with its default options): {err}\n  Built with other architecture options? Build "
            f"{name} with its defaults. Otherwise the cached file is not {weights.model}'s: delete {path} and run "
            "again to download it anew.") from None
    model.pretrained_cfg = weights
    in_chans = getattr(model, "in_chans", 3)
    if getattr(model, "data_config", None) is not None:
        model.data_config = weights.data_config_for(in_chans)
    head_loaded = keep_head and getattr(model, "num_classes", None) == len(weights.classes)
    model.class_names = list(weights.classes) if head_loaded else None
    dc = model.data_config if getattr(model, "data_config", None) is not None else weights.data_config
    report.append(f"preprocessing of {weights.tag}: resize {weights.resize_size}, center crop {dc.input_size[-1]} "
                  f"({dc.interpolation}), mean {tuple(round(m, 4) for m in dc.mean)}, "
                  f"std {tuple(round(s, 4) for s in dc.std)}")
    return report
