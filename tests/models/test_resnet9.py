"""ResNet-9 (Page 2018): its layout, sizes, and everything the zoo promises (backbone, export, int8, compare, benchmark)."""

from __future__ import annotations

import pytest
import torch

from resnetkit import create_model, model_stats
from resnetkit.models.resnet9 import ConvBlock, Residual, ResNet9


def test_pages_layout_and_sizes():
    model = create_model("resnet9")
    # prep conv, then conv -> pool -> BN -> activation per stage, a residual block after stages 1 and 3
    assert isinstance(model.prep, ConvBlock) and isinstance(model.prep.pool, torch.nn.Identity)
    for i, residual in ((1, True), (2, False), (3, True)):
        layer = getattr(model, f"layer{i}")
        block = layer[0]
        assert list(dict(block.named_children())) == ["conv", "pool", "bn", "act"]
        assert isinstance(block.pool, torch.nn.MaxPool2d)
        assert (len(layer) == 2 and isinstance(layer[1], Residual)) == residual
    # Page's ResNet-9 has 6.57M parameters; the named sizes are sized for an hour of a 2-core CPU.
    assert model_stats("resnet9")["params"] == 6_573_130
    assert round(model_stats("resnet9")["macs"] / 1e6) == 379
    assert round(model_stats("resnet9_m")["macs"] / 1e6) == 133
    assert round(model_stats("resnet9_s")["macs"] / 1e6) == 72


def test_logits_are_scaled_and_the_head_interface_holds():
    torch.manual_seed(0)
    model = create_model("resnet9_s", num_classes=7, logit_scale=0.5).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model.forward_features(x)
        pooled = model.forward_head(features, pre_logits=True)
        assert features.shape == (2, 128, 4, 4) and pooled.shape == (2, 128)
        torch.testing.assert_close(model(x), model.fc(pooled) * 0.5)
    model.reset_classifier(3)
    assert model(x).shape == (2, 3)
    backbone = create_model("resnet9_s", features_only=True, out_indices=(1, 3))
    maps = backbone(x)
    assert [m.shape[1] for m in maps] == backbone.feature_info.channels() == [64, 128]
    assert [32 // m.shape[-1] for m in maps] == backbone.feature_info.reduction() == [2, 8]


def test_airbench_layout_has_no_prep_conv_and_two_convs_per_stage():
    model = create_model("resnet9_airbench", whiten=2, activation="gelu")
    assert model.prep is None and len(model.stages()) == 3
    for i, width in ((1, 64), (2, 256), (3, 256)):
        pooled, second = getattr(model, f"layer{i}")
        assert isinstance(pooled.pool, torch.nn.MaxPool2d) and isinstance(second.pool, torch.nn.Identity)
        assert pooled.conv.out_channels == second.conv.in_channels == second.conv.out_channels == width
    assert model.layer1[0].conv.in_channels == 24  # the whitening layer's 2 x 3 x 2 x 2 channels feed stage 1
    # airbench94's count: about 118M multiply-adds per 32x32 image (31x31 after the 2x2 whitening)
    assert round(model_stats("resnet9_airbench", whiten=2)["macs"] / 1e6) == 118
    backbone = create_model("resnet9_airbench", features_only=True)
    maps = backbone(torch.randn(2, 3, 32, 32))
    assert [m.shape[1] for m in maps] == backbone.feature_info.channels() == [64, 256, 256]
    assert [32 // m.shape[-1] for m in maps] == backbone.feature_info.reduction() == [2, 4, 8]


def test_double_conv_keeps_residual_blocks():
    model = ResNet9(widths=(16, 16, 32, 32), double_conv=True, residual_stages=(2,))
    assert [len(getattr(model, f"layer{i}")) for i in (1, 2, 3)] == [2, 3, 2]
    assert isinstance(model.layer2[2], Residual)


@pytest.mark.parametrize("kwargs,match", [
    ({"widths": (64, 128, 256)}, "widths must be 4 channel counts"),
    ({"widths": (-1, 128, 256, 512)}, "widths must be 4 channel counts"),
    ({"widths": (64, 0, 256, 512)}, "widths must be 4 channel counts"),
    ({"residual_stages": (4,)}, "residual_stages must name stages 1, 2 or 3"),
    ({"logit_scale": 0}, "logit_scale must be > 0"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ResNet9(**kwargs)


def test_double_conv_must_be_a_bool():
    with pytest.raises(TypeError, match="double_conv must be true or false"):
        ResNet9(double_conv="yes")


def test_named_sizes_fix_their_widths():
    with pytest.raises(TypeError, match="resnet9_m fixes widths"):
        create_model("resnet9_m", widths=(64, 128, 256, 512))


def _digits_run(tmp_path):
    from resnetkit.engine import TrainConfig, train

    # Digits are 8x8: three max-pools leave 1x1, which ResNet-9's global max pool takes.
    return train(TrainConfig(data="digits", model="resnet9_s", epochs=3, batch_size=128, lr=0.05, quiet=True,
                             out=str(tmp_path / "run"), seed=0)).run_dir


def test_trains_exports_with_parity_and_quantizes(tmp_path, capsys):
    from resnetkit.cli.main import main
    from resnetkit.engine.inference import load_run

    run = _digits_run(tmp_path)
    assert load_run(run).evaluate("digits").accuracy > 0.5
    out = tmp_path / "resnet9.onnx"
    assert main(["export", "--checkpoint", str(run), "--format", "onnx", "--out", str(out), "--int8",
                 "--calibrate", "64"]) == 0
    text = capsys.readouterr().out
    assert "top-1 agreement 100.00%" in text and "int8" in text
    assert main(["evaluate", "--checkpoint", str(run), "--data", "digits", "--precision", "int8", "--json"]) == 0
    assert '"top1"' in capsys.readouterr().out


def test_compare_and_benchmark_take_it(tmp_path):
    from resnetkit.engine import TrainConfig
    from resnetkit.engine.compare import compare
    from resnetkit.speed import Case, run_cases

    table = compare(["resnet9_s", "resnet20"], TrainConfig(data="digits", epochs=1, batch_size=128, quiet=True),
                    tmp_path / "cmp", measure_latency=False)
    assert {row["model"] for row in table} == {"resnet9_s", "resnet20"}
    (result,) = run_cases([Case("resnet9_s", "train", 32, 16, channels_last=True)], repeats=1, warmup=1)
    assert result.images_per_sec > 0 and result.macs_per_image == model_stats("resnet9_s")["macs"]
