"""`--pretrained` on the command line: models, predict and train, with the torch.hub cache in a temporary TORCH_HOME."""

from __future__ import annotations

import json
import urllib.error

import pytest
import torch
import torchvision
from PIL import Image
from safetensors.torch import load_file

from resnetkit.cli.main import main
from resnetkit.models import pretrained

IMAGENET = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]


def _resnet18_state() -> dict:
    torch.manual_seed(0)
    return torchvision.models.resnet18().state_dict()


def _no_network(monkeypatch) -> None:
    def refuse(url, dst, *args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(pretrained.torch.hub, "download_url_to_file", refuse)


def test_models_pretrained_lists_tags_accuracy_and_size(capsys):
    assert main(["models", "resnet*", "--pretrained"]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("resnet50 ") and "IMAGENET1K_V2" in row)
    assert "IMAGENET1K_V2 *" in line and "80.86" in line and "95.43" in line and "25.56M" in line and "97.8 MB" in line
    assert "232/224" in line
    assert "resnet20" not in out  # no published weights
    assert main(["models", "--pretrained", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    v1 = next(r for r in rows if r["model"] == "resnet50" and r["tag"] == "IMAGENET1K_V1")
    assert v1["acc1"] == 76.13 and v1["url"].endswith("resnet50-0676ba61.pth") and not v1["default"]
    assert {r["model"] for r in rows} >= set(pretrained.TORCHVISION_MODELS)


def test_models_pretrained_for_a_pattern_without_weights(capsys):
    assert main(["models", "resnet2*", "--pretrained"]) == 2
    err = capsys.readouterr().err
    assert "has published weights; models with weights: resnet18" in err


def _image(tmp_path):
    path = tmp_path / "photo.png"
    g = torch.Generator().manual_seed(0)
    Image.fromarray(torch.randint(0, 256, (40, 60, 3), generator=g, dtype=torch.uint8).numpy()).save(path)
    return path


def test_predict_with_published_weights_prints_imagenet_names(publish_weights, tmp_path, capsys):
    state = _resnet18_state()
    publish_weights("resnet18", state)
    image = _image(tmp_path)
    assert main(["predict", str(image), "--model", "resnet18", "--pretrained", "--top-k", "3", "--json",
                 "--precision", "fp32"]) == 0
    result = json.loads(capsys.readouterr().out)
    # The same three classes torchvision's model gives with the same weights and preprocessing.
    ref = torchvision.models.resnet18().eval()
    ref.load_state_dict(state)
    transform = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()
    with torch.no_grad():
        x = transform(Image.open(image).convert("RGB"))
        expected = ref(x[None]).softmax(1)[0].topk(3)
    assert [t["class"] for t in result["top_k"]] == [IMAGENET[i] for i in expected.indices]
    torch.testing.assert_close(torch.tensor([t["probability"] for t in result["top_k"]]), expected.values,
                               atol=1e-4, rtol=0)
    assert main(["predict", str(image), "--model", "resnet18", "--pretrained", "IMAGENET1K_V1", "--top-k", "1"]) == 0
    assert capsys.readouterr().out.strip() == f"{image}: {IMAGENET[expected.indices[0]]} {expected.values[0]:.3f}"


def test_predict_needs_a_checkpoint_or_a_model_with_pretrained(tmp_path, capsys):
    image = _image(tmp_path)
    assert main(["predict", str(image), "--model", "resnet18"]) == 2
    assert "--model NAME --pretrained [TAG]" in capsys.readouterr().err
    assert main(["predict", str(image), "--checkpoint", "run", "--model", "resnet18", "--pretrained"]) == 2
    assert "not both" in capsys.readouterr().err
    # `--pretrained FILE FILE2`: argparse gave the first file to --pretrained as its tag.
    assert main(["predict", "--model", "resnet18", "--pretrained", str(image), str(image)]) == 2
    assert "put the files before --model/--pretrained" in capsys.readouterr().err


def test_predict_offline_with_an_empty_cache_exits_2_naming_url_and_file(torch_home, tmp_path, monkeypatch, capsys):
    _no_network(monkeypatch)
    assert main(["predict", str(_image(tmp_path)), "--model", "resnet50", "--pretrained"]) == 2
    err = capsys.readouterr().err
    assert "https://download.pytorch.org/models/resnet50-11ad3fa6.pth" in err
    assert str(torch_home / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth") in err
    assert "Traceback" not in err


def test_train_offline_stops_before_reading_data(torch_home, tmp_path, monkeypatch, capsys):
    _no_network(monkeypatch)
    # A --data that does not exist: the message must be about the weights, which are fetched first.
    code = main(["train", "--model", "resnet18", "--pretrained", "--data", str(tmp_path / "nothing-here"),
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "resnet18-f37072fd.pth" in err and str(torch_home / "hub" / "checkpoints") in err
    assert "no network in tests" in err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags, message", [
    (["--model", "resnet20", "--pretrained"], "resnet20 has no published pretrained weights; models with weights: resnet18"),
    (["--model", "resnet18", "--pretrained", "IMAGENET1K_V2"], "its tags: IMAGENET1K_V1 (DEFAULT)"),
    (["--model", "resnet18", "--pretrained", "--init", "some.pth"], "not both"),
    (["--model", "resnet18", "--pretrained", "--whiten", "2"], "pretrained weights expect the image at conv1"),
])
def test_train_refuses_bad_pretrained_before_reading_data(flags, message, tmp_path, capsys):
    assert main(["train", *flags, "--data", str(tmp_path / "nothing-here"), "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err


def test_compare_refuses_a_model_without_weights_before_the_first_run(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--models", "resnet18,resnet20", "--pretrained", "--data", str(tmp_path / "none"),
                 "--out", str(out)]) == 2
    assert "resnet20 has no published pretrained weights" in capsys.readouterr().err
    assert not (out / "resnet18").exists()


def _tiny_folder(root):
    g = torch.Generator().manual_seed(0)
    for split, count in (("train", 8), ("val", 4)):
        for name in ("cat", "dog"):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = torch.randint(0, 256, (32, 32, 3), generator=g, dtype=torch.uint8).numpy()
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def test_train_from_published_weights(publish_weights, tmp_path):
    state = _resnet18_state()
    entry = publish_weights("resnet18", state)
    out = tmp_path / "run"
    # The stem stays fixed (--freeze-stages 1), so the trained conv1 must be the file's.
    assert main(["train", "--model", "resnet18", "--pretrained", "--data", str(_tiny_folder(tmp_path / "data")),
                 "--img-size", "32", "--freeze-stages", "1", "--max-steps", "1", "--batch-size", "16", "--quiet",
                 "--amp", "off", "--out", str(out)]) == 0
    weights = load_file(str(out / "best.safetensors"))
    torch.testing.assert_close(weights["conv1.weight"], state["conv1.weight"])
    assert not torch.equal(weights["layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])  # the rest trained
    assert weights["fc.weight"].shape == (2, 512)  # cat and dog: a fresh head
    info = json.loads((out / "data_config.json").read_text())
    assert info["model_data_config"]["mean"] == list(entry.data_config.mean)
    assert info["input"]["mean"] == list(entry.data_config.mean) and info["input"]["std"] == list(entry.data_config.std)
    config = (out / "config.yaml").read_text()
    assert "pretrained: true" in config and "init: null" in config
