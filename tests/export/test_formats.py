"""Every model family exports to ONNX, TorchScript and pt2 and computes what the PyTorch model computes.

Random weights with random BatchNorm statistics (as after training: fresh BNs are the
identity and would hide a wrong BN export), small widths and input sizes, and a batch size
other than the one traced with, so a batch axis baked into the graph fails.
"""

from __future__ import annotations

import json
import zipfile

import pytest
import torch

from resnetkit import create_model
from resnetkit.data import ImageInputSpec
from resnetkit.data.specs import image_spec_for_model
from resnetkit.export import FORMATS, export_model, load_exported, measure_parity
from resnetkit.export.formats import sniff_format
from resnetkit.models.tweaks import whitening_of

# One model per family, shrunk where the family allows (width_mult keeps each block's design).
FAMILIES = {
    "resnet v1.5 (basic)": ("resnet18", {"width_mult": 0.25}, 64),
    "resnet v1 (bottleneck)": ("resnet50_v1", {"width_mult": 0.125}, 64),
    "resnet-d": ("resnet18d", {"width_mult": 0.25}, 64),
    "se-resnet": ("seresnet18", {"width_mult": 0.25}, 64),
    "resnext": ("resnext50_32x4d", {"width_mult": 0.25}, 64),
    "wide-resnet": ("wide_resnet50_2", {"width_mult": 0.0625}, 64),
    "cifar resnet": ("resnet20", {}, 32),
    "pre-activation": ("preact_resnet20", {}, 32),
    "plain": ("plain20", {}, 32),
    "vgg": ("vgg11_bn_cifar", {}, 32),
    "inception": ("googlenet_cifar", {"width_mult": 0.25}, 32),
    "kws res8": ("res8", {}, None),
    "resnet9": ("resnet9_s", {}, 32),
    "resnet9 with whitening": ("resnet9_s", {"whiten": 2, "activation": "gelu", "bn_eps": 1e-12}, 32),
    "kws res15 (dilated)": ("res15_narrow", {}, None),
}
# Slow on 2 cores (bigger graphs through the ONNX exporter); they still run in CI.
SLOW = {"resnet v1 (bottleneck)", "resnext", "wide-resnet", "inception", "kws res15 (dilated)"}


def trained_like(model: torch.nn.Module) -> torch.nn.Module:
    g = torch.Generator().manual_seed(0)
    whitening = whitening_of(model)
    if whitening is not None:
        whitening.fit(torch.randn(64, whitening.in_chans, 32, 32, generator=g))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.5)
                m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


def _family_params():
    for family, (name, kwargs, size) in FAMILIES.items():
        marks = [pytest.mark.slow] if family in SLOW else []
        yield pytest.param(family, name, kwargs, size, id=family.replace(" ", "-"), marks=marks)


@pytest.mark.parametrize("family,name,kwargs,size", list(_family_params()))
def test_family_exports_with_parity(family, name, kwargs, size, tmp_path):
    torch.manual_seed(0)
    model = trained_like(create_model(name, num_classes=7, **kwargs))
    c, h, w = model.data_config.input_size
    spec = image_spec_for_model(model, c, (size or h, size or w))
    classes = [f"c{i}" for i in range(7)]
    x = torch.randn(3, *spec.input_size)  # batch 3: traced with 2
    with torch.no_grad():
        ref = model(x)
    for fmt in FORMATS:
        path = tmp_path / f"{name}.{fmt}"
        graph, meta = export_model(model, path, fmt, input_spec=spec, classes=classes)
        loaded = load_exported(path)
        assert loaded.format == fmt and sniff_format(path) == fmt
        with torch.no_grad():
            out = loaded.module(x)
            single = loaded.module(x[:1])
        tol = 1e-4 * max(1.0, ref.abs().max().item())
        assert (out - ref).abs().max() <= tol, (family, fmt, (out - ref).abs().max())
        assert (single - ref[:1]).abs().max() <= tol, (family, fmt, "batch 1")
        parity = measure_parity(model, loaded.module, [x])
        assert parity.top1_agreement == 1.0 and parity.samples == 3


def test_parity_notices_a_different_model():
    torch.manual_seed(0)
    a = trained_like(create_model("resnet20", num_classes=10))
    b = trained_like(create_model("resnet20", num_classes=10))  # other random weights
    x = torch.randn(64, 3, 32, 32)
    same = measure_parity(a, a, [x])
    other = measure_parity(a, b, [(x, torch.zeros(64, dtype=torch.long))])
    assert same.top1_agreement == 1.0 and same.max_abs_diff == 0.0
    assert other.top1_agreement < 0.5 and other.max_abs_diff > 0.01
    assert other.reference_accuracy is not None and other.samples == 64


def test_metadata_round_trip_in_every_format(tmp_path):
    model = trained_like(create_model("resnet20", num_classes=3))
    spec = ImageInputSpec(3, (32, 32), (0.49, 0.48, 0.45), (0.25, 0.24, 0.26), crop_pct=0.9)
    classes = ["zebra", "apple", "mango"]  # not sorted: the order is the model's output order
    for fmt in FORMATS:
        path = tmp_path / f"m.{fmt}"
        export_model(model, path, fmt, input_spec=spec, classes=classes, model_name="resnet20", source="runs/x/best.pt")
        loaded = load_exported(path)
        assert loaded.classes == classes and loaded.model_name == "resnet20"
        assert loaded.input_spec.to_dict() == spec.to_dict()
        assert loaded.metadata.input == "image" and loaded.metadata.input_shape == [3, 32, 32]
        assert loaded.metadata.precision == "fp32" and loaded.metadata.source == "runs/x/best.pt"
        assert not list(tmp_path.glob(".*.tmp"))  # written atomically, no temporary left
    # Where it lives in each file: ONNX metadata_props, the archives' extra file.
    import onnx

    props = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert json.loads(props["classes"]) == classes and json.loads(props["input_spec"])["mean"] == [0.49, 0.48, 0.45]
    assert props["input"] == "image" and props["model_name"] == "resnet20"
    for fmt in ("torchscript", "pt2"):
        with zipfile.ZipFile(tmp_path / f"m.{fmt}") as archive:
            name = next(n for n in archive.namelist() if n.endswith("extra/resnetkit.json"))
            assert json.loads(archive.read(name))["classes"] == classes


def test_onnx_graph_is_opset_17_or_later_with_a_dynamic_batch(tmp_path):
    import onnx

    model = trained_like(create_model("resnet20", num_classes=10))
    spec = image_spec_for_model(model, 3)
    export_model(model, tmp_path / "m.onnx", "onnx", input_spec=spec, classes=[str(i) for i in range(10)])
    proto = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(proto)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    batch = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value  # symbolic, not a number
