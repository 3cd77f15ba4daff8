"""Image limits: the pixel budget every image entry point applies, and the size the model sees.

A leaf module (it imports only :mod:`qwen3_vl_rag.errors`), so the engine's image decoding and
the media loaders share the same numbers, the same refusals and the same resize rule
(:func:`smart_resize`) without importing each other.
"""

from __future__ import annotations

import math
import struct
import warnings
from typing import IO, Any

from qwen3_vl_rag.errors import InputTooLargeError, UnsupportedInputError

__all__ = [
    "ALLOWED_FORMATS",
    "MAX_ASPECT_RATIO",
    "MAX_IMAGE_PIXELS",
    "MAX_INLINE_IMAGE_BYTES",
    "TIFF_HINT",
    "check_image_size",
    "smart_resize",
    "unsupported_tiff_layout",
]

#: The image formats read at all, by Pillow's names: everything else Pillow can open (TGA, EPS
#: through Ghostscript, FITS, ...) is refused, wherever an image enters.
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")

#: Largest image decoded at all (width x height as decoded). A 64-megapixel RGB image already
#: costs about 200 MB in memory; the model itself never sees more than about 1.8 megapixels.
MAX_IMAGE_PIXELS = 64_000_000

#: Longest side over shortest side the model accepts (the official ``smart_resize`` limit).
MAX_ASPECT_RATIO = 200

#: Largest decoded payload of an inline image (a ``data:`` URI or a base64 string), wherever it
#: enters: the engine and both adapters check it from the string's length, before decoding.
#: 32 MiB is far above any real screenshot or page and keeps a hostile string cheap to refuse.
MAX_INLINE_IMAGE_BYTES = 32 * 1024 * 1024


def check_image_size(
    width: int,
    height: int,
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
    source: str | None = None,
    stage: str = "open",
) -> None:
    """Refuse, from the size a header announces, an image that must not be decoded.

    Raises:
        InputTooLargeError: More than ``max_pixels`` pixels.
        UnsupportedInputError: No pixels, or an aspect ratio over :data:`MAX_ASPECT_RATIO`
            (the model cannot take it, so decoding it would be wasted).
    """
    if width < 1 or height < 1:
        raise UnsupportedInputError(
            f"the image header announces {width}x{height} pixels.", source=source, stage=stage
        )
    pixels = width * height
    if pixels > max_pixels:
        raise InputTooLargeError(
            f"{width}x{height} is {pixels / 1e6:.0f} megapixels once decoded, over the budget "
            f"of {max_pixels / 1e6:.0f}.",
            source=source,
            stage=stage,
            hint="Raise the budget's max_image_pixels if you trust the file.",
        )
    ratio = max(width, height) / min(width, height)
    if ratio > MAX_ASPECT_RATIO:
        raise UnsupportedInputError(
            f"aspect ratio {ratio:.0f}:1 of a {width}x{height} image exceeds {MAX_ASPECT_RATIO}:1.",
            source=source,
            stage=stage,
            hint="Crop or split the image (e.g. a long screenshot into pages).",
        )


def smart_resize(
    height: int, width: int, factor: int, min_pixels: float, max_pixels: float
) -> tuple[int, int]:
    """The size Qwen3-VL sees: both sides multiples of ``factor``, area within the pixel bounds.

    Returns:
        ``(height, width)`` after resizing, keeping the aspect ratio as closely as possible.

    Raises:
        UnsupportedInputError: When the aspect ratio exceeds :data:`MAX_ASPECT_RATIO`.

    Example:
        >>> smart_resize(240, 320, 32, 4 * 32 * 32, 1800 * 32 * 32)  # 7.5 rounds half to even
        (256, 320)
    """
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise UnsupportedInputError(
            f"aspect ratio {max(height, width) / min(height, width):.0f}:1 of a {width}x{height} "
            f"image exceeds {MAX_ASPECT_RATIO}:1.",
            hint="Crop or split the image (e.g. a long screenshot into pages).",
        )
    h_bar = max(factor, _round_by(height, factor))
    w_bar = max(factor, _round_by(width, factor))
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = _floor_by(height / beta, factor)
        w_bar = _floor_by(width / beta, factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = _ceil_by(height * beta, factor)
        w_bar = _ceil_by(width * beta, factor)
    return h_bar, w_bar


def _round_by(value: float, factor: int) -> int:
    return round(value / factor) * factor  # Python's round (half to even), as the reference


def _ceil_by(value: float, factor: int) -> int:
    return math.ceil(value / factor) * factor


def _floor_by(value: float, factor: int) -> int:
    return math.floor(value / factor) * factor


#: What to do about a TIFF of an unsupported layout.
TIFF_HINT = "Convert it to 8- or 16-bit integer samples (e.g. save it as PNG) first."

_SAMPLE_FORMATS = {1: "unsigned integer", 2: "signed integer", 3: "floating-point", 4: "untyped"}


def unsupported_tiff_layout(file: str | IO[bytes]) -> str | None:
    """What a well-formed TIFF holds that Pillow cannot decode, read from its first directory.

    Pillow decodes the common TIFF layouts only; others (floating-point colour, 16- or 64-bit
    floats, some planar files) it refuses as it refuses a damaged file. This tells the two
    apart, so a valid file is reported as unsupported, naming its layout, not as corrupt.

    Args:
        file: A path, or a binary stream positioned anywhere (it is read from the start).

    Returns:
        The layout, e.g. ``"3 samples per pixel of 32-bit floating-point, in separate
        planes"``; ``None`` when the file is not a TIFF whose directory can be read.
    """
    from PIL import TiffImagePlugin

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about damaged directories
            if isinstance(file, str):
                with open(file, "rb") as handle:
                    tags = _first_directory(TiffImagePlugin, handle)
            else:
                tags = _first_directory(TiffImagePlugin, file)
    except Exception:  # anything unreadable is for the caller to call corrupt
        return None
    if 256 not in tags or 257 not in tags:
        return None  # no width or height: not a usable directory
    bits = tuple(tags.get(258, (1,)))
    samples = int(tags.get(277, len(bits) or 1))
    formats = tuple(tags.get(339, (1,)))
    kind = _SAMPLE_FORMATS.get(int(formats[0]) if formats else 1, f"sample format {formats[0]}")
    sizes = "/".join(str(b) for b in dict.fromkeys(bits)) or "1"
    layout = f"{samples} sample{'s' if samples != 1 else ''} per pixel of {sizes}-bit {kind}"
    if int(tags.get(284, 1)) == 2 and samples > 1:
        layout += ", in separate planes"
    compression = int(tags.get(259, 1))
    if compression not in TiffImagePlugin.COMPRESSION_INFO:
        layout += f", compression {compression}"
    return layout


def _first_directory(plugin: Any, handle: IO[bytes]) -> dict[int, Any]:
    """The first directory's tags; an error when any entry of it cannot be read."""
    handle.seek(0)
    header = handle.read(8)
    directory = plugin.ImageFileDirectory_v2(header)
    handle.seek(directory.next)
    (entries,) = struct.unpack("<H" if header[:2] == b"II" else ">H", handle.read(2))
    handle.seek(directory.next)
    directory.load(handle)
    tags = dict(directory)
    if len(tags) < entries:  # Pillow skips the entries a damaged file cuts short
        msg = f"{entries - len(tags)} of {entries} directory entries unreadable"
        raise ValueError(msg)
    return tags
