"""``resnetkit train``: data + model + recipe -> a run directory."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from resnetkit.engine.config import build_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="digits (default, embedded), cifar10, cifar100, mnist, fashion-mnist, fsdd, "
                   "or a folder of images or audio files")
    p.add_argument("--model", help="a registered model name (default resnet20; see `resnetkit models`)")
    p.add_argument("--recipe", help="YAML file of settings; flags given here override it")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run exactly from its last checkpoint")
    p.add_argument("--out", help="run directory (default runs/<model>-<data>-<time>)")
    p.add_argument("--name", help="run name under runs/")
    add_training_arguments(p)


def add_training_arguments(p: argparse.ArgumentParser) -> None:
    """The settings shared by ``train`` and ``compare``."""
    g = p.add_argument_group("optimization")
    g.add_argument("--epochs", type=int)
    g.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    g.add_argument("--time-budget-min", type=float, help="wall-clock budget: as many epochs as fit after the first")
    g.add_argument("--batch-size", type=int)
    g.add_argument("--optimizer", choices=["sgd", "adamw"])
    g.add_argument("--lr", type=float)
    g.add_argument("--momentum", type=float)
    g.add_argument("--nesterov", action="store_true", default=None)
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--schedule", choices=["step", "cosine", "onecycle", "constant"])
    g.add_argument("--warmup-epochs", type=float)
    g.add_argument("--milestones", type=_floats, help="step schedule: comma-separated epochs (or steps, see --milestone-unit)")
    g.add_argument("--milestone-unit", choices=["epoch", "step"])
    g.add_argument("--label-smoothing", type=float)
    g.add_argument("--ema-decay", type=float, help="keep an exponential moving average of the weights (e.g. 0.999)")
    g.add_argument("--grad-clip", type=float, help="clip the global gradient norm")
    g.add_argument("--drop-rate", type=float, help="dropout before the classifier")
    g.add_argument("--drop-path-rate", type=float, help="stochastic depth")
    d = p.add_argument_group("data")
    d.add_argument("--val-split", type=float, help="fraction held out for validation when the data has no val/ folder")
    d.add_argument("--img-size", type=int)
    d.add_argument("--in-chans", type=int)
    d.add_argument("--augment", help="preset: none, cifar, cifar-strong, digits, imagenet, imagenet-strong; "
                   "speech for audio (default auto)")
    d.add_argument("--mixup", type=float, help="mixup alpha")
    d.add_argument("--cutmix", type=float, help="cutmix alpha")
    d.add_argument("--auto-augment", choices=["randaugment", "trivialaugment"])
    d.add_argument("--random-erasing", type=float)
    d.add_argument("--on-corrupt", choices=["skip", "stop"], help="skip unreadable files (named in the log) or stop")
    d.add_argument("--audio-layout", choices=["auto", "folders", "fsdd", "speech-commands"],
                   help="layout of an audio folder (default auto: detected)")
    d.add_argument("--fsdd-split", help="FSDD held-out part: official (recordings 0-4) or speakers:NAME[,NAME]")
    s = p.add_argument_group("speed and reproducibility")
    s.add_argument("--device", help="auto (default), cpu, cuda, cuda:1")
    s.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], help="mixed precision (default auto)")
    s.add_argument("--no-channels-last", dest="channels_last", action="store_false", default=None)
    s.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    s.add_argument("--workers", type=int)
    s.add_argument("--sync-bn", action="store_true", default=None)
    s.add_argument("--seed", type=int)
    s.add_argument("--deterministic", action="store_true", default=None)
    s.add_argument("--quiet", action="store_true", default=None, help="log lines instead of progress bars")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _floats(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


_AUGMENT_FLAGS = ("mixup", "cutmix", "auto_augment", "random_erasing")
_MODEL_FLAGS = ("drop_rate", "drop_path_rate")
_SKIP = {"command", "_run", "recipe", "resume", "json", "models", "report", "no_latency"}


def config_overrides(args: argparse.Namespace) -> dict:
    """The flags the user gave, as TrainConfig fields (unset flags leave the recipe alone)."""
    values = {k: v for k, v in vars(args).items() if v is not None and k not in _SKIP}
    augment_args = {k: values.pop(k) for k in _AUGMENT_FLAGS if k in values}
    model_args = {k: values.pop(k) for k in _MODEL_FLAGS if k in values}
    if augment_args:
        values["augment_args"] = augment_args
    if model_args:
        values["model_args"] = model_args
    return values


def run(args: argparse.Namespace) -> int:
    from resnetkit.engine.run import train
    from resnetkit.engine.trainer import TrainingDiverged, TrainingInterrupted

    config = build_config(args.recipe, config_overrides(args))
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        summary = train(config, resume=args.resume)
    except TrainingInterrupted as stop:
        print(f"resnetkit train: {stop}", file=sys.stderr)
        return 130
    except TrainingDiverged as err:
        print(f"resnetkit train: error: {err}", file=sys.stderr)
        return 1
    from resnetkit.engine import distributed

    if distributed.current().is_main:
        if args.json:
            print(json.dumps({"run_dir": str(summary.run_dir), "best_val_acc": summary.best_val_acc,
                              "best_epoch": summary.best_epoch, "seconds": summary.seconds}))
        else:
            print(f"done: {summary}")
    distributed.cleanup()
    return 0
