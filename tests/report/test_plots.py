"""Every plot writes a PNG that decodes, atomically, without pyplot; bad input raises."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnetkit.report.plots import (
    plot_comparison_curves,
    plot_confusion,
    plot_curves,
    plot_scatter,
    plot_spectrograms,
)

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _assert_png(path: Path) -> tuple[int, int]:
    assert path.is_file()
    with Image.open(path) as image:
        image.load()  # decodes every row: a truncated file fails here
        assert image.format == "PNG"
        assert image.mode in ("RGB", "RGBA")
        width, height = image.size
    assert width > 0 and height > 0
    # No temporary file left beside the plot.
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    return width, height


def _history(epochs: int, final: float = 0.92, val_every: int = 1) -> list[dict]:
    rows = []
    for epoch in range(1, epochs + 1):
        decay = math.exp(-epoch / (epochs / 4))
        row = {
            "epoch": epoch,
            "train_loss": 2.3 * decay + 0.05,
            "train_acc": 1.0 - 0.9 * decay - 0.3 * (1 - final),
        }
        if epoch % val_every == 0:
            row["val_loss"] = 2.3 * decay + 0.3
            row["val_acc"] = final - 0.8 * decay
        rows.append(row)
    return rows


def test_plot_curves_with_missing_validation(tmp_path: Path) -> None:
    history = _history(30, val_every=3)
    history[4]["val_loss"] = None  # present but None, as a logger writes a skipped evaluation
    history[4]["val_acc"] = None
    out = plot_curves(history, tmp_path / "curves.png", title="resnet20 / CIFAR-10")
    assert out == tmp_path / "curves.png"
    _assert_png(out)


def test_plot_curves_train_only_and_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "curves.png"  # missing folders are created
    history = [{"epoch": e, "train_loss": 1.0 / e, "train_acc": 1 - 1.0 / (e + 1)} for e in range(1, 4)]
    plot_curves(history, path)
    first = path.read_bytes()
    plot_curves(_history(5), path)
    assert path.read_bytes() != first
    _assert_png(path)


def test_plot_confusion_100_classes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 4, (100, 100)) + np.diag(rng.integers(20, 60, 100))
    matrix[7] = 0  # a class absent from the evaluation set: its row stays 0, not NaN
    names = [f"class_{i:03d}" for i in range(100)]
    width, height = _assert_png(plot_confusion(matrix, names, tmp_path / "cm100.png"))
    assert width >= 1500 and height >= 1500  # big enough for 100 labels


@pytest.mark.parametrize("normalize", [True, False])
def test_plot_confusion_10_classes(tmp_path: Path, normalize: bool) -> None:
    rng = np.random.default_rng(1)
    matrix = (rng.integers(0, 15, (10, 10)) + np.diag(rng.integers(50, 150, 10))).tolist()
    _assert_png(plot_confusion(matrix, CIFAR10, tmp_path / "cm10.png", normalize=normalize))


def test_plot_spectrograms(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    # 20 log-mel spectrograms in dB, (N, 1, F, T): only the first 16 are drawn.
    specs = torch.randn(20, 1, 64, 101, generator=generator) * 10 - 40
    labels = [f"digit {i % 10}" for i in range(20)]
    _assert_png(plot_spectrograms(specs, labels, tmp_path / "specs.png", title="FSDD"))
    # (N, F, T) arrays, fewer than ncols, with colour bars.
    small = np.random.default_rng(0).normal(size=(3, 40, 50)).astype(np.float32) * 10 - 40
    _assert_png(plot_spectrograms(small, ["a", "b", "c"], tmp_path / "small.png", ncols=5, colorbar=True))


def test_plot_comparison_three_runs(tmp_path: Path) -> None:
    runs = {
        "plain-20": _history(60, final=0.90),
        "resnet-20": _history(60, final=0.92),
        "resnet-56": _history(60, final=0.935, val_every=2),
    }
    _assert_png(plot_comparison_curves(runs, tmp_path / "compare.png", title="CIFAR-10"))
    _assert_png(plot_comparison_curves(runs, tmp_path / "error_only.png", metric_pairs=[("train_acc", "val_acc")]))


def test_plot_comparison_bands_over_seeds(tmp_path: Path, monkeypatch) -> None:
    from matplotlib.axes import Axes

    bands = []
    original = Axes.fill_between

    def record(self, x, low, high, **kwargs):
        bands.append((list(x), list(low), list(high)))
        return original(self, x, low, high, **kwargs)

    monkeypatch.setattr(Axes, "fill_between", record)
    seeds = [_history(12, final=f) for f in (0.90, 0.92, 0.94)]
    seeds[2] = seeds[2][:10]  # a seed that stopped early leaves the last epochs to the others
    runs = {"resnet-20": seeds, "plain-20": [_history(12, final=0.88), _history(12, final=0.89)]}
    _assert_png(plot_comparison_curves(runs, tmp_path / "bands.png"))
    # Two models x (train, val) x (error, loss) panels, each a band from the lowest to the highest seed.
    assert len(bands) == 8
    x, low, high = bands[1]  # resnet-20's validation error
    assert x == list(range(1, 13))
    errors = [[1 - row["val_acc"] for row in h] for h in seeds]
    assert low[0] == pytest.approx(min(e[0] for e in errors)) and high[0] == pytest.approx(max(e[0] for e in errors))
    assert low[-1] == pytest.approx(min(errors[0][-1], errors[1][-1]))

    # One history per model draws no band, as before.
    bands.clear()
    _assert_png(plot_comparison_curves({"a": _history(5), "b": [_history(5)]}, tmp_path / "one.png"))
    assert bands == []
    with pytest.raises(ValueError, match=r"runs\['a'\]\[1\] is empty"):
        plot_comparison_curves({"a": [_history(5), []]}, tmp_path / "bad.png")


def test_plot_scatter(tmp_path: Path) -> None:
    points = [
        {"name": "resnet18", "x": 11.7e6, "y": 0.698},
        {"name": "resnet34", "x": 21.8e6, "y": 0.733},
        {"name": "resnet50", "x": 25.6e6, "y": 0.761},
        {"name": "resnet101", "x": 44.5e6, "y": 0.774},
        {"name": "resnet152", "x": 60.2e6, "y": 0.783},
        {"name": "vgg16", "x": 138.4e6, "y": 0.716},
    ]
    _assert_png(plot_scatter(points, tmp_path / "scatter.png", "parameters", "top-1 accuracy"))
    _assert_png(plot_scatter(points, tmp_path / "linear.png", "GMACs", "top-1", logx=False))


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        plot_curves([], tmp_path / "a.png")
    with pytest.raises(ValueError, match="epoch"):
        plot_curves([{"train_loss": 1.0}], tmp_path / "a.png")
    with pytest.raises(TypeError, match="number"):
        plot_curves([{"epoch": 1, "train_loss": "high"}], tmp_path / "a.png")
    with pytest.raises(ValueError, match="square"):
        plot_confusion([[1, 2, 3], [4, 5, 6]], ["a", "b"], tmp_path / "a.png")
    with pytest.raises(ValueError, match="3 names"):
        plot_confusion(np.eye(3), ["a", "b"], tmp_path / "a.png")
    with pytest.raises(ValueError, match="shape"):
        plot_spectrograms(np.zeros((2, 3, 8, 8)), ["a", "b"], tmp_path / "a.png")
    with pytest.raises(ValueError, match="one entry per spectrogram"):
        plot_spectrograms(np.zeros((2, 8, 8)), ["a"], tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"fractions in \[0, 1\]"):
        plot_comparison_curves({"a": [{"epoch": 1, "train_acc": 93.0, "val_acc": 91.0}]}, tmp_path / "a.png")
    with pytest.raises(ValueError, match="x > 0"):
        plot_scatter([{"name": "a", "x": 0, "y": 0.5}], tmp_path / "a.png", "params", "acc")
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary file left


def test_no_pyplot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # pyplot would install global figure state and pick a backend; with a None entry in
    # sys.modules any import of it, here or inside matplotlib, raises ImportError.
    import resnetkit.report.plots as plots

    assert not any(getattr(value, "__name__", "") == "matplotlib.pyplot" for value in vars(plots).values())
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    history = _history(3)
    plot_curves(history, tmp_path / "a.png")
    plot_confusion(np.eye(3), ["a", "b", "c"], tmp_path / "b.png")
    plot_spectrograms(np.zeros((2, 1, 8, 8)), ["a", "b"], tmp_path / "c.png", colorbar=True)
    plot_comparison_curves({"a": history, "b": history}, tmp_path / "d.png")
    plot_scatter([{"name": "a", "x": 1, "y": 0.5}], tmp_path / "e.png", "x", "y")
    assert len(list(tmp_path.glob("*.png"))) == 5
