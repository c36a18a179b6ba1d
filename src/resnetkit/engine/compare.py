"""``resnetkit compare``: several architectures, one data set, one recipe, one budget.

Each model trains in its own run directory under the comparison folder, one after another.
A stopped comparison picks up where it was: finished runs (metrics.json present) are kept,
an interrupted one resumes from its last checkpoint. The report (table and plots) is rebuilt
from the run directories alone, so ``--report`` needs no training.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch
import yaml

from ..data import input_spec_from_dict
from ..models import model_stats, pretrained_weights
from ..runtime.files import save_json, save_text
from .config import TrainConfig
from .inference import load_run
from .training import train

log = logging.getLogger(__name__)

TABLE_COLUMNS = ("model", "params", "macs", "train_images_per_sec", "latency_ms", "final_train_error",
                 "best_val_acc", "best_epoch", "epochs", "wall_minutes")


def compare(models: Sequence[str], config: TrainConfig, out_dir: str | Path, measure_latency: bool = True) -> list[dict]:
    """Train every model in ``models`` under ``config`` (resuming where a run stopped), then report.

    ``measure_latency=False`` leaves the batch-1 latency column empty (it loads every model).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not models:
        raise ValueError("compare needs at least one model (--models resnet20,plain20,...)")
    if config.pretrained:  # every model must have the weights before the first one trains
        for name in models:
            pretrained_weights(name, config.pretrained)
    save_text(yaml.safe_dump({"models": list(models), "config": config.to_dict()}, sort_keys=False), out / "compare.yaml")
    for name in models:
        run_dir = out / name
        if (run_dir / "metrics.json").exists():
            log.info("%s: finished earlier, kept", name)
            continue
        log.info("%s: %s", name, "resuming the interrupted run" if (run_dir / "last.pt").exists() else "training")
        run_config = replace(config, model=name, out=str(run_dir))
        # Every setting of the study is given: an interrupted run continues only under the same ones.
        train(run_config, resume="auto", changes=run_config.to_dict())
    return report(out, models, measure_latency)


def summarize_run(run_dir: Path, measure_latency: bool = True) -> dict:
    """One table row from a finished run directory."""
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    info = json.loads((run_dir / "data_config.json").read_text())
    loaded = load_run(run_dir, device="cpu") if measure_latency else None
    name = info["model"]
    input_size = input_spec_from_dict(info["input"]).input_size
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    # The run's own options (width, whitening, ...) decide its size, not the family's defaults.
    args = {**dict(config.get("model_args") or {}), "num_classes": len(metrics["per_class"]), "in_chans": input_size[0]}
    stats = model_stats(name, input_size, **args)
    ips = [float(r["images_per_sec"]) for r in rows[1:]] or [float(rows[0]["images_per_sec"])]
    last = rows[-1]
    return {
        "model": name,
        "params": stats["params"],
        "macs": stats["macs"],
        "train_images_per_sec": statistics.median(ips),
        "latency_ms": _latency_ms(loaded, input_size) if loaded else None,
        "final_train_error": 1.0 - float(last["train_acc"]),
        "best_val_acc": max(float(r["val_acc"]) for r in rows if r["val_acc"]),
        "best_epoch": metrics.get("epoch"),
        "epochs": len(rows),
        "wall_minutes": sum(float(r["seconds"]) + float(r.get("val_seconds") or 0) for r in rows) / 60,
        "history": [{k: (float(v) if v not in ("", None) else None) for k, v in r.items()} for r in rows],
    }


def _latency_ms(loaded, input_size, repeats: int = 20) -> float:
    """Batch-1 latency of the run's model through optimize_for_inference (median)."""
    from ..export import optimize_for_inference

    module = optimize_for_inference(loaded.model, device="cpu", compile=False)
    x = torch.randn(1, *input_size)
    times = []
    with torch.inference_mode():
        for i in range(repeats + 3):
            t0 = time.perf_counter()
            module(x)
            if i >= 3:
                times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def report(out_dir: str | Path, models: Sequence[str] | None = None, measure_latency: bool = True) -> list[dict]:
    """Table (Markdown, CSV, JSON) and plots from the finished runs under ``out_dir``."""
    from ..report.plots import plot_comparison_curves, plot_scatter

    out = Path(out_dir)
    if models is None:
        models = [p.name for p in sorted(out.iterdir()) if (p / "metrics.json").exists()]
    missing = [m for m in models if not (out / m / "metrics.json").exists()]
    if missing:
        raise FileNotFoundError(f"no finished run for {', '.join(missing)} under {out} (run compare without --report first)")
    if not models:
        raise FileNotFoundError(f"{out} holds no finished runs (expected <model>/metrics.json)")
    rows = [summarize_run(out / m, measure_latency) for m in models]
    table = [{k: r[k] for k in TABLE_COLUMNS} for r in rows]
    save_json({"runs": table}, out / "compare.json")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=TABLE_COLUMNS)
    writer.writeheader()
    writer.writerows(table)
    save_text(buf.getvalue(), out / "compare.csv")
    save_text(format_markdown(table), out / "compare.md")
    plot_comparison_curves({r["model"]: r["history"] for r in rows}, out / "compare_curves.png")
    points = [{"name": r["model"], "x": r["params"], "y": r["best_val_acc"]} for r in rows]
    plot_scatter(points, out / "accuracy_vs_params.png", xlabel="parameters", ylabel="best validation accuracy")
    points = [{"name": r["model"], "x": r["macs"], "y": r["best_val_acc"]} for r in rows]
    plot_scatter(points, out / "accuracy_vs_macs.png", xlabel="MACs per image", ylabel="best validation accuracy")
    return table


def format_markdown(table: list[dict]) -> str:
    head = ("| model | params | MACs | train img/s | latency (ms, batch 1) | final train error | best val acc "
            "| epochs | wall (min) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    lines = []
    for r in table:
        latency = f"{r['latency_ms']:.2f}" if r["latency_ms"] is not None else "-"
        lines.append(
            f"| {r['model']} | {r['params'] / 1e6:.3f}M | {r['macs'] / 1e6:.1f}M | {r['train_images_per_sec']:.0f} "
            f"| {latency} | {r['final_train_error']:.2%} | {r['best_val_acc']:.2%} (epoch {r['best_epoch']}) "
            f"| {r['epochs']} | {r['wall_minutes']:.1f} |"
        )
    return head + "\n".join(lines) + "\n"
