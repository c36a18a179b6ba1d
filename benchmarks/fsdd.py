"""FSDD spoken digits: the official split and leave-one-speaker-out, for several models.

For each model: one run on the data set's own split (recordings 0-4 of every digit and
speaker held out as the test set) and one run per speaker with that speaker held out
(train on the other four). Each run goes through the real engine with the model's recipe;
the accuracy reported is on the held-out part, with the weights of the last epoch (no
model selection on the test set).

Usage:
    python benchmarks/fsdd.py --data ../shared/data/fsdd/recordings --out runs/bench-fsdd \
        [--models res15_narrow,resnet20,plain20] [--splits official,loso] [--recipe audio_default]
Writes <out>/fsdd_benchmark.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import logging
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


def run_one(model: str, split: str, data: str, out: Path, extra: dict, recipe: str | None = None) -> dict:
    recipe = recipe or RECIPES.get(model, "fsdd_resnet20")
    name = split.replace(":", "-")
    overrides = {"model": model, "data": data, "fsdd_split": split, "out": str(out / model / name), "quiet": True,
                 "in_chans": 1, **extra}
    config = build_config(recipe, overrides)
    t0 = time.perf_counter()
    summary = train(config)
    seconds = time.perf_counter() - t0
    last = summary.history[-1]
    return {"model": model, "split": split, "test_acc_last_epoch": last["val_acc"], "best_val_acc": summary.best_val_acc,
            "epochs": len(summary.history), "seconds": seconds, "run_dir": str(summary.run_dir)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "fsdd" / "recordings"))
    p.add_argument("--out", default="runs/bench-fsdd")
    p.add_argument("--models", default="res15_narrow,resnet20,plain20")
    p.add_argument("--splits", default="official,loso", help="official, loso, or speakers:NAME entries")
    p.add_argument("--epochs", type=int, help="override every recipe's epochs")
    p.add_argument("--recipe", help="train every model with this recipe (e.g. audio_default) instead of its own")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    splits: list[str] = []
    for s in args.splits.split(","):
        splits += [f"speakers:{name}" for name in SPEAKERS] if s == "loso" else [s]
    extra = {"epochs": args.epochs} if args.epochs else {}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "fsdd_benchmark.json"
    # Resumable: finished (model, split) pairs are kept from an earlier run of this script.
    results = json.loads(results_path.read_text())["runs"] if results_path.exists() else []
    done = {(r["model"], r["split"]) for r in results}
    for model in args.models.split(","):
        for split in splits:
            if (model, split) in done:
                continue
            results.append(run_one(model, split, args.data, out, extra, args.recipe))
            logging.info("%s %s: %.2f%% in %.0f s", model, split, 100 * results[-1]["test_acc_last_epoch"],
                         results[-1]["seconds"])
            results_path.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "runs": results}, indent=2))

    print("| model | official split | " + " | ".join(SPEAKERS) + " | LOSO mean | time per run (max) |")
    print("|---" * (len(SPEAKERS) + 4) + "|")
    for model in args.models.split(","):
        rows = {r["split"]: r for r in results if r["model"] == model}
        official = rows.get("official")
        loso = [rows[f"speakers:{s}"]["test_acc_last_epoch"] for s in SPEAKERS if f"speakers:{s}" in rows]
        cells = [f"{official['test_acc_last_epoch']:.2%}" if official else "-"]
        cells += [f"{rows[f'speakers:{s}']['test_acc_last_epoch']:.2%}" if f"speakers:{s}" in rows else "-" for s in SPEAKERS]
        cells.append(f"{statistics.mean(loso):.2%}" if loso else "-")
        cells.append(f"{max(r['seconds'] for r in rows.values()):.0f} s" if rows else "-")
        print(f"| {model} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
