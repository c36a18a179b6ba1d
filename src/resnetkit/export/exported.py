"""Reading an exported file back: the module that runs it, its classes and its input pipeline.

``load_exported(path)`` works for the three formats ``resnetkit export`` writes: ONNX (run
by onnxruntime), TorchScript and ``.pt2`` (run by torch). The returned module takes what the
returned input spec prepares and gives float32 logits, so the engine evaluates and predicts
with it exactly as with a trained run (:func:`resnetkit.engine.inference.load_model`).
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from ..data import AudioInputSpec, InputSpec, input_spec_from_dict
from .archive_audit import audit_pt2_archive
from .formats import sniff_format
from .metadata import EXTRA_FILE, ExportMetadata, from_onnx_props


log = logging.getLogger(__name__)


class WaveformInput(AudioInputSpec):
    """An audio spec that prepares raw files up to the waveform: the exported graph computes the features.

    Decoding, resampling and cropping or padding to the trained duration are the run's; the
    batch is ``(N, samples)`` float32 waves, which is what an ``input: waveform`` graph takes.
    """

    @classmethod
    def of(cls, spec: AudioInputSpec) -> "WaveformInput":
        """The same settings, every field of ``spec`` (features, normalizer, keywords, ...) carried over."""
        return cls(**_settings(spec))

    def build_frontend(self) -> nn.Module:
        return _Waves()

    @property
    def input_size(self) -> tuple[int]:
        return (self.num_samples,)

    def to_dict(self) -> dict[str, Any]:
        return AudioInputSpec(**_settings(self)).to_dict()


def _settings(spec: AudioInputSpec) -> dict[str, Any]:
    return {f.name: getattr(spec, f.name) for f in fields(spec) if f.init}


class _Waves(nn.Module):
    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        return waves.float()


class OnnxModule(nn.Module):
    """An ONNX file run by onnxruntime behind ``nn.Module``'s call: torch tensors in, torch tensors out."""

    def __init__(self, path: str | Path, device: torch.device) -> None:
        super().__init__()
        import onnxruntime as ort

        self.path = Path(path)
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(path), providers=providers)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or not outputs:
            raise ValueError(f"{path}: expected an ONNX graph with one input and a logits output, "
                             f"got inputs {[i.name for i in inputs]} and outputs {[o.name for o in outputs]}")
        self.input_name = inputs[0].name
        self.input_shape = inputs[0].shape  # e.g. ['batch', 3, 32, 32]
        self.output_shape = outputs[0].shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        logits = self.session.run(None, {self.input_name: array})[0]
        return torch.from_numpy(logits).to(x.device)

    def extra_repr(self) -> str:
        return f"{self.path.name}, providers={self.session.get_providers()}"


@dataclass
class ExportedModel:
    """An exported file, read back: ``module(input_spec.prepare(files).batch)`` gives logits."""

    module: nn.Module
    classes: list[str]
    input_spec: InputSpec
    model_name: str
    path: Path
    format: str  # onnx, torchscript, pt2
    metadata: ExportMetadata
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def kind(self) -> str:
        return self.input_spec.kind

    @property
    def precision(self) -> str:
        return self.metadata.precision

    @property
    def input(self) -> str:
        return self.metadata.input

    @property
    def temperature(self) -> float | list[float]:
        t = self.metadata.temperature
        return [float(v) for v in t] if isinstance(t, list) else float(t)

    @property
    def task(self) -> str:
        return self.metadata.task

    @property
    def thresholds(self) -> list[float] | None:
        return self.metadata.thresholds


def load_exported(path: str | Path, device: str | torch.device = "cpu") -> ExportedModel:
    """Read an ONNX, TorchScript or ``.pt2`` file written by ``resnetkit export``.

    The file must carry resnetkit's metadata (classes and preprocessing): a file without it,
    or whose graph does not match it, is refused with a ValueError that names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported model {path} does not exist")
    device = torch.device(device)
    fmt = sniff_format(path)
    if fmt is None:
        raise ValueError(f"{path} is not an exported model (expected ONNX, TorchScript or .pt2 from `resnetkit export`)")
    try:
        module, raw = _READERS[fmt](path, device)
    except ValueError:
        raise
    except Exception as err:  # onnxruntime, torch.jit and torch.export each raise their own types
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"cannot read {path} as {fmt}: {first}") from None
    meta = ExportMetadata.from_dict(raw, path)
    try:
        spec = input_spec_from_dict(dict(meta.input_spec))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: its input description is not usable: {err}") from None
    if meta.input == "waveform":
        if not isinstance(spec, AudioInputSpec):
            raise ValueError(f"{path}: a waveform graph needs an audio input spec, got kind {spec.kind!r}")
        spec = WaveformInput.of(spec)
    if fmt == "onnx":
        _check_onnx_graph(module, meta, path)
    return ExportedModel(module.eval(), list(meta.classes), spec, meta.model_name, path, fmt, meta, device)


def _read_onnx(path: Path, device: torch.device) -> tuple[nn.Module, dict]:
    module = OnnxModule(path, device)
    props = dict(module.session.get_modelmeta().custom_metadata_map)
    try:
        return module, from_onnx_props(props)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def _read_torchscript(path: Path, device: torch.device) -> tuple[nn.Module, dict]:
    extra = {EXTRA_FILE: ""}
    with warnings.catch_warnings():
        # torch 2.9+ deprecates TorchScript in favour of torch.export (our pt2 format); the files still load.
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    return module, _parse_extra(extra[EXTRA_FILE], path)


class ProgramModule(nn.Module):
    """The module of a loaded ``torch.export`` program, kept out of ``.eval()``/``.train()``/``.to()``.

    An exported program is always in the mode it was exported in (eval) and refuses
    ``eval()``; the engine calls it around every evaluation.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "program_module", module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.program_module(x)


def _read_pt2(path: Path, device: torch.device) -> tuple[nn.Module, dict]:
    # torch.export.load would unpickle parts of the archive with code execution and evaluate
    # text from it (archive_audit.py says where): audit the bytes first, then load those bytes.
    data = path.read_bytes()
    audit_pt2_archive(data, path)
    extra = {EXTRA_FILE: ""}
    with _torch_logs_held() as held, warnings.catch_warnings():
        # torch < 2.6 warns that its own torch.load defaults to weights_only=False: audited above.
        warnings.simplefilter("ignore", FutureWarning)
        try:
            program = torch.export.load(io.BytesIO(data), extra_files=extra)
            module = program.module()
        except Exception as err:  # torch raises its own types; the logged cause says more than its "see above"
            cause = held.errors[-1] if held.errors else _first_line(str(err)) or type(err).__name__
            raise ValueError(f"cannot read {path} as pt2: {cause[:200]}") from None
    if device.type != "cpu":
        module = module.to(device)
    return ProgramModule(module), _parse_extra(extra[EXTRA_FILE], path)


class _HeldRecords(logging.Handler):
    """Keeps torch's records instead of printing them: each becomes one debug line of ours."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[str] = []  # the exceptions torch logged before it raised or fell back

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # torch's own format string and arguments disagree in some versions
            text = str(record.msg)
        log.debug("torch: %s", _first_line(text) or record.levelname)
        if record.exc_info and record.exc_info[1] is not None:
            self.errors.append(_first_line(str(record.exc_info[1])) or type(record.exc_info[1]).__name__)


@contextmanager
def _torch_logs_held() -> Iterator[_HeldRecords]:
    """Keep torch.export's load-time warnings (with tracebacks) out of the user's terminal.

    torch logs a deserialization failure with its traceback before raising or falling back,
    and one of its messages has more placeholders than arguments ("--- Logging error ---").
    What went wrong reaches the user as the error of this load, in one line.
    """
    loggers = [logging.getLogger(name) for name in ("torch.export", "torch._export")]
    saved = [(lg.propagate, list(lg.handlers)) for lg in loggers]
    held = _HeldRecords()
    for lg in loggers:
        lg.propagate = False
        lg.handlers = [held]
    try:
        yield held
    finally:
        for lg, (propagate, handlers) in zip(loggers, saved):
            lg.propagate, lg.handlers = propagate, handlers


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _parse_extra(text: str | bytes, path: Path) -> dict:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not text:
        return {}
    try:
        values = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(f"{path}: its {EXTRA_FILE} is not valid JSON") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: its {EXTRA_FILE} must hold a JSON object")
    return values


_READERS = {"onnx": _read_onnx, "torchscript": _read_torchscript, "pt2": _read_pt2}


def _check_onnx_graph(module: OnnxModule, meta: ExportMetadata, path: Path) -> None:
    """The graph's input and output shapes must be those the metadata describes (another model's file is not)."""
    expected_in = list(meta.input_shape)
    actual_in = list(module.input_shape[1:])
    if len(actual_in) != len(expected_in) or any(isinstance(a, int) and a != e for a, e in zip(actual_in, expected_in)):
        raise ValueError(f"{path}: the graph takes input of shape {module.input_shape}, but its metadata describes "
                         f"(batch, {', '.join(map(str, expected_in))}); the file does not belong to this metadata")
    out = module.output_shape
    if len(out) != 2 or (isinstance(out[1], int) and out[1] != len(meta.classes)):
        raise ValueError(f"{path}: the graph gives outputs of shape {out}, but its metadata lists "
                         f"{len(meta.classes)} classes; the file does not belong to this metadata")
