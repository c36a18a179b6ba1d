"""ClassificationMetrics against scikit-learn, batching, validation and distributed reduction."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
from datetime import timedelta

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, top_k_accuracy_score

from resnetkit.engine.metrics import ClassificationMetrics

TOL = 1e-6


def _random_batch(n: int, k: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    # Logits tilted towards the target so that the metrics are neither 0 nor chance.
    targets = torch.randint(0, k, (n,), generator=generator)
    logits = torch.randn(n, k, generator=generator) + 1.5 * F.one_hot(targets, k)
    return logits, targets


def _names(k: int) -> list[str]:
    return [f"class_{i}" for i in range(k)]


def _assert_finite(value: object) -> None:
    """No NaN or inf anywhere in a nested result."""
    if isinstance(value, dict):
        for item in value.values():
            _assert_finite(item)
    elif isinstance(value, list):
        for item in value:
            _assert_finite(item)
    elif isinstance(value, float):
        assert math.isfinite(value)


def _assert_matches_sklearn(result: dict, logits: torch.Tensor, targets: torch.Tensor, names: list[str]) -> None:
    k = logits.shape[1]
    y_true = targets.numpy()
    y_pred = logits.argmax(1).numpy()
    labels = list(range(k))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    for i, name in enumerate(names):
        row = result["per_class"][name]
        assert row["precision"] == pytest.approx(precision[i], abs=TOL)
        assert row["recall"] == pytest.approx(recall[i], abs=TOL)
        assert row["f1"] == pytest.approx(f1[i], abs=TOL)
        assert row["support"] == support[i]
    macro = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    assert result["macro_avg"]["precision"] == pytest.approx(macro[0], abs=TOL)
    assert result["macro_avg"]["recall"] == pytest.approx(macro[1], abs=TOL)
    assert result["macro_avg"]["f1"] == pytest.approx(macro[2], abs=TOL)
    assert result["macro_f1"] == pytest.approx(macro[2], abs=TOL)
    if len(set(y_true.tolist())) > 1:
        import warnings

        from sklearn.metrics import balanced_accuracy_score

        with warnings.catch_warnings():  # scikit-learn warns about classes predicted but absent
            warnings.simplefilter("ignore")
            assert result["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred), abs=TOL)
    assert result["confusion_matrix"] == confusion_matrix(y_true, y_pred, labels=labels).tolist()
    assert result["top1"] == pytest.approx(float((y_true == y_pred).mean()), abs=TOL)
    scores = logits.double().numpy()
    if k > 2:  # top_k_accuracy_score takes 1-D scores for two classes
        top5 = top_k_accuracy_score(y_true, scores, k=min(5, k), labels=labels)
        assert result["top5"] == pytest.approx(top5, abs=TOL)
    assert result["num_samples"] == len(y_true)


# top_k_accuracy_score warns that top-3 of 3 classes is always 1.0, which is what this checks.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
@pytest.mark.parametrize("k", [3, 10, 37])
def test_matches_sklearn(k: int) -> None:
    logits, targets = _random_batch(2000, k, seed=k)
    metrics = ClassificationMetrics(k)
    loss = F.cross_entropy(logits, targets, reduction="sum")
    metrics.update(logits, targets, loss)
    result = metrics.compute(_names(k))
    _assert_matches_sklearn(result, logits, targets, _names(k))
    assert result["loss"] == pytest.approx(F.cross_entropy(logits.double(), targets).item(), rel=1e-6)
    if k <= 5:
        assert result["top5"] == 1.0


def test_exact_keys_and_json() -> None:
    logits, targets = _random_batch(300, 10)
    metrics = ClassificationMetrics(10)
    metrics.update(logits, targets, 123.0)
    result = metrics.compute(_names(10))
    assert set(result) == {"num_samples", "loss", "top1", "top5", "per_class", "macro_avg", "confusion_matrix",
                           "balanced_accuracy", "macro_f1", "ece", "temperature", "reliability"}
    assert set(result["per_class"]["class_0"]) == {"precision", "recall", "f1", "support"}
    assert set(result["macro_avg"]) == {"precision", "recall", "f1"}
    assert json.loads(json.dumps(result)) == result
    assert isinstance(result["num_samples"], int) and isinstance(result["loss"], float)
    assert all(isinstance(v, int) for row in result["confusion_matrix"] for v in row)
    assert 0.0 <= result["top1"] <= result["top5"] <= 1.0


def test_class_never_predicted_has_zero_precision() -> None:
    k = 10
    logits, targets = _random_batch(500, k, seed=1)
    logits[:, 3] = -1e4  # class 3 is never predicted although it occurs in the targets
    logits[:, 7] = -1e4
    targets[targets == 7] = 0  # class 7 is neither predicted nor present
    metrics = ClassificationMetrics(k)
    metrics.update(logits, targets)
    result = metrics.compute(_names(k))
    assert result["per_class"]["class_3"]["support"] > 0
    assert result["per_class"]["class_3"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                              "support": result["per_class"]["class_3"]["support"]}
    assert result["per_class"]["class_7"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    _assert_finite(result)
    _assert_matches_sklearn(result, logits, targets, _names(k))
    assert result["loss"] is None


def test_batches_equal_one_batch() -> None:
    k = 10
    logits, targets = _random_batch(1000, k, seed=2)
    losses = F.cross_entropy(logits, targets, reduction="none")
    whole = ClassificationMetrics(k)
    whole.update(logits, targets, losses.sum())
    batched = ClassificationMetrics(k)
    bounds = [0, 1, 130, 130, 517, 999, 1000]  # uneven, with an empty batch
    for start, stop in zip(bounds[:-1], bounds[1:]):
        chunk_loss = losses[start:stop]
        # A float sum, a 0-d tensor and the per-sample losses all count as the batch sum.
        loss = float(chunk_loss.sum()) if start % 2 else (chunk_loss.sum() if stop % 2 else chunk_loss)
        batched.update(logits[start:stop], targets[start:stop], loss)
    a, b = whole.compute(_names(k)), batched.compute(_names(k))
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
    a.pop("loss"), b.pop("loss")
    assert a == b


def test_loss_is_mean_over_batches_that_gave_one() -> None:
    metrics = ClassificationMetrics(4)
    logits, targets = _random_batch(30, 4)
    metrics.update(logits[:10], targets[:10], torch.tensor(20.0))
    metrics.update(logits[10:], targets[10:])  # no loss for this batch
    result = metrics.compute()
    assert result["num_samples"] == 30
    assert result["loss"] == pytest.approx(2.0)
    assert list(result["per_class"]) == ["0", "1", "2", "3"]


def test_empty_compute_and_reset() -> None:
    metrics = ClassificationMetrics(5)
    result = metrics.compute(_names(5))
    assert result["num_samples"] == 0 and result["loss"] is None
    assert result["top1"] == 0.0 and result["top5"] == 0.0
    _assert_finite(result)
    logits, targets = _random_batch(50, 5)
    metrics.update(logits, targets, 1.0)
    metrics.reset()
    assert metrics.compute(_names(5)) == result


def test_inference_mode_state_usable_outside() -> None:
    # The first update inside inference_mode allocates the state; it must stay updatable.
    metrics = ClassificationMetrics(10)
    logits, targets = _random_batch(64, 10)
    with torch.inference_mode():
        metrics.update(logits, targets, F.cross_entropy(logits, targets, reduction="sum"))
    metrics.reduce_across_processes()  # no-op without torch.distributed
    metrics.update(logits, targets)
    assert metrics.compute()["num_samples"] == 128


@pytest.mark.parametrize(
    "logits_shape, targets, match",
    [
        ((8,), torch.zeros(8, dtype=torch.long), r"logits must have shape \(N, 10\), got \(8,\)"),
        ((8, 9), torch.zeros(8, dtype=torch.long), r"logits must have shape \(N, 10\), got \(8, 9\)"),
        ((8, 10, 1), torch.zeros(8, dtype=torch.long), r"got \(8, 10, 1\)"),
        ((8, 10), torch.zeros(7, dtype=torch.long), r"targets must have shape \(8,\).*got \(7,\)"),
        ((8, 10), torch.zeros(8, 10, dtype=torch.long), r"not one-hot"),
        ((8, 10), torch.full((8,), 10), r"\[0, 10\), got \[10\]"),
        ((8, 10), torch.tensor([0, 1, -1, 2, 3, 4, 5, 6]), r"got \[-1\]"),
    ],
)
def test_bad_input_raises_value_error(logits_shape: tuple, targets: torch.Tensor, match: str) -> None:
    metrics = ClassificationMetrics(10)
    with pytest.raises(ValueError, match=match):
        metrics.update(torch.randn(*logits_shape), targets)
    # A rejected batch leaves no trace.
    assert metrics.compute()["num_samples"] == 0


def test_bad_types_and_arguments() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ClassificationMetrics(0)
    with pytest.raises(TypeError, match="num_classes must be an int"):
        ClassificationMetrics(10.0)  # type: ignore[arg-type]
    metrics = ClassificationMetrics(10)
    with pytest.raises(TypeError, match="integer tensor"):
        metrics.update(torch.randn(4, 10), torch.zeros(4))
    with pytest.raises(TypeError, match="torch.Tensor"):
        metrics.update(np.zeros((4, 10)), torch.zeros(4, dtype=torch.long))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sum of the batch"):
        metrics.update(torch.randn(4, 10), torch.zeros(4, dtype=torch.long), torch.ones(3))
    with pytest.raises(TypeError, match="loss must be"):
        metrics.update(torch.randn(4, 10), torch.zeros(4, dtype=torch.long), "1.0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="10 entries"):
        metrics.compute(["a", "b"])
    with pytest.raises(ValueError, match="unique"):
        metrics.compute(["a"] * 10)


def test_reduce_is_noop_without_distributed() -> None:
    logits, targets = _random_batch(100, 10)
    metrics = ClassificationMetrics(10)
    metrics.update(logits, targets, 5.0)
    before = metrics.compute()
    metrics.reduce_across_processes()
    metrics.reduce_across_processes()  # still a no-op, not a double count
    assert metrics.compute() == before


# Rank 1 runs in a fresh interpreter and loads metrics.py by its path: importing the resnetkit
# package (all the models) there would double this test's time. Rank 0 is the test itself.
_RANK1 = """
import importlib.util, json, sys
import torch, torch.distributed as dist
spec = importlib.util.spec_from_file_location("metrics", sys.argv[1])
metrics_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(metrics_module)
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{sys.argv[2]}", rank=1, world_size=2)
try:
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(250, 10, generator=generator)
    targets = torch.randint(0, 10, (250,), generator=generator)
    metrics = metrics_module.ClassificationMetrics(10)
    metrics.update(logits, targets, 2.0)
    local = metrics.compute()
    metrics.reduce_across_processes()
    print(json.dumps({"local": local, "reduced": metrics.compute()}))
finally:
    dist.destroy_process_group()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
def test_reduce_across_two_processes() -> None:
    import resnetkit.engine.metrics as metrics_module
    import torch.distributed as dist

    if dist.is_initialized():
        pytest.skip("torch.distributed is already initialized in this process")
    port = str(_free_port())
    rank1 = subprocess.Popen(
        [sys.executable, "-c", _RANK1, metrics_module.__file__, port],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        dist.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=2, timeout=timedelta(seconds=60)
        )
        try:
            logits, targets = _random_batch(150, 10)  # unequal shares: 150 here, 250 on rank 1
            metrics = ClassificationMetrics(10)
            metrics.update(logits, targets, 1.0)
            local = metrics.compute()
            metrics.reduce_across_processes()
            reduced = metrics.compute()
            with pytest.raises(RuntimeError, match="already called"):
                metrics.reduce_across_processes()
            with pytest.raises(RuntimeError, match="reset"):
                metrics.update(logits, targets)
        finally:
            dist.destroy_process_group()
        stdout, stderr = rank1.communicate(timeout=60)
    finally:
        rank1.kill()
    assert rank1.returncode == 0, stderr
    other = json.loads(stdout.strip().splitlines()[-1])
    assert other["reduced"] == reduced
    assert reduced["num_samples"] == 400
    expected = np.array(local["confusion_matrix"]) + np.array(other["local"]["confusion_matrix"])
    assert reduced["confusion_matrix"] == expected.tolist()
    assert reduced["loss"] == pytest.approx((1.0 + 2.0) / 400)
    hits = sum(round(part["top5"] * part["num_samples"]) for part in (local, other["local"]))
    assert reduced["top5"] == pytest.approx(hits / 400)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_without_sync() -> None:
    logits, targets = _random_batch(1000, 10, seed=3)
    cpu = ClassificationMetrics(10)
    gpu = ClassificationMetrics(10)
    loss = F.cross_entropy(logits, targets, reduction="sum")
    cpu.update(logits, targets, loss)
    logits_cuda, targets_cuda, loss_cuda = logits.cuda(), targets.cuda(), loss.cuda()
    gpu.update(logits_cuda[:1], targets_cuda[:1])  # places the state on the GPU
    gpu.reset()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        gpu.update(logits_cuda, targets_cuda, loss_cuda)
        gpu.update(logits_cuda[:0], targets_cuda[:0], 0.0)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert gpu.device.type == "cuda"
    a, b = cpu.compute(), gpu.compute()
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
    a.pop("loss"), b.pop("loss")
    assert a == b
    # Out-of-range targets on the GPU are only found in compute(), without a device assert.
    gpu.update(logits_cuda[:4], torch.tensor([0, 1, 10, -3], device="cuda"))
    with pytest.raises(ValueError, match="2 targets"):
        gpu.compute()
