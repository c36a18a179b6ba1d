"""Options of every model (models/tweaks.py): patch whitening, Dirac initialization, BatchNorm settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from resnetkit import create_model
from resnetkit.models.tweaks import ModelTweaks, PatchWhitening, whitening_of


@pytest.fixture(scope="module")
def cifar_images(data_path):
    """200 real CIFAR-10 images, normalized per channel as a model's input would be."""
    files = sorted(data_path("cifar10/train").glob("*/*.jpg"))[::250][:200]
    x = torch.stack([torch.from_numpy(np.asarray(Image.open(f).convert("RGB"))).permute(2, 0, 1) for f in files]).float()
    x = x / 255
    return (x - x.mean((0, 2, 3), keepdim=True)) / x.std((0, 2, 3), keepdim=True)


def _patch_covariance(images, k):
    patches = images.unfold(2, k, 1).unfold(3, k, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, images.shape[1] * k * k)
    return (patches.T.double() @ patches.double()) / patches.shape[0]


def test_whitening_makes_the_patch_covariance_the_identity(cifar_images):
    layer = PatchWhitening(3, 2, eps=1e-8)
    assert not bool(layer.fitted) and layer.out_chans == 24
    layer.fit(cifar_images)
    assert bool(layer.fitted)
    with torch.no_grad():
        out = layer.conv(cifar_images)  # before the activation
    # The first 12 channels are the whitened patches, the other 12 their negatives.
    half = out[:, :12].permute(0, 2, 3, 1).reshape(-1, 12).double()
    covariance = half.T @ half / half.shape[0]
    torch.testing.assert_close(covariance, torch.eye(12, dtype=torch.float64), atol=2e-3, rtol=0)
    torch.testing.assert_close(out[:, 12:], -out[:, :12])
    # Real image patches are far from white before: neighbouring pixels correlate strongly.
    before = _patch_covariance(cifar_images, 2)
    assert before[0, 1] > 0.5


def test_whitening_takes_one_channel_and_non_square_images_and_names_what_it_cannot(cifar_images):
    gray = cifar_images.mean(1, keepdim=True)[:, :, :, :24]  # 32 x 24
    layer = PatchWhitening(1, 3)
    layer.fit(gray)
    assert layer(gray).shape == (200, 18, 30, 22)
    with pytest.raises(ValueError, match=r"whitening needs \(N, 1, H, W\) images"):
        layer.fit(cifar_images)
    with pytest.raises(ValueError, match="need images of at least 3x3 pixels"):
        layer.fit(gray[:, :, :2, :2])
    with pytest.raises(ValueError, match="are the training images constant"):
        PatchWhitening(1, 2, eps=0.0).fit(torch.zeros(4, 1, 8, 8))


def test_any_model_takes_a_whitening_layer_in_its_model_args():
    model = create_model("resnet20", whiten=2, in_chans=1)
    assert isinstance(whitening_of(model), PatchWhitening) and model.in_chans == 1
    assert model.data_config.input_size == (1, 32, 32)  # the raw input, not the whitened channels
    assert model.conv1.in_channels == 8  # 2 * 1 * 2 * 2
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    assert {"whiten.conv.weight", "whiten.conv.bias", "whiten.fitted"} <= set(model.state_dict())
    assert not model.whiten.conv.weight.requires_grad  # frozen: only the bias may learn
    plain = create_model("resnet20")
    assert whitening_of(plain) is None and "whiten.conv.weight" not in plain.state_dict()
    with pytest.raises(ValueError, match="whiten is the patch size"):
        create_model("resnet20", whiten=9)


def test_dirac_init_makes_3x3_convs_start_as_identities():
    model = create_model("resnet9_s", dirac_init=True)
    conv = model.layer1[1].res1.conv  # 64 -> 64
    x = torch.randn(1, 64, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(conv(x), x)
    wider = model.layer2[0].conv  # 64 -> 128: the first 64 outputs copy the inputs, the rest stay random
    with torch.no_grad():
        y = wider(x)
    torch.testing.assert_close(y[:, :64], x)
    assert y[:, 64:].abs().mean() > 0.01


def test_batchnorm_settings_reach_every_batchnorm():
    model = create_model("resnet9_s", bn_eps=1e-12, bn_momentum=0.4, bn_frozen_scale=True)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.eps == 1e-12 and m.momentum == 0.4 for m in norms)
    assert all(not m.weight.requires_grad and bool((m.weight == 1).all()) for m in norms)
    assert all(m.bias.requires_grad for m in norms)
    for bad, match in (({"bn_eps": 0}, "bn_eps"), ({"bn_momentum": 2}, "bn_momentum"),
                       ({"dirac_init": "yes"}, "dirac_init")):
        with pytest.raises((TypeError, ValueError), match=match):
            create_model("resnet20", **bad)


def test_a_run_with_every_tweak_loads_back_and_exports_the_whitening(tmp_path):
    from resnetkit.engine import TrainConfig, train
    from resnetkit.engine.inference import load_run
    from resnetkit.export import export_model, load_exported

    args = {"whiten": 2, "dirac_init": True, "bn_eps": 1e-12, "bn_momentum": 0.4, "bn_frozen_scale": True}
    run = train(TrainConfig(data="digits", model="resnet20", model_args=args, epochs=1, quiet=True,
                            out=str(tmp_path / "run"), img_size=16)).run_dir
    loaded = load_run(run)
    whitening = whitening_of(loaded.model)
    assert whitening is not None and bool(whitening.fitted) and whitening.conv.weight.abs().sum() > 0
    assert all(m.eps == 1e-12 for m in loaded.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert ModelTweaks.take(dict(args)).given() == args
    x = torch.randn(4, 1, 16, 16)
    path = tmp_path / "whitened.onnx"
    export_model(loaded.model, path, "onnx", input_spec=loaded.input_spec, classes=loaded.classes)
    with torch.no_grad():
        torch.testing.assert_close(load_exported(path).module(x), loaded.model(x), atol=1e-4, rtol=1e-4)
