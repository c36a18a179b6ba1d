"""The 12-class keyword-spotting protocol of Speech Commands (Warden 2018; Tang & Lin 2018 and Honk).

Ten words are classes of their own; every other word is ``_unknown_``; ``_silence_`` clips
are one-second stretches cut from the data set's ``_background_noise_`` recordings at a
random volume. Unknown and silence clips each make up about a tenth of a split, as in
TensorFlow's ``input_data.py`` and Honk (``unknown_prob``/``silence_prob`` of 0.1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch

from .audio_io import AUDIO_EXTENSIONS, AudioFormatError, load_audio

SPEECH_COMMANDS_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SILENCE, UNKNOWN = "_silence_", "_unknown_"
UNKNOWN_FRACTION = 0.1
SILENCE_FRACTION = 0.1


def keyword_classes(words: Sequence[str]) -> list[str]:
    """The class list of the protocol: silence, unknown, then the words (TensorFlow's order)."""
    return [SILENCE, UNKNOWN, *words]


def parse_keywords(value: Optional[str], found: Sequence[str]) -> Optional[list[str]]:
    """The keywords a ``keywords`` setting asks for among the word folders ``found``; None: every word is a class.

    ``auto``: the 12-class protocol when the ten standard words are all there and other
    words too; ``none``: every word is a class; ``speech-commands``: the ten standard words;
    else a comma-separated list of words.
    """
    if value in (None, "none"):
        return None
    if value == "auto":
        standard = set(SPEECH_COMMANDS_WORDS)
        return list(SPEECH_COMMANDS_WORDS) if standard <= set(found) and set(found) - standard else None
    words = list(SPEECH_COMMANDS_WORDS) if value == "speech-commands" else [w.strip() for w in value.split(",") if w.strip()]
    missing = [w for w in words if w not in found]
    if missing or not words:
        raise ValueError(f"keywords {value!r}: no folder for {missing or 'any word'}; word folders found: "
                         f"{', '.join(found)}")
    return words


def relabel(samples: Sequence[tuple[str, int]], classes: Sequence[str], words: Sequence[str], seed: int,
            split: str) -> list[tuple[str, int]]:
    """Keyword samples with their new labels, plus a seeded tenth of unknown-word samples as ``_unknown_``."""
    target = {w: i for i, w in enumerate(keyword_classes(words))}
    known = [(p, target[classes[y]]) for p, y in samples if classes[y] in target]
    others = [p for p, y in samples if classes[y] not in target]
    count = min(len(others), max(1, round(UNKNOWN_FRACTION * len(known)))) if others else 0
    g = torch.Generator().manual_seed(seed * 31 + sum(map(ord, split)))
    picked = [others[i] for i in torch.randperm(len(others), generator=g)[:count].tolist()]
    return known + [(p, target[UNKNOWN]) for p in sorted(picked)]


def silence_clips(noise_dir: Optional[str], count: int, sample_rate: int, num_samples: int, seed: int) -> torch.Tensor:
    """``count`` clips of background noise at a random volume in [0, 1] (zeros when there is no noise)."""
    waves = torch.zeros(count, num_samples)
    if not count or not noise_dir:
        return waves
    noises = []
    for path in sorted(p for p in Path(noise_dir).rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS):
        try:
            wave = load_audio(path, sample_rate)
        except AudioFormatError:
            continue
        if wave.numel() >= num_samples:
            noises.append(wave)
    if not noises:
        return waves
    g = torch.Generator().manual_seed(seed)
    for i in range(count):
        noise = noises[int(torch.randint(len(noises), (1,), generator=g))]
        start = int(torch.randint(noise.numel() - num_samples + 1, (1,), generator=g))
        waves[i] = noise[start : start + num_samples] * float(torch.rand((), generator=g))
    return waves
