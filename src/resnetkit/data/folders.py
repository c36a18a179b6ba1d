"""Folders of files, for every kind of input: scanning class folders and splitting them.

Images and audio share these routines, so a folder layout means the same for both:
``ROOT/<class>/<files>``, optionally ``ROOT/train/`` beside ``ROOT/val/`` (or
``validation/``, ``test/``); hidden files and folders are skipped; a class folder without a
single usable file is an error, since it would give a class that can never be predicted and
shift every later label.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import torch

from .interface import SkippedFile

log = logging.getLogger(__name__)

ON_CORRUPT = ("skip", "stop")
TRAIN_FOLDERS = ("train", "training")
# Validation first when training; the test split first when evaluating a trained model.
HELD_OUT_FOLDERS = ("val", "validation", "test")
EVALUATION_FOLDERS = ("test", "val", "validation")


def check_on_corrupt(value: str) -> str:
    if value not in ON_CORRUPT:
        raise ValueError(f"on_corrupt must be one of {', '.join(ON_CORRUPT)}; got {value!r}")
    return value


def visible(path: Path) -> bool:
    return not path.name.startswith(".")


def max_scan_files() -> int:
    """The most files one data folder's scan visits (``RESNETKIT_MAX_SCAN_FILES``; ImageNet has 1.3 million)."""
    return int(os.environ.get("RESNETKIT_MAX_SCAN_FILES", 20_000_000))


def walk_files(root: Path) -> Iterator[Path]:
    """Files under ``root``, depth first in sorted order, hidden entries skipped."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(folder) / name


def unsupported(path: Path, extensions: Sequence[str]) -> SkippedFile:
    suffix = path.suffix or "(no extension)"
    return SkippedFile(str(path), f"{path}: unsupported format {suffix!r}, ignored (expected {', '.join(extensions)})")


@dataclass
class FolderScan:
    samples: list[tuple[str, int]]  # (path, class index)
    classes: list[str]
    ignored: list[SkippedFile] = field(default_factory=list)  # files of another type, named


def scan_class_folders(
    root: str | Path,
    extensions: Sequence[str],
    error: type[Exception] = ValueError,
    *,
    what: str = "files",
    exclude: Sequence[str] = (),
) -> FolderScan:
    """The files of ``root/<class>/...`` whose suffix is in ``extensions``, and the class names.

    Raises ``error`` for a missing folder, a folder without class subfolders, or a class
    folder without a single file of the kind. Other files are listed in ``ignored``.
    """
    root = Path(root)
    allowed = ", ".join(extensions)
    if not root.is_dir():
        raise error(f"{root}: not a folder; expected a folder with one subfolder of {what} per class")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and visible(d) and d.name not in exclude)
    if not classes:
        raise error(f"{root}: no class subfolders; expected {root}/<class name>/<{what}> ({allowed}) "
                    f"or {root}/train/<class name>/...")
    for name in classes:
        _check_class_folder(root, name, error)
    scan = FolderScan([], classes)
    limit, looked = max_scan_files(), 0
    for index, name in enumerate(classes):
        found = 0
        for path in walk_files(root / name):
            looked += 1
            if looked > limit:
                raise error(f"{root}: more than {limit:,} files under its class folders (the last one looked at: "
                            f"{path}); if that is right, set RESNETKIT_MAX_SCAN_FILES higher")
            if path.suffix.lower() in extensions:
                scan.samples.append((str(path), index))
                found += 1
            else:
                scan.ignored.append(unsupported(path, extensions))
        if not found:
            raise error(f"class folder {root / name} has no {what} (expected {allowed}); remove it or add some")
    return scan


def _check_class_folder(root: Path, name: str, error: type[Exception]) -> None:
    """A class name must be text, and a class folder that is a link must not contain the data folder."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        # Shown as bytes: the name cannot even be printed as text.
        raise error(f"{root}: the class folder {os.fsencode(name)!r} has a name that is not valid UTF-8; class "
                    "names are stored and shown as text (JSON, plots, the page): rename the folder") from None
    folder = root / name
    if not folder.is_symlink():
        return
    target, data = folder.resolve(), root.resolve()
    if target == data or target in data.parents:
        raise error(f"class folder {folder} is a link to {target}, which contains the data folder itself: "
                    "reading it would walk everything there; remove the link")
    if data not in target.parents:
        log.warning("class folder %s is a link to %s, outside %s: its files are read as class %r",
                    folder, target, data, name)


def split_folders(root: Path, for_evaluation: bool = False) -> tuple[Path | None, Path | None]:
    """``(train folder, held-out folder)`` of ``root``, each None when absent."""
    def first(names: Sequence[str]) -> Path | None:
        return next((root / n for n in names if (root / n).is_dir()), None)

    return first(TRAIN_FOLDERS), first(EVALUATION_FOLDERS if for_evaluation else HELD_OUT_FOLDERS)


def stratified_split(labels: torch.Tensor, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and validation indices with the same class proportions in both (seeded)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_split must be in (0, 1), got {val_fraction}")
    g = torch.Generator().manual_seed(seed)
    train, val = [], []
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_val = int(round(len(idx) * val_fraction))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return torch.cat(train).sort().values, torch.cat(val).sort().values


def default_cache_dir() -> Path:
    """Where named data sets are downloaded: ``$RESNETKIT_CACHE/datasets`` (default ``~/.cache/resnetkit``)."""
    return Path(os.environ.get("RESNETKIT_CACHE", Path.home() / ".cache" / "resnetkit")) / "datasets"
