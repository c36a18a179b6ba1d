"""Kills at chosen points: a killed run resumes, every checkpoint loads, and it ends exactly
as an uninterrupted run with the same seed (the fast subset of benchmarks/kill_resume.py)."""

from __future__ import annotations

import json
import sys

import pytest

from resnetkit.testing.faults import check_checkpoints, compare_runs, run_child, run_trial

# Digits, ResNet-20, 3 epochs of 11 steps: seconds per process. The weights are compared
# bit for bit, so the thread count is fixed for every process.
ENV = {"OMP_NUM_THREADS": "2"}


def _argv(out) -> list[str]:
    return ["train", "--data", "digits", "--epochs", "3", "--seed", "5", "--quiet", "--deterministic",
            "--device", "cpu", "--out", str(out)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("kill") / "reference"
    proc = run_child(_argv(out), env=ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("faults", [
    ["after:last.pt:2"],               # between last.pt and best.pt of epoch 2
    ["write:best.pt:1", "step:4"],     # during the first best.pt, then mid-epoch in the resumed run
    ["write:metrics.json:1"],          # during the final report
], ids=lambda f: "+".join(f))
def test_killed_run_resumes_exactly(reference, tmp_path, faults):
    out = tmp_path / "run"
    result = run_trial(_argv(out), out, reference, faults, env=ENV)
    assert result.ok, result.problems
    assert result.kills == len(faults) and result.checkpoints_loaded > 0


@pytest.mark.slow
def test_a_stale_best_is_repaired_not_reported(reference, tmp_path):
    """The issue's case: killed between last.pt and best.pt of the final improving epoch.
    metrics.json, best.pt and best.safetensors must all describe the best epoch."""
    out = tmp_path / "run"
    result = run_trial(_argv(out), out, reference, ["after:last.pt:3"], env=ENV)
    assert result.ok, result.problems
    metrics = json.loads((out / "metrics.json").read_text())
    import torch

    best = torch.load(out / "best.pt", weights_only=True)
    assert best["epoch"] == metrics["epoch"] and not check_checkpoints(out)[1]
    assert compare_runs(reference, out) == []
