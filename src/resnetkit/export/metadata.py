"""What travels inside an exported file: classes, preprocessing and what the graph takes.

Every exported file holds one JSON-ready dict (:class:`ExportMetadata`): ONNX files keep its
fields as ``metadata_props`` (one key per field, lists and dicts JSON-encoded); TorchScript
and ``.pt2`` files keep it whole as the extra file ``resnetkit.json``. With it, the file alone
is enough to predict: the input spec rebuilds the preprocessing of raw files exactly as the
run trained.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

METADATA_FORMAT = "resnetkit-export-1"
EXTRA_FILE = "resnetkit.json"  # the extra file of TorchScript and .pt2 archives

FORMATS = ("onnx", "torchscript", "pt2")
EXTENSIONS = {"onnx": ".onnx", "torchscript": ".pt", "pt2": ".pt2"}

# What the graph's input is:
#   waveform  raw audio samples (N, samples) at the spec's rate: the feature front end is in the graph
#   features  the audio spec's features (N, 1, F, T): resnetkit computes them from raw files
#   image     normalized images (N, C, H, W) as the image spec prepares them
#   <kind>    for other kinds of input, whatever their spec's prepare() returns
GRAPH_INPUTS = ("waveform", "features", "image")


@dataclass
class ExportMetadata:
    """The description of an exported model that its file carries."""

    model_name: str
    classes: list[str]
    input_spec: dict[str, Any]  # the run's InputSpec.to_dict(): size, mean/std, channels, audio features
    input: str  # see GRAPH_INPUTS
    input_shape: list[int]  # one input without the batch axis (the batch axis is dynamic)
    precision: str = "fp32"  # fp32 or int8
    # The graph gives logits; probabilities are softmax(logits / temperature), the run's calibration.
    # Multi-label models (task "multilabel"): sigmoid(logits / temperature) per label, one temperature
    # per label, and a label is predicted when its probability reaches its threshold.
    temperature: float | list[float] = 1.0
    task: str = "single"
    thresholds: list[float] | None = None
    source: str = ""  # the checkpoint it was exported from
    notes: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    format: str = METADATA_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], path: str | Path) -> "ExportMetadata":
        """Validate what a file holds; the messages name ``path``."""
        if not values:
            raise ValueError(f"{path} carries no resnetkit metadata (classes and preprocessing): it was not written "
                             "by `resnetkit export`, so its classes and input pipeline are unknown")
        if values.get("format") != METADATA_FORMAT:
            raise ValueError(f"{path}: unknown metadata format {values.get('format')!r} (expected {METADATA_FORMAT})")
        missing = [k for k in ("model_name", "classes", "input_spec", "input", "input_shape") if k not in values]
        if missing:
            raise ValueError(f"{path}: its resnetkit metadata lacks {', '.join(missing)}")
        classes = values["classes"]
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
            raise ValueError(f"{path}: its metadata's classes must be a non-empty list of names, got {classes!r}")
        if not isinstance(values["input_spec"], dict):
            raise ValueError(f"{path}: its metadata's input_spec must be a dict, got {type(values['input_spec']).__name__}")
        from ..data.multilabel import check_decision

        try:
            task, temperature, thresholds = check_decision(values.get("task", "single"), values.get("temperature", 1.0),
                                                           values.get("thresholds"), len(classes))
        except ValueError as err:
            raise ValueError(f"{path}: its metadata's {str(err).removeprefix('its ')}") from None
        known = {f for f in cls.__dataclass_fields__}
        fields = {k: v for k, v in values.items() if k in known}
        fields.update(task=task, temperature=temperature, thresholds=thresholds)
        return cls(**fields)


def to_onnx_props(meta: ExportMetadata) -> dict[str, str]:
    """One ``metadata_props`` entry per field; strings as they are, everything else as JSON."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.to_dict().items()}


def from_onnx_props(props: dict[str, str]) -> dict[str, Any]:
    """The inverse of :func:`to_onnx_props`, for the keys this module writes."""
    values: dict[str, Any] = {}
    for key, text in props.items():
        if key not in ExportMetadata.__dataclass_fields__:
            continue  # another tool's metadata
        if key in ("classes", "input_spec", "input_shape", "notes", "versions", "temperature", "thresholds"):
            try:
                values[key] = json.loads(text)
            except json.JSONDecodeError:
                raise ValueError(f"metadata field {key!r} is not valid JSON: {text[:80]!r}") from None
        else:
            values[key] = text
    return values


def format_of(path: str | Path) -> str | None:
    """The export format a file name implies (.onnx, .pt2; .pt/.ts/.torchscript for TorchScript), or None."""
    suffix = Path(path).suffix.lower()
    return {".onnx": "onnx", ".pt2": "pt2", ".ts": "torchscript", ".torchscript": "torchscript"}.get(suffix)
