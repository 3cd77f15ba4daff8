"""What a file is, from its first bytes (never from its name).

A PNG renamed ``report.pdf`` is a PNG; an HTML page named ``.pdf`` is not a PDF (PyMuPDF would
happily render it as HTML). Only the formats we decode are recognised.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["HEAD_BYTES", "MediaKind", "Sniffed", "sniff_bytes", "sniff_file"]

MediaKind = Literal["pdf", "image", "video"]

#: Bytes read to decide (a PDF header may follow a little junk, up to 1 KB by convention).
HEAD_BYTES = 1024

_ISO_VIDEO_BRANDS = {
    b"isom",
    b"iso2",
    b"iso4",
    b"iso5",
    b"iso6",
    b"mp41",
    b"mp42",
    b"avc1",
    b"M4V ",
    b"M4VH",
    b"M4VP",
    b"dash",
    b"3gp4",
    b"3gp5",
    b"3gp6",
    b"3g2a",
    b"qt  ",
    b"f4v ",
    b"mmp4",
    b"MSNV",
}
_ISO_IMAGE_BRANDS = {
    b"heic",
    b"heix",
    b"heim",
    b"heis",
    b"hevc",
    b"mif1",
    b"msf1",
    b"avif",
    b"avis",
}


@dataclass(frozen=True)
class Sniffed:
    """The kind (``pdf``, ``image``, ``video``) and format of some bytes; ``None`` if unknown."""

    kind: MediaKind | None
    format: str | None

    @property
    def known(self) -> bool:
        """Whether it is a kind we can load."""
        return self.kind is not None


UNKNOWN = Sniffed(None, None)


def sniff_bytes(head: bytes) -> Sniffed:
    """Recognise PDF, PNG, JPEG, GIF, WebP, BMP, TIFF, MP4/MOV, WebM/MKV and AVI."""
    if head.startswith(b"%PDF-") or b"%PDF-" in head[:HEAD_BYTES]:
        return Sniffed("pdf", "pdf")
    for magic, name in (
        (b"\x89PNG\r\n\x1a\n", "png"),
        (b"\xff\xd8\xff", "jpeg"),
        (b"GIF87a", "gif"),
        (b"GIF89a", "gif"),
        (b"II*\x00", "tiff"),
        (b"MM\x00*", "tiff"),
    ):
        if head.startswith(magic):
            return Sniffed("image", name)
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return Sniffed("image", "webp")
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return Sniffed("video", "avi")
    if head.startswith(b"BM") and len(head) >= 26 and head[14] in (12, 40, 52, 56, 64, 108, 124):
        return Sniffed("image", "bmp")  # the DIB header's size field agrees
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return Sniffed("video", "webm" if b"webm" in head[:64] else "matroska")
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _ISO_IMAGE_BRANDS:
            return UNKNOWN  # HEIC/AVIF stills: no decoder without extra plugins
        if brand == b"qt  ":
            return Sniffed("video", "mov")
        if brand in _ISO_VIDEO_BRANDS or brand[:3] in (b"mp4", b"iso", b"3gp", b"M4V"):
            return Sniffed("video", "mp4")
        return Sniffed("video", "mp4")  # other ISO-BMFF brands are video containers too
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"):
        return Sniffed("video", "mov")  # QuickTime files written without a ftyp box
    return UNKNOWN


def sniff_file(path: Path) -> Sniffed:
    """Sniff the first :data:`HEAD_BYTES` of a regular file.

    The file is opened without blocking and checked on the handle: a FIFO or a device (even
    one swapped in for a file just checked) raises :class:`OSError` instead of being waited on.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", os.fspath(path))
        return sniff_bytes(os.pread(fd, HEAD_BYTES, 0))
    finally:
        os.close(fd)
