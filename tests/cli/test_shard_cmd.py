"""`resnetkit shard`, then train / evaluate / compare with --data shards; bad shards are one line and exit 2."""

from __future__ import annotations

import json
import shutil

import pytest

from resnetkit.cli.main import main

pytest.importorskip("webdataset")


@pytest.fixture(scope="module")
def small_shards(cifar_folder, tmp_path_factory):
    """cifar_folder's 100 val images as shards of 20: 80 train (4 shards) and 20 val (1), by --val-split."""
    out = tmp_path_factory.mktemp("cli-shards") / "shards"
    assert main(["shard", str(cifar_folder / "val"), "--out", str(out), "--shard-size", "20", "--val-split", "0.2"]) == 0
    return out


def _one_line_error(capsys, *names):
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("resnetkit ") and ": error: " in err, err
    for name in names:
        assert name in err, err
    return err


def test_shard_prints_its_summary(small_shards, cifar_folder, tmp_path, capsys):
    capsys.readouterr()
    assert main(["shard", str(cifar_folder), "--out", str(tmp_path / "s"), "--shard-size", "150", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["samples"] == {"train": 400, "val": 100} and summary["shards"] == {"train": 3, "val": 1}
    meta = json.loads((small_shards / "shards.json").read_text())
    assert [s["samples"] for s in meta["splits"]["train"]["shards"]] == [20] * 4
    assert meta["splits"]["val"]["per_class"] == [4] * 5


def test_a_label_file_with_a_split_column(cifar_folder, tmp_path, capsys):
    rows = ["path,label,split"]
    for split in ("train", "val"):
        for path in sorted((cifar_folder / split).rglob("*.jpg"))[::10]:
            rows.append(f"{path},{path.parent.name},{'val' if split == 'val' else 'train'}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    assert main(["shard", str(tmp_path / "labels.csv"), "--out", str(tmp_path / "s"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["samples"] == {"train": 40, "val": 10}


@pytest.fixture(scope="module")
def trained_run(small_shards, tmp_path_factory):
    run = tmp_path_factory.mktemp("cli-run") / "run"
    assert main(["train", "--data", str(small_shards), "--model", "resnet20", "--epochs", "1", "--batch-size", "16",
                 "--workers", "2", "--device", "cpu", "--quiet", "--out", str(run)]) == 0
    return run


@pytest.mark.slow
def test_train_then_evaluate_a_pipe_pattern(small_shards, trained_run, capsys):
    recorded = json.loads((trained_run / "metrics.json").read_text())
    assert recorded["num_samples"] == 20
    capsys.readouterr()
    pattern = f"pipe:cat {small_shards}/val-{{000000..000000}}.tar"
    assert main(["evaluate", "--checkpoint", str(trained_run), "--data", pattern, "--json", "--device", "cpu"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["num_samples"] == 20 and metrics["top1"] == pytest.approx(recorded["top1"])


@pytest.mark.slow
def test_compare_from_shards(small_shards, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--models", "resnet20,plain20", "--data", str(small_shards), "--epochs", "1",
                 "--batch-size", "16", "--workers", "1", "--device", "cpu", "--out", str(out), "--no-latency"]) == 0
    table = json.loads((out / "compare.json").read_text())
    rows = table["runs"]
    assert [r["model"] for r in rows] == ["resnet20", "plain20"]


def test_evaluate_refuses_shards_of_other_classes(trained_run, cifar_folder, tmp_path, capsys):
    run = trained_run
    other = tmp_path / "other"
    for name in ("cat", "dog"):  # dog is no class of the run
        shutil.copytree(cifar_folder / "val" / ("frog" if name == "dog" else name), other / name)
    assert main(["shard", str(other), "--out", str(tmp_path / "other-shards")]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run), "--data", str(tmp_path / "other-shards")]) == 2
    _one_line_error(capsys, "other-shards/shards.json", "'dog'", "expected shards of its classes (airplane, automobile")


def test_bad_shards_stop_train_with_one_line(small_shards, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(small_shards, bad)
    (bad / "train-000001.tar").write_bytes((bad / "train-000001.tar").read_bytes()[:5000])
    args = ["train", "--model", "resnet20", "--epochs", "1", "--batch-size", "16", "--workers", "1", "--device", "cpu",
            "--quiet"]
    assert main(args + ["--data", str(bad), "--out", str(tmp_path / "r1")]) == 2
    _one_line_error(capsys, "train-000001.tar: 5000 bytes, shards.json says")
    assert main(args + ["--data", f"pipe:cat {bad}/train-{{000000..000003}}.tar", "--out", str(tmp_path / "r2")]) == 2
    _one_line_error(capsys, "train-000001.tar", "the shard is truncated")
    assert main(args + ["--data", f"{tmp_path}/nothing-*.tar", "--out", str(tmp_path / "r3")]) == 2
    _one_line_error(capsys, "nothing-*.tar: the pattern matches no file")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["local", "pipe"])
def test_a_damaged_shard_of_one_rank_stops_every_rank(small_shards, tmp_path, how):
    """Two gloo ranks under torchrun; rank 1's shard (train-000001.tar: shard i goes to rank i % 2) is cut short.

    A local shard is caught by its size before training, and the ranks agree so that both stop with
    the message; through a pipe it is found mid-epoch by rank 1 alone, whose exit makes torchrun end
    rank 0 (waiting in the gradient all-reduce) instead of leaving it there.
    """
    import os
    import sys

    from resnetkit.testing.processes import run_with_deadline

    bad = tmp_path / "bad"
    shutil.copytree(small_shards, bad)
    (bad / "train-000001.tar").write_bytes((bad / "train-000001.tar").read_bytes()[:9000])
    data = str(bad) if how == "local" else f"pipe:cat {bad}/train-{{000000..000003}}.tar"
    port = {"local": 29653, "pipe": 29654}[how]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           "-m", "resnetkit.cli.main", "train", "--data", data, "--model", "resnet20", "--epochs", "1",
           "--batch-size", "8", "--workers", "1", "--device", "cpu", "--quiet", "--out", str(tmp_path / "run")]
    done = run_with_deadline(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=tmp_path, timeout=240)
    assert not done.timed_out, f"a rank was left waiting:\n{done.stderr[-3000:]}"
    assert done.returncode != 0
    assert "train-000001.tar" in done.stderr and "the shard is truncated" in done.stderr, done.stderr[-3000:]
    if how == "local":
        assert "another rank found a damaged shard" in done.stderr, done.stderr[-3000:]
        assert done.stderr.count("resnetkit train: error: ") == 2, done.stderr[-3000:]  # each rank: one line
        assert "shards.py" not in done.stderr, done.stderr[-3000:]  # no traceback of ours (torchrun prints its own)
