"""Reading one image into a uint8 tensor, whatever the file (or upload) holds.

Pillow decodes (torchvision.io's decoders are deprecated since 0.29). Three things a naive
``Image.open(path).convert("RGB")`` gets wrong are handled here:

- 16-bit images (PNG, TIFF) are scaled to 8 bits; ``convert`` would clip every value above
  255 to white.
- Images above :data:`MAX_IMAGE_PIXELS` pixels are refused before they are decoded (a small
  file can expand to gigabytes: a decompression bomb). Set ``RESNETKIT_MAX_IMAGE_PIXELS`` to
  raise the limit.
- A truncated file raises instead of coming back half gray (Pillow's LOAD_TRUNCATED_IMAGES
  stays off).
"""

from __future__ import annotations

import io
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Optional

import numpy as np
import torch

from .interface import SkippedFile

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
# Pillow's own default (about 89 million pixels, a 9459x9459 image): above it a file is refused.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485


class ImageDataError(ValueError):
    """Bad image data (empty folder, unreadable file, unknown class); the message names it."""


def max_image_pixels() -> int:
    value = os.environ.get("RESNETKIT_MAX_IMAGE_PIXELS")
    if not value:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        limit = int(value)
    except ValueError:
        raise ImageDataError(f"RESNETKIT_MAX_IMAGE_PIXELS must be a whole number of pixels, got {value!r}") from None
    if limit < 1:
        raise ImageDataError(f"RESNETKIT_MAX_IMAGE_PIXELS must be >= 1, got {limit}")
    return limit


def read_image(source: str | Path | bytes | BinaryIO, in_chans: int = 3, name: str | None = None) -> torch.Tensor:
    """Decode one image to uint8 (C, H, W) with ``in_chans`` 1 (gray) or 3 (RGB).

    ``source`` is a path, the file's bytes, or a binary file object (an upload, decoded in
    memory). Raises :class:`ImageDataError` naming ``name`` (default: the path) for an
    empty, unreadable, truncated or too large file.
    """
    if in_chans not in (1, 3):
        raise ValueError(f"in_chans must be 1 or 3 to read an image file, got {in_chans}")
    with open_image(source, name) as img:
        array = to_array(img, in_chans)
    tensor = torch.from_numpy(array)
    return tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()


@contextmanager
def open_image(source: str | Path | bytes | BinaryIO, name: str | None = None) -> Iterator[Any]:
    """The Pillow image of ``source``, opened but not yet decoded, with every failure as :class:`ImageDataError`.

    Empty files and images above :func:`max_image_pixels` are refused before decoding; what
    goes wrong while the ``with`` body decodes (a truncated or corrupt file) is raised as
    ImageDataError naming ``name`` (default: the path) too. Readers that decode only part of
    a file (``Image.draft``) share this with :func:`read_image`.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, (str, Path)):
        name = name or str(source)
        try:
            if os.path.getsize(source) == 0:
                raise ImageDataError(f"{name}: empty file (0 bytes), expected an image")
        except OSError as err:
            raise ImageDataError(f"{name}: cannot read ({err.strerror or err})") from None
    else:
        name = name or "upload"
        if isinstance(source, (bytes, bytearray, memoryview)):
            if len(source) == 0:
                raise ImageDataError(f"{name}: empty file (0 bytes), expected an image")
            source = io.BytesIO(source)
    limit = max_image_pixels()
    try:
        with warnings.catch_warnings():
            # Pillow warns between its limit and twice it, and raises above; both are refusals here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                width, height = img.size
                if width * height > limit:
                    raise ImageDataError(too_large_message(name, width, height, limit))
                yield img
    except ImageDataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageDataError(f"{name}: {err} (limit {limit:,} pixels; RESNETKIT_MAX_IMAGE_PIXELS raises it)") from None
    except UnidentifiedImageError:
        raise ImageDataError(f"{name}: not an image file Pillow can read; expected JPEG, PNG, WebP, GIF, BMP or TIFF") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as err:
        raise ImageDataError(f"{name}: corrupt or truncated image ({type(err).__name__}: {err})") from None


def too_large_message(name: str, width: int, height: int, limit: int) -> str:
    return (f"{name}: {width}x{height} = {width * height:,} pixels, above the limit of {limit:,} pixels "
            "(a guard against decompression bombs); downscale the file or set RESNETKIT_MAX_IMAGE_PIXELS")


def to_array(img, in_chans: int) -> np.ndarray:
    """uint8 (H, W) or (H, W, 3) from any Pillow mode, scaling 16- and 32-bit data instead of clipping it."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        wide = np.asarray(img, dtype=np.float64)
        # 16-bit data (all PNG/TIFF 16-bit gray) spans 0..65535; "I" images holding 8-bit values stay as they are.
        top = 65535.0 if img.mode.startswith("I;16") or wide.max(initial=0) > 255 else 255.0
        gray = np.clip(np.rint(wide * (255.0 / top)), 0, 255).astype(np.uint8)
        return gray if in_chans == 1 else np.repeat(gray[..., None], 3, axis=2)
    if img.mode == "F":
        wide = np.asarray(img, dtype=np.float64)
        top = 1.0 if wide.max(initial=0) <= 1.0 else 255.0  # float images are [0, 1] or [0, 255]
        gray = np.clip(np.rint(np.nan_to_num(wide) * (255.0 / top)), 0, 255).astype(np.uint8)
        return gray if in_chans == 1 else np.repeat(gray[..., None], 3, axis=2)
    return np.array(img.convert("L" if in_chans == 1 else "RGB"), dtype=np.uint8)


def to_uint8_image(item: Any, in_chans: int) -> tuple[str, torch.Tensor]:
    """A path, bytes, a file object, a PIL image or a tensor as uint8 (C, H, W) with ``in_chans`` channels.

    Float tensors are taken as [0, 1] images. Raises ImageDataError for unreadable files and
    ValueError/TypeError for in-memory inputs of the wrong shape or type.
    """
    if isinstance(item, (str, Path)):
        return str(item), read_image(item, in_chans)
    if isinstance(item, (bytes, bytearray, memoryview, io.IOBase)):
        return "upload", read_image(item, in_chans)
    if isinstance(item, torch.Tensor):
        t = item[None] if item.ndim == 2 else item
        if t.ndim != 3:
            raise ValueError(f"an image tensor must be (C, H, W) or (H, W), got shape {tuple(item.shape)}")
        if t.dtype != torch.uint8:
            t = (t.float().clamp(0, 1) * 255).round().to(torch.uint8)
        if t.shape[0] != in_chans:
            if t.shape[0] == 3 and in_chans == 1:
                t = t.float().mean(0, keepdim=True).round().to(torch.uint8)
            elif t.shape[0] == 1:
                t = t.expand(in_chans, -1, -1)
            else:
                raise ValueError(f"image tensor has {t.shape[0]} channels, the model expects {in_chans}")
        return "tensor", t.contiguous()
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        Image = None
    if Image is not None and isinstance(item, Image.Image):
        t = torch.from_numpy(to_array(item, in_chans))
        return "PIL image", (t[None] if t.ndim == 2 else t.permute(2, 0, 1)).contiguous()
    raise TypeError(f"cannot read {type(item).__name__} as an image: pass file paths, bytes, PIL images or tensors")


# -- files decoded in DataLoader workers ------------------------------------------------------


@dataclass(frozen=True)
class UnreadableFile:
    """What a DataLoader worker hands back for a file it could not decode under ``on_corrupt="stop"``."""

    message: str


def collate_readable(batch: list) -> "tuple[Optional[torch.Tensor], Optional[torch.Tensor], list[SkippedFile]] | UnreadableFile":
    """DataLoader collate over decoded samples: ``(images, labels, skipped)``, or the first stop.

    Samples that failed to decode come as their :class:`SkippedFile` and are returned beside
    the batch, so that the main process learns which files the workers left out; a batch
    with no readable sample has ``None`` for images and labels.
    """
    stop = next((b for b in batch if isinstance(b, UnreadableFile)), None)
    if stop is not None:
        return stop
    skipped = [b for b in batch if isinstance(b, SkippedFile)]
    readable = [b for b in batch if not isinstance(b, SkippedFile)]
    if not readable:
        return None, None, skipped
    images, labels = zip(*readable)
    # default_collate stacks straight into shared memory in a worker, saving the copy that
    # sending a plain tensor to the main process would make.
    return torch.utils.data.default_collate(list(images)), torch.tensor(labels, dtype=torch.long), skipped
