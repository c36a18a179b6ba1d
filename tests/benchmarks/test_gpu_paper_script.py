"""benchmarks/gpu_paper.sh, ready for a GPU: tested here on the CPU with a tiny iteration count.

The first call runs out of its (tiny) time and stops with checkpoints; the second resumes and
finishes every run, then builds the table and Figure 6's curves."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_paper.sh"


@pytest.mark.slow
def test_paper_script_resumes_in_chunks_and_reports(cifar_folder, tmp_path):
    if shutil.which("resnetkit") is None:
        pytest.skip("the resnetkit command is not on PATH")
    out = tmp_path / "paper"
    env = {**os.environ, "MODELS": "resnet20"}  # the GPU runs all five; one shows the mechanics
    first = subprocess.run(["bash", str(SCRIPT), str(out), str(cifar_folder), "0.02", "3"],
                           capture_output=True, text=True, timeout=900, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "time is up" in first.stdout
    second = subprocess.run(["bash", str(SCRIPT), str(out), str(cifar_folder), "60", "3"],
                            capture_output=True, text=True, timeout=1800, env=env)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]
    assert "all runs finished" in second.stdout
    for model in ("resnet20",):
        metrics = json.loads((out / model / "metrics.json").read_text())
        assert metrics["num_samples"] == 40  # the recipe's val_split: a tenth of the 400 training images
        config = (out / model / "config.yaml").read_text()
        assert "milestones:\n- 32000\n- 48000" in config and "max_steps: 3" in config
    table = (out / "compare.md").read_text()
    assert "resnet20" in table and (out / "compare_curves.png").is_file()
    # Without MODELS the script trains the paper's five nets: with the first four done and no time
    # left, it names resnet110 as the next one.
    full = tmp_path / "full"
    for model in ("resnet20", "plain20", "resnet56", "plain56"):
        (full / model).mkdir(parents=True)
        (full / model / "metrics.json").write_text("{}")
    env.pop("MODELS")
    third = subprocess.run(["bash", str(SCRIPT), str(full), str(cifar_folder), "0"], capture_output=True, text=True,
                           timeout=120, env=env)
    assert third.returncode == 0 and "(resnet110 next)" in third.stdout, third.stdout + third.stderr
