"""`resnetkit benchmark`: timings, peak fraction and ratios (tiny sizes: correctness, not speed)."""

from __future__ import annotations

import json

import pytest
import torch

from resnetkit.cli.main import main
from resnetkit.speed import Case, matmul_peak_gflops, run_cases


def test_matmul_peak_is_positive():
    assert matmul_peak_gflops(torch.float32, torch.device("cpu"), n=256, repeats=2) > 0


def test_run_cases_alternates_and_reports():
    cases = [Case("resnet20", "infer", 32, 4), Case("resnet20", "train", 32, 4, precision="bf16", channels_last=True),
             Case("resnet20", "latency", 32, 1, optimized=True)]
    results = run_cases(cases, repeats=2, warmup=1, min_time_s=0.01)
    for r in results:
        assert len(r.seconds) == 2 and r.images_per_sec > 0 and r.macs_per_image == 40_551_040  # its own 10-class head, as users train it
        d = r.to_dict({"fp32": 100.0, "bf16": 200.0})
        assert d["gflops"] > 0 and d["fraction_of_peak"] > 0
    # A training step costs three forward passes: at the same images/s, three times inference's FLOP/s.
    infer_rate = results[0].gflops / results[0].images_per_sec
    assert results[1].gflops / results[1].images_per_sec == pytest.approx(3 * infer_rate)
    assert infer_rate == pytest.approx(2 * 40_551_040 / 1e9)  # two FLOPs per multiply-accumulate


def test_cli_benchmark_against_torchvision(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["benchmark", "--models", "resnet18", "--input-sizes", "32", "--batch-sizes", "2", "--modes", "infer",
                 "--precisions", "fp32", "--channels-last", "off", "--against", "torchvision", "--repeats", "2",
                 "--json", str(out), "--csv", str(tmp_path / "bench.csv")])
    assert code == 0
    text = capsys.readouterr().out
    assert "torchvision fp32 NCHW" in text and "optimize_for_inference" in text
    rows = json.loads(out.read_text())["results"]
    tv = next(r for r in rows if r["library"] == "torchvision")
    assert tv["speedup"] == 1.0 and all(r["speedup"] > 0 for r in rows)
    assert (tmp_path / "bench.csv").read_text().startswith("model,")


def test_cli_benchmark_bad_mode(capsys):
    assert main(["benchmark", "--modes", "fly"]) == 2
    assert "unknown mode 'fly'" in capsys.readouterr().err


@pytest.mark.slow  # compiles the int8 model (inductor freezing)
def test_cli_benchmark_int8_and_bad_precisions(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["benchmark", "--models", "resnet20", "--batch-sizes", "4", "--modes", "infer", "--precisions", "fp32",
                 "--channels-last", "off", "--optimized", "int8", "--repeats", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    assert any(r["optimized"] and r["precision"] == "int8" and r["images_per_sec"] > 0 for r in rows)
    assert main(["benchmark", "--optimized", "int4"]) == 2
    assert "--optimized takes auto, fp32, bf16, fp16, int8, none, got 'int4'" in capsys.readouterr().err
    assert main(["benchmark", "--precisions", "int8"]) == 2
    assert "--precisions takes fp32, bf16, fp16, got 'int8'" in capsys.readouterr().err
