"""``--data`` to data: which kind of input a name or folder is, and the held-out data of a trained model.

Each kind of input registers a :class:`DataKind`; the first kind that claims a ``--data``
value resolves it, and images take whatever no other kind claims. A trained model's
evaluation data is read by the kind its input spec names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from .audio_layouts import is_audio_source, load_audio_eval_data, resolve_audio_data
from .images import load_image_eval_data, resolve_image_request
from .interface import DataRequest, DataSplits, InputSpec, LabelledData
from .label_files import is_label_file, label_file_kind, resolve_label_file
from .shards import is_shard_source, load_shard_eval_data, resolve_shards, shard_kind


@dataclass(frozen=True)
class DataKind:
    """How one kind of input is found and read."""

    name: str  # the InputSpec kind it produces
    claims: Callable[[str], bool]  # is this --data value of this kind?
    resolve: Callable[[DataRequest], DataSplits]
    load_eval: Callable[[InputSpec, str, str], LabelledData]  # (spec, path, on_corrupt) -> held-out data
    default_recipe: Optional[str] = None  # the packaged recipe `resnetkit train --data X` uses when given none


_KINDS: list[DataKind] = [
    DataKind("audio", is_audio_source, resolve_audio_data, load_audio_eval_data, default_recipe="audio_default"),
    DataKind("image", lambda data: True, resolve_image_request, load_image_eval_data),
]


def register_data_kind(kind: DataKind) -> None:
    """Add a kind of input; it is asked before the built-in ones (images claim everything)."""
    _KINDS[:] = [k for k in _KINDS if k.name != kind.name]
    _KINDS.insert(0, kind)


def unregister_data_kind(name: str) -> None:
    """Remove a kind added with :func:`register_data_kind` (a plug-in unloaded, a test done with it)."""
    if name in ("audio", "image"):
        raise ValueError(f"{name!r} is a built-in kind of input and cannot be removed")
    _KINDS[:] = [k for k in _KINDS if k.name != name]


def data_kind(name: str) -> DataKind:
    for kind in _KINDS:
        if kind.name == name:
            return kind
    raise ValueError(f"no data kind {name!r}; known: {', '.join(k.name for k in _KINDS)}")


def kind_of(data: str, path_col: str = "path") -> DataKind:
    """The kind of input a ``--data`` value is (the first registered kind that claims it; a label
    file is of the kind of the files it lists in ``path_col``, shards of the kind their shards.json names)."""
    if is_shard_source(data):
        return data_kind(shard_kind(data))
    if is_label_file(data):
        return data_kind(label_file_kind(data, path_col))
    return next(k for k in _KINDS if k.claims(data))


def resolve_data(request: DataRequest) -> DataSplits:
    """The training and validation data (or, ``for_evaluation``, the held-out data) ``request`` names."""
    if is_label_file(request.data):
        return resolve_label_file(request)
    if request.task == "multilabel":
        raise ValueError(f"--data {request.data}: multi-label training reads a label file (a .csv, .tsv or .jsonl "
                         "with several labels per row, or one 0/1 column per label); folders and shards are single-label")
    if is_shard_source(request.data):
        return resolve_shards(request)
    return kind_of(request.data).resolve(request)


def load_eval_data(spec: InputSpec, path: str, on_corrupt: str = "skip", path_col: str = "path",
                   label_col: str = "label", classes: Optional[Sequence[str]] = None,
                   multilabel: bool = False, label_sep: str = ";") -> LabelledData:
    """The held-out part of ``path`` (a folder, a data set name, a label file or shards), read for a model trained with ``spec``.

    ``classes``: a label file's labels (or the shards' classes) must be among them (one that is not is named).
    ``multilabel``: the model's task; a label file of the other task is refused, and a multi-label
    model reads nothing but label files.
    """
    if multilabel and not is_label_file(path):
        raise ValueError(f"{path}: a multi-label model is evaluated on a label file (a .csv, .tsv or .jsonl listing "
                         "each file's labels), not a folder or shards")
    if is_shard_source(path):
        return load_shard_eval_data(spec, str(path), on_corrupt, classes)
    if is_label_file(path):
        request = DataRequest(data=str(path), on_corrupt=on_corrupt, for_evaluation=True, path_col=path_col,
                              label_col=label_col, label_sep=label_sep, in_chans=getattr(spec, "in_chans", None))
        return resolve_label_file(request, getattr(spec, "features", None), kind=spec.kind, known_classes=classes,
                                  multilabel=multilabel).val
    return data_kind(spec.kind).load_eval(spec, path, on_corrupt)
