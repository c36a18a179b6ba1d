"""WebDataset shards: written by `resnetkit shard`, read back by --data (folder, brace pattern, glob, pipe: URL),
split across ranks and workers without repeats, deterministic validation, exact mid-epoch resume."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
import tarfile

import pytest
import torch

from resnetkit.data import BatchOptions, DataRequest, resolve_data
from resnetkit.data.augment import AugmentConfig
from resnetkit.data.image_io import read_image
from resnetkit.data.images import load_folder
from resnetkit.data.resolve import kind_of
from resnetkit.data.shard_writer import write_shards
from resnetkit.data.shards import ShardError, read_shard_set
from resnetkit.engine.evaluation import evaluate
from resnetkit.models import create_model
from resnetkit.runtime.distributed import DistInfo

pytest.importorskip("webdataset")

NO_AUGMENT = AugmentConfig(crop_padding=0, hflip=False)


@pytest.fixture(scope="module")
def shards(cifar_folder, tmp_path_factory):
    """cifar_folder (5 classes, 400 train + 100 val images) as shards of 40: 10 train, 3 val."""
    out = tmp_path_factory.mktemp("shards") / "cifar5"
    summary = write_shards(cifar_folder, out, shard_size=40)
    assert summary.counts == {"train": 400, "val": 100} and summary.shards == {"train": 10, "val": 3}
    return out


def _members(tar_path):
    """{key: (jpg bytes, label)} of one shard, read with tarfile (not with the code under test)."""
    found: dict[str, dict] = {}
    with tarfile.open(tar_path) as tar:
        for m in tar.getmembers():
            key, ext = m.name.split(".", 1)
            found.setdefault(key, {})[ext] = tar.extractfile(m).read()
    return {k: (v["jpg"], int(v["cls"])) for k, v in found.items()}


def _digest(image: torch.Tensor, label: int) -> str:
    return hashlib.sha1(image.contiguous().numpy().tobytes() + bytes([label])).hexdigest()


def _shard_digests(folder, names):
    return {_digest(read_image(data), label) for name in names for data, label in _members(folder / name).values()}


def _batch_digests(source, spec, epoch=0, start_step=0):
    """One digest per sample the source yields (normalization undone: the decoded pixels and the label)."""
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1)
    out = []
    for x, y in source.epoch(epoch, start_step):
        pixels = ((x.float() * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)
        out.extend(_digest(p, int(label)) for p, label in zip(pixels, y))
    return out


def test_samples_are_the_original_files_with_their_labels(shards, cifar_folder):
    meta = json.loads((shards / "shards.json").read_text())
    assert meta["kind"] == "image" and meta["classes"] == ["airplane", "automobile", "cat", "frog", "ship"]
    assert meta["image_size"] == [32, 32] and meta["splits"]["val"]["per_class"] == [20] * 5
    originals = {}
    for split in ("train", "val"):
        for path in sorted((cifar_folder / split).rglob("*.jpg")):
            originals[path.read_bytes()] = meta["classes"].index(path.parent.name)
    stored = {}
    for entry in meta["splits"]["train"]["shards"] + meta["splits"]["val"]["shards"]:
        tar = shards / entry["name"]
        assert tar.stat().st_size == entry["bytes"]
        members = _members(tar)
        assert len(members) == entry["samples"]
        stored.update(dict(members.values()))
    assert stored == originals  # every file once, byte for byte, with its class
    # Training shards are shuffled: the first one already holds every class.
    assert {label for _, label in _members(shards / "train-000000.tar").values()} == {0, 1, 2, 3, 4}
    assert not list(shards.glob(".*"))  # no temporary left behind


@pytest.mark.parametrize("form", ["folder", "brace", "glob", "pipe"])
def test_data_takes_a_folder_a_pattern_or_a_pipe(shards, form):
    data = {"folder": str(shards),
            "brace": f"{shards}/train-{{000000..000009}}.tar",
            "glob": f"{shards}/train-*.tar",
            "pipe": f"pipe:cat {shards}/train-{{000000..000009}}.tar"}[form]
    assert kind_of(data).name == "image"
    splits = resolve_data(DataRequest(data=data))
    assert len(splits.train) == 400 and len(splits.val) == 100 and splits.classes[0] == "airplane"
    if form in ("brace", "glob"):  # read as the folder is: the same shards, found another way
        assert [s.name for s in splits.train.shards] == [f"train-{i:06d}.tar" for i in range(10)]
        return
    model = create_model("resnet20", num_classes=5)
    spec = splits.train.input_spec(model)
    source = splits.train.batches(spec, BatchOptions(train=True, batch_size=50, augment=NO_AUGMENT, workers=2))
    assert sorted(_batch_digests(source, spec)) == sorted(_shard_digests(shards, [f"train-{i:06d}.tar" for i in range(10)]))


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_and_workers_share_shards_without_repeats(shards, world):
    splits = resolve_data(DataRequest(data=str(shards)))
    model = create_model("resnet20", num_classes=5)
    spec = splits.train.input_spec(model)
    seen = []
    for rank in range(world):
        options = BatchOptions(train=True, batch_size=8, augment=NO_AUGMENT, workers=2, dist=DistInfo(rank, 0, world))
        source = splits.train.batches(spec, options)
        assert len(source) == min(len(range(r, 10, world)) for r in range(world)) * 40 // 8  # the same steps on every rank
        got = _batch_digests(source, spec, epoch=1)
        assert len(got) == len(set(got)) == len(source) * 8
        assert set(got) <= _shard_digests(shards, [f"train-{i:06d}.tar" for i in range(rank, 10, world)])
        seen.extend(got)
    assert len(seen) == len(set(seen))  # no sample on two ranks
    if world == 2:
        assert set(seen) == _shard_digests(shards, [f"train-{i:06d}.tar" for i in range(10)])


def test_fewer_shards_than_ranks_is_refused_and_fewer_than_workers_warned(shards, caplog):
    splits = resolve_data(DataRequest(data=f"{shards}/train-00000{{0..2}}.tar"))
    spec = splits.train.input_spec(create_model("resnet20", num_classes=5))
    with pytest.raises(ShardError, match=r"3 training shard\(s\) for 4 ranks; every rank needs one"):
        splits.train.batches(spec, BatchOptions(train=True, batch_size=8, dist=DistInfo(0, 0, 4)))
    with caplog.at_level(logging.WARNING):
        source = splits.train.batches(spec, BatchOptions(train=True, batch_size=8, workers=4, dist=DistInfo(1, 0, 2)))
    assert source.workers == 1 and "fewer than the 4 DataLoader workers" in caplog.text


def test_validation_is_deterministic_and_equals_the_folder_reader(shards, cifar_folder):
    splits = resolve_data(DataRequest(data=str(shards)))
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=5).eval()
    spec = splits.val.input_spec(model)
    passes = [[(x.clone(), y.clone()) for x, y in splits.val.batches(spec, BatchOptions(train=False, batch_size=16,
                                                                                         workers=2)).epoch(0)]
              for _ in range(2)]
    assert len(passes[0]) == 7 and all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
                                       for a, b in zip(*passes))
    from_shards = evaluate(model, splits.val, input_spec=spec, batch_size=32, amp="off", device="cpu")
    from_folder = evaluate(model, load_folder(cifar_folder / "val"), input_spec=spec, batch_size=32, amp="off",
                           device="cpu")
    assert from_shards.metrics["num_samples"] == 100
    assert from_shards.accuracy == from_folder.accuracy
    assert from_shards.loss == pytest.approx(from_folder.loss, abs=1e-5)


@pytest.mark.parametrize("workers", [2, 0])
def test_a_resumed_epoch_continues_with_the_batches_of_the_uninterrupted_one(shards, workers):
    splits = resolve_data(DataRequest(data=str(shards)))
    spec = splits.train.input_spec(create_model("resnet20", num_classes=5))
    augment = splits.train.augment_config() if workers else NO_AUGMENT  # crops and flips are exact with workers
    options = BatchOptions(train=True, batch_size=32, augment=augment, workers=workers, seed=3)
    whole = [(x, y) for x, y in splits.train.batches(spec, options).epoch(2)]
    resumed = [(x, y) for x, y in splits.train.batches(spec, options).epoch(2, start_step=5)]
    assert len(whole) == 12 and len(resumed) == 7
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(whole[5:], resumed))
    other = [y for _, y in splits.train.batches(spec, options).epoch(3)]
    assert not all(torch.equal(a, b) for a, b in zip(other, [y for _, y in whole]))  # another epoch, another order


def test_audio_shards_give_the_features_of_the_folder_reader(fsdd_subset, tmp_path):
    from resnetkit.data.audio_layouts import resolve_audio_data

    folder = tmp_path / "fsdd"
    fsdd_subset(folder, indices=[0, 1, 5, 6, 7], digits=range(4), speakers=["george", "jackson"])
    summary = write_shards(folder, tmp_path / "shards", shard_size=8)
    assert summary.kind == "audio" and summary.counts == {"train": 24, "val": 16}  # FSDD's test indices 0-4
    shards = resolve_data(DataRequest(data=str(tmp_path / "shards")))
    assert kind_of(str(tmp_path / "shards")).name == "audio" and shards.train.in_chans == 1
    reference = resolve_audio_data(DataRequest(data=str(folder)))
    spec = reference.val.input_spec()
    assert shards.val.input_spec() == spec
    ours = [(x, y) for x, y in shards.val.batches(spec, BatchOptions(train=False, batch_size=16, workers=1)).epoch(0)]
    theirs = [(x, y) for x, y in reference.val.batches(spec, BatchOptions(train=False, batch_size=16)).epoch(0)]
    assert torch.equal(ours[0][1], theirs[0][1]) and torch.allclose(ours[0][0], theirs[0][0], atol=1e-5)
    train = shards.train.batches(spec, BatchOptions(train=True, batch_size=8, workers=1,
                                                    augment=shards.train.augment_config("speech")))
    x, y = next(iter(train.epoch(0)))
    assert x.shape == (8, *spec.input_size) and torch.isfinite(x).all()


# -- bad input --------------------------------------------------------------------------------------------


def _copy(shards, tmp_path):
    dest = tmp_path / "copy"
    shutil.copytree(shards, dest)
    return dest


def test_a_sample_without_a_label_is_named(shards, tmp_path):
    dest = _copy(shards, tmp_path)
    tar_path = dest / "val-000002.tar"
    members = _members(tar_path)
    with tarfile.open(tar_path, "w") as tar:  # the same samples, the .cls of the first one left out
        for i, (key, (data, label)) in enumerate(sorted(members.items())):
            entries = [("jpg", data)] + ([] if i == 0 else [("cls", str(label).encode())])
            for ext, payload in entries:
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    meta = json.loads((dest / "shards.json").read_text())
    meta["splits"]["val"]["shards"][2]["bytes"] = tar_path.stat().st_size
    (dest / "shards.json").write_text(json.dumps(meta))
    val = resolve_data(DataRequest(data=str(dest), for_evaluation=True)).val
    spec = val.input_spec(create_model("resnet20", num_classes=5))
    with pytest.raises(ShardError, match=r"val-000002\.tar: sample 00000080 has no label \(expected a 00000080\.cls"):
        list(val.batches(spec, BatchOptions(train=False, batch_size=16, workers=2)).epoch(0))


def test_a_truncated_shard_is_named_before_reading_and_while_streaming(shards, tmp_path):
    dest = _copy(shards, tmp_path)
    tar_path = dest / "train-000003.tar"
    tar_path.write_bytes(tar_path.read_bytes()[:20_000])
    splits = resolve_data(DataRequest(data=str(dest)))
    spec = splits.train.input_spec(create_model("resnet20", num_classes=5))
    with pytest.raises(ShardError, match=r"train-000003\.tar: 20000 bytes, shards\.json says \d+: the shard is truncated"):
        splits.train.batches(spec, BatchOptions(train=True, batch_size=8))
    # Through a pipe the size is unknown until the stream ends: the reader names it there.
    piped = resolve_data(DataRequest(data=f"pipe:cat {dest}/train-{{000000..000009}}.tar"))
    source = piped.train.batches(spec, BatchOptions(train=True, batch_size=8, workers=2, augment=NO_AUGMENT))
    with pytest.raises(ShardError, match=r"pipe:cat .*train-000003\.tar: (not a complete tar file|\d+ sample\(s\), "
                                         r"shards\.json says 40)"):
        list(source.epoch(0))


def test_patterns_that_match_nothing_and_folders_without_metadata(shards, tmp_path):
    with pytest.raises(ShardError, match=r"train-\*\.tar: the pattern matches no file"):
        resolve_data(DataRequest(data=f"{tmp_path}/train-*.tar"))
    with pytest.raises(ShardError, match=r"none of the 2 shard\(s\) it names exists \(the first: .*train-000010\.tar\)"):
        resolve_data(DataRequest(data=f"{shards}/train-{{000010..000011}}.tar"))
    with pytest.raises(ShardError, match=r"train-000010\.tar: not a shard that .*shards\.json lists \(it lists 13"):
        resolve_data(DataRequest(data=f"{shards}/train-{{000000..000011}}.tar"))
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(shards / "train-000000.tar", bare)
    with pytest.raises(ShardError, match=r"bare: no shards\.json beside its 1 \.tar file"):
        resolve_data(DataRequest(data=str(bare)))
    with pytest.raises(ShardError, match=r"cannot read pipe:cat .*missing/shards\.json \(the command failed"):
        read_shard_set(f"pipe:cat {tmp_path}/missing/train-{{0..1}}.tar")
    with pytest.raises(ShardError, match="--val-split does not apply"):
        resolve_data(DataRequest(data=str(shards), val_split=0.2))


def test_a_writer_refuses_to_mix_its_shards_with_others(shards, cifar_folder, tmp_path):
    dest = _copy(shards, tmp_path)
    with pytest.raises(ShardError, match="already holds shards"):
        write_shards(cifar_folder, dest, shard_size=40)
    (dest / ".train-000000.tar.abc.tmp").write_bytes(b"half a shard")  # what a killed writer leaves
    summary = write_shards(cifar_folder / "val", dest, shard_size=30, overwrite=True)
    assert summary.counts == {"train": 100} and not list(dest.glob(".*"))
    assert sorted(p.name for p in dest.glob("*.tar")) == [f"train-{i:06d}.tar" for i in range(4)]


@pytest.mark.slow
def test_a_run_resumed_mid_epoch_ends_with_the_weights_of_the_uninterrupted_run(cifar_folder, tmp_path):
    from resnetkit.engine import TrainConfig, TrainingInterrupted, train
    from resnetkit.testing.callbacks import StopAtStep

    write_shards(cifar_folder / "val", tmp_path / "shards", shard_size=20, val_split=0.2)  # 80 train: 4 shards

    def config(out):  # 5 steps an epoch; crop-and-flip augmentation drawn in 2 DataLoader workers
        return TrainConfig(data=str(tmp_path / "shards"), model="resnet20", epochs=2, batch_size=16, workers=2,
                           quiet=True, deterministic=True, device="cpu", out=str(out), seed=3)

    train(config(tmp_path / "full"))
    with pytest.raises(TrainingInterrupted):
        train(config(tmp_path / "cut"), callbacks=[StopAtStep(7)])  # step 2 of epoch 2
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["step_in_epoch"] == 2
    train(resume=tmp_path / "cut", changes={"quiet": True})
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_a_writer_stopped_midway_leaves_no_shard_and_no_metadata(cifar_folder, tmp_path):
    source = tmp_path / "images"
    shutil.copytree(cifar_folder / "val", source)
    (source / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a whole JPEG")
    out = tmp_path / "shards"
    with pytest.raises(ShardError, match=r"broken\.jpg.*\(stopping: --on-corrupt stop\)"):
        write_shards(source, out, shard_size=30, on_corrupt="stop")
    assert not (out / "shards.json").exists() and not list(out.glob(".*"))  # no metadata, no temporary
    assert all(_members(p) and len(_members(p)) == 30 for p in out.glob("*.tar"))  # only whole shards
    summary = write_shards(source, out, shard_size=30, overwrite=True)  # skip (the default): named and left out
    assert summary.counts == {"train": 100} and [s.path for s in summary.skipped] == [str(source / "cat" / "broken.jpg")]
