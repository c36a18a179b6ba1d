"""Image data sets: folders of files, torchvision's named sets, and the embedded digits.

Small images (CIFAR-, MNIST-sized) are decoded once into one uint8 tensor, so that training
can augment whole batches on the device and the data path never limits an epoch. Larger
images stay on disk and go through a DataLoader with workers (:class:`ImageFiles`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from .classes import label_mapping

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
NAMED_DATASETS = ("digits", "cifar10", "cifar100", "mnist", "fashion-mnist")
# Above this side length images are not decoded into memory: they are cropped and resized
# per sample in DataLoader workers instead.
IN_MEMORY_MAX_SIDE = 96
IN_MEMORY_MAX_BYTES = 4 * 2**30


class ImageDataError(ValueError):
    """Bad image data (empty folder, unreadable file, unknown class); the message names it."""


@dataclass
class SkippedFile:
    path: str
    reason: str


@dataclass
class ImageData:
    """Labelled images decoded into memory: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    source: str = ""
    skipped: list[SkippedFile] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ImageDataError(f"{self.source or 'images'}: expected uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ImageDataError(f"{self.source or 'images'}: {self.images.shape[0]} images but {tuple(self.labels.shape)} labels")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def in_chans(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.images.shape[-2:])

    def subset(self, indices: torch.Tensor) -> "ImageData":
        return ImageData(self.images[indices], self.labels[indices], list(self.classes), self.source, list(self.skipped))


@dataclass
class ImageFiles(torch.utils.data.Dataset):
    """Image files decoded on demand (for images too large to hold in memory).

    ``transform`` maps a uint8 (C, H, W) tensor to a uint8 tensor of the training size. A file
    that fails to decode returns None when ``on_corrupt="skip"`` (the collate function drops it
    and the skip is logged with its path), and raises :class:`ImageDataError` otherwise.
    """

    samples: list[tuple[str, int]]
    classes: list[str]
    in_chans: int = 3
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    on_corrupt: str = "skip"
    source: str = ""

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> torch.Tensor:
        return torch.tensor([label for _, label in self.samples], dtype=torch.long)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        try:
            image = read_image(path, self.in_chans)
        except ImageDataError as err:
            if self.on_corrupt == "stop":
                raise
            log.warning("skipping %s", err)
            return None
        if self.transform is not None:
            image = self.transform(image)
        return image, label

    def with_transform(self, transform) -> "ImageFiles":
        return ImageFiles(self.samples, self.classes, self.in_chans, transform, self.on_corrupt, self.source)

    def subset(self, indices: torch.Tensor) -> "ImageFiles":
        samples = [self.samples[i] for i in indices.tolist()]
        return ImageFiles(samples, list(self.classes), self.in_chans, self.transform, self.on_corrupt, self.source)


def collate_skipping_none(batch):
    """DataLoader collate that drops samples that failed to decode."""
    batch = [b for b in batch if b is not None]
    if not batch:
        return None
    images, labels = zip(*batch)
    return torch.stack(images), torch.tensor(labels, dtype=torch.long)


def read_image(path: str | Path, in_chans: int = 3) -> torch.Tensor:
    """Decode one file to uint8 (C, H, W) with ``in_chans`` 1 (gray) or 3 (RGB).

    Pillow decodes (torchvision.io's decoders are deprecated since 0.29); a truncated file
    raises instead of coming back half gray, since Pillow's LOAD_TRUNCATED_IMAGES is off.
    """
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    path = str(path)
    try:
        if os.path.getsize(path) == 0:
            raise ImageDataError(f"{path}: empty file (0 bytes), expected an image")
        with Image.open(path) as img:
            img = img.convert("L" if in_chans == 1 else "RGB")
            array = np.asarray(img, dtype=np.uint8)
    except ImageDataError:
        raise
    except UnidentifiedImageError:
        raise ImageDataError(f"{path}: not an image file Pillow can read; expected JPEG, PNG, WebP, GIF, BMP or TIFF") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageDataError(f"{path}: corrupt or truncated image ({err})") from None
    tensor = torch.from_numpy(array.copy())
    return tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()


# -- folders ------------------------------------------------------------------------------


def scan_image_folder(root: str | Path) -> tuple[list[tuple[str, int]], list[str]]:
    """Files and class names of an ImageFolder layout (``root/<class>/<image>``).

    Raises :class:`ImageDataError` for a missing folder, a folder without class subfolders, or
    a class folder without image files (which would otherwise give a class that can never be
    predicted correctly and a silent shift of every later label).
    """
    root = Path(root)
    if not root.is_dir():
        raise ImageDataError(f"{root}: not a folder; expected an image folder with one subfolder per class")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise ImageDataError(
            f"{root}: no class subfolders; expected {root}/<class name>/<image files> "
            f"(or {root}/train/<class name>/...)"
        )
    samples: list[tuple[str, int]] = []
    for index, name in enumerate(classes):
        files = sorted(
            str(p) for p in (root / name).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not files:
            raise ImageDataError(
                f"class folder {root / name} has no image files (expected {', '.join(IMAGE_EXTENSIONS)}); "
                "remove it or add images"
            )
        samples.extend((f, index) for f in files)
    return samples, classes


def decode_into_memory(
    samples: Sequence[tuple[str, int]], classes: list[str], in_chans: int = 3, on_corrupt: str = "skip", source: str = ""
) -> ImageData:
    """Decode every file once into one uint8 tensor (images of another size are resized)."""
    from torchvision.transforms.v2 import functional as TF

    images, labels, skipped = [], [], []
    size = None
    resized = 0
    for path, label in samples:
        try:
            img = read_image(path, in_chans)
        except ImageDataError as err:
            if on_corrupt == "stop":
                raise ImageDataError(f"{err} (stopping: --on-corrupt stop)") from None
            skipped.append(SkippedFile(path, str(err).split(": ", 1)[-1]))
            continue
        if size is None:
            size = tuple(img.shape[-2:])
        elif tuple(img.shape[-2:]) != size:
            img = TF.resize(img, list(size), antialias=True)
            resized += 1
        images.append(img)
        labels.append(label)
    if skipped:
        shown = "; ".join(f"{s.path} ({s.reason})" for s in skipped[:5])
        log.warning("skipped %d unreadable file(s) of %s: %s%s", len(skipped), source, shown, " ..." if len(skipped) > 5 else "")
    if resized:
        log.warning("%s: resized %d image(s) to %dx%d, the size of the first image", source, resized, *size)
    if not images:
        raise ImageDataError(f"{source}: no readable images among {len(samples)} file(s)")
    return ImageData(torch.stack(images), torch.tensor(labels, dtype=torch.long), list(classes), source, skipped)


def _fits_in_memory(samples: Sequence[tuple[str, int]], in_chans: int) -> bool:
    from PIL import Image

    probe = samples[:: max(1, len(samples) // 32)][:32]
    sides = []
    for path, _ in probe:
        try:
            with Image.open(path) as img:
                sides.append(max(img.size))
        except Exception:
            continue
    if not sides:
        return True
    side = max(sides)
    return side <= IN_MEMORY_MAX_SIDE and len(samples) * in_chans * side * side <= IN_MEMORY_MAX_BYTES


def load_folder(root: str | Path, in_chans: int = 3, on_corrupt: str = "skip", in_memory: bool | None = None) -> ImageData | ImageFiles:
    """An ImageFolder-layout folder, decoded into memory when its images are small."""
    samples, classes = scan_image_folder(root)
    if in_memory is None:
        in_memory = _fits_in_memory(samples, in_chans)
    if in_memory:
        return decode_into_memory(samples, classes, in_chans, on_corrupt, source=str(root))
    return ImageFiles(samples, classes, in_chans, None, on_corrupt, source=str(root))


# -- splits -------------------------------------------------------------------------------


def stratified_split(labels: torch.Tensor, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and validation indices with the same class proportions in both (seeded)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_split must be in (0, 1), got {val_fraction}")
    g = torch.Generator().manual_seed(seed)
    train, val = [], []
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_val = int(round(len(idx) * val_fraction))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return torch.cat(train).sort().values, torch.cat(val).sort().values


@dataclass
class DataSplits:
    train: ImageData | ImageFiles | None
    val: ImageData | ImageFiles | None
    classes: list[str]
    name: str
    # The data set's own pixel statistics are not used: the model's data config decides
    # normalization. ``native_size`` records the stored image size for in-memory sets.
    native_size: tuple[int, int] | None = None


def resolve_image_data(
    spec: str,
    *,
    val_split: float | None = None,
    seed: int = 0,
    in_chans: int | None = None,
    on_corrupt: str = "skip",
    cache_dir: str | Path | None = None,
    for_evaluation: bool = False,
) -> DataSplits:
    """Turn ``--data`` into train/validation data.

    ``spec`` is ``digits``, a torchvision name (cifar10, cifar100, mnist, fashion-mnist) or a
    folder: ``PATH/train`` with ``PATH/val`` (or ``validation``, ``test``), or one class folder
    split with ``val_split``. ``for_evaluation`` returns the held-out part only (as ``val``):
    the test split where there is one, else the validation split, else the whole folder.
    """
    if on_corrupt not in ("skip", "stop"):
        raise ValueError(f"on_corrupt must be 'skip' or 'stop', got {on_corrupt!r}")
    key = spec.lower()
    if key in NAMED_DATASETS and not Path(spec).exists():
        if key == "digits":
            return _digits(val_split if val_split is not None else 0.2, seed, for_evaluation)
        return _torchvision_dataset(key, cache_dir, val_split, seed, for_evaluation)
    root = Path(spec).expanduser()
    if not root.exists():
        raise ImageDataError(
            f"--data {spec}: no such folder, and not a known data set name ({', '.join(NAMED_DATASETS)})"
        )
    chans = in_chans or 3
    train_dir = _first_existing(root, ("train", "training"))
    held_dir = _first_existing(root, ("test", "val", "validation") if for_evaluation else ("val", "validation", "test"))
    if for_evaluation:
        data = load_folder(held_dir or root, chans, on_corrupt)
        return DataSplits(None, data, data.classes, str(held_dir or root), _native(data))
    if train_dir is not None and held_dir is not None and val_split is None:
        train = load_folder(train_dir, chans, on_corrupt)
        val = load_folder(held_dir, chans, on_corrupt, in_memory=isinstance(train, ImageData))
        if val.classes != train.classes:
            val = remap_classes(val, train.classes)
        return DataSplits(train, val, train.classes, str(root), _native(train))
    data = load_folder(train_dir or root, chans, on_corrupt)
    train_idx, val_idx = stratified_split(data.labels, val_split if val_split is not None else 0.1, seed)
    return DataSplits(data.subset(train_idx), data.subset(val_idx), data.classes, str(root), _native(data))


def _native(data) -> tuple[int, int] | None:
    return data.image_size if isinstance(data, ImageData) else None


def _first_existing(root: Path, names: Sequence[str]) -> Path | None:
    for name in names:
        if (root / name).is_dir():
            return root / name
    return None


def remap_classes(data: ImageData | ImageFiles, target_classes: Sequence[str]) -> ImageData | ImageFiles:
    """Relabel ``data`` so that label i means ``target_classes[i]``, matching by class name."""
    mapping = label_mapping(data.source, data.classes, target_classes, ImageDataError)
    if isinstance(data, ImageData):
        return ImageData(data.images, mapping[data.labels], list(target_classes), data.source, data.skipped)
    samples = [(p, int(mapping[label])) for p, label in data.samples]
    return ImageFiles(samples, list(target_classes), data.in_chans, data.transform, data.on_corrupt, data.source)


# -- named data sets ----------------------------------------------------------------------


def _digits(val_fraction: float, seed: int, for_evaluation: bool) -> DataSplits:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, no download)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Pixel values are 0..16; scale to the 0..255 of every other image source.
    images = torch.from_numpy((bunch.images * (255.0 / 16.0)).round()).to(torch.uint8)[:, None]
    labels = torch.from_numpy(bunch.target).long()
    data = ImageData(images, labels, [str(i) for i in range(10)], "digits (scikit-learn)")
    train_idx, val_idx = stratified_split(labels, val_fraction, seed)
    val = data.subset(val_idx)
    return DataSplits(None if for_evaluation else data.subset(train_idx), val, data.classes, "digits", (8, 8))


_TORCHVISION = {
    "cifar10": ("CIFAR10", "cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    "cifar100": ("CIFAR100", "cifar-100-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
    "mnist": ("MNIST", "MNIST/raw/train-images-idx3-ubyte.gz (and the other three files)", "https://ossci-datasets.s3.amazonaws.com/mnist/"),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST/raw/train-images-idx3-ubyte.gz (and the other three files)",
                      "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
}


def default_cache_dir() -> Path:
    return Path(os.environ.get("RESNETKIT_CACHE", Path.home() / ".cache" / "resnetkit")) / "datasets"


def _torchvision_dataset(key: str, cache_dir, val_split, seed, for_evaluation) -> DataSplits:
    import torchvision.datasets as tvd

    cls_name, files, url = _TORCHVISION[key]
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    cls = getattr(tvd, cls_name)

    def load(train: bool):
        try:
            return cls(str(root), train=train, download=True)
        except Exception as err:  # offline: URLError, socket timeouts, HTTP errors
            raise ImageDataError(
                f"could not download {key} ({type(err).__name__}: {err}).\n"
                f"  Offline? Put {files} from {url} into {root}/ and run again,\n"
                f"  or pass --data PATH to an image folder (PATH/<class>/<image> or PATH/train, PATH/val)."
            ) from None

    def to_image_data(ds, split: str) -> ImageData:
        data = torch.as_tensor(ds.data)
        images = data.permute(0, 3, 1, 2) if data.ndim == 4 else data[:, None]  # CIFAR is NHWC, MNIST NHW
        labels = torch.as_tensor(ds.targets, dtype=torch.long)
        return ImageData(images.contiguous(), labels, list(ds.classes), f"{key} ({split})")

    test = to_image_data(load(False), "test")
    if for_evaluation:
        return DataSplits(None, test, test.classes, key, test.image_size)
    train = to_image_data(load(True), "train")
    if val_split:
        train_idx, val_idx = stratified_split(train.labels, val_split, seed)
        return DataSplits(train.subset(train_idx), train.subset(val_idx), train.classes, key, train.image_size)
    return DataSplits(train, test, train.classes, key, train.image_size)
