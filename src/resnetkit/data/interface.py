"""The interface between data and everything above it.

A kind of input (images, audio, or one a user adds) is two classes:

- a :class:`LabelledData`: labelled samples of one split. It says how its raw samples become
  model input (:meth:`~LabelledData.input_spec`), which augmentation suits it
  (:meth:`~LabelledData.augment_config`), and hands out a :class:`~.batching.BatchSource`
  that yields ``(inputs, targets)`` already on the device (:meth:`~LabelledData.batches`).
- an :class:`InputSpec`: how raw inputs become model input, stored with a trained model so
  that ``evaluate``, ``predict``, export and serving repeat it exactly. It is saved as JSON
  and rebuilt by :func:`input_spec_from_dict`.

The engine trains and evaluates through these two classes only; it never asks which kind
of input it holds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Optional, Sequence

import torch

from ..runtime.distributed import DistInfo

if TYPE_CHECKING:
    from .audio_features import FeatureConfig

# How many file names one log line or error message lists before "and N more".
SHOW_PATHS = 5


@dataclass
class SkippedFile:
    """A file left out of a data set, and why (the reason names the file)."""

    path: str
    reason: str


@dataclass(frozen=True)
class DataRequest:
    """What the user asked for with ``--data`` and its companions, as the data layer reads it."""

    data: str = "digits"
    val_split: Optional[float] = None  # fraction held out when the data has no validation split
    seed: int = 0
    in_chans: Optional[int] = None  # images: 1 (gray) or 3 (colour); default: the data's own
    on_corrupt: str = "skip"  # skip unreadable files (named in the log) or stop at the first
    audio: Optional["FeatureConfig"] = None  # audio features (default: FeatureConfig's)
    audio_layout: str = "auto"  # auto, folders, fsdd, speech-commands
    fsdd_split: str = "official"  # official or speakers:NAME[,NAME]
    keywords: Optional[str] = "auto"  # Speech Commands: auto (12-class protocol when it fits), none, or words
    for_evaluation: bool = False  # only the held-out part (a test split where there is one), as val
    cache_dir: Optional[str] = None  # where named data sets are downloaded (default ~/.cache/resnetkit)
    path_col: str = "path"  # label files: the column of file paths
    label_col: str = "label"  # label files: the column of labels
    label_sep: str = ";"  # label files: what separates the labels of a multi-label cell
    task: str = "auto"  # auto, single or multilabel (label files; other data is single-label)


@dataclass(frozen=True)
class BatchOptions:
    """How a :class:`~.batching.BatchSource` should batch: the engine's side of the contract."""

    train: bool
    batch_size: int
    device: torch.device = torch.device("cpu")
    augment: Any = None  # the data's own augmentation settings (from LabelledData.augment_config)
    channels_last: bool = False
    seed: int = 0
    dist: DistInfo = DistInfo()
    workers: int = 2  # DataLoader worker processes, for data decoded on demand
    num_classes: int | None = None  # width of mixup's soft targets (default: the data's class count)
    # Training: each epoch draws num_samples samples with replacement in proportion to these
    # (one per sample; a balanced sampler) instead of a permutation. None: every sample once.
    sample_weights: torch.Tensor | None = None


@dataclass
class PreparedInputs:
    """A batch ready for the model, built from raw items; an unreadable item gets its error, not a crash."""

    batch: torch.Tensor | None  # (n, ...) for the readable items, in order; None when none was readable
    names: list[str]  # one per item: the file name, or "tensor", "PIL image", "upload"
    errors: list[str | None]  # one per item: None, or what was wrong with it


@dataclass
class Display:
    """What an explanation is drawn over: one picture per readable input, as people look at it."""

    pictures: list  # numpy arrays: images (H, W, C) in [0, 1], or spectrograms and other maps (F, T)
    style: str  # "image" or "spectrogram"
    axes: dict = field(default_factory=dict)  # spectrograms: duration_s, ylabel, yticks


@dataclass
class Preview:
    """Examples of a data set for a picture in the run directory; drawn by :mod:`resnetkit.report`."""

    samples: torch.Tensor  # (n, C, H, W) float: images in [0, 1], or spectrograms in dB
    labels: list[str]
    style: str  # "image" or "spectrogram"
    filename: str  # e.g. "spectrograms.png"
    title: str = ""


class InputSpec(ABC):
    """How raw inputs of one kind become model input."""

    kind: ClassVar[str]
    # Files this kind reads, for expanding a folder given to predict.
    file_extensions: ClassVar[tuple[str, ...]] = ()
    # How a user makes inputs larger when a model needs more ({n}: the model's minimum side).
    resize_hint: ClassVar[str] = ""
    in_chans: int

    @property
    @abstractmethod
    def input_size(self) -> tuple[int, ...]:
        """The shape of one model input, without the batch axis, e.g. (3, 32, 32)."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; must hold ``"kind"`` so that :func:`input_spec_from_dict` finds the class."""

    @classmethod
    @abstractmethod
    def from_dict(cls, values: dict[str, Any]) -> "InputSpec":
        ...

    @abstractmethod
    def prepare(self, items: Sequence[Any], device: torch.device) -> PreparedInputs:
        """Model input for raw items (file paths, file-like objects, in-memory samples)."""

    def display(self, items: Sequence[Any], batch: torch.Tensor) -> Display:
        """The readable ``items`` (which :meth:`prepare` made into ``batch``) as pictures to draw a map over.

        By default the first channel of each model input, as it is; a kind overrides this with
        what people recognise (images denormalized, audio as a spectrogram in dB).
        """
        return Display([b[0].detach().float().cpu().numpy() for b in batch], "spectrogram", {"ylabel": "feature"})


_SPEC_CLASSES: dict[str, type[InputSpec]] = {}


def register_input_spec(cls: type[InputSpec]) -> type[InputSpec]:
    """Class decorator: make ``cls`` rebuildable from a run's JSON by its ``kind``."""
    kind = getattr(cls, "kind", None)
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"{cls.__name__} needs a class attribute kind (a non-empty string)")
    if _SPEC_CLASSES.get(kind, cls) is not cls:
        raise ValueError(f"input kind {kind!r} is already registered by {_SPEC_CLASSES[kind].__name__}")
    _SPEC_CLASSES[kind] = cls
    return cls


def input_spec_from_dict(values: dict[str, Any]) -> InputSpec:
    """The input spec a run stored (``checkpoint["input"]``, ``data_config.json``'s ``"input"``)."""
    if not isinstance(values, dict):
        raise TypeError(f"an input spec must be a dict, got {type(values).__name__}")
    kind = values.get("kind", "image")  # runs of the first release stored image specs without a kind
    if kind not in _SPEC_CLASSES:
        raise ValueError(f"unknown input kind {kind!r}; known: {', '.join(sorted(_SPEC_CLASSES))}")
    return _SPEC_CLASSES[kind].from_dict(values)


class LabelledData(ABC):
    """Labelled samples of one split (train, validation or test) of some kind of input."""

    classes: list[str]
    source: str  # names the data in messages: a folder, a data set name
    skipped: list[SkippedFile]  # files left out, each with its reason
    in_chans: int  # channels of one sample as the data holds it (images: 1 or 3; audio: 1)

    @abstractmethod
    def __len__(self) -> int:
        ...

    @abstractmethod
    def input_spec(self, model: torch.nn.Module | None = None, img_size: int | None = None) -> InputSpec:
        """How this data becomes input of ``model`` (``img_size``: a requested size, where it applies)."""

    @abstractmethod
    def augment_config(self, preset: str = "auto", overrides: dict[str, Any] | None = None) -> Any:
        """The augmentation settings for training on this data: a preset with fields overridden.

        An object with ``to_dict()`` (recorded in the run's data_config.json) that the data's
        batch source reads from ``BatchOptions.augment``, or None for no augmentation.
        """

    @abstractmethod
    def batches(self, spec: InputSpec, options: BatchOptions):
        """A :class:`~.batching.BatchSource` over this data for ``spec``."""

    @abstractmethod
    def remap_classes(self, classes: Sequence[str]) -> "LabelledData":
        """The same data relabelled so that label i means ``classes[i]`` (matched by name)."""

    def preview(self, max_examples: int = 10) -> Preview | None:
        """Examples to draw into the run directory, or None."""
        return None


@dataclass
class DataSplits:
    """What ``--data`` resolves to: training and held-out data with their shared class names."""

    train: LabelledData | None
    val: LabelledData | None
    classes: list[str]
    name: str
    notes: list[str] = field(default_factory=list)  # what the resolver decided that the user should know
