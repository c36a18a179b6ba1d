"""The per-file image pipeline for photos: decode at reduced size, crop, resize, flip; uint8 out.

Each training sample is a torchvision RandomResizedCrop (area scale (0.08, 1), log-uniform
aspect ratio (3/4, 4/3), ten tries and then a centre crop) and a coin-flip mirror; evaluation
resizes the shorter side to ``size / crop_pct`` and takes the centre crop. What makes it cheaper
than decoding the whole image and transforming it with PIL (timm's and torchvision's reference
pipelines):

- The crop box is drawn in the original image's coordinates *before* decoding, and a JPEG is
  then decoded with libjpeg's DCT scaling (Pillow's ``Image.draft``) by the largest power of
  two (1/2, 1/4, 1/8) that still leaves the box at least the output size; the box is scaled
  into the reduced image. A 4000x3000 photo cropped for a 224 input decodes a sixteenth or a
  sixty-fourth of its pixels. (A 500x375 photo at 224 is never reduced: no box can be 448
  pixels high.)
- JPEGs are decoded by simplejpeg (libjpeg-turbo, as Pillow's decoder, and the same pixels,
  reduced or not) straight into a numpy array when it is installed (the ``photos`` extra):
  without Pillow's image object, its copy out to numpy and its crop copy, a 500x375 photo's
  crop takes about a quarter less time. CMYK JPEGs, gray crops of colour JPEGs, other formats
  and any file simplejpeg refuses go through Pillow (which also words the error of a file
  that is corrupt).
- Only the crop's pixels are resized, with torch's uint8 antialiased bilinear kernel (the one
  torchvision's tensor transforms use), which on AVX2 takes about half the time of Pillow's
  resize.
- The result stays uint8 (C, H, W): four times fewer bytes to collate, pin and copy than float,
  and the normalization runs on the training device (:class:`~.augment.Normalize`).

Without reduction (``draft=False``, or a box too small to shrink, or a PNG) a training crop is
exactly torchvision's ``RandomResizedCrop`` on the decoded tensor at the same box, and an
evaluation crop exactly ``Resize`` + ``CenterCrop``. With it the crop covers the same region of
the original image; pixels differ by libjpeg's downscaling instead of a bilinear filter
(tests/data/test_image_pipeline.py bounds both).

Both readers are plain picklable callables, ``reader(source, in_chans, rng) -> uint8 (C, H, W)``:
:class:`~.images.ImageFiles` calls them in DataLoader workers, and they work on one file too.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Sequence, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from .image_io import ImageDataError, max_image_pixels, open_image, to_array, too_large_message

try:  # the `photos` extra: libjpeg-turbo straight into numpy
    import simplejpeg
except ImportError:  # pragma: no cover - Pillow decodes every file then
    simplejpeg = None

# torchvision's RandomResizedCrop defaults (Szegedy et al. 2015, the Inception crop).
SCALE = (0.08, 1.0)
RATIO = (3.0 / 4.0, 4.0 / 3.0)
# libjpeg scales by 1/2, 1/4 and 1/8 (Pillow's draft picks among these).
MAX_REDUCTION = 8

Source = str | Path | bytes | BinaryIO


@dataclass(frozen=True)
class Box:
    """A crop box in pixels of the original image."""

    left: int
    top: int
    width: int
    height: int


def random_resized_crop_box(width: int, height: int, scale: Sequence[float] = SCALE,
                            ratio: Sequence[float] = RATIO, rng: Any = random) -> Box:
    """torchvision's ``RandomResizedCrop.get_params`` with the draws taken from ``rng`` (a ``random.Random``)."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return Box(rng.randint(0, width - w), rng.randint(0, height - h), w, h)
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return Box((width - w) // 2, (height - h) // 2, w, h)


def reduction_for(box_width: float, box_height: float, size: Sequence[int]) -> int:
    """The largest power of two (at most 8) that shrinks a box of this size to no less than ``size`` (h, w)."""
    room = min(box_width / size[1], box_height / size[0], MAX_REDUCTION)
    factor = 1
    while factor * 2 <= room:
        factor *= 2
    return factor


def decode_reduced(img: Any, in_chans: int, reduction: int) -> tuple[Any, int]:
    """``img`` (opened by :func:`~.image_io.open_image`) decoded in mode RGB or L, and the reduction applied.

    JPEGs are decoded at 1/``reduction`` of each side by libjpeg (the size rounds up: a
    reduced pixel i covers original pixels [i*r, (i+1)*r)); other formats ignore the request
    and come back whole (reduction 1). 16-bit and float images are scaled as
    :func:`~.image_io.read_image` scales them.
    """
    from PIL import Image

    mode = "L" if in_chans == 1 else "RGB"
    applied = 1
    if reduction > 1:
        width, height = img.size
        # Pillow picks the largest scale whose image is at least the requested size: ask for
        # exactly 1/reduction (rounded down) so that it picks this one.
        drafted = img.draft(mode, (width // reduction, height // reduction))
        if drafted is not None:
            applied = int(round(width / drafted[1][2]))  # draft's box is (0, 0, width/scale, height/scale)
    img.load()
    if img.mode != mode:
        array = to_array(img, in_chans)
        img = Image.fromarray(array[..., 0] if array.ndim == 3 and in_chans == 1 else array)
    return img, applied


@dataclass(frozen=True)
class JpegFile:
    """A JPEG's bytes and size, for simplejpeg; see :func:`jpeg_file`."""

    data: bytes
    width: int
    height: int


def jpeg_file(source: Source, in_chans: int, name: str | None = None) -> JpegFile | None:
    """``source`` as a :class:`JpegFile` when simplejpeg can decode it to exactly Pillow's pixels, else None.

    None sends the file through Pillow: simplejpeg not installed, a file object, not a JPEG
    (only its first two bytes are read), a header it cannot read (Pillow words the error),
    CMYK or YCCK (Pillow's own conversion), a gray crop of a colour JPEG (Pillow's luma from
    RGB). An image above the pixel limit is refused here as it is by :func:`~.image_io.open_image`.
    """
    if simplejpeg is None or not isinstance(source, (str, Path, bytes, bytearray, memoryview)):
        return None
    if isinstance(source, (str, Path)):
        try:
            with open(source, "rb") as f:
                if f.read(2) != b"\xff\xd8":
                    return None
                data = b"\xff\xd8" + f.read()
        except OSError:
            return None
    else:
        data = bytes(source)
        if data[:2] != b"\xff\xd8":
            return None
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    if colorspace not in ("YCbCr", "RGB", "Gray") or (in_chans == 1 and colorspace != "Gray"):
        return None
    limit = max_image_pixels()
    if width * height > limit:
        label = name or (str(source) if isinstance(source, (str, Path)) else "upload")
        raise ImageDataError(too_large_message(label, width, height, limit))
    return JpegFile(data, width, height)


def decode_jpeg(jpeg: JpegFile, in_chans: int, reduction: int) -> tuple[torch.Tensor, int] | None:
    """uint8 (H, W, C) of ``jpeg`` decoded at 1/``reduction`` of each side, and the reduction applied; None if simplejpeg refuses it.

    The sizes round up as Pillow's draft does (a reduced pixel i covers original pixels
    [i*r, (i+1)*r)), and the pixels are Pillow's (tests/data/test_image_pipeline.py).
    """
    try:
        array = simplejpeg.decode_jpeg(
            jpeg.data, "GRAY" if in_chans == 1 else "RGB", min_factor=reduction,
            min_height=-(-jpeg.height // reduction), min_width=-(-jpeg.width // reduction),
        )
    except ValueError:  # truncated or corrupt: Pillow's path raises the worded error
        return None
    applied = max(1, int(round(jpeg.width / array.shape[1])))
    return torch.from_numpy(array), applied


def resized_pixels(hwc: torch.Tensor, left: int, top: int, width: int, height: int, size: Sequence[int]) -> torch.Tensor:
    """A region of a uint8 (H, W, C) tensor resized to ``size`` (h, w): uint8 (C, h, w), antialiased bilinear.

    torch's uint8 kernel (torchvision's ``resized_crop`` on uint8 tensors) reads the region
    in place; only the output is written.
    """
    region = hwc[top : top + height, left : left + width].permute(2, 0, 1)
    if (height, width) == tuple(size):
        return region.contiguous()
    return F.interpolate(region[None], size=tuple(size), mode="bilinear", antialias=True, align_corners=False)[0]


def reduced_box(box: Box, applied: int, decoded_size: Sequence[int]) -> tuple[int, int, int, int]:
    """``box`` in pixels of the image decoded at 1/``applied``: (left, top, width, height).

    Rounded to the nearest edge: at most half a reduced pixel off, on a box at least the
    output size wide.
    """
    if applied == 1:
        return box.left, box.top, box.width, box.height
    left, top = round(box.left / applied), round(box.top / applied)
    right = min(max(left + 1, round((box.left + box.width) / applied)), decoded_size[0])
    bottom = min(max(top + 1, round((box.top + box.height) / applied)), decoded_size[1])
    return left, top, right - left, bottom - top


@dataclass(frozen=True)
class Decoded:
    """An image decoded at 1/``applied`` of each side: a uint8 (H, W, C) tensor (simplejpeg) or a Pillow image."""

    pixels: Any
    applied: int

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the decoded pixels."""
        if isinstance(self.pixels, torch.Tensor):
            return self.pixels.shape[1], self.pixels.shape[0]
        return self.pixels.size

    def resized(self, left: int, top: int, width: int, height: int, size: Sequence[int]) -> torch.Tensor:
        """A region resized to ``size`` (h, w): uint8 (C, h, w); see :func:`resized_pixels`, :func:`resized_region`."""
        if isinstance(self.pixels, torch.Tensor):
            return resized_pixels(self.pixels, left, top, width, height, size)
        return resized_region(self.pixels, left, top, width, height, size)


Plan = TypeVar("Plan")


def decode_planned(source: Source, in_chans: int, name: str | None,
                   plan: Callable[[int, int], tuple[int, Plan]]) -> tuple[Decoded, Plan]:
    """``source`` decoded at the reduction ``plan(width, height)`` asks for, and what else the plan returned.

    The plan (a crop box, a resize) is made once from the image's size, before decoding:
    simplejpeg's header when it can decode the file, else Pillow's. A JPEG that simplejpeg
    reads the header of but cannot decode goes to Pillow with the same plan (and Pillow words
    the error if the file is corrupt), so the crop does not depend on which decoder ran.
    """
    jpeg = jpeg_file(source, in_chans, name)
    if jpeg is not None:
        reduction, planned = plan(jpeg.width, jpeg.height)
        decoded = decode_jpeg(jpeg, in_chans, reduction)
        if decoded is not None:
            return Decoded(*decoded), planned
    with open_image(source, name) as img:
        if jpeg is None:
            reduction, planned = plan(*img.size)
        image, applied = decode_reduced(img, in_chans, reduction)
    return Decoded(image, applied), planned


def resized_region(img: Any, left: int, top: int, width: int, height: int, size: Sequence[int]) -> torch.Tensor:
    """A region of a decoded RGB or L Pillow image resized to ``size`` (h, w): uint8 (C, h, w), antialiased bilinear.

    The region is copied out by Pillow (its pixels only, not the whole image's) and resized by
    torch's uint8 kernel, the one torchvision's ``resized_crop`` uses on uint8 tensors.
    """
    region = img.crop((left, top, left + width, top + height)) if (left, top, width, height) != (0, 0, *img.size) else img
    array = np.array(region)  # a writable copy: torch takes it without a warning
    hwc = torch.from_numpy(array[..., None] if array.ndim == 2 else array)
    if (height, width) == tuple(size):
        return hwc.permute(2, 0, 1).contiguous()
    out = F.interpolate(hwc.permute(2, 0, 1)[None], size=tuple(size), mode="bilinear", antialias=True,
                        align_corners=False)
    return out[0]


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be (height, width) >= 1 or one int, got {size}")
    return size


@dataclass(frozen=True)
class TrainCrop:
    """A training sample from an image file: RandomResizedCrop to ``size`` and a mirror, uint8 (C, H, W).

    ``scale`` None resizes the whole image to ``size`` (the crop of augmentations without a
    scale range); ``draft`` False decodes every file whole (torchvision's result exactly).
    """

    size: tuple[int, int]
    scale: tuple[float, float] | None = SCALE
    ratio: tuple[float, float] = RATIO
    hflip: bool = True
    draft: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", _check_size(self.size))
        if self.scale is not None and not (0 < self.scale[0] <= self.scale[1] <= 1):
            raise ValueError(f"scale must be (min, max) with 0 < min <= max <= 1, got {self.scale}")
        if not (0 < self.ratio[0] <= self.ratio[1]):
            raise ValueError(f"ratio must be (min, max) with 0 < min <= max, got {self.ratio}")

    def box(self, width: int, height: int, rng: Any = random) -> Box:
        """The crop box of an image of this size, in its own pixels."""
        if self.scale is None:
            return Box(0, 0, width, height)
        return random_resized_crop_box(width, height, self.scale, self.ratio, rng)

    def __call__(self, source: Source, in_chans: int = 3, rng: Any = None, name: str | None = None) -> torch.Tensor:
        rng = rng if rng is not None else random

        def plan(width: int, height: int) -> tuple[int, Box]:
            box = self.box(width, height, rng)  # drawn before decoding: it decides the reduction
            return (reduction_for(box.width, box.height, self.size) if self.draft else 1), box

        decoded, box = decode_planned(source, in_chans, name, plan)
        out = decoded.resized(*reduced_box(box, decoded.applied, decoded.size), self.size)
        if self.hflip and rng.random() < 0.5:
            out = out.flip(-1)
        return out


@dataclass(frozen=True)
class EvalCrop:
    """An evaluation sample from an image file: shorter side to ``size / crop_pct``, centre crop, uint8 (C, H, W).

    The sizes are those of torchvision's ``Resize(round(min(size) / crop_pct))`` + ``CenterCrop(size)``
    (the policy of :func:`~.augment.eval_transform`), computed from the original image even when
    it is decoded reduced.
    """

    size: tuple[int, int]
    crop_pct: float = 0.875
    draft: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", _check_size(self.size))
        if not 0 < self.crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct}")

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(h, w) of the image after the shorter-side resize, as torchvision computes it."""
        target = min(int(round(s / self.crop_pct)) for s in self.size)
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = target, int(target * long / short)
        return (new_long, new_short) if width <= height else (new_short, new_long)

    def __call__(self, source: Source, in_chans: int = 3, rng: Any = None, name: str | None = None) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as TF

        def plan(width: int, height: int) -> tuple[int, tuple[int, int]]:
            resize = self.resized_size(width, height)
            return (reduction_for(width, height, resize) if self.draft else 1), resize

        decoded, resize = decode_planned(source, in_chans, name, plan)
        # torchvision's Resize leaves an image of the target size as it is; so does Decoded.resized.
        resized = decoded.resized(0, 0, *decoded.size, resize)
        return TF.center_crop(resized, list(self.size)).contiguous()
