"""The training loop: ``Trainer(model, train_data, val_data, config).fit()``.

The trainer owns the run directory: it writes the configuration, checkpoints (atomically,
so a crash never leaves half a file), metrics and plots, resumes exactly from its own
checkpoints, turns Ctrl-C into a checkpoint and a clean exit, and stops on a non-finite
loss without overwriting the last good checkpoint.
"""

from __future__ import annotations

import copy
import csv
import io
import logging
import math
import random
import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..data.augment import AugmentConfig
from ..data.images import ImageData, ImageFiles
from . import distributed
from .batches import ImageInputSpec, InMemoryBatches, LoaderBatches, TensorBatches, loss_fn, soft_accuracy_hits
from .checkpoint import check_writable, save_checkpoint, save_json, save_weights_safetensors
from .config import TrainConfig, save_config
from .metrics import ClassificationMetrics
from .optim import build_optimizer, build_scheduler

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message says where and what was kept."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or ``request_stop``) after a checkpoint was written; the message says where."""


# -- device and precision -----------------------------------------------------------------------


def resolve_device(name: str = "auto", dist: distributed.DistInfo | None = None) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' asked for, but no CUDA GPU is available (use --device cpu or auto)")
        if dist is not None and dist.enabled:
            device = torch.device("cuda", dist.local_rank)
    return device


def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX: bf16 matrix multiplies run at about twice the fp32 rate."""
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(torch.cpu, probe, None) or getattr(torch._C, f"_cpu{probe}", None)
        try:
            if fn is not None and fn():
                return True
        except Exception:
            continue
    return False


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``mode`` (auto, bf16, fp16, off) on ``device``; None is fp32."""
    if mode == "off":
        return None
    if mode == "bf16":
        return torch.bfloat16
    if mode == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def set_seed(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True


# -- input handling ------------------------------------------------------------------------------


def model_input_spec(model: nn.Module, data: Any, img_size: int | None = None) -> ImageInputSpec:
    """Normalization from the model's data config; size from ``img_size``, the data or the model.

    Images held in memory keep their own size unless asked otherwise (CIFAR nets are fully
    convolutional and 8x8 digits need no upsampling); files are resized to the model's
    default input size.

    Data that brings its own front end (audio) describes its input itself, through its
    ``input_spec(model)`` method.
    """
    own_spec = getattr(data, "input_spec", None)
    if callable(own_spec):
        return own_spec(model)
    config = getattr(model, "data_config", None)
    in_chans = getattr(model, "in_chans", None) or (data.in_chans if hasattr(data, "in_chans") else 3)
    if config is not None:
        mean, std, crop_pct = config.mean, config.std, config.crop_pct
        default_size = tuple(config.input_size[1:])
    else:
        mean, std, crop_pct, default_size = (0.5,) * in_chans, (0.25,) * in_chans, 1.0, (224, 224)
    if img_size:
        size = (img_size, img_size)
    elif isinstance(data, ImageData):
        size = data.image_size
    else:
        size = default_size
    if len(mean) != in_chans:
        mean, std = (sum(mean) / len(mean),) * in_chans, (sum(std) / len(std),) * in_chans
    return ImageInputSpec(in_chans, tuple(size), tuple(mean), tuple(std), crop_pct if not isinstance(data, ImageData) else 1.0)


def make_batches(
    data: Any,
    *,
    spec: Any,
    train: bool,
    batch_size: int,
    device: torch.device,
    augment: AugmentConfig | None = None,
    channels_last: bool = False,
    seed: int = 0,
    dist: distributed.DistInfo = distributed.DistInfo(),
    workers: int = 2,
    num_classes: int | None = None,
    classes: Sequence[str] | None = None,
):
    """A batch source for ``data``: ImageData, ImageFiles, an ``(x, y)`` tensor pair or a source."""
    common = dict(batch_size=batch_size, device=device, train=train, seed=seed, dist=dist)
    if hasattr(data, "epoch") and hasattr(data, "num_samples"):
        return data
    if isinstance(data, ImageData):
        if data.in_chans != spec.in_chans:
            raise ValueError(f"{data.source}: images have {data.in_chans} channel(s), the model expects {spec.in_chans}")
        return InMemoryBatches(data, spec, augment=augment, channels_last=channels_last, num_classes=num_classes, **common)
    if isinstance(data, ImageFiles):
        return LoaderBatches(data, spec, augment=augment, channels_last=channels_last, workers=workers,
                             num_classes=num_classes, **common)
    builder = getattr(data, "make_batches", None)
    if builder is not None:  # audio data sets bring their own front end
        return builder(spec=spec, augment=augment, channels_last=channels_last, num_classes=num_classes, **common)
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        return TensorBatches(data[0], data[1], classes=classes, channels_last=channels_last, **common)
    raise TypeError(
        f"unsupported data type {type(data).__name__}: pass ImageData, ImageFiles, an audio data set "
        "or a tuple (inputs, labels) of tensors"
    )


# -- evaluation ---------------------------------------------------------------------------------


@dataclass
class EvalResult:
    """``loss, accuracy, metrics = evaluate(...)``: loss and accuracy first, as Keras returns them."""

    loss: float
    accuracy: float
    metrics: dict

    def __iter__(self):
        return iter((self.loss, self.accuracy, self.metrics))


@torch.no_grad()
def evaluate_batches(model: nn.Module, source, classes: Sequence[str], device: torch.device,
                     amp_dtype: torch.dtype | None) -> dict:
    """Metrics of ``model`` over one pass of ``source`` (summed across processes under DDP)."""
    was_training = model.training
    model.eval()
    metrics = ClassificationMetrics(len(classes), device=device)
    try:
        for x, y in source.epoch(0):
            with autocast(device, amp_dtype):
                logits = model(x)
            metrics.update(logits.float(), y, loss_fn(logits, y, reduction="sum"))
    finally:
        model.train(was_training)
    metrics.reduce_across_processes()
    return metrics.compute(list(classes))


def evaluate(
    model: nn.Module,
    data: Any,
    *,
    batch_size: int = 256,
    device: str | torch.device = "auto",
    amp: str = "auto",
    classes: Sequence[str] | None = None,
    input_spec: ImageInputSpec | None = None,
    channels_last: bool = True,
) -> EvalResult:
    """Loss, accuracy and the full metrics of ``model`` on ``data`` (Keras' ``model.evaluate``)."""
    device = resolve_device(device) if isinstance(device, str) else device
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    spec = input_spec or model_input_spec(model, data)
    classes = list(classes or getattr(data, "classes", None) or [])
    source = make_batches(data, spec=spec, train=False, batch_size=batch_size, device=device,
                          channels_last=channels_last, classes=classes or None)
    classes = classes or list(source.classes)
    m = evaluate_batches(model, source, classes, device, resolve_amp(amp, device))
    return EvalResult(m["loss"], m["top1"], m)


# -- the trainer --------------------------------------------------------------------------------


class Trainer:
    """Train ``model`` on ``train_data``, validating on ``val_data`` after each epoch.

    Args:
        model: any resnetkit model (or nn.Module producing logits).
        train_data, val_data: ImageData / ImageFiles (from :mod:`resnetkit.data.images`), an
            audio data set, or ``(inputs, labels)`` tensors.
        config: a :class:`TrainConfig` (its model/data fields are ignored here: the objects
            are passed in).
        run_dir: where checkpoints, metrics and plots go (None writes nothing).
        classes: class names (default: the data's).
        callbacks: objects with optional ``on_step_end(trainer)`` / ``on_epoch_end(trainer, row)``.
    """

    def __init__(
        self,
        model: nn.Module,
        train_data: Any,
        val_data: Any = None,
        config: TrainConfig | None = None,
        *,
        run_dir: str | Path | None = None,
        classes: Sequence[str] | None = None,
        input_spec: Any = None,
        augment: AugmentConfig | None = None,
        callbacks: Sequence[Any] = (),
        model_args: dict | None = None,
    ) -> None:
        self.config = config or TrainConfig()
        cfg = self.config
        self.dist = distributed.current()
        self.device = resolve_device(cfg.device, self.dist)
        self.amp_dtype = resolve_amp(cfg.amp, self.device)
        self.run_dir = Path(run_dir) if run_dir else None
        if self.run_dir and self.dist.is_main:
            check_writable(self.run_dir)
        self.callbacks = list(callbacks)
        self.classes = list(classes or getattr(train_data, "classes", None) or [])
        self.model_args = dict(model_args or cfg.model_args)

        model = model.to(self.device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model  # the plain module: checkpoints, EMA and evaluation use it
        self.input_spec = input_spec or model_input_spec(model, train_data, cfg.img_size)
        self.augment = augment
        # Data that can draw examples of itself (audio: spectrograms.png) does so in the final report.
        self._write_examples = getattr(train_data, "write_examples", None)
        workers = cfg.workers if cfg.workers is not None else min(8, torch.get_num_threads())
        common = dict(spec=self.input_spec, batch_size=cfg.batch_size, device=self.device,
                      channels_last=cfg.channels_last, seed=cfg.seed, dist=self.dist, workers=workers,
                      classes=self.classes or None)
        num_classes = len(self.classes) or getattr(model, "num_classes", None)
        self.train_batches = make_batches(train_data, train=True, augment=augment, num_classes=num_classes, **common)
        self.classes = self.classes or list(self.train_batches.classes)
        self.val_batches = make_batches(val_data, train=False, **common) if val_data is not None else None

        self.steps_per_epoch = len(self.train_batches)
        self.total_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch
        self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)

        if self.dist.enabled and cfg.sync_bn:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.optimizer = build_optimizer(self.model, cfg)
        self.scheduler = build_scheduler(self.optimizer, lambda: self.total_steps, self.steps_per_epoch, cfg)
        fp16_cuda = self.amp_dtype == torch.float16 and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=fp16_cuda)
        self.ema = None
        if cfg.ema_decay:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)

        forward_model = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            forward_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if cfg.compile:
            forward_model = torch.compile(forward_model)
        self.forward_model = forward_model

        self.epoch = 0  # completed epochs
        self.step_in_epoch = 0
        self.global_step = 0
        self.best_acc = -1.0
        self.best_epoch = None
        self.history: list[dict] = []
        self._partial = torch.zeros(3, dtype=torch.float64)  # loss sum, hits, samples of an interrupted epoch
        self._partial_seconds = 0.0
        self._stop_requested = False
        self._best_weights: dict | None = None

    # -- public API ------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Finish the current step, write a checkpoint, then raise TrainingInterrupted."""
        self._stop_requested = True

    def fit(self) -> list[dict]:
        """Train to the configured epochs or steps; returns the history (one dict per epoch)."""
        cfg = self.config
        if self.run_dir and self.dist.is_main:
            self._write_run_info()
        with self._sigint_as_stop_request():
            while self.global_step < self.total_steps:
                row = self._train_epoch()
                if row is None:  # stop requested: a checkpoint was written
                    where = f" in {self.run_dir / 'last.pt'}" if self.run_dir else ""
                    raise TrainingInterrupted(
                        f"interrupted at epoch {self.epoch + 1}, step {self.global_step}; checkpoint written{where}. "
                        + (f"Resume with: resnetkit train --resume {self.run_dir}" if self.run_dir else "")
                    )
                self.history.append(row)
                if cfg.time_budget_min and self.epoch == 1:
                    self._fit_to_budget(row["seconds"] + row.get("val_seconds", 0.0))
                self._log_epoch(row)
                self._save_epoch_outputs(row)
                for cb in self.callbacks:
                    if hasattr(cb, "on_epoch_end"):
                        cb.on_epoch_end(self, row)
        # Every process evaluates the best weights (the metrics are summed across them); rank 0 writes.
        final = self._best_metrics() if self.run_dir else None
        if self.run_dir and self.dist.is_main:
            self._write_final_report(final)
        distributed.barrier()
        return self.history

    def evaluate(self, data: Any = None) -> EvalResult:
        """Loss, accuracy and metrics of the trained model (EMA weights if used) on ``data``."""
        source = self.val_batches if data is None else make_batches(
            data, spec=self.input_spec, train=False, batch_size=self.config.batch_size, device=self.device,
            channels_last=self.config.channels_last, dist=self.dist, classes=self.classes)
        if source is None:
            raise ValueError("no validation data: pass data to evaluate()")
        m = evaluate_batches(self.eval_model, source, self.classes, self.device, self.amp_dtype)
        return EvalResult(m["loss"], m["top1"], m)

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    # -- the loop --------------------------------------------------------------------------------
    def _train_epoch(self) -> dict | None:
        cfg = self.config
        epoch = self.epoch
        model = self.forward_model
        model.train()
        sums = self._partial.clone()
        start = self.step_in_epoch
        remaining = min(self.steps_per_epoch - start, self.total_steps - self.global_step)
        bar = self._progress(epoch, start)
        t0 = time.perf_counter()
        check_every = 1 if self.device.type == "cpu" else 25  # a host sync per step costs GPUs
        finite = torch.ones((), dtype=torch.bool, device=self.device)
        step_sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        for i, (x, y) in enumerate(self.train_batches.epoch(epoch, start)):
            if i >= remaining:
                break
            with autocast(self.device, self.amp_dtype):
                logits = model(x)
            loss = loss_fn(logits, y, cfg.label_smoothing)
            finite &= torch.isfinite(loss)
            if (i + 1) % check_every == 0 and not bool(self._all_finite(finite)):
                self._diverged(loss)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if cfg.grad_clip:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            n = x.shape[0]
            step_sums += torch.stack([loss.detach().double() * n, soft_accuracy_hits(logits.detach(), y).double(),
                                      torch.tensor(float(n), dtype=torch.float64, device=self.device)])
            self.global_step += 1
            self.step_in_epoch += 1
            if bar is not None and (i % 10 == 0 or i == remaining - 1):
                s = step_sums.cpu() + sums
                elapsed = time.perf_counter() - t0
                bar.set_postfix(loss=f"{s[0] / max(s[2], 1):.3f}", acc=f"{s[1] / max(s[2], 1):.3f}",
                                img_s=f"{(s[2] - sums[2]) / max(elapsed, 1e-9):.0f}", refresh=False)
                bar.update(i + 1 - (bar.n - start))
            for cb in self.callbacks:
                if hasattr(cb, "on_step_end"):
                    cb.on_step_end(self)
            if self._stop_requested:
                if bar is not None:
                    bar.close()
                self._partial = sums + step_sums.cpu()
                self._partial_seconds += time.perf_counter() - t0
                self._save_checkpoint("last.pt")
                return None
        if not bool(self._all_finite(finite)):
            self._diverged(loss)
        if bar is not None:
            bar.close()
        seconds = self._partial_seconds + time.perf_counter() - t0
        sums = sums + step_sums.cpu()
        sums = distributed.all_reduce_sum(sums.to(self.device)).cpu() if self.dist.enabled else sums
        self._partial = torch.zeros(3, dtype=torch.float64)
        self._partial_seconds = 0.0
        self.epoch += 1
        self.step_in_epoch = 0

        row = {
            "epoch": self.epoch,
            "step": self.global_step,
            "train_loss": float(sums[0] / max(sums[2], 1)),
            "train_acc": float(sums[1] / max(sums[2], 1)),
            "val_loss": None,
            "val_acc": None,
            "val_top5": None,
            "lr": self.optimizer.param_groups[0]["lr"],
            "images_per_sec": float(sums[2]) / max(seconds, 1e-9),
            "seconds": seconds,
        }
        last = self.global_step >= self.total_steps
        if self.val_batches is not None and (self.epoch % cfg.eval_every == 0 or last):
            t_val = time.perf_counter()
            m = evaluate_batches(self.eval_model, self.val_batches, self.classes, self.device, self.amp_dtype)
            row.update(val_loss=m["loss"], val_acc=m["top1"], val_top5=m["top5"], val_seconds=time.perf_counter() - t_val)
        return row

    def _fit_to_budget(self, epoch_seconds: float) -> None:
        """Cut the run to the epochs that fit the wall-clock budget, at the first epoch's speed.

        The schedule follows the new length (it reads ``total_steps`` each step), so a budget
        run still anneals to the end instead of stopping in the middle of its decay.
        """
        fit = max(1, int(self.config.time_budget_min * 60 // max(epoch_seconds, 1e-9)))
        total = min(self.total_steps, fit * self.steps_per_epoch)
        if total < self.total_steps:
            log.info("time budget %.1f min: %d epoch(s) of %.0f s fit; training %d instead of %d",
                     self.config.time_budget_min, fit, epoch_seconds, fit, self.epochs)
            self.total_steps, self.epochs = total, math.ceil(total / self.steps_per_epoch)

    def _all_finite(self, finite: torch.Tensor) -> torch.Tensor:
        # Under DDP a NaN on one rank alone must stop every rank, or the others hang in the
        # next gradient all-reduce.
        return distributed.all_ranks_true(finite) if self.dist.enabled else finite

    def _diverged(self, loss: torch.Tensor) -> None:
        lr = self.optimizer.param_groups[0]["lr"]
        kept = ""
        if self.run_dir and (self.run_dir / "last.pt").exists():
            kept = f" The last good checkpoint is {self.run_dir / 'last.pt'} (epoch {self.epoch}); it was not overwritten."
        value = float(loss.detach())
        where = f"became {value}" if not math.isfinite(value) or not self.dist.enabled else "became non-finite on another rank"
        raise TrainingDiverged(
            f"the training loss {where} at epoch {self.epoch + 1}, step {self.global_step + 1} "
            f"(learning rate {lr:.4g}); training stopped.{kept} Lower --lr, add warm-up (--warmup-epochs), "
            "clip gradients (--grad-clip) or train in fp32 (--amp off)."
        )

    def _progress(self, epoch: int, start: int):
        if self.config.quiet or not self.dist.is_main:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.steps_per_epoch, initial=start, desc=f"epoch {epoch + 1}/{self.epochs}",
                    unit="batch", leave=False, dynamic_ncols=True)

    def _log_epoch(self, row: dict) -> None:
        if not self.dist.is_main:
            return
        val = f"  val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}" if row["val_acc"] is not None else ""
        line = (f"epoch {row['epoch']}/{self.epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}"
                f"{val}  lr {row['lr']:.4g}  {row['images_per_sec']:.0f} img/s  {row['seconds']:.1f}s")
        if self.config.quiet:
            log.info(line)
        else:
            from tqdm.auto import tqdm

            tqdm.write(line)

    # -- checkpoints and files -------------------------------------------------------------------
    @contextmanager
    def _sigint_as_stop_request(self):
        # First Ctrl-C: finish the step, checkpoint, exit cleanly. A second one interrupts at once.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum, frame):
            if self._stop_requested:
                signal.signal(signal.SIGINT, previous)
                raise KeyboardInterrupt
            log.warning("Ctrl-C: finishing this step and writing a checkpoint (press again to abort at once)")
            self._stop_requested = True

        signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def checkpoint_state(self) -> dict:
        rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "model_name": getattr(self.model, "model_name", type(self.model).__name__),
            "model_args": {**self.model_args, "num_classes": len(self.classes),
                           "in_chans": getattr(self.model, "in_chans", None)},
            "classes": list(self.classes),
            "input": self.input_spec.to_dict(),
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "batches": self.train_batches.state_dict(),
            "rng": rng,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "total_steps": self.total_steps,
            "partial": self._partial.clone(),
            "partial_seconds": self._partial_seconds,
            "best_acc": self.best_acc,
            "best_epoch": self.best_epoch,
            "history": list(self.history),
        }

    def load_checkpoint_state(self, state: dict) -> None:
        """Restore everything :meth:`checkpoint_state` saved (exact resume)."""
        self.model.load_state_dict(state["model"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.train_batches.load_state_dict(state["batches"])
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(_as_tuple(state["rng"]["python"]))
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.epoch = state["epoch"]
        self.step_in_epoch = state["step_in_epoch"]
        self.global_step = state["global_step"]
        if self.config.time_budget_min and "total_steps" in state:
            self.total_steps = state["total_steps"]
            self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self._partial = state["partial"].clone()
        self._partial_seconds = state["partial_seconds"]
        self.best_acc = state["best_acc"]
        self.best_epoch = state["best_epoch"]
        self.history = list(state["history"])

    def _save_checkpoint(self, name: str) -> None:
        if self.run_dir and self.dist.is_main:
            save_checkpoint(self.checkpoint_state(), self.run_dir / name)

    def _write_run_info(self) -> None:
        save_config(self.config, self.run_dir / "config.yaml")
        save_json(self.classes, self.run_dir / "classes.json")
        info = {"model": getattr(self.model, "model_name", None), "input": self.input_spec.to_dict()}
        if getattr(self.model, "data_config", None) is not None:
            info["model_data_config"] = self.model.data_config.to_dict()
        if self.augment is not None:
            info["augment"] = self.augment.to_dict()
        info["world_size"] = self.dist.world_size
        info["device"] = str(self.device)
        info["amp"] = str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "fp32"
        save_json(info, self.run_dir / "data_config.json")

    def _save_epoch_outputs(self, row: dict) -> None:
        improved = row["val_acc"] is not None and row["val_acc"] > self.best_acc
        if improved:
            self.best_acc, self.best_epoch = row["val_acc"], row["epoch"]
            self._best_weights = {k: v.detach().to("cpu", copy=True) for k, v in self.eval_model.state_dict().items()}
        if not (self.run_dir and self.dist.is_main):
            return
        write_metrics_csv(self.history, self.run_dir / "metrics.csv")
        self._save_checkpoint("last.pt")
        if improved or self.val_batches is None:
            self._save_checkpoint("best.pt")
            weights = self.eval_model.state_dict()
            meta = {"model_name": str(getattr(self.model, "model_name", "")), "classes": ",".join(self.classes),
                    "epoch": str(row["epoch"]), "val_acc": str(row["val_acc"])}
            save_weights_safetensors(weights, self.run_dir / "best.safetensors", meta)

    def _best_metrics(self) -> dict | None:
        """Validation metrics of the best epoch's weights (what best.pt and best.safetensors hold)."""
        if self.val_batches is None:
            return None
        model = self.eval_model
        if self.best_epoch is not None and self.best_epoch != self.epoch:
            weights = self._best_weights
            if weights is None:  # resumed after the best epoch: read it back from disk
                state = torch.load(self.run_dir / "best.pt", map_location="cpu", weights_only=True)
                weights = state["model"]
                if state.get("ema") is not None:
                    weights = {k[len("module."):]: v for k, v in state["ema"].items() if k.startswith("module.")}
            model = copy.deepcopy(self.eval_model)
            model.load_state_dict(weights)
        m = evaluate_batches(model, self.val_batches, self.classes, self.device, self.amp_dtype)
        m["epoch"] = self.best_epoch
        return m

    def _write_final_report(self, metrics: dict | None) -> None:
        from ..report.plots import plot_confusion, plot_curves

        plot_curves(self.history, self.run_dir / "curves.png", title=getattr(self.model, "model_name", None))
        if callable(self._write_examples):
            self._write_examples(self.run_dir)
        if metrics is not None:
            save_json(metrics, self.run_dir / "metrics.json")
            plot_confusion(metrics["confusion_matrix"], self.classes, self.run_dir / "confusion.png")


def _as_tuple(value):
    # random.setstate needs tuples; a checkpoint round trip may give lists.
    if isinstance(value, list):
        return tuple(_as_tuple(v) for v in value)
    return value


METRIC_COLUMNS = ("epoch", "step", "train_loss", "train_acc", "val_loss", "val_acc", "val_top5", "lr",
                  "images_per_sec", "seconds", "val_seconds")


def write_metrics_csv(history: list[dict], path: Path) -> None:
    from .checkpoint import atomic_write

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in METRIC_COLUMNS})
    atomic_write(path, lambda tmp: Path(tmp).write_text(buf.getvalue()))
