"""The photo pipeline: crop boxes drawn as torchvision draws them, the same region of the image
whether the JPEG is decoded whole or reduced, and the same numbers as torchvision's reference
transforms."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms.v2 import functional as TF

from resnetkit.data import BatchOptions, SkippedFile
from resnetkit.data.augment import Normalize, get_preset
from resnetkit.data import image_pipeline
from resnetkit.data.image_io import ImageDataError, open_image, read_image
from resnetkit.data.image_pipeline import (
    RATIO,
    SCALE,
    EvalCrop,
    TrainCrop,
    decode_reduced,
    jpeg_file,
    random_resized_crop_box,
    reduction_for,
)
from resnetkit.data.images import ImageFiles
from resnetkit.data.specs import ImageInputSpec

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _gradient(width: int, height: int) -> np.ndarray:
    """Red rises left to right, green top to bottom, blue in slow waves: a pixel's colour says where it is."""
    x = np.linspace(0, 1, width)[None, :]
    y = np.linspace(0, 1, height)[:, None]
    r = np.broadcast_to(x * 255, (height, width))
    g = np.broadcast_to(y * 255, (height, width))
    b = 127.5 + 100 * np.sin(6 * x) * np.cos(5 * y)
    return np.stack([r, g, b], axis=-1).round().astype(np.uint8)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("photos") / "gradient.jpg"
    Image.fromarray(_gradient(1600, 1200)).save(path, quality=95)
    return path


def test_boxes_are_drawn_as_torchvision_draws_them():
    rng = random.Random(0)
    width, height = 500, 375
    ours = [random_resized_crop_box(width, height, SCALE, RATIO, rng) for _ in range(3000)]
    for box in ours:
        assert 0 <= box.left and box.left + box.width <= width and 0 <= box.top and box.top + box.height <= height
        # Rounding to whole pixels moves the area and the aspect a little past the ranges.
        assert SCALE[0] * 0.97 <= box.width * box.height / (width * height) <= 1.0
        assert RATIO[0] * 0.97 <= box.width / box.height <= RATIO[1] * 1.03
    torch.manual_seed(0)
    theirs = [T.RandomResizedCrop.get_params(torch.empty(3, height, width), list(SCALE), list(RATIO))
              for _ in range(3000)]
    area = np.mean([b.width * b.height for b in ours]) / (width * height)
    area_tv = np.mean([h * w for _, _, h, w in theirs]) / (width * height)
    aspect = np.mean([math.log(b.width / b.height) for b in ours])
    aspect_tv = np.mean([math.log(w / h) for _, _, h, w in theirs])
    assert abs(area - area_tv) < 0.02 and abs(aspect - aspect_tv) < 0.02
    # A panorama no box of the ratio range fits ten times: torchvision's centre crop.
    fallback = random_resized_crop_box(1000, 50, (0.9, 1.0), RATIO, random.Random(1))
    assert (fallback.width, fallback.height) == (67, 50) and fallback.left == (1000 - 67) // 2


def test_reduction_is_the_largest_power_of_two_that_keeps_the_output_size():
    assert reduction_for(500, 375, (224, 224)) == 1  # a 500x375 photo at 224 is never reduced
    assert reduction_for(1000, 460, (224, 224)) == 2
    assert reduction_for(1000, 900, (224, 224)) == 4
    assert reduction_for(4000, 3000, (224, 224)) == 8  # libjpeg goes no further than 1/8
    assert reduction_for(1000, 900, (112, 224)) == 4 and reduction_for(800, 900, (112, 224)) == 2


def test_draft_decodes_a_jpeg_at_the_reduction_asked(photo, tmp_path):
    with open_image(photo) as img:
        decoded, applied = decode_reduced(img, 3, 4)
    assert applied == 4 and decoded.size == (400, 300) and decoded.mode == "RGB"
    png = tmp_path / "gradient.png"
    Image.fromarray(_gradient(160, 120)).save(png)
    with open_image(png) as img:  # not a JPEG: decoded whole
        decoded, applied = decode_reduced(img, 1, 4)
    assert applied == 1 and decoded.size == (160, 120) and decoded.mode == "L"


def test_reduced_decode_crops_the_same_region_as_the_full_decode(photo):
    full = read_image(photo)
    size = (128, 128)
    reduced_crop, whole_crop = TrainCrop(size, draft=True), TrainCrop(size, draft=False)
    reductions, diffs, shifted = [], [], []
    for seed in range(12):
        rng = random.Random(seed)
        box = reduced_crop.box(1600, 1200, rng)
        mirrored = rng.random() < 0.5
        reductions.append(reduction_for(box.width, box.height, size))
        # Decoded whole, the crop is torchvision's resized_crop of that box (mirrored on heads).
        whole = TF.resized_crop(full, box.top, box.left, box.height, box.width, list(size), antialias=True)
        whole = whole.flip(-1) if mirrored else whole
        if seed < 3:
            assert torch.equal(whole_crop(photo, 3, random.Random(seed)), whole)
        reduced = reduced_crop(photo, 3, random.Random(seed)).float()
        diffs.append((reduced - whole.float()).abs().mean().item())
        # The same box moved by a tenth of its width: what a misplaced crop would look like.
        dx = max(1, box.width // 10) * (1 if box.left + box.width + box.width // 10 <= 1600 else -1)
        moved = TF.resized_crop(full, box.top, box.left + dx, box.height, box.width, list(size), antialias=True)
        moved = moved.flip(-1) if mirrored else moved
        shifted.append((moved.float() - whole.float()).abs().mean().item())
    assert {4, 8} <= set(reductions)  # the draws exercised decodes at 1/4 and 1/8
    assert max(diffs) < 1.0, diffs  # grey levels of 255
    assert min(shifted) > 3 * max(diffs), (shifted, diffs)


def test_uint8_crops_normalized_on_the_device_equal_torchvision_to_tensor_normalize(photo):
    crop = EvalCrop((224, 224), crop_pct=0.875, draft=False)
    ours = Normalize(MEAN, STD)(crop(photo)[None])[0]
    reference = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(MEAN, STD)])
    with Image.open(photo) as img:
        theirs = reference(img.convert("RGB"))
    # Pillow's and torch's antialiased bilinear resizes round differently: at most one grey level.
    assert (ours - theirs).abs().max().item() <= 1.01 / 255 / min(STD)
    assert (ours - theirs).abs().mean().item() < 0.2 / 255 / min(STD)


def test_eval_crop_equals_resize_and_center_crop(photo):
    full = read_image(photo)
    reference = TF.center_crop(TF.resize(full, 160, antialias=True), [140, 140])
    assert torch.equal(EvalCrop((140, 140), crop_pct=0.875, draft=False)(photo), reference)
    # Reduced by 4 (1600x1200 to 400x300 for a 213-pixel resize): the same picture within a grey level or two.
    reduced = EvalCrop((186, 186), crop_pct=0.875).__call__(photo)
    reference = TF.center_crop(TF.resize(full, 213, antialias=True), [186, 186])
    assert reduced.shape == reference.shape
    assert (reduced.float() - reference.float()).abs().mean().item() < 2.0


def _crops(source, in_chans: int) -> list[torch.Tensor]:
    """Training crops (reduced and whole) of a few seeds and two evaluation crops of ``source``."""
    crops = []
    for draft in (True, False):
        crops += [TrainCrop((128, 128), draft=draft)(source, in_chans, random.Random(seed)) for seed in range(6)]
        crops.append(EvalCrop((186, 186), crop_pct=0.875, draft=draft)(source, in_chans))
    return crops


def test_simplejpeg_decodes_the_same_pixels_as_pillow(photo, tmp_path, monkeypatch):
    pytest.importorskip("simplejpeg")
    gray = tmp_path / "gray.jpg"
    Image.fromarray(_gradient(1000, 700)[..., 1]).save(gray, quality=90)
    cases = [(photo, 3), (photo.read_bytes(), 3), (gray, 1), (gray, 3)]
    assert all(jpeg_file(source, in_chans) is not None for source, in_chans in cases)
    fast = [_crops(source, in_chans) for source, in_chans in cases]
    with monkeypatch.context() as patch:
        patch.setattr(image_pipeline, "simplejpeg", None)  # every file through Pillow
        assert jpeg_file(photo, 3) is None
        pillow = [_crops(source, in_chans) for source, in_chans in cases]
    for ours, theirs in zip(fast, pillow):
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
    # A file simplejpeg reads the header of but cannot decode goes to Pillow with the same plan: the same crop.
    with monkeypatch.context() as patch:
        patch.setattr(image_pipeline, "decode_jpeg", lambda *args: None)
        assert all(torch.equal(a, b) for a, b in zip(_crops(photo, 3), pillow[0]))


def test_jpegs_simplejpeg_leaves_to_pillow_decode_and_bad_ones_are_named(photo, tmp_path, monkeypatch):
    pytest.importorskip("simplejpeg")
    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(_gradient(300, 200)).convert("CMYK").save(cmyk, quality=90)
    png = tmp_path / "gradient.png"
    Image.fromarray(_gradient(300, 200)).save(png)
    # Pillow's own CMYK conversion, its luma of a colour JPEG, other formats: not simplejpeg's.
    assert jpeg_file(cmyk, 3) is None and jpeg_file(photo, 1) is None and jpeg_file(png, 3) is None
    assert TrainCrop((64, 64))(cmyk, 3, random.Random(0)).shape == (3, 64, 64)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(photo.read_bytes()[:20000])
    assert jpeg_file(truncated, 3) is not None  # its header reads; its pixels do not
    with pytest.raises(ImageDataError, match=r"truncated\.jpg: corrupt or truncated"):
        TrainCrop((64, 64))(truncated, 3, random.Random(0))
    monkeypatch.setenv("RESNETKIT_MAX_IMAGE_PIXELS", "1000000")
    with pytest.raises(ImageDataError, match=r"holiday\.jpg: 1600x1200 = 1,920,000 pixels, above the limit"):
        EvalCrop((64, 64))(photo.read_bytes(), 3, name="holiday.jpg")


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    g = np.random.default_rng(0)
    for c, name in enumerate(("cat", "dog")):
        (root / name).mkdir()
        for i in range(6):
            image = np.roll(_gradient(320, 240), shift=int(g.integers(0, 200)), axis=1 - c)
            Image.fromarray(image).save(root / name / f"{i}.jpg", quality=90)
    good = (root / "cat" / "0.jpg").read_bytes()
    (root / "cat" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    return root


def _files(root) -> ImageFiles:
    samples = [(str(p), c) for c, name in enumerate(("cat", "dog")) for p in sorted((root / name).glob("*.jpg"))]
    return ImageFiles(samples, ["cat", "dog"], source=str(root))


def test_training_batches_are_uint8_until_the_device_and_depend_on_the_seed_only(photo_folder):
    data = _files(photo_folder)
    spec = ImageInputSpec(3, (64, 64), MEAN, STD, crop_pct=0.875)
    options = dict(train=True, batch_size=4, augment=get_preset("imagenet"), seed=3, workers=0)
    source = data.batches(spec, BatchOptions(**options))
    x, y = next(source.host_batches(0))
    assert x.dtype == torch.uint8 and tuple(x.shape) == (4, 3, 64, 64)  # what workers hand over
    first = list(source.epoch(0))
    assert len(first) == 3 and all(b.dtype == torch.float32 for b, _ in first)  # 13 files: 3 batches, the 13th left
    again = list(data.batches(spec, BatchOptions(**options)).epoch(0))
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(first, again))
    resumed = list(data.batches(spec, BatchOptions(**options)).epoch(0, start_step=1))
    assert len(resumed) == 2 and all(torch.equal(a, b) for (a, _), (b, _) in zip(first[1:], resumed))
    other_epoch = list(source.epoch(1))
    assert not all(torch.equal(a, b) for (a, _), (b, _) in zip(first, other_epoch))
    # The truncated JPEG goes through the skipped-file path, named.
    evaluation = data.batches(spec, BatchOptions(train=False, batch_size=5, workers=0))
    assert [len(b) for b, _ in evaluation.epoch(0)] == [5, 4, 3]  # 13 files: the truncated 7th left out of the second batch
    assert [s.path.split("/")[-1] for s in evaluation.skipped] == ["truncated.jpg"]
    index = next(i for i, (p, _) in enumerate(data.samples) if p.endswith("truncated.jpg"))
    item = data.with_reader(TrainCrop((64, 64)))[(index, 0)]
    assert isinstance(item, SkippedFile) and "truncated.jpg" in item.reason and "truncated" in item.reason


@pytest.mark.slow
def test_worker_processes_give_the_same_batches_as_the_main_process(photo_folder):
    data = _files(photo_folder)
    spec = ImageInputSpec(3, (64, 64), MEAN, STD, crop_pct=0.875)
    options = dict(train=True, batch_size=4, augment=get_preset("imagenet"), seed=3)
    inline = list(data.batches(spec, BatchOptions(workers=0, **options)).epoch(0))
    workers = data.batches(spec, BatchOptions(workers=2, **options))
    pooled = list(workers.epoch(0))
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(inline, pooled))
    first_pool = workers.loader._iterator  # torch's; with persistent workers it lives from epoch to epoch
    list(workers.epoch(1))
    assert workers.loader._iterator is first_pool
    evaluation = data.batches(spec, BatchOptions(train=False, batch_size=5, workers=2))
    assert [len(b) for b, _ in evaluation.epoch(0)] == [5, 4, 3]
    assert [s.path.split("/")[-1] for s in evaluation.skipped] == ["truncated.jpg"]
