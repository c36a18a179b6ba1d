"""Two processes under torchrun on the CPU (gloo): metrics reduced, files written once."""

from __future__ import annotations

import csv
import json
import os
import sys

import pytest

from resnetkit.testing.processes import run_with_deadline


def _torchrun(cmd: list[str], env: dict, cwd, timeout: int) -> tuple[int, str, str]:
    """Run a torchrun command; a hang fails the test instead of the suite."""
    done = run_with_deadline(cmd, env=env, cwd=cwd, timeout=timeout)
    if done.timed_out:
        pytest.fail(f"torchrun did not finish in {timeout} s (a hang?):\n{done.stderr[-3000:]}")
    return done.returncode, done.stdout, done.stderr


@pytest.mark.slow
def test_torchrun_two_processes(cifar_folder, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": "29631"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29631",
           "-m", "resnetkit.cli.main", "train", "--data", str(cifar_folder), "--model", "resnet20",
           "--epochs", "2", "--batch-size", "32", "--out", str(out), "--quiet", "--json"]
    returncode, stdout, stderr = _torchrun(cmd, env, tmp_path, timeout=300)
    assert returncode == 0, stderr[-3000:]
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
    # Each rank says how many threads it computes with (thread counts change the results).
    for rank in (0, 1):
        assert f"rank {rank} of 2 (node-local rank {rank}): 1 torch threads (OMP_NUM_THREADS=1)" in stderr


POISON_ONE_RANK = """
import sys
import torch
from resnetkit import TrainConfig, Trainer, create_model
from resnetkit.runtime import distributed
from resnetkit.engine.trainer import TrainingDiverged


class PoisonRankOne:
    # NaN weights on rank 1 only: its loss is NaN from epoch 2 on, rank 0's stays finite.
    def on_epoch_end(self, trainer, row):
        if trainer.dist.rank == 1:
            with torch.no_grad():
                trainer.model.fc.weight.fill_(float("nan"))


distributed.init_distributed("cpu")
x, y = torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,))
trainer = Trainer(create_model("resnet20", in_chans=1), (x, y), None,
                  TrainConfig(batch_size=16, epochs=3, quiet=True, device="cpu"), callbacks=[PoisonRankOne()])
try:
    trainer.fit()
except TrainingDiverged as err:
    print(f"rank {trainer.dist.rank} stopped: {err}", flush=True)
    sys.exit(3)
"""


@pytest.mark.slow
def test_nan_on_one_rank_stops_every_rank(tmp_path):
    script = tmp_path / "poison.py"
    script.write_text(POISON_ONE_RANK)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29632", str(script)]
    returncode, stdout, stderr = _torchrun(cmd, env, tmp_path, timeout=180)
    assert returncode != 0
    assert "rank 1 stopped: the training loss became nan at epoch 2" in stdout, stdout + stderr[-3000:]
    assert "rank 0 stopped: the training loss became non-finite on another rank at epoch 2" in stdout, stdout
