"""Grad-CAM and Grad-CAM++ on our models: shapes on every family, captum as reference, and a test
that can fail: the map must find the evidence a trained model uses, and must not on a model
trained on shuffled labels."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import resnetkit
from resnetkit.explain import default_layer, explain, grad_cam

FAMILIES = [  # (model, input size): one per family, small inputs
    ("resnet20", (3, 32, 32)), ("resnet18", (3, 64, 64)), ("preact_resnet20", (3, 32, 32)),
    ("plain20", (3, 32, 32)), ("vgg11_bn_cifar", (3, 32, 32)), ("googlenet_cifar", (3, 32, 32)),
    ("res8", (1, 40, 101)), ("seresnet18", (3, 64, 64)), ("resnet9_s", (3, 32, 32)),
]


@pytest.mark.parametrize("name,size", FAMILIES)
@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_every_family_gives_maps_at_input_size(name, size, method):
    torch.manual_seed(0)
    model = resnetkit.create_model(name, num_classes=4, in_chans=size[0]).train()
    x = torch.randn(2, *size)
    found = grad_cam(model, x, method=method)
    assert found.maps.shape == (2, *size[1:])
    assert torch.isfinite(found.maps).all() and found.maps.min() >= 0 and found.maps.max() <= 1
    assert found.targets.tolist() == found.probabilities.argmax(1).tolist()
    assert model.training, "the model's mode is restored"
    assert all(p.grad is None for p in model.parameters()), "no parameter gradient accumulates"


def test_default_layer_is_the_last_stage_without_its_final_pool():
    assert default_layer(resnetkit.create_model("resnet20"))[0] == "layer3"
    assert default_layer(resnetkit.create_model("preact_resnet20"))[0] == "act"
    name, layer = default_layer(resnetkit.create_model("vgg11_bn_cifar"))
    # VGG's last stage ends with a max pool: the map is read before it (4x4, not 1x1, at 32x32).
    assert not isinstance(layer, nn.MaxPool2d), name


def test_matches_captum_layer_gradcam():
    captum_attr = pytest.importorskip("captum.attr")
    torch.manual_seed(0)
    model = resnetkit.create_model("resnet20", num_classes=5).eval()
    x = torch.randn(3, 3, 32, 32)
    targets = [1, 4, 2]
    ours = grad_cam(model, x, target=targets, normalize=False).maps
    reference = captum_attr.LayerGradCam(model, model.layer3).attribute(x, target=targets, relu_attributions=True)
    reference = captum_attr.LayerAttribution.interpolate(reference, (32, 32), interpolate_mode="bilinear")[:, 0]
    torch.testing.assert_close(ours, reference.clamp_min(0), rtol=1e-4, atol=1e-6)
    assert ours.abs().sum() > 0


def test_top_level_explain_and_arguments():
    model = resnetkit.create_model("resnet20", num_classes=3).eval()
    x = torch.randn(2, 3, 32, 32)
    assert resnetkit.explain is explain
    assert resnetkit.explain(model, x, target=2).shape == (2, 32, 32)
    assert explain(model, x, layer="layer2").shape == (2, 32, 32)
    with pytest.raises(ValueError, match="out of range"):
        explain(model, x, target=3)
    with pytest.raises(ValueError, match="one per input"):
        explain(model, x, target=[0, 1, 2])
    with pytest.raises(ValueError, match="no module named 'layer9'"):
        explain(model, x, layer="layer9")
    with pytest.raises(ValueError, match="method"):
        explain(model, x, method="lime")
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(TypeError, match="pass layer="):
        explain(plain, x)
    assert explain(plain, x, layer=plain[1]).shape == (2, 32, 32)


# --- the test that can fail ------------------------------------------------------------------
COLOURS = torch.tensor([[1.0, 0.2, 0.2], [0.2, 1.0, 0.2], [0.2, 0.2, 1.0], [1.0, 1.0, 0.2]])
SQUARE = 8


def _squares(n: int, generator: torch.Generator):
    """Noise images with one 8x8 square whose colour is the class, anywhere in the image."""
    x = torch.rand(n, 3, 32, 32, generator=generator) * 0.6
    labels = torch.randint(0, 4, (n,), generator=generator)
    corners = torch.randint(0, 32 - SQUARE + 1, (n, 2), generator=generator)
    for i, ((r, c), label) in enumerate(zip(corners.tolist(), labels.tolist())):
        x[i, :, r : r + SQUARE, c : c + SQUARE] = COLOURS[label][:, None, None]
    return x, labels, corners


def _train(x, y, seed=0, epochs=6):
    torch.manual_seed(seed)
    model = resnetkit.create_model("resnet20", num_classes=4, widths=(8, 16, 32))
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x), 32):
            idx = order[i : i + 32]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def _peak_in_square(model, x, corners, method):
    maps = explain(model, x, method=method)
    peaks = maps.flatten(1).argmax(1)
    rows, cols = peaks // 32, peaks % 32
    top, left = corners[:, 0], corners[:, 1]
    inside = (rows >= top) & (rows < top + SQUARE) & (cols >= left) & (cols < left + SQUARE)
    return inside.float().mean().item()


@pytest.fixture
def one_thread():
    # These 8-32 channel convs gain little from a second thread and lose much (10x seen) when
    # other jobs share the cores and the threads spin against them.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_map_peaks_on_the_evidence_and_not_for_shuffled_labels(one_thread):
    # The class is the colour of a square placed anywhere: the only evidence is inside it.
    # (Where the square is, e.g. its quadrant, is no such test: a deep net with global pooling
    # reads position from the padding borders, and its map peaks away from the square.)
    g = torch.Generator().manual_seed(1)
    x, y, _ = _squares(256, g)
    x_test, y_test, corners = _squares(48, g)
    model = _train(x, y)
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    assert accuracy > 0.9, accuracy
    shuffled = _train(x, y[torch.randperm(len(y), generator=torch.Generator().manual_seed(5))])
    for method in ("gradcam", "gradcam++"):
        trained_hits = _peak_in_square(model, x_test, corners, method)
        shuffled_hits = _peak_in_square(shuffled, x_test, corners, method)
        # Data seeds 1, 2, 3 gave 0.88, 0.81, 0.73 trained and at most 0.21 shuffled.
        assert trained_hits >= 0.65, (method, trained_hits)
        assert shuffled_hits <= 0.35, (method, shuffled_hits)
