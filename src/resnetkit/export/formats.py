"""Writing a model to ONNX, TorchScript or a ``.pt2`` archive, with its metadata inside.

Every format gets a dynamic batch axis and the same graph: the model in eval mode and fp32,
taking what the run's input spec prepares, except audio, whose feature front end (STFT, mel
filterbank, dB, normalization) goes into the graph when it exports, so the file maps raw
waveforms to logits (``input: waveform``). When it does not, the graph takes the features
(``input: features``) and resnetkit computes them from raw files with the stored settings.
"""

from __future__ import annotations

import io
import json
import logging
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..data import AudioInputSpec, InputSpec
from ..runtime.files import atomic_write
from ..version import __version__
from .metadata import EXTENSIONS, EXTRA_FILE, FORMATS, ExportMetadata, to_onnx_props

log = logging.getLogger(__name__)

# ONNX opset: STFT (audio front ends) exists from 17; 18 is what torch's exporter targets natively.
ONNX_OPSET = 18
# Example batch for tracing: 2, because torch.export specializes dimensions of size 0 and 1.
EXAMPLE_BATCH = 2


class WaveformModel(nn.Module):
    """An audio model with its feature front end in front: ``(N, samples)`` waves -> logits."""

    def __init__(self, frontend: nn.Module, model: nn.Module) -> None:
        super().__init__()
        self.frontend = frontend
        self.model = model

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        return self.model(self.frontend(waves))


@dataclass
class ExportGraph:
    """The torch module a file holds, the input it takes, and an example of that input."""

    module: nn.Module
    input: str  # waveform, features, image, or another kind's name
    example: torch.Tensor
    notes: list[str]


def graph_for(model: nn.Module, spec: InputSpec, waveform: bool = True) -> ExportGraph:
    """What to export for ``model`` trained with ``spec``: the model alone, or front end + model for audio."""
    model = model.eval().float().cpu()
    g = torch.Generator().manual_seed(0)
    if isinstance(spec, AudioInputSpec) and waveform:
        waves = 0.1 * torch.randn(EXAMPLE_BATCH, spec.num_samples, generator=g)
        return ExportGraph(WaveformModel(spec.build_frontend().cpu(), model).eval(), "waveform", waves, [])
    if isinstance(spec, AudioInputSpec):
        return ExportGraph(model, "features", torch.randn(EXAMPLE_BATCH, *spec.input_size, generator=g), [])
    return ExportGraph(model, spec.kind, torch.randn(EXAMPLE_BATCH, *spec.input_size, generator=g), [])


def export_graph(graph: ExportGraph, path: str | Path, fmt: str, meta: ExportMetadata) -> Path:
    """Write ``graph`` to ``path`` in ``fmt`` with ``meta`` inside; the file appears whole or not at all."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; allowed: {', '.join(FORMATS)}")
    writer: Callable[[ExportGraph, str, ExportMetadata], None] = _WRITERS[fmt]
    with torch.no_grad(), warnings.catch_warnings():
        # Tracing warns about every Python-side shape check in the models (they are constant for a
        # given input size, which is what a traced graph is for); the parity check is the real test.
        warnings.simplefilter("ignore")
        return atomic_write(path, lambda tmp: writer(graph, tmp, meta))


def export_model(
    model: nn.Module,
    path: str | Path,
    fmt: str,
    *,
    input_spec: InputSpec,
    classes: Sequence[str],
    model_name: str | None = None,
    source: str = "",
    waveform: bool | None = None,
    temperature: float | Sequence[float] = 1.0,
    task: str = "single",
    thresholds: Sequence[float] | None = None,
) -> tuple[ExportGraph, ExportMetadata]:
    """Export ``model`` (fp32, eval mode) to ``path`` as ``fmt`` (onnx, torchscript, pt2).

    ``input_spec``, ``classes``, the calibration ``temperature`` and (multi-label: ``task``
    multilabel) the per-label ``thresholds`` travel inside the file. Audio models export with their
    feature front end (``waveform=None``: when it exports; ``True``: or fail; ``False``: never),
    otherwise from features, which the metadata's ``input`` field and ``notes`` say.
    Returns the exported graph (the torch module the file should match) and the metadata.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if len(classes) != _num_outputs(model, input_spec):
        raise ValueError(f"the model has {_num_outputs(model, input_spec)} outputs but {len(classes)} class names")
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {path.parent} does not exist")
    name = model_name or getattr(model, "model_name", type(model).__name__)
    audio = isinstance(input_spec, AudioInputSpec)
    graph = graph_for(model, input_spec, waveform=audio and waveform is not False)
    if audio and waveform is False:
        graph.notes.append("exported from features: resnetkit computes them from raw audio with input_spec")
    try:
        meta = _metadata(graph, input_spec, classes, name, source, temperature, task, thresholds)
        export_graph(graph, path, fmt, meta)
    except Exception as err:
        if graph.input != "waveform" or waveform:
            raise
        # The front end did not export (an operator the format lacks): the features path always does.
        reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
        log.warning("the audio front end did not export to %s (%s); exporting from features instead", fmt, reason)
        graph = graph_for(model, input_spec, waveform=False)
        graph.notes.append(f"exported from features: the audio front end did not export to {fmt} ({reason[:200]}); "
                           "resnetkit computes the features from raw audio with input_spec")
        meta = _metadata(graph, input_spec, classes, name, source, temperature, task, thresholds)
        export_graph(graph, path, fmt, meta)
    return graph, meta


def _num_outputs(model: nn.Module, spec: InputSpec) -> int:
    n = getattr(model, "num_classes", None)
    if isinstance(n, int):
        return n
    with torch.no_grad():
        return int(model.eval()(torch.zeros(EXAMPLE_BATCH, *spec.input_size)).shape[1])


def _metadata(graph: ExportGraph, spec: InputSpec, classes: Sequence[str], name: str, source: str,
              temperature: float | Sequence[float] = 1.0, task: str = "single",
              thresholds: Sequence[float] | None = None) -> ExportMetadata:
    temperature = [float(t) for t in temperature] if isinstance(temperature, (list, tuple)) else float(temperature)
    return ExportMetadata(model_name=name, classes=list(classes), input_spec=spec.to_dict(), input=graph.input,
                          temperature=temperature, task=task,
                          thresholds=[float(t) for t in thresholds] if thresholds is not None else None,
                          input_shape=list(graph.example.shape[1:]), source=source, notes=list(graph.notes),
                          versions={"resnetkit": __version__, "torch": torch.__version__.split("+")[0]})


def batch_dim() -> Any:
    """The dynamic batch axis of every exported or quantized graph."""
    return torch.export.Dim("batch", min=1, max=1 << 20)


def _write_onnx(graph: ExportGraph, path: str, meta: ExportMetadata) -> None:
    import onnx

    program = torch.onnx.export(graph.module, (graph.example,), dynamo=True, opset_version=ONNX_OPSET,
                                input_names=["input"], output_names=["logits"],
                                dynamic_shapes=({0: batch_dim()},), verbose=False)
    proto = program.model_proto
    add_onnx_metadata(proto, meta)
    onnx.save_model(proto, path)  # weights inside the file: ResNets stay far below ONNX's 2 GB limit


def add_onnx_metadata(proto: Any, meta: ExportMetadata) -> None:
    """Set ``meta``'s fields as ``metadata_props`` of the ONNX ``ModelProto`` (replacing earlier ones)."""
    props = to_onnx_props(meta)
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key not in props]
    del proto.metadata_props[:]
    for key, value in [*kept, *props.items()]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "resnetkit"


def _write_torchscript(graph: ExportGraph, path: str, meta: ExportMetadata) -> None:
    traced = torch.jit.trace(graph.module, (graph.example,), check_trace=False)
    torch.jit.save(traced, path, _extra_files={EXTRA_FILE: json.dumps(meta.to_dict())})


def _write_pt2(graph: ExportGraph, path: str, meta: ExportMetadata) -> None:
    program = torch.export.export(graph.module, (graph.example,), dynamic_shapes=({0: batch_dim()},))
    # Through a buffer: torch.export.save wants a name ending in .pt2, and the temporary file's is not.
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={EXTRA_FILE: json.dumps(meta.to_dict())})
    Path(path).write_bytes(buffer.getvalue())


_WRITERS = {"onnx": _write_onnx, "torchscript": _write_torchscript, "pt2": _write_pt2}


def default_export_path(folder: str | Path, model_name: str, fmt: str) -> Path:
    return Path(folder) / f"{model_name}{EXTENSIONS[fmt]}"


def sniff_format(path: str | Path) -> str | None:
    """The export format of a file by its content: onnx, torchscript, pt2, or None (a run checkpoint, other)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return "onnx"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return "onnx" if _looks_like_onnx(path) else None
    # torch >= 2.7 writes a PT2 archive (archive_format); torch 2.4-2.6 a zip with the program as JSON.
    if any(n.endswith("/archive_format") or n.endswith("serialized_exported_program.json") for n in names):
        return "pt2"
    if any("/code/" in n or n.endswith("/constants.pkl") for n in names):
        return "torchscript"
    return None


def _looks_like_onnx(path: Path) -> bool:
    # An ONNX ModelProto starts with field 1 (ir_version, varint): byte 0x08.
    try:
        with open(path, "rb") as fh:
            head = fh.read(1)
    except OSError:
        return False
    return head == b"\x08" and path.suffix.lower() not in (".pt", ".pth", ".safetensors")
