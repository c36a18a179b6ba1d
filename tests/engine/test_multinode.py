"""Two nodes on separate "hosts" (network namespaces joined by a veth pair, a directory each):
``torchrun --nnodes 2 --rdzv-backend c10d`` across them with gloo.

Nothing is shared but the wire: each host has its own copy of the data and its own ``--out``;
only node 0 writes the run directory. The run ends equal to a 1-node 2-process run of the same
seed; when node 1's worker is killed, torchrun restarts both nodes and the run continues from
the checkpoint only node 0 holds (rank 0 sends it) and still ends equal. A node started with
other settings, a checkpoint only on node 1, and a node that hangs each end the job with a
message on both nodes, never a wait without end.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from resnetkit.testing.faults import compare_runs
from resnetkit.testing.hosts import HostsUnavailable, make_hosts, remove_hosts
from resnetkit.testing.processes import run_with_deadline

RDZV_PORT = 29400  # free for sure: each namespace has ports of its own
LAUNCH_TIMEOUT_S = 240

# The worker notes its rank and restart count (so the test sees the restart). FAULT_AT=N makes
# rank 1's first attempt kill itself (FAULT=kill: a node whose training process dies) or freeze
# (FAULT=stop: a node that hangs) after N optimizer steps.
WORKER = """
import os, signal, sys
with open(os.environ["ATTEMPTS_LOG"], "a") as log:
    log.write(f"{os.environ['RANK']} {os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}\\n")
if os.environ.get("FAULT_AT") and os.environ.get("RANK") == "1" and os.environ.get("TORCHELASTIC_RESTART_COUNT") == "0":
    from torch.optim.optimizer import register_optimizer_step_post_hook
    target, count = int(os.environ["FAULT_AT"]), [0]
    fault = signal.SIGKILL if os.environ["FAULT"] == "kill" else signal.SIGSTOP
    def hook(optimizer, args, kwargs):
        count[0] += 1
        if count[0] == target:
            os.kill(os.getpid(), fault)
    register_optimizer_step_post_hook(hook)
from resnetkit.cli.main import main
sys.exit(main(sys.argv[1:]))
"""

# 400 training images over 2 ranks of 200: 6 steps of 32 per rank per epoch.
TRAIN_ARGS = ["--model", "resnet20", "--epochs", "2", "--batch-size", "32", "--device", "cpu", "--seed", "3",
              "--deterministic", "--quiet", "--auto-resume"]


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory, cifar_folder):
    """Two hosts, each with its own copy of the data under ``workdir/data``."""
    try:
        hosts = make_hosts(tmp_path_factory.mktemp("hosts"))
    except HostsUnavailable as err:
        # CI runs as root with iproute2 (.ci/run installs it) and sets RESNETKIT_REQUIRE_NETNS=1: there this fails.
        if os.environ.get("RESNETKIT_REQUIRE_NETNS") == "1":
            pytest.fail(f"cannot make network namespaces here: {err} (RESNETKIT_REQUIRE_NETNS=1)")
        pytest.skip(f"cannot make network namespaces here: {err}")
    try:
        for host in hosts:
            shutil.copytree(cifar_folder, host.workdir / "data")
            (host.workdir / "worker.py").write_text(WORKER)
        yield hosts
    finally:
        remove_hosts(hosts)


@pytest.fixture(scope="module")
def one_node_run(two_hosts) -> Path:
    """A 1-node 2-process run of the same command (in host 0's namespace: its ports are free)."""
    host = two_hosts[0]
    cmd = host.command([
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
        "--master-port", "29500", "worker.py", "train", "--data", "data", "--out", "reference", *TRAIN_ARGS])
    done = run_with_deadline(cmd, env=_env(GLOO_SOCKET_IFNAME="lo", ATTEMPTS_LOG=str(host.workdir / "reference.attempts")),
                             cwd=host.workdir, timeout=LAUNCH_TIMEOUT_S)
    assert not done.timed_out, f"the 1-node reference did not finish in {LAUNCH_TIMEOUT_S} s:\n{done.stderr[-3000:]}"
    assert done.returncode == 0, done.stderr[-3000:]
    return host.workdir / "reference"


def _env(**extra) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


def _launch_nodes(hosts, out: str, env_extra: dict | None = None, max_restarts: int = 0, node1_args=(),
                  timeout: float = LAUNCH_TIMEOUT_S):
    """The same command on both hosts, each in its own directory (``--out`` and ``--data`` relative
    to it, as on two machines); returns each launcher's Finished (returncode, stdout, stderr)."""
    run_id = f"rk-{uuid.uuid4().hex[:8]}"

    def node(host):
        cmd = host.command([
            sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
            "--rdzv-backend", "c10d", "--rdzv-endpoint", f"{hosts[0].addr}:{RDZV_PORT}", "--rdzv-id", run_id,
            # is_host: torchrun guesses whether it hosts the rendezvous store from the machine's
            # hostname, which misses an address on a second interface (the veth here).
            "--local-addr", host.addr, "--rdzv-conf", f"is_host={int(host is hosts[0])}",
            "--max-restarts", str(max_restarts),
            "worker.py", "train", "--data", "data", "--out", out, *TRAIN_ARGS,
            *(node1_args if host is hosts[1] else ())])
        env = _env(GLOO_SOCKET_IFNAME=host.ifname, ATTEMPTS_LOG=str(host.workdir / f"{out}.attempts"),
                   **(env_extra or {}))
        return run_with_deadline(cmd, env=env, cwd=host.workdir, timeout=timeout)

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(node, hosts))


def _finished(hosts, results) -> None:
    for host, done in zip(hosts, results):
        assert not done.timed_out, f"the node on {host.netns} did not finish (a hang?):\n{done.stderr[-3000:]}"
        assert done.returncode == 0, f"{host.netns}:\n{done.stderr[-3000:]}"


def _attempts(host, out: str) -> list[str]:
    return sorted((host.workdir / f"{out}.attempts").read_text().splitlines())


def _files(host) -> list[str]:
    return sorted(p.name for p in host.workdir.iterdir())


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_hosts_train_like_one_node(two_hosts, one_node_run):
    node0, node1 = two_hosts
    results = _launch_nodes(two_hosts, "run")
    _finished(two_hosts, results)
    run = node0.workdir / "run"
    assert (run / "metrics.json").is_file()
    # Node 1 writes nothing: no run directory (its --out), no default runs/ folder.
    assert "run" not in _files(node1) and "runs" not in _files(node1), _files(node1)
    # Rank 0 is node 0 (torchrun's c10d orders nodes by address); rank 1 ran on node 1.
    assert _attempts(node0, "run") == ["0 0"] and _attempts(node1, "run") == ["1 0"]
    assert json.loads((run / "data_config.json").read_text())["world_size"] == 2
    assert compare_runs(one_node_run, run) == []


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_killed_node_resumes_from_the_checkpoint_only_node_0_holds(two_hosts, one_node_run):
    node0, node1 = two_hosts
    # 6 steps per rank per epoch: rank 1 dies at step 9, mid-epoch 2, after node 0 wrote epoch 1's last.pt.
    results = _launch_nodes(two_hosts, "resumed", env_extra={"FAULT": "kill", "FAULT_AT": "9"}, max_restarts=1)
    _finished(two_hosts, results)
    # Node 1's worker ran twice (its torchrun counts the restart); node 0's was restarted with it.
    # Node 0's torchrun counts that restart or not depending on which it sees first: the new
    # rendezvous round (a membership change, not counted) or its own worker failing on the broken
    # connection (a failure, counted). Both are right; the run must end the same either way.
    assert _attempts(node1, "resumed") == ["1 0", "1 1"], results[1].stderr[-3000:]
    node0_attempts = _attempts(node0, "resumed")
    assert node0_attempts in (["0 0", "0 0"], ["0 0", "0 1"]), results[0].stderr[-3000:]
    assert "resumed" not in _files(node1), _files(node1)
    # Node 1 had no checkpoint: rank 0 sent its own.
    assert "rank 1: resuming from rank 0's checkpoint" in results[1].stderr, results[1].stderr[-3000:]
    run = node0.workdir / "resumed"
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 2
    assert compare_runs(one_node_run, run) == []


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_node_with_other_settings_is_told_so(two_hosts):
    results = _launch_nodes(two_hosts, "mismatch", node1_args=["--epochs", "3"], timeout=150)
    for host, done in zip(two_hosts, results):
        assert not done.timed_out, f"the node on {host.netns} waited instead of stopping:\n{done.stderr[-3000:]}"
        assert done.returncode != 0
        # Both ranks say it (so whoever reads either node's log sees it), before any training.
        assert "different settings than rank 0" in done.stderr, done.stderr[-3000:]
        assert "epochs=3 (rank 0 has 2)" in done.stderr, done.stderr[-3000:]
    assert "mismatch" not in _files(two_hosts[1])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_node_that_hangs_ends_the_run_within_the_timeout(two_hosts):
    results = _launch_nodes(two_hosts, "hung", env_extra={"FAULT": "stop", "FAULT_AT": "3",
                                                          "RESNETKIT_DIST_TIMEOUT_S": "15"}, timeout=150)
    node0, node1 = results
    assert not node0.timed_out, f"rank 0 waited for the frozen rank 1 past the timeout:\n{node0.stderr[-3000:]}"
    assert node0.returncode != 0
    assert "rank 0 of 2 on" in node0.stderr and "RESNETKIT_DIST_TIMEOUT_S=15 s" in node0.stderr, node0.stderr[-3000:]
    # Node 1's torchrun ends too: the rendezvous store it polls lived in node 0's torchrun.
    assert not node1.timed_out and node1.returncode != 0, node1.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_checkpoint_only_on_node_1_is_not_overwritten(two_hosts, one_node_run):
    # Node 1 holds a run's last.pt where node 0 has nothing: the nodes were started in the other
    # order than the one that wrote it. Starting over would lose that run; every rank says so.
    node0, node1 = two_hosts
    (node1.workdir / "elsewhere").mkdir()
    shutil.copy(one_node_run / "last.pt", node1.workdir / "elsewhere" / "last.pt")
    results = _launch_nodes(two_hosts, "elsewhere", timeout=150)
    for host, done in zip(two_hosts, results):
        assert not done.timed_out, f"the node on {host.netns} waited instead of stopping:\n{done.stderr[-3000:]}"
        assert done.returncode != 0
        assert "rank 0 on" in done.stderr and "has no checkpoint to resume, but rank 1 on" in done.stderr, \
            done.stderr[-3000:]
    assert not (node0.workdir / "elsewhere").exists()
    assert sorted(p.name for p in (node1.workdir / "elsewhere").iterdir()) == ["last.pt"]
