"""``resnetkit benchmark``: training and inference speed, against torchvision and timm."""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import sys

from resnetkit.cli.arguments import key_value


def _list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _onoff(text: str) -> list[bool]:
    values = []
    for t in _list(text):
        if t not in ("on", "off"):
            raise argparse.ArgumentTypeError(f"expected on, off or on,off; got {t!r}")
        values.append(t == "on")
    return values


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", type=_list, default=["resnet50"], help="comma-separated model names")
    p.add_argument("--input-sizes", type=lambda t: [int(v) for v in _list(t)],
                   help="comma-separated sizes (default: each model's own)")
    p.add_argument("--batch-sizes", type=lambda t: [int(v) for v in _list(t)], default=[16],
                   help="batch sizes for training and throughput (latency always uses 1)")
    p.add_argument("--modes", type=_list, default=["infer", "latency", "train"], help="train, infer, latency")
    p.add_argument("--precisions", type=_list, default=["fp32", "bf16"], help="fp32, bf16, fp16")
    p.add_argument("--channels-last", type=_onoff, default=[False, True], help="on, off or on,off")
    p.add_argument("--compile", type=_onoff, default=[False], help="on, off or on,off (compilation is not timed)")
    p.add_argument("--against", type=_list, default=[], help="torchvision,timm: the same model, same process, alternating")
    p.add_argument("--model-arg", action="append", type=key_value, default=[], metavar="KEY=VALUE",
                   help="a resnetkit model option (repeatable), e.g. --model-arg whiten=2 --model-arg activation=gelu")
    p.add_argument("--optimized", type=_list, default=["auto", "fp32"],
                   help="precisions of optimize_for_inference to time: auto (the default path), fp32, bf16, "
                        "int8 (PT2E, calibrated on random inputs: speed only); none to skip")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", metavar="FILE", help="write every result as JSON")
    p.add_argument("--csv", metavar="FILE", help="write every result as CSV")


PLAIN_PRECISIONS = ("fp32", "bf16", "fp16")
OPTIMIZED_PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8", "none")


def build_cases(args: argparse.Namespace) -> list:
    from resnetkit.models import create_model
    from resnetkit.speed import LIBRARIES, MODES, Case

    import torch

    for mode in args.modes:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; allowed: {', '.join(MODES)}")
    for prec in args.precisions:
        if prec not in PLAIN_PRECISIONS:
            raise ValueError(f"--precisions takes {', '.join(PLAIN_PRECISIONS)}, got {prec!r}")
    for prec in args.optimized:
        if prec not in OPTIMIZED_PRECISIONS:
            raise ValueError(f"--optimized takes {', '.join(OPTIMIZED_PRECISIONS)}, got {prec!r}")
    for lib in args.against:
        if lib not in LIBRARIES[1:]:
            raise ValueError(f"--against takes torchvision and/or timm, got {lib!r}")
    model_args = dict(args.model_arg)
    if model_args and args.against:
        raise ValueError("--model-arg changes resnetkit's model only, so --against would time other nets")
    cases = []
    for name in args.models:
        with torch.device("meta"):
            default_size = create_model(name, **model_args).data_config.input_size[-1]
        for size, mode in itertools.product(args.input_sizes or [default_size], args.modes):
            batches = [1] if mode == "latency" else args.batch_sizes
            for batch in batches:
                for prec, cl, comp in itertools.product(args.precisions, args.channels_last, args.compile):
                    for lib in ["resnetkit", *args.against]:
                        cases.append(Case(name, mode, size, batch, prec, cl, comp, lib,
                                          model_args=model_args if lib == "resnetkit" else {}))
                if mode != "train":
                    # resnetkit's default inference path and its fp32-only form, for the ratio
                    # against the usual eager fp32 call.
                    for prec in (p for p in args.optimized if p != "none"):
                        cases.append(Case(name, mode, size, batch, precision=prec, library="resnetkit", optimized=True,
                                          model_args=model_args))
    return cases


def run(args: argparse.Namespace) -> int:
    import torch

    from resnetkit.runtime.device import resolve_device
    from resnetkit.speed import matmul_peak_gflops, run_cases

    if args.repeats < 1:
        raise ValueError("--repeats must be >= 1")
    device = resolve_device(args.device)
    cases = build_cases(args)
    print(f"timing {len(cases)} configurations on {device} ({torch.get_num_threads()} threads)...", file=sys.stderr)
    peak = {"fp32": matmul_peak_gflops(torch.float32, device), "bf16": matmul_peak_gflops(torch.bfloat16, device)}
    results = run_cases(cases, repeats=args.repeats, device=args.device)
    peak.update(fp32_after=matmul_peak_gflops(torch.float32, device), bf16_after=matmul_peak_gflops(torch.bfloat16, device))
    rows = [r.to_dict(peak) for r in results]
    _add_ratios(rows)
    print(format_table(rows, peak))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": str(device), "threads": torch.get_num_threads(), "peak_gflops": peak, "results": rows}, fh, indent=2)
    if args.csv:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        with open(args.csv, "w") as fh:
            fh.write(buf.getvalue())
    return 0


def _add_ratios(rows: list[dict]) -> None:
    """Speed of each row relative to the plain eager fp32 NCHW baseline of the same library group.

    Inference rows are compared with torchvision's usual call when torchvision was measured
    (else resnetkit's own eager fp32 NCHW); training rows with the same model in eager fp32 NCHW.
    """
    def key(r):
        return (r["model"], r["mode"], r["input_size"], r["batch_size"] if r["mode"] != "latency" else 1)

    baselines = {}
    for r in rows:
        plain = r["precision"] == "fp32" and not r["channels_last"] and not r["compile"] and not r["optimized"]
        if plain and r["library"] in ("torchvision", "resnetkit"):
            if r["library"] == "torchvision" or key(r) not in baselines:
                baselines[key(r)] = r
    for r in rows:
        base = baselines.get(key(r))
        r["baseline"] = base["label"] if base else None
        r["speedup"] = r["images_per_sec"] / base["images_per_sec"] if base else None


def format_table(rows: list[dict], peak: dict) -> str:
    bf16 = f"{peak['bf16']:.0f} GFLOP/s" if peak.get("bf16") else "not native on this CPU"
    lines = [f"matmul peak: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {bf16} (measured now)",
             f"{'model':<12}{'mode':<8}{'size':>5}{'batch':>6}  {'configuration':<42}{'img/s':>9}{'spread':>8}"
             f"{'ms':>9}{'GFLOP/s':>9}{'%peak':>7}{'speedup':>9}"]
    for r in rows:
        spread = (r["max_s"] - r["min_s"]) / r["median_s"]
        ms = f"{1000 * r['median_s']:.1f}"
        frac = f"{100 * r['fraction_of_peak']:.0f}%" if r.get("fraction_of_peak") else "-"
        speed = f"{r['speedup']:.2f}x" if r.get("speedup") else "-"
        lines.append(f"{r['model']:<12}{r['mode']:<8}{r['input_size']:>5}{r['batch_size'] if r['mode'] != 'latency' else 1:>6}  "
                     f"{r['label']:<42}{r['images_per_sec']:>9.1f}{100 * spread:>7.0f}%{ms:>9}{r['gflops']:>9.1f}{frac:>7}{speed:>9}")
    lines.append("speedup: against torchvision's eager fp32 NCHW call (inference) or the same model in eager fp32 NCHW (training); "
                 "spread: (max - min) / median over the repeats")
    return "\n".join(lines)
