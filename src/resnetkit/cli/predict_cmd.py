"""``resnetkit predict``: top-k classes for image or audio files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from resnetkit.cli.arguments import add_pretrained_argument
from resnetkit.cli.precision_options import add_precision_arguments, precision_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint",
                   help="a run directory, a last.pt/best.pt file, or a file of `resnetkit export` (.onnx, .pt2, TorchScript)")
    p.add_argument("--model", help="with --pretrained: a zoo model with published weights (instead of --checkpoint)")
    add_pretrained_argument(p, "with --model: its published weights (TAG, default: the model's default; "
                            "see `resnetkit models --pretrained`), ImageNet's class names; put the files first: "
                            "predict photo.jpg --model resnet50 --pretrained")
    p.add_argument("inputs", nargs="+", help="files or folders")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--device", default="auto")
    add_precision_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object per input")


def run(args: argparse.Namespace) -> int:
    from resnetkit.engine.inference import PREDICT_BATCH, load_model, load_pretrained_model

    if args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    if args.checkpoint and (args.model or args.pretrained):
        raise ValueError("give --checkpoint (a trained run or exported file) or --model NAME --pretrained [TAG] "
                         "(published weights), not both")
    if not args.checkpoint and not (args.model and args.pretrained):
        raise ValueError("give --checkpoint RUN_OR_FILE, or --model NAME --pretrained [TAG] for published weights")
    if isinstance(args.pretrained, str) and Path(args.pretrained).exists():
        raise ValueError(f"--pretrained took {args.pretrained!r} as its tag; put the files before --model/--pretrained "
                         "(`resnetkit predict photo.jpg --model resnet50 --pretrained`) or give a tag")
    precision = precision_from_args(args)
    if args.checkpoint:
        loaded = load_model(args.checkpoint, device=args.device)
    else:
        loaded = load_pretrained_model(args.model, args.pretrained, device=args.device)
    results = loaded.predict(args.inputs, top_k=args.top_k, precision=precision, batch_size=PREDICT_BATCH)
    failed = 0
    for r in results:
        if args.json:
            print(json.dumps(r))
        elif "error" in r:
            print(f"{r['source']}: error: {r['error']}")
        else:
            best = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in r["top_k"])
            if "labels" in r:  # multi-label: the labels at or above their thresholds, then the most probable
                print(f"{r['source']}: labels {', '.join(r['labels']) or '(none)'}; {best}")
            else:
                print(f"{r['source']}: {best}")
        failed += "error" in r
    return 1 if failed == len(results) else 0
