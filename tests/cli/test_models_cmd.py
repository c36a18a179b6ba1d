"""`resnetkit models`: the registry table and one model in detail."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from resnetkit.cli.main import main


def test_table_lists_params_and_macs(capsys):
    assert main(["models", "resnet5*"]) == 0
    out = capsys.readouterr().out
    assert "resnet50" in out and "25.56M" in out and "4.09G" in out and "resnet56" in out


def test_family_filter_json(capsys):
    assert main(["models", "--family", "cifar-resnet", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} == {"resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202"}
    r20 = next(r for r in rows if r["name"] == "resnet20")
    assert r20["params"] == 269_722 and r20["input_size"] == [3, 32, 32]


def test_one_model_in_detail(capsys):
    assert main(["models", "resnet50"]) == 0
    out = capsys.readouterr().out
    assert "layer3" in out and "1024" in out and "0.485" in out
    assert main(["models", "resnet50", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [s["blocks"] for s in info["stages"]] == [0, 3, 4, 6, 3]
    assert [s["channels"] for s in info["stages"]] == [64, 256, 512, 1024, 2048]
    assert info["data_config"]["input_size"] == [3, 224, 224]


def test_unknown_pattern_is_one_clear_line(capsys):
    assert main(["models", "resnot50"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'resnot50'" in err and "resnet50" in err and "Traceback" not in err


def test_console_script_entry_point():
    # The `resnetkit` script pip installs beside this Python (the virtual environment's bin/).
    script = Path(sys.executable).parent / "resnetkit"
    if not script.is_file():
        pytest.fail(f"no resnetkit console script at {script}: is the package installed (pip install -e .)?")
    proc = subprocess.run([str(script), "models", "resnet20"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "269,722" in proc.stdout
