"""Experiment tracking (engine/tracking.py): TensorBoard event files read back with tensorboard's own
reader, MLflow against a real ``mlflow server`` (sqlite store) queried with ``MlflowClient``, and
servers that are down, killed mid-run or never answer."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from resnetkit.engine import TrainConfig, TrainingInterrupted, train
from resnetkit.engine.tracking import (
    MLFLOW_HTTP_DEFAULTS,
    WAIT_ENV,
    Tracking,
    check_mlflow_uri,
    check_tracking,
    create_trackers,
)
from resnetkit.runtime.distributed import DistInfo
from resnetkit.testing.callbacks import StopAtStep
from resnetkit.testing.processes import kill_tree

TRACKING_LOG = "resnetkit.engine.tracking"
# Every file a finished run writes for itself, trackers or not.
RUN_RECORD = ("config.yaml", "classes.json", "data_config.json", "metrics.csv", "metrics.json", "last.pt", "best.pt",
              "best.safetensors", "curves.png", "confusion.png", "examples.png")


def _config(out, **changes):
    # Digits at batch 256: 6 steps per epoch, 12 in all; a point every 2 steps.
    settings = dict(data="digits", model="resnet20", epochs=2, batch_size=256, quiet=True, device="cpu", seed=0,
                    out=str(out), log_every=2)
    return TrainConfig(**{**settings, **changes})


@pytest.fixture(autouse=True)
def _isolated_mlflow_env(monkeypatch, tmp_path):
    # The tracker sets MLflow's HTTP knobs with os.environ.setdefault; undo them after each test
    # (monkeypatch restores what it saw first), and keep a user's MLflow settings out.
    for key in (*MLFLOW_HTTP_DEFAULTS, "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", WAIT_ENV,
                "MLFLOW_ALLOW_FILE_STORE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)  # the default store (./mlflow.db, ./mlruns) lands in the test's folder


# -- settings and bad input ------------------------------------------------------------------------


def test_log_takes_a_list_or_a_comma_separated_string():
    assert TrainConfig(log="TensorBoard, mlflow").log == ["tensorboard", "mlflow"]
    assert TrainConfig(log=["mlflow", "mlflow,tensorboard"]).log == ["mlflow", "tensorboard"]
    assert TrainConfig(log="none").log == [] and TrainConfig().log == []


def test_an_unknown_tracker_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown tracker 'tensorbord' \(did you mean tensorboard\?\).*"
                                         r"tensorboard, mlflow"):
        TrainConfig(log="tensorbord,mlflow")
    with pytest.raises(TypeError, match="log must be a list of tracker names"):
        TrainConfig(log=3)


@pytest.mark.parametrize("uri, message", [
    ("localhost:5000", "did you mean http://localhost:5000"),
    ("127.0.0.1:5000", "did you mean http://127.0.0.1:5000"),
    ("http://", "has no host"),
    ("http://host:port", "does not parse"),
    ("http://host:99999", "does not parse"),
    ("http://[::1", "does not parse"),
    ("htp://host", "unknown scheme 'htp'"),
    ("sqlite://", "expected sqlite:///FILE"),
    ("http://host /x", "white space"),
    ("", "must be an MLflow tracking URI"),
])
def test_an_mlflow_uri_that_does_not_parse_is_refused(uri, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("?", r"\?")):
        TrainConfig(log="mlflow", mlflow_uri=uri)


@pytest.mark.parametrize("uri", ["http://127.0.0.1:5000", "https://mlflow.example.org/prefix", "sqlite:///mlflow.db",
                                 "sqlite:////abs/mlflow.db", "postgresql+psycopg2://u:p@db:5432/mlflow", "databricks",
                                 "file:///tmp/mlruns", "./mlruns"])
def test_the_uris_mlflow_takes_are_accepted(uri):
    check_mlflow_uri(uri)


def _cli(*args):
    from resnetkit.cli.main import main

    return main(["train", *args])


def test_bad_tracking_input_stops_the_cli_before_training(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    cases = [
        (["--log", "tensorbord"], {}, "unknown tracker 'tensorbord'"),
        (["--log", "mlflow", "--mlflow-uri", "http://host:notaport"], {}, "mlflow_uri 'http://host:notaport' does not parse"),
        (["--log", "mlflow"], {"MLFLOW_TRACKING_URI": "localhost:5000"}, "MLFLOW_TRACKING_URI 'localhost:5000' has no scheme"),
        (["--log", "mlflow", "--mlflow-uri", str(tmp_path / "mlruns")], {}, "MLFLOW_ALLOW_FILE_STORE=true"),
    ]
    for flags, env, message in cases:
        with monkeypatch.context() as m:
            for key, value in env.items():
                m.setenv(key, value)
            assert _cli(*flags, "--out", str(out), "--epochs", "1", "--quiet") == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
        assert not out.exists()  # nothing was trained, not even a run directory claimed


def test_a_missing_extra_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now fails, as without the package
    with pytest.raises(ValueError, match=r"log mlflow needs the mlflow package: pip install 'resnetkit\[track\]'"):
        check_tracking(TrainConfig(log="mlflow"))
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ValueError, match=r"tensorboard package: pip install 'resnetkit\[track\]'"):
        check_tracking(TrainConfig(log="tensorboard"))


def test_only_the_main_process_tracks_and_it_needs_a_run_directory(tmp_path):
    config = TrainConfig(log="tensorboard,mlflow", mlflow_uri="http://127.0.0.1:1")
    assert create_trackers(config, tmp_path, DistInfo(rank=1, world_size=2)) == []
    (tracking,) = create_trackers(config, tmp_path, DistInfo(rank=0, world_size=2))
    assert isinstance(tracking, Tracking) and [b.name for b in tracking.backends] == ["TensorBoard", "MLflow"]
    with pytest.raises(ValueError, match="needs a run directory"):
        create_trackers(config, None, DistInfo())


@pytest.mark.slow  # two trainings
def test_a_resumed_run_may_change_its_trackers(tmp_path):
    train(_config(tmp_path / "run", epochs=1))
    summary = train(resume=tmp_path / "run", changes={"epochs": 2, "log": "tensorboard"})
    assert len(summary.history) == 2
    assert any(p.name.startswith("events.out.tfevents.") for p in (tmp_path / "run").iterdir())


def test_a_tracker_that_fails_is_warned_about_once_and_left_out(caplog):
    from types import SimpleNamespace

    from resnetkit.engine.tracking import _Backend

    class Broken(_Backend):
        name = "Broken"
        calls = 0

        def log_metrics(self, values, step):
            Broken.calls += 1
            raise OSError("No space left on device")

    class Recorder(_Backend):
        name = "Recorder"
        seen: list = []

        def log_metrics(self, values, step):
            self.seen.append(step)

    caplog.set_level(logging.WARNING, logger=TRACKING_LOG)
    broken, recorder = Broken(), Recorder()
    tracking = Tracking([broken, recorder], log_every=1)
    for step in (1, 2, 3):
        tracking.on_epoch_end(SimpleNamespace(global_step=step), {"epoch": step, "step": step, "val_acc": 0.5})
    assert Broken.calls == 1 and recorder.seen == [1, 2, 3]  # the other tracker goes on
    (warning,) = _warnings(caplog)
    assert "Broken failed (OSError: No space left on device); it is off for the rest of this run" in warning


# -- TensorBoard ------------------------------------------------------------------------------------


def _events(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def test_tensorboard_event_files_read_back(tmp_path):
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
    from tensorboard.plugins.hparams import plugin_data_pb2

    summary = train(_config(tmp_path / "runs" / "digits", log="tensorboard"))
    run_dir = summary.run_dir
    events = _events(run_dir)
    steps = summary.history[-1]["step"]
    loss = events.Scalars("step/train_loss")
    assert [e.step for e in loss] == list(range(2, steps + 1, 2))
    assert all(0 < e.value < 10 for e in loss)
    lr = [e.value for e in events.Scalars("step/lr")]
    assert lr == sorted(lr, reverse=True) and lr[0] < 0.1 and lr[-1] == pytest.approx(0.0, abs=1e-9)  # cosine
    assert all(e.value > 0 for e in events.Scalars("step/images_per_sec"))
    for key in ("val_acc", "val_loss", "val_top5", "train_loss", "train_acc"):
        logged = events.Scalars(f"epoch/{key}")
        assert [e.step for e in logged] == [row["step"] for row in summary.history]
        assert [e.value for e in logged] == pytest.approx([row[key] for row in summary.history], rel=1e-6)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert events.Scalars("final/top1")[-1].value == pytest.approx(metrics["top1"], rel=1e-6)
    assert events.Scalars("final/macro_f1")[-1].value == pytest.approx(metrics["macro_avg"]["f1"], rel=1e-6)

    from PIL import Image

    for name in ("curves", "confusion", "examples"):
        (image,) = events.Images(f"report/{name}")
        with Image.open(run_dir / f"{name}.png") as png:
            assert (image.width, image.height) == png.size

    # The resolved configuration as hparams, beside the final metrics.
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["lr"].number_value == pytest.approx(0.1)
    assert start.hparams["model"].string_value == "resnet20"
    assert start.hparams["log"].string_value == "tensorboard"
    assert start.hparams["run.num_classes"].number_value == 10
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert "final/top1" in {m.name.tag for m in experiment.metric_infos}

    # `tensorboard --logdir runs/` shows the run under its own name (no sub-runs).
    runs = EventMultiplexer().AddRunsFromDirectory(str(tmp_path / "runs")).Runs()
    assert list(runs) == ["digits"]


@pytest.mark.slow  # two trainings
def test_a_resumed_run_keeps_one_tensorboard_value_per_step(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        train(_config(run, log="tensorboard"), callbacks=[StopAtStep(9)])  # mid epoch 2
    # What a killed process may leave: a point after its last checkpoint (step 9).
    with SummaryWriter(str(run)) as stale:
        stale.add_scalar("step/train_loss", 99.0, 10)
    summary = train(resume=run)
    loss = _events(run).Scalars("step/train_loss")
    assert [e.step for e in loss] == list(range(2, summary.history[-1]["step"] + 1, 2))
    assert 99.0 not in [e.value for e in loss]


@pytest.mark.slow  # two trainings
def test_overwrite_removes_the_old_event_files(tmp_path):
    train(_config(tmp_path / "run", epochs=1, log="tensorboard"))
    first = {p.name for p in (tmp_path / "run").glob("events.out.tfevents.*")}
    train(_config(tmp_path / "run", epochs=1, log="tensorboard"), overwrite=True)
    assert first and first.isdisjoint(p.name for p in (tmp_path / "run").glob("events.out.tfevents.*"))


# -- MLflow: a real server --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, url: str, proc: subprocess.Popen) -> None:
        self.url, self.proc = url, proc

    def kill(self) -> None:
        kill_tree(self.proc.pid)  # uvicorn runs in a child process
        self.proc.wait()


@contextmanager
def mlflow_server(folder: Path, start_timeout_s: float = 300):
    """``mlflow server`` on 127.0.0.1 with a sqlite store, stopped (with all it started) whatever happens."""
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    # The job runner (huey consumers) is not tracking; without it the server starts twice as fast.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination", str(folder / "artifacts")]
    with open(folder / "server.log", "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=folder, env=env, start_new_session=True)
        server = Server(f"http://127.0.0.1:{port}", proc)
        try:
            deadline = time.monotonic() + start_timeout_s
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"mlflow server exited with {proc.returncode}:\n{(folder / 'server.log').read_text()[-3000:]}")
                try:
                    with urllib.request.urlopen(f"{server.url}/health", timeout=2) as answer:
                        if answer.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"mlflow server not up after {start_timeout_s} s:\n"
                                f"{(folder / 'server.log').read_text()[-3000:]}")
                time.sleep(0.5)
            yield server
        finally:
            server.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as running:
        yield running


def _warnings(caplog) -> list[str]:
    # The tracker's own (urllib3 and MLflow log theirs too, about each retry).
    return [r.getMessage() for r in caplog.records if r.name == TRACKING_LOG and r.levelno >= logging.WARNING]


def _run_id(run_dir) -> str:
    return json.loads((Path(run_dir) / "tracking.json").read_text())["mlflow"]["run_id"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_mlflow_run_on_a_real_server_and_its_resume(server, tmp_path, monkeypatch):
    import mlflow
    import numpy as np
    from mlflow import MlflowClient
    from safetensors.torch import load_file

    from resnetkit.models import create_model

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)  # MLflow's own convention
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "resume-test")
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        train(_config(run, log="mlflow"), callbacks=[StopAtStep(9)])
    client = MlflowClient(server.url)
    run_id = _run_id(run)
    assert client.get_run(run_id).info.status == "KILLED"

    summary = train(resume=run)
    assert _run_id(run) == run_id  # the resume continued the same MLflow run
    experiment = client.get_experiment_by_name("resume-test")
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.run_id == run_id and found.info.run_name == "run" and found.info.status == "FINISHED"
    assert found.data.tags["resnetkit.resumed"] == "true"

    params = found.data.params
    assert params["lr"] == "0.1" and params["model"] == "resnet20" and params["log"] == "mlflow"
    assert params["run.num_classes"] == "10"
    val_acc = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "epoch/val_acc"))
    assert val_acc == [(row["step"], pytest.approx(row["val_acc"])) for row in summary.history]
    steps = [m.step for m in client.get_metric_history(run_id, "step/train_loss")]
    assert sorted(steps) == list(range(2, summary.history[-1]["step"] + 1, 2))  # each once, across the resume
    metrics = json.loads((run / "metrics.json").read_text())
    assert found.data.metrics["final/top1"] == pytest.approx(metrics["top1"])

    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"metrics.json", "config.yaml", "best.safetensors", "curves.png", "confusion.png", "examples.png",
            "model"} <= artifacts
    saved = client.download_artifacts(run_id, "metrics.json", str(tmp_path / "download"))
    assert json.loads(Path(saved).read_text()) == metrics

    # The MLflow model: pyfunc predicts what the best weights predict, and carries classes and input spec.
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    assert model.metadata.metadata["classes"] == json.loads((run / "classes.json").read_text())
    assert model.metadata.metadata["input_spec"]["kind"] == "image"
    (spec,) = model.metadata.signature.inputs.inputs
    assert spec.shape == (-1, 1, 8, 8)
    x = np.random.default_rng(0).standard_normal((5, 1, 8, 8)).astype(np.float32)
    reference = create_model("resnet20", num_classes=10, in_chans=1)
    reference.load_state_dict(load_file(run / "best.safetensors"))
    expected = reference.eval()(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_mlflow_server_killed_mid_run(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger=TRACKING_LOG)
    times = {}

    class KillServer:
        def __init__(self, server):
            self.server = server

        def on_train_end(self, trainer, error):  # before the trackers' (they come after the user's callbacks)
            times["end"] = time.monotonic()

        def on_epoch_end(self, trainer, row):
            if row["epoch"] != 1:
                return
            # Once the run exists on the server (the tracker starts it in its own thread).
            deadline = time.monotonic() + 120
            while not (trainer.run_dir / "tracking.json").exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            self.server.kill()

    with mlflow_server(tmp_path / "server") as server:
        summary = train(_config(tmp_path / "run", epochs=3, log="mlflow,tensorboard", mlflow_uri=server.url),
                        callbacks=[KillServer(server)])
        waited = time.monotonic() - times["end"]
    assert len(summary.history) == 3
    for name in RUN_RECORD:
        assert (summary.run_dir / name).is_file(), name
    warnings = _warnings(caplog)
    assert len(warnings) == 1, warnings
    assert f"MLflow tracking at {server.url} failed" in warnings[0] and "off for the rest of this run" in warnings[0]
    assert waited < 5, waited  # the tracker was off by then: the end of the run did not wait for it
    assert _events(summary.run_dir).Scalars("epoch/val_acc")[-1].step == summary.history[-1]["step"]  # TensorBoard went on


# -- MLflow: servers that are down or never answer --------------------------------------------------


@pytest.mark.timeout(300)
def test_a_refused_connection_costs_one_warning(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger=TRACKING_LOG)
    port = _free_port()  # nothing listens there: the connection is refused
    t0 = time.monotonic()
    summary = train(_config(tmp_path / "run", epochs=1, log="mlflow", mlflow_uri=f"http://127.0.0.1:{port}"))
    assert (summary.run_dir / "metrics.json").is_file() and not (summary.run_dir / "tracking.json").exists()
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and "off for the rest of this run" in warnings[0], warnings
    assert time.monotonic() - t0 < 240


@pytest.mark.timeout(300)
def test_a_server_that_never_answers_is_left_behind_at_the_end(tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.WARNING, logger=TRACKING_LOG)
    monkeypatch.setenv(WAIT_ENV, "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "120")  # MLflow itself would wait two minutes a request
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)  # connections are accepted by the kernel, and never answered
    ended = {}

    class Clock:
        def on_train_end(self, trainer, error):  # before the trackers' (they come after the user's callbacks)
            ended["at"] = time.monotonic()

    try:
        uri = f"http://127.0.0.1:{listener.getsockname()[1]}"
        summary = train(_config(tmp_path / "run", epochs=1, log="mlflow", mlflow_uri=uri), callbacks=[Clock()])
        waited = time.monotonic() - ended["at"]
    finally:
        listener.close()
    assert (summary.run_dir / "metrics.json").is_file()
    assert waited < 2 + 10, waited  # the bound, plus the model's copy
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and "did not finish sending the run's end" in warnings[0], warnings
    assert f"not done after 2 s ({WAIT_ENV})" in warnings[0]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_default_store_is_local(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv(WAIT_ENV, "300")  # creating the sqlite tables takes a while on a busy machine
    summary = train(_config(tmp_path / "run", epochs=1, log="mlflow"))  # no URI: ./mlflow.db, ./mlruns
    run_id = _run_id(summary.run_dir)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    artifacts = Path(run.info.artifact_uri.removeprefix("file://"))
    assert artifacts.is_relative_to(tmp_path / "mlruns") and (artifacts / "best.safetensors").is_file()
    assert (artifacts / "model" / "MLmodel").is_file()
