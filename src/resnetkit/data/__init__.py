"""Every kind of input behind one interface: reading, layouts, splits, input specs and batch sources.

Start at :mod:`.interface` (what a kind of input provides) and :mod:`.resolve` (which kind
a ``--data`` value is). Images: :mod:`.image_io`, :mod:`.images`, :mod:`.image_batches`,
:mod:`.image_pipeline`, :mod:`.augment`. Audio: :mod:`.audio_io`, :mod:`.audio_features`, :mod:`.audio_augment`,
:mod:`.audio_data`, :mod:`.audio_layouts`, :mod:`.audio_batches`. WebDataset shards of either:
:mod:`.shard_writer`, :mod:`.shards`. Multi-label data (label files of images or audio): :mod:`.multilabel`. Shared: :mod:`.folders`,
:mod:`.batching`, :mod:`.specs`, :mod:`.classes`, :mod:`.tensors`, :mod:`.checks`.
"""

from .batching import BatchSource
from .interface import (
    BatchOptions,
    DataRequest,
    DataSplits,
    InputSpec,
    LabelledData,
    PreparedInputs,
    Display,
    Preview,
    SkippedFile,
    input_spec_from_dict,
    register_input_spec,
)
from .resolve import DataKind, load_eval_data, register_data_kind, resolve_data, unregister_data_kind
from .specs import AudioInputSpec, ImageInputSpec
from .tensors import TensorData, as_labelled_data

__all__ = [
    "AudioInputSpec",
    "BatchOptions",
    "BatchSource",
    "DataKind",
    "DataRequest",
    "DataSplits",
    "ImageInputSpec",
    "InputSpec",
    "LabelledData",
    "PreparedInputs",
    "Display",
    "Preview",
    "SkippedFile",
    "TensorData",
    "as_labelled_data",
    "input_spec_from_dict",
    "load_eval_data",
    "register_data_kind",
    "unregister_data_kind",
    "register_input_spec",
    "resolve_data",
]
