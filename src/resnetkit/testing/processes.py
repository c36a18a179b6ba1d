"""Run a command that starts processes of its own (torchrun) with a deadline that holds.

``subprocess.run(..., timeout=)`` is not enough for torchrun: its workers start in sessions
of their own (so that the agent can signal each one), so killing the launcher's process
group leaves them running, and they keep the output pipes open, so reading the output
after the kill waits for as long as they live. A hung rank (a gloo connect to a dead peer
waits 30 minutes) then hangs the caller too. Here output goes to files, and at the deadline
every descendant is found through /proc and killed, whichever session it is in.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Finished:
    returncode: int | None  # None when the deadline killed it
    stdout: str
    stderr: str

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (Linux /proc), children before grandchildren."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command name may hold spaces and parentheses; the parent pid follows the last ')'.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # it ended while we looked
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(0), []):
            found.append(child)
            queue.append(child)
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and everything below it. Children are listed first, while their parent
    still lives (an orphan is re-parented to init and could no longer be found)."""
    for target in [*descendants(pid), pid]:
        try:
            os.kill(target, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_with_deadline(cmd: list[str], *, env: dict | None = None, cwd=None, timeout: float) -> Finished:
    """Run ``cmd``; after ``timeout`` seconds kill it and all it started and return what it printed."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env, cwd=cwd, start_new_session=True)
        try:
            returncode: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(proc.pid)
            proc.wait()
            returncode = None
        out.seek(0)
        err.seek(0)
        return Finished(returncode, out.read(), err.read())
