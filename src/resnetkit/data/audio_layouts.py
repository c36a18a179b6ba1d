"""Audio folder layouts: class folders, the Free Spoken Digit Dataset and Speech Commands.

- ``folders``: ``ROOT/<class>/<audio files>``, optionally ``ROOT/train`` with ``ROOT/val``
  (or ``validation``, ``test``), as images are read (:mod:`.folders`).
- ``fsdd``: the Free Spoken Digit Dataset's flat folder of ``{digit}_{speaker}_{index}.wav``
  (or a folder holding ``recordings/``). The classes are the digits present; the held-out
  part is the data set's own test split (indices 0-4) or named speakers (``fsdd_split``).
- ``speech-commands``: class folders with ``validation_list.txt`` and ``testing_list.txt``;
  ``_background_noise_`` is a source of noise for augmentation, not a class.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from .audio_data import AudioData, AudioDataError, decode_audio_files
from .audio_features import FeatureConfig
from .audio_io import AUDIO_EXTENSIONS
from .folders import check_on_corrupt, default_cache_dir, scan_class_folders, split_folders, stratified_split, unsupported, visible, walk_files
from .image_io import IMAGE_EXTENSIONS
from .interface import DataRequest, DataSplits, SkippedFile
from .specs import AudioInputSpec
from .speech_commands import SILENCE, SILENCE_FRACTION, UNKNOWN, keyword_classes, parse_keywords, relabel, silence_clips

log = logging.getLogger(__name__)

AUDIO_LAYOUTS = ("auto", "folders", "fsdd", "speech-commands")
NAMED_AUDIO_DATASETS = ("fsdd",)
FSDD_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset"
FSDD_ARCHIVE_URL = f"{FSDD_URL}/archive/refs/heads/master.zip"
# {digit}_{speaker}_{index}.wav, e.g. 7_jackson_32.wav.
FSDD_PATTERN = re.compile(r"^(\d)_([^_]+)_(\d+)\.wav$", re.IGNORECASE)
# The data set's README: "The test set officially consists of the first 10% of the recordings.
# Recordings numbered 0-4 (inclusive) are in the test and 5-49 are in the training set."
FSDD_TEST_INDICES = range(0, 5)
SPEECH_COMMANDS_NOISE = "_background_noise_"
SPEECH_COMMANDS_LISTS = ("validation_list.txt", "testing_list.txt")


def check_fsdd_split(split: str) -> str:
    """``official`` or ``speakers:NAME[,NAME]``; ValueError otherwise."""
    if not isinstance(split, str) or not (
        split == "official" or (split.startswith("speakers:") and any(n.strip() for n in split[9:].split(",")))
    ):
        raise ValueError(f"fsdd_split must be 'official' or 'speakers:NAME[,NAME]' (e.g. speakers:george); got {split!r}")
    return split


def check_audio_layout(layout: str) -> str:
    if layout not in AUDIO_LAYOUTS:
        raise ValueError(f"audio_layout must be one of {', '.join(AUDIO_LAYOUTS)}; got {layout!r}")
    return layout


# -- what is audio -------------------------------------------------------------------------------


def is_audio_source(spec: object, sample: int = 64) -> bool:
    """True for ``fsdd`` and for a folder whose files (a sample of them) are mostly audio files."""
    if not isinstance(spec, (str, os.PathLike)):
        return False
    path = Path(spec).expanduser()
    if str(spec).lower() in NAMED_AUDIO_DATASETS and not path.exists():
        return True
    if not path.is_dir():
        return False
    audio = images = 0
    for looked, file in enumerate(walk_files(path)):
        suffix = file.suffix.lower()
        audio += suffix in AUDIO_EXTENSIONS
        images += suffix in IMAGE_EXTENSIONS
        if audio + images >= sample or looked >= 20 * sample:
            break
    return audio > 0 and audio >= images


def _looks_like_fsdd(folder: Path, sample: int = 200) -> bool:
    if not folder.is_dir():
        return False
    audio = matches = 0
    with os.scandir(folder) as it:
        for entry in it:
            if entry.is_file() and Path(entry.name).suffix.lower() in AUDIO_EXTENSIONS:
                audio += 1
                matches += FSDD_PATTERN.match(entry.name) is not None
                if audio >= sample:
                    break
    return audio > 0 and matches >= 0.9 * audio


def detect_layout(root: Path, layout: str = "auto") -> tuple[str, Path]:
    """The layout of an audio folder and the folder that holds its data."""
    check_audio_layout(layout)
    lists = any((root / name).is_file() for name in SPEECH_COMMANDS_LISTS)
    fsdd = next((f for f in (root, root / "recordings") if _looks_like_fsdd(f)), None)
    if layout == "auto":
        if lists:
            return "speech-commands", root
        if fsdd is not None:
            return "fsdd", fsdd
        return "folders", root
    if layout == "speech-commands" and not lists:
        raise AudioDataError(
            f"{root}: audio_layout is speech-commands but neither {' nor '.join(SPEECH_COMMANDS_LISTS)} is there"
        )
    if layout == "fsdd":
        if fsdd is None:
            folder = root / "recordings" if (root / "recordings").is_dir() else root
            return "fsdd", folder  # scan_fsdd names what is missing
        return "fsdd", fsdd
    return layout, root


# -- FSDD ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FsddFile:
    path: str
    digit: int
    speaker: str
    index: int


def scan_fsdd(folder: Path, ignored: list[SkippedFile]) -> list[FsddFile]:
    """The ``{digit}_{speaker}_{index}.wav`` files of an FSDD folder; other files go to ``ignored``."""
    entries = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and visible(p)):
        match = FSDD_PATTERN.match(path.name)
        if match is None:
            if path.suffix.lower() in AUDIO_EXTENSIONS:
                ignored.append(SkippedFile(str(path), f"{path}: name is not {{digit}}_{{speaker}}_{{index}}.wav, ignored"))
            else:
                ignored.append(unsupported(path, AUDIO_EXTENSIONS))
            continue
        entries.append(FsddFile(str(path), int(match.group(1)), match.group(2).lower(), int(match.group(3))))
    if not entries:
        raise AudioDataError(
            f"{folder}: no FSDD recordings; expected files named {{digit}}_{{speaker}}_{{index}}.wav "
            "(e.g. 7_jackson_32.wav)"
        )
    return entries


def _fsdd_files_present(folder: Path) -> bool:
    return folder.is_dir() and any(FSDD_PATTERN.match(p.name) for p in folder.iterdir())


def _fetch(url: str, dest: Path) -> None:
    """Download ``url`` to ``dest`` (tests replace this: nothing in them downloads)."""
    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
        shutil.copyfileobj(response, out)


def fsdd_recordings(cache_dir: Union[str, Path, None] = None) -> Path:
    """The folder of FSDD recordings in the cache, downloaded from GitHub on first use."""
    root = (Path(cache_dir) if cache_dir else default_cache_dir()) / "fsdd"
    recordings = root / "recordings"
    if _fsdd_files_present(recordings):
        return recordings
    try:
        root.mkdir(parents=True, exist_ok=True)
        archive = root / "fsdd.zip.part"
        _fetch(FSDD_ARCHIVE_URL, archive)
        staging = root / "recordings.part"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                parts = member.split("/")
                if len(parts) >= 2 and parts[-2] == "recordings" and FSDD_PATTERN.match(parts[-1]):
                    (staging / parts[-1]).write_bytes(zf.read(member))
        if not _fsdd_files_present(staging):
            raise AudioDataError(f"the archive {FSDD_ARCHIVE_URL} holds no recordings/ folder")
        shutil.rmtree(recordings, ignore_errors=True)
        os.replace(staging, recordings)
        archive.unlink(missing_ok=True)
    except Exception as err:  # offline: URLError, timeouts, HTTP errors, a broken archive
        raise AudioDataError(
            f"could not download FSDD ({type(err).__name__}: {err}).\n"
            f"  Offline? Download {FSDD_ARCHIVE_URL} (the repository {FSDD_URL}) elsewhere and put the\n"
            f"  WAV files of its recordings/ folder ({{digit}}_{{speaker}}_{{index}}.wav, e.g. 7_jackson_32.wav)\n"
            f"  into {recordings}/, then run again; or pass --data PATH to a folder of those files."
        ) from None
    return recordings


def _fsdd_held_out(entries: Sequence[FsddFile], split: str, folder: Path) -> list[bool]:
    """Which recordings form the validation/test side of ``split``."""
    if check_fsdd_split(split) == "official":
        return [e.index in FSDD_TEST_INDICES for e in entries]
    names = {n.strip().lower() for n in split[len("speakers:"):].split(",") if n.strip()}
    found = sorted({e.speaker for e in entries})
    unknown = sorted(names - set(found))
    if unknown:
        raise AudioDataError(
            f"{folder}: fsdd_split {split!r} names speaker(s) {unknown} that have no recordings; "
            f"speakers found: {', '.join(found)}"
        )
    if set(found) <= names:
        raise AudioDataError(f"{folder}: fsdd_split {split!r} holds out every speaker; nothing is left to train on")
    return [e.speaker in names for e in entries]


def _load_fsdd(folder: Path, split: str, features: FeatureConfig, on_corrupt: str, for_evaluation: bool):
    ignored: list[SkippedFile] = []
    entries = scan_fsdd(folder, ignored)
    held = _fsdd_held_out(entries, split, folder)
    if for_evaluation:
        entries = [e for e, h in zip(entries, held) if h]
        held = [True] * len(entries)
    digits = sorted({e.digit for e in entries})
    if len(digits) < 10:
        log.warning("%s: FSDD recordings of %d digit(s) only (%s): training on those classes", folder, len(digits),
                    ", ".join(map(str, digits)))
    classes = [str(d) for d in digits]
    label = {d: i for i, d in enumerate(digits)}
    data = decode_audio_files([(e.path, label[e.digit]) for e in entries], classes, features,
                              on_corrupt=on_corrupt, source=str(folder), ignored=ignored)
    held_paths = {e.path for e, h in zip(entries, held) if h}
    mask = torch.tensor([p in held_paths for p in data.paths], dtype=torch.bool)
    val = data.subset(mask.nonzero().flatten())
    if not len(val):
        raise AudioDataError(f"{folder}: fsdd_split {split!r} holds out no recordings")
    if for_evaluation:
        return None, val
    train = data.subset((~mask).nonzero().flatten())
    if not len(train):
        raise AudioDataError(f"{folder}: fsdd_split {split!r} leaves no recordings to train on")
    return train, val


# -- Speech Commands and class folders -------------------------------------------------------------


def _read_list(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    return {line.strip().replace("\\", "/") for line in path.read_text().splitlines() if line.strip()}


def _scan(folder: Path):
    return scan_class_folders(folder, AUDIO_EXTENSIONS, AudioDataError, what="audio files",
                              exclude=(SPEECH_COMMANDS_NOISE,))


def _load_speech_commands(root: Path, features: FeatureConfig, on_corrupt: str, for_evaluation: bool,
                          keywords: Optional[str] = "auto", seed: int = 0):
    """Speech Commands' lists as splits; with ``keywords``, the 12-class protocol (see :mod:`.speech_commands`)."""
    scan = _scan(root)
    samples, classes = scan.samples, scan.classes
    validation = _read_list(root / "validation_list.txt")
    testing = _read_list(root / "testing_list.txt")
    rel = [Path(p).relative_to(root).as_posix() for p, _ in samples]
    noise = root / SPEECH_COMMANDS_NOISE
    noise_dir = str(noise) if noise.is_dir() else None
    words = parse_keywords(keywords, classes)
    if words:
        log.info("%s: the 12-class protocol: %s, %s (other words) and %s (cut from %s)", root, ", ".join(words),
                 UNKNOWN, SILENCE, SPEECH_COMMANDS_NOISE)

    def load(picked, split: str, ignored=()) -> AudioData:
        names = classes
        if words:
            picked, names = relabel(picked, classes, words, seed, split), keyword_classes(words)
        data = decode_audio_files(picked, names, features, on_corrupt=on_corrupt, source=f"{root} ({split})",
                                  ignored=ignored)
        if words:
            count = max(1, round(SILENCE_FRACTION * len(data)))
            quiet = silence_clips(noise_dir, count, features.sample_rate, features.num_samples, seed + len(split))
            data = data._replace(waves=torch.cat([data.waves, quiet]),
                                 labels=torch.cat([data.labels, torch.full((count,), names.index(SILENCE))]),
                                 paths=data.paths + [f"{noise} (silence {i})" for i in range(count)],
                                 keywords=list(words))
        return data

    if for_evaluation:
        held = testing or validation
        picked = [s for s, r in zip(samples, rel) if r in held]
        if not picked:
            raise AudioDataError(f"{root}: testing_list.txt and validation_list.txt name none of the files found")
        return None, load(picked, "test", scan.ignored)
    held = validation or testing  # no validation list: validate on the test list
    train_samples = [s for s, r in zip(samples, rel) if r not in validation and r not in testing]
    val_samples = [s for s, r in zip(samples, rel) if r in held]
    if not train_samples or not val_samples:
        raise AudioDataError(
            f"{root}: the list files leave {len(train_samples)} training and {len(val_samples)} validation clips; "
            "both must be > 0"
        )
    train = load(train_samples, "train", scan.ignored)
    val = load(val_samples, "validation")
    train.noise_dir = noise_dir
    return train, val


def _load_class_folders(root: Path, val_split, seed, features: FeatureConfig, on_corrupt: str, for_evaluation: bool):
    def load(folder: Path) -> AudioData:
        scan = _scan(folder)
        return decode_audio_files(scan.samples, scan.classes, features, on_corrupt=on_corrupt, source=str(folder),
                                  ignored=scan.ignored)

    train_dir, held_dir = split_folders(root, for_evaluation)
    if for_evaluation:
        return None, load(held_dir or root)
    if train_dir is not None and held_dir is not None and val_split is None:
        train, val = load(train_dir), load(held_dir)
        if val.classes != train.classes:
            val = val.remap_classes(train.classes)
        return train, val
    data = load(train_dir or root)
    train_idx, val_idx = stratified_split(data.labels, val_split if val_split is not None else 0.1, seed)
    return data.subset(train_idx), data.subset(val_idx)


# -- resolving --data -----------------------------------------------------------------------------


def resolve_audio_data(request: DataRequest, features: Optional[FeatureConfig] = None) -> DataSplits:
    """``request.data`` (a folder or ``fsdd``) as audio train/validation data.

    ``request.for_evaluation``: only the held-out part, as ``val``. ``features`` overrides
    ``request.audio`` (evaluation decodes for the model's own front end).
    """
    features = features or request.audio or FeatureConfig()
    check_on_corrupt(request.on_corrupt)
    spec = request.data
    path = Path(spec).expanduser()
    name, layout = str(spec), request.audio_layout
    if str(spec).lower() in NAMED_AUDIO_DATASETS and not path.exists():
        path, layout, name = fsdd_recordings(request.cache_dir), "fsdd", "fsdd"
    if not path.is_dir():
        raise AudioDataError(
            f"--data {spec}: no such folder, and not a known audio data set name ({', '.join(NAMED_AUDIO_DATASETS)})"
        )
    layout, folder = detect_layout(path, layout)
    common = dict(features=features, on_corrupt=request.on_corrupt, for_evaluation=request.for_evaluation)
    if layout == "fsdd":
        if request.val_split is not None and not request.for_evaluation:
            log.warning("%s: val_split is ignored for FSDD; the held-out part is fsdd_split=%r", folder, request.fsdd_split)
        train, val = _load_fsdd(folder, request.fsdd_split, **common)
    elif layout == "speech-commands":
        train, val = _load_speech_commands(folder, **common, keywords=request.keywords, seed=request.seed)
    else:
        train, val = _load_class_folders(folder, request.val_split, request.seed, **common)
    classes = list(val.classes if train is None else train.classes)
    return DataSplits(train, val, classes, name)


def load_audio_eval_data(spec: AudioInputSpec, path: str, on_corrupt: str = "skip") -> AudioData:
    """The held-out part of ``path`` (a class folder's test/ or the folder itself, FSDD's test split),
    decoded for the model's front end."""
    if not isinstance(spec, AudioInputSpec):
        raise TypeError(f"spec must be an AudioInputSpec, got {type(spec).__name__}")
    keywords = ",".join(spec.keywords) if spec.keywords else "none"
    request = DataRequest(data=path, on_corrupt=on_corrupt, for_evaluation=True, keywords=keywords)
    return resolve_audio_data(request, spec.features).val
