"""The run directory: claimed by one run, never overwritten silently, written with the user's
umask, cleaned of a killed writer's temporaries; a full disk is said as such."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import textwrap

import pytest
import torch

from resnetkit import TrainConfig, train
from resnetkit.cli.main import main
from resnetkit.engine.run_dir import RunDirectoryError, RunLock, claim, create_unique
from resnetkit.runtime.files import DiskFullError, atomic_write


def _config(out, **kw) -> TrainConfig:
    return TrainConfig(data="digits", epochs=1, quiet=True, device="cpu", out=str(out), **kw)


def test_a_finished_run_is_not_overwritten_without_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    train(_config(out))
    before = (out / "last.pt").stat().st_mtime_ns
    with pytest.raises(RunDirectoryError, match="holds a finished run.*--overwrite"):
        train(_config(out))
    assert (out / "last.pt").stat().st_mtime_ns == before
    assert main(["train", "--epochs", "1", "--quiet", "--out", str(out)]) == 2
    assert "holds a finished run" in capsys.readouterr().err
    train(_config(out, seed=1), overwrite=True)
    assert torch.load(out / "last.pt", weights_only=True)["config"]["seed"] == 1


def test_an_unfinished_run_points_to_resume(tmp_path):
    out = tmp_path / "run"
    train(_config(out))
    (out / "metrics.json").unlink()  # as a run killed before its end leaves it
    with pytest.raises(RunDirectoryError, match=r"unfinished run: continue it with `resnetkit train --resume"):
        train(_config(out))


def test_a_running_run_holds_its_directory(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with RunLock(out):
        with pytest.raises(RunDirectoryError, match=r"in use by a run that is still going \(pid \d+"):
            train(_config(out))
        with pytest.raises(RunDirectoryError, match="in use"):
            claim(out, resume=True)
    claim(out).release()  # released: free again


def test_two_processes_with_one_name(tmp_path):
    """Two real trainings started together under one --out: one trains, the other refuses."""
    script = textwrap.dedent(f"""
        import sys
        from resnetkit.cli.main import main
        sys.exit(main(["train", "--epochs", "2", "--quiet", "--device", "cpu", "--out", {str(tmp_path / 'run')!r}]))
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "in use by a run that is still going" in refused or "holds a finished run" in refused


def test_default_names_are_unique_within_a_second(tmp_path):
    made = [create_unique(tmp_path, "resnet20-digits-20261128-120000") for _ in range(3)]
    assert [p.name for p in made] == ["resnet20-digits-20261128-120000", "resnet20-digits-20261128-120000-2",
                                      "resnet20-digits-20261128-120000-3"]


def test_files_follow_the_umask_and_stale_temporaries_go(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    old = os.umask(0o022)
    try:
        train(_config(out))
    finally:
        os.umask(old)
    assert not list(out.glob(".*.tmp"))
    for name in ("last.pt", "best.pt", "best.safetensors", "metrics.json", "classes.json", "config.yaml",
                 "curves.png", "metrics.csv"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name


def test_a_full_disk_is_said_and_the_previous_checkpoint_kept(tmp_path, monkeypatch):
    target = tmp_path / "last.pt"
    atomic_write(target, lambda tmp: open(tmp, "wb").write(b"previous"))

    def no_space(tmp):
        with open(tmp, "wb") as fh:
            fh.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFullError, match=r"disk full while writing .*last.pt \(the previous last.pt is intact\)"):
        atomic_write(target, no_space)
    assert target.read_bytes() == b"previous" and not list(tmp_path.glob(".*.tmp"))
    # torch.save reports the same condition without an errno.
    with pytest.raises(DiskFullError):
        atomic_write(target, lambda tmp: (_ for _ in ()).throw(RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")))


def test_training_on_a_full_disk_exits_with_the_message(tmp_path, monkeypatch, capsys):
    """The whole command: disk full at the second epoch's last.pt; the first epoch's is intact."""
    import resnetkit.engine.checkpoint as checkpoint

    real = torch.save
    calls = {"n": 0}

    def full_after_one(obj, path, *args, **kwargs):
        if str(path).endswith(".tmp") and ".last.pt." in str(path):
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", full_after_one)
    out = tmp_path / "run"
    assert main(["train", "--epochs", "2", "--quiet", "--device", "cpu", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "disk full while writing" in err and "the previous last.pt is intact" in err
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1
