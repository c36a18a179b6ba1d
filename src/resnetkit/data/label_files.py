"""Label files: ``--data labels.csv`` (or ``.tsv``, ``.jsonl``), one row per file with its label.

Kaggle sets, medical archives and most labelled collections arrive as a table of file names
and labels rather than class folders. A label file has a path column and a label column
(``path`` and ``label`` unless ``path_col``/``label_col`` say otherwise); paths are relative
to the file's folder. An optional ``split`` column (``train``, ``val``/``validation``,
``test``) decides the held-out part instead of ``val_split``. Whether the files are images
or audio is read from their suffixes; the files are then decoded by that kind's own reader,
so everything downstream (augmentation, input specs, export) is the same as for folders.

Multi-label files: several labels in one cell, separated by ``label_sep`` (``;``), or one 0/1
column per label (no label column; every column but the path and split columns holds 0 or 1),
make the task multi-label; ``task="multilabel"`` makes it so even when every row has one label.
A multi-label table decodes into :class:`~.multilabel.MultiLabelData`.

Every problem with a row is an error that names the file and the line: a missing column, an
empty path or label, a path listed twice, a file that is not there, an unknown split, a cell
that is not 0 or 1 in a label column, several labels in a single-label run's file.
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
from .multilabel import MultiLabelData, random_split

log = logging.getLogger(__name__)

LABEL_FILE_SUFFIXES = (".csv", ".tsv", ".jsonl")
TASKS = ("auto", "single", "multilabel")
# The cells of a 0/1 label column (JSON lines may hold numbers or booleans).
_OFF, _ON = {"0", "0.0", "false"}, {"1", "1.0", "true"}
SPLIT_COLUMN = "split"
# What a split column may say, and the split each spelling means.
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "test": "test", "testing": "test"}


class LabelFileError(ValueError):
    """A label file that cannot be read as asked; the message names the file (and line)."""


@dataclass
class LabelRow:
    path: str  # resolved against the label file's folder
    label: Optional[str]  # None when labels were not asked for (predict); multi-label: the cell as written
    split: Optional[str]  # train, val, test, or None without a split column
    line: int  # 1-based line of the row in the file (the header is line 1 of a CSV)
    labels: tuple[str, ...] = ()  # every label of the row (single-label: just ``label``)


@dataclass
class LabelTable:
    """A label file's rows, checked; ``kind`` is "image" or "audio" (from the files' suffixes)."""

    source: Path
    rows: list[LabelRow]
    kind: str
    has_split: bool
    classes: list[str] = field(default_factory=list)  # sorted label names
    multilabel: bool = False

    def samples(self, rows: Sequence[LabelRow], classes: Sequence[str]) -> list[tuple[str, int]]:
        index = {name: i for i, name in enumerate(classes)}
        return [(row.path, index[row.label]) for row in rows]

    def targets(self, rows: Sequence[LabelRow], classes: Sequence[str]) -> torch.Tensor:
        """(rows, K) 0/1: which of ``classes`` each row has."""
        index = {name: i for i, name in enumerate(classes)}
        out = torch.zeros(len(rows), len(classes))
        for r, row in enumerate(rows):
            for name in row.labels:
                if name in index:
                    out[r, index[name]] = 1.0
        return out

    def split_rows(self, split: str) -> list[LabelRow]:
        return [row for row in self.rows if row.split == split]


def is_label_file(data: object) -> bool:
    """True for a ``--data`` value that is an existing .csv, .tsv or .jsonl file."""
    if not isinstance(data, (str, os.PathLike)):
        return False
    path = Path(data).expanduser()
    return path.suffix.lower() in LABEL_FILE_SUFFIXES and path.is_file()


def read_label_file(path: str | Path, path_col: str = "path", label_col: str = "label",
                    require_labels: bool = True, label_sep: str = ";", task: str = "auto") -> LabelTable:
    """Read and check a label file; see the module's docstring for what it must hold.

    ``task``: ``auto`` (multi-label when a cell holds several labels or the labels are 0/1
    columns), ``single`` (a cell with ``label_sep`` in it is an error) or ``multilabel``.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    source = Path(path).expanduser()
    if not source.is_file():
        raise LabelFileError(f"label file {source}: no such file")
    records = _records(source)
    base = source.parent
    rows: list[LabelRow] = []
    seen: dict[str, int] = {}
    has_split = False
    columns: Optional[list[str]] = None  # 0/1 label columns, found on the first row without a label column
    for line, record in records:
        if path_col not in record:
            raise LabelFileError(f"{source}, line {line}: no column {path_col!r} (columns: "
                                 f"{', '.join(map(str, record)) or 'none'}); name the path column with --path-col")
        if require_labels and label_col not in record and columns is None:
            columns = _indicator_columns(record, path_col, source, line, label_col)
            if task == "single":
                raise LabelFileError(f"{source}: its labels are 0/1 columns ({', '.join(columns)}), a multi-label "
                                     "table; this run is single-label")
        raw_path = _text(record.get(path_col))
        if not raw_path:
            raise LabelFileError(f"{source}, line {line}: the {path_col!r} cell is empty")
        label, labels = None, ()
        if require_labels and columns is not None:
            labels = _indicator_labels(record, columns, source, line)
            label = label_sep.join(labels)
        elif require_labels:
            label = _text(record.get(label_col))
            if not label:
                raise LabelFileError(f"{source}, line {line}: {raw_path} has an empty {label_col!r} cell "
                                     "(every file needs its label)")
            labels = _split_labels(label, label_sep, task, source, line)
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
        rows.append(LabelRow(resolved, label, split, line, labels))
    if not rows:
        raise LabelFileError(f"label file {source} lists no files")
    kind = _kind_of(rows, source)
    multilabel = require_labels and (task == "multilabel" or columns is not None or any(len(r.labels) > 1 for r in rows))
    if multilabel:
        classes = list(columns) if columns is not None else sorted({name for r in rows for name in r.labels})
    else:
        classes = sorted({row.label for row in rows if row.label is not None})
    return LabelTable(source, rows, kind, has_split, classes, multilabel)


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
        for name in (row.labels if table.multilabel else [row.label] if row.label is not None else []):
            if name not in known:
                raise LabelFileError(f"{table.source}, line {row.line}: label {name!r} is not a "
                                     f"{'label' if table.multilabel else 'class'} of the model "
                                     f"(its {'labels' if table.multilabel else 'classes'}: {', '.join(classes)})")


def resolve_label_file(request: DataRequest, features=None, kind: Optional[str] = None,
                       known_classes: Optional[Sequence[str]] = None,
                       multilabel: Optional[bool] = None) -> DataSplits:
    """A label file as training and validation data (``request.for_evaluation``: the held-out part as val).

    With a split column, its train and val rows are the two splits (test rows are left to
    ``evaluate``); without one, ``val_split`` (default 0.1) holds out a share: stratified by
    class for single-label files, a seeded shuffle for multi-label ones. For evaluation: the
    test rows, else the val rows, else every row. ``features`` overrides ``request.audio``
    (evaluation decodes audio for the model's own front end). ``kind``: the kind of input the
    files must be; ``known_classes``: the classes every label must be one of (a trained
    model's); ``multilabel``: whether the model is multi-label (a file of the other task is
    refused); each checked on the one read of the file.
    """
    task = request.task
    if multilabel is not None and task == "auto":
        task = "multilabel" if multilabel else "single"
    table = read_label_file(request.data, request.path_col, request.label_col, label_sep=request.label_sep,
                            task=task)
    if kind is not None and table.kind != kind:
        raise LabelFileError(f"{table.source} lists {table.kind} files; the model takes {kind} input")
    if multilabel is False and table.multilabel:
        raise LabelFileError(f"{table.source} is a multi-label table; the model is single-label")
    if known_classes is not None:
        check_known_labels(table, known_classes)
    decode = _decode_multilabel if table.multilabel else _decode
    if request.for_evaluation:
        rows = (table.split_rows("test") or table.split_rows("val") or table.rows) if table.has_split else table.rows
        classes = (list(known_classes or table.classes) if table.multilabel
                   else sorted({row.label for row in rows}))
        return DataSplits(None, decode(table, rows, classes, request, features), classes, str(table.source))
    rows = [row for row in table.rows if row.split != "test"]
    if not rows:
        raise LabelFileError(f"{table.source}: every row is a test row; nothing to train on")
    classes = table.classes if table.multilabel else sorted({row.label for row in rows})
    if table.has_split and request.val_split is None:
        train_rows, val_rows = table.split_rows("train"), table.split_rows("val")
        if not train_rows:
            raise LabelFileError(f"{table.source}: its split column has no train rows")
        if not val_rows:
            log.warning("%s: its split column has no val rows; training without validation", table.source)
        names = (lambda r: set(r.labels)) if table.multilabel else (lambda r: {r.label})
        seen = set().union(*(names(r) for r in train_rows))
        unseen = sorted(set().union(*(names(r) for r in val_rows)) - seen) if val_rows else []
        if unseen:
            raise LabelFileError(f"{table.source}: label(s) {', '.join(unseen)} appear in val rows only "
                                 f"(first on line {next(r.line for r in val_rows if unseen[0] in names(r))})")
        if not table.multilabel:
            classes = sorted(seen)
        train = decode(table, train_rows, classes, request, features)
        val = decode(table, val_rows, classes, request, features) if val_rows else None
        return DataSplits(train, val, classes, str(table.source))
    if table.has_split:
        log.warning("%s: val_split %g given: the split column is ignored (test rows stay out of training)",
                    table.source, request.val_split)
    data = decode(table, rows, classes, request, features)
    if table.multilabel:
        train_idx, val_idx = random_split(len(data), request.val_split or 0.1, request.seed)
    else:
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


def _decode_multilabel(table: LabelTable, rows: Sequence[LabelRow], classes: Sequence[str], request: DataRequest,
                       features) -> MultiLabelData:
    """The rows decoded with each sample's row number as its label, beside the rows' 0/1 targets."""
    numbered = [LabelRow(row.path, str(i), row.split, row.line, row.labels) for i, row in enumerate(rows)]
    inner = _decode(table, numbered, [str(i) for i in range(len(rows))], request, features)
    return MultiLabelData(inner, table.targets(rows, classes), classes)


def _split_labels(cell: str, sep: str, task: str, source: Path, line: int) -> tuple[str, ...]:
    """The labels of one cell: split at ``sep`` unless the run is single-label."""
    if not sep or sep not in cell:
        return (cell,)
    if task == "single":
        raise LabelFileError(f"{source}, line {line}: {cell!r} holds several labels (separated by {sep!r}), a "
                             "multi-label row; this run is single-label")
    labels = tuple(dict.fromkeys(part.strip() for part in cell.split(sep) if part.strip()))
    if not labels:
        raise LabelFileError(f"{source}, line {line}: the label cell {cell!r} names no label")
    return labels


def _indicator_columns(record: dict, path_col: str, source: Path, line: int, label_col: str) -> list[str]:
    """The 0/1 label columns of a table without a label column: every column but the path and split."""
    columns = [str(c) for c in record if c not in (path_col, SPLIT_COLUMN)]
    if not columns or not all(_text(record[c]).lower() in _OFF | _ON for c in columns):
        raise LabelFileError(f"{source}, line {line}: no column {label_col!r} (columns: "
                             f"{', '.join(map(str, record)) or 'none'}); name the label column with --label-col, "
                             "or give one 0/1 column per label for a multi-label table")
    return columns


def _indicator_labels(record: dict, columns: Sequence[str], source: Path, line: int) -> tuple[str, ...]:
    on = []
    for column in columns:
        value = _text(record.get(column)).lower()
        if value not in _OFF | _ON:
            raise LabelFileError(f"{source}, line {line}: column {column!r} holds {record.get(column)!r}; "
                                 "a label column holds 0 or 1")
        if value in _ON:
            on.append(column)
    return tuple(on)


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
