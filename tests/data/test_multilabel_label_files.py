"""Multi-label label files: several labels per cell or 0/1 columns, multi-hot targets through the batch sources."""

from __future__ import annotations

import json

import pytest
import torch

from resnetkit.data import BatchOptions, DataRequest, resolve_data
from resnetkit.data.label_files import LabelFileError, read_label_file, resolve_label_file
from resnetkit.data.multilabel import MixSettings, MultiLabelData, mix_multi_hot
from resnetkit.data.resolve import load_eval_data


@pytest.fixture(scope="module")
def photos(data_path):
    return sorted((data_path("cifar10/train") / "cat").glob("*.jpg"))[:12]


def _table(tmp_path, photos, header, rows, name="labels.csv"):
    import shutil

    for i, _ in enumerate(rows):
        shutil.copy(photos[i], tmp_path / f"{i}.jpg")
    lines = [header] + [f"{i}.jpg,{row}" for i, row in enumerate(rows)]
    (tmp_path / name).write_text("\n".join(lines) + "\n")
    return tmp_path / name


def test_several_labels_in_a_cell_make_a_multilabel_table(tmp_path, photos):
    path = _table(tmp_path, photos, "path,label", ["cat;dog", "dog", " bird ; cat ", "cat"])
    table = read_label_file(path)
    assert table.multilabel and table.classes == ["bird", "cat", "dog"]
    assert [row.labels for row in table.rows] == [("cat", "dog"), ("dog",), ("bird", "cat"), ("cat",)]
    assert table.targets(table.rows, table.classes).tolist() == [[0, 1, 1], [0, 0, 1], [1, 1, 0], [0, 1, 0]]


def test_zero_one_columns_make_a_multilabel_table_and_a_row_may_have_no_label(tmp_path, photos):
    path = _table(tmp_path, photos, "path,sky,water,road", ["1,0,0", "1,1,0", "0,0,0"])
    table = read_label_file(path)
    assert table.multilabel and table.classes == ["sky", "water", "road"]  # the file's column order
    assert table.targets(table.rows, table.classes).tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 0]]


def test_jsonl_booleans_are_label_columns(tmp_path, photos):
    import shutil

    for i in range(2):
        shutil.copy(photos[i], tmp_path / f"{i}.jpg")
    (tmp_path / "labels.jsonl").write_text(json.dumps({"path": "0.jpg", "a": True, "b": False}) + "\n"
                                           + json.dumps({"path": "1.jpg", "a": 1, "b": 1}) + "\n")
    table = read_label_file(tmp_path / "labels.jsonl")
    assert table.targets(table.rows, table.classes).tolist() == [[1, 0], [1, 1]]


def test_a_bad_cell_in_a_label_column_names_the_line_and_column(tmp_path, photos):
    path = _table(tmp_path, photos, "path,sky,water", ["1,0", "1,2"])
    with pytest.raises(LabelFileError, match=r"line 3: column 'water' holds '2'; a label column holds 0 or 1"):
        read_label_file(path)


def test_task_single_refuses_a_cell_with_several_labels(tmp_path, photos):
    path = _table(tmp_path, photos, "path,label", ["cat", "cat;dog"])
    with pytest.raises(LabelFileError, match=r"line 3: 'cat;dog' holds several labels .* this run is single-label"):
        read_label_file(path, task="single")


def test_task_multilabel_and_label_sep(tmp_path, photos):
    path = _table(tmp_path, photos, "path,label", ["cat|dog", "cat"])
    assert read_label_file(path, label_sep="|").classes == ["cat", "dog"]
    single = _table(tmp_path, photos, "path,label", ["cat", "dog"], "single.csv")
    assert not read_label_file(single).multilabel
    assert read_label_file(single, task="multilabel").multilabel


def test_a_multilabel_file_splits_into_multilabel_data_with_multi_hot_batches(tmp_path, photos):
    rows = ["cat;dog", "dog", "bird;cat", "cat", "dog;bird", "bird", "cat;dog;bird", "dog", "cat", "bird"]
    path = _table(tmp_path, photos, "path,label", rows)
    splits = resolve_data(DataRequest(data=str(path), val_split=0.3, seed=0))
    assert isinstance(splits.train, MultiLabelData) and splits.classes == ["bird", "cat", "dog"]
    assert len(splits.train) == 7 and len(splits.val) == 3
    val = splits.val
    spec = val.input_spec()
    x, y = next(iter(val.batches(spec, BatchOptions(train=False, batch_size=8)).epoch(0)))
    assert x.shape == (3, 3, 32, 32) and y.shape == (3, 3)
    table = read_label_file(path)
    expected = table.targets(table.rows, table.classes)
    # Each sample of the validation split carries its own row of targets.
    assert y.tolist() == expected[val.rows()].tolist()


def test_val_rows_with_a_label_no_train_row_has_are_refused(tmp_path, photos):
    path = _table(tmp_path, photos, "path,label,split", ["cat,train", "cat;dog,val"])
    with pytest.raises(LabelFileError, match="label.s. dog appear in val rows only .first on line 3"):
        resolve_label_file(DataRequest(data=str(path)))


def test_evaluate_time_checks_the_task_and_the_labels(tmp_path, photos):
    path = _table(tmp_path, photos, "path,label", ["cat;dog", "dog"])
    single = _table(tmp_path, photos, "path,label", ["cat", "fish"], "single.csv")
    from resnetkit.data.specs import ImageInputSpec

    spec = ImageInputSpec(3, (32, 32), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    # A multi-label file given to a single-label run: named with its first row of several labels.
    with pytest.raises(LabelFileError, match=r"labels.csv, line 2: 'cat;dog' holds several labels .* single-label"):
        load_eval_data(spec, str(path), classes=["cat", "dog"], multilabel=False)
    with pytest.raises(LabelFileError, match=r"line 3: label 'fish' is not a label of the model"):
        load_eval_data(spec, str(single), classes=["cat", "dog"], multilabel=True)
    with pytest.raises(ValueError, match="a multi-label model is evaluated on a label file"):
        load_eval_data(spec, str(tmp_path), classes=["cat", "dog"], multilabel=True)
    data = load_eval_data(spec, str(path), classes=["cat", "dog", "bird"], multilabel=True)
    # The model's label order, with a label the file never names all zero.
    assert data.classes == ["cat", "dog", "bird"] and data.sample_targets().tolist() == [[1, 1, 0], [0, 1, 0]]


def test_mixup_and_cutmix_mix_the_multi_hot_targets_by_the_share_of_the_input():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 1, 8, 8).contiguous()
    y = torch.eye(4)
    mixed_x, mixed_y = mix_multi_hot(x, y, MixSettings(mixup=1.0, cutmix=0.0), g)
    lam = float(mixed_y[0, 0])
    assert 0 <= lam <= 1 and torch.allclose(mixed_y, lam * y + (1 - lam) * y.roll(1, 0))
    assert torch.allclose(mixed_x, lam * x + (1 - lam) * x.roll(1, 0))
    cut_x, cut_y = mix_multi_hot(x, y, MixSettings(mixup=0.0, cutmix=1.0), g)
    kept = (cut_x[0] == x[0]).float().mean()  # the share of sample 0's own pixels
    assert torch.allclose(cut_y[0, 0], kept) and torch.allclose(cut_y[0].sum(), torch.tensor(1.0))


def test_a_multilabel_table_is_not_written_to_shards(tmp_path, photos):
    from resnetkit.data.shard_writer import write_shards

    path = _table(tmp_path, photos, "path,label", ["cat;dog", "dog"])
    with pytest.raises(ValueError, match="is a multi-label table .* shards hold one class per sample"):
        write_shards(path, tmp_path / "shards")
    assert not (tmp_path / "shards").exists() or not any((tmp_path / "shards").iterdir())
