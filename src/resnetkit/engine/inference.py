"""A trained run, loaded for inference: ``load_run(path).predict(...)`` and ``.evaluate(...)``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable, Optional

import torch
from torch import nn

from ..data import InputSpec, LabelledData, as_labelled_data, input_spec_from_dict, load_eval_data
from ..data.label_files import is_label_file, read_label_file
from ..data.specs import image_spec_for_model
from ..models import create_model, pretrained_weights
from ..models.weights import CheckpointError
from ..runtime.device import resolve_device
from .checkpoint import checkpoint_weights, find_checkpoint, read_checkpoint
from ..data.multilabel import check_decision, is_multilabel
from .evaluation import EvalResult, evaluate
from .multilabel import DEFAULT_THRESHOLD
from .multilabel import probabilities as multilabel_probabilities
from .run_data import run_splits, sample_batches
from .tta import check_tta, with_tta

# How many inputs `resnetkit predict` prepares and runs at a time (a folder may hold thousands).
PREDICT_BATCH = 64


@dataclass
class LoadedRun:
    """A trained model with its classes and input pipeline, ready for evaluate and predict."""

    model: nn.Module
    classes: list[str]
    input_spec: InputSpec
    model_name: str
    path: Path
    device: torch.device
    _inference_models: dict = field(default_factory=dict, repr=False)
    config: Optional[dict] = field(default=None, repr=False)  # the run's TrainConfig as a dict (its data, for int8)
    # Probabilities are softmax(logits / temperature): the run's calibration (1.0: none). Multi-label
    # runs: sigmoid(logits / temperature), one temperature per label.
    temperature: float | list[float] = 1.0
    task: str = "single"  # or "multilabel": every label scored on its own
    thresholds: Optional[list[float]] = None  # multi-label: the probability at which each label is predicted

    @property
    def multilabel(self) -> bool:
        return self.task == "multilabel"

    # Batches for evaluate in channels-last memory format (4-D inputs).
    channels_last: ClassVar[bool] = True

    @property
    def kind(self) -> str:
        return self.input_spec.kind

    def inference_model(self, amp: str = "auto") -> nn.Module:
        """The run's model through optimize_for_inference (``amp="off"``/``"fp32"``: plain fp32), built once per precision.

        No torch.compile: evaluate and predict run once, and compilation would cost more
        than it saves on a few thousand inputs. ``"int8"`` quantizes the model (PT2E,
        X86InductorQuantizer) on samples of the run's training split, rebuilt from its
        configuration.
        """
        amp = _precision(amp)
        if amp not in self._inference_models:
            from ..export import optimize_for_inference

            calibration = self.calibration_samples() if amp == "int8" else None
            self._inference_models[amp] = optimize_for_inference(self.model, precision=amp, device=self.device,
                                                                 compile=False, calibration=calibration)
        return self._inference_models[amp]

    def calibration_samples(self, count: int = 512) -> list[torch.Tensor]:
        """Up to ``count`` inputs drawn from the run's training split (for int8 calibration)."""
        splits = run_splits(self.config, self.path)
        if splits.train is None:
            raise ValueError(f"{self.path}: the run's data has no training split to calibrate int8 on")
        return [x for x, _ in sample_batches(splits.train, self.input_spec, count, seed=1)]

    def load_eval_data(self, path: str, on_corrupt: str = "skip", path_col: str = "path",
                       label_col: str = "label") -> LabelledData:
        """The held-out part of ``path`` (its test/ or val/ split, or all of it), read as the run was trained.

        A label file's labels must be classes of the model: one that is not is named with its line.
        """
        return load_eval_data(self.input_spec, str(path), on_corrupt, path_col, label_col, classes=self.classes,
                              multilabel=self.multilabel, label_sep=(self.config or {}).get("label_sep", ";"))

    def evaluate(self, data: Any, batch_size: int = 256, amp: str = "auto", precision: Optional[str] = None,
                 tta: str = "none") -> EvalResult:
        """Evaluate on ``data`` (a path, a data set name or loaded data), classes matched by name.

        ``precision`` (auto, fp32, bf16, fp16, int8), when given, takes the place of ``amp``.
        ``tta="flip"`` averages the logits of each image and its mirror (images only).
        """
        amp = precision or amp
        check_tta(tta, self.kind)
        if isinstance(data, (str, Path)):
            data = self.load_eval_data(str(data))
        data = as_labelled_data(data, self.classes)
        if list(data.classes) != list(self.classes):
            data = data.remap_classes(self.classes)
        model = with_tta(self.inference_model(amp), tta, self.kind)
        # The optimized module carries its own precision; autocast stays off around it.
        if self.multilabel != is_multilabel(data):
            raise ValueError(f"{data.source}: {'single' if self.multilabel else 'multi'}-label data for a "
                             f"{'multi' if self.multilabel else 'single'}-label model")
        result = evaluate(model, data, batch_size=batch_size, device=self.device, amp="off", classes=self.classes,
                          input_spec=self.input_spec, channels_last=self.channels_last, temperature=self.temperature,
                          thresholds=self.thresholds)
        # Said in the output, as metrics.json of the run says it: which path computed the numbers.
        result.metrics["inference"] = model.description
        return result

    @torch.no_grad()
    def predict(self, inputs: Any, top_k: int = 5, amp: str = "auto", precision: Optional[str] = None,
                batch_size: Optional[int] = None) -> list[dict]:
        """Top-k classes for files, folders, uploads (bytes) or in-memory samples (PIL images, tensors).

        ``batch_size``: how many inputs run through the model together; by default all that are
        given (a server's batch is the caller's), and ``resnetkit predict`` takes 64 at a time.
        A multi-label run gives per input also ``labels`` (those at or above their threshold, most
        probable first) and ``probabilities`` ({label: p} for every label); its ``top_k`` are the
        most probable labels, each probability on its own (they do not sum to 1).
        """
        amp = precision or amp
        items = list(expand_inputs(inputs, self.input_spec))
        if not items:
            raise ValueError(f"nothing to predict: no {self.kind} files among the inputs")
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                       or batch_size < 1):
            raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
        step = batch_size or len(items)
        k = max(1, min(top_k, len(self.classes)))
        model = self.inference_model(amp)
        results = []
        for start in range(0, len(items), step):
            prepared = self.input_spec.prepare(items[start : start + step], self.device)
            probs = self.probabilities(model(prepared.batch)).cpu() if prepared.batch is not None else None
            row = 0
            for name, error in zip(prepared.names, prepared.errors):
                if error:
                    results.append({"source": name, "error": error})
                    continue
                p, idx = probs[row].topk(k)
                result = {"source": name, "top_k": [
                    {"class": self.classes[i], "index": int(i), "probability": float(v)} for v, i in zip(p, idx)
                ]}
                if self.multilabel:
                    result.update(self.label_decision(probs[row]))
                row += 1
                results.append(result)
        return results

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """The run's calibrated probabilities: softmax(z / T), or for a multi-label run sigmoid(z_k / T_k)."""
        if self.multilabel:
            return multilabel_probabilities(logits, self.temperature)
        return (logits.float() / self.temperature).softmax(1)

    def label_decision(self, probs: torch.Tensor) -> dict:
        """A multi-label run's answer for one input: the labels at or above their thresholds, and every probability."""
        cut = self.thresholds or [DEFAULT_THRESHOLD] * len(self.classes)
        order = probs.argsort(descending=True).tolist()
        return {"labels": [self.classes[i] for i in order if float(probs[i]) >= cut[i]],
                "probabilities": {self.classes[i]: float(probs[i]) for i in range(len(self.classes))},
                "thresholds": {self.classes[i]: float(cut[i]) for i in range(len(self.classes))}}


def expand_inputs(inputs: Any, spec: InputSpec) -> Iterable:
    """Single items and folders (their files of the spec's kind, sorted) as one stream of items."""
    if isinstance(inputs, (str, Path, torch.Tensor, bytes)) or not isinstance(inputs, Iterable):
        inputs = [inputs]
    exts = spec.file_extensions
    for item in inputs:
        if isinstance(item, torch.Tensor) and item.ndim == len(spec.input_size) + 1:
            yield from item  # a batch
        elif isinstance(item, (str, Path)) and Path(item).is_dir():
            files = sorted(p for p in Path(item).rglob("*") if p.is_file() and p.suffix.lower() in exts)
            if not files:
                raise ValueError(f"folder {item} has no {spec.kind} files (expected {', '.join(exts)})")
            yield from files
        elif is_label_file(item):  # its files, in its order (labels, if any, are not needed)
            yield from (row.path for row in read_label_file(item, require_labels=False).rows)
        elif isinstance(item, (str, Path)) and not Path(item).exists():
            raise FileNotFoundError(f"{item}: no such file or folder")
        else:
            yield item


def load_run(path: str | Path, device: str = "auto", weights: str = "best") -> LoadedRun:
    """Load a run directory (its best.pt, else last.pt) or a checkpoint file for evaluate/predict."""
    ckpt = find_checkpoint(path, weights)
    state = read_checkpoint(ckpt)
    dev = resolve_device(device)
    args = dict(state["model_args"])
    classes = list(state["classes"])
    if args.get("num_classes") not in (None, len(classes)):
        raise CheckpointError(f"{ckpt}: the model has {args['num_classes']} outputs but {len(classes)} class names")
    try:
        spec = input_spec_from_dict(dict(state["input"]))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{ckpt}: its input description is not usable: {err}") from None
    try:
        model = create_model(state["model_name"], **{k: v for k, v in args.items() if v is not None})
        missing, unexpected = model.load_state_dict(checkpoint_weights(state), strict=False)
        # A model fine-tuned with frozen BatchNorm (FrozenBatchNorm2d) has no step counters: bookkeeping only.
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise RuntimeError(f"missing keys {missing[:8]}, unexpected keys {unexpected[:8]}")
    except (RuntimeError, TypeError, ValueError) as err:
        raise CheckpointError(f"{ckpt}: weights do not fit {state['model_name']}: {err}") from None
    model = model.to(dev).eval()
    try:
        task, temperature, thresholds = check_decision(state.get("task", "single"), state.get("temperature", 1.0),
                                                       state.get("thresholds"), len(classes))
    except ValueError as err:
        raise CheckpointError(f"{ckpt}: {err}") from None
    return LoadedRun(model, classes, spec, state["model_name"], ckpt, dev, config=state.get("config"),
                     temperature=temperature, task=task, thresholds=thresholds)


@dataclass
class LoadedPretrained(LoadedRun):
    """Published weights (``--model NAME --pretrained [TAG]``) with the surface of a trained run.

    Its classes are the publisher's (ImageNet's), its input spec the weights' preprocessing.
    There is no training split to calibrate int8 on.
    """

    def calibration_samples(self, count: int = 512) -> list[torch.Tensor]:
        raise ValueError(f"{self.model_name} with published weights has no training data to calibrate int8 on; "
                         "use fp32, bf16 or fp16")


def load_pretrained_model(name: str, tag: bool | str = True, device: str = "auto") -> LoadedPretrained:
    """A zoo model with published weights (fetched through torch.hub's cache), ready for predict and evaluate."""
    weights = pretrained_weights(name, tag)
    dev = resolve_device(device)
    model = create_model(name, pretrained=weights.tag)
    spec = image_spec_for_model(model, model.in_chans)
    return LoadedPretrained(model.to(dev).eval(), list(weights.classes), spec, name, weights.cache_path, dev)


# What evaluate and predict accept for their precision: optimize_for_inference's, with fp32 for "off".
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16", "int8")


def _precision(value: str) -> str:
    value = "off" if value == "fp32" else value
    if value not in ("auto", "off", "bf16", "fp16", "int8"):
        raise ValueError(f"precision must be one of {', '.join(PRECISION_CHOICES)} (or amp off); got {value!r}")
    return value


@dataclass
class LoadedExport(LoadedRun):
    """An exported file (ONNX, TorchScript, pt2) with the surface of a trained run.

    The file runs as it was written: its precision (fp32, or int8 for a quantized ONNX file)
    is fixed, so evaluate and predict take ``auto`` or that precision.
    """

    format: str = "onnx"
    precision: str = "fp32"
    input: str = ""  # what the graph takes: waveform, features, image, ...

    channels_last: ClassVar[bool] = False  # onnxruntime wants contiguous input; waveforms are 2-D

    def inference_model(self, amp: str = "auto") -> nn.Module:
        amp = _precision(amp)
        if amp not in ("auto", "off" if self.precision == "fp32" else self.precision):
            raise ValueError(f"{self.path} is an exported {self.format} file and runs in its own precision ({self.precision}); "
                             f"precision {amp!r} applies to run directories (use auto or {self.precision})")
        runtime = "onnxruntime" if self.format == "onnx" else "torch"
        self.model.description = f"exported {self.format} file {self.path.name} ({self.precision}, {runtime})"
        return self.model

    def calibration_samples(self, count: int = 512) -> list[torch.Tensor]:
        raise ValueError(f"{self.path} is an exported file; int8 from it needs `resnetkit export --int8` on the run")


def load_model(path: str | Path, device: str = "auto", weights: str = "best") -> LoadedRun:
    """A run directory, a checkpoint or an exported file (ONNX, TorchScript, .pt2), ready for evaluate and predict.

    The one loader of the command line and the server: run directories and ``.pt``
    checkpoints go through :func:`load_run`, files written by ``resnetkit export`` through
    :func:`resnetkit.export.load_exported`; both give the same surface (``classes``,
    ``input_spec``, ``kind``, ``model_name``, ``predict``, ``evaluate``).
    """
    from ..export import load_exported, sniff_format

    p = Path(path)
    if p.is_file() and sniff_format(p) is not None:
        exported = load_exported(p, device=resolve_device(device))
        return LoadedExport(exported.module, exported.classes, exported.input_spec, exported.model_name, p,
                            exported.device, format=exported.format, precision=exported.precision,
                            input=exported.input, temperature=exported.temperature, task=exported.task,
                            thresholds=exported.thresholds)
    return load_run(path, device=device, weights=weights)
