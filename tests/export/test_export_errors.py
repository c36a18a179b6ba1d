"""Bad input to export, to the loader of exported files and to int8: one clear message that names the file."""

from __future__ import annotations

import pytest
import torch

from resnetkit import create_model, optimize_for_inference
from resnetkit.cli.main import main
from resnetkit.data import ImageInputSpec
from resnetkit.engine.exporting import export_run
from resnetkit.engine.inference import load_model
from resnetkit.export import export_model, load_exported
from resnetkit.export.metadata import ExportMetadata, from_onnx_props

CLASSES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory):
    model = create_model("resnet20", num_classes=3).eval()
    path = tmp_path_factory.mktemp("onnx") / "small.onnx"
    export_model(model, path, "onnx", input_spec=ImageInputSpec(3, (32, 32), (0.5,) * 3, (0.25,) * 3), classes=CLASSES)
    return path


def _rewrite_metadata(src, dst, change):
    import onnx

    proto = onnx.load(str(src))
    values = from_onnx_props({p.key: p.value for p in proto.metadata_props})
    change(values)
    del proto.metadata_props[:]
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else __import__("json").dumps(value)
    onnx.save(proto, str(dst))
    return dst


def test_unknown_format(capsys, tmp_path):
    assert main(["export", "--checkpoint", str(tmp_path), "--format", "tflite"]) == 2
    assert "unknown export format 'tflite'; allowed: onnx, torchscript, pt2" in capsys.readouterr().err


def test_run_that_does_not_exist(capsys, tmp_path):
    missing = tmp_path / "no-such-run"
    assert main(["export", "--checkpoint", str(missing), "--format", "onnx"]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "does not exist" in err
    with pytest.raises(FileNotFoundError, match="no-such-run"):
        export_run(missing, "onnx")


def test_onnx_file_without_resnetkit_metadata(tmp_path, capsys):
    # Someone else's ONNX model: a graph, but no classes and no preprocessing.
    path = tmp_path / "foreign.onnx"
    torch.onnx.export(torch.nn.Linear(4, 2), (torch.randn(2, 4),), str(path), dynamo=True, verbose=False)
    with pytest.raises(ValueError, match="foreign.onnx carries no resnetkit metadata"):
        load_exported(path)
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(image)
    assert main(["predict", "--checkpoint", str(path), str(image)]) == 2
    assert "foreign.onnx carries no resnetkit metadata" in capsys.readouterr().err


def test_onnx_file_without_class_names(small_onnx, tmp_path):
    path = _rewrite_metadata(small_onnx, tmp_path / "nameless.onnx", lambda v: v.pop("classes"))
    with pytest.raises(ValueError, match="nameless.onnx: its resnetkit metadata lacks classes"):
        load_model(path)


def test_onnx_file_of_another_model(small_onnx, tmp_path):
    # The metadata of a 10-class, 1-channel model on the graph of a 3-class RGB one.
    def other(values):
        values["classes"] = [str(i) for i in range(10)]
        values["input_shape"] = [1, 40, 101]

    path = _rewrite_metadata(small_onnx, tmp_path / "mixed.onnx", other)
    with pytest.raises(ValueError, match="mixed.onnx: the graph takes input of shape .* does not belong"):
        load_exported(path)


def test_truncated_file(small_onnx, tmp_path):
    path = tmp_path / "cut.onnx"
    path.write_bytes(small_onnx.read_bytes()[:5000])
    with pytest.raises(ValueError, match="cannot read .*cut.onnx as onnx"):
        load_exported(path)


def test_metadata_of_a_newer_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown metadata format"):
        ExportMetadata.from_dict({"format": "resnetkit-export-99", "classes": ["a"]}, tmp_path / "f.onnx")


def test_int8_needs_onnx_and_calibration_samples(capsys, tmp_path):
    assert main(["export", "--checkpoint", str(tmp_path), "--format", "pt2", "--int8"]) == 2
    assert "--int8 writes ONNX files" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(tmp_path), "--format", "onnx", "--int8", "--calibrate", "0"]) == 2
    assert "--calibrate must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("calibration,message", [
    (None, "int8 needs calibration samples"),
    (torch.empty(0, 3, 32, 32), "calibration set is empty"),
    ([], "calibration set is empty"),
    (torch.randn(4, 1, 40, 101), "calibration inputs have 1 channels, resnet20 takes 3"),
    ([torch.zeros(4, 3, 32, 32, dtype=torch.uint8)], "must be float tensors"),
    ("cifar10", "must be a tensor of model inputs or an iterable of batches"),
])
def test_bad_calibration_sets(calibration, message):
    with pytest.raises(ValueError, match=message):
        optimize_for_inference(create_model("resnet20"), precision="int8", calibration=calibration, compile=False)


def test_calibration_of_the_wrong_kind_on_the_command_line(image_run, audio_data, capsys):
    # Audio recordings to calibrate an image model: no images in that folder.
    assert main(["export", "--checkpoint", str(image_run), "--format", "onnx", "--int8", "--out",
                 str(image_run / "x.onnx"), "--calibration-data", str(audio_data)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(audio_data) in err
    assert not (image_run / "x.onnx").exists()


def test_out_with_another_formats_extension(image_run, capsys):
    assert main(["export", "--checkpoint", str(image_run), "--format", "onnx", "--out", "model.pt2"]) == 2
    assert "--out model.pt2 names a pt2 file, but --format is onnx" in capsys.readouterr().err


def test_precision_and_amp_must_agree(image_run, cifar_folder, capsys):
    assert main(["evaluate", "--checkpoint", str(image_run), "--data", str(cifar_folder), "--precision", "int8",
                 "--amp", "bf16"]) == 2
    assert "--precision int8 and --amp bf16 disagree" in capsys.readouterr().err
