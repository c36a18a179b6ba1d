"""``resnetkit train``: data + model + recipe -> a run directory."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import fields


from resnetkit.data.audio_features import COMPRESSIONS, FEATURE_KINDS, NORMALIZE_MODES
from resnetkit.cli.arguments import add_pretrained_argument, key_value
from resnetkit.data.augment import FLIP_MODES, PAD_MODES
from resnetkit.engine.config import (
    AMP_MODES,
    AUDIO_LAYOUTS,
    CALIBRATIONS,
    LR_UNITS,
    MILESTONE_UNITS,
    MONITORS,
    TASKS,
    ON_CORRUPT,
    OPTIMIZERS,
    SAMPLERS,
    SCHEDULES,
    TrainConfig,
    build_config,
)
from resnetkit.engine.tta import TTA_MODES
from resnetkit.models.layers import ACTIVATION_NAMES, NORM_NAMES


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="digits (default, embedded), cifar10, cifar100, mnist, fashion-mnist, fsdd, "
                   "a folder of images or audio files, or a label file (.csv, .tsv, .jsonl: path,label[,split])")
    p.add_argument("--model", help="a registered model name (default resnet20; see `resnetkit models`)")
    p.add_argument("--recipe", help="a packaged recipe's name (e.g. cifar10_resnet20_fast) or a YAML file; "
                   "flags given here override it")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run exactly from its last checkpoint")
    p.add_argument("--auto-resume", action="store_true",
                   help="continue the run in --out/--name if it has a checkpoint, else start it there "
                   "(for jobs that are restarted, e.g. torchrun --max-restarts)")
    p.add_argument("--out", help="run directory (default runs/<model>-<data>-<time>, made unique)")
    p.add_argument("--name", help="run name under runs/")
    p.add_argument("--overwrite", action="store_true", help="replace the run that already holds --out/--name")
    add_training_arguments(p)


def add_training_arguments(p: argparse.ArgumentParser) -> None:
    """The settings shared by ``train`` and ``compare``."""
    m = p.add_argument_group("model")
    m.add_argument("--activation", help=f"activation of a ResNet ({', '.join(ACTIVATION_NAMES)})")
    m.add_argument("--norm", help=f"normalization of a ResNet ({', '.join(NORM_NAMES)})")
    m.add_argument("--width-mult", type=float, help="scale every stage's width")
    m.add_argument("--drop-rate", type=float, help="dropout before the classifier")
    m.add_argument("--drop-path-rate", type=float, help="stochastic depth")
    m.add_argument("--whiten", type=int, metavar="K",
                   help="a frozen first layer whitening KxK patches, fitted on training images (airbench: 2)")
    m.add_argument("--model-arg", action="append", type=key_value, metavar="KEY=VALUE",
                   help="any constructor argument (repeatable), e.g. --model-arg zero_init_last=true")
    f = p.add_argument_group("fine-tuning")
    f.add_argument("--init", metavar="FILE_OR_RUN",
                   help="start from pretrained weights: a torchvision/timm/resnetkit file or a run directory")
    add_pretrained_argument(f, "start from the model's published weights (torchvision's, or timm's for ResNet-D and "
                            "SE-ResNet50), fetched through torch.hub's cache: the default ones, or TAG "
                            "(e.g. IMAGENET1K_V2; see `resnetkit models --pretrained`)")
    f.add_argument("--freeze-stages", type=int, help="keep the stem and the first K-1 stages fixed (K stages)")
    f.add_argument("--freeze-bn", action="store_true", default=None, help="keep every BatchNorm's statistics")
    f.add_argument("--backbone-lr-mult", type=float, help="learning rate of all but the classifier, relative to --lr")
    f.add_argument("--head-only-epochs", type=int, help="train only the classifier for N epochs, then everything")
    g = p.add_argument_group("optimization")
    g.add_argument("--epochs", type=int)
    g.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    g.add_argument("--time-budget-min", type=float, help="wall-clock budget: as many epochs as fit at the speed measured so far (re-fitted after each epoch)")
    g.add_argument("--stop-after-min", type=float,
                   help="stop this process with a checkpoint after this long (resume continues; e.g. time-limited jobs)")
    g.add_argument("--batch-size", type=int)
    g.add_argument("--optimizer", choices=OPTIMIZERS)
    g.add_argument("--lr", type=float)
    g.add_argument("--lr-unit", choices=LR_UNITS,
                   help="example: --lr and --weight-decay per example, free of the momentum (SGD; airbench)")
    g.add_argument("--momentum", type=float)
    g.add_argument("--nesterov", action="store_true", default=None)
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--schedule", choices=SCHEDULES)
    g.add_argument("--warmup-epochs", type=float)
    g.add_argument("--warmup-from", type=float, help="the warm-up's first factor of --lr (default: lr/steps)")
    g.add_argument("--lr-floor", type=float, help="schedule linear: the factor of --lr at the last step")
    g.add_argument("--milestones", type=_floats, help="step schedule: comma-separated epochs (or steps, see --milestone-unit)")
    g.add_argument("--milestone-unit", choices=MILESTONE_UNITS)
    g.add_argument("--label-smoothing", type=float)
    g.add_argument("--ema-decay", type=float, help="keep an exponential moving average of the weights (e.g. 0.999)")
    g.add_argument("--grad-clip", type=float, help="clip the global gradient norm")
    g.add_argument("--accum-steps", type=int, metavar="K",
                   help="K batches per optimizer step (the gradient of one K times larger batch)")
    g.add_argument("--early-stop", type=int, metavar="PATIENCE",
                   help="stop when --monitor has not improved for PATIENCE epochs; the best epoch's weights are kept")
    g.add_argument("--monitor", choices=MONITORS, help="what chooses the best epoch and early stopping "
                   "(default auto: val_map for multi-label runs, else val_accuracy)")
    g.add_argument("--lookahead-every", type=int, metavar="K",
                   help="every K steps, average the weights and copy the average back (airbench: 5)")
    g.add_argument("--lookahead-decay", type=float, help="Lookahead's decay per step at the end of the run")
    g.add_argument("--norm-lr-mult", type=float, help="learning rate of normalization layers, relative to --lr")
    g.add_argument("--whiten-bias-epochs", type=int, help="epochs the whitening layer's bias learns")
    d = p.add_argument_group("data")
    d.add_argument("--val-split", type=float, help="fraction held out for validation when the data has no val/ folder")
    d.add_argument("--path-col", help="label file (--data labels.csv/.tsv/.jsonl): its column of file paths (default path)")
    d.add_argument("--label-col", help="label file: its column of labels (default label)")
    d.add_argument("--label-sep", help="label file: what separates several labels in one cell (default ';'); a cell "
                   "with several labels, or one 0/1 column per label, makes the run multi-label")
    d.add_argument("--task", choices=TASKS, help="single or multilabel (sigmoid outputs, binary cross-entropy, mAP); "
                   "default auto: as the label file says")
    d.add_argument("--img-size", type=int)
    d.add_argument("--in-chans", type=int)
    d.add_argument("--augment", help="preset: none, cifar, cifar-strong, digits, imagenet, imagenet-strong; "
                   "speech or speech-strong for audio (default auto)")
    d.add_argument("--mixup", type=float, help="mixup alpha")
    d.add_argument("--cutmix", type=float, help="cutmix alpha")
    d.add_argument("--auto-augment", choices=["randaugment", "trivialaugment"])
    d.add_argument("--random-erasing", type=float)
    d.add_argument("--flip-mode", choices=FLIP_MODES,
                   help="alternate: every image mirrored on every other epoch instead of at random (airbench)")
    d.add_argument("--pad-mode", choices=PAD_MODES, help="padding of the random crop (reflect: no black border)")
    d.add_argument("--class-weights", metavar="balanced|FILE",
                   help="weigh the loss by class: balanced (n / (classes * count)) or a JSON/CSV file of class,weight")
    d.add_argument("--sampler", choices=SAMPLERS, help="balanced: draw every class equally often (default uniform)")
    d.add_argument("--calibrate", choices=CALIBRATIONS,
                   help="fit a temperature on the validation split at the end (default temperature; none: off)")
    d.add_argument("--on-corrupt", choices=ON_CORRUPT, help="skip unreadable files (named in the log) or stop")
    d.add_argument("--tta", choices=TTA_MODES,
                   help="test-time augmentation of the final metrics: flip averages each image with its mirror, "
                   "multiview also with its 1-pixel translations (6 views)")
    a = p.add_argument_group("audio")
    a.add_argument("--sample-rate", type=int, help="resample every clip to this rate (Hz)")
    a.add_argument("--clip-seconds", type=float, help="crop or pad every clip to this duration")
    a.add_argument("--features", choices=FEATURE_KINDS, help="log-mel spectrogram or MFCCs")
    a.add_argument("--n-mels", type=int, help="mel bands")
    a.add_argument("--normalize", choices=NORMALIZE_MODES,
                   help="front end's normalization: utterance (one mean/std per clip; the recipes' default), cmvn "
                   "(each mel band per clip), dataset (training statistics), none")
    a.add_argument("--compression", choices=COMPRESSIONS,
                   help="db (log-mel in decibels, default) or pcen (per-channel energy normalization)")
    a.add_argument("--top-db", type=float, metavar="DB",
                   help="dynamic range of the decibels: bins more than DB below each clip's loudest are raised to "
                   "that floor, so quiet recording noise (which differs between microphones and speakers) and "
                   "digital silence look alike (audio_default 40; librosa's 80)")
    a.add_argument("--preemphasis", type=float, metavar="P",
                   help="pre-emphasis y[n] = x[n] - P x[n-1] before the spectrogram (0.97 in most speech front "
                   "ends; 0 is off): consonants rise above the top-db floor")
    a.add_argument("--vtlp", type=_range, metavar="LOW,HIGH",
                   help="vocal-tract length perturbation: warp each clip's mel filterbank by a factor in LOW,HIGH "
                   "(e.g. 0.85,1.15)")
    a.add_argument("--speed", type=_range, metavar="LOW,HIGH", help="speed perturbation: resample clips by a "
                   "factor in LOW,HIGH (e.g. 0.9,1.1)")
    a.add_argument("--tempo", type=_range, metavar="LOW,HIGH", help="tempo perturbation: each clip's features "
                   "stretched in time by a factor in LOW,HIGH, pitch kept (e.g. 0.8,1.25)")
    a.add_argument("--mel-shift", type=int, metavar="BANDS", help="shift features up to BANDS mel bands either way")
    a.add_argument("--gain-db", type=_range, metavar="DB|LOW,HIGH", help="random gain in dB (one number g: -g,g)")
    a.add_argument("--eq-db", type=float, metavar="DB", help="random smooth equalization of up to DB dB")
    a.add_argument("--noise-dir", metavar="FOLDER",
                   help="background noise recordings (default: a Speech Commands folder's _background_noise_)")
    a.add_argument("--noise-snr-db", type=_range, metavar="DB|LOW,HIGH", help="signal-to-noise ratio of added noise")
    a.add_argument("--freq-masks", type=int, help="SpecAugment frequency masks per clip")
    a.add_argument("--time-masks", type=int, help="SpecAugment time masks per clip")
    a.add_argument("--audio-layout", choices=AUDIO_LAYOUTS, help="layout of an audio folder (default auto: detected)")
    a.add_argument("--fsdd-split", help="FSDD held-out part: official (recordings 0-4) or speakers:NAME[,NAME]")
    a.add_argument("--keywords", help="Speech Commands: auto (the 12-class protocol when the ten words are there), "
                   "none (every word a class), speech-commands, or WORD,WORD,...")
    s = p.add_argument_group("speed and reproducibility")
    s.add_argument("--device", help="auto (default), cpu, cuda, cuda:1")
    s.add_argument("--amp", choices=AMP_MODES, help="mixed precision (default auto)")
    s.add_argument("--no-channels-last", dest="channels_last", action="store_false", default=None)
    s.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    s.add_argument("--workers", type=int)
    s.add_argument("--sync-bn", action="store_true", default=None)
    s.add_argument("--seed", type=int)
    s.add_argument("--split-seed", type=int,
                   help="seed of the train/validation split (default: --seed); fix it to compare training seeds")
    s.add_argument("--deterministic", action="store_true", default=None)
    s.add_argument("--quiet", action="store_true", default=None, help="log lines instead of progress bars")
    t = p.add_argument_group("experiment tracking (pip install 'resnetkit[track]')")
    t.add_argument("--log", metavar="TRACKERS",
                   help="comma-separated: tensorboard (event files in the run directory), mlflow; none turns off "
                   "a recipe's")
    t.add_argument("--log-every", type=int, metavar="STEPS",
                   help="optimizer steps between the trackers' training loss, lr and throughput (default 20)")
    t.add_argument("--mlflow-uri", metavar="URI",
                   help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, else ./mlflow.db with artifacts in "
                   "./mlruns); an unreachable server costs a warning, never the run")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _range(text: str):
    """One number or LOW,HIGH: what AudioAugmentConfig's ranges take."""
    values = _floats(text)
    if len(values) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected a number or LOW,HIGH, got {text!r}")
    return values[0] if len(values) == 1 else values


def _floats(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


# Flags that set a field of a mapping of TrainConfig rather than a field of their own.
_MAPPED = {
    "augment_args": {"mixup": "mixup", "cutmix": "cutmix", "auto_augment": "auto_augment",
                     "random_erasing": "random_erasing", "flip_mode": "flip_mode", "pad_mode": "pad_mode",
                     "vtlp": "vtlp", "speed": "speed", "tempo": "tempo", "mel_shift": "mel_shift", "gain_db": "gain_db",
                     "eq_db": "eq_db", "noise_dir": "noise_dir", "noise_snr_db": "noise_snr_db",
                     "freq_masks": "freq_masks", "time_masks": "time_masks"},
    "model_args": {"activation": "activation", "norm": "norm", "width_mult": "width_mult", "drop_rate": "drop_rate",
                   "drop_path_rate": "drop_path_rate", "whiten": "whiten"},
    "audio": {"sample_rate": "sample_rate", "clip_seconds": "duration_s", "features": "kind", "n_mels": "n_mels",
              "normalize": "normalize", "compression": "compression", "top_db": "top_db",
              "preemphasis": "preemphasis"},
}
_CONFIG_FIELDS = {f.name for f in fields(TrainConfig)}


def config_overrides(args: argparse.Namespace) -> dict:
    """The flags the user gave, as TrainConfig fields (unset flags leave the recipe alone)."""
    given = {k: v for k, v in vars(args).items() if v is not None}
    values: dict = {}
    for target, flags in _MAPPED.items():
        mapping = {key: given[flag] for flag, key in flags.items() if flag in given}
        if mapping:
            values[target] = mapping
    if given.get("model_arg"):
        values.setdefault("model_args", {}).update(dict(given["model_arg"]))
    values.update({k: v for k, v in given.items() if k in _CONFIG_FIELDS})
    return values


def run(args: argparse.Namespace) -> int:
    from resnetkit.engine.trainer import TrainingDiverged, TrainingInterrupted
    from resnetkit.engine.training import train
    from resnetkit.runtime import distributed

    if args.resume and args.auto_resume:
        raise ValueError("give --resume RUN_DIR or --auto-resume, not both")
    if args.resume and args.recipe:
        raise ValueError("--resume continues a run with its own recipe; --recipe starts a new one")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    recipe = args.recipe
    if recipe is None and args.data and not args.resume:
        from resnetkit.data.resolve import kind_of

        # A kind of input may bring its own default (audio: a speech recipe, not the image one).
        kind = kind_of(args.data, path_col=args.path_col or "path")
        recipe = kind.default_recipe
        if recipe:
            logging.getLogger(__name__).info("%s is %s data: recipe %s (flags override it; --recipe picks another)",
                                             args.data, kind.name, recipe)
    given = config_overrides(args)
    # A resumed run takes the flags given (train's `changes`), never a recipe's or the defaults.
    config = None if args.resume else build_config(recipe, given)
    try:
        summary = train(config, resume="auto" if args.auto_resume else args.resume, overwrite=args.overwrite,
                        changes=given)
    except TrainingInterrupted as stop:
        print(f"resnetkit train: {stop}", file=sys.stderr)
        return 130
    except TrainingDiverged as err:
        print(f"resnetkit train: error: {err}", file=sys.stderr)
        return 1
    if distributed.current().is_main:
        if args.json:
            print(json.dumps({"run_dir": str(summary.run_dir), "best_val_acc": summary.best_val_acc,
                              "best_epoch": summary.best_epoch, "seconds": summary.seconds}))
        else:
            print(f"done: {summary}")
    distributed.cleanup()
    return 0
