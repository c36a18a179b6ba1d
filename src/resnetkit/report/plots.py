"""PNG plots of a training run: curves, confusion matrix, spectrograms, model comparisons.

Figures are drawn with ``matplotlib.figure.Figure`` on a ``FigureCanvasAgg``, never through
pyplot: pyplot keeps global figure and backend state, which leaks memory in long runs,
breaks in threads and needs a display unless the backend is forced. Each file is written
atomically (:func:`resnetkit.runtime.files.atomic_write`), so a reader (a dashboard, a
half-finished sync) never sees a truncated PNG.

Every function returns the :class:`~pathlib.Path` it wrote and creates missing folders.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, TypeVar, Union

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, PercentFormatter

from ..runtime.files import atomic_write

PathLike = Union[str, "os.PathLike[str]"]

DPI = 120
MAX_SPECTROGRAMS = 16
# Above this many classes the confusion cells are too small for their counts.
MAX_ANNOTATED_CLASSES = 20
DEFAULT_METRIC_PAIRS: tuple[tuple[str, str], ...] = (("train_acc", "val_acc"), ("train_loss", "val_loss"))


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------

F = TypeVar("F", bound=Callable[..., Any])


def _plain_text(draw: F) -> F:
    """Draw with every string as plain text: class and model names come from users' folders, and
    matplotlib would parse ``$x^$`` or ``cost $\\undefinedmacro$`` in them as math (and fail)."""
    @functools.wraps(draw)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with matplotlib.rc_context({"text.parse_math": False}):
            return draw(*args, **kwargs)

    return wrapper  # type: ignore[return-value]



def _new_figure(width: float, height: float) -> Figure:
    # constrained layout makes room for rotated tick labels, legends and colour bars.
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: PathLike) -> Path:
    """Render ``fig`` to ``path`` as PNG atomically, then release its artists."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(target, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
    finally:
        # Without pyplot there is no figure manager to close; clearing drops the artists
        # (and their image buffers) even if the caller keeps a reference by accident.
        fig.clear()
    return target


def _check_path(path: object) -> None:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")


def _number(value: object, what: str) -> Optional[float]:
    """``value`` as a float, None when missing (None); TypeError for anything not numeric."""
    if value is None:
        return None
    if hasattr(value, "item") and callable(value.item):  # 0-d tensors and numpy scalars
        try:
            value = value.item()
        except (ValueError, RuntimeError):
            raise TypeError(f"{what} must be a single number, got an array of shape {getattr(value, 'shape', '?')}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number or None, got {type(value).__name__}")
    return float(value)


def _check_history(history: object, name: str = "history") -> list[Mapping[str, Any]]:
    if isinstance(history, (str, bytes, Mapping)) or not isinstance(history, Sequence):
        raise TypeError(f"{name} must be a list of dicts (one per epoch), got {type(history).__name__}")
    if not history:
        raise ValueError(f"{name} is empty; it needs at least one epoch")
    for i, row in enumerate(history):
        if not isinstance(row, Mapping):
            raise TypeError(f"{name}[{i}] must be a dict, got {type(row).__name__}")
        if row.get("epoch") is None:
            raise ValueError(f"{name}[{i}] has no 'epoch' (keys: {sorted(row)})")
    return list(history)


def _series(history: Sequence[Mapping[str, Any]], key: str, name: str = "history") -> tuple[list[float], list[float]]:
    """Epochs and values of ``key``, skipping rows where it is missing or None."""
    xs: list[float] = []
    ys: list[float] = []
    for i, row in enumerate(history):
        value = _number(row.get(key), f"{name}[{i}][{key!r}]")
        if value is not None:
            xs.append(_number(row["epoch"], f"{name}[{i}]['epoch']"))  # type: ignore[arg-type]
            ys.append(value)
    return xs, ys


def _line_kwargs(count: int) -> dict[str, Any]:
    # Markers show isolated points (validation every few epochs) but clutter long runs.
    return {"marker": "o", "markersize": 3} if count <= 60 else {}


def _colours(count: int) -> list[Any]:
    from matplotlib import colormaps

    if count <= 10:
        return [colormaps["tab10"](i) for i in range(count)]
    if count <= 20:
        return [colormaps["tab20"](i) for i in range(count)]
    return [colormaps["turbo"](i / (count - 1)) for i in range(count)]


# --------------------------------------------------------------------------------------
# Training curves
# --------------------------------------------------------------------------------------


@_plain_text
def plot_curves(history: Sequence[Mapping[str, Any]], path: PathLike, title: Optional[str] = None) -> Path:
    """Loss and accuracy against epoch, train and validation, in two panels.

    ``history`` rows have ``epoch``, ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``;
    a missing or None value (no validation that epoch) is skipped and the line joins the
    epochs that have one. Accuracies in [0, 1] are labelled as percentages.
    """
    _check_path(path)
    rows = _check_history(history)
    fig = _new_figure(11, 4.2)
    ax_loss, ax_acc = fig.subplots(1, 2)
    panels = ((ax_loss, "loss", "Loss"), (ax_acc, "acc", "Accuracy"))
    for ax, suffix, label in panels:
        drawn = []
        # Multi-label runs: accuracy is per label (train) and exact match (val); their mAP is drawn too.
        multilabel = any(row.get("val_map") is not None for row in rows)
        accuracy = suffix == "acc" and multilabel
        names = {"train": "train (per label)" if accuracy else "train",
                 "val": "val exact match" if accuracy else "val"}
        for split, colour in (("train", "tab:blue"), ("val", "tab:orange")):
            xs, ys = _series(rows, f"{split}_{suffix}")
            if xs:
                ax.plot(xs, ys, color=colour, label=names[split], **_line_kwargs(len(xs)))
                drawn.extend(ys)
        if suffix == "acc" and multilabel:
            xs, ys = _series(rows, "val_map")
            ax.plot(xs, ys, color="tab:green", label="val mAP", **_line_kwargs(len(xs)))
            drawn.extend(ys)
        if suffix == "acc":
            xs, ys = _series(rows, "val_map" if multilabel else "val_acc")
            finite = [(x, y) for x, y in zip(xs, ys) if math.isfinite(y)]
            if finite:
                best_x, best_y = max(finite, key=lambda p: p[1])
                ax.plot([best_x], [best_y], marker="*", markersize=12, color="tab:red", linestyle="none",
                        label=(f"best val{' mAP' if multilabel else ''} {best_y:.2%}" if best_y <= 1
                               else f"best val {best_y:.4g}"))
            if drawn and all(0.0 <= y <= 1.0 for y in drawn if math.isfinite(y)):
                ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        ax.set_title(label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label.lower())
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if drawn:
            ax.legend()
        else:
            ax.text(0.5, 0.5, f"no {label.lower()} recorded", ha="center", va="center", transform=ax.transAxes)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


# --------------------------------------------------------------------------------------
# Confusion matrix
# --------------------------------------------------------------------------------------


@_plain_text
def plot_confusion(
    matrix: Union[Sequence[Sequence[float]], np.ndarray],
    class_names: Sequence[str],
    path: PathLike,
    normalize: bool = True,
    title: Optional[str] = None,
) -> Path:
    """Heat map of a confusion matrix (rows: true class, columns: predicted).

    ``normalize=True`` colours each row by its fraction (the diagonal is per-class recall);
    rows without samples stay 0. With up to 20 classes the counts are written in the
    cells. Figure size and fonts scale with the class count, readable up to ~100 classes.
    """
    _check_path(path)
    if hasattr(matrix, "detach"):  # a torch tensor, without importing torch here
        matrix = matrix.detach().cpu().numpy()
    try:
        counts = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"matrix must be a square list of lists or array of numbers: {exc}") from None
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] == 0:
        raise ValueError(f"matrix must be square (K, K) with K >= 1, got shape {counts.shape}")
    k = counts.shape[0]
    if isinstance(class_names, str) or not isinstance(class_names, Sequence):
        raise TypeError(f"class_names must be a list of {k} names, got {type(class_names).__name__}")
    if len(class_names) != k:
        raise ValueError(f"class_names must list {k} names (one per matrix row), got {len(class_names)}")
    if not np.isfinite(counts).all() or (counts < 0).any():
        raise ValueError("matrix entries must be finite and non-negative")

    if normalize:
        totals = counts.sum(axis=1, keepdims=True)
        shown = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        vmax = 1.0
    else:
        shown = counts
        vmax = max(float(counts.max()), 1.0)

    # Cells shrink from 0.6 in to 0.2 in as K grows so that 100 classes fit in ~24 in.
    cell = float(np.clip(6.0 / k, 0.2, 0.6))
    side = max(6.0, k * cell + 2.5)
    tick_size = float(np.clip(cell * 72 * 0.6, 4.0, 10.0))
    fig = _new_figure(side + 1.2, side)
    ax = fig.subplots()
    image = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    colourbar = fig.colorbar(image, ax=ax, shrink=0.8 if k > 10 else 1.0)
    colourbar.set_label("fraction of the true class" if normalize else "count")
    if normalize:
        colourbar.ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))

    ticks = np.arange(k)
    names = [str(name) for name in class_names]
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    # 45 degrees reads better for a few long names; 90 keeps 100 names from overlapping.
    if k <= MAX_ANNOTATED_CLASSES:
        ax.set_xticklabels(names, rotation=45, ha="right", rotation_mode="anchor", fontsize=tick_size)
    else:
        ax.set_xticklabels(names, rotation=90, fontsize=tick_size)
    ax.set_yticklabels(names, fontsize=tick_size)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title or ("Confusion matrix (row-normalized)" if normalize else "Confusion matrix"))

    if k <= MAX_ANNOTATED_CLASSES:
        integral = np.all(counts == np.round(counts))
        text_size = float(np.clip(cell * 72 * 0.45, 6.0, 10.0))
        threshold = 0.5 * vmax
        for i in range(k):
            for j in range(k):
                text = f"{int(counts[i, j])}" if integral else f"{counts[i, j]:.2g}"
                ax.text(j, i, text, ha="center", va="center", fontsize=text_size,
                        color="white" if shown[i, j] > threshold else "black")
    return _save(fig, path)


def plot_calibration(calibration: Mapping[str, Any], path: PathLike) -> Path:
    """Reliability diagram: accuracy against confidence per bin, before and after the temperature.

    ``calibration`` is metrics.json's ``calibration`` entry (``reliability_before`` and
    ``reliability_after``: per bin its sample count, mean confidence and accuracy). A calibrated
    model's bars follow the diagonal; bars below it are over-confidence.
    """
    _check_path(path)
    panels = []
    for key, label in (("reliability_before", "before"), ("reliability_after", "after")):
        bins = calibration.get(key) if isinstance(calibration, Mapping) else None
        if not isinstance(bins, Mapping) or not all(k in bins for k in ("count", "confidence", "accuracy")):
            raise ValueError(f"calibration must hold {key} with count, confidence and accuracy per bin")
        ece = calibration.get("ece_before" if label == "before" else "ece_after")
        t = calibration["temperature"]
        if label == "before":
            title = f"{label} (T = 1)"
        elif isinstance(t, (list, tuple)):  # multi-label: one temperature per label
            title = f"after ({len(t)} per-label T, median {float(np.median(t)):.3g})"
        else:
            title = f"after (T = {float(t):.3g})"
        panels.append((title, bins, ece))
    fig = _new_figure(10.0, 4.6)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (title, bins, ece) in zip(axes, panels):
        counts = np.asarray(bins["count"], dtype=np.float64)
        k = len(counts)
        edges = np.linspace(0.0, 1.0, k + 1)
        centres = (edges[:-1] + edges[1:]) / 2
        accuracy = np.asarray(bins["accuracy"], dtype=np.float64)
        confidence = np.asarray(bins["confidence"], dtype=np.float64)
        used = counts > 0
        per_label = isinstance(t, (list, tuple))  # multi-label: the share of (sample, label) pairs that are positive
        ax.bar(centres[used], accuracy[used], width=1.0 / k, edgecolor="black", color="tab:blue",
               label="share positive" if per_label else "accuracy")
        low = np.minimum(accuracy, confidence)
        ax.bar(centres[used], np.abs(confidence - accuracy)[used], bottom=low[used], width=1.0 / k,
               color="tab:red", alpha=0.35, edgecolor="tab:red", label="gap to the mean confidence")
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("probability of each label" if isinstance(t, (list, tuple)) else "confidence (top-1 probability)")
        ax.set_title(f"{title}: ECE {100 * float(ece):.2f}%" if ece is not None else title)
        ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    axes[0].set_ylabel("share of the label present" if per_label else "accuracy")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle("Reliability diagram on the validation split")
    return _save(fig, path)


# --------------------------------------------------------------------------------------
# Spectrograms
# --------------------------------------------------------------------------------------


@_plain_text
@_plain_text
def plot_label_ap(per_label: Mapping[str, Mapping[str, Any]], path: PathLike) -> Path:
    """A multi-label run's average precision per label (metrics.json's ``per_label``), best first.

    Each bar is one label's AP on the validation split; the dashed line is their mean (mAP).
    Labels without a positive validation sample have no AP and are listed as such.
    """
    _check_path(path)
    if not isinstance(per_label, Mapping) or not per_label:
        raise ValueError("per_label must map each label to its metrics (ap, support, ...)")
    scored = [(str(name), float(v["ap"]), int(v.get("support", 0))) for name, v in per_label.items()
              if isinstance(v, Mapping) and v.get("ap") is not None]
    unscored = [str(name) for name, v in per_label.items() if not isinstance(v, Mapping) or v.get("ap") is None]
    scored.sort(key=lambda item: -item[1])
    fig = _new_figure(max(6.0, 0.45 * len(per_label) + 2.5), 4.4)
    ax = fig.subplots()
    if scored:
        names = [f"{name}\n(n={n})" for name, _, n in scored]
        values = [ap for _, ap, _ in scored]
        ax.bar(range(len(values)), values, color="tab:blue", edgecolor="black")
        mean = sum(values) / len(values)
        ax.axhline(mean, linestyle="--", color="tab:red", label=f"mAP {mean:.1%}")
        ax.set_xticks(range(len(values)), names, rotation=45 if len(values) > 8 else 0, ha="right" if len(values) > 8 else "center",
                      fontsize=8)
        ax.legend(loc="lower left")
    ax.set_ylim(0, 1)
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax.set_ylabel("average precision")
    title = "Average precision per label (validation)"
    if unscored:
        title += f"; no positive sample: {', '.join(unscored[:6])}" + (" ..." if len(unscored) > 6 else "")
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)


def plot_spectrograms(
    specs: Any,
    labels: Sequence[str],
    path: PathLike,
    ncols: int = 4,
    colorbar: bool = False,
    title: Optional[str] = None,
) -> Path:
    """Grid of log-mel spectrograms, (N, 1, F, T) or (N, F, T), each titled with its label.

    Values are drawn as given (already log-compressed, e.g. dB), low frequencies at the
    bottom; each panel has its own colour scale. At most the first 16 are shown.
    """
    _check_path(path)
    if hasattr(specs, "detach"):  # a torch tensor, without importing torch here
        specs = specs.detach().float().cpu().numpy()
    array = np.asarray(specs, dtype=np.float32)
    if array.ndim == 4:
        if array.shape[1] != 1:
            raise ValueError(f"4-D specs must have one channel, shape (N, 1, F, T), got {array.shape}")
        array = array[:, 0]
    if array.ndim != 3 or 0 in array.shape:
        raise ValueError(f"specs must have shape (N, 1, F, T) or (N, F, T) with no empty axis, got {np.shape(specs)}")
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive int, got {ncols!r}")
    if isinstance(labels, str) or not isinstance(labels, Sequence):
        raise TypeError(f"labels must be a list of {array.shape[0]} strings, got {type(labels).__name__}")
    if len(labels) != array.shape[0]:
        raise ValueError(f"labels must have one entry per spectrogram ({array.shape[0]}), got {len(labels)}")

    count, cols, fig, axes = _grid(array.shape[0], ncols, 3.2 + (0.6 if colorbar else 0.0), 2.6, title)
    for index, ax in enumerate(axes):
        if index >= count:
            ax.set_axis_off()
            continue
        image = ax.imshow(array[index], origin="lower", aspect="auto", cmap="magma", interpolation="nearest")
        ax.set_title(str(labels[index]), fontsize=10)
        # Axis labels only on the outer panels; every panel shares the same F x T layout.
        if index % cols == 0:
            ax.set_ylabel("mel bin")
        if index + cols >= count:
            ax.set_xlabel("frame")
        if colorbar:
            fig.colorbar(image, ax=ax, format="%.0f")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _grid(n: int, ncols: int, cell_width: float, cell_height: float, title: Optional[str]):
    """(panels drawn, columns, figure, flat axes) for a grid of at most MAX_SPECTROGRAMS panels."""
    count = min(n, MAX_SPECTROGRAMS)
    cols = min(ncols, count)
    rows = math.ceil(count / cols)
    fig = _new_figure(cell_width * cols, cell_height * rows + (0.4 if title else 0.0))
    return count, cols, fig, np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()


@_plain_text
def plot_images(images: Any, labels: Sequence[str], path: PathLike, ncols: int = 5, title: Optional[str] = None) -> Path:
    """Grid of images, (N, C, H, W) floats in [0, 1] with C 1 or 3, each titled with its label (at most 16)."""
    _check_path(path)
    if hasattr(images, "detach"):
        images = images.detach().float().cpu().numpy()
    array = np.asarray(images, dtype=np.float32)
    if array.ndim != 4 or array.shape[1] not in (1, 3) or 0 in array.shape:
        raise ValueError(f"images must have shape (N, 1 or 3, H, W), got {array.shape}")
    if len(labels) != array.shape[0]:
        raise ValueError(f"labels must have one entry per image ({array.shape[0]}), got {len(labels)}")
    count, _, fig, axes = _grid(array.shape[0], ncols, 1.9, 2.1, title)
    for index, ax in enumerate(axes):
        ax.set_axis_off()
        if index >= count:
            continue
        image = np.clip(array[index].transpose(1, 2, 0), 0.0, 1.0)
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None,
                  vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(str(labels[index]), fontsize=9)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


@_plain_text
def plot_preview(preview: Any, path: PathLike) -> Path:
    """A data set's :class:`~resnetkit.data.interface.Preview`: an image grid or a spectrogram grid."""
    if preview.style == "spectrogram":
        return plot_spectrograms(preview.samples, preview.labels, path, ncols=5, title=preview.title or None)
    if preview.style == "image":
        return plot_images(preview.samples, preview.labels, path, title=preview.title or None)
    raise ValueError(f"unknown preview style {preview.style!r}; expected image or spectrogram")


# --------------------------------------------------------------------------------------
# Comparing models
# --------------------------------------------------------------------------------------


@_plain_text
def plot_comparison_curves(
    runs: Mapping[str, Any],
    path: PathLike,
    metric_pairs: Sequence[tuple[str, str]] = DEFAULT_METRIC_PAIRS,
    title: Optional[str] = None,
) -> Path:
    """Several runs' curves overlaid, in the form of He et al. 2015, Figure 6.

    One panel per ``(train_key, val_key)`` pair of ``metric_pairs``, one colour per run,
    training dashed and validation solid. Accuracy keys (ending in ``acc``) are drawn as
    error, ``1 - acc``, in percent; they must be fractions in [0, 1]. The default draws
    error in the first panel and loss in the second.

    A value of ``runs`` is one history, or a list of histories (the seeds of one model): then
    the line is their mean at each epoch and a shaded band spans their minimum to maximum.
    """
    _check_path(path)
    if not isinstance(runs, Mapping) or not runs:
        raise ValueError("runs must be a non-empty dict {model name: history or list of histories}")
    groups = {str(name): _check_seed_histories(value, f"runs[{name!r}]") for name, value in runs.items()}
    pairs = [tuple(pair) for pair in metric_pairs]
    if not pairs or any(len(pair) != 2 or not all(isinstance(key, str) for key in pair) for pair in pairs):
        raise ValueError(f"metric_pairs must be a non-empty list of (train_key, val_key) pairs, got {metric_pairs!r}")

    fig = _new_figure(6.0 * len(pairs), 4.6)
    axes = np.atleast_1d(fig.subplots(1, len(pairs), squeeze=False)).ravel()
    colours = _colours(len(groups))
    for ax, (train_key, val_key) in zip(axes, pairs):
        is_error = train_key.endswith("acc") and val_key.endswith("acc")
        for colour, (name, histories) in zip(colours, groups.items()):
            for key, style in ((train_key, "--"), (val_key, "-")):
                series = []
                for i, rows in enumerate(histories):
                    label = f"runs[{name!r}]" if len(histories) == 1 else f"runs[{name!r}][{i}]"
                    xs, ys = _series(rows, key, label)
                    if is_error:
                        if any(not 0.0 <= y <= 1.0 for y in ys if math.isfinite(y)):
                            raise ValueError(f"{label} {key} must be fractions in [0, 1] to plot 1 - accuracy")
                        ys = [1.0 - y for y in ys]
                    series.append(dict(zip(xs, ys)))
                xs, mean, low, high = _across_seeds(series)
                if not xs:
                    continue
                ax.plot(xs, mean, linestyle=style, color=colour, linewidth=1.8 if style == "-" else 1.2)
                if len(histories) > 1:
                    ax.fill_between(xs, low, high, color=colour, alpha=0.18 if style == "-" else 0.08, linewidth=0)
        metric = "error" if is_error else _common_suffix(train_key, val_key)
        ax.set_title(f"{metric}: {train_key} (dashed), {val_key} (solid)", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{metric} (%)" if is_error else metric)
        if is_error:
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    handles = [Line2D([], [], color=colour, linewidth=2, label=name) for colour, name in zip(colours, groups)]
    handles += [Line2D([], [], color="grey", linestyle="--", label="train"),
                Line2D([], [], color="grey", linestyle="-", label="val")]
    counts = sorted({len(histories) for histories in groups.values()})
    if counts[-1] > 1:
        seeds = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
        handles.append(Patch(color="grey", alpha=0.3, label=f"mean of {seeds} seeds, band min-max"))
    axes[0].legend(handles=handles, fontsize=9, ncols=2 if len(handles) > 8 else 1)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _check_seed_histories(value: object, name: str) -> list[list[Mapping[str, Any]]]:
    """One model's runs as a list of histories: a single history, or a list of them (its seeds)."""
    if (isinstance(value, Sequence) and not isinstance(value, (str, bytes)) and value
            and all(isinstance(h, Sequence) and not isinstance(h, (str, bytes, Mapping)) for h in value)):
        return [_check_history(h, f"{name}[{i}]") for i, h in enumerate(value)]
    return [_check_history(value, name)]


def _across_seeds(series: Sequence[Mapping[float, float]]) -> tuple[list[float], list[float], list[float], list[float]]:
    """Epochs, and the mean, min and max over the runs that have a value at each (a short run stops counting)."""
    epochs = sorted({x for values in series for x in values})
    mean, low, high = [], [], []
    for x in epochs:
        ys = [values[x] for values in series if x in values]
        mean.append(sum(ys) / len(ys))
        low.append(min(ys))
        high.append(max(ys))
    return epochs, mean, low, high


def _common_suffix(train_key: str, val_key: str) -> str:
    # "train_loss" / "val_loss" -> "loss"; unrelated keys keep both names.
    train_tail = train_key.split("_", 1)[-1]
    return train_tail if train_tail == val_key.split("_", 1)[-1] else f"{train_key} / {val_key}"


@_plain_text
def plot_scatter(
    points: Sequence[Mapping[str, Any]],
    path: PathLike,
    xlabel: str = "parameters",
    ylabel: str = "top-1 accuracy",
    logx: bool = True,
    title: Optional[str] = None,
) -> Path:
    """Scatter of models (accuracy against parameters or MACs), each point labelled with its name.

    ``points`` are dicts with ``name``, ``x``, ``y``; ``logx`` needs every x > 0.
    """
    _check_path(path)
    if isinstance(points, (str, Mapping)) or not isinstance(points, Sequence) or not points:
        raise ValueError("points must be a non-empty list of dicts with keys name, x, y")
    names: list[str] = []
    xs: list[float] = []
    ys: list[float] = []
    for i, point in enumerate(points):
        if not isinstance(point, Mapping) or not {"name", "x", "y"} <= set(point):
            raise ValueError(f"points[{i}] must be a dict with keys name, x, y, got {point!r}")
        x = _number(point["x"], f"points[{i}]['x']")
        y = _number(point["y"], f"points[{i}]['y']")
        if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"points[{i}] needs finite x and y, got x={point['x']!r}, y={point['y']!r}")
        if logx and x <= 0:
            raise ValueError(f"points[{i}] ({point['name']!r}) has x={x}; a log x axis needs x > 0 (or pass logx=False)")
        names.append(str(point["name"]))
        xs.append(x)
        ys.append(y)

    fig = _new_figure(7.5, 5.5)
    ax = fig.subplots()
    ax.scatter(xs, ys, s=36, color="tab:blue", zorder=3)
    for name, x, y in zip(names, xs, ys):
        ax.annotate(name, (x, y), xytext=(5, 4), textcoords="offset points", fontsize=9)
    if logx:
        ax.set_xscale("log")
    if all(0.0 <= y <= 1.0 for y in ys):
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    # Room on the right for the last point's label.
    ax.margins(x=0.12, y=0.08)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"{ylabel} vs {xlabel}")
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


# --------------------------------------------------------------------------------------
# Explanations (Grad-CAM)
# --------------------------------------------------------------------------------------


def _explanation_figure(
    background: Any,
    cam: Any,
    top_k: Sequence[tuple[str, float]],
    style: str = "image",
    title: Optional[str] = None,
    target: Optional[str] = None,
    duration_s: Optional[float] = None,
    ylabel: str = "mel band",
    yticks: Sequence[tuple[float, str]] = (),
    method: str = "Grad-CAM",
    bars_title: Optional[str] = None,
) -> Figure:
    background = np.asarray(background, dtype=np.float32)
    cam = np.asarray(cam, dtype=np.float32)
    if style not in ("image", "spectrogram"):
        raise ValueError(f"style must be 'image' or 'spectrogram', got {style!r}")
    if style == "image" and (background.ndim != 3 or background.shape[-1] not in (1, 3)):
        raise ValueError(f"an image background must be (H, W, 1 or 3) in [0, 1], got shape {background.shape}")
    if style == "spectrogram" and background.ndim != 2:
        raise ValueError(f"a spectrogram background must be (F, T), got shape {background.shape}")
    if cam.shape != background.shape[:2]:
        raise ValueError(f"the map {cam.shape} must match the background's height and width {background.shape[:2]}")
    if not top_k:
        raise ValueError("top_k must list at least one (class, probability) pair")

    fig = _new_figure(12.0 if style == "spectrogram" else 10.5, 3.8)
    ax_in, ax_cam, ax_bar = fig.subplots(1, 3, width_ratios=(1.0, 1.2, 0.9) if style == "spectrogram" else (1, 1.2, 1))
    if style == "image":
        rgb = np.clip(background, 0.0, 1.0)
        shown = rgb[..., 0] if rgb.shape[-1] == 1 else rgb
        gray = {"cmap": "gray", "vmin": 0.0, "vmax": 1.0} if rgb.shape[-1] == 1 else {}
        ax_in.imshow(shown, interpolation="nearest", **gray)
        ax_in.set_title("input (as the model sees it)", fontsize=10)
        ax_cam.imshow(shown, interpolation="nearest", **gray)
        heat = ax_cam.imshow(cam, cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0, interpolation="bilinear")
        for ax in (ax_in, ax_cam):
            ax.set_xticks([])
            ax.set_yticks([])
    else:
        height, width = background.shape
        extent = (0.0, float(duration_s) if duration_s else float(width), 0.0, float(height))
        common = {"origin": "lower", "aspect": "auto", "extent": extent, "interpolation": "nearest"}
        image = ax_in.imshow(background, cmap="magma", **common)
        fig.colorbar(image, ax=ax_in, format="%.0f dB", pad=0.02)
        ax_in.set_title("log-mel spectrogram" if yticks else "input features", fontsize=10)
        ax_cam.imshow(background, cmap="gray", **common)
        heat = ax_cam.imshow(cam, cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0, **{**common, "interpolation": "bilinear"})
        for ax in (ax_in, ax_cam):
            ax.set_xlabel("time (s)" if duration_s else "frame")
            ax.set_ylabel(ylabel)
            if yticks:
                ax.set_yticks([position for position, _ in yticks], [label for _, label in yticks])
    fig.colorbar(heat, ax=ax_cam, fraction=0.046, pad=0.03, label="class activation")
    ax_cam.set_title(f"{method}: {target}" if target else method, fontsize=10)

    names = [str(name) for name, _ in top_k][::-1]
    probs = [float(p) for _, p in top_k][::-1]
    colours = ["tab:red" if target is not None and name == str(target) else "tab:blue" for name in names]
    bars = ax_bar.barh(range(len(names)), probs, color=colours)
    ax_bar.set_yticks(range(len(names)), names)
    ax_bar.set_xlim(0.0, 1.0)
    ax_bar.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax_bar.bar_label(bars, labels=[f"{p:.1%}" for p in probs], padding=2, fontsize=8)
    ax_bar.set_title(bars_title or f"top {len(names)} classes", fontsize=10)
    ax_bar.spines[["top", "right"]].set_visible(False)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


@_plain_text
def plot_explanation(path: PathLike, background: Any, cam: Any, top_k: Sequence[tuple[str, float]],
                     **kwargs: Any) -> Path:
    """The input, its class-activation map over it and the top-k classes, side by side.

    ``background``: an image (H, W, C) in [0, 1] (``style="image"``) or a spectrogram (F, T)
    in dB (``style="spectrogram"``, drawn with low frequencies at the bottom; ``duration_s``
    labels the time axis in seconds, ``yticks`` places (band, label) pairs such as Hz on
    the frequency axis). ``cam``: (H, W) or (F, T) in [0, 1]. ``top_k``: (class, probability)
    pairs, best first; ``target`` (the explained class) is drawn in red; ``method`` names the map.
    """
    _check_path(path)
    return _save(_explanation_figure(background, cam, top_k, **kwargs), path)


@_plain_text
def explanation_png(background: Any, cam: Any, top_k: Sequence[tuple[str, float]], **kwargs: Any) -> bytes:
    """:func:`plot_explanation` as PNG bytes (for an HTTP response), nothing written to disk."""
    import io

    fig = _explanation_figure(background, cam, top_k, **kwargs)
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=DPI)
    finally:
        fig.clear()
    return buffer.getvalue()
