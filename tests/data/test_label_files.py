"""Label files (--data labels.csv/.tsv/.jsonl): real CIFAR-10 images and FSDD clips listed in a table."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from resnetkit.data import DataRequest, resolve_data
from resnetkit.data.label_files import LabelFileError, read_label_file
from resnetkit.data.resolve import kind_of

CLASSES = ["airplane", "cat", "ship"]


@pytest.fixture(scope="module")
def cifar_table(data_path, tmp_path_factory) -> Path:
    """images/<n>.jpg (no class folders) and labels.csv with path,label,split: 30/10/10 per class."""
    src = data_path("cifar10/train")
    root = tmp_path_factory.mktemp("table")
    (root / "images").mkdir()
    rows = []
    for name in CLASSES:
        for i, f in enumerate(sorted((src / name).glob("*.jpg"))[:50]):
            target = root / "images" / f"{name[:2]}{i:03d}.jpg"
            target.symlink_to(f.resolve())
            rows.append((f"images/{target.name}", name, "train" if i < 30 else "val" if i < 40 else "test"))
    with open(root / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "split"])
        writer.writerows(rows)
    return root


def test_a_split_column_decides_the_splits(cifar_table):
    splits = resolve_data(DataRequest(data=str(cifar_table / "labels.csv")))
    assert splits.classes == CLASSES
    assert len(splits.train) == 90 and len(splits.val) == 30
    assert splits.train.labels.bincount().tolist() == [30, 30, 30]
    held = resolve_data(DataRequest(data=str(cifar_table / "labels.csv"), for_evaluation=True))
    assert held.train is None and len(held.val) == 30  # the test rows
    assert kind_of(str(cifar_table / "labels.csv")).name == "image"


def test_tsv_and_jsonl_with_other_column_names_and_val_split(cifar_table, tmp_path):
    rows = list(csv.DictReader(open(cifar_table / "labels.csv")))
    tsv = cifar_table / "other.tsv"
    tsv.write_text("file\tcategory\n" + "".join(f"{r['path']}\t{r['label']}\n" for r in rows))
    splits = resolve_data(DataRequest(data=str(tsv), path_col="file", label_col="category", val_split=0.2))
    assert len(splits.train) == 120 and len(splits.val) == 30  # stratified: 10 of each class held out
    assert splits.val.labels.bincount().tolist() == [10, 10, 10]
    jsonl = cifar_table / "labels.jsonl"
    jsonl.write_text("".join(json.dumps({"path": r["path"], "label": r["label"], "split": r["split"]}) + "\n"
                             for r in rows))
    assert len(resolve_data(DataRequest(data=str(jsonl))).train) == 90


@pytest.mark.parametrize("text,message", [
    ("file,label\nimages/ai000.jpg,airplane\n", r"line 2: no column 'path' \(columns: file, label\); name the path column"),
    ("path,label\nimages/ai000.jpg,\n", r"line 2: images/ai000.jpg has an empty 'label' cell"),
    ("path,label\nimages/ai000.jpg,airplane\nimages/ai000.jpg,cat\n", r"line 3: images/ai000.jpg is listed twice \(first on line 2\)"),
    ("path,label\nimages/nothere.jpg,cat\n", r"line 2: images/nothere.jpg does not exist"),
    ("path,label,split\nimages/ai000.jpg,cat,holdout\n", r"line 2: split 'holdout' is not one of train, val"),
    ("path,label\nimages/ai000.jpg,cat,extra\n", r"line 2: 3 cell\(s\) where the header has 2"),
    ("", r"is empty \(expected a header line"),
])
def test_bad_rows_are_named_with_their_line(cifar_table, text, message):
    bad = cifar_table / "bad.csv"
    bad.write_text(text)
    with pytest.raises(LabelFileError, match=message) as err:
        read_label_file(bad)
    assert str(bad) in str(err.value)


def test_train_evaluate_and_predict_from_a_label_file(cifar_table, tmp_path):
    from resnetkit.engine import TrainConfig, train
    from resnetkit.engine.inference import load_run

    summary = train(TrainConfig(data=str(cifar_table / "labels.csv"), model="resnet20", epochs=1, batch_size=30,
                                quiet=True, device="cpu", out=str(tmp_path / "run")))
    run = load_run(summary.run_dir)
    assert run.classes == CLASSES
    result = run.evaluate(run.load_eval_data(str(cifar_table / "labels.csv")))
    assert result.metrics["num_samples"] == 30
    predictions = run.predict(str(cifar_table / "labels.csv"), top_k=1)
    assert len(predictions) == 150 and predictions[0]["source"].endswith("ai000.jpg")

    # A label the model does not know, at evaluate time: named with its line, from the command line too.
    unknown = cifar_table / "unknown.csv"
    unknown.write_text("path,label\nimages/ai000.jpg,airplane\nimages/ai001.jpg,horse\n")
    done = subprocess.run([sys.executable, "-m", "resnetkit.cli.main", "evaluate", "--checkpoint", str(summary.run_dir),
                           "--data", str(unknown)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"{unknown}, line 3: label 'horse' is not a class of the model" in done.stderr


def test_an_audio_label_file_is_audio(fsdd_subset, tmp_path):
    pytest.importorskip("soundfile")
    clips = fsdd_subset(tmp_path / "clips", indices=[0, 1, 2, 3], speakers=("george", "jackson"))
    table = tmp_path / "clips.csv"
    with open(table, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label"])
        for clip in sorted(clips):
            writer.writerow([Path(clip).relative_to(tmp_path).as_posix(), f"digit{Path(clip).name[0]}"])
    assert kind_of(str(table)).name == "audio"
    # Another column order and name: the kind is read from the path column the user names.
    renamed = tmp_path / "renamed.csv"
    renamed.write_text("digit,clip\n" + "".join(f"{label},{path}\n" for path, label in
                                                 (line.split(",") for line in table.read_text().splitlines()[1:])))
    assert kind_of(str(renamed), path_col="clip").name == "audio"
    splits = resolve_data(DataRequest(data=str(table), val_split=0.25))
    assert splits.classes == sorted({f"digit{Path(c).name[0]}" for c in clips})
    assert type(splits.train).__name__ == "AudioData"
    assert len(splits.train) + len(splits.val) == len(clips)
