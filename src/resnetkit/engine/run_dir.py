"""The run directory: claimed by one run at a time, never overwritten by accident.

A run holds an exclusive lock on ``RUN/.lock`` (``fcntl.flock``) for its whole life; the
kernel releases it when the process ends, killed or not, so a stale lock never blocks a
resume. Default names are made unique by creating the folder (``mkdir`` fails if it
exists), so runs started in the same second get ``-2``, ``-3``, ... instead of sharing one.
A folder that already holds a run (finished or not) is refused unless the user asks to
resume it or to overwrite it.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Optional

from ..runtime.files import remove_stale_temporaries
from .tracking import EVENT_FILES, TRACKING_FILE

try:  # POSIX; on other systems runs are not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

LOCK_NAME = ".lock"
# The files a run writes; --overwrite removes these and nothing else.
RUN_FILES = ("config.yaml", "classes.json", "data_config.json", "metrics.csv", "metrics.json", "last.pt", "best.pt",
             "best.safetensors", "curves.png", "confusion.png", "examples.png", "spectrograms.png", TRACKING_FILE)


class RunDirectoryError(ValueError):
    """A run directory that cannot be used as asked; the message says why and what to do."""


class RunLock:
    """An exclusive claim on a run directory, held until :meth:`release` or the end of the process."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK_NAME
        self._fh = None

    def acquire(self) -> "RunLock":
        if fcntl is None:  # pragma: no cover
            return self
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise RunDirectoryError(
                f"{self.path.parent} is in use by a run that is still going ({holder}); "
                "wait for it, or train into another folder (--name/--out)"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        # The file stays: unlinking a lock file lets two processes lock two different inodes.
        if self._fh is not None:
            fh, self._fh = self._fh, None
            fh.close()  # closing releases the flock

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def holds_run(folder: Path) -> bool:
    return any((folder / name).exists() for name in ("last.pt", "best.pt", "metrics.json", "config.yaml"))


def is_finished(folder: Path) -> bool:
    return (folder / "metrics.json").is_file()


def default_run_name(model: str, data: str) -> str:
    return f"{model}-{Path(data).name or data}-{time.strftime('%Y%m%d-%H%M%S')}"


def create_unique(parent: Path, name: str) -> Path:
    """``parent/name``, or ``name-2``, ``name-3``, ...: the first that this call creates itself."""
    parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 10_000):
        folder = parent / (name if attempt == 1 else f"{name}-{attempt}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise RunDirectoryError(f"{parent}: could not create a new folder named {name}-N")


def claim(folder: Path, *, resume: bool = False, overwrite: bool = False, created: bool = False) -> RunLock:
    """Lock ``folder`` for a run, after checking that it may be used as asked.

    ``resume``: the folder must hold the run to continue. Otherwise a folder holding a run is
    refused (a finished one: "--overwrite replaces it"; an unfinished one: "--resume
    continues it") unless ``overwrite``, which removes that run's files (only those).
    ``created``: the caller has just created the folder itself (a unique default name).
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PermissionError(f"cannot write the run directory {folder}: {err.strerror or err}; "
                              "choose another folder with --out") from None
    lock = RunLock(folder).acquire()
    try:
        if not resume and not created and holds_run(folder):
            if not overwrite:
                if is_finished(folder):
                    raise RunDirectoryError(
                        f"{folder} holds a finished run; it is not overwritten: choose another --name/--out, "
                        "or pass --overwrite to replace it"
                    )
                raise RunDirectoryError(
                    f"{folder} holds an unfinished run: continue it with `resnetkit train --resume {folder}`, "
                    "or pass --overwrite to start over"
                )
            for name in RUN_FILES:
                (folder / name).unlink(missing_ok=True)
            for events in folder.glob(EVENT_FILES):  # TensorBoard's: the new run's curves start clean
                events.unlink(missing_ok=True)
        removed = remove_stale_temporaries(folder)
        if removed:
            import logging

            logging.getLogger(__name__).info("%s: removed %d temporary file(s) a killed run left behind", folder,
                                             len(removed))
    except BaseException:
        lock.release()
        raise
    return lock


def resolve_run_dir(out: Optional[str], name: Optional[str], model: str, data: str) -> tuple[Path, bool]:
    """The folder a new run writes to, and whether it was created just now under a unique name."""
    if out:
        return Path(out), False
    if name:
        return Path("runs") / name, False
    return create_unique(Path("runs"), default_run_name(model, data)), True
