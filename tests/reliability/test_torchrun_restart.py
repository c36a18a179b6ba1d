"""A two-process CPU (gloo) run whose worker is killed resumes under ``torchrun --max-restarts 1``
from the last checkpoint and ends equal to the uninterrupted run."""

from __future__ import annotations

import os
import sys

import pytest
import torch

from resnetkit.testing.faults import compare_runs

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "engine"))
from test_distributed import _torchrun  # noqa: E402

WORKER = """
import os, signal, sys
from torch.optim.optimizer import register_optimizer_step_post_hook
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
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        if kill_at:
            env["KILL_AT"] = str(kill_at)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--max-restarts", "1",
               "--master_port", str(port), str(script), "train", "--data", str(cifar_folder), "--epochs", "2",
               "--batch-size", "32", "--device", "cpu", "--seed", "2", "--deterministic", "--quiet",
               "--out", str(out), "--auto-resume"]
        return _torchrun(cmd, env, tmp_path, timeout=600)

    reference, run = tmp_path / "reference", tmp_path / "run"
    code, _, err = launch(reference, 29641)
    assert code == 0, err[-3000:]
    code, _, err = launch(run, 29642, kill_at=9)  # 6 steps per rank per epoch: step 9 is mid-epoch 2
    assert code == 0, err[-3000:]
    assert "restart" in err.lower() or "Restarting" in err, "the worker was not restarted"
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 2
    assert compare_runs(reference, run) == []
