"""Imbalanced classes: class weights in the loss, the balanced sampler, balanced accuracy and macro-F1."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from resnetkit.data import BatchOptions
from resnetkit.data.tensors import TensorData
from resnetkit.engine import TrainConfig
from resnetkit.engine.imbalance import balanced_sample_weights, class_weights
from resnetkit.runtime.distributed import DistInfo

CLASSES = ["airplane", "automobile", "bird"]


def test_balanced_weights_are_scikit_learns():
    from sklearn.utils.class_weight import compute_class_weight

    labels = torch.tensor([0] * 100 + [1] * 100 + [2] * 10)
    ours = class_weights("balanced", labels, CLASSES)
    theirs = compute_class_weight("balanced", classes=np.arange(3), y=labels.numpy())
    torch.testing.assert_close(ours, torch.tensor(theirs, dtype=torch.float32))


def test_weights_from_files(tmp_path):
    labels = torch.tensor([0, 1, 2])
    (tmp_path / "w.json").write_text(json.dumps({"bird": 5, "airplane": 0.5}))
    assert class_weights(str(tmp_path / "w.json"), labels, CLASSES).tolist() == [0.5, 1.0, 5.0]
    (tmp_path / "w.csv").write_text("# class,weight\nbird, 3\nautomobile,2\n")
    assert class_weights(str(tmp_path / "w.csv"), labels, CLASSES).tolist() == [1.0, 2.0, 3.0]
    (tmp_path / "bad.csv").write_text("bird,3\ncat,2\n")
    with pytest.raises(ValueError, match=r"bad.csv, line 2: unknown class 'cat' \(the classes are airplane"):
        class_weights(str(tmp_path / "bad.csv"), labels, CLASSES)
    (tmp_path / "neg.csv").write_text("bird,-1\n")
    with pytest.raises(ValueError, match=r"neg.csv, line 1: the weight must be a finite number >= 0, got '-1'"):
        class_weights(str(tmp_path / "neg.csv"), labels, CLASSES)
    with pytest.raises(FileNotFoundError, match="missing.json: no such file"):
        class_weights(str(tmp_path / "missing.json"), labels, CLASSES)
    with pytest.raises(ValueError, match="have no training sample"):
        class_weights("balanced", torch.tensor([0, 0, 1]), CLASSES)


def test_balanced_sampler_draws_every_class_equally_often_and_the_same_after_resume():
    labels = torch.tensor([0] * 100 + [1] * 100 + [2] * 10)
    x = torch.zeros(len(labels), 1, 2, 2)
    weights = balanced_sample_weights(labels, 3)
    options = BatchOptions(train=True, batch_size=10, sample_weights=weights, seed=3)
    source = TensorData(x, labels, CLASSES).batches(None, options)
    counts = torch.zeros(3)
    for epoch in range(20):
        drawn = labels[source.indices(epoch)]
        counts += torch.bincount(drawn, minlength=3)
    share = counts / counts.sum()
    # 4,200 draws: each class near a third (the 10 birds are drawn about 7 times each per epoch).
    assert share.sub(1 / 3).abs().max() < 0.04, share
    # Every epoch's draw is a function of (seed, epoch): a resumed run, or another process, draws the same.
    again = TensorData(x, labels, CLASSES).batches(None, options)
    assert torch.equal(source.indices(7), again.indices(7))
    assert not torch.equal(source.indices(7), source.indices(8))
    # Two processes take disjoint halves of the one draw.
    halves = [TensorData(x, labels, CLASSES).batches(None, BatchOptions(
        train=True, batch_size=10, sample_weights=weights, seed=3, dist=DistInfo(rank=r, world_size=2)))
        for r in (0, 1)]
    whole = source.indices(2)
    assert torch.equal(torch.stack([halves[0].indices(2), halves[1].indices(2)], 1).flatten(), whole[: 2 * (len(whole) // 2)])


def _imbalanced_digits():
    """Real digit scans: classes 0-4 keep 10% of their training samples, 5-9 all; a balanced held-out set."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    train_x, train_y, val_x, val_y = x[:1300], y[:1300], x[1300:], y[1300:]
    keep = torch.cat([(train_y == c).nonzero().flatten()[: (13 if c < 5 else 1000)] for c in range(10)])
    names = [str(c) for c in range(10)]
    return TensorData(train_x[keep], train_y[keep], names), TensorData(val_x, val_y, names)


def test_class_weights_and_the_sampler_lift_the_rare_classes(tmp_path):
    from torch import nn

    from resnetkit.engine.trainer import Trainer

    runs = {}
    for name, changes in {"plain": {}, "weighted": {"class_weights": "balanced"},
                          "sampled": {"sampler": "balanced"}}.items():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        config = TrainConfig(epochs=6, batch_size=32, lr=0.05, quiet=True, seed=0, device="cpu", amp="off",
                             channels_last=False, augment="none", calibrate="none", **changes)
        train_data, val_data = _imbalanced_digits()
        trainer = Trainer(model, train_data, val_data, config, run_dir=tmp_path / name)
        trainer.fit()
        runs[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    for m in runs.values():
        recalls = [m["per_class"][str(c)]["recall"] for c in range(10)]
        assert m["balanced_accuracy"] == pytest.approx(sum(recalls) / 10)
        assert m["macro_f1"] == pytest.approx(sum(m["per_class"][str(c)]["f1"] for c in range(10)) / 10)
    rare_recall = {name: sum(m["per_class"][str(c)]["recall"] for c in range(5)) / 5 for name, m in runs.items()}
    # 13 scans of each rare digit against ~130 of the others: unweighted, the rare digits are missed far
    # more often; weighting the loss or resampling recovers them.
    assert rare_recall["weighted"] > rare_recall["plain"] + 0.05, rare_recall
    assert rare_recall["sampled"] > rare_recall["plain"] + 0.05, rare_recall
    assert runs["weighted"]["balanced_accuracy"] > runs["plain"]["balanced_accuracy"]
