"""The deadline of run_with_deadline holds even when a grandchild moved to a session of its own
and keeps the output open, as torchrun's workers do (a hang there once held CI for 90 minutes)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from resnetkit.testing.processes import descendants, kill_tree, run_with_deadline

# The child starts a grandchild in a new session that inherits stdout and sleeps; then the
# child sleeps too. Killing only the child's process group would leave the grandchild.
TREE = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; print('grandchild up', flush=True); time.sleep(600)"],
                 start_new_session=True)
print("child up", flush=True)
time.sleep(600)
"""


def test_a_hung_tree_is_killed_at_the_deadline():
    started = time.monotonic()
    done = run_with_deadline([sys.executable, "-c", TREE], timeout=3)
    assert time.monotonic() - started < 30
    assert done.timed_out and done.returncode is None
    assert "child up" in done.stdout and "grandchild up" in done.stdout
    # Nothing of the tree is left: no process whose command line holds the grandchild's sleep.
    time.sleep(0.5)
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
            except OSError:
                continue
            assert b"grandchild up" not in cmdline, f"process {pid} survived the deadline"


def test_a_finished_command_returns_its_code_and_output():
    done = run_with_deadline([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"],
                             timeout=60)
    assert (done.returncode, done.stdout, done.stderr, done.timed_out) == (3, "out\n", "err\n", False)


def test_descendants_finds_children_and_grandchildren():
    child = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "child up\n"
        below = descendants(child.pid)
        assert len(below) == 1 and os.getpid() not in below and child.pid not in below
        assert descendants(os.getpid())[0] == child.pid  # children come before grandchildren
    finally:
        kill_tree(child.pid)
        child.wait()
