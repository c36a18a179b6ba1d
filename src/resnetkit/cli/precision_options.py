"""``--precision`` (and the older ``--amp``) for the commands that run a trained model."""

from __future__ import annotations

import argparse

from resnetkit.engine.config import AMP_MODES
from resnetkit.engine.inference import PRECISION_CHOICES


def add_precision_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", choices=PRECISION_CHOICES,
                   help="precision of the forward pass: auto (the fastest this device computes natively), fp32, bf16, "
                        "fp16, or int8 (CPU; calibrated on samples of the run's training split). Exported files run "
                        "in the precision they were written in")
    p.add_argument("--amp", choices=AMP_MODES, default=None, help="the older spelling: auto, bf16, fp16, off (= fp32)")


def precision_from_args(args: argparse.Namespace) -> str:
    """The precision asked for; ``--amp`` counts when ``--precision`` is not given."""
    amp = "fp32" if args.amp == "off" else args.amp
    if args.precision and amp and amp != args.precision:
        raise ValueError(f"--precision {args.precision} and --amp {args.amp} disagree; give one of them")
    return args.precision or amp or "auto"
