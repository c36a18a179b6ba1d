"""``resnetkit compare``: several architectures, one data set, one recipe, one budget.

Each model trains in its own run directory under the comparison folder, one after another.
A stopped comparison picks up where it was: finished runs (metrics.json present) are kept,
an interrupted one resumes from its last checkpoint. The report (table and plots) is rebuilt
from the run directories alone, so ``--report`` needs no training.

``seeds=N`` (``--seeds N``) trains every model N times, with seeds ``seed, seed + 1, ...``,
into ``<out>/<model>/seed<k>``; all of them share one validation split (the split follows
``split_seed``, fixed to the first seed), so each run's per-sample predictions on it
(``val_predictions.csv`` in its folder) pair with every other run's. The report then gives
mean, standard deviation and a bootstrap interval of each model's accuracy and, for each pair
of models, exact McNemar tests between runs of the same seed (:mod:`resnetkit.report.stats`).
With one seed the layout and the report are those of a single run per model.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import logging
import re
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
import yaml

from ..data import BatchOptions, LabelledData, input_spec_from_dict
from ..models import model_stats, pretrained_weights
from ..report.stats import ALPHA, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, bootstrap_interval, discordant, mcnemar_exact, mean_std
from ..runtime.files import save_json, save_text
from .config import TrainConfig
from .evaluation import collect_logits
from .inference import load_run
from .run_data import data_request, load_data
from .training import train
from .tta import with_tta

log = logging.getLogger(__name__)

TABLE_COLUMNS = ("model", "params", "macs", "train_images_per_sec", "latency_ms", "final_train_error",
                 "best_val_acc", "best_epoch", "epochs", "wall_minutes")
# With seeds: one row per model (the spread over its seeds), one per run, one per pair of models.
SEED_TABLE_COLUMNS = ("model", "params", "macs", "train_images_per_sec", "latency_ms", "final_train_error_mean",
                      "final_train_error_std", "val_acc_mean", "val_acc_std", "val_acc_ci_low", "val_acc_ci_high",
                      "val_acc_per_seed", "seeds", "epochs", "wall_minutes")
SEED_RUN_COLUMNS = ("model", "seed", "val_acc", *TABLE_COLUMNS[1:])
PAIR_COLUMNS = ("model_a", "model_b", "difference", "mcnemar_p", "seeds_below_alpha", "verdict", "per_seed")
PREDICTIONS_FILE = "val_predictions.csv"
_SEED_DIR = re.compile(r"seed(\d+)")


def compare(models: Sequence[str], config: TrainConfig, out_dir: str | Path, measure_latency: bool = True,
            seeds: int = 1) -> list[dict]:
    """Train every model in ``models`` under ``config`` (resuming where a run stopped), then report.

    ``measure_latency=False`` leaves the batch-1 latency column empty (it loads every model).
    ``seeds``: runs per model, with seeds ``config.seed + k``, on one validation split.
    """
    check_seeds(seeds)
    if not models:
        raise ValueError("compare needs at least one model (--models resnet20,plain20,...)")
    _check_single_label(config)
    if config.pretrained:  # every model must have the weights before the first one trains
        for name in models:
            pretrained_weights(name, config.pretrained)
    out = Path(out_dir)
    planned = {name: _planned_runs(out, name, config, seeds) for name in models}
    out.mkdir(parents=True, exist_ok=True)
    study = {"models": list(models), "config": config.to_dict()}
    if seeds > 1:
        study["seeds"] = seeds
    save_text(yaml.safe_dump(study, sort_keys=False), out / "compare.yaml")
    for name in models:
        for label, run_config in planned[name]:
            run_dir = Path(run_config.out)
            if (run_dir / "metrics.json").exists():
                log.info("%s: finished earlier, kept", label)
                continue
            log.info("%s: %s", label, "resuming the interrupted run" if (run_dir / "last.pt").exists() else "training")
            # Every setting of the study is given: an interrupted run continues only under the same ones.
            train(run_config, resume="auto", changes=run_config.to_dict())
    seed_values = [run_config.seed for _, run_config in planned[models[0]]] if seeds > 1 else None
    return report(out, models, measure_latency, seeds=seed_values)


def _check_single_label(config: TrainConfig) -> None:
    """compare ranks runs by accuracy and pairs their per-sample hits: single-label runs only, said before training."""
    from ..data.label_files import is_label_file, read_label_file

    multilabel = config.task == "multilabel" or (
        config.task == "auto" and is_label_file(config.data)
        and read_label_file(config.data, config.path_col, config.label_col, label_sep=config.label_sep).multilabel)
    if multilabel:
        raise ValueError(f"--data {config.data} is multi-label; compare ranks single-label runs by accuracy and "
                         "pairs their per-sample hits. Train multi-label models one by one (resnetkit train) and "
                         "compare their metrics.json (map, per_label)")


def check_seeds(seeds: object) -> int:
    """``seeds`` if it is a usable number of training runs per model, else a TypeError/ValueError that says so."""
    if isinstance(seeds, bool) or not isinstance(seeds, int):
        raise TypeError(f"--seeds must be a whole number of training runs per model, got {seeds!r}")
    if seeds < 1:
        raise ValueError(f"--seeds must be at least 1 (training runs per model, each with its own seed), got {seeds}")
    return seeds


def _planned_runs(out: Path, name: str, config: TrainConfig, seeds: int) -> list[tuple[str, TrainConfig]]:
    """(log label, configuration) of each run of model ``name``; refuses a folder laid out for the other mode."""
    folder = out / name
    if seeds == 1:
        if seed_runs(folder):
            raise ValueError(f"{folder} holds runs of several seeds ({', '.join(p.name for p in seed_runs(folder).values())}); "
                             "give the same --seeds, or another --out for a single run per model")
        return [(name, replace(config, model=name, out=str(folder)))]
    if holds_single_run(folder):
        raise ValueError(f"{folder} holds a single run of {name} (no --seeds); compare with --seeds into another --out")
    # One validation split for every seed: a paired test needs the same samples in every run.
    split_seed = config.seed if config.split_seed is None else config.split_seed
    return [(f"{name} seed {seed}", replace(config, model=name, out=str(folder / f"seed{seed}"), seed=seed,
                                            split_seed=split_seed))
            for seed in range(config.seed, config.seed + seeds)]


def holds_single_run(folder: Path) -> bool:
    return any((folder / f).exists() for f in ("metrics.json", "last.pt", "config.yaml"))


def seed_runs(folder: Path, finished: bool = False) -> dict[int, Path]:
    """The seed runs of one model's folder, ``{seed: folder/seed<k>}`` (only those with metrics.json if ``finished``)."""
    if not folder.is_dir():
        return {}
    runs = {}
    for p in folder.iterdir():
        match = _SEED_DIR.fullmatch(p.name)
        if match and p.is_dir() and (not finished or (p / "metrics.json").is_file()):
            runs[int(match.group(1))] = p
    return dict(sorted(runs.items()))


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


def report(out_dir: str | Path, models: Sequence[str] | None = None, measure_latency: bool = True,
           seeds: Sequence[int] | None = None) -> list[dict]:
    """Table (Markdown, CSV, JSON) and plots from the finished runs under ``out_dir``.

    ``seeds``: the seeds of every model's runs (``<model>/seed<k>``); None reads the layout of
    the folder: a run per model, or the seed runs that every model has finished.
    """
    out = Path(out_dir)
    if models is None:
        models = [p.name for p in sorted(out.iterdir())
                  if (p / "metrics.json").exists() or seed_runs(p, finished=True)] if out.is_dir() else []
    if not models:
        raise FileNotFoundError(f"{out} holds no finished runs (expected <model>/metrics.json or "
                                "<model>/seed<k>/metrics.json)")
    if seeds is None:
        seeds = finished_seeds(out, models)
    if seeds is not None:
        return _seed_report(out, list(models), list(seeds), measure_latency)
    missing = [m for m in models if not (out / m / "metrics.json").exists()]
    if missing:
        raise FileNotFoundError(f"no finished run for {', '.join(missing)} under {out} (run compare without --report first)")
    rows = [summarize_run(out / m, measure_latency) for m in models]
    table = [{k: r[k] for k in TABLE_COLUMNS} for r in rows]
    save_json({"runs": table}, out / "compare.json")
    save_text(_csv(table, TABLE_COLUMNS), out / "compare.csv")
    save_text(format_markdown(table), out / "compare.md")
    _plots(out, {r["model"]: r["history"] for r in rows}, [(r["model"], r["params"], r["macs"], r["best_val_acc"]) for r in rows],
           "best validation accuracy")
    return table


def finished_seeds(out: Path, models: Sequence[str]) -> Optional[list[int]]:
    """The seeds of a comparison folder laid out by seed, None for one run per model.

    Every model must have finished the same seeds: a paired test matches runs seed by seed.
    """
    if all(not seed_runs(out / m) for m in models):
        return None
    found = {m: list(seed_runs(out / m, finished=True)) for m in models}
    single = [m for m in models if (out / m / "metrics.json").exists()]
    if single:
        raise ValueError(f"{out} mixes single runs ({', '.join(single)}) with runs by seed; report them from separate folders")
    seeds = sorted(set().union(*found.values()))
    incomplete = {m: sorted(set(seeds) - set(s)) for m, s in found.items() if set(s) != set(seeds)}
    if incomplete:
        listed = "; ".join(f"{m} lacks seed {', '.join(map(str, s))}" for m, s in incomplete.items())
        raise FileNotFoundError(f"no finished run for every seed under {out}: {listed} "
                                "(run compare with --seeds without --report first)")
    return seeds


def _seed_report(out: Path, models: list[str], seeds: list[int], measure_latency: bool) -> list[dict]:
    """The report of a comparison over seeds: the spread per model, every run, and the pairwise tests."""
    if not seeds:
        raise ValueError("a report over seeds needs at least one seed")
    missing = [f"{m} seed {s}" for m in models for s in seeds if not (out / m / f"seed{s}" / "metrics.json").exists()]
    if missing:
        raise FileNotFoundError(f"no finished run for {', '.join(missing)} under {out} (run compare without --report first)")
    folders = {m: [out / m / f"seed{s}" for s in seeds] for m in models}
    summaries = {m: [summarize_run(f, measure_latency and i == 0) for i, f in enumerate(folders[m])] for m in models}
    reference = shared_validation(folders)
    correct = _correctness(folders, reference)
    split_seed = data_request(reference).seed
    table, runs = [], []
    for m in models:
        accs = correct[m].mean(axis=1)
        for seed, acc, row in zip(seeds, accs, summaries[m]):
            runs.append({"model": m, "seed": seed, "val_acc": float(acc), **{k: row[k] for k in TABLE_COLUMNS[1:]}})
        first = summaries[m][0]
        acc_mean, acc_std = mean_std(accs)
        err_mean, err_std = mean_std([r["final_train_error"] for r in summaries[m]])
        low, high = bootstrap_interval(correct[m])
        table.append({
            "model": m, "params": first["params"], "macs": first["macs"],
            "train_images_per_sec": statistics.median(r["train_images_per_sec"] for r in summaries[m]),
            "latency_ms": first["latency_ms"],
            "final_train_error_mean": err_mean, "final_train_error_std": err_std,
            "val_acc_mean": acc_mean, "val_acc_std": acc_std, "val_acc_ci_low": low, "val_acc_ci_high": high,
            "val_acc_per_seed": [float(a) for a in accs], "seeds": list(seeds),
            "epochs": [r["epochs"] for r in summaries[m]],
            "wall_minutes": sum(r["wall_minutes"] for r in summaries[m]),
        })
    pairs = pairwise_tests(models, seeds, correct)
    samples = next(iter(correct.values())).shape[1]
    method = {
        "seeds": list(seeds), "validation_samples": samples, "split_seed": split_seed, "alpha": ALPHA,
        "val_acc": "top-1 accuracy of the best epoch's weights (metrics.json) on the shared validation split",
        "val_acc_std": "sample standard deviation over seeds (n - 1)",
        "latency_ms": "the first seed's run",
        "val_acc_ci": f"95% percentile bootstrap of the seed-mean accuracy over validation samples "
                      f"({BOOTSTRAP_RESAMPLES} resamples, numpy seed {BOOTSTRAP_SEED})",
        "mcnemar": "exact two-sided McNemar test between the two models' runs of the same seed; mcnemar_p is the "
                   "largest over seeds, 'beyond noise' when every seed has p < alpha with the same model ahead",
    }
    save_json({"method": method, "models": table, "runs": runs, "pairs": pairs}, out / "compare.json")
    save_text(_csv(table, SEED_TABLE_COLUMNS), out / "compare.csv")
    save_text(_csv(runs, SEED_RUN_COLUMNS), out / "compare_seeds.csv")
    save_text(_csv(pairs, PAIR_COLUMNS), out / "compare_pairs.csv")
    save_text(format_seed_markdown(table, pairs, samples, split_seed), out / "compare.md")
    _plots(out, {m: [r["history"] for r in summaries[m]] for m in models},
           [(r["model"], r["params"], r["macs"], r["val_acc_mean"]) for r in table],
           f"validation accuracy (mean of {len(seeds)} seeds)")
    return table


def pairwise_tests(models: Sequence[str], seeds: Sequence[int], correct: dict[str, np.ndarray]) -> list[dict]:
    """For each pair of models, McNemar's exact test between their runs of each seed.

    ``correct[model]``: (seeds, samples) booleans on the shared validation samples. The verdict
    is an intersection-union test: "beyond noise" when every seed's test rejects equal accuracy
    at ``ALPHA`` and the same model is ahead in all of them; its p-value is the largest of the
    seeds' (no correction for the number of seeds is needed, since all of them must reject).
    """
    pairs = []
    for i, a in enumerate(models):
        for b in models[i + 1:]:
            per_seed = []
            for k, seed in enumerate(seeds):
                only_a, only_b = discordant(correct[a][k], correct[b][k])
                per_seed.append({"seed": seed, "a_only_correct": only_a, "b_only_correct": only_b,
                                 "difference": float(correct[a][k].mean() - correct[b][k].mean()),
                                 "p": mcnemar_exact(only_a, only_b)})
            p_max = max(s["p"] for s in per_seed)
            one_side = all(s["a_only_correct"] > s["b_only_correct"] for s in per_seed) or \
                all(s["a_only_correct"] < s["b_only_correct"] for s in per_seed)
            pairs.append({
                "model_a": a, "model_b": b,
                "difference": float(correct[a].mean() - correct[b].mean()),
                "mcnemar_p": p_max,
                "seeds_below_alpha": sum(s["p"] < ALPHA for s in per_seed),
                "verdict": "beyond noise" if p_max < ALPHA and one_side else "within noise",
                "per_seed": per_seed,
            })
    return pairs


def shared_validation(folders: dict[str, list[Path]]) -> TrainConfig:
    """The configuration of the first run, after checking that every run was validated on the same samples.

    The data settings that pick the validation split (data, val_split, the split's seed, ...) must
    be equal in every run: then the split is the same by construction.
    """
    configs = {f: TrainConfig.from_dict(yaml.safe_load((f / "config.yaml").read_text()) or {}, str(f / "config.yaml"))
               for runs in folders.values() for f in runs}
    reference_dir, reference = next(iter(configs.items()))
    reference_request = dataclasses.asdict(data_request(reference))
    for f, config in configs.items():
        request = dataclasses.asdict(data_request(config))
        if request != reference_request:
            differ = ", ".join(f"{k}={request[k]!r} (against {reference_request[k]!r})"
                               for k in request if request[k] != reference_request[k])
            raise ValueError(f"{f} was validated on other samples than {reference_dir}: {differ}; a paired test needs "
                             "one validation split for every run (compare --seeds fixes split_seed)")
    return reference


def _correctness(folders: dict[str, list[Path]], reference: TrainConfig) -> dict[str, np.ndarray]:
    """(seeds, samples) booleans per model: each run right or wrong on each shared validation sample."""

    @functools.cache
    def shared_val() -> LabelledData:  # rebuilt once, and only if a run has no predictions on record
        val = load_data(reference).val
        if val is None:
            raise ValueError(f"--data {reference.data} has no validation split to compare the runs on")
        return val

    targets: Optional[np.ndarray] = None
    correct = {}
    for model, runs in folders.items():
        rows = []
        for f in runs:
            y, pred = val_predictions(f, shared_val)
            if targets is None:
                targets, first = y, f
            elif len(y) != len(targets) or not np.array_equal(y, targets):
                raise ValueError(f"{f} and {first} hold predictions for different validation samples "
                                 f"({len(y)} and {len(targets)}); delete their {PREDICTIONS_FILE} and rebuild the report")
            rows.append(pred == y)
        correct[model] = np.stack(rows)
    return correct


def val_predictions(run_dir: Path, val_data: Callable[[], LabelledData]) -> tuple[np.ndarray, np.ndarray]:
    """Targets and predictions of the run's best weights on its validation split, in the split's order.

    Read from ``val_predictions.csv`` in the run directory, else computed through the path that
    wrote metrics.json (optimize_for_inference at the run's precision, its TTA) and stored
    there. ``val_data``: returns the validation data; called only when the record is missing.
    """
    path = run_dir / PREDICTIONS_FILE
    if path.is_file():
        rows = list(csv.DictReader(open(path)))
        return (np.array([int(r["target"]) for r in rows], dtype=np.int64),
                np.array([int(r["prediction"]) for r in rows], dtype=np.int64))
    data = val_data()
    config = TrainConfig.from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()) or {}, str(run_dir / "config.yaml"))
    loaded = load_run(run_dir, device=config.device)
    if list(data.classes) != loaded.classes:
        raise ValueError(f"{run_dir} was trained on classes {loaded.classes}, the validation data has {list(data.classes)}")
    workers = config.workers if config.workers is not None else min(8, torch.get_num_threads())
    options = BatchOptions(train=False, batch_size=config.batch_size, device=loaded.device,
                           channels_last=config.channels_last, workers=workers, num_classes=len(loaded.classes))
    model = with_tta(loaded.inference_model(config.amp), config.tta, loaded.kind)
    logits, y = collect_logits(model, data.batches(loaded.input_spec, options), loaded.device)
    y, pred = y.cpu().numpy().astype(np.int64), logits.argmax(1).cpu().numpy().astype(np.int64)
    recorded = json.loads((run_dir / "metrics.json").read_text()).get("top1")
    if recorded is not None and len(y) and abs(float(np.mean(pred == y)) - recorded) > 0.5 / len(y):
        log.warning("%s: the predictions give %.4f top-1, metrics.json %.4f (another precision or device?)",
                    run_dir, float(np.mean(pred == y)), recorded)
    save_text("index,target,prediction\n" + "".join(f"{i},{t},{p}\n" for i, (t, p) in enumerate(zip(y, pred))), path)
    return y, pred


def _csv(rows: list[dict], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        # Lists (per-seed values) in one cell, space-separated; nested records stay in compare.json.
        writer.writerow({k: " ".join(map(str, v)) if isinstance(v, list) and all(not isinstance(x, dict) for x in v)
                         else (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in row.items()})
    return buf.getvalue()


def _plots(out: Path, histories: dict[str, Any], points: list[tuple[str, int, int, float]], ylabel: str) -> None:
    from ..report.plots import plot_comparison_curves, plot_scatter

    plot_comparison_curves(histories, out / "compare_curves.png")
    plot_scatter([{"name": n, "x": params, "y": acc} for n, params, _, acc in points], out / "accuracy_vs_params.png",
                 xlabel="parameters", ylabel=ylabel)
    plot_scatter([{"name": n, "x": macs, "y": acc} for n, _, macs, acc in points], out / "accuracy_vs_macs.png",
                 xlabel="MACs per image", ylabel=ylabel)


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


def format_seed_markdown(table: list[dict], pairs: list[dict], samples: int, split_seed: int) -> str:
    """The table of a comparison over seeds, the pairwise tests, and a footnote that says what each number is."""
    seeds = table[0]["seeds"]
    head = ("| model | params | MACs | train img/s | latency (ms, batch 1) | final train error | val acc (mean ± std) "
            "| 95% CI | per seed | epochs | wall (min) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    lines = []
    for r in table:
        latency = f"{r['latency_ms']:.2f}" if r["latency_ms"] is not None else "-"
        epochs = sorted(set(r["epochs"]))
        per_seed = ", ".join(f"{a:.2%}" for a in r["val_acc_per_seed"])
        lines.append(
            f"| {r['model']} | {r['params'] / 1e6:.3f}M | {r['macs'] / 1e6:.1f}M | {r['train_images_per_sec']:.0f} "
            f"| {latency} | {r['final_train_error_mean']:.2%} ± {100 * r['final_train_error_std']:.2f} "
            f"| {r['val_acc_mean']:.2%} ± {100 * r['val_acc_std']:.2f} "
            f"| {r['val_acc_ci_low']:.2%} – {r['val_acc_ci_high']:.2%} | {per_seed} "
            f"| {epochs[0] if len(epochs) == 1 else f'{epochs[0]}-{epochs[-1]}'} | {r['wall_minutes']:.1f} |"
        )
    text = head + "\n".join(lines) + "\n"
    if pairs:
        text += ("\n| model A | model B | difference (A - B) | McNemar p (largest over seeds) | seeds with p < 0.05 "
                 "| verdict |\n|---|---|---:|---:|---:|---|\n")
        text += "".join(
            f"| {p['model_a']} | {p['model_b']} | {100 * p['difference']:+.2f} points | {_p_value(p['mcnemar_p'])} "
            f"| {p['seeds_below_alpha']}/{len(seeds)} | {p['verdict']} |\n" for p in pairs)
    text += (
        f"\n{len(seeds)} seeds per model ({', '.join(map(str, seeds))}), every run validated on the same "
        f"{samples} samples (split seed {split_seed}); latency of the first seed's run, wall time the sum over "
        "seeds. Val acc: the best epoch's weights (metrics.json); ± is the standard deviation over seeds (n - 1), "
        "in points, as for the final train error. 95% CI: percentile bootstrap of the seed-mean "
        f"accuracy over the validation samples ({BOOTSTRAP_RESAMPLES} resamples, fixed seed): what another "
        "validation set of this size could give, not the spread over seeds. McNemar: the exact test between the "
        "two models' runs of the same seed, on the samples only one of them gets right, one test per seed; the p "
        "shown is the largest, and \"beyond noise\" means every seed's p < 0.05 with the same model ahead (an "
        "intersection-union test: valid at 0.05 with no correction for the number of seeds).\n"
    )
    return text


def _p_value(p: float) -> str:
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"
