"""``resnetkit shard``: a folder or label file written as WebDataset tar shards (read back by :mod:`.shards`).

Every sample is the original file's bytes, unchanged (``00000042.jpg``), its class index
(``00000042.cls``) and the path it came from (``00000042.path.txt``); keys count the samples
of a split in the order written. Training samples are shuffled (seeded) before they are
written, so that a shard holds every class and streaming needs only a small shuffle buffer;
held-out samples keep their order. Each file is decoded once on the way in: an unreadable
file is left out and named (``on_corrupt="skip"``) or stops the run (``"stop"``), so the
shards hold readable samples only.

Writes are atomic: a shard is written to a hidden temporary file and renamed into place, and
``shards.json`` (the kind, the classes, every shard's sample count and size) comes last, so
a killed writer leaves no half shard under its final name and no metadata naming one.
"""

from __future__ import annotations

import io
import itertools
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

import torch

from .audio_io import AUDIO_EXTENSIONS, AudioFormatError, load_audio
from .audio_layouts import _fsdd_held_out, check_fsdd_split, detect_layout, is_audio_source, scan_fsdd
from .folders import HELD_OUT_FOLDERS, check_on_corrupt, scan_class_folders, stratified_split
from .image_io import IMAGE_EXTENSIONS, ImageDataError, read_image
from .interface import SHOW_PATHS, SkippedFile
from .label_files import is_label_file, read_label_file
from .shards import FORMAT, METADATA, VERSION, ShardError
from ..runtime.files import atomic_write, remove_stale_temporaries, save_json

log = logging.getLogger(__name__)

# The shards' members carry this time, so that the same input gives the same bytes.
MTIME = 0


@dataclass
class ShardSource:
    """What to write: the kind, the classes, and (path, class index) samples by split."""

    kind: str
    classes: list[str]
    splits: dict[str, list[tuple[str, int]]]
    root: Path  # paths are stored relative to it
    notes: list[str] = field(default_factory=list)


@dataclass
class ShardSummary:
    out: Path
    kind: str
    classes: list[str]
    counts: dict[str, int]  # samples written per split
    shards: dict[str, int]  # shards written per split
    skipped: list[SkippedFile]

    def __str__(self) -> str:
        parts = ", ".join(f"{self.counts[s]} {s} samples in {self.shards[s]} shard(s)" for s in self.counts)
        left = f"; {len(self.skipped)} unreadable file(s) left out" if self.skipped else ""
        return f"{self.kind} shards of {len(self.classes)} classes: {parts}{left}; written to {self.out}"


def _split(samples: list[tuple[str, int]], val_split: float, seed: int) -> dict[str, list[tuple[str, int]]]:
    labels = torch.tensor([label for _, label in samples], dtype=torch.long)
    train_idx, val_idx = stratified_split(labels, val_split, seed)
    return {"train": [samples[i] for i in train_idx.tolist()], "val": [samples[i] for i in val_idx.tolist()]}


def _class_folders(root: Path, extensions: Sequence[str], what: str, val_split: Optional[float],
                   seed: int) -> tuple[list[str], dict[str, list[tuple[str, int]]]]:
    """``root/<class>/...`` or ``root/train`` beside ``root/val`` (or validation, test)."""
    train_dir = next((root / n for n in ("train", "training") if (root / n).is_dir()), None)
    held_dir = next((root / n for n in HELD_OUT_FOLDERS if (root / n).is_dir()), None)
    if train_dir is not None and held_dir is not None and val_split is None:
        train = scan_class_folders(train_dir, extensions, ShardError, what=what)
        held = scan_class_folders(held_dir, extensions, ShardError, what=what)
        unknown = sorted(set(held.classes) - set(train.classes))
        if unknown:
            raise ShardError(f"{held_dir}: class(es) {', '.join(unknown)} have no training folder in {train_dir}")
        index = {c: i for i, c in enumerate(train.classes)}
        val = [(p, index[held.classes[label]]) for p, label in held.samples]
        return train.classes, {"train": train.samples, "val": val}
    scan = scan_class_folders(train_dir or root, extensions, ShardError, what=what)
    if val_split:
        return scan.classes, _split(scan.samples, val_split, seed)
    return scan.classes, {"train": scan.samples}


def shard_source(data: str | Path, *, val_split: Optional[float] = None, seed: int = 0, path_col: str = "path",
                 label_col: str = "label", fsdd_split: str = "official") -> ShardSource:
    """The samples of a class folder, a label file or an FSDD folder, split as training would split them.

    The source's own split wins (a label file's split column, train/ and val/ folders, FSDD's
    test indices); ``val_split`` carves a stratified held-out share where it has none (and
    replaces a label file's split column, as training does). Without either, every sample is
    a training sample.
    """
    root = Path(data).expanduser()
    if is_label_file(root):
        table = read_label_file(root, path_col, label_col)
        if table.multilabel:
            raise ValueError(f"{root} is a multi-label table (several labels per row); shards hold one class per "
                             "sample: train from the label file itself")
        classes = table.classes
        index = {c: i for i, c in enumerate(classes)}
        samples = {split: [(r.path, index[r.label]) for r in table.split_rows(split)] for split in ("train", "val", "test")}
        if not table.has_split or val_split is not None:
            rows = [(r.path, index[r.label]) for r in table.rows if r.split != "test"]
            samples = {**(_split(rows, val_split, seed) if val_split else {"train": rows}), "test": samples["test"]}
        return ShardSource(table.kind, classes, {k: v for k, v in samples.items() if v}, root.parent)
    if not root.is_dir():
        raise ShardError(f"{data}: not a folder or a label file (.csv, .tsv, .jsonl); `resnetkit shard` writes "
                         "the files of one")
    if is_audio_source(root):
        layout, folder = detect_layout(root)
        if layout == "fsdd":
            ignored: list[SkippedFile] = []
            entries = scan_fsdd(folder, ignored)
            held = _fsdd_held_out(entries, check_fsdd_split(fsdd_split), folder)
            digits = sorted({e.digit for e in entries})
            label = {d: i for i, d in enumerate(digits)}
            splits = {"train": [(e.path, label[e.digit]) for e, h in zip(entries, held) if not h],
                      "val": [(e.path, label[e.digit]) for e, h in zip(entries, held) if h]}
            return ShardSource("audio", [str(d) for d in digits], splits, folder,
                               [f"FSDD layout, held out: fsdd_split {fsdd_split}"])
        if layout == "speech-commands":
            raise ShardError(f"{root}: Speech Commands' list files (and its 12-class protocol) are not sharded; give a "
                             "label file with a split column instead")
        classes, splits = _class_folders(root, AUDIO_EXTENSIONS, "audio files", val_split, seed)
        return ShardSource("audio", classes, splits, root)
    classes, splits = _class_folders(root, IMAGE_EXTENSIONS, "image files", val_split, seed)
    return ShardSource("image", classes, splits, root)


def _write_split(out: Path, split: str, items: Iterator[tuple[int, str, bytes, int, str]], shard_size: int) -> list[dict]:
    """``items`` (key, extension, bytes, label, origin) as ``split-000000.tar``, ... of ``shard_size`` samples each.

    Each shard goes through :func:`atomic_write` (a hidden temporary file, fsync, rename):
    a shard under its final name is always complete.
    """
    import webdataset as wds

    written: list[dict] = []
    for index in itertools.count():
        first = next(items, None)
        if first is None:
            return written
        chunk = itertools.chain([first], itertools.islice(items, shard_size - 1))
        count = 0

        def write(tmp: str) -> None:
            nonlocal count
            # The tar is closed before its file, also when a sample stops the writer (the temporary goes).
            with open(tmp, "wb") as fh, wds.TarWriter(fh, encoder=False, mtime=MTIME) as tar:
                for key, ext, data, label, origin in chunk:
                    tar.write({"__key__": f"{key:08d}", ext: data, "cls": str(label).encode("ascii"),
                               "path.txt": origin.encode("utf-8")})
                    count += 1

        name = f"{split}-{index:06d}.tar"
        atomic_write(out / name, write)
        written.append({"name": name, "samples": count, "bytes": (out / name).stat().st_size, "first_key": first[0]})
    return written


def _check_out(out: Path, overwrite: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    old = sorted(p.name for p in out.iterdir() if p.name == METADATA or (p.suffix == ".tar" and "-" in p.name))
    if old and not overwrite:
        raise ShardError(f"{out} already holds shards ({', '.join(old[:3])}{' ...' if len(old) > 3 else ''}); "
                         "give another --out or --overwrite")
    for name in old:
        (out / name).unlink()
    remove_stale_temporaries(out)  # what a killed writer left


def write_shards(data: str | Path, out: str | Path, *, shard_size: int = 1000, val_split: Optional[float] = None,
                 seed: int = 0, path_col: str = "path", label_col: str = "label", fsdd_split: str = "official",
                 on_corrupt: str = "skip", overwrite: bool = False) -> ShardSummary:
    """Write ``data`` (a class folder, a label file, an FSDD folder) as shards into ``out``; see the module's docstring."""
    if not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"shard_size must be a whole number >= 1, got {shard_size!r}")
    check_on_corrupt(on_corrupt)
    source = shard_source(data, val_split=val_split, seed=seed, path_col=path_col, label_col=label_col,
                          fsdd_split=fsdd_split)
    out = Path(out).expanduser()
    _check_out(out, overwrite)
    meta_splits: dict[str, dict] = {}
    skipped: list[SkippedFile] = []
    sides: Counter = Counter()
    for split, samples in source.splits.items():
        if split == "train":
            order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(seed)).tolist()
            samples = [samples[i] for i in order]
        per_class = [0] * len(source.classes)

        def items() -> Iterator[tuple[int, str, bytes, int, str]]:
            key = 0
            for path, label in samples:
                data_bytes = _readable(path, source.kind, on_corrupt, skipped, sides)
                if data_bytes is not None:
                    per_class[label] += 1
                    yield key, Path(path).suffix.lower().lstrip("."), data_bytes, label, os.path.relpath(path, source.root)
                    key += 1

        written = _write_split(out, split, items(), shard_size)
        if written:
            meta_splits[split] = {"samples": sum(w["samples"] for w in written), "per_class": per_class,
                                  "shards": written}
    if not meta_splits:
        raise ShardError(f"{data}: no readable {source.kind} files among {sum(map(len, source.splits.values()))}")
    if skipped:
        shown = "; ".join(s.reason for s in skipped[:SHOW_PATHS])
        more = f" and {len(skipped) - SHOW_PATHS} more" if len(skipped) > SHOW_PATHS else ""
        log.warning("left out %d unreadable file(s): %s%s", len(skipped), shown, more)
    meta = {"format": FORMAT, "version": VERSION, "kind": source.kind, "classes": source.classes,
            "source": str(Path(data).expanduser().resolve()), "splits": meta_splits, "skipped": len(skipped)}
    if source.kind == "image" and sides:
        (h, w), _ = sides.most_common(1)[0]
        meta["image_size"] = [h, w]
        meta["max_side"] = max(max(hw) for hw in sides)
    save_json(meta, out / METADATA)
    return ShardSummary(out, source.kind, source.classes, {s: m["samples"] for s, m in meta_splits.items()},
                        {s: len(m["shards"]) for s, m in meta_splits.items()}, skipped)


def _readable(path: str, kind: str, on_corrupt: str, skipped: list[SkippedFile], sides: Counter) -> Optional[bytes]:
    """The file's bytes when it decodes (images: its size counted in ``sides``), else None (or raise under stop)."""
    try:
        data = Path(path).read_bytes()
        if kind == "image":
            image = read_image(data, 3, name=path)
            sides[tuple(image.shape[-2:])] += 1
        else:
            load_audio(data, _file_rate(data), name=path)
    except (ImageDataError, AudioFormatError, OSError) as err:
        if on_corrupt == "stop":
            raise ShardError(f"{err} (stopping: --on-corrupt stop)") from None
        skipped.append(SkippedFile(path, str(err)))
        return None
    return data


def _file_rate(data: bytes) -> int:
    """The sample rate a file's header gives (decoded at it: nothing is resampled to check a file)."""
    import soundfile

    try:
        return int(soundfile.info(io.BytesIO(data)).samplerate) or 16000
    except Exception:  # noqa: BLE001 - load_audio names what is wrong with the file
        return 16000
