"""Training on real CIFAR-10 images: accuracy, run directory, evaluate and predict by class name."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch
from PIL import Image

from resnetkit.cli.main import main
from resnetkit.engine import TrainConfig, load_run, train

METRIC_KEYS = {"num_samples", "loss", "top1", "top5", "per_class", "confusion_matrix"}


@pytest.fixture(scope="module")
def trained_run(cifar_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "cifar5"
    config = TrainConfig(data=str(cifar_folder), model="resnet20", epochs=6, batch_size=32, lr=0.05,
                         quiet=True, out=str(out), seed=0)
    summary = train(config)
    return summary


def test_trains_well_above_chance(trained_run):
    # 5 classes: chance is 20%. 400 training images, 6 epochs, a few seconds.
    assert trained_run.best_val_acc > 0.35, trained_run.history
    assert trained_run.history[-1]["train_loss"] < trained_run.history[0]["train_loss"]


def test_run_directory_contents(trained_run):
    run = trained_run.run_dir
    for name in ("config.yaml", "classes.json", "data_config.json", "metrics.csv", "metrics.json",
                 "last.pt", "best.pt", "best.safetensors", "curves.png", "confusion.png", "examples.png"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert METRIC_KEYS <= set(metrics)
    assert metrics["num_samples"] == 100
    assert set(metrics["per_class"]) == {"airplane", "automobile", "cat", "frog", "ship"}
    assert set(metrics["per_class"]["cat"]) == {"precision", "recall", "f1", "support"}
    assert len(metrics["confusion_matrix"]) == 5
    for png in ("curves.png", "confusion.png", "examples.png"):
        with Image.open(run / png) as img:
            img.load()
            assert img.size[0] > 200
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert len(rows) == 6
    assert {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "images_per_sec", "seconds"} <= set(rows[0])
    assert json.loads((run / "classes.json").read_text()) == ["airplane", "automobile", "cat", "frog", "ship"]
    from safetensors import safe_open

    with safe_open(run / "best.safetensors", "pt") as f:
        assert "fc.weight" in f.keys() and f.metadata()["model_name"] == "resnet20"


def test_evaluate_maps_classes_by_name(trained_run, cifar_folder, tmp_path):
    loaded = load_run(trained_run.run_dir)
    # A folder with two of the classes, named in another order: labels must follow the names.
    sub = tmp_path / "subset"
    for name in ("ship", "cat"):
        shutil.copytree(cifar_folder / "val" / name, sub / name)
    result = loaded.evaluate(sub)
    loss, acc = result
    metrics = result.metrics
    assert metrics["per_class"]["ship"]["support"] == 20 and metrics["per_class"]["cat"]["support"] == 20
    assert metrics["per_class"]["airplane"]["support"] == 0
    # The same files through predict: the accuracy by hand equals evaluate's.
    preds = loaded.predict([sub], top_k=1)
    truth = [p["source"].split("/")[-2] for p in preds]
    hits = sum(p["top_k"][0]["class"] == t for p, t in zip(preds, truth))
    assert acc == pytest.approx(hits / len(preds), abs=1e-6)


def test_evaluate_unknown_class_lists_both_sets(trained_run, cifar_folder, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(cifar_folder / "val" / "cat", bad / "cat")
    shutil.copytree(cifar_folder / "val" / "ship", bad / "boat")
    with pytest.raises(ValueError, match=r"(?s)\['boat'\].*data classes.*model classes.*airplane"):
        load_run(trained_run.run_dir).evaluate(bad)


def test_cli_evaluate_json_and_predict(trained_run, cifar_folder, capsys):
    assert main(["evaluate", "--checkpoint", str(trained_run.run_dir), "--data", str(cifar_folder), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert METRIC_KEYS <= set(metrics) and metrics["num_samples"] == 100
    files = sorted((cifar_folder / "val" / "frog").glob("*.jpg"))[:3]
    assert main(["predict", "--checkpoint", str(trained_run.run_dir), *map(str, files), "--top-k", "3", "--json"]) == 0
    lines = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    assert len(lines) == 3 and len(lines[0]["top_k"]) == 3
    assert {t["class"] for t in lines[0]["top_k"]} <= {"airplane", "automobile", "cat", "frog", "ship"}
    assert sum(t["probability"] for t in lines[0]["top_k"]) <= 1.0 + 1e-6


def test_predict_accepts_tensors_and_pil(trained_run, cifar_folder):
    loaded = load_run(trained_run.run_dir)
    path = sorted((cifar_folder / "val" / "cat").glob("*.jpg"))[0]
    img = Image.open(path)
    by_path = loaded.predict(path, top_k=2)[0]["top_k"]
    by_pil = loaded.predict([img], top_k=2)[0]["top_k"]
    from torchvision.transforms.v2.functional import pil_to_tensor

    by_tensor = loaded.predict(pil_to_tensor(img.convert("RGB")), top_k=2)[0]["top_k"]
    assert by_path[0]["class"] == by_pil[0]["class"] == by_tensor[0]["class"]
    assert by_path[0]["probability"] == pytest.approx(by_tensor[0]["probability"], abs=1e-4)


def test_python_api_keras_style():
    from resnetkit import Trainer, create_model, evaluate
    from resnetkit.data.images import resolve_image_data

    splits = resolve_image_data("digits", seed=0)
    model = create_model("resnet20", in_chans=1, num_classes=10)
    history = Trainer(model, splits.train, splits.val, TrainConfig(epochs=2, quiet=True)).fit()
    assert len(history) == 2 and history[-1]["val_acc"] > 0.5
    # Keras' History: one list per metric, under Keras' names.
    assert history.history["val_accuracy"] == [row["val_acc"] for row in history]
    assert history.history["loss"][-1] == history[-1]["train_loss"] and history.epoch == [1, 2]
    loss, acc = result = evaluate(model, splits.val)  # Keras: loss, acc = model.evaluate(...)
    assert acc == pytest.approx(history[-1]["val_acc"], abs=1e-6)
    assert loss == pytest.approx(history[-1]["val_loss"], rel=1e-5)
    assert result.metrics["num_samples"] == len(splits.val)
