"""The training loop: ``Trainer(model, train_data, val_data, config).fit()``.

The trainer owns the run directory: it writes the configuration, checkpoints (atomically,
so a crash never leaves half a file), metrics and plots, resumes exactly from its own
checkpoints, turns Ctrl-C into a checkpoint and a clean exit, and stops on a non-finite
loss without overwriting the last good checkpoint. It reads its data through the interface
of :mod:`resnetkit.data` only, whatever kind of input that is.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import random
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch import nn

from ..data import BatchOptions, InputSpec, as_labelled_data
from ..data.multilabel import is_multilabel
from ..models import check_input_size
from ..models.tweaks import whitening_of
from ..runtime import distributed
from ..runtime.device import autocast, precision_name, resolve_device, resolve_precision
from ..runtime.files import save_json, save_text
from ..models.weights import CheckpointError
from .checkpoint import check_writable, read_checkpoint, save_checkpoint, save_weights_safetensors
from .config import TrainConfig, config_yaml
from .calibration import calibration_summary, fit_temperature
from .evaluation import EvalResult, collect_logits, evaluate_batches, loss_fn, metrics_of_logits, soft_accuracy_hits
from .finetune import FineTuning, is_head_parameter
from .history import History, write_metrics_csv
from .imbalance import balanced_sample_weights, class_weights, training_labels
from .multilabel import (bce_loss, fit_label_temperatures, label_hits,
                         multilabel_metrics, positive_weights, tune_thresholds)
from .optim import Lookahead, build_optimizer, build_scheduler, ema_with_warmup
from .tracking import create_trackers
from .run_data import sample_batches
from .tta import check_tta, with_tta

log = logging.getLogger(__name__)

# Training images the whitening layer's patch statistics come from (airbench: 5,000).
WHITENING_SAMPLES = 5000


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message says where and what was kept."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or ``request_stop``) after a checkpoint was written; the message says where."""


def steady_epoch_seconds(epoch_seconds: Sequence[float]) -> float:
    """The mean duration of the epochs after the first (the first alone while it is the only one)."""
    steady = epoch_seconds[1:] or epoch_seconds
    return float(sum(steady)) / len(steady)


def epochs_within_budget(epoch_seconds: Sequence[float], budget_seconds: float) -> int:
    """How many epochs in all fit ``budget_seconds``, given the durations of those done so far.

    The epochs left are what the remaining time holds at the mean duration of the epochs after
    the first, once there are any: the first carries the run's one-off costs (decoding the
    clips, warming the allocator and threads), which made a slow first epoch cap the whole run
    (FSDD on the AVX2 machine: 13.4 s, then 11.2-12.7 s). At least the epochs already done (a
    budget already spent ends the run after this epoch).
    """
    done = len(epoch_seconds)
    if done == 0:
        raise ValueError("the budget is fitted after an epoch: no epoch durations given")
    spent = float(sum(epoch_seconds))
    mean = max(steady_epoch_seconds(epoch_seconds), 1e-9)
    # A nanosecond's slack, so that sums of durations rounded in binary do not lose an epoch that fits exactly.
    return done + max(0, int((budget_seconds - spent + 1e-9) // mean))


class Trainer:
    """Train ``model`` on ``train_data``, validating on ``val_data`` after each epoch.

    Args:
        model: any resnetkit model (or nn.Module producing logits).
        train_data, val_data: labelled data of any kind (:class:`resnetkit.data.LabelledData`:
            images, audio, ...) or ``(inputs, labels)`` tensors.
        config: a :class:`TrainConfig` (its model/data fields are ignored here: the objects
            are passed in).
        run_dir: where checkpoints, metrics and plots go (None writes nothing).
        classes: class names (default: the data's).
        input_spec: how raw inputs become model input (default: the training data's for ``model``).
        augment: the data's augmentation settings (default: ``config.augment`` with ``config.augment_args``).
        callbacks: objects with optional ``on_train_begin(trainer)``, ``on_step_end(trainer)`` (the step's
            loss in ``trainer.last_loss``), ``on_epoch_end(trainer, row)`` and ``on_train_end(trainer, error)``
            (after metrics.json and the plots; ``error`` is the exception that ends ``fit``, or None).
            The trackers that ``config.log`` asks for (:mod:`.tracking`) are added to them.
    """

    def __init__(
        self,
        model: nn.Module,
        train_data: Any,
        val_data: Any = None,
        config: Optional[TrainConfig] = None,
        *,
        run_dir: str | Path | None = None,
        classes: Optional[Sequence[str]] = None,
        input_spec: Optional[InputSpec] = None,
        augment: Any = None,
        callbacks: Sequence[Any] = (),
        model_args: Optional[dict] = None,
    ) -> None:
        self.config = config or TrainConfig()
        cfg = self.config
        self.dist = distributed.current()
        self.device = resolve_device(cfg.device, self.dist)
        self.dtype = resolve_precision(cfg.amp, self.device)
        self.run_dir = Path(run_dir) if run_dir else None
        if self.run_dir and self.dist.is_main:
            check_writable(self.run_dir)
        self.callbacks = list(callbacks) + create_trackers(cfg, self.run_dir, self.dist)
        self.train_data = as_labelled_data(train_data, classes)
        self.val_data = as_labelled_data(val_data, classes) if val_data is not None else None
        self.classes = list(classes or self.train_data.classes)
        self.model_args = dict(model_args or cfg.model_args)

        model = model.to(self.device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model  # the plain module: checkpoints, EMA and evaluation use it
        self.input_spec = input_spec or self.train_data.input_spec(model, cfg.img_size)
        if getattr(model, "data_config", None) is not None:  # a resnetkit model: say if the input is too small
            check_input_size(model, self.input_spec.input_size, hint=self.input_spec.resize_hint)
        check_tta(cfg.tta, self.input_spec.kind)  # now, not after the last epoch
        self.augment = augment if augment is not None else self.train_data.augment_config(cfg.augment, cfg.augment_args)
        workers = cfg.workers if cfg.workers is not None else min(8, torch.get_num_threads())
        num_classes = len(self.classes) or getattr(model, "num_classes", None)
        common = dict(batch_size=cfg.batch_size, device=self.device, channels_last=cfg.channels_last, seed=cfg.seed,
                      dist=self.dist, workers=workers, num_classes=num_classes)
        # Multi-label runs (a label file with several labels per row) train sigmoid outputs with BCE.
        self.multilabel = is_multilabel(self.train_data)
        if cfg.task == "multilabel" and not self.multilabel:
            raise ValueError(f"task multilabel: {self.train_data.source} is single-label data (multi-label data comes "
                             "from a label file with several labels per row, or one 0/1 column per label)")
        if self.multilabel and cfg.task == "single":
            raise ValueError(f"task single: {self.train_data.source} holds several labels per sample")
        if self.multilabel and cfg.sampler == "balanced":
            raise ValueError("sampler balanced draws every class equally often, which a multi-label sample (several "
                             "labels at once) does not allow; use --class-weights balanced (a positive weight per label)")
        if cfg.monitor == "val_map" and not self.multilabel:
            raise ValueError("monitor val_map (mean average precision) applies to multi-label runs; this one is "
                             "single-label: use val_accuracy or val_loss")
        if self.multilabel:
            labels = None
            weights = positive_weights(cfg.class_weights, self.train_data.sample_targets(), self.classes)
        else:
            labels = (training_labels(self.train_data) if cfg.class_weights != "none" or cfg.sampler == "balanced"
                      else None)
            weights = class_weights(cfg.class_weights, labels, self.classes) if labels is not None else None
        self.class_weights = weights.to(self.device) if weights is not None else None
        draw = balanced_sample_weights(labels, len(self.classes)) if cfg.sampler == "balanced" else None
        self.train_batches = self.train_data.batches(self.input_spec, BatchOptions(
            train=True, augment=self.augment, sample_weights=draw, **common))
        self.val_batches = (self.val_data.batches(self.input_spec, BatchOptions(train=False, **common))
                            if self.val_data is not None else None)
        if cfg.early_stop and self.val_batches is None:
            raise ValueError(f"early_stop {cfg.early_stop} watches {self.monitor} on a validation split; the data has "
                             "none (give --val-split, or a val/ folder)")

        # An optimizer step takes accum_steps batches; steps, schedules and budgets count optimizer steps.
        self.micro_batches_per_epoch = len(self.train_batches)
        if cfg.accum_steps > self.micro_batches_per_epoch:
            raise ValueError(f"accum_steps {cfg.accum_steps} is more than the {self.micro_batches_per_epoch} batch(es) "
                             f"of an epoch (batch size {cfg.batch_size}); lower --accum-steps or --batch-size")
        self.steps_per_epoch = math.ceil(self.micro_batches_per_epoch / cfg.accum_steps)
        self.total_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch
        self.planned_steps = self.total_steps  # what the configuration asks; a time budget fits within it
        self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)

        self.fine_tuning = FineTuning(self.model, cfg.freeze_stages, cfg.freeze_bn, cfg.head_only_epochs)
        if self.fine_tuning.active and self.dist.enabled:
            raise ValueError("head_only_epochs cannot run under torchrun (DDP fixes the trainable parameters at "
                             "start); train the head in a single process first, then --init from that run")
        if self.dist.enabled and cfg.sync_bn:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.whitening = whitening_of(self.model)
        if self.whitening is not None:  # its bias learns for whiten_bias_epochs, from the first
            self.whitening.conv.bias.requires_grad_(cfg.whiten_bias_epochs > 0)
        elif cfg.whiten_bias_epochs:
            raise ValueError("whiten_bias_epochs trains the bias of a whitening layer; the model has none "
                             "(give it one with model_args whiten: 2)")
        fine_tuned = self.fine_tuning.active or cfg.backbone_lr_mult != 1.0
        self.optimizer = build_optimizer(self.model, cfg, frozenset(is_head_parameter(self.model)) if fine_tuned
                                         else frozenset())
        self.scheduler = build_scheduler(self.optimizer, lambda: self.total_steps, self.steps_per_epoch, cfg)
        fp16_cuda = self.dtype == torch.float16 and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=fp16_cuda)
        self.ema = None
        if cfg.ema_decay:
            from torch.optim.swa_utils import AveragedModel

            self.ema = AveragedModel(self.model, multi_avg_fn=ema_with_warmup(cfg.ema_decay), use_buffers=True)

        # Frozen parameters (the whitening filters) never change: the average leaves them out.
        self.lookahead = (Lookahead(self.model, cfg.lookahead_every, cfg.lookahead_decay,
                                    skip={n for n, p in self.model.named_parameters() if not p.requires_grad})
                          if cfg.lookahead_every else None)

        forward_model = self.model
        self._ddp = None
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            forward_model = self._ddp = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if cfg.compile:
            forward_model = torch.compile(forward_model)
        self.forward_model = forward_model

        self.epoch = 0  # completed epochs
        self.step_in_epoch = 0
        self.global_step = 0
        self.best_acc = -1.0  # the best epoch's validation accuracy
        self.best_epoch = None
        self.best_score: Optional[float] = None  # the monitored metric at the best epoch (higher is better)
        self.stopped_early: Optional[int] = None  # the epoch early stopping ended the run after
        # Fitted on the validation split at the end (calibrate: temperature); one per label for multi-label runs.
        self.temperature: float | list[float] = 1.0
        self.thresholds: Optional[list[float]] = None  # multi-label: each label's decision threshold on p
        self.history = History()
        self.final_metrics: dict | None = None  # metrics.json of the finished run (best weights, TTA)
        self._partial = torch.zeros(3, dtype=torch.float64)  # loss sum, hits, samples of an interrupted epoch
        self._partial_seconds = 0.0
        self._stop_requested = False
        self._deadline: Optional[float] = None
        self._best_weights: Optional[dict] = None
        self.last_loss: Optional[torch.Tensor] = None  # the last step's loss, on the device (for callbacks)
        self.last_batch_size = 0
        self._train_ended = False

    # -- public API ------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Finish the current step, write a checkpoint, then raise TrainingInterrupted."""
        self._stop_requested = True

    def fit(self) -> History:
        """Train to the configured epochs or steps; returns the history (one dict per epoch, and
        Keras' ``history.history[metric]``)."""
        self._train_ended = False
        try:
            return self._fit()
        except BaseException as err:
            if not self._train_ended:  # trackers mark the run interrupted or failed
                self._end_of_training(err)
            raise

    def _fit(self) -> History:
        cfg = self.config
        if self.run_dir and self.dist.is_main:
            self._write_run_info()
            self.sync_best_files()  # a resumed run whose last kill fell between two files
        self._deadline = time.perf_counter() + 60 * cfg.stop_after_min if cfg.stop_after_min else None
        self._fit_whitening()
        self._notify("on_train_begin")
        with self._sigint_as_stop_request():
            while self.global_step < self.total_steps:
                row = self._train_epoch()
                if row is None:  # stop requested: a checkpoint was written
                    where = f" in {self.run_dir / 'last.pt'}" if self.run_dir else ""
                    why = (f"stopped after {cfg.stop_after_min:g} min as asked (--stop-after-min)"
                           if self._deadline is not None and time.perf_counter() >= self._deadline else "interrupted")
                    raise TrainingInterrupted(
                        f"{why} at epoch {self.epoch + 1}, step {self.global_step}; checkpoint written{where}. "
                        + (f"Resume with: resnetkit train --resume {self.run_dir}" if self.run_dir else "")
                    )
                self.history.append(row)
                if cfg.time_budget_min:
                    self._fit_to_budget([r["seconds"] + (r.get("val_seconds") or 0.0) for r in self.history])
                self._log_epoch(row)
                self._save_epoch_outputs(row)
                for cb in self.callbacks:
                    if hasattr(cb, "on_epoch_end"):
                        cb.on_epoch_end(self, row)
        # Every process evaluates the best weights (the metrics are summed across them); rank 0 writes.
        final = self._best_metrics() if self.run_dir else None
        self.final_metrics = final
        if self.run_dir and self.dist.is_main:
            self._write_final_report(final)
        self._end_of_training(None)
        distributed.barrier()
        return self.history

    def evaluate(self, data: Any = None) -> EvalResult:
        """Loss, accuracy and metrics of the trained model (EMA weights if used) on ``data``."""
        if data is None:
            source = self.val_batches
            if source is None:
                raise ValueError("no validation data: pass data to evaluate()")
        else:
            options = BatchOptions(train=False, batch_size=self.config.batch_size, device=self.device,
                                   channels_last=self.config.channels_last, dist=self.dist)
            source = as_labelled_data(data, self.classes).batches(self.input_spec, options)
        if self.multilabel:
            m = multilabel_metrics(*collect_logits(self.eval_model, source, self.device, self.dtype), self.classes)
            return EvalResult(m["loss"], m["exact_match"], m)
        m = evaluate_batches(self.eval_model, source, self.classes, self.device, self.dtype)
        return EvalResult(m["loss"], m["top1"], m)

    def _notify(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            if hasattr(cb, hook):
                getattr(cb, hook)(self, *args)

    def _end_of_training(self, error: Optional[BaseException]) -> None:
        self._train_ended = True
        self._notify("on_train_end", error)

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    # -- the loop --------------------------------------------------------------------------------
    def _fit_whitening(self) -> None:
        """A new run's whitening filters, from (unaugmented) training images; a resumed run has its own."""
        if self.whitening is None or bool(self.whitening.fitted):
            return
        t0 = time.perf_counter()
        samples = sample_batches(self.train_data, self.input_spec, WHITENING_SAMPLES, seed=self.config.seed,
                                 batch_size=500, device=self.device)
        images = torch.cat([x for x, _ in samples])
        self.whitening.fit(images)
        log.info("whitening layer fitted on %d training images (%d x %d patches) in %.1f s", len(images),
                 self.whitening.patch_size, self.whitening.patch_size, time.perf_counter() - t0)

    def _train_epoch(self) -> dict | None:
        cfg = self.config
        epoch = self.epoch
        model = self.forward_model
        model.train()
        self.fine_tuning.apply(epoch)
        if self.whitening is not None and cfg.whiten_bias_epochs:
            self.whitening.conv.bias.requires_grad_(epoch < cfg.whiten_bias_epochs)
        sums = self._partial.clone()
        start = self.step_in_epoch
        remaining = min(self.steps_per_epoch - start, self.total_steps - self.global_step)
        bar = self._progress(epoch, start)
        t0 = time.perf_counter()
        check_every = 1 if self.device.type == "cpu" else 25  # a host sync per step costs GPUs
        finite = torch.ones((), dtype=torch.bool, device=self.device)
        step_sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        taken = 0
        micro_batches = self.train_batches.epoch(epoch, start * cfg.accum_steps)
        for i, group in enumerate(_groups(micro_batches, cfg.accum_steps)):
            if i >= remaining:
                break
            taken += 1
            self.optimizer.zero_grad(set_to_none=True)
            group_size = sum(x.shape[0] for x, _ in group)
            for j, (x, y) in enumerate(group):
                # DDP all-reduces gradients on the last micro-batch only; each micro-batch's mean
                # loss weighs by its share of the step's samples, so the step's gradient is that
                # of one batch of all of them.
                syncing = self._ddp is None or j == len(group) - 1
                with contextlib.nullcontext() if syncing else self._ddp.no_sync():
                    with autocast(self.device, self.dtype):
                        logits = model(x)
                    loss = self._loss(logits, y)
                    finite &= torch.isfinite(loss)
                    self.scaler.scale(loss * (x.shape[0] / group_size)).backward()
                n = x.shape[0]
                hits = label_hits(logits.detach(), y) if self.multilabel else soft_accuracy_hits(logits.detach(), y)
                step_sums += torch.stack([loss.detach().double() * n, hits.double(),
                                          torch.tensor(float(n), dtype=torch.float64, device=self.device)])
            if (i + 1) % check_every == 0 and not bool(self._all_finite(finite)):
                self._diverged(loss)
            if cfg.grad_clip:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            self.global_step += 1
            self.step_in_epoch += 1
            self.last_loss, self.last_batch_size = loss.detach(), group_size  # the last micro-batch's loss
            if self.lookahead is not None:
                self.lookahead.step(self.model, self.global_step, self.total_steps)
                if self.global_step == self.total_steps:
                    self.lookahead.finish(self.model)
            if bar is not None and (i % 10 == 0 or i == remaining - 1):
                s = step_sums.cpu() + sums
                elapsed = time.perf_counter() - t0
                bar.set_postfix(loss=f"{s[0] / max(s[2], 1):.3f}", acc=f"{s[1] / max(s[2], 1):.3f}",
                                img_s=f"{(s[2] - sums[2]) / max(elapsed, 1e-9):.0f}", refresh=False)
                bar.update(i + 1 - (bar.n - start))
            for cb in self.callbacks:
                if hasattr(cb, "on_step_end"):
                    cb.on_step_end(self)
            if self._deadline is not None:
                late = torch.tensor(time.perf_counter() >= self._deadline, device=self.device)
                if self.dist.enabled:  # every rank stops at the same step: stop when any rank is late
                    late = ~distributed.all_ranks_true(~late)
                self._stop_requested |= bool(late)
            if self._stop_requested:
                if bar is not None:
                    bar.close()
                self._partial = sums + step_sums.cpu()
                self._partial_seconds += time.perf_counter() - t0
                self._save_checkpoint("last.pt")
                return None
        if bar is not None:
            bar.close()
        if taken == 0 and remaining > 0:
            # An epoch without a step would be followed by another, without end.
            raise ValueError(f"epoch {epoch + 1} gave no training batch ({self.train_batches.num_samples} training "
                             f"samples, batch size {self.config.batch_size}): every file of it was skipped as "
                             "unreadable; see the messages above")
        if not bool(self._all_finite(finite)):
            self._diverged(loss)
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
            "lr": max(g["lr"] for g in self.optimizer.param_groups),
            "images_per_sec": float(sums[2]) / max(seconds, 1e-9),
            "seconds": seconds,
        }
        last = self.global_step >= self.total_steps
        if self.val_batches is not None and (self.epoch % cfg.eval_every == 0 or last):
            t_val = time.perf_counter()
            if self.multilabel:
                m = multilabel_metrics(*collect_logits(self.eval_model, self.val_batches, self.device, self.dtype),
                                       self.classes)
                row.update(val_loss=m["loss"], val_acc=m["exact_match"], val_map=m["map"])
            else:
                m = evaluate_batches(self.eval_model, self.val_batches, self.classes, self.device, self.dtype)
                row.update(val_loss=m["loss"], val_acc=m["top1"], val_top5=m["top5"])
            row["val_seconds"] = time.perf_counter() - t_val
        return row

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.multilabel:
            return bce_loss(logits, y, self.config.label_smoothing, pos_weight=self.class_weights)
        return loss_fn(logits, y, self.config.label_smoothing, weight=self.class_weights)

    def _fit_to_budget(self, epoch_seconds: Sequence[float]) -> None:
        """Fit the run to the epochs that the wall-clock budget holds, re-fitted after every epoch.

        ``epoch_seconds`` are the epochs so far (training and validation). The count follows the
        machine's speed both ways: it shrinks when epochs run slower than first seen (epochs of
        one run varied 31-46 s on a shared CPU) and grows back, up to the configured epochs, when
        they run faster, so that a slow first epoch does not cap the run. The schedule follows
        the new length (it reads ``total_steps`` each step), so a budget run still anneals to
        the end instead of stopping in the middle of its decay. A run that has reached its
        count goes on when a whole epoch more fits (the rate, annealed to zero, rises to what
        the longer cosine gives at that step: about 2% of its peak when 11 epochs become 12, then
        anneals again). Early stopping is checked after the fit, so it still ends the run. Rank
        0 decides and every rank takes its count: ranks that disagree would wait on each other.
        """
        fit = distributed.broadcast_object(
            epochs_within_budget(epoch_seconds, 60 * self.config.time_budget_min) if self.dist.is_main else None)
        total = min(self.planned_steps, max(fit * self.steps_per_epoch, self.global_step))
        if total != self.total_steps:
            log.info("time budget %.1f min: %d epoch(s) at %.1f s each fit (%d done); training %d instead of %d",
                     self.config.time_budget_min, fit, steady_epoch_seconds(epoch_seconds), len(epoch_seconds),
                     math.ceil(total / self.steps_per_epoch), self.epochs)
            self.total_steps, self.epochs = total, math.ceil(total / self.steps_per_epoch)

    def _all_finite(self, finite: torch.Tensor) -> torch.Tensor:
        # Under DDP a NaN on one rank alone must stop every rank, or the others hang in the
        # next gradient all-reduce.
        return distributed.all_ranks_true(finite) if self.dist.enabled else finite

    def _diverged(self, loss: torch.Tensor) -> None:
        lr = max(g["lr"] for g in self.optimizer.param_groups)
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

    def _run_description(self) -> dict:
        """What every checkpoint of the run carries to rebuild its model and input pipeline."""
        return {
            "model_name": getattr(self.model, "model_name", type(self.model).__name__),
            "model_args": {**self.model_args, "num_classes": len(self.classes),
                           "in_chans": getattr(self.model, "in_chans", None)},
            "classes": list(self.classes),
            "task": "multilabel" if self.multilabel else "single",
            "input": self.input_spec.to_dict(),
            "config": self.config.to_dict(),
        }

    def checkpoint_state(self) -> dict:
        rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            **self._run_description(),
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "lookahead": self.lookahead.state_dict() if self.lookahead is not None else None,
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
            "best_score": self.best_score,
            "stopped_early": self.stopped_early,
            # The best epoch's weights travel inside last.pt: the one file written per step is
            # the whole record, and best.pt / best.safetensors can be rebuilt from it.
            "best_weights": self._best_weights,
            "history": list(self.history),
        }

    def load_checkpoint_state(self, state: dict) -> None:
        """Restore everything :meth:`checkpoint_state` saved (exact resume)."""
        self.model.load_state_dict(state["model"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        if self.lookahead is not None and state.get("lookahead") is not None:
            self.lookahead.load_state_dict(state["lookahead"])
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
        self.stopped_early = state.get("stopped_early")
        if (self.config.time_budget_min or self.stopped_early) and "total_steps" in state:
            self.total_steps = state["total_steps"]
            self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self._partial = state["partial"].clone()
        self._partial_seconds = state["partial_seconds"]
        self.best_acc = state["best_acc"]
        self.best_epoch = state["best_epoch"]
        # Checkpoints from before the monitor setting chose the best epoch by accuracy.
        self.best_score = state.get("best_score", self.best_acc if self.best_epoch is not None else None)
        self._best_weights = state.get("best_weights")
        self.history = History(state["history"])

    def _save_checkpoint(self, name: str) -> None:
        if self.run_dir and self.dist.is_main:
            save_checkpoint(self.checkpoint_state(), self.run_dir / name)

    def _write_run_info(self) -> None:
        save_text(config_yaml(self.config), self.run_dir / "config.yaml")
        save_json(self.classes, self.run_dir / "classes.json")
        info = {"model": getattr(self.model, "model_name", None), "input": self.input_spec.to_dict()}
        if getattr(self.model, "data_config", None) is not None:
            info["model_data_config"] = self.model.data_config.to_dict()
        if self.augment is not None:
            info["augment"] = self.augment.to_dict()
        info["world_size"] = self.dist.world_size
        info["device"] = str(self.device)
        info["amp"] = precision_name(self.dtype)
        save_json(info, self.run_dir / "data_config.json")

    def _save_epoch_outputs(self, row: dict) -> None:
        """After an epoch: check the weights, then last.pt (holding the best weights), then best.pt and
        best.safetensors when the epoch improved. A kill between any two files leaves last.pt as the
        complete record, from which a resume rebuilds the others."""
        self._check_finite_state(row)
        val_finite = row["val_loss"] is not None and math.isfinite(row["val_loss"])
        score = self._monitored(row) if row["val_acc"] is not None and val_finite else None
        improved = score is not None and (self.best_score is None or score > self.best_score)
        if row["val_acc"] is not None and not val_finite:
            log.warning("epoch %d: the validation loss is %s; this epoch cannot be the best", row["epoch"], row["val_loss"])
        if improved or self.val_batches is None:
            self.best_acc, self.best_epoch = (row["val_acc"] if improved else self.best_acc), row["epoch"]
            self.best_score = score if improved else self.best_score
            self._best_weights = {k: v.detach().to("cpu", copy=True) for k, v in self.eval_model.state_dict().items()}
        self._check_early_stop(row)  # before last.pt: a resume after a kill here ends where this run ends
        if not (self.run_dir and self.dist.is_main):
            return
        write_metrics_csv(self.history, self.run_dir / "metrics.csv")
        self._save_checkpoint("last.pt")
        if improved or self.val_batches is None:
            self._write_best_files()

    def _monitored(self, row: dict) -> float:
        """The monitored validation metric of an epoch, as a score where higher is better."""
        monitor = self.monitor
        if monitor == "val_loss":
            return -row["val_loss"]
        return row["val_map"] if monitor == "val_map" else row["val_acc"]

    @property
    def monitor(self) -> str:
        """What chooses the best epoch: ``monitor``, with auto meaning val_map for multi-label runs, else val_accuracy."""
        if self.config.monitor != "auto":
            return self.config.monitor
        return "val_map" if self.multilabel else "val_accuracy"

    def _check_early_stop(self, row: dict) -> None:
        """End the run once ``early_stop`` epochs have passed without the monitored metric improving."""
        patience = self.config.early_stop
        if not patience or row["val_acc"] is None or self.best_epoch is None or self.global_step >= self.total_steps:
            return
        if row["epoch"] - self.best_epoch >= patience:
            self.stopped_early = row["epoch"]
            self.total_steps, self.epochs = self.global_step, self.epoch
            if self.dist.is_main:
                log.info("early stop after epoch %d: %s has not improved for %d epoch(s) since epoch %d; "
                         "the run keeps epoch %d's weights", row["epoch"], self.monitor,
                         row["epoch"] - self.best_epoch, self.best_epoch, self.best_epoch)

    def _check_finite_state(self, row: dict) -> None:
        """A model whose weights or BatchNorm statistics are NaN/inf is never written nor called good."""
        models = [("weights", self.model)] + ([("averaged weights", self.ema)] if self.ema is not None else [])
        for what, module in models:
            for name, tensor in module.state_dict().items():
                if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                    kept = ""
                    if self.run_dir and (self.run_dir / "last.pt").exists():
                        kept = (f" The last good checkpoint, {self.run_dir / 'last.pt'} (epoch {self.epoch - 1}), "
                                "was not overwritten.")
                    raise TrainingDiverged(
                        f"epoch {row['epoch']} ended with non-finite {what} ({name}); training stopped and nothing "
                        f"of this epoch was saved.{kept} Lower --lr (now {self.config.lr:g}), add warm-up "
                        "(--warmup-epochs) or clip gradients (--grad-clip)."
                    )

    def best_model(self) -> nn.Module:
        """A copy of the model holding the best epoch's serving weights (what best.pt holds)."""
        model = copy.deepcopy(self.eval_model)
        if self._best_weights is not None:
            model.load_state_dict(self._best_weights)
        return model

    def best_checkpoint_state(self) -> dict:
        """What best.pt holds: the best epoch's serving weights (the EMA's when kept) and the run's description."""
        return {
            **self._run_description(),
            "model": self._best_weights,
            "ema": None,
            "epoch": self.best_epoch,
            "val_acc": self.best_acc if self.best_acc >= 0 else None,
            "temperature": self.temperature,  # predict and serve divide the logits by it
            "thresholds": self.thresholds,  # multi-label: predict and serve report the labels at or above them
        }

    def _write_best_files(self) -> None:
        save_checkpoint(self.best_checkpoint_state(), self.run_dir / "best.pt")
        meta = {"model_name": str(getattr(self.model, "model_name", "")), "classes": ",".join(self.classes),
                "epoch": str(self.best_epoch), "val_acc": str(self.best_acc),
                "temperature": repr(self.temperature), "task": "multilabel" if self.multilabel else "single"}
        if self.thresholds is not None:
            meta["thresholds"] = repr(self.thresholds)
        save_weights_safetensors(self._best_weights, self.run_dir / "best.safetensors", meta)

    def sync_best_files(self) -> bool:
        """Rebuild best.pt and best.safetensors from last.pt's record when a kill left them behind (or
        broken); returns whether anything was rewritten."""
        if not (self.run_dir and self.dist.is_main) or self._best_weights is None:
            return False
        best = self.run_dir / "best.pt"
        try:
            current = read_checkpoint(best).get("epoch") if best.is_file() else None
        except (CheckpointError, FileNotFoundError):
            current = None
        safetensors_epoch = _safetensors_epoch(self.run_dir / "best.safetensors")
        if current == self.best_epoch and safetensors_epoch == str(self.best_epoch):
            return False
        log.warning("%s: best.pt/best.safetensors did not hold the best epoch (%s) that last.pt records "
                    "(a kill between files?); rewritten from last.pt", self.run_dir, self.best_epoch)
        self._write_best_files()
        return True

    def _best_metrics(self) -> dict | None:
        """Validation metrics of the best epoch's weights (what best.pt and best.safetensors hold), through
        the same inference path as ``resnetkit evaluate`` (optimize_for_inference at the run's precision,
        with the recipe's test-time augmentation)."""
        if self.val_batches is None:
            return None
        from ..export import optimize_for_inference

        served = optimize_for_inference(self.best_model(), precision=self.config.amp, device=self.device, compile=False)
        served = with_tta(served, self.config.tta, self.input_spec.kind)
        logits, labels = collect_logits(served, self.val_batches, self.device)
        calibrate = self.config.calibrate == "temperature"
        if self.multilabel:
            m = self._multilabel_final_metrics(logits, labels, calibrate)
        else:
            m = self._single_label_final_metrics(logits, labels, calibrate)
        m["epoch"] = self.best_epoch
        m["inference"] = served.description
        if self.stopped_early:
            m["stopped_early"] = {"after_epoch": self.stopped_early, "monitor": self.monitor,
                                  "patience": self.config.early_stop}
        return m

    def _multilabel_final_metrics(self, logits: torch.Tensor, targets: torch.Tensor, calibrate: bool) -> dict:
        """Per-label temperatures (when calibrating), then per-label thresholds on the calibrated probabilities."""
        from .multilabel import probabilities

        if calibrate:
            self.temperature = fit_label_temperatures(logits, targets)
        self.thresholds = tune_thresholds(probabilities(logits, self.temperature), targets)
        m = multilabel_metrics(logits, targets, self.classes, self.temperature, self.thresholds)
        m["calibration"] = (calibration_summary(multilabel_metrics(logits, targets, self.classes, 1.0, self.thresholds),
                                                m, self.temperature, method="temperature per label")
                            if calibrate else None)
        return m

    def _single_label_final_metrics(self, logits: torch.Tensor, labels: torch.Tensor, calibrate: bool) -> dict:
        if calibrate:
            self.temperature = fit_temperature(logits, labels)
        m = metrics_of_logits(logits, labels, self.classes, self.device, temperature=self.temperature)
        m["calibration"] = (calibration_summary(metrics_of_logits(logits, labels, self.classes, self.device), m,
                                                self.temperature) if calibrate else None)
        return m

    def _write_final_report(self, metrics: dict | None) -> None:
        """metrics.json first, then the plots: a plot that fails is a warning and never costs the metrics."""
        from ..report.plots import plot_calibration, plot_confusion, plot_curves, plot_label_ap, plot_preview

        if metrics is not None and (metrics.get("calibration") or self.thresholds is not None):
            # best.pt gains the fitted temperature (and thresholds) before metrics.json marks the run finished.
            self._write_best_files()
        if metrics is not None:
            save_json(metrics, self.run_dir / "metrics.json")
        plots = [("curves.png", lambda path: plot_curves(self.history, path,
                                                         title=getattr(self.model, "model_name", None)))]
        preview = self.train_data.preview()
        if preview is not None:
            plots.append((preview.filename, lambda path: plot_preview(preview, path)))
        if metrics is not None and self.multilabel:
            plots.append(("label_ap.png", lambda path: plot_label_ap(metrics["per_label"], path)))
        elif metrics is not None:
            plots.append(("confusion.png", lambda path: plot_confusion(metrics["confusion_matrix"], self.classes, path)))
        if metrics is not None and metrics.get("calibration"):
            plots.append(("calibration.png", lambda path: plot_calibration(metrics["calibration"], path)))
        for name, draw in plots:
            try:
                draw(self.run_dir / name)
            except Exception as err:  # matplotlib's own errors, a full disk: the run's record stays complete
                log.warning("%s was not drawn (%s: %s); the run's metrics and checkpoints are complete",
                            self.run_dir / name, type(err).__name__, str(err).strip().splitlines()[0] if str(err).strip() else "")


def _groups(batches, size: int):
    """Consecutive lists of ``size`` batches (the last one may be shorter): one optimizer step each."""
    group = []
    for batch in batches:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def _safetensors_epoch(path: Path) -> Optional[str]:
    try:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as fh:
            return (fh.metadata() or {}).get("epoch")
    except Exception:  # missing, truncated, not safetensors: it is rewritten
        return None


def _as_tuple(value):
    # random.setstate needs tuples; a checkpoint round trip may give lists.
    if isinstance(value, list):
        return tuple(_as_tuple(v) for v in value)
    return value


