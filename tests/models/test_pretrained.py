"""Published weights by name: the table, the cache and its hash check, loading into the zoo's models.

No test downloads anything: files are placed in a temporary ``TORCH_HOME`` (the ``publish_weights``
fixture of tests/conftest.py names a random state dict after its own sha256, as torchvision names
its files), and the offline case talks to a closed local port.
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest
import torch
import torchvision

from resnetkit.models import (
    PretrainedWeightsError,
    WeightsDownloadError,
    create_model,
    fetch_weights,
    list_pretrained,
    pretrained_models,
    pretrained_weights,
)
from resnetkit.models import pretrained

IMAGENET = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)


def _tv_resnet18_state(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    ref = torchvision.models.resnet18().eval()
    g = torch.Generator().manual_seed(seed)
    for m in ref.modules():  # fresh BNs are identities in eval mode: random statistics make comparisons bite
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return ref.state_dict()


# -- the table ----------------------------------------------------------------------------------------


def test_every_torchvision_model_has_its_published_weights_with_hash_and_metadata():
    for name in pretrained.TORCHVISION_MODELS:
        entries = list_pretrained(name)
        assert entries, name
        assert sum(w.default for w in entries) == 1, name
        assert entries[0].default  # listed first
        enum = torchvision.models.get_model_weights(name)
        assert pretrained_weights(name).tag == enum.DEFAULT.name
        for w in entries:
            assert w.url == enum[w.tag].url and w.filename.endswith(f"-{w.sha256_prefix}.pth")
            assert len(w.classes) == 1000 and w.acc1 > 60 and w.acc5 > w.acc1
    # vgg16's feature-only weights have no classifier (no categories, NaN accuracy): not offered.
    assert [w.tag for w in list_pretrained("vgg16")] == ["IMAGENET1K_V1"]


def test_preprocessing_is_the_publishers():
    v1, v2 = pretrained_weights("resnet50", "IMAGENET1K_V1"), pretrained_weights("resnet50", "IMAGENET1K_V2")
    assert (v1.resize_size, v1.data_config.input_size) == (256, (3, 224, 224))
    assert (v2.resize_size, v2.data_config.input_size) == (232, (3, 224, 224))  # V2 resizes to 232
    assert v2.data_config.mean == (0.485, 0.456, 0.406) and v2.data_config.interpolation == "bilinear"
    # GoogLeNet's weights expect torchvision's transform_input, i.e. (x - 0.5) / 0.5.
    assert pretrained_weights("googlenet").data_config.mean == (0.5, 0.5, 0.5)
    gray = v2.data_config_for(1)
    assert gray.input_size == (1, 224, 224) and gray.mean == (pytest.approx(sum(v2.data_config.mean) / 3),)


def test_tags_resolve_by_name_in_any_case_and_default():
    assert pretrained_weights("resnet50", True).tag == "IMAGENET1K_V2"
    assert pretrained_weights("resnet50", "default").tag == "IMAGENET1K_V2"
    assert pretrained_weights("resnet50", "imagenet1k_v1").url.endswith("resnet50-0676ba61.pth")


def test_unknown_tag_lists_the_models_tags():
    with pytest.raises(PretrainedWeightsError, match=r"no weights tagged 'IMAGENET1K_V3'; its tags: IMAGENET1K_V1, "
                       r"IMAGENET1K_V2 \(DEFAULT\)"):
        pretrained_weights("resnet50", "IMAGENET1K_V3")


def test_model_without_weights_lists_the_models_that_have_them():
    with pytest.raises(PretrainedWeightsError) as err:
        create_model("resnet20", pretrained=True)
    message = str(err.value)
    assert "resnet20 has no published pretrained weights" in message
    assert "resnet18, resnet34, resnet50" in message and "resnetkit models --pretrained" in message
    for bad in ("", 3):
        with pytest.raises(TypeError, match="pretrained must be True or a tag"):
            create_model("resnet18", pretrained=bad)


def _publisher_model(entry):
    if entry.source == "timm":
        import timm

        return timm.create_model(entry.model, pretrained=False)
    extra = {"aux_logits": False, "init_weights": False} if entry.model == "googlenet" else {}
    return torchvision.models.get_model(entry.model, **extra)


def test_every_entry_fits_the_publishers_model_strictly():
    # Names and shapes equal the publisher's model of the same name: its file loads with strict=True.
    for name in pretrained_models():
        entry = pretrained_weights(name)
        with torch.device("meta"):
            ours, theirs = create_model(name), _publisher_model(entry)
        mine = {k: v.shape for k, v in ours.state_dict().items()}
        publisher = {k: v.shape for k, v in theirs.state_dict().items()}
        assert mine == publisher, name


def test_timm_entries_come_with_a_hash_and_imagenet_classes():
    pytest.importorskip("timm")  # an optional dependency; without it these models simply have no weights
    entries = list_pretrained("resnet50d")
    assert entries[0].tag == "ra2_in1k" and entries[0].default and entries[0].source == "timm"
    for w in entries:
        assert w.filename.endswith(f"-{w.sha256_prefix}.pth") and w.classes == tuple(IMAGENET)
    # timm's a3 weights were trained and evaluated at 160 pixels, crop 0.95.
    a3 = pretrained_weights("resnet50d", "a3_in1k")
    assert a3.data_config.input_size == (3, 160, 160) and a3.resize_size == 168


# -- loading ------------------------------------------------------------------------------------------


def test_pretrained_model_loads_the_file_with_names_and_preprocessing(publish_weights, torch_home):
    state = _tv_resnet18_state()
    entry = publish_weights("resnet18", state)
    model = create_model("resnet18", pretrained=True).eval()
    ref = torchvision.models.resnet18().eval()
    ref.load_state_dict(state)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), atol=1e-5, rtol=0)
    assert model.class_names == list(IMAGENET) and model.class_names[0] == "tench"
    assert model.pretrained_cfg == entry and entry.cache_path.parent == torch_home / "hub" / "checkpoints"
    assert model.data_config == entry.data_config


def test_another_class_count_keeps_the_backbone_and_replaces_the_head(publish_weights):
    state = _tv_resnet18_state()
    publish_weights("resnet18", state)
    ten = create_model("resnet18", pretrained=True, num_classes=10)
    assert torch.equal(ten.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    assert ten.fc.out_features == 10 and ten.class_names is None
    headless = create_model("resnet18", pretrained=True, num_classes=0)
    assert headless(torch.randn(1, 3, 64, 64)).shape == (1, 512)
    gray = create_model("resnet18", pretrained=True, in_chans=1, num_classes=10)
    torch.testing.assert_close(gray.conv1.weight, state["conv1.weight"].sum(1, keepdim=True))
    assert gray.data_config.mean == (pytest.approx(sum(IMAGENET_MEAN) / 3),)
    features = create_model("resnet18", pretrained=True, features_only=True, out_indices=(3, 4))
    assert [f.shape[1] for f in features(torch.randn(1, 3, 64, 64))] == [256, 512]


def test_timm_weights_load_and_compute_as_timm(publish_weights):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    ref = timm.create_model("resnet18d", pretrained=False).eval()
    publish_weights("resnet18d", ref.state_dict())
    ours = create_model("resnet18d", pretrained=True).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=0)
    assert ours.data_config.interpolation == "bicubic" and len(ours.class_names) == 1000


def test_pretrained_and_checkpoint_path_are_exclusive(tmp_path):
    with pytest.raises(ValueError, match="not both"):
        create_model("resnet18", pretrained=True, checkpoint_path=tmp_path / "x.pth")


# -- the cache: wrong files, offline ------------------------------------------------------------------


def test_a_file_with_the_wrong_hash_is_refused_with_the_fix(torch_home):
    entry = pretrained_weights("resnet18")  # the real entry: resnet18-f37072fd.pth
    path = torch_home / "hub" / "checkpoints" / entry.filename
    path.parent.mkdir(parents=True)
    torch.save(_tv_resnet18_state(), path)  # a resnet18 file, but not the published one
    actual = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    with pytest.raises(PretrainedWeightsError) as err:
        create_model("resnet18", pretrained=True)
    message = str(err.value)
    assert str(path) in message and "f37072fd" in message and actual in message
    assert "Delete it and run again" in message and entry.url in message


def test_a_file_of_another_architecture_is_refused_by_the_strict_load(publish_weights):
    # resnet18's tensors under resnet50's name, with a name that matches their hash.
    entry = publish_weights("resnet50", _tv_resnet18_state())
    with pytest.raises(PretrainedWeightsError) as err:
        create_model("resnet50", pretrained=True)
    message = str(err.value)
    assert "resnet50 IMAGENET1K_V2 (torchvision) do not fit this resnet50" in message
    assert str(entry.cache_path) in message and "shape mismatch" in message and "missing in the file" in message
    assert f"delete {entry.cache_path} and run again" in message


def test_changed_architecture_options_do_not_fit_the_published_file(publish_weights):
    publish_weights("resnet18", _tv_resnet18_state())
    with pytest.raises(PretrainedWeightsError, match="default options"):
        create_model("resnet18", pretrained=True, width_mult=0.5)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_with_an_empty_cache_names_the_url_and_the_cache_file(torch_home, monkeypatch):
    real = pretrained_weights("resnet18")
    url = f"http://127.0.0.1:{_closed_port()}/models/{real.filename}"  # refused at once: no network needed
    monkeypatch.setattr(pretrained, "_entries", lambda name: (pretrained.dataclasses.replace(real, url=url),))
    with pytest.raises(WeightsDownloadError) as err:
        create_model("resnet18", pretrained=True)
    expected = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert err.value.url == url and err.value.path == expected
    assert url in str(err.value) and f"put it at\n  {expected}\n" in str(err.value)
    assert list(expected.parent.iterdir()) == []  # no temporary left behind


def test_a_download_is_checked_before_it_enters_the_cache(torch_home, tmp_path, monkeypatch):
    # file:// goes through torch.hub.download_url_to_file like https:// does.
    served = tmp_path / "served" / "resnet18-00000000.pth"
    served.parent.mkdir()
    torch.save(_tv_resnet18_state(), served)
    good = hashlib.sha256(served.read_bytes()).hexdigest()[:8]
    real = pretrained_weights("resnet18")
    bad_entry = pretrained.dataclasses.replace(real, url=served.as_uri(), sha256_prefix="00000000")
    with pytest.raises(PretrainedWeightsError, match="has sha256 .*nothing was kept"):
        fetch_weights(bad_entry, progress=False)
    assert not (torch_home / "hub" / "checkpoints" / served.name).exists()
    assert list((torch_home / "hub" / "checkpoints").iterdir()) == []
    good_entry = pretrained.dataclasses.replace(real, url=served.as_uri(), sha256_prefix=good)
    path = fetch_weights(good_entry, progress=False)
    assert path == torch_home / "hub" / "checkpoints" / served.name and path.read_bytes() == served.read_bytes()


def test_cache_follows_torch_home(torch_home):
    assert pretrained_weights("resnet50").cache_path == Path(torch_home) / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth"
