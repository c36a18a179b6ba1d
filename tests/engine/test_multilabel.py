"""Multi-label runs: BCE training on real two-image mosaics, mAP and friends, per-label calibration and thresholds.

The metrics are checked against scikit-learn; the temperatures against an over-confident
model; the thresholds against a brute-force search; the trained run end to end (predict,
evaluate, export, Grad-CAM, serve) on mosaics of two real CIFAR-10 photos.
"""

from __future__ import annotations

import json

import pytest
import torch

from resnetkit.engine import TrainConfig, load_run
from resnetkit.engine.multilabel import (bce_loss, fit_label_temperatures, multilabel_metrics, positive_weights,
                                         probabilities, tune_thresholds)

LABELS = ["a", "b", "c", "d"]


def _scores(n=400, k=4, seed=0, sharpness=1.5):
    g = torch.Generator().manual_seed(seed)
    targets = (torch.rand(n, k, generator=g) < torch.tensor([0.5, 0.3, 0.1, 0.2])).float()
    logits = sharpness * (2 * targets - 1) + torch.randn(n, k, generator=g) * 1.5
    return logits, targets


def test_the_metrics_agree_with_scikit_learn():
    from sklearn.metrics import average_precision_score, f1_score, hamming_loss, precision_score

    logits, targets = _scores()
    thresholds = [0.5, 0.4, 0.6, 0.3]
    m = multilabel_metrics(logits, targets, LABELS, thresholds=thresholds)
    probs = torch.sigmoid(logits).numpy()
    y = targets.numpy().astype(int)
    pred = (probs >= thresholds).astype(int)
    aps = [average_precision_score(y[:, i], probs[:, i]) for i in range(4)]
    assert m["map"] == pytest.approx(sum(aps) / 4)
    assert [m["per_label"][n]["ap"] for n in LABELS] == pytest.approx(aps)
    assert m["map_micro"] == pytest.approx(average_precision_score(y.ravel(), probs.ravel()))
    assert m["hamming_loss"] == pytest.approx(hamming_loss(y, pred))
    assert m["exact_match"] == pytest.approx((pred == y).all(1).mean())
    assert m["macro_avg"]["f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["micro_avg"]["precision"] == pytest.approx(precision_score(y, pred, average="micro"))
    assert m["loss"] == pytest.approx(float(torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)))


def test_a_label_without_a_positive_sample_has_no_ap_and_stays_out_of_the_map():
    logits, targets = _scores()
    targets[:, 2] = 0
    m = multilabel_metrics(logits, targets, LABELS)
    assert m["per_label"]["c"]["ap"] is None
    assert m["map"] == pytest.approx(sum(m["per_label"][n]["ap"] for n in "abd") / 3)


def test_per_label_temperatures_lower_the_calibration_error_of_an_overconfident_model():
    # Calibrated logits by construction (each label drawn with probability sigmoid(z)), then made 4x too sure.
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2000, 4, generator=g) * 2
    targets = (torch.rand(2000, 4, generator=g) < torch.sigmoid(logits)).float()
    overconfident = logits * 4
    before = multilabel_metrics(overconfident, targets, LABELS)
    temperatures = fit_label_temperatures(overconfident, targets)
    after = multilabel_metrics(overconfident, targets, LABELS, temperature=temperatures)
    assert temperatures == pytest.approx([4.0] * 4, rel=0.15)  # each label cooled back down by about 4
    # Scaling the logits by 4 scales each label's fitted temperature by 4.
    assert temperatures == pytest.approx([4 * t for t in fit_label_temperatures(logits, targets)], rel=1e-3)
    assert after["ece"] < before["ece"] / 3 and after["loss"] < before["loss"]
    assert after["map"] == pytest.approx(before["map"])  # a temperature never changes the ranking
    # Each temperature is the minimum of its label's BCE.
    for i, t in enumerate(temperatures):
        nll = lambda t: float(torch.nn.functional.binary_cross_entropy_with_logits(overconfident[:, i] / t, targets[:, i]))
        assert nll(t) <= min(nll(t * 1.05), nll(t / 1.05))


def test_a_label_right_on_every_validation_sample_keeps_temperature_one(caplog):
    g = torch.Generator().manual_seed(0)
    targets = (torch.rand(300, 2, generator=g) < 0.4).float()
    logits = (2 * targets - 1) * (1 + torch.rand(300, 2, generator=g))  # both labels perfectly separated
    logits[:5, 1] *= -1  # label 1: five mistakes, so its temperature is a real, bounded fit
    with caplog.at_level("INFO", logger="resnetkit.engine.multilabel"):
        temperatures = fit_label_temperatures(logits, targets)
    assert temperatures[0] == 1.0  # not the search's bound, 0.05
    assert 0.1 < temperatures[1] < 1.0
    assert "1 of 2 labels are right on every validation sample" in caplog.text


def test_thresholds_maximise_each_labels_f1():
    from sklearn.metrics import f1_score

    logits, targets = _scores(seed=3)
    probs = probabilities(logits)
    chosen = tune_thresholds(probs, targets)
    for i, cut in enumerate(chosen):
        y, p = targets[:, i].numpy(), probs[:, i].numpy()
        best = max(f1_score(y, p >= c) for c in p)
        assert f1_score(y, p >= cut) == pytest.approx(best)
    targets[:, 1] = 0
    assert tune_thresholds(probs, targets)[1] == 0.5  # no positive sample: the default


def test_label_smoothing_and_positive_weights():
    logits, targets = torch.zeros(2, 2), torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    smoothed = bce_loss(logits + 3, targets, label_smoothing=0.2)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits + 3, targets * 0.8 + 0.1)
    assert torch.allclose(smoothed, expected)
    # balanced: negatives / positives of each label
    assert positive_weights("balanced", torch.tensor([[1.0, 0], [1, 0], [0, 1], [1, 0]]), ["x", "y"]).tolist() == \
        pytest.approx([1 / 3, 3.0])
    with pytest.raises(ValueError, match="label.s. y have no positive training sample"):
        positive_weights("balanced", torch.tensor([[1.0, 0]]), ["x", "y"])


# -- a trained run on real mosaics ------------------------------------------------------------------


def test_a_short_run_on_mosaics_learns_both_halves(multilabel_run):
    m = json.loads((multilabel_run / "metrics.json").read_text())
    assert m["task"] == "multilabel" and m["num_samples"] == 120
    # Chance: the AP of a random ranking is each label's share of positives.
    chance = sum(v["support"] for v in m["per_label"].values()) / (len(m["per_label"]) * m["num_samples"])
    assert m["map"] > chance + 0.15, (m["map"], chance)
    assert set(m["per_label"]) == {"airplane", "automobile", "cat", "frog"}
    assert m["calibration"]["method"] == "temperature per label" and len(m["temperature"]) == 4
    state = torch.load(multilabel_run / "best.pt", weights_only=True)
    assert state["task"] == "multilabel" and state["thresholds"] == m["thresholds"]
    assert state["temperature"] == m["temperature"]
    for name in ("label_ap.png", "calibration.png", "curves.png", "examples.png"):
        assert (multilabel_run / name).stat().st_size > 1000
    assert not (multilabel_run / "confusion.png").exists()
    header = (multilabel_run / "metrics.csv").read_text().splitlines()
    column = header[0].split(",").index("val_map")
    assert all(float(row.split(",")[column]) > 0 for row in header[1:])


def test_predict_reports_the_labels_at_or_above_their_thresholds(multilabel_run, cifar_mosaics):
    run = load_run(multilabel_run)
    assert run.multilabel and len(run.thresholds) == 4
    files = sorted(cifar_mosaics.parent.glob("mosaic00*.png"))[:6]
    for result in run.predict(files):
        probs = result["probabilities"]
        assert set(probs) == set(run.classes)
        assert result["labels"] == sorted((c for c in run.classes if probs[c] >= result["thresholds"][c]),
                                          key=lambda c: -probs[c])
        assert [t["class"] for t in result["top_k"]] == sorted(probs, key=lambda c: -probs[c])


def test_evaluate_gives_the_multilabel_metrics_of_the_label_file(multilabel_run, cifar_mosaics):
    run = load_run(multilabel_run)
    result = run.evaluate(str(cifar_mosaics))
    m = result.metrics
    assert m["num_samples"] == 480 and result.accuracy == m["exact_match"]
    assert m["thresholds"] == run.thresholds and 0 < m["map"] <= 1


def test_the_onnx_export_carries_the_task_thresholds_and_temperatures(multilabel_run, cifar_mosaics, tmp_path):
    pytest.importorskip("onnxruntime")
    from resnetkit.engine.exporting import export_run
    from resnetkit.engine.inference import load_model

    report = export_run(multilabel_run, "onnx", out=tmp_path / "m.onnx", parity_samples=64)
    assert report.parity.label_agreement >= 0.999
    exported = load_model(tmp_path / "m.onnx")
    run = load_run(multilabel_run)
    assert exported.task == "multilabel" and exported.thresholds == pytest.approx(run.thresholds)
    files = sorted(cifar_mosaics.parent.glob("mosaic01*.png"))[:8]
    # The ONNX file runs in fp32; so does the run here (auto would be bf16 on a CPU with AVX-512 BF16,
    # where a probability near its threshold can land on the other side).
    fp32 = run.predict(files, precision="fp32")
    assert [r["labels"] for r in exported.predict(files)] == [r["labels"] for r in fp32]


def test_grad_cam_explains_each_predicted_label(multilabel_run, cifar_mosaics):
    from resnetkit.explain import explain_inputs, grad_cam

    run = load_run(multilabel_run)
    files = sorted(cifar_mosaics.parent.glob("mosaic02*.png"))[:3]
    results = explain_inputs(run, files)
    # Grad-CAM runs the fp32 model (it needs gradients); predict compared at the same precision.
    predicted = [r["labels"] or [r["top_k"][0]["class"]] for r in run.predict(files, precision="fp32")]
    assert [(r.source, r.target) for r in results] == [(str(f), label) for f, labels in zip(files, predicted)
                                                       for label in labels]
    batch = run.input_spec.prepare([files[0]], run.device).batch
    first = results[0]
    own = grad_cam(run.model, batch, target=run.classes.index(first.target))
    assert torch.allclose(torch.as_tensor(first.cam), own.maps[0].cpu(), atol=1e-5)
    assert first.target_probability == pytest.approx(run.predict([files[0]], precision="fp32")[0]["probabilities"][first.target],
                                                     abs=1e-5)


def test_the_server_answers_with_labels(multilabel_run, cifar_mosaics):
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    from resnetkit.serve import BackgroundServer, ServeConfig, create_app

    run = load_run(multilabel_run)
    image = sorted(cifar_mosaics.parent.glob("mosaic00*.png"))[0]
    with BackgroundServer(create_app(run, ServeConfig())) as server:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            assert client.get("/v1/model").json()["task"] == "multilabel"
            body = client.post("/v1/predict", content=image.read_bytes()).json()
            explained = client.post("/v1/explain", content=image.read_bytes())
    expected = run.predict([image])[0]
    assert body["labels"] == expected["labels"] and set(body["probabilities"]) == set(run.classes)
    assert explained.status_code == 200 and explained.content[:4] == b"\x89PNG"


def test_options_that_do_not_fit_a_multilabel_run_are_refused(cifar_mosaics, cifar_folder, tmp_path):
    from resnetkit.engine import train

    common = dict(model="resnet20", epochs=1, batch_size=32, quiet=True, out=str(tmp_path))
    with pytest.raises(ValueError, match="sampler balanced draws every class equally often"):
        train(TrainConfig(data=str(cifar_mosaics), sampler="balanced", **common))
    with pytest.raises(ValueError, match="monitor val_map .* applies to multi-label runs"):
        train(TrainConfig(data=str(cifar_folder), monitor="val_map", **common))
    with pytest.raises(ValueError, match="multi-label training reads a label file"):
        train(TrainConfig(data=str(cifar_folder), task="multilabel", **common))


def test_joined_spoken_digits_train_as_a_multilabel_audio_run(fsdd_pairs, tmp_path):
    pytest.importorskip("soundfile")
    from resnetkit.engine import train

    # conftest's tiny log-mel front end, with room for two digits
    audio = {"sample_rate": 8000, "kind": "logmel", "n_fft": 256, "win_length": 240, "hop_length": 80, "duration_s": 2.0}
    train(TrainConfig(model="res8", data=str(fsdd_pairs), audio=audio, epochs=4, batch_size=16, optimizer="adamw",
                      lr=3e-3, augment="none", val_split=0.25, seed=0, quiet=True, out=str(tmp_path / "run")))
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    chance = sum(v["support"] for v in m["per_label"].values()) / (len(m["per_label"]) * m["num_samples"])
    assert m["task"] == "multilabel" and set(m["per_label"]) == {"0", "1", "2", "3"}
    assert m["map"] > chance + 0.1, (m["map"], chance)
    run = load_run(tmp_path / "run")
    (result,) = run.predict([fsdd_pairs.parent / "pair000.wav"])
    assert set(result["probabilities"]) == {"0", "1", "2", "3"} and "labels" in result


def test_compare_refuses_multilabel_data_before_training(cifar_mosaics, tmp_path):
    from resnetkit.engine.compare import compare

    with pytest.raises(ValueError, match="is multi-label; compare ranks single-label runs"):
        compare(["resnet20"], TrainConfig(data=str(cifar_mosaics), epochs=1), tmp_path / "study")
    assert not (tmp_path / "study").exists()


# Rank 1 of the two-process test: its share of the samples, the same calls as rank 0.
_RANK1 = """
import json, sys
import torch, torch.distributed as dist
from resnetkit.engine.multilabel import fit_label_temperatures, multilabel_metrics, probabilities, tune_thresholds
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{sys.argv[1]}", rank=1, world_size=2)
try:
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(500, 4, generator=g) * 3
    targets = (torch.rand(500, 4, generator=g) < torch.sigmoid(logits)).float()
    share = slice(150, 500)  # rank 0 holds the first 150
    t = fit_label_temperatures(logits[share], targets[share])
    cut = tune_thresholds(probabilities(logits[share], t), targets[share])
    m = multilabel_metrics(logits[share], targets[share], list("abcd"), t, cut)
    print(json.dumps({"t": t, "cut": cut, "map": m["map"], "n": m["num_samples"]}))
finally:
    dist.destroy_process_group()
"""


def test_two_processes_holding_shares_agree_with_one_holding_everything():
    import socket
    import subprocess
    import sys
    from datetime import timedelta

    import torch.distributed as dist

    if dist.is_initialized():
        pytest.skip("torch.distributed is already initialized in this process")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(500, 4, generator=g) * 3
    targets = (torch.rand(500, 4, generator=g) < torch.sigmoid(logits)).float()
    whole_t = fit_label_temperatures(logits, targets)
    whole_cut = tune_thresholds(probabilities(logits, whole_t), targets)
    whole = multilabel_metrics(logits, targets, list("abcd"), whole_t, whole_cut)
    rank1 = subprocess.Popen([sys.executable, "-c", _RANK1, port], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=2,
                                timeout=timedelta(seconds=120))
        try:
            t = fit_label_temperatures(logits[:150], targets[:150])
            cut = tune_thresholds(probabilities(logits[:150], t), targets[:150])
            m = multilabel_metrics(logits[:150], targets[:150], list("abcd"), t, cut)
        finally:
            dist.destroy_process_group()
        stdout, stderr = rank1.communicate(timeout=120)
    finally:
        rank1.kill()
    assert rank1.returncode == 0, stderr
    other = json.loads(stdout.strip().splitlines()[-1])
    assert m["num_samples"] == other["n"] == 500
    assert t == other["t"] == pytest.approx(whole_t) and cut == other["cut"] == pytest.approx(whole_cut)
    assert m["map"] == other["map"] == pytest.approx(whole["map"])
