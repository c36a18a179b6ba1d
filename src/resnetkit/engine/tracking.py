"""Experiment tracking: TensorBoard and MLflow, as a trainer callback (``--log tensorboard,mlflow``).

What each tracker gets: the training loss, learning rate and throughput every ``log_every``
optimizer steps; every number of an epoch's row (validation loss, top-1, top-5, ...); the
resolved configuration with the final metrics (TensorBoard hparams, MLflow params); the run's
plots. MLflow also gets the run's files as artifacts and the best weights as an MLflow model.

A tracker never stops training nor holds it for long. TensorBoard writes event files into the
run directory (so ``tensorboard --logdir runs/`` shows every run). MLflow talks to its server
from a thread of its own, so a server that is slow or down costs the training loop nothing;
its first failure is one warning, after which it is off for the rest of the run, and the end
of the run waits for it at most ``RESNETKIT_TRACKING_WAIT_S`` seconds. The run directory
keeps the complete record either way. Only the main process of a torchrun job tracks.

The MLflow run's id is kept in the run directory (``tracking.json``), so that a resumed run
continues the same MLflow run. mlflow and tensorboard are imported only when asked for
(``pip install 'resnetkit[track]'``).
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import logging
import math
import os
import queue
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence
from urllib.parse import urlsplit

import numpy as np
import torch
from PIL import Image

from ..runtime.device import precision_name
from ..runtime.files import save_json
from ..version import __version__

log = logging.getLogger(__name__)

LOGGERS = ("tensorboard", "mlflow")
TRACKING_FILE = "tracking.json"  # the MLflow run a resume continues
EVENT_FILES = "events.out.tfevents.*"  # TensorBoard's names for its files in the run directory
INSTALL_HINT = "pip install 'resnetkit[track]'"
# The run's files that MLflow keeps as artifacts (last.pt and best.pt are pickled checkpoints for
# resuming; best.safetensors holds the same best weights without code).
ARTIFACTS = ("config.yaml", "classes.json", "data_config.json", "metrics.csv", "metrics.json", "best.safetensors")
PLOTS = ("curves.png", "confusion.png", "calibration.png", "examples.png", "spectrograms.png")
# How long the end of a run waits for MLflow to send what it still holds (final metrics,
# artifacts, the model) before it leaves it behind with a warning.
WAIT_ENV = "RESNETKIT_TRACKING_WAIT_S"
DEFAULT_WAIT_S = 60.0
DEFAULT_EXPERIMENT = "resnetkit"
# MLflow retries a failed request 7 times with a backoff factor of 2 and waits up to 120 s for
# each answer: minutes per request. A dead server must fail fast instead, so that the warning
# comes early and the end of the run does not wait. Settings the user made win.
MLFLOW_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    # MLflow prints each run's address on stdout, which `resnetkit train --json` keeps for its JSON;
    # the address is logged instead.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
_URI_FORMS = ("http(s)://HOST[:PORT], sqlite:///FILE, postgresql://..., mysql://..., mssql://..., "
              "databricks[://PROFILE] or file:/FOLDER")
_DATABASES = ("postgresql", "mysql", "mssql")


# -- settings ---------------------------------------------------------------------------------------


def parse_loggers(value: Any) -> list[str]:
    """``"tensorboard,mlflow"`` or ``["tensorboard", "mlflow"]`` as a list of known names
    (``"none"`` or empty: no tracking); ValueError naming an unknown one."""
    if value is None:
        return []
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        items = [part for v in value for part in v.split(",")]
    else:
        raise TypeError(f"log must be a list of tracker names or a comma-separated string "
                        f"({', '.join(LOGGERS)}), got {value!r}")
    names: list[str] = []
    for item in (i.strip().lower() for i in items):
        if not item or item == "none":
            continue
        if item not in LOGGERS:
            close = difflib.get_close_matches(item, LOGGERS, 1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ValueError(f"log: unknown tracker {item!r}{hint}; expected a comma-separated list of "
                             f"{', '.join(LOGGERS)} (or none)")
        if item not in names:
            names.append(item)
    return names


def check_mlflow_uri(uri: Any, source: str = "mlflow_uri") -> None:
    """ValueError when ``uri`` is not a tracking URI MLflow can use (checked before training,
    without importing mlflow)."""
    if not isinstance(uri, str) or not uri.strip():
        raise ValueError(f"{source} must be an MLflow tracking URI ({_URI_FORMS}), got {uri!r}")
    if any(c.isspace() for c in uri):
        raise ValueError(f"{source} {uri!r} contains white space; expected {_URI_FORMS}")
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 -- urlsplit checks the port only when it is read
    except ValueError as err:
        raise ValueError(f"{source} {uri!r} does not parse ({err}); expected {_URI_FORMS}") from None
    scheme = parts.scheme.lower()
    if re.fullmatch(r"[\w.-]+:\d+(/.*)?", uri):  # "localhost:5000" parses as scheme "localhost"
        raise ValueError(f"{source} {uri!r} has no scheme; did you mean http://{uri}?")
    if scheme == "":
        return  # a local folder: MLflow's file store
    if scheme in ("http", "https"):
        if not parts.hostname:
            raise ValueError(f"{source} {uri!r} has no host; expected {scheme}://HOST[:PORT]")
        return
    if scheme == "sqlite":
        if parts.netloc or not parts.path.strip("/"):
            raise ValueError(f"{source} {uri!r}: expected sqlite:///FILE (sqlite:///runs.db for a file in the "
                             "current folder, sqlite:////abs/path.db for an absolute path)")
        return
    if scheme.split("+", 1)[0] in _DATABASES:
        if not parts.hostname:
            raise ValueError(f"{source} {uri!r} has no host; expected {scheme}://USER:PASSWORD@HOST[:PORT]/DATABASE")
        return
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise ValueError(f"{source} {uri!r}: expected file:/FOLDER or file:///FOLDER")
        return
    if scheme in ("databricks", "databricks-uc", "uc"):
        return
    raise ValueError(f"{source} {uri!r}: unknown scheme {parts.scheme!r}; expected {_URI_FORMS}")


def resolve_mlflow_uri(configured: Optional[str]) -> tuple[str, str]:
    """(the tracking URI, where it came from): ``--mlflow-uri`` / ``mlflow_uri``, else
    ``$MLFLOW_TRACKING_URI`` (MLflow's own convention), else MLflow's own default made absolute:
    ``mlflow.db`` in the current folder, with the artifacts in ``./mlruns`` (``mlflow ui`` run
    there shows the runs)."""
    if configured:
        return configured, "mlflow_uri"
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env, "MLFLOW_TRACKING_URI"
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}", "the default"


def _is_file_store(uri: str) -> bool:
    return urlsplit(uri).scheme.lower() in ("", "file")


def check_tracking(config: Any) -> None:
    """Everything about ``config.log`` that can be checked before training: the packages are
    installed, the MLflow tracking URI (wherever it comes from) can be used."""
    names = list(getattr(config, "log", []) or [])
    if "tensorboard" in names:
        try:
            import torch.utils.tensorboard  # noqa: F401 -- it raises ImportError without the tensorboard package
        except ImportError:
            raise ValueError(f"log tensorboard needs the tensorboard package: {INSTALL_HINT}") from None
    if "mlflow" in names:
        if importlib.util.find_spec("mlflow") is None:
            raise ValueError(f"log mlflow needs the mlflow package: {INSTALL_HINT}")
        uri, source = resolve_mlflow_uri(config.mlflow_uri)
        check_mlflow_uri(uri, source)
        allowed = os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() in ("1", "true")
        if _is_file_store(uri) and not allowed:
            raise ValueError(f"{source} {uri!r} is MLflow's file store, which MLflow 3 refuses unless "
                             "MLFLOW_ALLOW_FILE_STORE=true; use a database, e.g. "
                             f"sqlite:///{Path(urlsplit(uri).path or '.') / 'mlflow.db'}")


def tracking_wait_s() -> float:
    value = os.environ.get(WAIT_ENV)
    if value is None:
        return DEFAULT_WAIT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{WAIT_ENV} must be a number of seconds >= 0, got {value!r}")
    return seconds


def flat_settings(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A configuration as ``{name: bool | int | float | str}``, mappings flattened to dotted names
    (``model_args.whiten``): what TensorBoard's hparams and MLflow's params hold."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flat_settings(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = ",".join(str(v) for v in value)
        elif value is None:
            flat[name] = "none"
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def create_trackers(config: Any, run_dir: Optional[Path], dist: Any) -> list["Tracking"]:
    """The trainer callbacks that ``config.log`` asks for (none on processes other than the main one)."""
    names = list(getattr(config, "log", []) or [])
    if not names or not dist.is_main:
        return []
    if run_dir is None:
        raise ValueError(f"log {','.join(names)} needs a run directory (run_dir=...): the trackers record the run "
                         "that is written there")
    check_tracking(config)
    backends: list[_Backend] = []
    if "tensorboard" in names:
        backends.append(TensorBoardBackend(Path(run_dir)))
    if "mlflow" in names:
        backends.append(MLflowBackend(resolve_mlflow_uri(config.mlflow_uri)[0], Path(run_dir)))
    return [Tracking(backends, config.log_every)]


# -- the callback -----------------------------------------------------------------------------------


class Tracking:
    """The trainer callback: measures once what every tracker (a backend) gets, and hands it on.

    A backend that raises is warned about once and left out for the rest of the run.
    """

    def __init__(self, backends: Sequence["_Backend"], log_every: int) -> None:
        self.backends = list(backends)
        self.log_every = log_every
        self._loss_sum: Optional[torch.Tensor] = None  # on the device: no host sync per step
        self._loss_count = 0
        self._samples = 0
        self._since = time.perf_counter()

    def on_train_begin(self, trainer) -> None:
        self._since = time.perf_counter()
        self._each("begin", trainer)

    def on_step_end(self, trainer) -> None:
        if all(b.off for b in self.backends):
            return  # not even the host sync of the loss
        loss, n = trainer.last_loss, trainer.last_batch_size
        if self._loss_sum is None:
            self._loss_sum = torch.zeros((), dtype=torch.float64, device=loss.device)
        self._loss_sum += loss.detach().double() * n
        self._loss_count += n
        self._samples += n
        if trainer.global_step % self.log_every:
            return
        elapsed = max(time.perf_counter() - self._since, 1e-9)
        values = {
            # rank 0's batches only: under torchrun the other ranks' losses stay where they are
            "step/train_loss": float(self._loss_sum) / max(self._loss_count, 1),
            "step/lr": max(g["lr"] for g in trainer.optimizer.param_groups),
            "step/images_per_sec": self._samples * trainer.dist.world_size / elapsed,
        }
        self._loss_sum.zero_()
        self._loss_count = self._samples = 0
        self._since = time.perf_counter()
        self._each("log_metrics", values, trainer.global_step)

    def on_epoch_end(self, trainer, row: Mapping[str, Any]) -> None:
        values = {"epoch": float(row["epoch"])}
        values.update({f"epoch/{k}": float(v) for k, v in row.items()
                       if k not in ("epoch", "step") and isinstance(v, (int, float)) and not isinstance(v, bool)})
        self._each("log_metrics", values, trainer.global_step)
        self._each("flush")
        # Validation time is not training throughput: the next window starts now.
        self._samples = 0
        self._since = time.perf_counter()

    def on_train_end(self, trainer, error: Optional[BaseException]) -> None:
        self._each("end", trainer, error)

    def _each(self, method: str, *args: Any) -> None:
        for backend in self.backends:
            if backend.off:
                continue
            try:
                getattr(backend, method)(*args)
            except Exception as err:  # a tracker's failure is never the run's
                backend.fail(err)


def final_values(trainer) -> dict[str, float]:
    """The numbers of metrics.json (the best weights, with the run's TTA) as ``final/...`` metrics."""
    m = trainer.final_metrics
    if not m:
        last = trainer.history[-1] if len(trainer.history) else {}
        return {"final/train_loss": float(last["train_loss"])} if last else {}
    values = {f"final/{k}": float(m[k]) for k in ("top1", "top5", "loss") if m.get(k) is not None}
    values.update({f"final/macro_{k}": float(v) for k, v in (m.get("macro_avg") or {}).items()})
    if m.get("epoch") is not None:
        values["final/best_epoch"] = float(m["epoch"])
    return values


def run_settings(trainer) -> dict[str, Any]:
    """The resolved configuration and what the run resolved itself (device, precision, processes)."""
    settings = flat_settings(trainer.config.to_dict())
    settings.update({
        "run.model": str(getattr(trainer.model, "model_name", type(trainer.model).__name__)),
        "run.num_classes": len(trainer.classes),
        "run.parameters": sum(p.numel() for p in trainer.model.parameters()),
        "run.input_size": "x".join(str(s) for s in trainer.input_spec.input_size),
        "run.device": str(trainer.device),
        "run.amp": precision_name(trainer.dtype),
        "run.world_size": trainer.dist.world_size,
    })
    return settings


class _Backend:
    name = "tracker"

    def __init__(self) -> None:
        self.off = False
        self._warned = False

    def fail(self, err: BaseException, what: str = "failed", then: str = "it is off for the rest of this run, "
             "which goes on") -> None:
        """Warn once, then stay off for the rest of the run."""
        self.off = True
        if not self._warned:
            self._warned = True
            text = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
            log.warning("%s %s (%s: %s); %s (the run directory keeps the complete record)", self.where, what,
                        type(err).__name__, text, then)
        self.close_quietly()

    @property
    def where(self) -> str:
        return self.name

    def begin(self, trainer) -> None: ...
    def log_metrics(self, values: Mapping[str, float], step: int) -> None: ...
    def flush(self) -> None: ...
    def end(self, trainer, error: Optional[BaseException]) -> None: ...
    def close_quietly(self) -> None: ...


# -- TensorBoard ------------------------------------------------------------------------------------


class TensorBoardBackend(_Backend):
    """Event files in the run directory (torch.utils.tensorboard)."""

    name = "TensorBoard"

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir
        self._writer = None

    @property
    def where(self) -> str:
        return f"TensorBoard logging to {self.run_dir}"

    def begin(self, trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # A resumed run repeats the steps after its last checkpoint; purge_step hides what the
        # stopped process logged after it, so each step has one value.
        purge = trainer.global_step + 1 if trainer.global_step > 0 else None
        self._writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=purge, flush_secs=30)

    def log_metrics(self, values: Mapping[str, float], step: int) -> None:
        for tag, value in values.items():
            self._writer.add_scalar(tag, value, step)

    def flush(self) -> None:
        self._writer.flush()

    def end(self, trainer, error: Optional[BaseException]) -> None:
        try:
            if error is None:
                self._report(trainer)
        finally:
            self.close_quietly()

    def _report(self, trainer) -> None:
        step = trainer.global_step
        metrics = final_values(trainer)
        hparams = run_settings(trainer)
        # run_name "." writes the hparams beside the scalars, in the run directory itself: one
        # TensorBoard run per resnetkit run (the default would add a timestamped sub-run).
        self._writer.add_hparams(hparams, metrics, run_name=".", global_step=step)
        for name in PLOTS:
            path = self.run_dir / name
            if path.is_file():
                with Image.open(path) as image:
                    pixels = np.asarray(image.convert("RGB"))
                self._writer.add_image(f"report/{path.stem}", pixels, step, dataformats="HWC")

    def close_quietly(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except Exception:  # already failing (a full disk); the warning was given
                pass


# -- MLflow -----------------------------------------------------------------------------------------


class _Sender:
    """One thread that makes a tracker's calls in order, so that the training loop never waits for
    a server. After the first failure it drops what is left."""

    def __init__(self, name: str, on_error: Callable[[BaseException], None]) -> None:
        self._queue: queue.Queue = queue.Queue()
        self._on_error = on_error
        self.failed = False
        self.abandoned = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        if not (self.failed or self.abandoned):
            self._queue.put((fn, args))

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self.failed or self.abandoned:
                continue
            fn, args = item
            try:
                fn(*args)
            except Exception as err:
                self.failed = True
                self._on_error(err)

    def stop(self) -> None:
        """End the thread once it has made (or dropped) what was submitted before."""
        self._queue.put(None)

    def close(self, wait_s: float) -> bool:
        """Wait at most ``wait_s`` for what was submitted; False if it was left behind (the thread is
        a daemon: it never holds the process)."""
        self.stop()
        self._thread.join(wait_s)
        if self._thread.is_alive():
            self.abandoned = True
            return False
        return True


class MLflowBackend(_Backend):
    """An MLflow run (through ``MlflowClient``, so the user's own active run is left alone)."""

    name = "MLflow"

    def __init__(self, uri: str, run_dir: Path) -> None:
        super().__init__()
        self.uri = uri
        self.run_dir = run_dir
        self.experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
        for key, value in MLFLOW_HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        self.run_id: Optional[str] = None
        self._client = None
        self._sender: Optional[_Sender] = None
        self._lock = threading.Lock()
        self._pending: list[tuple[str, float, int, int]] = []
        self._flush_queued = False

    @property
    def where(self) -> str:
        return f"MLflow tracking at {self.uri}"

    # The training thread's side: nothing here waits for a server.
    def begin(self, trainer) -> None:
        # Imported here, before the first step, not in the sender thread: Python code running there
        # holds the GIL against every step (an import of some seconds made digits epochs 4x slower).
        import mlflow.entities  # noqa: F401
        import mlflow.tracking  # noqa: F401

        previous = None
        if trainer.global_step > 0:  # a resumed run: continue its MLflow run
            previous = _read_record(self.run_dir).get("mlflow")
        tags = {"resnetkit.run_dir": str(self.run_dir.resolve()), "resnetkit.model": str(trainer.config.model),
                "resnetkit.data": str(trainer.config.data)}
        self._sender = _Sender(f"resnetkit-mlflow-{self.run_dir.name}", lambda err: self.fail(err))
        if urlsplit(self.uri).scheme == "sqlite":
            # A local file: no server to wait for, and creating its tables is seconds of Python,
            # better spent before training than against it.
            self._start(previous, run_settings(trainer), tags)
        else:
            self._sender.submit(self._start, previous, run_settings(trainer), tags)

    def log_metrics(self, values: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        with self._lock:
            self._pending.extend((k, float(v), now, step) for k, v in values.items())
            if self._flush_queued:
                return  # a slow server gets the points in batches, none dropped
            self._flush_queued = True
        self._sender.submit(self._flush)

    def end(self, trainer, error: Optional[BaseException]) -> None:
        if self._sender is None:
            return
        if error is None:
            self.log_metrics(final_values(trainer), trainer.global_step)
            files = [self.run_dir / n for n in (*ARTIFACTS, *PLOTS) if (self.run_dir / n).is_file()]
            self._sender.submit(self._log_files, files)
            model = _served_copy(trainer)
            self._sender.submit(self._log_model, model, _model_metadata(trainer), trainer.input_spec.input_size,
                                len(trainer.classes))
            status = "FINISHED"
        else:
            status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
        self._sender.submit(self._terminate, status)
        wait_s = tracking_wait_s()
        if not self._sender.close(wait_s) and not self.off:
            self.fail(TimeoutError(f"not done after {wait_s:g} s ({WAIT_ENV})"),
                      "did not finish sending the run's end", "what it had not sent is left behind")

    def fail(self, err: BaseException, *args: str) -> None:
        if self._sender is not None:
            self._sender.failed = True
        super().fail(err, *args)

    def close_quietly(self) -> None:
        if self._sender is not None:
            self._sender.stop()

    # The sender thread's side.
    def _start(self, previous: Optional[dict], params: dict[str, Any], tags: dict[str, str]) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import Param, RunTag
        from mlflow.exceptions import MlflowException

        client = MlflowClient(tracking_uri=self.uri)
        run = None
        if previous and previous.get("tracking_uri") == self.uri and previous.get("run_id"):
            try:
                run = client.get_run(previous["run_id"])
                client.update_run(run.info.run_id, status="RUNNING")
                log.info("MLflow: continuing run %s", run.info.run_id)
            except MlflowException as err:
                log.warning("MLflow run %s of %s could not be continued (%s); a new run is started",
                            previous["run_id"], self.run_dir, str(err).splitlines()[0] if str(err) else err)
                run = None
        elif previous:
            log.warning("%s recorded MLflow run %s at %s; tracking now goes to %s, so a new run is started",
                        self.run_dir / TRACKING_FILE, previous.get("run_id"), previous.get("tracking_uri"), self.uri)
        if run is None:
            experiment_id = _experiment_id(client, self.experiment)
            run = client.create_run(experiment_id, run_name=self.run_dir.name, tags=tags)
            known: Mapping[str, str] = {}
        else:
            known = run.data.params
        self._client, self.run_id = client, run.info.run_id
        save_json({"mlflow": {"tracking_uri": self.uri, "experiment_id": run.info.experiment_id,
                              "run_id": self.run_id}}, self.run_dir / TRACKING_FILE)
        # MLflow refuses to change a logged param: a resumed run adds only what is new.
        new = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in known]
        client.log_batch(self.run_id, params=new, tags=[RunTag("resnetkit.resumed", "true")] if known else [])
        where = self.uri.rstrip("/")
        if urlsplit(self.uri).scheme in ("http", "https"):
            where += f"/#/experiments/{run.info.experiment_id}/runs/{self.run_id}"
        log.info("MLflow run %s (%s)", self.run_id, where)

    def _flush(self) -> None:
        from mlflow.entities import Metric

        with self._lock:
            batch, self._pending, self._flush_queued = self._pending, [], False
        metrics = [Metric(k, v, ts, step) for k, v, ts, step in batch]
        for i in range(0, len(metrics), 1000):  # MLflow's limit per request
            self._client.log_batch(self.run_id, metrics=metrics[i:i + 1000])

    def _log_files(self, files: list[Path]) -> None:
        for path in files:
            self._client.log_artifact(self.run_id, str(path))

    def _log_model(self, model: torch.nn.Module, metadata: dict, input_size: tuple[int, ...], num_classes: int) -> None:
        import mlflow.pytorch
        from mlflow.models import ModelSignature
        from mlflow.types import Schema, TensorSpec

        # Unnamed tensors: pyfunc's predict then takes and returns a plain array (N, C, H, W) -> (N, classes).
        signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *input_size))]),
                                   outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, num_classes))]))
        # Two examples, so that torch.export keeps the batch dimension dynamic (a size-1 one is
        # specialized to a constant).
        example = np.zeros((2, *input_size), dtype=np.float32)
        # Requirements given, not inferred: inferring loads the model in a subprocess (slow).
        requirements = [f"torch=={torch.__version__.split('+')[0]}", f"resnetkit=={__version__}"]
        folder = Path(tempfile.mkdtemp(prefix="resnetkit-mlflow-"))
        try:
            try:
                # pt2 (torch.export): a graph that loads without resnetkit and runs no pickled code.
                mlflow.pytorch.save_model(model, str(folder / "model"), signature=signature, input_example=example,
                                          metadata={**metadata, "format": "pt2"}, serialization_format="pt2",
                                          pip_requirements=requirements[:1])
            except Exception as err:  # a model torch.export cannot trace: the pickled module (needs resnetkit)
                log.info("MLflow model: torch.export failed (%s: %s); logging the pickled module instead",
                         type(err).__name__, str(err).strip().splitlines()[0][:200] if str(err).strip() else "")
                shutil.rmtree(folder / "model", ignore_errors=True)
                mlflow.pytorch.save_model(model, str(folder / "model"), signature=signature, input_example=example,
                                          metadata={**metadata, "format": "pickle"}, serialization_format="pickle",
                                          pip_requirements=requirements)
            self._client.log_artifacts(self.run_id, str(folder / "model"), artifact_path="model")
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _terminate(self, status: str) -> None:
        if self._pending:
            self._flush()
        self._client.set_terminated(self.run_id, status)


def _experiment_id(client, name: str) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:  # another run created it meanwhile
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def _read_record(run_dir: Path) -> dict:
    path = run_dir / TRACKING_FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        log.warning("%s is unreadable (%s); the resumed run starts a new MLflow run", path, err)
        return {}
    return record if isinstance(record, dict) else {}


def _served_copy(trainer) -> torch.nn.Module:
    """The best epoch's weights (what best.safetensors holds) in a CPU copy of the model, for MLflow."""
    return trainer.best_model().to("cpu", memory_format=torch.contiguous_format).eval()


def _model_metadata(trainer) -> dict:
    """What a user of the MLflow model needs beside the tensor signature: the classes in output
    order and how raw inputs become the model's input."""
    return {"classes": list(trainer.classes), "input_spec": trainer.input_spec.to_dict(),
            "model_name": str(getattr(trainer.model, "model_name", type(trainer.model).__name__)),
            "best_epoch": trainer.best_epoch}
