"""Weights from files: torchvision and timm checkpoints load strictly and compute the same."""

from __future__ import annotations

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from resnetkit import CheckpointError, create_model, load_checkpoint


def _randomize_bn_stats(model: torch.nn.Module) -> None:
    # Fresh BNs are identities in eval mode; random statistics make the comparison bite.
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_checkpoint_loads_strictly_and_matches(tmp_path, name):
    torch.manual_seed(0)
    ref = getattr(torchvision.models, name)().eval()
    _randomize_bn_stats(ref)
    path = tmp_path / f"{name}_tv.pth"
    torch.save(ref.state_dict(), path)

    ours = create_model(name, checkpoint_path=path).eval()
    # The file alone must give torchvision's outputs; the names are torchvision's (strict load).
    assert set(ours.state_dict()) == set(ref.state_dict())
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["resnet50", "resnet50d", "seresnet50"])
def test_timm_checkpoint_loads_strictly_and_matches(tmp_path, name):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    ref = timm.create_model(name, pretrained=False).eval()
    _randomize_bn_stats(ref)
    path = tmp_path / f"{name}_timm.safetensors"
    save_file(ref.state_dict(), str(path))
    ours = create_model(name, checkpoint_path=path).eval()
    assert set(ours.state_dict()) == set(ref.state_dict())
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5, rtol=0)


def test_module_prefix_and_nesting_are_stripped(tmp_path):
    ref = torchvision.models.resnet18()
    path = tmp_path / "ddp.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}, path)
    ours = load_checkpoint(create_model("resnet18"), path)
    assert torch.equal(ours.conv1.weight, ref.conv1.weight)


def test_grayscale_conv1_is_adapted_from_rgb(tmp_path):
    torch.manual_seed(0)
    ref = torchvision.models.resnet18().eval()
    path = tmp_path / "rgb.pth"
    torch.save(ref.state_dict(), path)
    gray = create_model("resnet18", in_chans=1, checkpoint_path=path).eval()
    x = torch.randn(2, 1, 64, 64)
    # A gray image is R=G=B: the summed filters give the RGB model's response exactly.
    with torch.no_grad():
        assert torch.allclose(gray(x), ref(x.expand(-1, 3, -1, -1)), atol=1e-4)


def test_multispectral_conv1_keeps_scale(tmp_path):
    ref = torchvision.models.resnet18()
    path = tmp_path / "rgb.pth"
    torch.save(ref.state_dict(), path)
    model = create_model("resnet18", in_chans=6, checkpoint_path=path)
    w = model.conv1.weight
    assert w.shape[1] == 6
    assert torch.allclose(w.sum(1), ref.conv1.weight.sum(1), atol=1e-5)


def test_other_number_of_classes_replaces_classifier(tmp_path):
    ref = torchvision.models.resnet18()
    path = tmp_path / "in1k.pth"
    torch.save(ref.state_dict(), path)
    model = create_model("resnet18", num_classes=10, checkpoint_path=path)
    assert model.fc.out_features == 10
    assert torch.equal(model.layer4[1].conv2.weight, ref.layer4[1].conv2.weight)


def test_checkpoint_of_another_model_lists_keys(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(CheckpointError) as err:
        create_model("resnet50", checkpoint_path=path)
    msg = str(err.value)
    assert str(path) in msg and "resnet50" in msg
    assert "missing in the file" in msg and "layer1.0.conv3.weight" in msg
    assert "shape mismatch" in msg


def test_corrupt_and_empty_files_are_named(tmp_path):
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pth.*empty"):
        create_model("resnet18", checkpoint_path=empty)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read .*junk.pth.*expected a .pth"):
        create_model("resnet18", checkpoint_path=junk)
    with pytest.raises(CheckpointError, match="does not exist"):
        create_model("resnet18", checkpoint_path=tmp_path / "nope.pth")


def test_freeze_stages_and_batchnorm():
    from torchvision.ops.misc import FrozenBatchNorm2d

    from resnetkit import freeze_batchnorm, freeze_stages

    model = freeze_stages(create_model("resnet18"), 2)
    assert not any(p.requires_grad for p in model.conv1.parameters())
    assert not any(p.requires_grad for p in model.layer1.parameters())
    assert all(p.requires_grad for p in model.layer2.parameters())
    assert isinstance(model.bn1, FrozenBatchNorm2d) and isinstance(model.layer1[0].bn1, FrozenBatchNorm2d)
    assert isinstance(model.layer2[0].bn1, torch.nn.BatchNorm2d)
    model.train()
    out = model(torch.randn(2, 3, 64, 64))
    out.sum().backward()
    assert model.layer2[0].conv1.weight.grad is not None

    frozen = freeze_batchnorm(create_model("resnet18"))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in frozen.modules())
    # Keys are unchanged, so a normal checkpoint still loads.
    frozen.load_state_dict(torchvision.models.resnet18().state_dict(), strict=True)


def test_torchvision_googlenet_with_aux_heads_loads(tmp_path):
    ref = torchvision.models.googlenet(aux_logits=True, init_weights=True)
    path = tmp_path / "googlenet.pth"
    torch.save(ref.state_dict(), path)
    ours = create_model("googlenet", checkpoint_path=path)
    assert torch.equal(ours.inception5b.branch4[1].conv.weight, ref.inception5b.branch4[1].conv.weight)
