"""`resnetkit serve` as a user starts it: a subprocess on 127.0.0.1 that answers, then stops on SIGINT."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from resnetkit.cli.main import main  # noqa: E402

SRC = Path(__file__).resolve().parents[2] / "src"


def test_bad_arguments_are_one_line(capsys):
    assert main(["serve", "--checkpoint", "nowhere", "--max-batch", "0"]) == 2
    assert "max_batch must be a whole number >= 1" in capsys.readouterr().err
    assert main(["serve", "--checkpoint", "no/such/run"]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_serves_until_interrupted(image_run, data_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "resnetkit.cli.main", "serve", "--checkpoint", str(image_run),
                             "--port", str(port), "--max-batch", "4", "--no-access-log"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start within 180 s"
                time.sleep(0.3)
        image = sorted(data_path("cifar10/train/cat").glob("*.jpg"))[0].read_bytes()
        request = urllib.request.Request(f"{url}/v1/predict?top_k=2", data=image, method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        assert len(answer["top_k"]) == 2 and answer["model"] == "resnet20"
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"on http://127.0.0.1:{port}/" in out
