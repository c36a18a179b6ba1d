"""``resnetkit predict``: top-k classes for image or audio files."""

from __future__ import annotations

import argparse
import json

from resnetkit.cli.precision_options import add_precision_arguments, precision_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True,
                   help="a run directory, a last.pt/best.pt file, or a file of `resnetkit export` (.onnx, .pt2, TorchScript)")
    p.add_argument("inputs", nargs="+", help="files or folders")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--device", default="auto")
    add_precision_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object per input")


def run(args: argparse.Namespace) -> int:
    from resnetkit.engine.inference import PREDICT_BATCH, load_model

    if args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    precision = precision_from_args(args)
    loaded = load_model(args.checkpoint, device=args.device)
    results = loaded.predict(args.inputs, top_k=args.top_k, precision=precision, batch_size=PREDICT_BATCH)
    failed = 0
    for r in results:
        if args.json:
            print(json.dumps(r))
        elif "error" in r:
            print(f"{r['source']}: error: {r['error']}")
        else:
            best = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in r["top_k"])
            print(f"{r['source']}: {best}")
        failed += "error" in r
    return 1 if failed == len(results) else 0
