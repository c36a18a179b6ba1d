"""A ``.pt2`` file with a payload anywhere torch reads code from is refused by every loader; the payload never runs.

Each tampered file is built from a real export (``resnetkit.testing.hostile_files``). On the
torch of this project most of these payloads run under a plain ``torch.export.load`` (or when
its module is first called); ``benchmarks/hostile_inputs.py`` records which.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from resnetkit import create_model
from resnetkit.cli.main import main
from resnetkit.data import ImageInputSpec
from resnetkit.engine.inference import load_model
from resnetkit.export import export_model, load_exported
from resnetkit.serve.app import load_for_serving
from resnetkit.testing.hostile_files import PT2_PAYLOADS, old_layout_pt2, tampered_pt2

CLASSES = ["cat", "ship"]


@pytest.fixture(scope="module")
def genuine(tmp_path_factory):
    """A real pt2 export of a 2-class ResNet-20 (untrained: only the file's structure matters here)."""
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=len(CLASSES)).eval()
    path = tmp_path_factory.mktemp("pt2") / "genuine.pt2"
    spec = ImageInputSpec(3, (32, 32), (0.5,) * 3, (0.25,) * 3)
    export_model(model, path, "pt2", input_spec=spec, classes=CLASSES)
    return path, model


@pytest.fixture(scope="module")
def images(data_path, tmp_path_factory):
    """Real CIFAR-10 images of the two classes, in class folders."""
    root = tmp_path_factory.mktemp("images")
    for name in CLASSES:
        (root / name).mkdir()
        for f in sorted((data_path("cifar10/train") / name).glob("*.jpg"))[:4]:
            shutil.copy(f, root / name / f.name)
    return root


@pytest.mark.parametrize("place", list(PT2_PAYLOADS))
def test_payload_is_refused_by_every_loader(place, genuine, images, tmp_path, capsys):
    marker = tmp_path / "payload-ran"
    evil = tampered_pt2(genuine[0], place, tmp_path / "evil.pt2", marker)

    for load in (load_exported, load_model, load_for_serving):
        with pytest.raises(ValueError, match="evil.pt2") as refused:
            load(evil)
        assert "refused" in str(refused.value)
    photo = next((images / "cat").iterdir())
    assert main(["predict", "--checkpoint", str(evil), str(photo)]) == 2
    predict_err = capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(evil), "--data", str(images)]) == 2
    evaluate_err = capsys.readouterr().err
    for err in (predict_err, evaluate_err):
        assert f"{evil} " in err and "was refused" in err and "Nothing in it was run" in err
        assert "Traceback" not in err and "Logging error" not in err
    assert not marker.exists(), f"the payload in the {place} ran"


def test_genuine_files_of_both_layouts_load_and_agree_with_the_model(genuine, tmp_path):
    path, model = genuine
    old = old_layout_pt2(path, tmp_path / "old.pt2")  # as torch 2.4-2.6 wrote it
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    for file in (path, old):
        loaded = load_exported(file)
        assert loaded.format == "pt2" and loaded.classes == CLASSES
        torch.testing.assert_close(loaded.module(x), expected)


def test_a_truncated_archive_is_named_without_a_traceback(genuine, tmp_path, capsys):
    cut = tmp_path / "cut.pt2"
    cut.write_bytes(genuine[0].read_bytes()[:3000])
    photo = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (32, 32)).save(photo)
    assert main(["predict", "--checkpoint", str(cut), str(photo)]) == 2
    err = capsys.readouterr().err
    assert "cut.pt2" in err and "Traceback" not in err and "Logging error" not in err
