"""Training configuration: one dataclass, filled from defaults, a YAML recipe, then flags."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "cosine", "onecycle", "constant")
AMP_MODES = ("auto", "bf16", "fp16", "off")
AUDIO_LAYOUTS = ("auto", "folders", "fsdd", "speech-commands")


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved as config.yaml in the run directory."""

    # What to train on what.
    model: str = "resnet20"
    model_args: dict[str, Any] = field(default_factory=dict)  # extra constructor arguments
    data: str = "digits"
    val_split: float | None = None  # fraction held out when the data has no validation split
    img_size: int | None = None  # default: the data's own size when held in memory, else the model's
    in_chans: int | None = None  # default: the data's (1 for digits/MNIST, 3 for colour images)
    on_corrupt: str = "skip"  # skip (named in the log) or stop at an unreadable file
    augment: str = "auto"  # a preset (cifar, digits, imagenet, ...) or auto: chosen from the data
    augment_args: dict[str, Any] = field(default_factory=dict)  # preset fields to override
    # Audio data (ignored for images).
    audio: dict[str, Any] = field(default_factory=dict)  # FeatureConfig fields and audio augmentation overrides
    audio_layout: str = "auto"  # auto, folders (class subfolders), fsdd, speech-commands
    fsdd_split: str = "official"  # official (indices 0-4 held out) or speakers:NAME[,NAME] (held-out speakers)
    # Optimization.
    epochs: int = 30
    max_steps: int | None = None  # stop after this many optimizer steps (overrides epochs)
    time_budget_min: float | None = None  # wall-clock budget: epochs are cut to what fits after epoch 1
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4  # not applied to norm and bias parameters
    schedule: str = "cosine"
    warmup_epochs: float = 0.0  # linear warm-up from lr/warmup_div... to lr
    milestones: list[float] = field(default_factory=list)  # step schedule: where lr is multiplied by gamma
    milestone_unit: str = "epoch"  # epoch or step
    gamma: float = 0.1
    label_smoothing: float = 0.0
    ema_decay: float | None = None  # e.g. 0.999; validation then uses the averaged weights
    grad_clip: float | None = None  # max global gradient norm
    # Speed.
    device: str = "auto"  # auto: CUDA when present, else CPU
    amp: str = "auto"  # auto: bf16 on CPUs with native bf16 and on CUDA with bf16, fp16 on older GPUs
    channels_last: bool = True
    compile: bool = False
    workers: int | None = None  # DataLoader workers for data on disk (default: CPU count, at most 8)
    sync_bn: bool = False  # SyncBatchNorm across processes under torchrun
    # Reproducibility.
    seed: int = 0
    deterministic: bool = False
    # Output.
    out: str | None = None  # run directory; default runs/<name>
    name: str | None = None  # default: <model>-<data>-<time>
    quiet: bool = False
    eval_every: int = 1  # epochs between validations

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def choice(name: str, allowed) -> None:
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")

        choice("optimizer", OPTIMIZERS)
        choice("schedule", SCHEDULES)
        choice("amp", AMP_MODES)
        choice("on_corrupt", ("skip", "stop"))
        choice("milestone_unit", ("epoch", "step"))
        choice("audio_layout", AUDIO_LAYOUTS)
        if not isinstance(self.fsdd_split, str) or not (
            self.fsdd_split == "official"
            or (self.fsdd_split.startswith("speakers:") and any(n.strip() for n in self.fsdd_split[9:].split(",")))
        ):
            raise ValueError(
                f"fsdd_split must be 'official' or 'speakers:NAME[,NAME]' (e.g. speakers:george); got {self.fsdd_split!r}"
            )
        if not isinstance(self.audio, dict):
            raise TypeError(f"audio must be a mapping of audio settings, got {type(self.audio).__name__}")
        if self.audio:
            # Imported here: the audio module imports the engine's batch helpers.
            from ..data.audio_data import check_audio_settings

            check_audio_settings(self.audio)
        for name in ("epochs", "batch_size", "eval_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.time_budget_min is not None and self.time_budget_min <= 0:
            raise ValueError(f"time_budget_min must be > 0, got {self.time_budget_min}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0 or self.label_smoothing < 0 or self.label_smoothing >= 1:
            raise ValueError("weight_decay must be >= 0 and label_smoothing in [0, 1)")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.val_split is not None and not 0 < self.val_split < 1:
            raise ValueError(f"val_split must be in (0, 1), got {self.val_split}")
        if self.schedule == "step" and not self.milestones:
            raise ValueError("schedule 'step' needs milestones (e.g. milestones: [91, 136])")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            import difflib

            hints = [f"{u} (did you mean {', '.join(difflib.get_close_matches(u, known, 2))}?)"
                     if difflib.get_close_matches(u, known, 2) else u for u in unknown]
            raise ValueError(f"{source}: unknown key(s): {', '.join(hints)}")
        try:
            return cls(**values)
        except TypeError as err:
            raise ValueError(f"{source}: {err}") from None


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read a YAML recipe into a dict of TrainConfig fields (checked when the config is built)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"recipe {path} is not valid YAML: {err}") from None
    if not isinstance(values, dict):
        raise ValueError(f"recipe {path} must be a mapping of settings, got {type(values).__name__}")
    return values


def build_config(recipe: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, then the recipe, then explicit overrides (the command line's flags)."""
    values: dict[str, Any] = {}
    source = "command line"
    if recipe:
        values.update(load_recipe(recipe))
        source = f"recipe {recipe} + command line"
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    return TrainConfig.from_dict(values, source)


def save_config(config: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
