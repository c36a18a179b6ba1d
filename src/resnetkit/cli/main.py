"""``resnetkit`` entry point: dispatches to one module per command."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from resnetkit.runtime.files import DiskFullError

# Command name -> module in resnetkit.cli; each has add_arguments(parser) and run(args) -> int.
COMMANDS = {
    "train": "Train a model; with no arguments, a ResNet-20 on the embedded digits data.",
    "evaluate": "Evaluate a trained run on a data set (classes matched by name).",
    "predict": "Top-k classes for image or audio files.",
    "compare": "Train several models under one recipe and budget; table and plots.",
    "models": "Show the registered models, or one model in detail.",
    "benchmark": "Measure training and inference speed (against torchvision and timm with --against).",
    "export": "Export a trained run to ONNX, TorchScript or pt2 (optionally int8), checked against PyTorch.",
    "explain": "Grad-CAM explanations (PNGs) of a trained run for image or audio files.",
    "serve": "HTTP API with dynamic batching, Grad-CAM and a web page.",
    "shard": "Write a class folder or label file as WebDataset tar shards (for --data).",
}


def build_parser() -> argparse.ArgumentParser:
    from resnetkit.version import __version__

    parser = argparse.ArgumentParser(
        prog="resnetkit",
        description="Build, train, evaluate and compare residual networks.",
    )
    parser.add_argument("--version", action="version", version=f"resnetkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"resnetkit.cli.{name}_cmd")
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError, PermissionError, NotADirectoryError, IsADirectoryError,
            DiskFullError) as err:
        # User errors get one clear line; RESNETKIT_DEBUG=1 shows the traceback for bug reports.
        if os.environ.get("RESNETKIT_DEBUG"):
            raise
        print(f"resnetkit {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
