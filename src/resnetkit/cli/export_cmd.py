"""``resnetkit export``: a trained run to ONNX, TorchScript or pt2, checked against the PyTorch model."""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a run directory or a last.pt/best.pt file")
    p.add_argument("--format", required=True, help="onnx, torchscript or pt2")
    p.add_argument("--out", help="the file to write (default: <run>/<model>.onnx, .pt or .pt2)")
    p.add_argument("--int8", action="store_true",
                   help="ONNX only: static int8 quantization (QDQ, per-channel weights) calibrated on training samples")
    p.add_argument("--calibrate", type=int, default=512, metavar="N",
                   help="training samples to calibrate int8 on (default 512)")
    p.add_argument("--calibration-data", metavar="PATH",
                   help="calibrate on this data instead of the run's training split")
    p.add_argument("--data", help="check parity on this data's held-out part instead of the run's validation split")
    p.add_argument("--parity-samples", type=int, default=1000, metavar="N",
                   help="samples the exported file is compared on (default 1000)")
    p.add_argument("--input", choices=["auto", "waveform", "features"], default="auto",
                   help="audio: export the waveform-to-logits graph (auto: when the front end exports) or "
                        "start from features")


def run(args: argparse.Namespace) -> int:
    from resnetkit.engine.exporting import export_run

    waveform = {"auto": None, "waveform": True, "features": False}[args.input]
    report = export_run(args.checkpoint, args.format, args.out, int8=args.int8, calibrate=args.calibrate,
                        calibration_data=args.calibration_data, data=args.data,
                        parity_samples=args.parity_samples, waveform=waveform,
                        progress=lambda text: print(text, file=sys.stderr))
    print(report.describe())
    return 0
