"""Runs: train from a configuration into a run directory, and load a run to evaluate or predict."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from ..data.augment import AugmentConfig, augment_from
from ..data.images import IMAGE_EXTENSIONS, DataSplits, ImageData, ImageDataError, read_image, remap_classes, resolve_image_data
from ..models import create_model
from ..models.weights import CheckpointError
from . import distributed
from .batches import ImageInputSpec
from .checkpoint import CHECKPOINT_FORMAT
from .config import TrainConfig
from .trainer import EvalResult, Trainer, evaluate, resolve_device, set_seed

log = logging.getLogger(__name__)


@dataclass
class TrainSummary:
    run_dir: Path
    best_val_acc: float | None
    best_epoch: int | None
    seconds: float
    history: list[dict] = field(default_factory=list)

    def __str__(self) -> str:
        acc = f"{self.best_val_acc:.2%} (epoch {self.best_epoch})" if self.best_val_acc is not None else "n/a"
        return f"validation accuracy {acc}, {self.seconds:.0f} s, run written to {self.run_dir}"


def load_data(config: TrainConfig, for_evaluation: bool = False) -> DataSplits:
    """Resolve ``config.data`` into data splits (audio folders and ``fsdd`` go to the audio loader)."""
    from ..data import audio_data

    if audio_data.is_audio_source(config.data):
        return audio_data.resolve_audio_data(config, for_evaluation)
    return resolve_image_data(
        config.data, val_split=config.val_split, seed=config.seed, in_chans=config.in_chans,
        on_corrupt=config.on_corrupt, for_evaluation=for_evaluation,
    )


def default_augment(config: TrainConfig, splits: DataSplits) -> AugmentConfig:
    """``augment: auto``: the preset that suits the data (no flips for digits, speech for audio)."""
    if getattr(splits.train, "kind", "image") == "audio":
        # The audio data resolves its own presets (auto: speech) and TrainConfig.audio's settings.
        return splits.train.augment_config(config.augment, config.augment_args)
    name = config.augment
    if name == "auto":
        key = config.data.lower()
        train = splits.train
        if key in ("digits", "mnist", "fashion-mnist") or (isinstance(train, ImageData) and train.in_chans == 1):
            name = "digits" if key != "fashion-mnist" else "cifar"
        elif isinstance(train, ImageData):
            name = "cifar"
        else:
            name = "imagenet"
    return augment_from(name, config.augment_args)


def _run_dir(config: TrainConfig, dist: distributed.DistInfo) -> Path:
    if config.out:
        return Path(config.out)
    name = config.name
    if not name:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        data = Path(config.data).name or config.data
        name = f"{config.model}-{data}-{stamp}"
        if dist.enabled:
            # Every process must write to (and agree on) rank 0's folder.
            holder = [name]
            torch.distributed.broadcast_object_list(holder, src=0)
            name = holder[0]
    return Path("runs") / name


# What a resumed run may change: how long it trains, where it runs and what it prints.
_RESUME_OVERRIDES = ("epochs", "max_steps", "quiet", "device", "workers", "out")


def train(config: TrainConfig, resume: str | Path | None = None, callbacks: Sequence[Any] = ()) -> TrainSummary:
    """Train as ``resnetkit train`` does: data, model, run directory, fit, report."""
    t0 = time.perf_counter()
    state = None
    if resume is not None:
        state, ckpt_path = _read_resume_state(resume)
        saved = TrainConfig.from_dict(state["config"], f"checkpoint {ckpt_path}")
        defaults = TrainConfig()
        given = {k: v for k, v in config.to_dict().items() if v != getattr(defaults, k)}
        conflicts = {k: v for k, v in given.items() if k not in _RESUME_OVERRIDES and v != getattr(saved, k)}
        if conflicts:
            listed = ", ".join(f"{k}={v!r} (the run has {getattr(saved, k)!r})" for k, v in conflicts.items())
            raise ValueError(
                f"cannot resume {ckpt_path.parent} with other settings: {listed}. Resuming continues the same run; "
                "start a new run to change them."
            )
        for key in _RESUME_OVERRIDES:
            if key in given:
                setattr(saved, key, given[key])
        saved.out = str(Path(ckpt_path).parent)
        config = saved
    device = resolve_device(config.device)
    dist = distributed.init_distributed(device.type)
    set_seed(config.seed + dist.rank, config.deterministic)

    splits = load_data(config)
    if splits.train is None:
        raise ValueError(f"--data {config.data}: no training data found")
    in_chans = config.in_chans or getattr(splits.train, "in_chans", 3)
    if getattr(splits.train, "kind", "image") == "audio" and in_chans != 1:
        raise ValueError(f"--data {config.data} is audio: its features have 1 channel, but in_chans is {in_chans}")
    model_args = dict(config.model_args)
    model = create_model(config.model, num_classes=len(splits.classes), in_chans=in_chans, **model_args)
    if state is not None and list(state["classes"]) != list(splits.classes):
        raise CheckpointError(
            f"cannot resume {resume}: it was trained on classes {state['classes']}, "
            f"but --data {config.data} has {splits.classes}"
        )
    augment = default_augment(config, splits)
    input_spec = None
    if hasattr(splits.train, "input_spec"):
        input_spec = splits.train.input_spec(model)
    run_dir = _run_dir(config, dist)
    trainer = Trainer(model, splits.train, splits.val, config, run_dir=run_dir, classes=splits.classes,
                      augment=augment, callbacks=callbacks, model_args=model_args, input_spec=input_spec)
    if state is not None:
        trainer.load_checkpoint_state(state)
    history = trainer.fit()
    return TrainSummary(run_dir, trainer.best_acc if trainer.best_epoch else None, trainer.best_epoch,
                        time.perf_counter() - t0, history)


def _read_resume_state(resume: str | Path) -> tuple[dict, Path]:
    path = Path(resume)
    ckpt = path / "last.pt" if path.is_dir() else path
    if not ckpt.is_file():
        raise FileNotFoundError(f"cannot resume: {ckpt} does not exist (expected a run directory with last.pt)")
    return _load_checkpoint_file(ckpt), ckpt


def _load_checkpoint_file(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {type(err).__name__}: {err}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a resnetkit run checkpoint (expected last.pt/best.pt written by `resnetkit train`); "
            "for torchvision/timm weights use create_model(name, checkpoint_path=...)"
        )
    return state


# -- loaded runs ---------------------------------------------------------------------------------


@dataclass
class LoadedRun:
    """A trained model with its classes and input pipeline, ready for evaluate and predict."""

    model: nn.Module
    classes: list[str]
    input: dict
    model_name: str
    path: Path
    device: torch.device

    @property
    def kind(self) -> str:
        return self.input.get("kind", "image")

    def evaluate(self, data: Any, batch_size: int = 256, amp: str = "auto") -> EvalResult:
        """Evaluate on ``data`` (a path, a data set name or a loaded data set), classes matched by name."""
        if isinstance(data, (str, Path)):
            data = self.load_eval_data(str(data))
        data = _remap(data, self.classes)
        spec = self.input_spec()
        # The optimized module carries its own precision; autocast stays off around it.
        return evaluate(self.inference_model(amp), data, batch_size=batch_size, device=self.device, amp="off",
                        classes=self.classes, input_spec=spec)

    def inference_model(self, amp: str = "auto") -> nn.Module:
        """The run's model through optimize_for_inference (``amp="off"``: plain fp32), built once per precision.

        No torch.compile: evaluate and predict run once, and compilation would cost more
        than it saves on a few thousand inputs.
        """
        precision = "fp32" if amp == "off" else ("auto" if amp == "auto" else amp)
        cache = self.__dict__.setdefault("_inference_models", {})
        if precision not in cache:
            from ..export import optimize_for_inference

            cache[precision] = optimize_for_inference(self.model, precision=precision, device=self.device, compile=False)
        return cache[precision]

    def input_spec(self):
        if self.kind == "audio":
            from ..data.audio_data import AudioInputSpec

            return AudioInputSpec.from_dict(self.input)
        return ImageInputSpec.from_dict(self.input)

    def load_eval_data(self, spec: str, on_corrupt: str = "skip"):
        if self.kind == "audio":
            from ..data.audio_data import load_audio_eval_data

            return load_audio_eval_data(spec, self.input_spec(), on_corrupt=on_corrupt)
        splits = resolve_image_data(spec, in_chans=self.input["in_chans"], on_corrupt=on_corrupt, for_evaluation=True)
        return splits.val

    @torch.no_grad()
    def predict(self, inputs: Any, top_k: int = 5, amp: str = "auto") -> list[dict]:
        """Top-k classes for images (paths, folders, PIL images, tensors) or audio files."""
        items = list(_expand_inputs(inputs, self.kind))
        if not items:
            raise ValueError("nothing to predict: no image or audio files among the inputs")
        k = max(1, min(top_k, len(self.classes)))
        results = []
        model = self.inference_model(amp)
        for start in range(0, len(items), 64):
            chunk = items[start : start + 64]
            batch, names, errors = self._prepare(chunk)
            probs = None
            if batch is not None:
                logits = model(batch.to(self.device))
                probs = logits.float().softmax(1).cpu()
            j = 0
            for name, error in zip(names, errors):
                if error:
                    results.append({"source": name, "error": error})
                    continue
                p, idx = probs[j].topk(k)
                j += 1
                results.append({"source": name, "top_k": [
                    {"class": self.classes[i], "index": int(i), "probability": float(v)} for v, i in zip(p, idx)
                ]})
        return results

    def _prepare(self, chunk: list) -> tuple[torch.Tensor | None, list[str], list[str | None]]:
        if self.kind == "audio":
            from ..data.audio_data import prepare_audio_batch

            return prepare_audio_batch(chunk, self.input_spec(), self.device)
        from ..data.augment import Normalize, eval_transform

        spec = self.input_spec()
        transform = eval_transform(tuple(spec.image_size), spec.crop_pct)
        normalize = Normalize(spec.mean, spec.std)
        tensors, names, errors = [], [], []
        for item in chunk:
            name, image, error = _to_uint8_image(item, spec.in_chans)
            names.append(name)
            errors.append(error)
            if error is None:
                tensors.append(transform(image))
        batch = normalize(torch.stack(tensors)) if tensors else None
        return batch, names, errors


def _to_uint8_image(item: Any, in_chans: int) -> tuple[str, torch.Tensor | None, str | None]:
    if isinstance(item, (str, Path)):
        try:
            return str(item), read_image(item, in_chans), None
        except ImageDataError as err:
            return str(item), None, str(err)
    if isinstance(item, torch.Tensor):
        t = item
        if t.ndim == 2:
            t = t[None]
        if t.ndim != 3:
            raise ValueError(f"an image tensor must be (C, H, W) or (H, W), got shape {tuple(item.shape)}")
        if t.dtype != torch.uint8:
            t = (t.float().clamp(0, 1) * 255).round().to(torch.uint8)  # floats are taken as [0, 1] images
        if t.shape[0] != in_chans:
            if t.shape[0] == 3 and in_chans == 1:
                t = t.float().mean(0, keepdim=True).round().to(torch.uint8)
            elif t.shape[0] == 1:
                t = t.expand(in_chans, -1, -1)
            else:
                raise ValueError(f"image tensor has {t.shape[0]} channels, the model expects {in_chans}")
        return "tensor", t, None
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        Image = None
    if Image is not None and isinstance(item, Image.Image):
        import numpy as np

        arr = np.asarray(item.convert("L" if in_chans == 1 else "RGB"), dtype=np.uint8)
        t = torch.from_numpy(arr.copy())
        t = t[None] if t.ndim == 2 else t.permute(2, 0, 1)
        return "PIL image", t.contiguous(), None
    raise TypeError(f"cannot predict on {type(item).__name__}: pass file paths, folders, PIL images or tensors")


def _expand_inputs(inputs: Any, kind: str) -> Iterable:
    if isinstance(inputs, (str, Path, torch.Tensor)) or not isinstance(inputs, Iterable):
        inputs = [inputs]
    if kind == "audio":
        from ..data.audio_io import AUDIO_EXTENSIONS as exts
    else:
        exts = IMAGE_EXTENSIONS
    for item in inputs:
        if isinstance(item, torch.Tensor) and item.ndim == 4:
            yield from item  # a batch of images
        elif isinstance(item, (str, Path)) and Path(item).is_dir():
            files = sorted(p for p in Path(item).rglob("*") if p.is_file() and p.suffix.lower() in exts)
            if not files:
                raise ValueError(f"folder {item} has no {kind} files (expected {', '.join(exts)})")
            yield from files
        elif isinstance(item, (str, Path)) and not Path(item).exists():
            raise FileNotFoundError(f"{item}: no such file or folder")
        else:
            yield item


def _remap(data: Any, classes: list[str]):
    if hasattr(data, "classes") and list(data.classes) != list(classes):
        if hasattr(data, "remap_classes"):
            return data.remap_classes(classes)
        return remap_classes(data, classes)
    return data


def load_run(path: str | Path, device: str = "auto", weights: str = "best") -> LoadedRun:
    """Load a run directory (its best.pt, else last.pt) or a checkpoint file for evaluate/predict."""
    path = Path(path)
    if path.is_dir():
        candidates = [path / f"{weights}.pt", path / "last.pt", path / "best.pt"]
        ckpt = next((c for c in candidates if c.is_file()), None)
        if ckpt is None:
            raise FileNotFoundError(f"{path} holds no checkpoint (expected best.pt or last.pt from `resnetkit train`)")
    elif path.is_file():
        ckpt = path
    else:
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    state = _load_checkpoint_file(ckpt)
    dev = resolve_device(device)
    args = dict(state["model_args"])
    classes = list(state["classes"])
    if args.get("num_classes") not in (None, len(classes)):
        raise CheckpointError(f"{ckpt}: the model has {args['num_classes']} outputs but {len(classes)} class names")
    model = create_model(state["model_name"], **{k: v for k, v in args.items() if v is not None})
    weights_state = state["model"]
    if state.get("ema") is not None:
        weights_state = {k[len("module."):]: v for k, v in state["ema"].items() if k.startswith("module.")}
    try:
        model.load_state_dict(weights_state)
    except RuntimeError as err:
        raise CheckpointError(f"{ckpt}: weights do not fit {state['model_name']}: {err}") from None
    model = model.to(dev).eval()
    return LoadedRun(model, classes, dict(state["input"]), state["model_name"], ckpt, dev)
