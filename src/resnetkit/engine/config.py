"""Training configuration: one dataclass, filled from defaults, a YAML recipe, then flags.

Every field is checked when the config is built, so a bad value stops the run before any
data is read, with a message that names the setting and what it allows.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import yaml

from ..data.audio_features import FEATURE_KINDS, FeatureConfig
from ..data.audio_layouts import AUDIO_LAYOUTS, check_fsdd_split
from ..data.folders import ON_CORRUPT
from ..runtime.device import PRECISIONS
from .tracking import LOGGERS, check_mlflow_uri, parse_loggers
from .tta import TTA_MODES

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "cosine", "onecycle", "constant", "linear")
LR_UNITS = ("batch", "example")
AMP_MODES = tuple(p for p in PRECISIONS if p != "fp32")  # auto, bf16, fp16, off
MILESTONE_UNITS = ("epoch", "step")
SAMPLERS = ("uniform", "balanced")
MONITORS = ("auto", "val_accuracy", "val_loss", "val_map")
TASKS = ("auto", "single", "multilabel")
CALIBRATIONS = ("temperature", "none")
RECIPE_PACKAGE = "resnetkit.recipes"
__all__ = ["AMP_MODES", "AUDIO_LAYOUTS", "CALIBRATIONS", "FEATURE_KINDS", "LOGGERS", "LR_UNITS", "MILESTONE_UNITS",
           "MONITORS", "ON_CORRUPT", "OPTIMIZERS", "SAMPLERS", "SCHEDULES", "TASKS",
           "TrainConfig", "build_config", "load_recipe", "recipe_names"]


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved as config.yaml in the run directory."""

    # What to train on what.
    model: str = "resnet20"
    model_args: dict[str, Any] = field(default_factory=dict)  # extra constructor arguments
    data: str = "digits"
    val_split: Optional[float] = None  # fraction held out when the data has no validation split
    img_size: Optional[int] = None  # default: the data's own size when held in memory, else the model's
    in_chans: Optional[int] = None  # default: the data's (1 for digits/MNIST and audio, 3 for colour images)
    on_corrupt: str = "skip"  # skip (named in the log) or stop at an unreadable file
    path_col: str = "path"  # a label file's (--data labels.csv) column of file paths
    label_col: str = "label"  # a label file's column of labels
    label_sep: str = ";"  # what separates the labels of a multi-label cell
    # single or multilabel; auto: multi-label when the label file says so (several labels in a cell,
    # or one 0/1 column per label). Multi-label runs train sigmoid outputs with binary cross-entropy.
    task: str = "auto"
    augment: str = "auto"  # a preset (cifar, digits, imagenet, speech, ...) or auto: chosen from the data
    augment_args: dict[str, Any] = field(default_factory=dict)  # preset fields to override
    # Audio data (ignored for images): the feature settings as given (recipe, flags); None is
    # FeatureConfig's defaults. The complete front end a run used is its input spec's record.
    audio: Optional[dict[str, Any]] = None
    audio_layout: str = "auto"  # auto, folders (class subfolders), fsdd, speech-commands
    fsdd_split: str = "official"  # official (indices 0-4 held out) or speakers:NAME[,NAME] (held-out speakers)
    # Speech Commands: auto (its 12-class protocol when the ten words and others are there), none
    # (every word a class), speech-commands (the ten words), or a comma-separated list of words.
    keywords: str = "auto"
    # Optimization.
    epochs: int = 30
    max_steps: Optional[int] = None  # stop after this many optimizer steps (overrides epochs)
    time_budget_min: Optional[float] = None  # wall-clock budget: the epochs that fit (at most `epochs`), re-fitted after each epoch
    stop_after_min: Optional[float] = None  # this process stops with a checkpoint after this long; resume continues
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    # batch: lr and weight_decay are PyTorch's. example: both are per training example and free of
    # the momentum (airbench, Page): the step is lr * batch_size / (1 + 1/(1 - momentum)), so the
    # batch size and the momentum can change without retuning them (SGD only).
    lr_unit: str = "batch"
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4  # not applied to norm and bias parameters
    schedule: str = "cosine"
    warmup_epochs: float = 0.0  # linear warm-up to lr
    warmup_from: float = 0.0  # the warm-up's first factor of lr (airbench: 0.2); 0 starts at lr/warm-up steps
    lr_floor: float = 0.0  # schedule linear: the factor of lr it decays to by the last step (airbench: 0.07)
    milestones: list[float] = field(default_factory=list)  # step schedule: where lr is multiplied by gamma
    milestone_unit: str = "epoch"  # epoch or step
    gamma: float = 0.1
    label_smoothing: float = 0.0
    ema_decay: Optional[float] = None  # e.g. 0.999, warmed up as min(decay, (1+n)/(10+n)); validation uses the average
    # Lookahead-style averaging (Zhang et al. 2019, as airbench): every k steps an average of the
    # weights is updated and copied back into them; its decay per step rises from 0 to
    # lookahead_decay as (step/total)^3, and the run ends on the average. 0 is off (airbench: 5).
    lookahead_every: int = 0
    lookahead_decay: float = 0.95
    norm_lr_mult: float = 1.0  # learning rate of normalization layers' parameters, relative (airbench: 64)
    whiten_bias_epochs: int = 0  # epochs the whitening layer's bias learns (model_args whiten=k; airbench: 3)
    grad_clip: Optional[float] = None  # max global gradient norm
    # Micro-batches per optimizer step: the gradient of K batches of batch_size, as one K times
    # larger batch gives it; schedules, EMA, warm-up, max_steps and the time budget count optimizer steps.
    accum_steps: int = 1
    # Imbalanced classes. class_weights: none, balanced (n / (k * count), scikit-learn's), or a file
    # (JSON {class: weight} or one "class,weight" per line); sampler balanced draws every class
    # equally often (with replacement), the same draw on every process and after a resume.
    class_weights: str = "none"
    sampler: str = "uniform"
    # Early stopping: stop when the monitored validation metric has not improved for this many
    # epochs (None: never); the monitored metric also chooses the best epoch (best.pt).
    early_stop: Optional[int] = None
    # auto (val_map for multi-label runs, else val_accuracy), val_accuracy, val_loss or val_map
    monitor: str = "auto"
    # calibration of the probabilities on the validation split at the end of the run: temperature
    # (one scalar dividing the logits, fitted by NLL) or none.
    calibrate: str = "temperature"
    # Fine-tuning.
    init: Optional[str] = None  # pretrained weights: a torchvision/timm/resnetkit file or a run directory
    # Published weights by name (models/pretrained.py): true for the model's default, or a tag such as
    # IMAGENET1K_V2; fetched through torch.hub's cache, they are `init` from that file plus its preprocessing.
    pretrained: Optional[Union[bool, str]] = None
    freeze_stages: int = 0  # stem and first stages that stay fixed (0: none)
    freeze_bn: bool = False  # every BatchNorm keeps its pretrained statistics and affine
    backbone_lr_mult: float = 1.0  # learning rate of all but the classifier, relative to lr
    head_only_epochs: int = 0  # epochs in which only the classifier learns, before the whole net does
    # Speed.
    device: str = "auto"  # auto: CUDA when present, else CPU
    amp: str = "auto"  # auto: bf16 on CPUs with native bf16 and on CUDA with bf16, fp16 on older GPUs, else off
    channels_last: bool = True
    compile: bool = False
    workers: Optional[int] = None  # DataLoader workers for data on disk (default: CPU count, at most 8)
    sync_bn: bool = False  # SyncBatchNorm across processes under torchrun
    # Reproducibility.
    seed: int = 0
    # The train/validation split (and any other sampling of which samples are used) follows this
    # seed instead of ``seed`` when given: runs of several training seeds then share one validation
    # set, which a paired comparison of their predictions needs (compare --seeds).
    split_seed: Optional[int] = None
    deterministic: bool = False
    # Output.
    out: Optional[str] = None  # run directory; default runs/<name>
    name: Optional[str] = None  # default: <model>-<data>-<time>
    quiet: bool = False
    eval_every: int = 1  # epochs between validations
    tta: str = "none"  # test-time augmentation of the final metrics (metrics.json): none or flip (images)
    # Experiment tracking (engine/tracking.py): trackers, as a list or "tensorboard,mlflow".
    log: list[str] = field(default_factory=list)
    log_every: int = 20  # optimizer steps between the trackers' training points (loss, lr, throughput)
    # MLflow tracking URI; None: $MLFLOW_TRACKING_URI, else ./mlflow.db with the artifacts in ./mlruns.
    mlflow_uri: Optional[str] = None

    def __post_init__(self) -> None:
        if isinstance(self.audio, FeatureConfig):
            self.audio = self.audio.to_dict()
        elif isinstance(self.audio, dict):
            self.audio = dict(self.audio)
        self.log = parse_loggers(self.log)  # one spelling in config.yaml, whichever was given
        self.validate()

    @property
    def features(self) -> Optional[FeatureConfig]:
        """The audio front end these settings ask for (None: the data's default)."""
        return None if self.audio is None else FeatureConfig.from_dict(self.audio)

    def validate(self) -> None:
        """Raise ValueError/TypeError naming the first setting that is not allowed."""
        _choice(self, "optimizer", OPTIMIZERS)
        _choice(self, "schedule", SCHEDULES)
        _choice(self, "amp", AMP_MODES)
        _choice(self, "on_corrupt", ON_CORRUPT)
        _choice(self, "milestone_unit", MILESTONE_UNITS)
        _choice(self, "audio_layout", AUDIO_LAYOUTS)
        _choice(self, "tta", TTA_MODES)
        _choice(self, "lr_unit", LR_UNITS)
        _choice(self, "sampler", SAMPLERS)
        _choice(self, "monitor", MONITORS)
        _choice(self, "task", TASKS)
        if not isinstance(self.label_sep, str):
            raise TypeError(f"label_sep must be a string, got {self.label_sep!r}")
        _choice(self, "calibrate", CALIBRATIONS)
        if not isinstance(self.class_weights, str) or not self.class_weights:
            raise TypeError(f"class_weights must be none, balanced or a file of weights, got {self.class_weights!r}")
        _integer(self, "accum_steps", minimum=1)
        _integer(self, "early_stop", minimum=1, optional=True)
        check_fsdd_split(self.fsdd_split)
        for name in ("model", "data", "augment", "device", "keywords", "path_col", "label_col"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise TypeError(f"{name} must be a non-empty string, got {getattr(self, name)!r}")
        _device_spelling(self.device)
        for name in ("model_args", "augment_args"):
            if not isinstance(getattr(self, name), dict):
                raise TypeError(f"{name} must be a mapping of settings, got {type(getattr(self, name)).__name__}")
        if self.audio is not None:
            try:
                FeatureConfig.from_dict(self.audio)
            except (TypeError, ValueError) as err:
                raise type(err)(f"audio: {err}") from None
        for name in ("epochs", "batch_size", "eval_every"):
            _integer(self, name, minimum=1)
        _integer(self, "max_steps", minimum=1, optional=True)
        _integer(self, "img_size", minimum=1, optional=True)
        _integer(self, "in_chans", minimum=1, optional=True)
        _integer(self, "workers", minimum=0, optional=True)
        _integer(self, "seed", minimum=0)
        _integer(self, "split_seed", minimum=0, optional=True)
        _integer(self, "freeze_stages", minimum=0)
        _integer(self, "head_only_epochs", minimum=0)
        _number(self, "backbone_lr_mult", low=0, low_open=True)
        if self.init is not None and (not isinstance(self.init, str) or not self.init):
            raise TypeError(f"init must be a path to a weights file or run directory, got {self.init!r}")
        if self.pretrained is not None and not isinstance(self.pretrained, bool) and (
                not isinstance(self.pretrained, str) or not self.pretrained.strip()):
            raise TypeError(f"pretrained must be true or a tag such as IMAGENET1K_V2, got {self.pretrained!r}")
        if self.pretrained and self.init:
            raise ValueError(f"give init (a weights file or run: {self.init!r}) or pretrained (published weights by "
                             f"name: {self.pretrained!r}), not both")
        if self.pretrained and self.model_args.get("whiten"):
            raise ValueError("whiten puts a whitening layer before conv1; pretrained weights expect the image at conv1 "
                             "(drop one of whiten and pretrained)")
        _number(self, "lr", low=0, low_open=True)
        _number(self, "momentum", low=0, high=1, high_open=True)
        _number(self, "weight_decay", low=0)
        _number(self, "warmup_epochs", low=0)
        _number(self, "warmup_from", low=0, high=1)
        _number(self, "lr_floor", low=0, high=1)
        _integer(self, "lookahead_every", minimum=0)
        _number(self, "lookahead_decay", low=0, high=1, low_open=True)
        _number(self, "norm_lr_mult", low=0, low_open=True)
        _integer(self, "whiten_bias_epochs", minimum=0)
        if parse_loggers(self.log) != self.log:
            raise ValueError(f"log must be a list of distinct tracker names ({', '.join(LOGGERS)}), got {self.log!r}")
        _integer(self, "log_every", minimum=1)
        if self.mlflow_uri is not None:
            check_mlflow_uri(self.mlflow_uri, "mlflow_uri")
        _number(self, "gamma", low=0, high=1, low_open=True)
        _number(self, "label_smoothing", low=0, high=1, high_open=True)
        _number(self, "time_budget_min", low=0, low_open=True, optional=True)
        _number(self, "stop_after_min", low=0, low_open=True, optional=True)
        _number(self, "grad_clip", low=0, low_open=True, optional=True)
        _number(self, "ema_decay", low=0, high=1, low_open=True, high_open=True, optional=True)
        _number(self, "val_split", low=0, high=1, low_open=True, high_open=True, optional=True)
        for name in ("nesterov", "channels_last", "compile", "sync_bn", "deterministic", "quiet", "freeze_bn"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.milestones, (list, tuple)):
            raise TypeError(f"milestones must be a list of numbers, got {self.milestones!r}")
        for m in self.milestones:
            if isinstance(m, bool) or not isinstance(m, (int, float)) or not math.isfinite(m) or m < 0:
                raise ValueError(f"milestones must be numbers >= 0, got {self.milestones!r}")
        if self.schedule == "step" and not self.milestones:
            raise ValueError("schedule 'step' needs milestones (e.g. milestones: [91, 136])")
        if self.lr_unit == "example" and self.optimizer != "sgd":
            raise ValueError("lr_unit 'example' states SGD's learning rate and weight decay per example; "
                             f"optimizer {self.optimizer!r} takes lr_unit 'batch'")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "TrainConfig":
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            hints = []
            for u in unknown:
                close = difflib.get_close_matches(u, known, 2)
                hints.append(f"{u} (did you mean {', '.join(close)}?)" if close else u)
            raise ValueError(f"{source}: unknown key(s): {', '.join(hints)}")
        try:
            return cls(**values)
        except (TypeError, ValueError) as err:
            raise type(err)(f"{source}: {err}") from None


def _choice(config: TrainConfig, name: str, allowed) -> None:
    value = getattr(config, name)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _device_spelling(device: str) -> None:
    head, _, index = device.partition(":")
    if head not in ("auto", "cpu", "cuda") or (index and (head != "cuda" or not index.isdigit())):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N; got {device!r}")


def _integer(config: TrainConfig, name: str, minimum: int, optional: bool = False) -> None:
    value = getattr(config, name)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a whole number, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _number(config: TrainConfig, name: str, low: float | None = None, high: float | None = None,
            low_open: bool = False, high_open: bool = False, optional: bool = False) -> None:
    value = getattr(config, name)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value) or below or above:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
        raise ValueError(f"{name} must be a finite number {' and '.join(p for p in (lo, hi) if p)}, got {value}")


# -- recipes ----------------------------------------------------------------------------------------


def recipe_names() -> list[str]:
    """The recipes shipped in the package, addressable by name (``--recipe cifar10_resnet20_fast``)."""
    return sorted(p.name[:-5] for p in resources.files(RECIPE_PACKAGE).iterdir() if p.name.endswith(".yaml"))


def _find_recipe(recipe: str | Path) -> tuple[str, str]:
    """(where it was found, its text): a file path, else a recipe shipped in the package by name."""
    path = Path(recipe).expanduser()
    if path.is_file():
        return str(path), path.read_text()
    # "recipes/cifar10_resnet20_fast.yaml" from another folder, or a bare name: the packaged recipe.
    name = path.name[:-5] if path.name.endswith((".yaml", ".yml")) else path.name
    name = name[:-4] if name.endswith(".yml") else name
    packaged = resources.files(RECIPE_PACKAGE) / f"{name}.yaml"
    if packaged.is_file():
        return f"recipe {name}", packaged.read_text()
    raise FileNotFoundError(f"recipe {recipe}: no such file, and not a packaged recipe ({', '.join(recipe_names())})")


def load_recipe(recipe: str | Path) -> dict[str, Any]:
    """Read a YAML recipe (a path or a packaged recipe's name) into a dict of TrainConfig fields."""
    where, text = _find_recipe(recipe)
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{where} is not valid YAML: {err}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{where} must be a mapping of settings, got {type(values).__name__}")
    return values


def build_config(recipe: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, then the recipe, then explicit overrides (the command line's flags).

    Mappings (model_args, augment_args, audio) are merged key by key, so a flag changes one
    setting of a recipe's mapping without dropping the others.
    """
    values: dict[str, Any] = {}
    source = "command line"
    if recipe:
        values.update(load_recipe(recipe))
        source = f"recipe {recipe} + command line"
    return TrainConfig.from_dict(merge_settings(values, overrides or {}), source)


def merge_settings(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` applied; a mapping (model_args, augment_args, audio) changes key by key."""
    values = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    return values


def config_yaml(config: TrainConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
