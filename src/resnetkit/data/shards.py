"""WebDataset shards: ``--data`` as tar files streamed from disk, a pipe or HTTP.

``resnetkit shard`` (:mod:`.shard_writer`) writes a folder of ``train-000000.tar``,
``val-000000.tar``, ... and ``shards.json`` beside them: the kind of input, the class
list and every shard's name, sample count and size in bytes. Each sample is the original
file's bytes (``NNNNNNNN.jpg``, ``NNNNNNNN.wav``, ...) with its class index (``.cls``) and
the path it came from (``.path.txt``); its key is its position in the split's order.

``--data`` takes the folder, a brace pattern (``shards/train-{000000..000099}.tar``), a glob
(``shards/train-*.tar``) or a URL pattern that webdataset's ``gopen`` reads
(``pipe:cat /data/shards/train-{000000..000009}.tar``, ``https://host/shards/train-...``);
``shards.json`` is read from the same place (the pattern with its file name replaced).

How shards are shared out: shard ``i`` (in ``shards.json``'s order) goes to rank
``i % world_size`` (webdataset's ``split_by_node`` rule, with the ranks of our own process
group), and a rank's shards go to its DataLoader workers the same way (``split_by_worker``),
so no sample is read twice in an epoch. Training shuffles each rank's shard order and its
samples (a buffer of :data:`SHUFFLE_BUFFER`) with seeds that depend on (seed, epoch, rank,
worker) only; every rank takes the same number of steps (the smallest rank's share over the
batch size), so DDP never waits on a rank that ran dry. Validation reads the shards in order
without shuffling: the same samples, the same batches, every time.

Resume: an epoch's stream is a function of (seed, epoch, rank, workers), so a run resumed
mid-epoch replays that epoch's stream from its start, discards the batches already trained
on and continues with the batches the uninterrupted run would have taken. That is exact with
DataLoader workers (>= 1), whose per-sample augmentation is seeded per epoch; with
``--workers 0`` the remaining batches hold the same samples but their crops and flips are
drawn from the main process's generator after the replay, so they differ. It is exact only
with the world size and worker count of the interrupted run (both change the stream), and
replaying costs reading the skipped samples again.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import random
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import torch
from torch import nn

from .audio_augment import AudioAugmentConfig, audio_augment_from
from .audio_batches import AudioDeviceStep
from .audio_features import FeatureConfig
from .audio_io import AUDIO_EXTENSIONS, AudioFormatError, fix_length, load_audio
from .augment import AugmentConfig, augment_from, eval_transform, mix_transform, sample_transform
from .batching import BatchSource
from .classes import label_mapping
from .folders import check_on_corrupt
from .image_io import IMAGE_EXTENSIONS, ImageDataError, UnreadableFile, collate_readable, read_image
from .interface import BatchOptions, DataRequest, DataSplits, InputSpec, LabelledData, SkippedFile
from .specs import AudioInputSpec, ImageInputSpec, image_spec_for_model
from ..runtime import distributed

log = logging.getLogger(__name__)

METADATA = "shards.json"
FORMAT = "resnetkit-shards"
VERSION = 1
SPLITS = ("train", "val", "test")
# Samples each worker holds to shuffle from: shards are written shuffled, so this only has to
# mix neighbouring shards' samples, not undo a class-by-class order.
SHUFFLE_BUFFER = 1000
# Images up to this side are treated as the folder reader treats them in memory (CIFAR-style
# spec at their own size, crop-and-flip preset); larger ones as files (the model's size, imagenet preset).
SMALL_IMAGE_SIDE = 96
_URL_PREFIXES = ("pipe:", "http://", "https://", "gs://", "s3://", "file:")


class ShardError(ValueError):
    """Shards that cannot be read as asked; the message names the file (or URL) and what was expected."""


# -- where shards are ------------------------------------------------------------------------------


def _is_url(text: str) -> bool:
    return text.startswith(_URL_PREFIXES)


def is_shard_source(data: object) -> bool:
    """True for a folder with ``shards.json`` or ``.tar`` files, a ``.tar`` path or pattern, or a URL of tars."""
    if not isinstance(data, (str, os.PathLike)):
        return False
    text = str(data)
    if _is_url(text):
        return ".tar" in text
    path = Path(text).expanduser()
    if path.is_dir():
        if (path / METADATA).is_file():
            return True
        with os.scandir(path) as entries:
            return any(e.name.endswith(".tar") and e.is_file() for e in entries)
    return text.endswith(".tar") and (path.is_file() or any(c in text for c in "{*?["))


# The shard's file name inside a path, URL or pipe: command: the last word ending in .tar.
_TAR_NAME = re.compile(r"[^\s/]*\.tar(?=\s|$)")


def _shard_name(url: str) -> str:
    """The file name of one shard's URL (``pipe:cat /d/train-000001.tar`` -> ``train-000001.tar``)."""
    found = list(_TAR_NAME.finditer(url))
    return found[-1].group() if found else url.rsplit("/", 1)[-1]


def _beside(pattern: str, name: str) -> str:
    """``pattern`` with its shard file name replaced by ``name`` (``shards.json`` sits beside the shards)."""
    found = list(_TAR_NAME.finditer(pattern))
    if not found:
        raise ShardError(f"--data {pattern}: no shard file name (NAME.tar) in it to find {METADATA} beside")
    last = found[-1]
    return pattern[:last.start()] + name + pattern[last.end():]


@dataclass(frozen=True)
class Shard:
    url: str  # what webdataset opens: a path, or a URL / pipe: command
    name: str
    split: str
    samples: int
    bytes: int
    first_key: int  # the key (position in its split) of its first sample
    local: bool  # a file on this machine, whose size can be checked before reading


@dataclass
class ShardSet:
    """``shards.json`` read and checked, and the shards ``--data`` named, by split."""

    metadata_url: str
    kind: str
    classes: list[str]
    image_size: Optional[tuple[int, int]]
    max_side: Optional[int]
    by_split: dict[str, list[Shard]]
    named: Optional[list[Shard]]  # the shards a pattern named (None: a folder, every shard)


def _read_metadata(url: str, shown: str) -> dict:
    from webdataset.gopen import gopen

    try:
        if _is_url(url):
            with gopen(url, "rb") as stream:
                raw = stream.read()
        else:
            raw = Path(url).read_bytes()
    except FileNotFoundError:
        raise ShardError(f"{shown}: no {METADATA} at {url}; shards written by `resnetkit shard` have one beside "
                         "them (the class list and every shard's sample count)") from None
    except Exception as err:  # a pipe that fails, an HTTP error: webdataset raises OSError/IOError or ValueError
        # A pipe's (and curl's) own message is on stderr already; webdataset's exception holds its arguments only.
        why = "the command failed: its message is above" if _is_url(url) else f"{type(err).__name__}: {err}"
        raise ShardError(f"{shown}: cannot read {url} ({why}); expected the {METADATA} that `resnetkit shard` "
                         "writes beside the shards") from None
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ShardError(f"{url}: not a {METADATA} of `resnetkit shard` (not JSON: {err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ShardError(f"{url}: not a {METADATA} of `resnetkit shard` (no \"format\": \"{FORMAT}\")")
    if meta.get("version") != VERSION:
        raise ShardError(f"{url}: {METADATA} version {meta.get('version')!r}; this resnetkit reads version {VERSION}")
    if meta.get("kind") not in ("image", "audio"):
        raise ShardError(f"{url}: kind {meta.get('kind')!r}; expected image or audio")
    classes = meta.get("classes")
    if not isinstance(classes, list) or len(classes) < 1 or not all(isinstance(c, str) for c in classes):
        raise ShardError(f"{url}: \"classes\" must be a list of class names")
    return meta


def _local_pattern_urls(pattern: str) -> list[str]:
    """The files a local brace pattern names, or a glob matches."""
    import braceexpand

    names = list(braceexpand.braceexpand(pattern))
    if any(c in pattern for c in "*?["):
        found = sorted({p for name in names for p in glob.glob(os.path.expanduser(name))})
        if not found:
            raise ShardError(f"--data {pattern}: the pattern matches no file")
        return found
    # A node of a job on hosts without a shared file system holds its own shards only: each rank
    # checks those (ShardBatches); here at least one must be there.
    if not any(Path(n).expanduser().is_file() for n in names):
        raise ShardError(f"--data {pattern}: none of the {len(names)} shard(s) it names exists (the first: {names[0]})")
    return [str(Path(n).expanduser()) for n in names]


def read_shard_set(data: str) -> ShardSet:
    """The shards ``data`` names (a folder, a local pattern, a URL pattern) with their ``shards.json``."""
    import braceexpand

    text = str(data)
    local = not _is_url(text)
    if local and Path(text).expanduser().is_dir():
        folder = Path(text).expanduser()
        meta_url, urls = str(folder / METADATA), None
        if not (folder / METADATA).is_file():
            tars = sorted(p.name for p in folder.glob("*.tar"))
            raise ShardError(f"{folder}: no {METADATA} beside its {len(tars)} .tar file(s); it holds the class list "
                             "and sample counts: write the shards with `resnetkit shard`")
        base = str(folder)
    else:
        urls = _local_pattern_urls(text) if local else list(braceexpand.braceexpand(text))
        meta_url = _beside(text, METADATA)
        if local and not Path(meta_url).is_file():
            raise ShardError(f"--data {text}: no {METADATA} beside the shards (looked for {meta_url}); it holds the "
                             "class list and sample counts: write the shards with `resnetkit shard`")
        base = None
    meta = _read_metadata(meta_url, text)
    by_split: dict[str, list[Shard]] = {}
    by_name: dict[str, Shard] = {}
    splits = meta.get("splits")
    if not isinstance(splits, dict):
        raise ShardError(f"{meta_url}: no \"splits\" (train, val, test) of shards")
    for split, entry in splits.items():
        if split not in SPLITS:
            raise ShardError(f"{meta_url}: split {split!r}; expected {', '.join(SPLITS)}")
        shards = []
        try:
            for item in entry["shards"]:
                name = str(item["name"])
                url = os.path.join(base, name) if base is not None else _beside(text, name)
                shard = Shard(url, name, split, int(item["samples"]), int(item["bytes"]), int(item["first_key"]),
                              local=not _is_url(url))
                shards.append(shard)
                by_name[name] = shard
        except (KeyError, TypeError, ValueError) as err:
            raise ShardError(f"{meta_url}: split {split!r} is not a list of shards with name, samples, bytes and "
                             f"first_key ({type(err).__name__}: {err}); write the shards again") from None
        by_split[split] = shards
    named = None
    if urls is not None:
        named = []
        for url in urls:
            name = _shard_name(url)
            if name not in by_name:
                raise ShardError(f"{url}: not a shard that {meta_url} lists (it lists {len(by_name)}: "
                                 f"{', '.join(sorted(by_name)[:3])}{' ...' if len(by_name) > 3 else ''})")
            named.append(replace(by_name[name], url=url))
    size = meta.get("image_size")
    return ShardSet(meta_url, meta["kind"], list(meta["classes"]), tuple(size) if size else None,
                    meta.get("max_side"), by_split, named)


def shard_kind(data: str) -> str:
    """"image" or "audio": what the shards ``data`` names hold (read from ``shards.json``)."""
    return read_shard_set(data).kind


# -- the data --------------------------------------------------------------------------------------


@dataclass
class ShardData(LabelledData):
    """Labelled samples streamed from WebDataset shards (never held in memory as a whole)."""

    shards: list[Shard]
    classes: list[str]
    kind: str  # image or audio
    source: str
    in_chans: int = 3
    image_size: Optional[tuple[int, int]] = None  # images: the shards' common size (shards.json)
    max_side: Optional[int] = None
    features: Optional[FeatureConfig] = None  # audio: how clips are decoded (rate, duration)
    on_corrupt: str = "skip"
    label_map: Optional[torch.Tensor] = None  # stored class index -> index in ``classes`` (remap_classes)
    skipped: list[SkippedFile] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(s.samples for s in self.shards)

    @property
    def small_images(self) -> bool:
        return self.kind == "image" and self.max_side is not None and self.max_side <= SMALL_IMAGE_SIDE

    def remap_classes(self, classes: Sequence[str]) -> "ShardData":
        mapping = label_mapping(self.source, self.classes, classes, ShardError)
        if self.label_map is not None:
            mapping = mapping[self.label_map]
        return replace(self, classes=list(classes), label_map=mapping)

    def input_spec(self, model: nn.Module | None = None, img_size: int | None = None) -> InputSpec:
        if self.kind == "audio":
            if img_size is not None:
                raise ShardError(f"{self.source}: img_size does not apply to audio; the feature settings fix the input size")
            if self.features.normalize == "dataset":
                raise ShardError(f"{self.source}: normalize 'dataset' needs the feature statistics of the whole "
                                 "training set, which streamed shards do not give; use normalize 'utterance' (the default)")
            in_chans = getattr(model, "in_chans", 1) if model is not None else 1
            if in_chans != 1:
                raise ShardError(f"{self.source}: audio features have 1 channel, the model expects {in_chans}")
            return AudioInputSpec(self.features, None)
        in_chans = getattr(model, "in_chans", None) or self.in_chans
        size = (img_size, img_size) if img_size else None
        if self.small_images:
            return image_spec_for_model(model, in_chans, size or self.image_size, crop_pct=1.0)
        return image_spec_for_model(model, in_chans, size)

    def augment_config(self, preset: str = "auto", overrides: dict[str, Any] | None = None) -> Any:
        if self.kind == "audio":
            return audio_augment_from(preset, overrides)
        if preset == "auto":
            preset = ("digits" if self.in_chans == 1 else "cifar") if self.small_images else "imagenet"
        return augment_from(preset, overrides)

    def batches(self, spec: InputSpec, options: BatchOptions) -> "ShardBatches":
        return ShardBatches(self, spec, options)


# -- reading samples in workers -----------------------------------------------------------------------


def _payload(sample: dict, kind: str) -> tuple[str, bytes] | None:
    extensions = IMAGE_EXTENSIONS if kind == "image" else AUDIO_EXTENSIONS
    for key, value in sample.items():
        if not key.startswith("__") and "." + key in extensions:
            return key, value
    return None


@dataclass
class _Decoder:
    """One sample's bytes to ``(tensor, label)`` (in a worker), or what was wrong with it."""

    kind: str
    num_classes: int
    in_chans: int = 3
    transform: Any = None  # images: uint8 CHW -> uint8 at the model's size
    features: Optional[FeatureConfig] = None
    on_corrupt: str = "skip"
    label_map: Optional[torch.Tensor] = None

    def __call__(self, sample: dict):
        url, key = sample.get("__url__", "?"), sample.get("__key__", "?")
        found = _payload(sample, self.kind)
        wanted = ", ".join(IMAGE_EXTENSIONS if self.kind == "image" else AUDIO_EXTENSIONS)
        if found is None:
            return UnreadableFile(f"{url}: sample {key} holds no {self.kind} file (expected one of {wanted}; it has "
                                  f"{', '.join(k for k in sample if not k.startswith('__')) or 'nothing'})")
        if "cls" not in sample:
            return UnreadableFile(f"{url}: sample {key} has no label (expected a {key}.cls member with its class "
                                  "index, as `resnetkit shard` writes)")
        try:
            label = int(sample["cls"].decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            label = -1
        if not 0 <= label < self.num_classes:
            return UnreadableFile(f"{url}: sample {key} has label {sample['cls'][:20]!r}; expected a class index "
                                  f"0..{self.num_classes - 1} of shards.json's classes")
        if self.label_map is not None:
            label = int(self.label_map[label])
        ext, data = found
        origin = sample.get("path.txt", b"").decode("utf-8", "replace")
        name = f"{url}#{key}.{ext}" + (f" ({origin})" if origin else "")
        try:
            if self.kind == "image":
                x = read_image(data, self.in_chans, name=name)
                x = self.transform(x) if self.transform is not None else x
            else:
                wave = load_audio(data, self.features.sample_rate, name=name)
                x = fix_length(wave, self.features.num_samples, "center")
        except (ImageDataError, AudioFormatError) as err:
            if self.on_corrupt == "stop":
                return UnreadableFile(f"{err} (stopping: --on-corrupt stop)")
            log.warning("skipping %s", err)
            return SkippedFile(name, str(err))
        return x, label


class _ShardStream(torch.utils.data.IterableDataset):
    """The samples of some shards, split across DataLoader workers, shuffled or in order."""

    def __init__(self, shards: Sequence[Shard], decode: _Decoder, shuffle_seed: Optional[int],
                 keys: Optional[set[int]] = None) -> None:
        super().__init__()
        self.shards = list(shards)
        self.decode = decode
        self.shuffle_seed = shuffle_seed  # None: in order (evaluation)
        self.keys = keys  # evaluation of chosen samples only

    def _samples(self, shard: Shard) -> Iterator[dict]:
        import webdataset as wds

        count = 0
        try:
            for sample in wds.tarfile_samples([{"url": shard.url}]):
                count += 1
                yield sample
        except Exception as err:  # tarfile.ReadError, a pipe's exit status, an HTTP error, EOF inside a member
            yield {"__error__": f"{shard.url}: not a complete tar file after {count} sample(s) ({type(err).__name__}: "
                                f"{err}); shards.json says {shard.samples}: the shard is truncated or damaged, "
                                "write it again with `resnetkit shard`"}
            return
        if count < shard.samples:
            yield {"__error__": f"{shard.url}: {count} sample(s), shards.json says {shard.samples}: the shard is "
                                "truncated or not the one written with it; write it again with `resnetkit shard`"}

    def __iter__(self):
        import webdataset as wds

        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        mine = list(wds.split_by_worker(iter(self.shards)))

        def stream():
            for shard in mine:
                yield from self._samples(shard)

        samples = stream()
        if self.shuffle_seed is not None:
            rng = random.Random(self.shuffle_seed * 1_000_003 + worker)
            samples = wds.shuffle(SHUFFLE_BUFFER, min(100, SHUFFLE_BUFFER), rng=rng)(samples)
        for sample in samples:
            if "__error__" in sample:
                yield UnreadableFile(sample["__error__"])
                return
            if self.keys is not None and int(sample["__key__"]) not in self.keys:
                continue
            item = self.decode(sample)
            yield item
            if isinstance(item, UnreadableFile):
                return


# -- the batch source ---------------------------------------------------------------------------------


def share_of_rank(shards: Sequence[Shard], rank: int, world_size: int) -> list[Shard]:
    """Shard ``i`` goes to rank ``i % world_size`` (webdataset's ``split_by_node``)."""
    return list(shards)[rank::world_size]


class ShardBatches(BatchSource):
    """Batches streamed from shards through DataLoader workers; see the module's docstring for the split."""

    def __init__(self, data: ShardData, spec: InputSpec, options: BatchOptions) -> None:
        super().__init__(data.classes, options)
        if options.sample_weights is not None:
            raise ShardError(f"{data.source}: the balanced sampler draws samples by index, which streamed shards "
                             "cannot; drop --sampler balanced (or use --class-weights)")
        self.data = data
        self.spec = spec
        world, rank = self.dist.world_size, self.dist.rank
        if options.train and len(data.shards) < world:
            raise ShardError(f"{data.source}: {len(data.shards)} training shard(s) for {world} ranks; every rank needs "
                             "one at least: write more, smaller shards (resnetkit shard --shard-size)")
        self.mine = share_of_rank(data.shards, rank, world)
        fewest = min(len(share_of_rank(data.shards, r, world)) for r in range(world))
        self.workers = min(options.workers, max(fewest, 1))
        if self.workers < options.workers and options.train:
            log.warning("%s: %d shard(s) per rank at least, fewer than the %d DataLoader workers asked for: %d worker(s) "
                        "read them (a worker without a shard would have nothing to do)", data.source, fewest,
                        options.workers, self.workers)
        self._check_local(options.train)
        per_rank = [sum(s.samples for s in share_of_rank(data.shards, r, world)) for r in range(world)]
        # Every rank takes the same number of steps: the smallest share decides.
        self._train_steps = max(1, min(per_rank) // self.batch_size)
        self.step = None
        self.mix = None
        augment = options.augment if options.train else None
        if data.kind == "image":
            if not isinstance(spec, ImageInputSpec):
                raise TypeError(f"{data.source}: image shards need an ImageInputSpec, got {type(spec).__name__}")
            if spec.in_chans != data.in_chans:
                raise ShardError(f"{data.source}: images are read with {data.in_chans} channel(s), the model expects "
                                 f"{spec.in_chans}")
            if augment is not None and (augment.flip_mode != "random" or augment.pad_mode != "zero"):
                raise ShardError(f"{data.source}: flip_mode {augment.flip_mode!r} and pad_mode {augment.pad_mode!r} are "
                                 "batched on the device for images held in memory; streamed shards are augmented per "
                                 "sample: use flip_mode random and pad_mode zero")
            size = tuple(spec.image_size)
            transform = (sample_transform(augment or AugmentConfig(), size) if options.train
                         else eval_transform(size, spec.crop_pct))
            self.decoder = _Decoder("image", len(self._stored_classes()), data.in_chans, transform,
                                    on_corrupt=data.on_corrupt, label_map=data.label_map)
            self.normalize = spec.normalizer(options.channels_last)
            self.mix = mix_transform(augment, options.num_classes or len(self.classes)) if augment else None
        else:
            if not isinstance(spec, AudioInputSpec):
                raise TypeError(f"{data.source}: audio shards need an AudioInputSpec, got {type(spec).__name__}")
            if augment is not None and not isinstance(augment, AudioAugmentConfig):
                raise TypeError(f"{data.source}: audio shards need an AudioAugmentConfig, got {type(augment).__name__}")
            features = spec.features
            self.decoder = _Decoder("audio", len(self._stored_classes()), features=features,
                                    on_corrupt=data.on_corrupt, label_map=data.label_map)
            self.step = AudioDeviceStep(spec, options, len(self.classes), self.generator)

    def _stored_classes(self) -> int:
        # The labels inside the shards index shards.json's classes, however they were remapped since.
        return range(len(self.data.label_map)) if self.data.label_map is not None else self.data.classes

    def _check_local(self, agree: bool) -> None:
        """This rank's local shards must exist with the size shards.json gives (a truncated copy is caught here).

        For training sources (built by every rank at the same point) the ranks agree first, so
        each stops with the message instead of waiting for one that stopped.
        """
        problem = None
        for shard in self.mine:
            if not shard.local:
                continue
            try:
                size = os.path.getsize(shard.url)
            except OSError as err:
                problem = f"{shard.url}: cannot read ({err.strerror or err}); shards.json lists it"
                break
            if size != shard.bytes:
                problem = (f"{shard.url}: {size} bytes, shards.json says {shard.bytes}: the shard is truncated or "
                           "not the one written with it; write it again with `resnetkit shard`")
                break
        if agree and self.dist.enabled:
            ok = distributed.all_ranks_true(torch.tensor(problem is None, device=self.device))
            if problem is None and not bool(ok):
                problem = f"{self.data.source}: another rank found a damaged shard (its message names it)"
        if problem is not None:
            raise ShardError(problem)

    @property
    def num_samples(self) -> int:
        return len(self.data)

    def __len__(self) -> int:
        if self.train:
            return self._train_steps
        count = len(self._keys()) if self._chosen is not None else sum(s.samples for s in self.mine)
        return -(-count // self.batch_size)

    def _keys(self) -> set[int]:
        """The keys of this rank's chosen samples (``only`` takes positions over every shard of the data)."""
        chosen = set(int(i) for i in self._chosen.tolist())
        keys, offset = set(), 0
        mine = {id(s) for s in self.mine}
        for shard in self.data.shards:
            if id(shard) in mine:
                keys.update(shard.first_key + p - offset for p in chosen if offset <= p < offset + shard.samples)
            offset += shard.samples
        return keys

    def _loader(self, epoch: int):
        rank = self.dist.rank
        if self.train:
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 4099 + rank)
            order = [self.mine[i] for i in torch.randperm(len(self.mine), generator=g).tolist()]
            stream = _ShardStream(order, self.decoder, shuffle_seed=int(torch.randint(2**31, (1,), generator=g)))
        else:
            keys = self._keys() if self._chosen is not None else None
            stream = _ShardStream(self.mine, self.decoder, shuffle_seed=None, keys=keys)
        # Worker seeds (their crops and flips) come from this generator: the same epoch decodes alike.
        seeds = torch.Generator().manual_seed((self.seed * 7919 + epoch) * 4099 + rank)
        return torch.utils.data.DataLoader(stream, batch_size=self.batch_size, num_workers=self.workers,
                                           collate_fn=collate_readable, pin_memory=self.device.type == "cuda",
                                           generator=seeds, persistent_workers=False)

    def _rebatched(self, loader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of exactly ``batch_size`` from the workers' batches (webdataset's unbatch-and-rebatch).

        A worker batches its own samples, so its last batch of each epoch is short; joined
        here, every training batch is full (no batch of one for BatchNorm) and the ragged
        rest is kept only for evaluation.
        """
        size = self.batch_size
        xs: list[torch.Tensor] = []
        ys: list[torch.Tensor] = []
        held = 0
        for batch in loader:
            if isinstance(batch, UnreadableFile):
                raise ShardError(batch.message)
            x, y, skipped = batch
            self.note_skipped(skipped)
            if x is None:
                continue
            xs.append(x)
            ys.append(y)
            held += len(x)
            while held >= size:
                x, y = torch.cat(xs), torch.cat(ys)
                yield x[:size], y[:size]
                xs, ys, held = [x[size:]], [y[size:]], held - size
        if held and not self.train:
            yield torch.cat(xs), torch.cat(ys)

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        steps = len(self) if self.train else None
        taken = 0
        for step, (x, y) in enumerate(self._rebatched(self._loader(epoch))):
            if steps is not None and step >= steps:
                break
            taken = step + 1
            if step < start_step:
                continue
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            if self.step is not None:
                yield self.step(x, y)
                continue
            x = self.normalize(x)
            if self.mix is not None:
                x, y = self.mix(x, y)
            yield x, y
        if steps is not None and taken < steps:
            raise ShardError(f"{self.data.source}: rank {self.dist.rank}'s shards gave {taken} of the {steps} batches of "
                             f"an epoch ({len(self.skipped)} unreadable sample(s) skipped); fewer readable samples "
                             "than shards.json counts: write the shards again")


# -- resolving --data -----------------------------------------------------------------------------------


def _data(shard_set: ShardSet, shards: list[Shard], request: DataRequest, features: Optional[FeatureConfig],
          what: str) -> ShardData:
    check_on_corrupt(request.on_corrupt)
    source = f"{request.data} ({what}: {len(shards)} shard(s))"
    in_chans = 1 if shard_set.kind == "audio" else request.in_chans or 3
    return ShardData(shards, list(shard_set.classes), shard_set.kind, source, in_chans=in_chans,
                     image_size=shard_set.image_size, max_side=shard_set.max_side,
                     features=(features or request.audio or FeatureConfig()) if shard_set.kind == "audio" else None,
                     on_corrupt=request.on_corrupt)


def resolve_shards(request: DataRequest, features: Optional[FeatureConfig] = None) -> DataSplits:
    """Shards as training and validation data; for evaluation, the held-out shards (or the named ones) as val.

    A folder trains on its train shards and validates on its val shards. A pattern names the
    shards to train on (its train shards); validation is then the val shards ``shards.json``
    lists beside them. For evaluation a pattern's shards are evaluated as named, a folder's
    test shards, else its val shards, else every shard.
    """
    shard_set = read_shard_set(request.data)
    name = str(request.data)
    if request.val_split is not None and not request.for_evaluation:
        raise ShardError(f"{name}: shards carry their split (train-*.tar, val-*.tar); --val-split does not apply: "
                         "write the shards again with `resnetkit shard --val-split`")
    if request.for_evaluation:
        if shard_set.named is not None:
            held = shard_set.named
        else:
            held = shard_set.by_split.get("test") or shard_set.by_split.get("val") or [
                s for split in SPLITS for s in shard_set.by_split.get(split, [])]
        if not held:
            raise ShardError(f"{shard_set.metadata_url} lists no shards")
        val = _data(shard_set, held, request, features, "evaluation")
        return DataSplits(None, val, val.classes, name)
    if shard_set.named is not None:
        train_shards = [s for s in shard_set.named if s.split == "train"]
        if not train_shards:
            raise ShardError(f"--data {name}: none of the {len(shard_set.named)} shard(s) it names is a train shard "
                             f"({', '.join(sorted({s.split for s in shard_set.named}))} only); name the train-*.tar shards")
    else:
        train_shards = shard_set.by_split.get("train", [])
        if not train_shards:
            raise ShardError(f"{shard_set.metadata_url} lists no train shards")
    val_shards = shard_set.by_split.get("val", [])
    if not val_shards:
        log.warning("%s: no val shards; training without validation", name)
    train = _data(shard_set, train_shards, request, features, "train")
    val = _data(shard_set, val_shards, request, features, "val") if val_shards else None
    return DataSplits(train, val, train.classes, name)


def load_shard_eval_data(spec: InputSpec, path: str, on_corrupt: str = "skip",
                         classes: Optional[Sequence[str]] = None) -> ShardData:
    """The held-out shards of ``path``, for a model trained with ``spec`` on ``classes``.

    Shards of another kind of input, or with a class the model does not know, are refused
    here with both lists, before anything is read.
    """
    shard_set = read_shard_set(path)
    if shard_set.kind != spec.kind:
        raise ShardError(f"{shard_set.metadata_url}: the shards hold {shard_set.kind} samples; the model takes "
                         f"{spec.kind} input")
    if classes is not None:
        unknown = [c for c in shard_set.classes if c not in set(classes)]
        if unknown:
            raise ShardError(f"{shard_set.metadata_url}: class(es) {', '.join(map(repr, unknown))} are not classes of "
                             f"the model; expected shards of its classes ({', '.join(classes)})")
    request = DataRequest(data=str(path), on_corrupt=on_corrupt, for_evaluation=True,
                          in_chans=getattr(spec, "in_chans", None))
    features = spec.features if isinstance(spec, AudioInputSpec) else None
    return resolve_shards(request, features).val
