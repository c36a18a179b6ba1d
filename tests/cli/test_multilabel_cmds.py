"""The command line on a multi-label run: predict prints labels, evaluate mAP, and a task mismatch is one message."""

from __future__ import annotations

import json

from resnetkit.cli.main import main


def test_predict_and_evaluate_of_a_multilabel_run(multilabel_run, cifar_mosaics, capsys):
    image = cifar_mosaics.parent / "mosaic0000.png"
    assert main(["predict", "--checkpoint", str(multilabel_run), str(image), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert set(answer["probabilities"]) == {"airplane", "automobile", "cat", "frog"} and "labels" in answer
    assert main(["predict", "--checkpoint", str(multilabel_run), str(image)]) == 0
    assert capsys.readouterr().out.startswith(f"{image}: labels ")
    assert main(["evaluate", "--checkpoint", str(multilabel_run), "--data", str(cifar_mosaics)]) == 0
    out = capsys.readouterr().out
    assert "mAP" in out and "exact match" in out and "threshold" in out


def test_a_multilabel_file_for_a_single_label_model_is_one_message(image_run, cifar_mosaics, capsys):
    assert main(["evaluate", "--checkpoint", str(image_run), "--data", str(cifar_mosaics)]) != 0
    err = capsys.readouterr().err
    assert "labels.csv, line " in err and "several labels" in err and "Traceback" not in err


def test_task_single_on_a_multilabel_file_is_refused(cifar_mosaics, tmp_path, capsys):
    code = main(["train", "--data", str(cifar_mosaics), "--task", "single", "--epochs", "1", "--quiet",
                 "--out", str(tmp_path / "run")])
    assert code != 0
    assert "several labels" in capsys.readouterr().err and not (tmp_path / "run" / "last.pt").exists()
