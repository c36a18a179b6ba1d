"""One uploaded file per request: read with a size cap, unwrapped from multipart, recognised by content.

Everything stays in memory: the body is read up to the cap and no more, a multipart body
is parsed from that buffer (Starlette's parser, told never to spool to disk), and nothing a
client sends is used as a path. What a file is comes from its first bytes (magic numbers),
never from its name or the Content-Type a client claims.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator, Optional

from starlette.datastructures import Headers, UploadFile
from starlette.requests import Request

# A multipart body carries boundaries and part headers around the file.
MULTIPART_SLACK = 64 * 1024
IMAGE_FORMATS = "JPEG, PNG, GIF, BMP, WebP, TIFF"
AUDIO_FORMATS = "WAV, FLAC, OGG, AIFF"


class UploadError(Exception):
    """A request whose upload cannot be used; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Sniffed:
    kind: str  # "image" or "audio"
    format: str  # e.g. "JPEG", "WAV"


def sniff(data: bytes) -> Optional[Sniffed]:
    """The kind and format of ``data`` from its magic bytes, or None for anything else."""
    head = bytes(data[:16])
    if head.startswith(b"\xff\xd8\xff"):
        return Sniffed("image", "JPEG")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Sniffed("image", "PNG")
    if head.startswith((b"GIF87a", b"GIF89a")):
        return Sniffed("image", "GIF")
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return Sniffed("image", "TIFF")
    # "BM" alone is two letters of text; the DIB header size that follows makes it a bitmap.
    dib_sizes = (12, 40, 52, 56, 64, 108, 124)
    if head.startswith(b"BM") and len(data) >= 18 and int.from_bytes(data[14:18], "little") in dib_sizes:
        return Sniffed("image", "BMP")
    if head[:4] in (b"RIFF", b"RIFX", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return Sniffed("audio", "WAV")
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return Sniffed("image", "WebP")
    if head.startswith(b"fLaC"):
        return Sniffed("audio", "FLAC")
    if head.startswith(b"OggS"):
        return Sniffed("audio", "OGG")
    if head.startswith(b"FORM") and head[8:12] in (b"AIFF", b"AIFC"):
        return Sniffed("audio", "AIFF")
    return None


def check_kind(data: bytes, model_kind: str) -> Sniffed:
    """Raise UploadError 415 unless ``data`` is an image or audio file of the kind the model reads."""
    found = sniff(data)
    formats = {"image": IMAGE_FORMATS, "audio": AUDIO_FORMATS}
    if found is None:
        expected = formats.get(model_kind, f"{IMAGE_FORMATS}; {AUDIO_FORMATS}")
        raise UploadError(415, f"not an image or audio file (recognised by content, not by name); "
                               f"this model reads {model_kind}: {expected}")
    if model_kind in formats and found.kind != model_kind:
        raise UploadError(415, f"this model classifies {model_kind}, but the upload is {found.format} {found.kind}; "
                               f"send {formats[model_kind]}")
    return found


async def read_upload(request: Request, max_bytes: int) -> bytes:
    """The uploaded file: the raw body, or the file part of a multipart/form-data body.

    Raises UploadError: 413 above ``max_bytes`` (checked on Content-Length first and on the
    bytes as they arrive), 400 for an empty upload or a malformed multipart body.
    """
    multipart = request.headers.get("content-type", "").lower().startswith("multipart/form-data")
    limit = max_bytes + (MULTIPART_SLACK if multipart else 0)
    too_large = UploadError(413, f"upload larger than the limit of {_size(max_bytes)}")
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise UploadError(400, f"invalid Content-Length {declared!r}") from None
        if length > limit:
            raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    data = await _multipart_file(request.headers, bytes(body), max_bytes) if multipart else bytes(body)
    if len(data) > max_bytes:
        raise too_large
    if not data:
        raise UploadError(400, "empty upload (0 bytes): send an image or audio file as the request body "
                               "or as the 'file' field of a multipart form")
    return data


async def _multipart_file(headers: Headers, body: bytes, max_bytes: int) -> bytes:
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def stream() -> AsyncIterator[bytes]:
        yield body
        yield b""

    parser = MultiPartParser(headers, stream(), max_files=1, max_fields=16)
    parser.spool_max_size = max_bytes + MULTIPART_SLACK  # never roll over to a temporary file
    try:
        form = await parser.parse()
    except MultiPartException as err:
        raise UploadError(400, f"malformed multipart body: {err.message}") from None
    try:
        files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
        if not files:
            raise UploadError(400, "multipart body without a file: send the file in a field named 'file'")
        chosen = next((f for k, f in form.multi_items() if k == "file" and isinstance(f, UploadFile)), files[0])
        return await chosen.read()
    finally:
        await form.close()


def _size(n: int) -> str:
    return f"{n / 2**20:g} MB" if n >= 2**20 else f"{n:,} bytes"
