"""Image augmentation (data/augment.py): batched crops and flips, normalization, presets, mixup and cutmix."""

from __future__ import annotations

import math

import pytest
import torch

from resnetkit.data.augment import AugmentConfig, BatchAugment, Normalize, augment_from, gather_crop_flip, pad_store
from resnetkit.engine.config import TrainConfig


def _windows(padded, i, crop, size=8):
    """Offsets (dy, dx, flipped) at which ``crop`` is a window of ``padded[i]``."""
    found = []
    for dy in range(padded.shape[-2] - size + 1):
        for dx in range(padded.shape[-1] - size + 1):
            window = padded[i, :, dy:dy + size, dx:dx + size]
            found += [(dy, dx, False)] * torch.equal(window, crop) + [(dy, dx, True)] * torch.equal(window.flip(-1), crop)
    return found


def test_gather_crop_is_per_sample_and_keeps_content():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 255, (64, 3, 8, 8), dtype=torch.uint8)
    store = pad_store(images, 2)
    sel = torch.randperm(64, generator=g)[:48]
    out = gather_crop_flip(store, sel, (8, 8), 2, False, g)
    assert out.shape == (48, 3, 8, 8) and out.is_contiguous(memory_format=torch.channels_last)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    offsets = set()
    for j, i in enumerate(sel.tolist()):
        found = [f for f in _windows(padded, i, out[j]) if not f[2]]
        assert found, "every crop is a window of its own padded image"
        offsets.add(found[0][:2])
    assert len(offsets) > 10


def test_gather_flip_mirrors_about_half():
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 255, (64, 3, 8, 8), dtype=torch.uint8)
    out = gather_crop_flip(pad_store(images, 0), torch.arange(64), (8, 8), 0, True, g)
    same = [torch.equal(a, b) for a, b in zip(images, out)]
    assert 16 < sum(same) < 48
    assert all(torch.equal(a.flip(-1), b) for a, b, s in zip(images, out, same) if not s)


def test_normalize_keeps_channels_last_and_values():
    x = torch.randint(0, 255, (4, 3, 5, 5), dtype=torch.uint8)
    out = Normalize((0.5, 0.4, 0.3), (0.2, 0.25, 0.3), channels_last=True)(x)
    expected = (x.float() / 255 - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    assert torch.allclose(out, expected, atol=1e-5) and out.is_contiguous(memory_format=torch.channels_last)


def test_presets_and_torchvision_transforms():
    assert augment_from("digits").hflip is False and augment_from("cifar").crop_padding == 4
    cfg = augment_from("cifar", {"auto_augment": "trivialaugment", "random_erasing": 0.5, "rotation": 10})
    out = BatchAugment(cfg)(torch.randint(0, 255, (32, 3, 32, 32), dtype=torch.uint8))
    assert out.shape == (32, 3, 32, 32) and out.dtype == torch.uint8
    with pytest.raises(ValueError, match="unknown augmentation preset"):
        augment_from("cifar-10")
    with pytest.raises(ValueError, match="unknown augmentation option"):
        AugmentConfig.from_dict({"flip": True})


def test_mixup_and_cutmix_give_soft_targets_that_training_takes(tmp_path):
    from resnetkit.data import BatchOptions
    from resnetkit.data.images import resolve_image_data
    from resnetkit.engine import train

    train_data = resolve_image_data("digits", seed=0).train
    spec = train_data.input_spec()
    cfg = train_data.augment_config("digits", {"mixup": 0.2, "cutmix": 1.0})
    source = train_data.batches(spec, BatchOptions(train=True, batch_size=64, augment=cfg, seed=0))
    x, y = next(iter(source.epoch(0)))
    # One row of class probabilities per image, summing to 1, most of them a mixture of two classes.
    assert y.shape == (64, len(train_data.classes)) and y.dtype.is_floating_point
    assert torch.allclose(y.sum(1), torch.ones(64), atol=1e-5)
    assert int(((y > 0).sum(1) == 2).sum()) > 32
    # Each row mixes the image's own class with its batch neighbour's (torchvision rolls the batch by
    # one), with one share for the whole batch.
    labels = train_data.labels[source.indices(0)[:64]]
    own = torch.nn.functional.one_hot(labels, len(train_data.classes)).float()
    partner = own.roll(1, 0)
    differ = int((labels != labels.roll(1, 0)).nonzero()[0])
    share = float(y[differ, labels[differ]])
    assert torch.allclose(y, share * own + (1 - share) * partner, atol=1e-5)

    summary = train(TrainConfig(data="digits", epochs=4, quiet=True, out=str(tmp_path / "mix"),
                                augment_args={"mixup": 0.2, "cutmix": 1.0}, label_smoothing=0.1, grad_clip=5.0))
    # Soft targets and label smoothing train a model that beats chance (10%) by far (82% measured).
    assert all(math.isfinite(r["train_loss"]) for r in summary.history)
    assert summary.best_val_acc > 0.5


def test_reflect_padding_mirrors_the_border_without_repeating_the_edge():
    images = torch.arange(2 * 1 * 4 * 5, dtype=torch.uint8).view(2, 1, 4, 5)
    store = pad_store(images, 2, "reflect")  # (N, H+4, W+4, C)
    expected = torch.nn.functional.pad(images.float(), (2, 2, 2, 2), mode="reflect").to(torch.uint8)
    assert torch.equal(store.permute(0, 3, 1, 2), expected)
    with pytest.raises(ValueError, match="reflect padding of 4 needs images larger than 4 pixels"):
        pad_store(images, 4, "reflect")


def test_alternating_flip_mirrors_each_image_on_every_other_epoch():
    from resnetkit.data import BatchOptions
    from resnetkit.data.augment import alternating_flips
    from resnetkit.data.images import resolve_image_data

    start = alternating_flips(1000, seed=3, epoch=0)
    assert 400 < int(start.sum()) < 600  # a random half starts mirrored
    assert torch.equal(alternating_flips(1000, 3, 1), ~start) and torch.equal(alternating_flips(1000, 3, 2), start)

    data = resolve_image_data("digits", seed=0).train
    config = augment_from("cifar", {"crop_padding": 0, "flip_mode": "alternate"})
    source = data.batches(data.input_spec(), BatchOptions(train=True, batch_size=len(data), augment=config, seed=3))
    raw = data.images.float()
    views = {}
    for epoch in (0, 1):
        (x, _), order = next(iter(source.epoch(epoch))), source.indices(epoch)
        plain = source.normalize(data.images[order])
        views[epoch] = {int(i): bool(torch.equal(v, p.flip(-1)) and not torch.equal(v, p))
                        for i, v, p in zip(order, x, plain)}
    asymmetric = [i for i in range(len(data)) if not torch.equal(raw[i], raw[i].flip(-1))]
    assert asymmetric and all(views[0][i] != views[1][i] for i in asymmetric)


def test_flip_and_pad_modes_are_checked():
    with pytest.raises(ValueError, match="flip_mode 'alternate' mirrors images on every other epoch, but"):
        augment_from("none", {"flip_mode": "alternate"})
    with pytest.raises(ValueError, match="unknown pad_mode 'wrap'"):
        augment_from("cifar", {"pad_mode": "wrap"})
    with pytest.raises(ValueError, match="unknown flip_mode 'sometimes'"):
        augment_from("cifar", {"flip_mode": "sometimes"})
