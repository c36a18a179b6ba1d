"""Label files: ``--data labels.csv`` (or ``.tsv``, ``.jsonl``), one row per file with its label.

Kaggle sets, medical archives and most labelled collections arrive as a table of file names
and labels rather than class folders. A label file has a path column and a label column
(``path`` and ``label`` unless ``path_col``/``label_col`` say otherwise); paths are relative
to the file's folder. An optional ``split`` column (``train``, ``val``/``validation``,
``test``) decides the held-out part instead of ``val_split``. Whether the files are images
or audio is read from their suffixes; the files are then decoded by that kind's own reader,
so everything downstream (augmentation, input specs, export) is the same as for folders.

Every problem with a row is an error that names the file and the line: a missing column, an
empty path or label, a path listed twice, a file that is not there, an unknown split.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

import logging

import torch

from .audio_io import AUDIO_EXTENSIONS
from .folders import stratified_split
from .image_io import IMAGE_EXTENSIONS
from .interface import DataRequest, DataSplits, LabelledData

log = logging.getLogger(__name__)

LABEL_FILE_SUFFIXES = (".csv", ".tsv", ".jsonl")
SPLIT_COLUMN = "split"
# What a split column may say, and the split each spelling means.
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "test": "test", "testing": "test"}


class LabelFileError(ValueError):
    """A label file that cannot be read as asked; the message names the file (and line)."""


@dataclass
class LabelRow:
    path: str  # resolved against the label file's folder
    label: Optional[str]  # None when labels were not asked for (predict)
    split: Optional[str]  # train, val, test, or None without a split column
    line: int  # 1-based line of the row in the file (the header is line 1 of a CSV)


@dataclass
class LabelTable:
    """A label file's rows, checked; ``kind`` is "image" or "audio" (from the files' suffixes)."""

    source: Path
    rows: list[LabelRow]
    kind: str
    has_split: bool
    classes: list[str] = field(default_factory=list)  # sorted label names

    def samples(self, rows: Sequence[LabelRow], classes: Sequence[str]) -> list[tuple[str, int]]:
        index = {name: i for i, name in enumerate(classes)}
        return [(row.path, index[row.label]) for row in rows]

    def split_rows(self, split: str) -> list[LabelRow]:
        return [row for row in self.rows if row.split == split]


def is_label_file(data: object) -> bool:
    """True for a ``--data`` value that is an existing .csv, .tsv or .jsonl file."""
    if not isinstance(data, (str, os.PathLike)):
        return False
    path = Path(data).expanduser()
    return path.suffix.lower() in LABEL_FILE_SUFFIXES and path.is_file()


def read_label_file(path: str | Path, path_col: str = "path", label_col: str = "label",
                    require_labels: bool = True) -> LabelTable:
    """Read and check a label file; see the module's docstring for what it must hold."""
    source = Path(path).expanduser()
    if not source.is_file():
        raise LabelFileError(f"label file {source}: no such file")
    records = _records(source)
    base = source.parent
    rows: list[LabelRow] = []
    seen: dict[str, int] = {}
    has_split = False
    for line, record in records:
        if path_col not in record:
            raise LabelFileError(f"{source}, line {line}: no column {path_col!r} (columns: "
                                 f"{', '.join(map(str, record)) or 'none'}); name the path column with --path-col")
        if require_labels and label_col not in record:
            raise LabelFileError(f"{source}, line {line}: no column {label_col!r} (columns: "
                                 f"{', '.join(map(str, record)) or 'none'}); name the label column with --label-col")
        raw_path = _text(record.get(path_col))
        if not raw_path:
            raise LabelFileError(f"{source}, line {line}: the {path_col!r} cell is empty")
        label = _text(record.get(label_col)) if require_labels else None
        if require_labels and not label:
            raise LabelFileError(f"{source}, line {line}: {raw_path} has an empty {label_col!r} cell "
                                 "(every file needs its label)")
        split = None
        if SPLIT_COLUMN in record:
            has_split = True
            value = _text(record.get(SPLIT_COLUMN)).lower()
            if value not in SPLIT_NAMES:
                raise LabelFileError(f"{source}, line {line}: split {record.get(SPLIT_COLUMN)!r} is not one of "
                                     "train, val (validation), test")
            split = SPLIT_NAMES[value]
        # Absolute and normalized, links kept: results name the file as the table lists it.
        resolved = os.path.normpath(os.path.join(os.path.abspath(base), raw_path))
        if resolved in seen:
            raise LabelFileError(f"{source}, line {line}: {raw_path} is listed twice (first on line {seen[resolved]})")
        seen[resolved] = line
        if not os.path.isfile(resolved):
            raise LabelFileError(f"{source}, line {line}: {raw_path} does not exist (looked for {resolved}; "
                                 "paths are relative to the label file's folder)")
        rows.append(LabelRow(resolved, label, split, line))
    if not rows:
        raise LabelFileError(f"label file {source} lists no files")
    kind = _kind_of(rows, source)
    classes = sorted({row.label for row in rows if row.label is not None})
    return LabelTable(source, rows, kind, has_split, classes)


def label_file_kind(path: str | Path, path_col: str = "path") -> str:
    """"image" or "audio": what the files a label file lists are, from the suffixes of its first rows.

    A file whose first rows name no path (no such column) is "image", the kind that takes what
    no other claims; reading it then says what is missing, with the line.
    """
    source = Path(path).expanduser()
    rows = [LabelRow(p, None, None, line) for line, p in _paths(source, path_col)]
    return _kind_of(rows, source) if rows else "image"


def check_known_labels(table: LabelTable, classes: Sequence[str]) -> None:
    """A label the trained model does not know is named with its line."""
    known = set(classes)
    for row in table.rows:
        if row.label is not None and row.label not in known:
            raise LabelFileError(f"{table.source}, line {row.line}: label {row.label!r} is not a class of the model "
                                 f"(its classes: {', '.join(classes)})")


def resolve_label_file(request: DataRequest, features=None, kind: Optional[str] = None,
                       known_classes: Optional[Sequence[str]] = None) -> DataSplits:
    """A label file as training and validation data (``request.for_evaluation``: the held-out part as val).

    With a split column, its train and val rows are the two splits (test rows are left to
    ``evaluate``); without one, ``val_split`` (default 0.1) holds out a stratified share.
    For evaluation: the test rows, else the val rows, else every row. ``features`` overrides
    ``request.audio`` (evaluation decodes audio for the model's own front end). ``kind``: the
    kind of input the files must be; ``known_classes``: the classes every label must be one of
    (a trained model's), each checked on the one read of the file.
    """
    table = read_label_file(request.data, request.path_col, request.label_col)
    if kind is not None and table.kind != kind:
        raise LabelFileError(f"{table.source} lists {table.kind} files; the model takes {kind} input")
    if known_classes is not None:
        check_known_labels(table, known_classes)
    if request.for_evaluation:
        rows = (table.split_rows("test") or table.split_rows("val") or table.rows) if table.has_split else table.rows
        classes = sorted({row.label for row in rows})
        data = _decode(table, rows, classes, request, features)
        return DataSplits(None, data, classes, str(table.source))
    rows = [row for row in table.rows if row.split != "test"]
    if not rows:
        raise LabelFileError(f"{table.source}: every row is a test row; nothing to train on")
    classes = sorted({row.label for row in rows})
    if table.has_split and request.val_split is None:
        train_rows, val_rows = table.split_rows("train"), table.split_rows("val")
        if not train_rows:
            raise LabelFileError(f"{table.source}: its split column has no train rows")
        if not val_rows:
            log.warning("%s: its split column has no val rows; training without validation", table.source)
        unseen = sorted({row.label for row in val_rows} - {row.label for row in train_rows})
        if unseen:
            raise LabelFileError(f"{table.source}: label(s) {', '.join(unseen)} appear in val rows only "
                                 f"(first on line {next(r.line for r in val_rows if r.label == unseen[0])})")
        classes = sorted({row.label for row in train_rows})
        train = _decode(table, train_rows, classes, request, features)
        val = _decode(table, val_rows, classes, request, features) if val_rows else None
        return DataSplits(train, val, classes, str(table.source))
    if table.has_split:
        log.warning("%s: val_split %g given: the split column is ignored (test rows stay out of training)",
                    table.source, request.val_split)
    data = _decode(table, rows, classes, request, features)
    train_idx, val_idx = stratified_split(_labels_of(data), request.val_split or 0.1, request.seed)
    return DataSplits(data.subset(train_idx), data.subset(val_idx), classes, str(table.source))


def _labels_of(data: LabelledData) -> torch.Tensor:
    return torch.as_tensor(data.labels, dtype=torch.long)


def _decode(table: LabelTable, rows: Sequence[LabelRow], classes: Sequence[str], request: DataRequest,
            features) -> LabelledData:
    """The rows' files read by their kind's own decoder (the same as for class folders)."""
    samples = table.samples(rows, classes)
    source = str(table.source)
    if table.kind == "audio":
        from .audio_data import decode_audio_files
        from .audio_features import FeatureConfig

        return decode_audio_files(samples, list(classes), features or request.audio or FeatureConfig(),
                                  on_corrupt=request.on_corrupt, source=source)
    from .images import ImageFiles, _fits_in_memory, decode_into_memory

    chans = request.in_chans or 3
    if _fits_in_memory(samples, chans):
        return decode_into_memory(samples, list(classes), chans, request.on_corrupt, source=source)
    return ImageFiles(samples, list(classes), chans, None, request.on_corrupt, source=source)


# -- reading ----------------------------------------------------------------------------------------


def _records(source: Path) -> Iterator[tuple[int, dict]]:
    """(line, row as a dict) for every row of a CSV/TSV (header on line 1) or JSON-lines file, as read."""
    try:
        text = source.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise LabelFileError(f"label file {source} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    if source.suffix.lower() == ".jsonl":
        for line, raw in enumerate(text.splitlines(), 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as err:
                raise LabelFileError(f"{source}, line {line}: not a JSON object ({err.msg})") from None
            if not isinstance(record, dict):
                raise LabelFileError(f"{source}, line {line}: expected a JSON object, got {type(record).__name__}")
            yield line, record
        return
    delimiter = "\t" if source.suffix.lower() == ".tsv" else ","
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise LabelFileError(f"label file {source} is empty (expected a header line, e.g. path{delimiter}label)") from None
    header = [h.strip() for h in header]
    try:
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                raise LabelFileError(f"{source}, line {line}: {len(cells)} cell(s) where the header has "
                                     f"{len(header)} ({', '.join(header)})")
            yield line, dict(zip(header, cells))
    except csv.Error as err:
        raise LabelFileError(f"{source}, line {reader.line_num}: {err}") from None


def _paths(source: Path, path_col: str, rows: int = 200) -> list[tuple[int, str]]:
    """(line, path) of the first ``rows`` rows that name a file in ``path_col``."""
    found = []
    for line, record in itertools.islice(_records(source), rows):
        value = _text(record.get(path_col))
        if value:
            found.append((line, str(source.parent / value)))
    return found


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def _kind_of(rows: Sequence[LabelRow], source: Path) -> str:
    images = sum(Path(r.path).suffix.lower() in IMAGE_EXTENSIONS for r in rows)
    audio = sum(Path(r.path).suffix.lower() in AUDIO_EXTENSIONS for r in rows)
    if not images and not audio:
        raise LabelFileError(f"{source}: its files are neither images ({', '.join(IMAGE_EXTENSIONS)}) nor audio "
                             f"({', '.join(AUDIO_EXTENSIONS)})")
    kind = "audio" if audio > images else "image"
    allowed = AUDIO_EXTENSIONS if kind == "audio" else IMAGE_EXTENSIONS
    for row in rows:
        if Path(row.path).suffix.lower() not in allowed:
            raise LabelFileError(f"{source}, line {row.line}: {row.path} is not an {kind} file like the others "
                                 f"(expected {', '.join(allowed)})")
    return kind
