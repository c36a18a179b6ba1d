"""Audio exports: the waveform-to-logits graph (STFT inside), or features when the front end does not export."""

from __future__ import annotations

import json

import pytest
import torch

from resnetkit.cli.main import main
from resnetkit.engine.inference import load_model, load_run
from resnetkit.export import WaveformInput, export_model, load_exported, measure_parity
import resnetkit.export.formats as formats

pytest.importorskip("soundfile")


def _clips(audio_data, n=8):
    return sorted(audio_data.glob("*_0.wav"))[:n]


def test_onnx_export_maps_waveforms_to_logits(audio_run, audio_data, tmp_path, capsys):
    out = tmp_path / "res8.onnx"
    assert main(["export", "--checkpoint", str(audio_run), "--format", "onnx", "--out", str(out)]) == 0
    assert "input: waveform" in capsys.readouterr().out
    record = json.loads((tmp_path / "res8.onnx.parity.json").read_text())
    # onnxruntime's STFT against torch.stft, then the whole net, on the 50 held-out clips.
    assert record["input"] == "waveform" and record["samples"] == 50
    assert record["fp32"]["top1_agreement"] >= 0.999 and record["fp32"]["max_abs_diff"] < 1e-2
    import onnx

    assert "STFT" in {n.op_type for n in onnx.load(str(out)).graph.node}
    exported = load_exported(out)
    assert isinstance(exported.input_spec, WaveformInput) and exported.input_spec.input_size == (8000,)
    assert exported.input_spec.to_dict() == load_run(audio_run).input_spec.to_dict()  # the run's features travel
    # From raw files: the file alone (with resnetkit reading the audio) predicts as the run does.
    clips = _clips(audio_data)
    expected = load_run(audio_run).predict(clips, top_k=2, amp="off")
    got = load_model(out).predict(clips, top_k=2)
    assert [g["top_k"][0]["class"] for g in got] == [e["top_k"][0]["class"] for e in expected]
    for g, e in zip(got, expected):
        assert g["top_k"][0]["probability"] == pytest.approx(e["top_k"][0]["probability"], abs=1e-3)


@pytest.mark.parametrize("fmt", ["torchscript", "pt2"])
def test_torch_formats_export_the_front_end_too(audio_run, tmp_path, fmt):
    run = load_run(audio_run, device="cpu")
    path = tmp_path / f"res8.{fmt}"
    graph, meta = export_model(run.model, path, fmt, input_spec=run.input_spec, classes=run.classes)
    assert meta.input == "waveform" and meta.input_shape == [8000]
    waves = 0.1 * torch.randn(5, 8000, generator=torch.Generator().manual_seed(1))
    parity = measure_parity(graph.module, load_exported(path).module, [waves])
    assert parity.top1_agreement == 1.0 and parity.max_abs_diff < 1e-3


def test_front_end_that_does_not_export_falls_back_to_features(audio_run, audio_data, tmp_path, monkeypatch):
    """When the STFT graph cannot be written, the file takes features and says so; predictions stay the run's."""
    real = formats._WRITERS["onnx"]

    def no_stft(graph, path, meta):
        if graph.input == "waveform":
            raise RuntimeError("STFT is not supported by this exporter")
        real(graph, path, meta)

    monkeypatch.setitem(formats._WRITERS, "onnx", no_stft)
    out = tmp_path / "features.onnx"
    assert main(["export", "--checkpoint", str(audio_run), "--format", "onnx", "--out", str(out)]) == 0
    exported = load_exported(out)
    assert exported.input == "features" and exported.metadata.input_shape == [1, 40, 101]
    assert any("did not export" in note and "STFT" in note for note in exported.metadata.notes)
    clips = _clips(audio_data, 4)
    expected = load_run(audio_run).predict(clips, top_k=1, amp="off")
    got = load_model(out).predict(clips, top_k=1)
    assert [g["top_k"][0]["class"] for g in got] == [e["top_k"][0]["class"] for e in expected]


def test_features_input_on_request(audio_run, tmp_path, capsys):
    out = tmp_path / "f.pt2"
    assert main(["export", "--checkpoint", str(audio_run), "--format", "pt2", "--out", str(out),
                 "--input", "features"]) == 0
    meta = load_exported(out).metadata
    assert meta.input == "features" and any("exported from features" in n for n in meta.notes)


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_a_waveform_export_keeps_every_setting_of_the_spec(tmp_path, fmt):
    # WaveformInput was rebuilt from (features, normalizer) by position: a Speech Commands run's
    # keywords were lost, and evaluating the file labelled data by another protocol than the run.
    from resnetkit import create_model
    from resnetkit.data import AudioInputSpec
    from resnetkit.data.audio_features import FeatureConfig

    features = FeatureConfig.from_dict({"kind": "logmel", "sample_rate": 8000, "n_fft": 256, "win_length": 240,
                                        "hop_length": 80, "duration_s": 0.5})
    words = ["yes", "no", "up"]
    spec = AudioInputSpec(features, keywords=words)
    classes = [*words, "_silence_", "_unknown_"]
    model = create_model("res8_narrow", num_classes=len(classes)).eval()
    path = tmp_path / f"kws.{fmt}"
    export_model(model, path, fmt, input_spec=spec, classes=classes)
    loaded = load_exported(path)
    assert isinstance(loaded.input_spec, WaveformInput) and loaded.input == "waveform"
    assert loaded.input_spec.keywords == words
    assert loaded.input_spec.to_dict() == spec.to_dict()


@pytest.mark.parametrize("fmt, settings", [
    ("onnx", {"normalize": "cmvn"}),
    ("onnx", {"preemphasis": 0.97, "top_db": 40.0}),
    ("onnx", {"normalize": "cmvn", "compression": "pcen"}),
    ("pt2", {"normalize": "cmvn", "compression": "pcen"}),
])
def test_the_speaker_normalizing_front_end_exports_inside_the_waveform_graph(audio_data, tmp_path, fmt, settings):
    """CMVN, PCEN and pre-emphasis are part of the front end: the file maps waves to the same logits as PyTorch."""
    from resnetkit import create_model
    from resnetkit.data import AudioInputSpec
    from resnetkit.data.audio_features import FeatureConfig
    from resnetkit.data.audio_io import fix_length, load_audio

    features = FeatureConfig.from_dict({"kind": "logmel", "sample_rate": 8000, "n_fft": 256, "win_length": 240,
                                        "hop_length": 160, **settings})
    spec = AudioInputSpec(features)
    model = create_model("res8_narrow", num_classes=10).eval()
    path = tmp_path / f"voices.{fmt}"
    graph, meta = export_model(model, path, fmt, input_spec=spec, classes=[str(d) for d in range(10)])
    assert meta.input == "waveform"
    loaded = load_exported(path)
    assert loaded.input_spec.features == features  # the normalization travels with the file
    # Real recordings: FSDD clips at their own levels (CMVN's statistics and PCEN's smoother see real speech).
    waves = torch.stack([fix_length(load_audio(p, 8000), 8000, "center") for p in _clips(audio_data, 12)])
    parity = measure_parity(graph.module, loaded.module, [waves, 0.3 * waves])
    assert parity.top1_agreement == 1.0 and parity.max_abs_diff < 1e-3
