"""Kill real training runs at chosen points and at random times; resume; compare with an uninterrupted run.

For each trial: the same `resnetkit train` command as the reference run is started with a
fault (see resnetkit/testing/faults.py: SIGKILL after step N, during the write of a file,
between two files of one step, during a resume, or from outside after a random delay), then
`--auto-resume`d until it finishes. After every kill each checkpoint on disk must load; at
the end last.pt and best.pt (weights and EMA) and metrics.json must equal the reference
run's exactly.

Usage:
    python benchmarks/kill_resume.py --trials 24 --out runs/kill-resume [--seed 0]
Writes <out>/kill_resume.json and prints a Markdown table (RELIABILITY.md has the results).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from pathlib import Path

from resnetkit.testing.faults import random_faults, run_child, run_trial

ENV = {"OMP_NUM_THREADS": "2"}
EPOCHS, STEPS_PER_EPOCH = 4, 11  # digits: 1,437 training images, batch 128

# Every point the checkpoint set can be caught at, then random ones.
FIXED = [
    ["step:5"], ["step:11"], ["step:12"], ["step:30"],
    ["write:last.pt:1"], ["write:last.pt:3"], ["write:best.pt:1"], ["write:best.pt:2"],
    ["write:best.safetensors:1"], ["write:metrics.csv:2"], ["write:metrics.json:1"], ["write:curves.png:1"],
    ["after:last.pt:1"], ["after:last.pt:4"], ["after:best.pt:2"], ["after:metrics.csv:3"],
    ["step:20", "step:3"], ["after:last.pt:2", "write:last.pt:1"],
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=24, help="fixed points first, then random faults and random times")
    p.add_argument("--out", default="runs/kill-resume")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)

    def argv(run: Path) -> list[str]:
        return ["train", "--data", "digits", "--epochs", str(EPOCHS), "--ema-decay", "0.9", "--seed", "5",
                "--quiet", "--deterministic", "--device", "cpu", "--out", str(run)]

    reference = out / "reference"
    t0 = time.perf_counter()
    proc = run_child(argv(reference), env=ENV)
    if proc.returncode != 0:
        raise SystemExit(f"the reference run failed:\n{proc.stderr[-3000:]}")
    one_run = time.perf_counter() - t0

    rng = random.Random(args.seed)
    results = []
    for i in range(args.trials):
        run = out / f"trial{i:02d}"
        kill_after = None
        if i < len(FIXED):
            faults = FIXED[i]
        elif i % 2 == 0:
            faults = random_faults(rng, STEPS_PER_EPOCH, EPOCHS)
        else:  # a SIGKILL from outside at a random moment of the first process
            faults, kill_after = ["none"], rng.uniform(2.0, one_run)
        trial = run_trial(argv(run), run, reference, faults, kill_after_s=kill_after, env=ENV)
        row = {"trial": i, "faults": faults if kill_after is None else [f"external kill at {kill_after:.1f} s"],
               "kills": trial.kills, "processes": trial.processes, "exact": trial.exact,
               "checkpoints_loaded": trial.checkpoints_loaded, "problems": trial.problems,
               "seconds": round(trial.seconds, 1)}
        results.append(row)
        print(f"trial {i:2d} {' + '.join(row['faults']):45s} kills {trial.kills} processes {trial.processes} "
              f"{'exact' if trial.ok else 'FAILED: ' + '; '.join(trial.problems)}", flush=True)
        (out / "kill_resume.json").write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "trials": results}, indent=2))

    exact = sum(r["exact"] and not r["problems"] for r in results)
    kills = sum(r["kills"] for r in results)
    print(f"\n{exact} of {len(results)} trials ended exactly as the uninterrupted run; {kills} kills, "
          f"{sum(r['checkpoints_loaded'] for r in results)} checkpoint loads after kills and at the end, "
          f"{sum(len(r['problems']) for r in results)} problems")


if __name__ == "__main__":
    main()
