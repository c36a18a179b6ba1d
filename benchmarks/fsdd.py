"""FSDD spoken digits: the official split and leave-one-speaker-out, for several models.

For each model: one run on the data set's own split (recordings 0-4 of every digit and
speaker held out as the test set) and one run per speaker with that speaker held out
(train on the other four). Each run goes through the real engine with the model's recipe;
the accuracy reported is on the held-out part, with the weights of the last epoch (no
model selection on the test set).

With ``--seeds 0,1,2`` every run is repeated per seed: the table gives each speaker's mean
over the seeds, the mean and the lowest speaker of the leave-one-speaker-out folds, and the
mean and std over seeds of the LOSO mean. ``--epochs N`` trains exactly N epochs and turns a
recipe's time budget off, so that other jobs on the machine change the time, not the result.

Usage:
    python benchmarks/fsdd.py --data ../shared/data/fsdd/recordings --out runs/bench-fsdd \
        [--models res15_narrow,resnet20,plain20] [--splits official,loso] [--recipe audio_default] \
        [--epochs 10] [--seeds 0,1,2] [--overrides '{"audio": {"normalize": "utterance"}}']
Writes <out>/fsdd_benchmark.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import time
from pathlib import Path

from resnetkit.engine import build_config, train

ROOT = Path(__file__).resolve().parents[1]
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "yweweler")
# The recipe each model trains with; a plain net uses its residual twin's recipe unchanged.
RECIPES = {
    "res15": "fsdd_res15",
    "res15_narrow": "fsdd_res15",
    "res8": "fsdd_res15",
    "res8_narrow": "fsdd_res15",
    "resnet20": "fsdd_resnet20",
    "plain20": "fsdd_resnet20",
}


def run_one(model: str, split: str, data: str, out: Path, extra: dict, recipe: str | None = None,
            seed: int | None = None) -> dict:
    recipe = recipe or RECIPES.get(model, "fsdd_resnet20")
    name = split.replace(":", "-") + ("" if seed is None else f"-seed{seed}")
    run_dir = out / model / name
    if run_dir.exists():
        # Not in the results file, so a run of this script stopped in the middle of it: start it over
        # (the engine refuses to write over an unfinished run).
        logging.info("%s: an unfinished run of an earlier invocation; training it again", run_dir)
        shutil.rmtree(run_dir)
    overrides = {"model": model, "data": data, "fsdd_split": split, "out": str(run_dir), "quiet": True,
                 "in_chans": 1, **extra}
    if seed is not None:
        overrides["seed"] = seed
    config = build_config(recipe, overrides)
    t0 = time.perf_counter()
    summary = train(config)
    seconds = time.perf_counter() - t0
    last = summary.history[-1]
    return {"model": model, "split": split, "seed": seed, "test_acc_last_epoch": last["val_acc"], "best_val_acc": summary.best_val_acc,
            "epochs": len(summary.history), "seconds": seconds, "run_dir": str(summary.run_dir)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "fsdd" / "recordings"))
    p.add_argument("--out", default="runs/bench-fsdd")
    p.add_argument("--models", default="res15_narrow,resnet20,plain20")
    p.add_argument("--splits", default="official,loso", help="official, loso, or speakers:NAME entries")
    p.add_argument("--epochs", type=int, help="train exactly this many epochs (a recipe's time budget is turned off)")
    p.add_argument("--seeds", help="comma-separated training seeds (default: the recipe's seed, one run per split)")
    p.add_argument("--recipe", help="train every model with this recipe (e.g. audio_default) instead of its own")
    p.add_argument("--overrides", type=json.loads, default={},
                   help='settings over the recipe\'s, as JSON (mappings merge key by key): \'{"audio": {"normalize": "utterance"}}\'')
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    splits: list[str] = []
    for s in args.splits.split(","):
        splits += [f"speakers:{name}" for name in SPEAKERS] if s == "loso" else [s]
    seeds: list[int | None] = [int(x) for x in args.seeds.split(",")] if args.seeds else [None]
    if not isinstance(args.overrides, dict):
        p.error(f"--overrides must be a JSON object, got {args.overrides!r}")
    extra = {**args.overrides, **({"epochs": args.epochs, "time_budget_min": None} if args.epochs else {})}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "fsdd_benchmark.json"
    # Resumable: finished (model, split, seed) runs are kept from an earlier run of this script.
    results = json.loads(results_path.read_text())["runs"] if results_path.exists() else []
    done = {(r["model"], r["split"], r.get("seed")) for r in results}
    for model in args.models.split(","):
        for seed in seeds:
            for split in splits:
                if (model, split, seed) in done:
                    continue
                results.append(run_one(model, split, args.data, out, extra, args.recipe, seed))
                logging.info("%s %s seed %s: %.2f%% in %.0f s", model, split, seed,
                             100 * results[-1]["test_acc_last_epoch"], results[-1]["seconds"])
                results_path.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "runs": results}, indent=2))
    print(summary_table(results, args.models.split(","), seeds))


def summary_table(results: list[dict], models: list[str], seeds: list) -> str:
    """Markdown: official split, each speaker (mean over seeds), LOSO mean and lowest speaker, mean ± std over seeds."""
    lines = ["| model | seeds | official split | " + " | ".join(SPEAKERS)
             + " | LOSO mean | lowest speaker | LOSO mean over seeds (mean ± std) | time per run (max) |",
             "|---" * (len(SPEAKERS) + 7) + "|"]
    for model in models:
        runs = [r for r in results if r["model"] == model and r.get("seed") in seeds]
        acc: dict[str, list[float]] = {}
        for r in runs:
            acc.setdefault(r["split"], []).append(r["test_acc_last_epoch"])
        per_speaker = {s: statistics.mean(acc[f"speakers:{s}"]) for s in SPEAKERS if f"speakers:{s}" in acc}
        # A seed's LOSO mean counts only when all five of its folds are done.
        seed_means = []
        for seed in seeds:
            folds = {r["split"]: r["test_acc_last_epoch"] for r in runs if r.get("seed") == seed}
            if all(f"speakers:{s}" in folds for s in SPEAKERS):
                seed_means.append(statistics.mean(folds[f"speakers:{s}"] for s in SPEAKERS))
        cells = [",".join("-" if s is None else str(s) for s in seeds),
                 f"{statistics.mean(acc['official']):.2%}" if "official" in acc else "-"]
        cells += [f"{per_speaker[s]:.2%}" if s in per_speaker else "-" for s in SPEAKERS]
        complete = len(per_speaker) == len(SPEAKERS)
        cells.append(f"{statistics.mean(per_speaker.values()):.2%}" if complete else "-")
        cells.append(f"{min(per_speaker.values()):.2%}" if complete else "-")
        if len(seed_means) > 1:
            cells.append(f"{statistics.mean(seed_means):.2%} ± {statistics.stdev(seed_means):.2%} ({len(seed_means)} seeds)")
        else:
            cells.append("-")
        cells.append(f"{max(r['seconds'] for r in runs):.0f} s" if runs else "-")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
