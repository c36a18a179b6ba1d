"""Temperature scaling on a finished run, after the fact: ECE and NLL of its validation split before and after.

Runs trained before calibration existed (or with ``calibrate: none``) get the numbers a new run
writes into its metrics.json (``calibration``), from the same code: the run's inference path at
fp32, its validation split rebuilt from its stored configuration, and the temperature fitted on it.

Usage:
    python benchmarks/calibration.py RUN_DIR [RUN_DIR ...]
Prints one JSON line per run (BENCHMARKS.md has the results).
"""

from __future__ import annotations

import argparse
import json

import torch


def calibrate(run_dir: str) -> dict:
    from resnetkit.data import BatchOptions
    from resnetkit.engine.calibration import fit_temperature
    from resnetkit.engine.evaluation import collect_logits, metrics_of_logits
    from resnetkit.engine.inference import load_run
    from resnetkit.engine.run_data import run_splits

    run = load_run(run_dir, device="cpu")
    val = run_splits(run.config, run.path.parent).val
    if val is None:
        raise SystemExit(f"{run_dir}: the run has no validation split to calibrate on")
    source = val.batches(run.input_spec, BatchOptions(train=False, batch_size=500))
    cpu = torch.device("cpu")
    logits, labels = collect_logits(run.inference_model("off"), source, cpu)
    temperature = fit_temperature(logits, labels)
    before = metrics_of_logits(logits, labels, run.classes, cpu)
    after = metrics_of_logits(logits, labels, run.classes, cpu, temperature=temperature)
    return {"run": run_dir, "model": run.model_name, "samples": len(labels), "top1": before["top1"],
            "temperature": temperature, "ece_before": before["ece"], "ece_after": after["ece"],
            "nll_before": before["loss"], "nll_after": after["loss"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run directories")
    for run in p.parse_args().runs:
        print(json.dumps(calibrate(run)), flush=True)


if __name__ == "__main__":
    main()
