"""Fault injection: kill a real ``resnetkit train`` process at a chosen point, then resume it.

A trial runs the training command in a child process with a *fault* installed before
anything else happens in it, resumes the run (``--auto-resume``) as often as it takes to
finish, checks after every kill that each checkpoint on disk still loads, and at the end
compares the final weights and ``metrics.json`` with those of an uninterrupted run of the
same command and seed.

Faults (one per process; a trial lists one for the first run and one for each resume):

- ``step:N``       SIGKILL after the N-th optimizer step of this process (mid-epoch)
- ``write:FILE:K`` SIGKILL while the K-th version of FILE is being written: its temporary
  file is half written and never renamed into place
- ``after:FILE:K`` SIGKILL right after the K-th version of FILE is in place, before the
  next file of the same step (e.g. between ``last.pt`` and ``best.pt``)
- ``none``         no fault
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

CHILD = r"""
import os, signal, sys
fault = os.environ.get("RESNETKIT_FAULT", "none")

def die():
    sys.stdout.flush(); sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)

if fault.startswith("step:"):
    from torch.optim.optimizer import register_optimizer_step_post_hook
    target, count = int(fault.split(":")[1]), [0]
    def hook(optimizer, args, kwargs):
        count[0] += 1
        if count[0] == target:
            die()
    register_optimizer_step_post_hook(hook)
elif fault.startswith(("write:", "after:")):
    kind, name, nth = fault.split(":")
    nth, seen, replace = int(nth), [0], os.replace
    def patched(src, dst, *a, **kw):
        if os.path.basename(str(dst)) == name:
            seen[0] += 1
            if seen[0] == nth:
                if kind == "write":
                    size = os.path.getsize(src)
                    with open(src, "r+b") as fh:
                        fh.truncate(size // 2)
                    die()
                replace(src, dst, *a, **kw)
                die()
        return replace(src, dst, *a, **kw)
    os.replace = patched

from resnetkit.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@dataclass
class TrialResult:
    faults: list[str]
    kills: int = 0
    processes: int = 0
    exact: bool = False
    checkpoints_loaded: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exact and not self.problems


def run_child(argv: Sequence[str], fault: str = "none", kill_after_s: Optional[float] = None,
              timeout_s: float = 900, env: Optional[dict] = None) -> subprocess.CompletedProcess:
    """One ``resnetkit`` process with ``fault`` installed (and, with ``kill_after_s``, a SIGKILL from outside)."""
    child_env = {**os.environ, **(env or {}), "RESNETKIT_FAULT": fault}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=child_env)
    try:
        out, err = proc.communicate(timeout=kill_after_s if kill_after_s is not None else timeout_s)
    except subprocess.TimeoutExpired:
        if kill_after_s is None:
            proc.kill()
            out, err = proc.communicate()
            raise TimeoutError(f"resnetkit {' '.join(argv)} ran past {timeout_s} s:\n{err[-2000:]}")
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def check_checkpoints(run_dir: Path) -> tuple[int, list[str]]:
    """Every checkpoint file in ``run_dir`` must load; returns (files loaded, problems)."""
    from resnetkit.engine.checkpoint import read_checkpoint

    loaded, problems = 0, []
    for name in ("last.pt", "best.pt"):
        path = run_dir / name
        if path.exists():
            try:
                read_checkpoint(path)
                loaded += 1
            except Exception as err:  # a checkpoint that does not load is what this looks for
                problems.append(f"{name} does not load: {err}")
    path = run_dir / "best.safetensors"
    if path.exists():
        try:
            from safetensors.torch import load_file

            load_file(str(path))
            loaded += 1
        except Exception as err:
            problems.append(f"best.safetensors does not load: {err}")
    return loaded, problems


def compare_runs(reference: Path, run: Path) -> list[str]:
    """Differences between two finished runs: the final and best weights, and metrics.json."""
    import torch

    problems = []
    for name in ("last.pt", "best.pt"):
        a = torch.load(reference / name, map_location="cpu", weights_only=True)
        b = torch.load(run / name, map_location="cpu", weights_only=True)
        for part in ("model", "ema"):
            if (a.get(part) is None) != (b.get(part) is None):
                problems.append(f"{name}[{part}] present in one run only")
                continue
            for key, value in (a.get(part) or {}).items():
                if not torch.equal(value, b[part][key]):
                    problems.append(f"{name}[{part}][{key}] differs")
                    break
    ma = json.loads((reference / "metrics.json").read_text())
    mb = json.loads((run / "metrics.json").read_text())
    if ma != mb:
        keys = sorted(k for k in set(ma) | set(mb) if ma.get(k) != mb.get(k))
        problems.append(f"metrics.json differs in {keys}")
    return problems


def run_trial(train_argv: Sequence[str], run_dir: Path, reference: Path, faults: Sequence[str],
              kill_after_s: Optional[float] = None, max_processes: int = 8, env: Optional[dict] = None) -> TrialResult:
    """Train ``train_argv`` (which must name ``--out run_dir``) under ``faults``, resume until done, compare."""
    result = TrialResult(list(faults))
    t0 = time.perf_counter()
    argv = [*train_argv, "--auto-resume"]
    for i in range(max_processes):
        fault = faults[i] if i < len(faults) else "none"
        proc = run_child(argv, fault, kill_after_s if i == 0 else None, env=env)
        result.processes += 1
        if proc.returncode == -signal.SIGKILL:
            result.kills += 1
            loaded, problems = check_checkpoints(run_dir)
            result.checkpoints_loaded += loaded
            result.problems += problems
            continue
        if proc.returncode != 0:
            result.problems.append(f"process {i + 1} (fault {fault}) exited {proc.returncode}: {proc.stderr[-1500:]}")
            break
        loaded, problems = check_checkpoints(run_dir)
        result.checkpoints_loaded += loaded
        result.problems += problems
        problems = compare_runs(reference, run_dir)
        result.problems += problems
        result.exact = not problems
        break
    else:
        result.problems.append(f"not finished after {max_processes} processes")
    result.seconds = time.perf_counter() - t0
    return result


def random_faults(rng: random.Random, steps_per_epoch: int, epochs: int) -> list[str]:
    """A random fault for the first process and, half of the time, one for the first resume."""
    total = steps_per_epoch * epochs
    choices = [
        lambda: f"step:{rng.randint(1, total - 1)}",
        lambda: f"write:{rng.choice(['last.pt', 'best.pt', 'best.safetensors', 'metrics.json'])}:{rng.randint(1, 2)}",
        lambda: f"after:{rng.choice(['last.pt', 'best.pt', 'metrics.csv'])}:{rng.randint(1, epochs)}",
    ]
    faults = [rng.choice(choices)()]
    if rng.random() < 0.5:
        faults.append(f"step:{rng.randint(1, steps_per_epoch)}")
    return faults
