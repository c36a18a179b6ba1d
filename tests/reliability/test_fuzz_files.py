"""Fuzzing the readers: mutated image and audio files never crash, hang or go unnamed.

Property-based (hypothesis): real files from the shared data are truncated, have bytes
flipped, get absurd header fields (sizes, rates, channel counts), and go through the
readers and the data sets. Every outcome is a sample or a named, typed error.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from resnetkit.data.audio_io import AudioFormatError, load_audio  # noqa: E402
from resnetkit.data.image_io import ImageDataError, read_image  # noqa: E402

# No per-example deadline: the machines are shared and timings vary; what cannot hang is bounded
# by the readers' own limits (pixels, seconds, sample rates), which these tests exercise.
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def jpeg_bytes(data_path) -> bytes:
    return sorted((data_path("cifar10/train") / "cat").glob("*.jpg"))[0].read_bytes()


@pytest.fixture(scope="module")
def png_bytes(jpeg_bytes) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(jpeg_bytes)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def wav_bytes(fsdd_recordings) -> bytes:
    return (fsdd_recordings / "3_jackson_7.wav").read_bytes()


def mutations(original_size: int):
    """A list of edits: truncate at a point, or overwrite bytes at positions (headers included)."""
    position = st.integers(0, original_size - 1)
    flip = st.tuples(st.just("set"), position, st.integers(0, 255))
    cut = st.tuples(st.just("cut"), position, st.just(0))
    return st.lists(st.one_of(flip, cut), min_size=1, max_size=8)


def apply(data: bytes, edits) -> bytes:
    buf = bytearray(data)
    for kind, pos, value in edits:
        if kind == "cut":
            del buf[pos:]
        elif pos < len(buf):
            buf[pos] = value
    return bytes(buf)


def _read_image_or_named_error(data: bytes, name: str):
    try:
        image = read_image(data, 3, name=name)
    except ImageDataError as err:
        assert name in str(err)
        return None
    assert image.dtype == torch.uint8 and image.ndim == 3 and image.shape[0] == 3
    return image


@FUZZ
@given(data=st.data())
def test_mutated_jpeg_is_an_image_or_a_named_error(jpeg_bytes, data):
    edits = data.draw(mutations(len(jpeg_bytes)))
    _read_image_or_named_error(apply(jpeg_bytes, edits), "fuzzed.jpg")


@FUZZ
@given(data=st.data())
def test_mutated_png_is_an_image_or_a_named_error(png_bytes, data):
    edits = data.draw(mutations(len(png_bytes)))
    _read_image_or_named_error(apply(png_bytes, edits), "fuzzed.png")


@FUZZ
@given(width=st.integers(0, 2**31 - 1), height=st.integers(0, 2**31 - 1))
def test_png_with_absurd_dimensions_is_refused_by_name(png_bytes, width, height):
    # IHDR's width and height sit at bytes 16-23; the CRC after them no longer matches either.
    data = bytearray(png_bytes)
    data[16:24] = struct.pack(">II", width, height)
    _read_image_or_named_error(bytes(data), "absurd.png")


@FUZZ
@given(data=st.data())
def test_mutated_wav_is_audio_or_a_named_error(wav_bytes, data):
    edits = data.draw(mutations(len(wav_bytes)))
    try:
        wave = load_audio(apply(wav_bytes, edits), 8000, name="fuzzed.wav")
    except AudioFormatError as err:
        assert "fuzzed.wav" in str(err)
        return
    assert wave.dtype == torch.float32 and wave.ndim == 1 and torch.isfinite(wave).all()


@FUZZ
@given(rate=st.sampled_from([0, 1, 7, 8000, 2**31 - 1, 2**32 - 1]),
       channels=st.sampled_from([0, 1, 2, 255, 65535]),
       data_size=st.sampled_from([0, 1, 2**31 - 1, 2**32 - 1]),
       bits=st.sampled_from([0, 8, 16, 24, 32, 7, 65535]))
def test_wav_with_absurd_header_fields_is_refused_by_name(wav_bytes, rate, channels, data_size, bits):
    # The canonical 44-byte header: channels at 22, rate at 24, bits at 34, data size at 40.
    data = bytearray(wav_bytes)
    data[22:24] = struct.pack("<H", channels)
    data[24:28] = struct.pack("<I", rate)
    data[34:36] = struct.pack("<H", bits)
    data[40:44] = struct.pack("<I", data_size)
    try:
        wave = load_audio(bytes(data), 8000, name="absurd.wav")
    except AudioFormatError as err:
        assert "absurd.wav" in str(err)
        return
    assert wave.ndim == 1 and torch.isfinite(wave).all() and wave.numel() < 10**8


def test_fuzzed_files_in_a_data_set_are_skipped_and_named(tmp_path, jpeg_bytes, wav_bytes, fsdd_subset, caplog):
    """The data sets around the readers: bad files are left out and listed, good ones kept."""
    import logging

    from resnetkit.data import DataRequest, resolve_data

    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    for cls in ("a", "b"):
        (images / cls).mkdir(parents=True)
        for i in range(6):
            (images / cls / f"good{i}.jpg").write_bytes(jpeg_bytes)
        bad = np.frombuffer(jpeg_bytes, dtype=np.uint8).copy()
        bad[rng.integers(0, 200, 20)] = rng.integers(0, 256, 20)
        (images / cls / "bad.jpg").write_bytes(bad[: len(bad) // 3].tobytes())
    caplog.set_level(logging.WARNING)
    splits = resolve_data(DataRequest(data=str(images), val_split=0.25))
    assert len(splits.train) + len(splits.val) == 12
    assert all(Path(s.path).name == "bad.jpg" for s in splits.train.skipped) and len(splits.train.skipped) == 2
    assert "bad.jpg" in caplog.text

    clips = tmp_path / "clips"
    fsdd_subset(clips / "tmp", indices=[5, 6, 7], digits=[1, 2])
    for path in sorted((clips / "tmp").glob("*.wav")):
        (clips / path.name[0]).mkdir(exist_ok=True)
        path.rename(clips / path.name[0] / path.name)
    (clips / "tmp").rmdir()
    (clips / "1" / "broken.wav").write_bytes(wav_bytes[:30])
    (clips / "2" / "huge.wav").write_bytes(wav_bytes[:40] + struct.pack("<I", 2**32 - 1) + wav_bytes[44:])
    splits = resolve_data(DataRequest(data=str(clips), val_split=0.2))
    skipped = {Path(s.path).name for s in splits.train.skipped}
    assert {"broken.wav"} <= skipped and len(splits.train) + len(splits.val) >= 30
