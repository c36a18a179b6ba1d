"""Fine-tuning: --init from torchvision files and runs, frozen stages and BatchNorm, the head-only
warm-up and the backbone's learning rate."""

from __future__ import annotations

import shutil

import pytest
import torch
import torchvision

from resnetkit import TrainConfig, create_model, train
from resnetkit.cli.main import main
from resnetkit.engine.finetune import initialize_from


@pytest.fixture(scope="module")
def pretrained(cifar_folder, tmp_path_factory):
    """A resnet20 trained on 3 of the 5 classes: the "pretrained" model of these tests."""
    root = tmp_path_factory.mktemp("pre")
    data = root / "three"
    for split in ("train", "val"):
        for cls in ("airplane", "automobile", "cat"):
            shutil.copytree(cifar_folder / split / cls, data / split / cls)
    summary = train(TrainConfig(data=str(data), epochs=2, batch_size=32, quiet=True, device="cpu",
                                out=str(root / "run"), seed=1))
    return summary.run_dir


@pytest.fixture(scope="module")
def two_classes(cifar_folder, tmp_path_factory):
    data = tmp_path_factory.mktemp("two") / "data"
    for split in ("train", "val"):
        for cls in ("frog", "ship"):
            shutil.copytree(cifar_folder / split / cls, data / split / cls)
    return data


def test_init_from_a_run_keeps_the_backbone_and_resets_the_head(pretrained):
    source = torch.load(pretrained / "best.pt", weights_only=True)["model"]
    model = create_model("resnet20", num_classes=2)
    report = initialize_from(model, pretrained, ["frog", "ship"])
    state = model.state_dict()
    assert torch.equal(state["layer3.2.conv2.weight"], source["layer3.2.conv2.weight"])
    assert state["fc.weight"].shape == (2, 64) and "classifier left freshly initialized" in " ".join(report)
    # Same number of classes but other names: the head must not be kept either.
    three = create_model("resnet20", num_classes=3)
    initialize_from(three, pretrained, ["frog", "ship", "truck"])
    assert not torch.equal(three.state_dict()["fc.weight"], source["fc.weight"])
    same = create_model("resnet20", num_classes=3)
    initialize_from(same, pretrained, ["airplane", "automobile", "cat"])
    assert torch.equal(same.state_dict()["fc.weight"], source["fc.weight"])


def test_init_from_torchvision_adapts_channels_and_classifier(tmp_path):
    path = tmp_path / "resnet18.pth"
    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), path)
    model = create_model("resnet18", num_classes=4, in_chans=1)
    report = " ".join(initialize_from(model, path, list("abcd")))
    assert "conv1.weight adapted from 3 to 1 input channels" in report
    assert torch.allclose(model.conv1.weight, reference.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(model.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var)


def test_init_of_another_architecture_names_the_file(tmp_path, capsys):
    path = tmp_path / "vgg.pth"
    torch.save(torchvision.models.vgg11().state_dict(), path)
    assert main(["train", "--init", str(path), "--model", "resnet18", "--epochs", "1", "--quiet",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"checkpoint {path} does not fit model resnet18" in err and "missing in the file" in err
    assert main(["train", "--init", str(tmp_path / "nothing.pth"), "--quiet"]) == 2
    assert "--init" in capsys.readouterr().err


def test_frozen_stages_and_head_only_warm_up(pretrained, two_classes, tmp_path):
    before = torch.load(pretrained / "best.pt", weights_only=True)["model"]
    out = tmp_path / "ft"
    summary = train(TrainConfig(data=str(two_classes), init=str(pretrained), freeze_stages=2, head_only_epochs=1,
                                epochs=1, batch_size=32, lr=0.05, quiet=True, device="cpu", out=str(out)))
    after = torch.load(out / "last.pt", weights_only=True)["model"]
    # Stem and layer1 stay fixed for the whole run; in the head-only epoch so does everything but fc.
    for key in before:
        if key.startswith("fc.") or key.endswith("num_batches_tracked"):  # frozen BN keeps no counter
            continue
        assert torch.equal(before[key], after[key]), key
    assert not torch.equal(after["fc.bias"], torch.zeros(2))
    assert len(summary.history) == 1
    from resnetkit import load_run

    assert load_run(out).predict(sorted((two_classes / "val" / "ship").glob("*.jpg"))[:2])[0]["top_k"]


def test_after_the_warm_up_the_unfrozen_stages_learn(pretrained, two_classes, tmp_path):
    before = torch.load(pretrained / "best.pt", weights_only=True)["model"]
    out = tmp_path / "ft2"
    train(TrainConfig(data=str(two_classes), init=str(pretrained), freeze_stages=2, head_only_epochs=1,
                      backbone_lr_mult=0.1, epochs=2, batch_size=32, lr=0.05, quiet=True, device="cpu", out=str(out)))
    state = torch.load(out / "last.pt", weights_only=True)
    after = state["model"]
    assert torch.equal(before["conv1.weight"], after["conv1.weight"])  # stage 0: frozen
    assert torch.equal(before["layer1.0.conv1.weight"], after["layer1.0.conv1.weight"])  # stage 1: frozen
    assert not torch.equal(before["layer3.0.conv1.weight"], after["layer3.0.conv1.weight"])  # learns in epoch 2
    rates = sorted({g["initial_lr"] for g in state["optimizer"]["param_groups"]})
    assert rates[-1] / rates[0] == pytest.approx(10.0)  # the backbone at a tenth of the head's rate
