"""``resnetkit evaluate``: a trained run on a data set, classes matched by name."""

from __future__ import annotations

import argparse

from resnetkit.cli.precision_options import add_precision_arguments, precision_from_args
from resnetkit.engine.tta import TTA_MODES
from resnetkit.runtime.files import to_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True,
                   help="a run directory, a last.pt/best.pt file, or a file of `resnetkit export` (.onnx, .pt2, TorchScript)")
    p.add_argument("--data", required=True, help="a folder (test/ or val/ inside, or class folders), or a data set name")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto")
    add_precision_arguments(p)
    p.add_argument("--on-corrupt", choices=["skip", "stop"], default="skip")
    p.add_argument("--path-col", default="path", help="label file (--data labels.csv): its column of file paths")
    p.add_argument("--label-col", default="label", help="label file: its column of labels")
    p.add_argument("--tta", choices=TTA_MODES, default="none",
                   help="test-time augmentation: flip averages each image with its mirror, multiview also with "
                   "its 1-pixel translations (6 views; images only)")
    p.add_argument("--json", action="store_true", help="print every metric as one JSON object")


def run(args: argparse.Namespace) -> int:
    from resnetkit.engine.inference import load_model

    precision = precision_from_args(args)
    loaded = load_model(args.checkpoint, device=args.device)
    data = loaded.load_eval_data(args.data, on_corrupt=args.on_corrupt, path_col=args.path_col,
                                 label_col=args.label_col)
    result = loaded.evaluate(data, batch_size=args.batch_size, precision=precision, tta=args.tta)
    m = result.metrics
    if args.json:
        print(to_json(m))
        return 0
    print(f"{loaded.model_name} on {args.data}: {m['num_samples']} samples")
    if loaded.multilabel:
        _print_multilabel(m)
        return 0
    print(f"  loss {m['loss']:.4f}   top-1 {m['top1']:.2%}   top-5 {m['top5']:.2%}")
    calibrated = f", temperature {m['temperature']:.3g}" if m["temperature"] != 1.0 else ", uncalibrated"
    print(f"  balanced accuracy {m['balanced_accuracy']:.2%}   macro-F1 {m['macro_f1']:.3f}   "
          f"ECE {m['ece']:.2%}{calibrated}")
    print(f"  {'class':<20}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}")
    for name, c in m["per_class"].items():
        print(f"  {name:<20}{c['precision']:>10.3f}{c['recall']:>10.3f}{c['f1']:>10.3f}{c['support']:>10}")
    return 0


def _print_multilabel(m: dict) -> None:
    calibrated = "per-label temperatures" if isinstance(m["temperature"], list) and any(
        t != 1.0 for t in m["temperature"]) else "uncalibrated"
    print(f"  loss {m['loss']:.4f}   mAP {m['map']:.2%} (micro {m['map_micro']:.2%})   exact match "
          f"{m['exact_match']:.2%}   Hamming loss {m['hamming_loss']:.4f}")
    print(f"  macro-F1 {m['macro_f1']:.3f}   micro-F1 {m['micro_avg']['f1']:.3f}   ECE {m['ece']:.2%} ({calibrated})")
    print(f"  {'label':<20}{'AP':>8}{'precision':>10}{'recall':>10}{'f1':>8}{'threshold':>10}{'support':>9}")
    for name, c in m["per_label"].items():
        ap = f"{c['ap']:>8.3f}" if c["ap"] is not None else f"{'-':>8}"
        print(f"  {name:<20}{ap}{c['precision']:>10.3f}{c['recall']:>10.3f}{c['f1']:>8.3f}{c['threshold']:>10.3f}"
              f"{c['support']:>9}")
