"""Each speedrun technique's effect on a short schedule: the recipe without it, mean and std over seeds.

Trains ``cifar10_speedrun`` (or ``--recipe``) on a subset of the CIFAR-10 JPEG copy for a few
epochs, once whole and once without each technique, for every seed; the held-out images are
the last 500 of each class (5,000), the training images the first ``--train-per-class``. The
test-time augmentation views are measured on the whole recipe's models (no retraining).

Usage:
    python benchmarks/speedrun_ablation.py --data ../shared/data/cifar10 --out runs/ablation \\
        [--seeds 3] [--epochs 4] [--train-per-class 1500] [--model resnet9_s] [--only full,no-lookahead]
Writes <out>/ablation.json and prints the Markdown table (BENCHMARKS.md has the results).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

# What each arm changes in the recipe (mappings merge key by key, as flags do).
ARMS: dict[str, dict] = {
    "full": {},
    "no whitening": {"model_args": {"whiten": 0}, "whiten_bias_epochs": 0},
    "no Dirac init": {"model_args": {"dirac_init": False}},
    "BatchNorm defaults": {"model_args": {"bn_frozen_scale": False, "bn_momentum": None, "bn_eps": None}},
    "no norm lr x64": {"norm_lr_mult": 1.0},
    "no Lookahead": {"lookahead_every": 0},
    "random flip": {"augment_args": {"flip_mode": "random"}},
    "zero padding": {"augment_args": {"pad_mode": "zero"}},
    "no label smoothing": {"label_smoothing": 0.0},
    "cosine schedule": {"schedule": "cosine", "warmup_from": 0.0},
}


def subset(data: Path, out: Path, train_per_class: int) -> Path:
    """train/ (the first N images of each class) and val/ (the last 500), as symbolic links."""
    root = out / "data"
    if root.exists():
        return root
    for cls in sorted(p.name for p in (data / "train").iterdir() if p.is_dir()):
        files = sorted((data / "train" / cls).glob("*.jpg"))
        for split, chosen in (("train", files[:train_per_class]), ("val", files[-500:])):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for f in chosen:
                (root / split / cls / f.name).symlink_to(f.resolve())
    return root


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/cifar10")
    p.add_argument("--out", default="runs/ablation")
    p.add_argument("--recipe", default="cifar10_speedrun")
    p.add_argument("--model", default="resnet9_s")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--train-per-class", type=int, default=1500)
    p.add_argument("--only", help="comma-separated arm names (default: all)")
    args = p.parse_args()

    import logging

    from resnetkit.engine import build_config, load_run, train

    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = subset(Path(args.data).resolve(), out, args.train_per_class)
    arms = [a.strip() for a in args.only.split(",")] if args.only else list(ARMS)
    results_path = out / "ablation.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {"runs": []}
    done = {(r["arm"], r["seed"]) for r in results["runs"]}
    for seed in range(args.seeds):
        for arm in arms:
            if (arm, seed) in done:
                continue
            run_dir = out / f"{arm.replace(' ', '-')}-seed{seed}"
            # val_split None: validate on the subset's val/ folder (the 5,000 held-out images); the
            # recipe's val_split would instead hold out a tenth of train/ and never look at val/.
            overrides = {"data": str(data), "model": args.model, "epochs": args.epochs, "time_budget_min": None,
                         "val_split": None, "eval_every": args.epochs, "seed": seed, "quiet": True, "out": str(run_dir), **ARMS[arm]}
            t0 = time.perf_counter()
            summary = train(build_config(args.recipe, overrides), resume="auto", changes={"out": str(run_dir)})
            metrics = json.loads((run_dir / "metrics.json").read_text())
            row = {"arm": arm, "seed": seed, "top1": metrics["top1"], "inference": metrics["inference"],
                   "best_epoch": summary.best_epoch, "minutes": round((time.perf_counter() - t0) / 60, 1)}
            if arm == "full":  # the views of test-time augmentation, on the same weights
                run = load_run(run_dir)
                for tta in ("none", "flip", "multiview"):
                    row[f"tta_{tta}"] = run.evaluate(str(data), tta=tta).accuracy
            results["runs"].append(row)
            results_path.write_text(json.dumps(results, indent=2))
            print(f"{arm:22s} seed {seed}: {100 * row['top1']:.2f}%  ({row['minutes']} min)", flush=True)
    print(table(results["runs"]))


def table(runs: list[dict]) -> str:
    by_arm: dict[str, list[float]] = {}
    for r in runs:
        by_arm.setdefault(r["arm"], []).append(100 * r["top1"])
    full = statistics.mean(by_arm["full"]) if by_arm.get("full") else None
    lines = ["| arm | seeds | top-1 % (mean ± std) | vs full |", "| --- | ---: | --- | ---: |"]
    for arm in ARMS:
        if arm not in by_arm:
            continue
        accs = by_arm[arm]
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        delta = "" if arm == "full" or full is None else f"{statistics.mean(accs) - full:+.2f}"
        lines.append(f"| {arm} | {len(accs)} | {statistics.mean(accs):.2f} ± {std:.2f} | {delta} |")
    tta = [r for r in runs if "tta_none" in r]
    for mode in ("none", "flip", "multiview"):
        if tta:
            accs = [100 * r[f"tta_{mode}"] for r in tta]
            std = statistics.stdev(accs) if len(accs) > 1 else 0.0
            lines.append(f"| full, TTA {mode} | {len(accs)} | {statistics.mean(accs):.2f} ± {std:.2f} | |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
