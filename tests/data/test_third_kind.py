"""The seam between data and engine: a third kind of input, added by one data module.

1-D signals stored as ``.npy`` files, one class per folder (here: real FSDD recordings,
decimated to 500 Hz and saved as arrays). The module below implements only the public
interface of :mod:`resnetkit.data`; ``Trainer``, ``evaluate``, ``train`` and ``load_run``
take it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest
import torch

from resnetkit import Trainer, TrainConfig, create_model, evaluate, load_run, train
from resnetkit.data import (
    BatchOptions,
    BatchSource,
    DataKind,
    DataRequest,
    DataSplits,
    InputSpec,
    LabelledData,
    PreparedInputs,
    register_data_kind,
    register_input_spec,
    unregister_data_kind,
)
from resnetkit.data.folders import scan_class_folders, stratified_split
from resnetkit.data.resolve import data_kind

sf = pytest.importorskip("soundfile")

LENGTH = 500  # one second at 500 Hz


# -- the data module: all a new kind of input has to write ----------------------------------------


@register_input_spec
@dataclass
class SignalSpec(InputSpec):
    """Signals of ``length`` samples, scaled to unit RMS, as (1, 1, length) inputs."""

    length: int
    in_chans: int = 1

    kind = "signal"
    file_extensions = (".npy",)

    @property
    def input_size(self) -> tuple[int, int, int]:
        return (1, 1, self.length)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "length": self.length}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SignalSpec":
        return cls(int(values["length"]))

    def fix_length(self, signal: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(signal, (0, max(0, self.length - signal.shape[-1])))[..., : self.length]

    def to_input(self, signals: torch.Tensor) -> torch.Tensor:
        x = signals / signals.pow(2).mean(-1, keepdim=True).sqrt().clamp(min=1e-6)
        return x[:, None, None, :]

    def prepare(self, items: Sequence[Any], device: torch.device) -> PreparedInputs:
        signals, names, errors = [], [], []
        for item in items:
            names.append(str(item))
            try:
                signals.append(self.fix_length(torch.from_numpy(np.load(item, allow_pickle=False)).float()))
                errors.append(None)
            except (OSError, ValueError) as err:
                errors.append(f"{item}: not a .npy array ({err})")
        batch = self.to_input(torch.stack(signals)).to(device) if signals else None
        return PreparedInputs(batch, names, errors)


@dataclass(frozen=True)
class SignalAugment:
    shift: bool = True  # a random circular shift of each batch

    def to_dict(self) -> dict[str, Any]:
        return {"shift": self.shift}


class SignalBatches(BatchSource):
    def __init__(self, data: "SignalData", spec: SignalSpec, options: BatchOptions) -> None:
        super().__init__(data.classes, options)
        self.x = spec.to_input(data.signals).to(self.device)
        self.y = data.labels.to(self.device)

    @property
    def num_samples(self) -> int:
        return self.x.shape[0]

    def epoch(self, epoch: int, start_step: int = 0):
        for sel in self.step_indices(epoch, start_step):
            x = self.x[sel]
            if self.train and self.options.augment is not None and self.options.augment.shift:
                shift = int(torch.randint(0, LENGTH, (1,), generator=self.generator))
                x = x.roll(shift, -1)
            yield x, self.y[sel]


@dataclass
class SignalData(LabelledData):
    signals: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    source: str = "signals"

    in_chans = 1

    def __post_init__(self) -> None:
        self.skipped = []

    def __len__(self) -> int:
        return self.signals.shape[0]

    def input_spec(self, model=None, img_size=None) -> SignalSpec:
        return SignalSpec(LENGTH)

    def augment_config(self, preset: str = "auto", overrides=None) -> SignalAugment:
        return SignalAugment(shift=preset != "none")

    def batches(self, spec: SignalSpec, options: BatchOptions) -> SignalBatches:
        return SignalBatches(self, spec, options)

    def remap_classes(self, classes: Sequence[str]) -> "SignalData":
        index = {c: i for i, c in enumerate(classes)}
        mapping = torch.tensor([index[c] for c in self.classes])
        return SignalData(self.signals, mapping[self.labels], list(classes), self.source)

    def subset(self, idx: torch.Tensor) -> "SignalData":
        return SignalData(self.signals[idx], self.labels[idx], self.classes, self.source)


def load_signals(folder: str) -> SignalData:
    scan = scan_class_folders(folder, (".npy",), what=".npy files")
    spec = SignalSpec(LENGTH)
    signals = torch.stack([spec.fix_length(torch.from_numpy(np.load(p)).float()) for p, _ in scan.samples])
    labels = torch.tensor([label for _, label in scan.samples])
    return SignalData(signals, labels, scan.classes, folder)


def resolve_signals(request: DataRequest) -> DataSplits:
    data = load_signals(request.data)
    if request.for_evaluation:
        return DataSplits(None, data, data.classes, request.data)
    train_idx, val_idx = stratified_split(data.labels, request.val_split or 0.25, request.seed)
    return DataSplits(data.subset(train_idx), data.subset(val_idx), data.classes, request.data)


SIGNALS = DataKind(
    "signal",
    claims=lambda data: Path(data).is_dir() and any(Path(data).glob("*/*.npy")),
    resolve=resolve_signals,
    load_eval=lambda spec, path, on_corrupt: load_signals(path),
)


# -- the tests: the engine takes it as it is --------------------------------------------------------


@pytest.fixture(scope="module")
def signal_folder(tmp_path_factory, fsdd_subset) -> Path:
    """Digits 0 and 1 of FSDD, decimated to 500 Hz, as .npy files in class folders."""
    root = tmp_path_factory.mktemp("signals")
    for wav in fsdd_subset(root / "wav", indices=range(0, 50, 2), digits=[0, 1]):
        wave, rate = sf.read(str(wav), dtype="float32")
        assert rate == 8000
        (root / "npy" / wav.name[0]).mkdir(parents=True, exist_ok=True)
        np.save(root / "npy" / wav.name[0] / f"{wav.stem}.npy", wave[::16])
    return root / "npy"


def test_trainer_and_evaluate_take_a_new_kind(signal_folder):
    splits = resolve_signals(DataRequest(data=str(signal_folder), val_split=0.25))
    model = create_model("resnet20", in_chans=1, num_classes=2)
    config = TrainConfig(epochs=3, batch_size=32, lr=0.05, quiet=True, seed=0)
    history = Trainer(model, splits.train, splits.val, config).fit()
    assert len(history) == 3 and all(np.isfinite(h["train_loss"]) for h in history)
    loss, acc = result = evaluate(model, splits.val)
    assert acc == pytest.approx(history[-1]["val_acc"], abs=1e-6)
    assert result.metrics["num_samples"] == len(splits.val) == 62


@pytest.fixture
def signals_registered():
    """The kind registered for one test only: it claims any folder of .npy files, other tests' too."""
    register_data_kind(SIGNALS)
    try:
        yield SIGNALS
    finally:
        unregister_data_kind(SIGNALS.name)
    with pytest.raises(ValueError, match="no data kind 'signal'"):
        data_kind("signal")


def test_train_and_load_run_through_a_registered_kind(signal_folder, tmp_path, signals_registered):
    summary = train(TrainConfig(data=str(signal_folder), epochs=2, batch_size=32, quiet=True, out=str(tmp_path / "run")))
    run = load_run(summary.run_dir)
    assert run.kind == "signal" and run.input_spec == SignalSpec(LENGTH)
    result = run.evaluate(str(signal_folder))
    assert result.metrics["num_samples"] == 250
    files = sorted((signal_folder / "1").glob("*.npy"))[:3]
    predictions = run.predict(files, top_k=1)
    assert [p["source"] for p in predictions] == [str(f) for f in files]
    assert all(p["top_k"][0]["class"] in ("0", "1") for p in predictions)
