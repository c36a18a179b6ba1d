"""A two-process CPU (gloo) run whose worker is killed resumes under ``torchrun --max-restarts 1``
from the last checkpoint and ends equal to the uninterrupted run."""

from __future__ import annotations

import os
import sys

import pytest
import torch

from resnetkit.testing.faults import compare_runs
from resnetkit.testing.processes import run_with_deadline


WORKER = """
import os, signal, sys
from torch.optim.optimizer import register_optimizer_step_post_hook
# Each worker notes its rank and attempt, so the test sees the restart without reading torch's logs.
with open(os.environ["ATTEMPTS_LOG"], "a") as log:
    log.write(f"{os.environ['RANK']} {os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}\\n")
# Rank 1 of the first attempt dies in the middle of epoch 2; the restarted attempt runs clean.
if os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0" and os.environ.get("RANK") == "1" and os.environ.get("KILL_AT"):
    target, count = int(os.environ["KILL_AT"]), [0]
    def hook(optimizer, args, kwargs):
        count[0] += 1
        if count[0] == target:
            os.kill(os.getpid(), signal.SIGKILL)
    register_optimizer_step_post_hook(hook)
from resnetkit.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_killed_worker_restarts_and_resumes(cifar_folder, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)

    def launch(out, port, kill_at=None):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "ATTEMPTS_LOG": str(tmp_path / f"{out.name}.attempts")}
        if kill_at:
            env["KILL_AT"] = str(kill_at)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--max-restarts", "1",
               "--master_port", str(port), str(script), "train", "--data", str(cifar_folder), "--epochs", "2",
               "--batch-size", "32", "--device", "cpu", "--seed", "2", "--deterministic", "--quiet",
               "--out", str(out), "--auto-resume"]
        done = run_with_deadline(cmd, env=env, cwd=tmp_path, timeout=600)
        assert not done.timed_out, f"torchrun did not finish in 600 s (a hang?):\n{done.stderr[-3000:]}"
        return done.returncode, done.stdout, done.stderr

    reference, run = tmp_path / "reference", tmp_path / "run"
    code, _, err = launch(reference, 29641)
    assert code == 0, err[-3000:]
    code, _, err = launch(run, 29642, kill_at=9)  # 6 steps per rank per epoch: step 9 is mid-epoch 2
    assert code == 0, err[-3000:]
    attempts = sorted((tmp_path / "run.attempts").read_text().split("\n")[:-1])
    assert attempts == ["0 0", "0 1", "1 0", "1 1"], f"both ranks should have run twice: {attempts}\n{err[-3000:]}"
    assert sorted((tmp_path / "reference.attempts").read_text().split("\n")[:-1]) == ["0 0", "1 0"]
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 2
    assert compare_runs(reference, run) == []
