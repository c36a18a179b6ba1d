"""``resnetkit compare``: train several models under one recipe and budget, then tabulate and plot."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from .train_cmd import add_training_arguments, config_overrides


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", required=True, type=lambda t: [m.strip() for m in t.split(",") if m.strip()],
                   help="comma-separated model names, e.g. resnet20,plain20,resnet56,plain56")
    p.add_argument("--data", help="as for train (default digits)")
    p.add_argument("--recipe", help="YAML recipe shared by every model; flags override it")
    p.add_argument("--out", help="comparison folder (default runs/compare-<time>); a stopped comparison resumes there")
    p.add_argument("--report", action="store_true", help="only rebuild the table and plots from finished runs")
    p.add_argument("--no-latency", action="store_true", help="skip the batch-1 latency measurement in the table")
    p.add_argument("--seeds", type=int, metavar="N",
                   help="train every model N times (seeds --seed, --seed+1, ...) on one validation split: the table "
                   "gives mean ± std, a bootstrap 95%% interval and McNemar tests between models (default 1)")
    add_training_arguments(p)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from resnetkit.engine.compare import check_seeds, compare, finished_seeds, report
    from resnetkit.engine.config import build_config

    seeds = check_seeds(args.seeds if args.seeds is not None else 1)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    out = args.out or f"runs/compare-{time.strftime('%Y%m%d-%H%M%S')}"
    if args.report:
        if not args.out:
            raise ValueError("--report needs --out: the comparison folder to rebuild the report from")
        found = finished_seeds(Path(out), args.models)
        if args.seeds is not None and seeds != len(found or [None]):
            raise ValueError(f"--seeds {seeds}: {out} holds {len(found or [None])} seed(s) per model; --report "
                             "reports the runs the folder holds (leave out --seeds)")
        report(out, args.models, measure_latency=not args.no_latency, seeds=found)
        seeded = found is not None
    else:
        overrides = config_overrides(args)
        overrides.pop("out", None)
        config = build_config(args.recipe, overrides)
        compare(args.models, config, out, measure_latency=not args.no_latency, seeds=seeds)
        seeded = seeds > 1

    print((Path(out) / "compare.md").read_text(), end="")
    extra = ", compare_seeds.csv, compare_pairs.csv" if seeded else ""
    print(f"table and plots in {out}/ (compare.md/.csv/.json{extra}, compare_curves.png, accuracy_vs_params.png, "
          "accuracy_vs_macs.png)")
    return 0
