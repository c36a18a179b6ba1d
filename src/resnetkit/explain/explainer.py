"""Explanations of a loaded run for files and uploads: the maps, the top-k and what to draw them over.

:func:`explain_inputs` prepares raw inputs exactly as ``predict`` does (the run's
:class:`~resnetkit.data.interface.InputSpec`), runs :func:`~.gradcam.grad_cam` on the run's
PyTorch model and returns one :class:`ExplainedInput` per input; ``save``/``png`` draw it
(:func:`resnetkit.report.plots.plot_explanation`) over what the input spec shows of each input
(:meth:`~resnetkit.data.interface.InputSpec.display`: images as the model sees them, audio as
its spectrogram in dB).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from .gradcam import METHODS, grad_cam

# Inputs explained per forward/backward pass: the backward pass keeps every activation.
EXPLAIN_CHUNK = 16


@dataclass
class ExplainedInput:
    """One input's explanation, or the error that kept it from being explained."""

    source: str
    error: Optional[str] = None
    target: Optional[str] = None  # the class the map explains
    target_probability: Optional[float] = None
    top_k: list[dict] = field(default_factory=list)  # {"class", "index", "probability"}, best first
    cam: Optional[np.ndarray] = None  # (H, W) in [0, 1]
    background: Optional[np.ndarray] = None  # image (H, W, C) in [0, 1], or spectrogram (F, T)
    style: str = "image"
    method: str = "gradcam"
    layer: str = ""
    axes: dict = field(default_factory=dict)  # spectrograms: duration_s, ylabel, yticks

    def _plot_args(self) -> dict:
        if self.error:
            raise ValueError(f"{self.source}: nothing to draw: {self.error}")
        name = Path(self.source).name if self.source not in ("upload", "tensor") else self.source
        method = "Grad-CAM++" if self.method == "gradcam++" else "Grad-CAM"
        bars = [(t["class"], t["probability"]) for t in self.top_k]
        bars_title = f"top {len(bars)} classes"
        if self.target not in [name for name, _ in bars] and self.target_probability is not None:
            bars.append((self.target, self.target_probability))  # an explained class outside the top k
            bars_title += " and the explained class"
        return dict(background=self.background, cam=self.cam, top_k=bars, style=self.style, bars_title=bars_title,
                    target=self.target, method=method,
                    title=f"{name}: {method} of class '{self.target}' at {self.layer}",
                    **self.axes)

    def save(self, path: str | Path) -> Path:
        """Write the PNG (atomically) and return its path."""
        from ..report.plots import plot_explanation  # matplotlib only when drawing

        args = self._plot_args()
        return plot_explanation(path, args.pop("background"), args.pop("cam"), args.pop("top_k"), **args)

    def png(self) -> bytes:
        """The same PNG as bytes."""
        from ..report.plots import explanation_png

        args = self._plot_args()
        return explanation_png(args.pop("background"), args.pop("cam"), args.pop("top_k"), **args)


def explain_unavailable(run: Any) -> Optional[str]:
    """None when ``run`` can be explained, else why not (an exported model has no PyTorch graph to hook)."""
    model = getattr(run, "model", None)
    if isinstance(model, torch.nn.Module) and not isinstance(model, torch.jit.ScriptModule) \
            and hasattr(model, "feature_info") and hasattr(model, "stages"):
        return None
    what = Path(str(getattr(run, "path", "") or "this model")).name
    return (f"explanations need the PyTorch model of a run directory (or its .pt checkpoint); "
            f"{what} is an exported model without one. Serve the run directory to explain.")


def class_index(classes: Sequence[str], target: Any) -> int:
    """The index of ``target``: a class name, or a class index (an int or a string of digits)."""
    names = [str(c) for c in classes]
    if isinstance(target, str) and target in names:
        return names.index(target)
    try:
        index = int(target)
    except (TypeError, ValueError):
        index = None
    if index is None or isinstance(target, bool) or not 0 <= index < len(names):
        shown = ", ".join(names[:20]) + (f", ... ({len(names)} classes)" if len(names) > 20 else "")
        raise ValueError(f"unknown target class {target!r}; the model's classes are {shown} "
                         f"(a name, or an index 0..{len(names) - 1})")
    return index


def explain_inputs(run: Any, items: Sequence[Any], target: Any = None, method: str = "gradcam", top_k: int = 5,
                   layer: Any = None) -> list[ExplainedInput]:
    """Explain ``items`` (paths, uploads as bytes or file objects, PIL images, tensors) with ``run``.

    ``run`` has ``model``, ``classes``, ``input_spec`` and ``device`` (a
    :class:`~resnetkit.engine.inference.LoadedRun`). ``target``: a class name or index for
    every input, or None for each input's predicted class. An unreadable item gets its
    error in the result instead of stopping the others.

    A multi-label run (``run.multilabel``) scores each label on its own (its calibrated
    sigmoid); with ``target=None`` every label it predicts for an input (at or above the
    label's threshold; the most probable one when none is) gets its own map, so an input may
    give several results, in order, each naming its ``target``.
    """
    reason = explain_unavailable(run)
    if reason:
        raise ValueError(reason)
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    classes = list(run.classes)
    target_index = None if target is None else class_index(classes, target)
    k = max(1, min(int(top_k), len(classes)))
    spec, device = run.input_spec, getattr(run, "device", torch.device("cpu"))
    results: list[ExplainedInput] = []
    for start in range(0, len(items), EXPLAIN_CHUNK):
        chunk = list(items[start : start + EXPLAIN_CHUNK])
        prepared = spec.prepare(chunk, device)
        readable = [item for item, error in zip(chunk, prepared.errors) if not error]
        multilabel = bool(getattr(run, "multilabel", False))
        if prepared.batch is not None:
            batch, rows, targets = prepared.batch, torch.arange(len(prepared.batch)), target_index
            if multilabel and target_index is None:
                rows, targets = _predicted_labels(run, prepared.batch)
                batch = prepared.batch[rows.to(prepared.batch.device)]
            found = grad_cam(run.model, batch, target=targets, layer=layer, method=method)
            probabilities = run.probabilities(found.logits) if multilabel else found.probabilities
            display = spec.display(readable, prepared.batch)
        row = 0
        for position, (name, error) in enumerate(zip(prepared.names, prepared.errors)):
            if error:
                results.append(ExplainedInput(name, error=error, method=method))
                continue
            for j in (rows == row).nonzero().flatten().tolist():
                probs, idx = probabilities[j].topk(k)
                explained = int(found.targets[j])
                results.append(ExplainedInput(
                    source=name, target=classes[explained],
                    target_probability=float(probabilities[j, explained]),
                    top_k=[{"class": classes[i], "index": int(i), "probability": float(p)} for p, i in zip(probs, idx)],
                    cam=found.maps[j].cpu().numpy(), background=display.pictures[row], style=display.style,
                    method=method, layer=found.layer, axes=display.axes))
            row += 1
    return results


@torch.no_grad()
def _predicted_labels(run: Any, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each input of a multi-label run, the labels it predicts: (input row, label) pairs, in input order."""
    model = run.model
    was_training = model.training
    model.eval()
    try:
        probs = run.probabilities(model(batch)).cpu()
    finally:
        model.train(was_training)
    index = {name: i for i, name in enumerate(run.classes)}
    rows, labels = [], []
    for i, p in enumerate(probs):
        chosen = [index[name] for name in run.label_decision(p)["labels"]] or [int(p.argmax())]
        rows += [i] * len(chosen)
        labels += chosen
    return torch.tensor(rows), torch.tensor(labels)
