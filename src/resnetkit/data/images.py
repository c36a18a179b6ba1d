"""Image data sets: folders of files, torchvision's named sets, and the embedded digits.

Small images (CIFAR-, MNIST-sized) are decoded once into one uint8 tensor (:class:`ImageData`),
so that training augments whole batches on the device and the data path never limits an
epoch. Larger images stay on disk and go through a DataLoader with workers (:class:`ImageFiles`),
by default through :mod:`.image_pipeline`: JPEGs decoded at reduced size when the crop allows,
uint8 crops handed over and normalized on the device.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .augment import AugmentConfig, augment_from
from .classes import label_mapping
from .folders import (
    check_on_corrupt,
    default_cache_dir,
    scan_class_folders,
    split_folders,
    stratified_split,
)
from .image_batches import InMemoryBatches, LoaderBatches
from .image_io import IMAGE_EXTENSIONS, ImageDataError, UnreadableFile, read_image
from .interface import SHOW_PATHS, BatchOptions, DataRequest, DataSplits, LabelledData, Preview, SkippedFile
from .specs import ImageInputSpec, image_spec_for_model

log = logging.getLogger(__name__)

__all__ = ["IMAGE_EXTENSIONS", "ImageData", "ImageDataError", "ImageFiles", "read_image", "resolve_image_data"]

NAMED_DATASETS = ("digits", "cifar10", "cifar100", "mnist", "fashion-mnist")
# Above this side length images are not decoded into memory: they are cropped and resized
# per sample in DataLoader workers instead (image_pipeline). At or below it decoding every
# file once and augmenting batches on the device beats decoding each file every epoch.
IN_MEMORY_MAX_SIDE = 96
IN_MEMORY_MAX_BYTES = 4 * 2**30


@dataclass
class ImageData(LabelledData):
    """Labelled images decoded into memory: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    source: str = ""
    skipped: list[SkippedFile] = field(default_factory=list)
    # The augmentation preset "auto" means: small shifts for digits and characters (a
    # flipped 2 is not a 2), crops and flips for natural images.
    default_preset: str = ""

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ImageDataError(f"{self.source or 'images'}: expected uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ImageDataError(f"{self.source or 'images'}: {self.images.shape[0]} images but {tuple(self.labels.shape)} labels")
        self.default_preset = self.default_preset or ("digits" if self.in_chans == 1 else "cifar")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def in_chans(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.images.shape[-2:])

    def subset(self, indices: torch.Tensor) -> "ImageData":
        return ImageData(self.images[indices], self.labels[indices], list(self.classes), self.source,
                         list(self.skipped), self.default_preset)

    def remap_classes(self, classes: Sequence[str]) -> "ImageData":
        mapping = label_mapping(self.source, self.classes, classes, ImageDataError)
        return ImageData(self.images, mapping[self.labels], list(classes), self.source, self.skipped, self.default_preset)

    def input_spec(self, model: nn.Module | None = None, img_size: int | None = None) -> ImageInputSpec:
        """The model's normalization at this data's own size (or ``img_size``): CIFAR nets are fully
        convolutional, and 8x8 digits need no upsampling."""
        in_chans = getattr(model, "in_chans", None) or self.in_chans
        if in_chans != self.in_chans:
            raise ImageDataError(f"{self.source}: images have {self.in_chans} channel(s), the model expects {in_chans}")
        size = (img_size, img_size) if img_size else self.image_size
        return image_spec_for_model(model, in_chans, size, crop_pct=1.0)

    def augment_config(self, preset: str = "auto", overrides: dict[str, Any] | None = None) -> AugmentConfig:
        return augment_from(self.default_preset if preset == "auto" else preset, overrides)

    def batches(self, spec: ImageInputSpec, options: BatchOptions) -> InMemoryBatches:
        if spec.in_chans != self.in_chans:
            raise ImageDataError(f"{self.source}: images have {self.in_chans} channel(s), the model expects {spec.in_chans}")
        return InMemoryBatches(self, spec, options)

    def preview(self, max_examples: int = 10) -> Preview:
        """The first image of each class."""
        chosen = [int(hits[0]) for c in range(len(self.classes)) if len(hits := (self.labels == c).nonzero().flatten())]
        chosen = chosen[:max_examples]
        labels = [self.classes[int(self.labels[i])] for i in chosen]
        return Preview(self.images[chosen].float() / 255, labels, "image", "examples.png", "training examples")


@dataclass
class ImageFiles(torch.utils.data.Dataset, LabelledData):
    """Image files decoded on demand (for images too large to hold in memory).

    Each item is read by ``reader`` (default: the whole file, :func:`read_image`), called as
    ``reader(path, in_chans, rng)``, e.g. a :class:`~.image_pipeline.TrainCrop` that decodes a
    JPEG at reduced size and returns the crop; ``transform`` then maps that uint8 (C, H, W)
    tensor to a uint8 tensor of the training size. An item is an index, or ``(index, seed)``:
    the seed draws that sample's augmentation, so an epoch's crops depend on the seed and the
    sample's place in the epoch only, not on which worker decodes it or how long the workers
    live. A file that fails to decode returns its :class:`SkippedFile` when
    ``on_corrupt="skip"`` (the skip is logged with its path; the batch source drops it from the
    batch and lists it in its ``skipped``), and an :class:`UnreadableFile` otherwise, which the
    batch source raises. ``draft`` False makes the batch sources decode every file whole
    (see :mod:`.image_pipeline`).
    """

    samples: list[tuple[str, int]]
    classes: list[str]
    in_chans: int = 3
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    on_corrupt: str = "skip"
    source: str = ""
    skipped: list[SkippedFile] = field(default_factory=list)
    reader: Callable[..., torch.Tensor] | None = None
    draft: bool = True

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> torch.Tensor:
        return torch.tensor([label for _, label in self.samples], dtype=torch.long)

    def __getitem__(self, key: int | tuple[int, int]):
        index, seed = key if isinstance(key, tuple) else (key, None)
        path, label = self.samples[index]
        try:
            if self.reader is None:
                image = read_image(path, self.in_chans)
            else:
                image = self.reader(path, self.in_chans, random.Random(seed))
        except ImageDataError as err:
            if self.on_corrupt == "stop":
                # Raised in a worker, the error would reach the user wrapped in the worker's
                # traceback; the batch source raises it in the main process instead.
                return UnreadableFile(str(err))
            log.warning("skipping %s", err)
            return SkippedFile(path, str(err))
        if self.transform is not None:
            if seed is not None and torch.utils.data.get_worker_info() is not None:
                # torchvision's transforms draw from torch's global generator: in a worker, seed it
                # per sample (the main process's generator, workers=0, is the training run's own).
                torch.manual_seed(seed)
            image = self.transform(image)
        return image, label

    def _copy(self, **changes: Any) -> "ImageFiles":
        values = dict(samples=self.samples, classes=self.classes, in_chans=self.in_chans, transform=self.transform,
                      on_corrupt=self.on_corrupt, source=self.source, skipped=self.skipped, reader=self.reader,
                      draft=self.draft)
        values.update(changes)
        return ImageFiles(**values)

    def with_transform(self, transform) -> "ImageFiles":
        return self._copy(transform=transform)

    def with_reader(self, reader, transform=None) -> "ImageFiles":
        """The same files read by ``reader`` (then ``transform``), e.g. an image_pipeline crop."""
        return self._copy(reader=reader, transform=transform)

    def subset(self, indices: torch.Tensor) -> "ImageFiles":
        return self._copy(samples=[self.samples[i] for i in indices.tolist()], classes=list(self.classes))

    def remap_classes(self, classes: Sequence[str]) -> "ImageFiles":
        mapping = label_mapping(self.source, self.classes, classes, ImageDataError)
        return self._copy(samples=[(p, int(mapping[label])) for p, label in self.samples], classes=list(classes))

    def input_spec(self, model: nn.Module | None = None, img_size: int | None = None) -> ImageInputSpec:
        """The model's normalization, size (or ``img_size``) and evaluation crop."""
        in_chans = getattr(model, "in_chans", None) or self.in_chans
        return image_spec_for_model(model, in_chans, (img_size, img_size) if img_size else None)

    def augment_config(self, preset: str = "auto", overrides: dict[str, Any] | None = None) -> AugmentConfig:
        return augment_from("imagenet" if preset == "auto" else preset, overrides)

    def batches(self, spec: ImageInputSpec, options: BatchOptions) -> LoaderBatches:
        if spec.in_chans != self.in_chans:
            raise ImageDataError(f"{self.source}: images are read with {self.in_chans} channel(s), the model expects {spec.in_chans}")
        return LoaderBatches(self, spec, options)


# -- folders ------------------------------------------------------------------------------


def scan_image_folder(root: str | Path) -> tuple[list[tuple[str, int]], list[str]]:
    """Files and class names of an ImageFolder layout (``root/<class>/<image>``)."""
    scan = scan_class_folders(root, IMAGE_EXTENSIONS, ImageDataError, what="image files")
    return scan.samples, scan.classes


def decode_into_memory(
    samples: Sequence[tuple[str, int]], classes: list[str], in_chans: int = 3, on_corrupt: str = "skip", source: str = ""
) -> ImageData:
    """Decode every file once into one uint8 tensor (images of another size are resized)."""
    from torchvision.transforms.v2 import functional as TF

    check_on_corrupt(on_corrupt)
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
        shown = "; ".join(f"{s.path} ({s.reason})" for s in skipped[:SHOW_PATHS])
        more = " ..." if len(skipped) > SHOW_PATHS else ""
        log.warning("skipped %d unreadable file(s) of %s: %s%s", len(skipped), source, shown, more)
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
        except Exception:  # unreadable files are named when they are decoded
            continue
    if not sides:
        return True
    side = max(sides)
    return side <= IN_MEMORY_MAX_SIDE and len(samples) * in_chans * side * side <= IN_MEMORY_MAX_BYTES


def load_folder(root: str | Path, in_chans: int = 3, on_corrupt: str = "skip", in_memory: bool | None = None) -> ImageData | ImageFiles:
    """An ImageFolder-layout folder, decoded into memory when its images are small."""
    check_on_corrupt(on_corrupt)
    samples, classes = scan_image_folder(root)
    if in_memory is None:
        in_memory = _fits_in_memory(samples, in_chans)
    if in_memory:
        return decode_into_memory(samples, classes, in_chans, on_corrupt, source=str(root))
    return ImageFiles(samples, classes, in_chans, None, on_corrupt, source=str(root))


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
    """Turn ``--data`` into train/validation images.

    ``spec`` is ``digits``, a torchvision name (cifar10, cifar100, mnist, fashion-mnist) or a
    folder: ``PATH/train`` with ``PATH/val`` (or ``validation``, ``test``), or one class folder
    split with ``val_split``. ``for_evaluation`` returns the held-out part only (as ``val``):
    the test split where there is one, else the validation split, else the whole folder.
    """
    check_on_corrupt(on_corrupt)
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
    train_dir, held_dir = split_folders(root, for_evaluation)
    if for_evaluation:
        data = load_folder(held_dir or root, chans, on_corrupt)
        return DataSplits(None, data, data.classes, str(held_dir or root))
    if train_dir is not None and held_dir is not None and val_split is None:
        train = load_folder(train_dir, chans, on_corrupt)
        val = load_folder(held_dir, chans, on_corrupt, in_memory=isinstance(train, ImageData))
        if val.classes != train.classes:
            val = val.remap_classes(train.classes)
        return DataSplits(train, val, train.classes, str(root))
    data = load_folder(train_dir or root, chans, on_corrupt)
    train_idx, val_idx = stratified_split(data.labels, val_split if val_split is not None else 0.1, seed)
    return DataSplits(data.subset(train_idx), data.subset(val_idx), data.classes, str(root))


def resolve_image_request(request: DataRequest) -> DataSplits:
    return resolve_image_data(request.data, val_split=request.val_split, seed=request.seed, in_chans=request.in_chans,
                              on_corrupt=request.on_corrupt, cache_dir=request.cache_dir,
                              for_evaluation=request.for_evaluation)


def load_image_eval_data(spec: ImageInputSpec, path: str, on_corrupt: str = "skip") -> ImageData | ImageFiles:
    """The held-out part of ``path`` (its test/ or val/ folder, or the folder itself) read for ``spec``."""
    return resolve_image_data(path, in_chans=spec.in_chans, on_corrupt=on_corrupt, for_evaluation=True).val


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
    return DataSplits(None if for_evaluation else data.subset(train_idx), val, data.classes, "digits")


_TORCHVISION = {
    "cifar10": ("CIFAR10", "cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    "cifar100": ("CIFAR100", "cifar-100-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
    "mnist": ("MNIST", "MNIST/raw/train-images-idx3-ubyte.gz (and the other three files)", "https://ossci-datasets.s3.amazonaws.com/mnist/"),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST/raw/train-images-idx3-ubyte.gz (and the other three files)",
                      "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
}


def _torchvision_dataset(key: str, cache_dir, val_split, seed, for_evaluation) -> DataSplits:
    import torchvision.datasets as tvd

    cls_name, files, url = _TORCHVISION[key]
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    cls = getattr(tvd, cls_name)
    # Clothes are natural images: crops and flips, not the digits' small shifts.
    preset = "cifar" if key == "fashion-mnist" else ""

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
        return ImageData(images.contiguous(), labels, list(ds.classes), f"{key} ({split})", default_preset=preset)

    test = to_image_data(load(False), "test")
    if for_evaluation:
        return DataSplits(None, test, test.classes, key)
    train = to_image_data(load(True), "train")
    if val_split:
        train_idx, val_idx = stratified_split(train.labels, val_split, seed)
        return DataSplits(train.subset(train_idx), train.subset(val_idx), train.classes, key)
    return DataSplits(train, test, train.classes, key)
