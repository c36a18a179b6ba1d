"""Flip test-time augmentation: logits of each image and its mirror, averaged; images only."""

from __future__ import annotations

import json

import pytest
import torch

from resnetkit import create_model
from resnetkit.cli.main import main
from resnetkit.engine import TrainConfig, evaluate, load_run, train
from resnetkit.engine.tta import with_tta


def test_flip_tta_cannot_tell_an_image_from_its_mirror():
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=4).eval()
    x = torch.randn(3, 3, 32, 32)
    tta = with_tta(model, "flip", "image")
    with torch.no_grad():
        got, mirrored, plain = tta(x), tta(torch.flip(x, dims=[3])), model(x)
        # A left-right symmetric image: both views are the same image, so TTA changes nothing.
        symmetric = torch.cat([x[..., :16], x[..., :16].flip(-1)], dim=-1)
        same = tta(symmetric)
    assert torch.allclose(got, mirrored, atol=1e-5)
    assert not torch.allclose(got, plain, atol=1e-4)  # really another answer than the model's alone
    assert torch.allclose(same, model(symmetric), atol=1e-5)
    assert with_tta(model, "none", "audio") is model


def test_flip_is_refused_for_audio_and_unknown_modes():
    model = create_model("res8")
    with pytest.raises(ValueError, match="does not apply to audio input"):
        with_tta(model, "flip", "audio")
    with pytest.raises(ValueError, match="tta must be one of none, flip, multiview; got 'rot90'"):
        with_tta(model, "rot90", "image")
    with pytest.raises(ValueError, match="tta must be one of none, flip"):
        TrainConfig(tta="rot90")


@pytest.fixture(scope="module")
def cifar_run(cifar_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("tta") / "run"
    summary = train(TrainConfig(data=str(cifar_folder), model="resnet20", epochs=2, batch_size=32, lr=0.05,
                                quiet=True, out=str(out), tta="flip"))
    return out, summary


def test_run_metrics_say_they_used_flip(cifar_run, cifar_folder, capsys):
    cifar_run, summary = cifar_run
    metrics = json.loads((cifar_run / "metrics.json").read_text())
    assert metrics["inference"].endswith("flip TTA (2 views)")
    # The run's last line gives the number metrics.json holds beside the plain validation's.
    assert summary.final_top1 == metrics["top1"]
    assert f"{metrics['top1']:.2%} with flip TTA (metrics.json)" in str(summary)
    # evaluate --tta flip on the same weights and data gives the run's numbers.
    assert main(["evaluate", "--checkpoint", str(cifar_run), "--data", str(cifar_folder), "--tta", "flip",
                 "--json"]) == 0
    flipped = json.loads(capsys.readouterr().out)
    assert flipped["inference"] == metrics["inference"]
    assert flipped["top1"] == pytest.approx(metrics["top1"], abs=1e-9)
    assert flipped["loss"] == pytest.approx(metrics["loss"], rel=1e-4)
    assert main(["evaluate", "--checkpoint", str(cifar_run), "--data", str(cifar_folder), "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert "flip" not in plain["inference"] and plain["loss"] != flipped["loss"]


def test_evaluate_function_takes_tta(cifar_run, cifar_folder):
    run = load_run(cifar_run[0])
    data = run.load_eval_data(str(cifar_folder))
    a = evaluate(run.model, data, tta="flip", amp="off", input_spec=run.input_spec, classes=run.classes)
    b = run.evaluate(data, amp="off", tta="flip")
    assert a.metrics["num_samples"] == b.metrics["num_samples"] == 100
    assert a.accuracy == pytest.approx(b.accuracy, abs=0.011)  # folded BN vs not: at most one image apart


def test_train_with_flip_on_audio_stops_before_training(fsdd_subset, tmp_path, capsys):
    data = tmp_path / "fsdd"
    fsdd_subset(data, indices=[0, 5])
    assert main(["train", "--data", str(data), "--tta", "flip", "--epochs", "1", "--quiet",
                 "--out", str(tmp_path / "run")]) == 2
    assert "does not apply to audio input" in capsys.readouterr().err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_multiview_tta_averages_six_views():
    from resnetkit.engine.tta import MultiViewAverage

    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=4).eval()
    tta = with_tta(model, "multiview", "image")
    assert isinstance(tta, MultiViewAverage) and tta.description.endswith("multiview TTA (6 views)")
    calls = []
    model.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape))
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        got = tta(x)
        assert len(calls) == 6 and all(s == x.shape for s in calls)
        # A constant image looks the same from every view: TTA changes nothing.
        flat = torch.full((1, 3, 32, 32), 0.3)
        torch.testing.assert_close(tta(flat), model(flat), atol=1e-5, rtol=0)
        assert not torch.allclose(got, with_tta(model, "flip", "image")(x), atol=1e-4)
    with pytest.raises(ValueError, match="multiview test-time augmentation mirrors images"):
        with_tta(model, "multiview", "audio")


def test_evaluate_takes_multiview(cifar_run, cifar_folder, capsys):
    assert main(["evaluate", "--checkpoint", str(cifar_run[0]), "--data", str(cifar_folder), "--tta", "multiview",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["inference"].endswith("multiview TTA (6 views)") and result["num_samples"] == 100
