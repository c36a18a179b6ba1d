"""``resnetkit export`` on a trained run: parity on real validation images, and the files in evaluate/predict."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from resnetkit.cli.main import main
from resnetkit.engine.inference import LoadedExport, load_model, load_run
import resnetkit.export.formats as formats
from resnetkit.export import load_exported

EXTENSIONS = {"onnx": "onnx", "torchscript": "pt", "pt2": "pt2"}


@pytest.fixture(scope="module")
def exported(image_run, tmp_path_factory):
    """The run exported once to each format through the command line."""
    folder = tmp_path_factory.mktemp("exported")
    paths = {}
    for fmt, ext in EXTENSIONS.items():
        path = folder / f"model.{ext}"
        assert main(["export", "--checkpoint", str(image_run), "--format", fmt, "--out", str(path)]) == 0
        paths[fmt] = path
    return paths


def test_export_checks_parity_on_the_runs_validation_images(exported, capsys):
    for fmt, path in exported.items():
        record = json.loads(path.with_name(path.name + ".parity.json").read_text())
        assert record["passed"] is True and record["format"] == fmt
        assert record["samples"] == 100  # the whole validation split (fewer than 1,000)
        assert record["fp32"]["top1_agreement"] >= 0.999
        assert 0 <= record["fp32"]["max_abs_diff"] < 1e-3
        assert record["fp32"]["reference_accuracy"] == record["fp32"]["candidate_accuracy"]
        assert "validation split" in record["data"] and record["input"] == "image"


def test_exported_files_evaluate_like_the_run(image_run, exported, cifar_folder, capsys):
    assert main(["evaluate", "--checkpoint", str(image_run), "--data", str(cifar_folder), "--precision", "fp32",
                 "--json"]) == 0
    reference = json.loads(capsys.readouterr().out)
    for fmt, path in exported.items():
        assert main(["evaluate", "--checkpoint", str(path), "--data", str(cifar_folder), "--json"]) == 0
        metrics = json.loads(capsys.readouterr().out)
        assert metrics["num_samples"] == reference["num_samples"] == 100
        assert metrics["top1"] == pytest.approx(reference["top1"], abs=0.011), fmt  # at most one image apart
        assert metrics["loss"] == pytest.approx(reference["loss"], rel=1e-3), fmt
        assert set(metrics["per_class"]) == set(reference["per_class"])


def test_exported_file_matches_classes_by_name(exported, cifar_folder, tmp_path):
    # Two of the classes, in another order than the model's: labels must follow the names.
    sub = tmp_path / "subset"
    for name in ("ship", "cat"):
        shutil.copytree(cifar_folder / "val" / name, sub / name)
    loaded = load_model(exported["onnx"])
    assert isinstance(loaded, LoadedExport) and loaded.classes == ["airplane", "automobile", "cat", "frog", "ship"]
    result = loaded.evaluate(sub)
    assert result.metrics["per_class"]["ship"]["support"] == 20 and result.metrics["per_class"]["cat"]["support"] == 20
    assert result.metrics["per_class"]["airplane"]["support"] == 0
    preds = loaded.predict([sub], top_k=1)
    hits = sum(p["top_k"][0]["class"] == p["source"].split("/")[-2] for p in preds)
    assert result.accuracy == pytest.approx(hits / len(preds), abs=1e-6)


def test_predict_with_every_format_agrees_with_the_run(image_run, exported, cifar_folder, capsys):
    files = sorted((cifar_folder / "val" / "frog").glob("*.jpg"))[:6]
    run = load_run(image_run)
    expected = run.predict(files, top_k=3, amp="off")
    for fmt, path in exported.items():
        loaded = load_model(path)
        assert loaded.kind == "image" and loaded.model_name == "resnet20" and loaded.format == fmt
        got = loaded.predict(files, top_k=3)
        for e, g in zip(expected, got):
            assert [t["class"] for t in g["top_k"]] == [t["class"] for t in e["top_k"]]
            assert g["top_k"][0]["probability"] == pytest.approx(e["top_k"][0]["probability"], abs=1e-4)
        assert main(["predict", "--checkpoint", str(path), str(files[0]), "--json"]) == 0
        line = json.loads(capsys.readouterr().out.splitlines()[0])
        assert line["top_k"][0]["class"] == expected[0]["top_k"][0]["class"]


def test_a_broken_export_fails_and_is_marked(image_run, tmp_path, monkeypatch, capsys):
    """An exporter that changes the function (here: a scaled and shifted logit) must not pass the parity check."""
    real = formats._WRITERS["onnx"]

    class Perturbed(torch.nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, x):
            logits = self.module(x)
            return logits + torch.linspace(0, 3, logits.shape[1])  # favours the last classes

    def broken(graph, path, meta):
        real(formats.ExportGraph(Perturbed(graph.module), graph.input, graph.example, graph.notes), path, meta)

    monkeypatch.setitem(formats._WRITERS, "onnx", broken)
    out = tmp_path / "broken.onnx"
    assert main(["export", "--checkpoint", str(image_run), "--format", "onnx", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "parity check failed" in err and str(out) in err and "top-1 agreement" in err
    assert not out.exists() and (tmp_path / "broken.onnx.failed").is_file()
    record = json.loads((tmp_path / "broken.onnx.parity.json").read_text())
    assert record["passed"] is False and record["fp32"]["top1_agreement"] < 0.999
    assert record["fp32"]["max_abs_diff"] > 1.0


@pytest.mark.slow
def test_int8_onnx_export_measures_its_cost(image_run, cifar_folder, tmp_path, capsys):
    out = tmp_path / "int8.onnx"
    assert main(["export", "--checkpoint", str(image_run), "--format", "onnx", "--out", str(out), "--int8",
                 "--calibrate", "128"]) == 0
    assert "int8" in capsys.readouterr().out
    record = json.loads((tmp_path / "int8.onnx.parity.json").read_text())
    fp32, int8 = record["fp32"], record["int8"]
    assert fp32["top1_agreement"] >= 0.999
    assert int8["top1_agreement"] >= 0.9
    assert abs(int8["candidate_accuracy"] - fp32["reference_accuracy"]) <= 0.05
    assert int8["max_abs_diff"] > 0  # it is really quantized
    loaded = load_model(out)
    assert loaded.precision == "int8"
    assert any("quantize_static" in note for note in load_exported(out).metadata.notes)
    import onnx

    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format
    assert not list(tmp_path.glob(".int8.onnx.*"))  # the temporary fp32/int8 files are gone
    with pytest.raises(ValueError, match="runs in its own precision"):
        loaded.evaluate(cifar_folder, precision="bf16")


@pytest.mark.slow
def test_pytorch_int8_evaluates_close_to_fp32(image_run, cifar_folder, capsys):
    assert main(["evaluate", "--checkpoint", str(image_run), "--data", str(cifar_folder), "--amp", "off",
                 "--json"]) == 0
    fp32 = json.loads(capsys.readouterr().out)
    assert main(["evaluate", "--checkpoint", str(image_run), "--data", str(cifar_folder), "--precision", "int8",
                 "--json"]) == 0
    int8 = json.loads(capsys.readouterr().out)
    assert int8["num_samples"] == 100
    assert abs(int8["top1"] - fp32["top1"]) <= 0.05
    assert int8["loss"] != fp32["loss"]  # really another model, not the fp32 one
