"""Two processes under torchrun on the CPU (gloo): metrics reduced, files written once."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_torchrun_two_processes(cifar_folder, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": "29631"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29631",
           "-m", "resnetkit.cli.main", "train", "--data", str(cifar_folder), "--model", "resnet20",
           "--epochs", "2", "--batch-size", "32", "--out", str(out), "--quiet", "--json"]
    # A session of its own, so that a hang kills the workers too, not only the launcher.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"torchrun did not finish in 300 s:\n{stderr[-3000:]}")
    assert proc.returncode == 0, stderr[-3000:]
    # Only rank 0 prints the summary and writes files.
    summaries = [l for l in stdout.splitlines() if l.startswith("{")]
    assert len(summaries) == 1
    info = json.loads((out / "data_config.json").read_text())
    assert info["world_size"] == 2
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    # 400 training images over 2 ranks of 200: 6 steps of 32 per rank per epoch.
    assert int(rows[0]["step"]) == 6
    # Validation metrics are summed over both ranks: every one of the 100 images counted once.
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_samples"] == 100
    assert sum(sum(r) for r in metrics["confusion_matrix"]) == 100
    assert not list(tmp_path.glob("runs")), "no rank may write elsewhere"
    leftovers = [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    assert not leftovers
