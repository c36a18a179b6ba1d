"""A CIFAR-10 recipe end to end: accuracy, wall time, throughput against the pure step, memory.

Measures, in one process and one run:
1. the pure training-step throughput of the recipe's model (its model_args and batch size; a
   fixed in-memory batch, no data path) in fp32 and, where the CPU has native bf16, bf16
   autocast, channels-last (``resnetkit.speed``'s timing), with the fp32 matmul peak;
2. a full training run with the recipe through the real engine (data decoded from the JPEG
   folder, batched augmentation, validation as the recipe says, test-time augmentation);
3. the epoch throughput with the data path included, as a fraction of (1) at the same precision;
4. peak resident memory and wall time, from the start of the process to the final metrics.

Usage:
    python benchmarks/cifar10_recipe.py --data ../shared/data/cifar10 [--out runs/bench-fast]
        [--recipe cifar10_resnet20_fast | cifar10_speedrun] [--epochs N] [--seed S]
Writes <out>/benchmark.json next to the run's own files and prints a Markdown summary.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import resource
import statistics
import time
from pathlib import Path

import torch

from resnetkit.engine import build_config, train
from resnetkit.runtime.device import cpu_has_native_bf16, resolve_precision
from resnetkit.speed import Case, matmul_peak_gflops, run_cases

ROOT = Path(__file__).resolve().parents[1]


def step_throughput(config, precision: str) -> tuple[float, float]:
    """(images per second, GFLOP/s) of forward + backward + SGD step of the recipe's model on a fixed
    batch of its size (no data path), channels-last, timed by ``resnetkit benchmark``'s own code."""
    case = Case(config.model, "train", 32, config.batch_size, precision=precision, channels_last=True,
                model_args=dict(config.model_args))
    result = run_cases([case], repeats=5)[0]
    return result.images_per_sec, result.gflops


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10"))
    p.add_argument("--recipe", default="cifar10_resnet20_fast")
    p.add_argument("--out", default="runs/bench-cifar10-resnet20-fast")
    p.add_argument("--epochs", type=int, help="override the recipe's epochs")
    p.add_argument("--seed", type=int, help="override the recipe's seed")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    t_start = time.perf_counter()
    # bf16 only where the CPU computes it natively: emulated, it is many times slower than fp32
    # and says nothing about the recipe (which then trains in fp32).
    precisions = ["fp32", "bf16"] if cpu_has_native_bf16() else ["fp32"]
    overrides = {"data": args.data, "out": args.out, "quiet": True}
    if args.epochs:
        overrides["epochs"] = args.epochs
    if args.seed is not None:
        overrides["seed"] = args.seed
    config = build_config(args.recipe, overrides)
    peak = [matmul_peak_gflops(torch.float32, torch.device("cpu"))]
    steps, step_gflops = {}, {}
    for p in precisions:
        ips, gflops = step_throughput(config, p)
        steps[p], step_gflops[p] = [ips], [gflops]
    amp_dtype = resolve_precision(config.amp, torch.device("cpu"))

    t_train = time.perf_counter()
    summary = train(config)
    train_seconds = time.perf_counter() - t_train
    # Steps again after training, so that a change in machine load shows up as a spread.
    for p in precisions:
        ips, gflops = step_throughput(config, p)
        steps[p].append(ips)
        step_gflops[p].append(gflops)
    peak.append(matmul_peak_gflops(torch.float32, torch.device("cpu")))

    history = summary.history
    epoch_ips = [row["images_per_sec"] for row in history[1:]] or [history[0]["images_per_sec"]]
    step_ips = statistics.median(steps["bf16" if amp_dtype == torch.bfloat16 else "fp32"])
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "recipe": str(Path(args.recipe).relative_to(ROOT) if Path(args.recipe).is_relative_to(ROOT) else args.recipe),
        "epochs": len(history),
        "amp": str(amp_dtype).replace("torch.", ""),
        "best_val_acc": summary.best_val_acc,
        "best_epoch": summary.best_epoch,
        "final_val_acc": history[-1]["val_acc"],
        "train_wall_seconds": train_seconds,
        "total_wall_seconds": time.perf_counter() - t_start,
        "epoch_images_per_sec_median": statistics.median(epoch_ips),
        "step_images_per_sec": steps,  # per precision: before and after training
        "step_gflops": step_gflops,
        "fp32_matmul_peak_gflops": peak,  # before and after training
        "step_fraction_of_peak": statistics.median(step_gflops["fp32"]) / statistics.median(peak),
        "epoch_over_step": statistics.median(epoch_ips) / step_ips,
        "final_metrics_inference": json.loads((Path(summary.run_dir) / "metrics.json").read_text()).get("inference"),
        "final_top1": json.loads((Path(summary.run_dir) / "metrics.json").read_text()).get("top1"),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "curve": [{k: row[k] for k in ("epoch", "train_loss", "train_acc", "val_acc", "lr", "seconds")} for row in history],
        "run_dir": str(summary.run_dir),
    }
    (Path(summary.run_dir) / "benchmark.json").write_text(json.dumps(result, indent=2))
    print(f"| final metrics (metrics.json, {result['final_metrics_inference']}) | {result['final_top1']:.2%} |")
    print(f"| best val acc | {result['best_val_acc']:.2%} (epoch {result['best_epoch']}), final {result['final_val_acc']:.2%} |")
    print(f"| training wall time | {train_seconds / 60:.1f} min ({result['epochs']} epochs) |")
    print(f"| epoch throughput (data included) | {result['epoch_images_per_sec_median']:.0f} img/s |")
    for p, values in steps.items():
        print(f"| pure step throughput {p} | {statistics.median(values):.0f} img/s |")
    print(f"| epoch / step | {result['epoch_over_step']:.1%} |")
    print(f"| pure step / fp32 matmul peak | {result['step_fraction_of_peak']:.1%} "
          f"({statistics.median(step_gflops['fp32']):.0f} of {statistics.median(peak):.0f} GFLOP/s) |")
    print(f"| total wall time (process start to final metrics) | {result['total_wall_seconds'] / 60:.1f} min |")
    print(f"| peak memory | {result['peak_rss_gib']:.2f} GiB |")


if __name__ == "__main__":
    main()
