"""Generated media for the media-layer tests: PDFs, images, videos and hostile files."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CHART_COLOURS = [(0.85, 0.1, 0.1), (0.1, 0.6, 0.2), (0.15, 0.3, 0.85)]  # red, green, blue bars


def report_pdf(path: Path, pages: int = 3, *, labels: bool = True) -> Path:
    """A4 pages with a title, body text and, on page 2, a bar chart of three coloured bars."""
    import pymupdf

    document = pymupdf.open()
    for number in range(pages):
        page = document.new_page(width=595, height=842)
        page.insert_text((72, 80), f"Quarterly report, page {number + 1}", fontsize=20)
        page.insert_textbox(
            pymupdf.Rect(72, 110, 523, 200),
            "Revenue grew 12% in Q3, driven by the EMEA region.",
            fontsize=11,
        )
        if number == 1:
            for bar, colour in enumerate(CHART_COLOURS):
                left = 150 + bar * 110
                page.draw_rect(
                    pymupdf.Rect(left, 700 - 120 * (bar + 1), left + 80, 700),
                    color=colour,
                    fill=colour,
                )
    if labels:
        document.set_page_labels(
            [{"startpage": 0, "prefix": "A-", "style": "D", "firstpagenum": 1}]
        )
    document.save(path)
    document.close()
    return path


def chart_bar_centre(page_size: tuple[float, float], bar: int) -> tuple[float, float]:
    """(x, y) in page points of the middle of bar ``bar`` of :func:`report_pdf`'s chart."""
    left = 150 + bar * 110
    return (left + 40, 700 - 60 * (bar + 1))


def encrypted_pdf(path: Path, password: str = "s3cret") -> Path:
    import pymupdf

    document = pymupdf.open()
    document.new_page().insert_text((72, 72), "secret plans", fontsize=14)
    document.save(
        path, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw=password, owner_pw="owner-" + password
    )
    document.close()
    return path


def png_bytes(image: Image.Image, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **params)
    return buffer.getvalue()


def bomb_png(path: Path, side: int = 20_000) -> Path:
    """A 1-bit PNG of ``side`` x ``side`` pixels in a few tens of kilobytes."""
    Image.new("1", (side, side)).save(path, optimize=True)
    return path


def lying_png(width: int = 6000, height: int = 4000) -> bytes:
    """A PNG whose header claims ``width x height`` but whose pixel data is almost empty."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 100))
        + chunk(b"IEND", b"")
    )


def cmyk_jpeg(path: Path) -> Path:
    """Left half pure cyan, right half pure yellow, in CMYK."""
    image = Image.new("CMYK", (200, 100), (255, 0, 0, 0))
    image.paste((0, 0, 255, 0), (100, 0, 200, 100))
    image.save(path, quality=95)
    return path


def sixteen_bit_png(path: Path) -> Path:
    """A 16-bit grey gradient whose true mean is half scale (~32768, i.e. 128 in 8 bits)."""
    ramp = np.tile(np.linspace(0, 65535, 256, dtype=np.uint16), (64, 1))
    Image.fromarray(ramp).save(path)  # uint16 -> mode I;16
    return path


def rgba_png(path: Path) -> Path:
    """Transparent left half (its hidden colour is red), opaque blue right half."""
    image = Image.new("RGBA", (100, 50), (255, 0, 0, 0))
    image.paste((0, 0, 255, 255), (50, 0, 100, 50))
    image.save(path)
    return path


def exif_rotated_jpeg(path: Path) -> Path:
    """Stored 800x600 with a red marker top-left; EXIF orientation 6 (display rotated 90 CW)."""
    image = Image.new("RGB", (800, 600), "white")
    ImageDraw.Draw(image).rectangle([0, 0, 120, 120], fill="red")
    exif = Image.Exif()
    exif[0x0112] = 6
    image.save(path, exif=exif, quality=95)
    return path


def animated_gif(path: Path, colours: tuple[tuple[int, int, int], ...] | None = None) -> Path:
    colours = colours or ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255))
    frames = [Image.new("RGB", (96, 64), colour) for colour in colours]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def many_page_tiff(path: Path, pages: int) -> Path:
    """A TIFF of ``pages`` 1x1 pages sharing one pixel (about 106 bytes a page).

    Pillow counts its pages in time that grows faster than linearly (120k pages: minutes).
    """
    entry_count, first = 8, 16
    ifd_size = 2 + entry_count * 12 + 4
    out = bytearray(b"II*\x00" + struct.pack("<I", first) + b"\x80" + bytes(7))
    # width, height, bits, no compression, black is zero, strip offset, rows per strip, strip size
    tags = [(256, 3, 1), (257, 3, 1), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 8)]
    tags += [(278, 3, 1), (279, 4, 1)]
    for page in range(pages):
        following = first + (page + 1) * ifd_size if page + 1 < pages else 0
        out += struct.pack("<H", entry_count)
        for tag, kind, value in tags:
            out += struct.pack("<HHII", tag, kind, 1, value)
        out += struct.pack("<I", following)
    path.write_bytes(bytes(out))
    return path
