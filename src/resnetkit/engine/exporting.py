"""``export_run``: what ``resnetkit export`` does, from a trained run to a checked file.

The run's model is written to ONNX, TorchScript or ``.pt2`` with its classes and
preprocessing inside, read back, and run side by side with the PyTorch model (fp32) on up to
1,000 real samples of the run's validation data. The numbers go beside the file as
``FILE.parity.json``; a file whose top-1 agreement is below 99.9% is renamed
``FILE.failed`` and the export fails. ``int8=True`` (ONNX) then quantizes the checked fp32
graph with onnxruntime, calibrated on samples of the run's training split, and measures
its agreement and accuracy the same way.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from ..data import LabelledData
from ..export import (
    FORMATS,
    MIN_FP32_AGREEMENT,
    ExportMetadata,
    Parity,
    export_model,
    load_exported,
    measure_parity,
    quantize_onnx,
)
from ..export.formats import add_onnx_metadata, default_export_path
from ..export.metadata import format_of
from ..runtime.files import atomic_write, save_json
from .inference import LoadedRun, load_run
from .run_data import run_splits, sample_batches

log = logging.getLogger(__name__)

PARITY_SAMPLES = 1000  # validation samples the export is checked on
CALIBRATION_SAMPLES = 512  # training samples int8 activation ranges are observed on


class ExportParityError(ValueError):
    """The exported file does not compute what the PyTorch model computes; it was renamed to mark it."""


@dataclass
class ExportReport:
    path: Path
    format: str
    metadata: ExportMetadata
    parity: Parity  # the fp32 file against the PyTorch model
    parity_path: Path
    data: str  # where the parity samples came from
    int8: Optional[Parity] = None  # the int8 file against the PyTorch model (with int8=True)

    def describe(self) -> str:
        lines = [f"exported {self.metadata.model_name} to {self.path} ({self.format}, input: {self.metadata.input}, "
                 f"{len(self.metadata.classes)} classes)",
                 f"  parity fp32: {self.parity.describe()}"]
        if self.int8 is not None:
            lines.append(f"  int8:        {self.int8.describe()}")
        lines += [f"  note: {n}" for n in self.metadata.notes]
        lines.append(f"  parity written to {self.parity_path}")
        return "\n".join(lines)


def _matched(data: LabelledData, classes: list[str]) -> LabelledData:
    return data if list(data.classes) == list(classes) else data.remap_classes(classes)


def export_run(
    checkpoint: str | Path,
    fmt: str,
    out: str | Path | None = None,
    *,
    int8: bool = False,
    calibrate: int = CALIBRATION_SAMPLES,
    parity_samples: int = PARITY_SAMPLES,
    data: str | None = None,
    calibration_data: str | None = None,
    min_agreement: float = MIN_FP32_AGREEMENT,
    waveform: bool | None = None,
    seed: int = 0,
    progress: Callable[[str], Any] = log.info,
) -> ExportReport:
    """Export a run (directory or checkpoint) to ``out`` as ``fmt`` and check it against the PyTorch model."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if int8 and fmt != "onnx":
        raise ValueError(f"--int8 writes ONNX files (onnxruntime's quantize_static), not {fmt}; for int8 in PyTorch "
                         "use optimize_for_inference(model, precision='int8', calibration=...) or "
                         "`resnetkit evaluate --precision int8`")
    if int8 and calibrate < 1:
        raise ValueError(f"--calibrate must be >= 1 (training samples for int8 calibration), got {calibrate}")
    if parity_samples < 1:
        raise ValueError(f"--parity-samples must be >= 1, got {parity_samples}")
    run = load_run(checkpoint, device="cpu")
    out = Path(out) if out is not None else default_export_path(run.path.parent, run.model_name, fmt)
    implied = format_of(out)
    if implied is not None and implied != fmt:
        raise ValueError(f"--out {out} names a {implied} file, but --format is {fmt}")
    if out.is_dir():
        raise IsADirectoryError(f"--out {out} is a folder; give a file name (e.g. {out / default_export_path('.', run.model_name, fmt).name})")

    splits = None
    if data is not None:
        held_out, data_name = run.load_eval_data(data), str(data)
    else:
        splits = run_splits(run.config, run.path)
        held_out = splits.val
        data_name = f"{run.config.get('data')} (the run's validation split)"
        if held_out is None or len(held_out) == 0:
            raise ValueError(f"{run.path}: the run has no validation data to check the export on; pass --data")
    held_out = _matched(held_out, run.classes)

    progress(f"exporting {run.model_name} to {out} ({fmt})...")
    # The fp32 file goes beside the target under a temporary name when int8 follows.
    fp32_path = out if not int8 else Path(tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".fp32.onnx")[1])
    try:
        graph, meta = export_model(run.model, fp32_path, fmt, input_spec=run.input_spec, classes=run.classes,
                                   model_name=run.model_name, source=str(run.path), waveform=waveform,
                                   temperature=run.temperature, task=run.task, thresholds=run.thresholds)
        exported = load_exported(fp32_path)
        samples = sample_batches(held_out, exported.input_spec, parity_samples, seed=seed)
        if not samples:
            raise ValueError(f"no samples in {data_name} to check the export on")
        progress(f"checking parity on {sum(len(x) for x, _ in samples)} samples of {data_name}...")
        cuts = _label_cuts(run)
        parity = measure_parity(graph.module, exported.module, samples, label_cuts=cuts)
        report = ExportReport(out, fmt, meta, parity, Path(f"{out}.parity.json"), data_name)
        passed = parity.agreement >= min_agreement
        if passed and int8:
            report.int8 = _quantize(run, graph, exported, fp32_path, out, meta, samples, calibrate, calibration_data,
                                    splits, seed, progress)
            report.metadata = load_exported(out).metadata
    finally:
        if int8 and fp32_path.exists():
            os.unlink(fp32_path)
    record = {"file": str(out), "format": fmt, "source": str(run.path), "data": data_name,
              "samples": parity.samples, "min_top1_agreement": min_agreement, "passed": passed,
              "input": meta.input, "fp32": parity.to_dict(), "int8": report.int8.to_dict() if report.int8 else None}
    save_json(record, report.parity_path)
    if not passed:
        failed = Path(f"{out}.failed")
        if out.exists():
            os.replace(out, failed)
        raise ExportParityError(
            f"parity check failed for {out}: "
            f"{'top-1 agreement' if parity.label_agreement is None else 'agreement (top-1 and label decisions)'} "
            f"with the PyTorch model {parity.agreement:.2%} < "
            f"{min_agreement:.1%} on {parity.samples} samples (max |logit diff| {parity.max_abs_diff:.3g}); "
            f"the file was renamed {failed.name}, the numbers are in {report.parity_path.name}")
    return report


def _quantize(run: LoadedRun, graph, exported, fp32_path: Path, out: Path, meta: ExportMetadata, samples,
              calibrate: int, calibration_data: str | None, splits, seed: int, progress) -> Parity:
    import onnx

    if calibration_data is not None:
        train, source = run.load_eval_data(calibration_data), str(calibration_data)
    else:
        splits = splits or run_splits(run.config, run.path)
        train, source = splits.train, f"{run.config.get('data')} (the run's training split)"
        if train is None:
            raise ValueError(f"{run.path}: the run has no training data to calibrate int8 on; pass --calibration-data")
    calibration = [x for x, _ in sample_batches(_matched(train, run.classes), exported.input_spec, calibrate,
                                                 seed=seed + 1)]
    if not calibration:
        raise ValueError(f"the calibration set is empty: {source} holds no samples")
    progress(f"quantizing to int8 (onnxruntime QDQ, per-channel) on {sum(len(x) for x in calibration)} samples "
             f"of {source}...")
    int8_tmp = Path(tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".int8.onnx")[1])
    try:
        quantize_onnx(fp32_path, int8_tmp, calibration, input_shape=meta.input_shape)
        proto = onnx.load(str(int8_tmp))
        meta.precision = "int8"
        meta.notes.append(f"int8: onnxruntime quantize_static (QDQ, per-channel weights) calibrated on "
                          f"{sum(len(x) for x in calibration)} samples of {source}")
        add_onnx_metadata(proto, meta)
        atomic_write(out, lambda tmp: onnx.save_model(proto, tmp))
    finally:
        if int8_tmp.exists():
            os.unlink(int8_tmp)
    quantized = load_exported(out)
    return measure_parity(graph.module, quantized.module, samples, label_cuts=_label_cuts(run))


def _label_cuts(run: LoadedRun):
    """A multi-label run's decision points on the logits: label k is predicted when z_k >= T_k * logit(threshold_k)."""
    if not run.multilabel:
        return None
    import torch

    cut = torch.tensor(run.thresholds or [0.5] * len(run.classes), dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
    return torch.as_tensor(run.temperature, dtype=torch.float64) * torch.logit(cut)
