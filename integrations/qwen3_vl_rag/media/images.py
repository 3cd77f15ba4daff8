"""Image files and screenshots: decoded safely, with the colours and orientation people expect.

* Only PNG, JPEG (and MPO), WebP, GIF, BMP and TIFF are decoded (a smaller attack surface than
  every Pillow plugin); anything else is :class:`~qwen3_vl_rag.errors.UnsupportedInputError`.
* The pixel budget is checked from the header, before any pixel is decoded: a decompression bomb
  is refused with :class:`~qwen3_vl_rag.errors.InputTooLargeError`, at no memory cost.
* Large JPEGs are decoded at a reduced size (JPEG draft mode), never smaller than the size the
  model will use; so a 50-megapixel photo costs tens of megabytes, not hundreds.
* EXIF orientation is applied; CMYK, palette and 1-bit images become RGB; 16-bit images are
  scaled to 8 bits (not clipped to white); transparency is composited on white.
* Animated GIF, WebP and PNG: the first frame, or the frames as a video on request.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from qwen3_vl_rag.engine.vision import smart_resize
from qwen3_vl_rag.errors import (
    ImageDecodeError,
    InputError,
    InputTooLargeError,
    UnsupportedInputError,
)
from qwen3_vl_rag.inputs import LazyImage, Video
from qwen3_vl_rag.media.budget import MediaBudget
from qwen3_vl_rag.media.files import checked_file, display_path
from qwen3_vl_rag.media.items import MediaItem, MetadataValue
from qwen3_vl_rag.media.sniff import HEAD_BYTES, sniff_bytes, sniff_file

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = ["ALLOWED_FORMATS", "ImageHeader", "load_image", "normalize_to_rgb", "read_header"]

#: Pillow formats we decode (JPEG includes multi-picture MPO files from phones).
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
_ROTATED_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height

ImageSourceData = Path | bytes
FramesMode = Literal["first", "video"]


@dataclass(frozen=True)
class ImageHeader:
    """What an image file says about itself, and the size it decodes to under the budget."""

    format: str
    width: int
    height: int
    frames: int
    decoded_width: int
    decoded_height: int
    orientation: int

    @property
    def oriented_size(self) -> tuple[int, int]:
        """``(width, height)`` of the decoded image once EXIF orientation is applied."""
        if self.orientation in _ROTATED_ORIENTATIONS:
            return (self.decoded_height, self.decoded_width)
        return (self.decoded_width, self.decoded_height)


def _open(data: ImageSourceData, label: str) -> PILImage.Image:
    from PIL import Image, UnidentifiedImageError

    Image.init()  # register every plugin, so the allowlist can name them
    formats = [name for name in ALLOWED_FORMATS if name in Image.OPEN]
    try:
        stream = io.BytesIO(data) if isinstance(data, bytes) else data
        return Image.open(stream, formats=formats)
    except Image.DecompressionBombError as exc:
        raise InputTooLargeError(
            f"refused as a decompression bomb ({exc}).", source=label, stage="open"
        ) from exc
    except UnidentifiedImageError as exc:
        head = data[:HEAD_BYTES] if isinstance(data, bytes) else sniff_file(data)
        sniffed = sniff_bytes(head) if isinstance(head, bytes) else head
        if sniffed.kind == "image" and sniffed.format:
            # the signature of a format we read, but a header Pillow cannot parse: corrupt
            raise ImageDecodeError(
                f"the file starts like a {sniffed.format.upper()} but its header is corrupt.",
                source=label,
                stage="open",
            ) from exc
        raise UnsupportedInputError(
            f"not an image in a supported format ({', '.join(ALLOWED_FORMATS)}).",
            source=label,
            stage="open",
        ) from exc
    except (OSError, ValueError, SyntaxError) as exc:  # truncated headers, text-chunk bombs...
        raise ImageDecodeError(
            f"the image header could not be read ({type(exc).__name__}: {exc}).",
            source=label,
            stage="open",
        ) from exc


def _draft_size(width: int, height: int, budget: MediaBudget) -> tuple[int, int]:
    """The size the model will see, as the request for JPEG draft decoding.

    Draft decoding keeps the largest 1/2, 1/4 or 1/8 scale that is not smaller than the request;
    its DCT scaling averages areas, so nothing is lost before the final resize.
    """
    target_h, target_w = smart_resize(
        height, width, budget.factor, budget.min_pixels, budget.max_pixels
    )
    return (min(width, target_w), min(height, target_h))


def read_header(data: ImageSourceData, budget: MediaBudget, label: str) -> ImageHeader:
    """Format, size, frame count and orientation from the header; no pixel is decoded.

    Raises:
        UnsupportedInputError: Not an image in an allowed format.
        InputTooLargeError: More pixels than ``budget.max_image_pixels`` even at reduced size.
        ImageDecodeError: An unreadable header.
    """
    with _open(data, label) as image:
        width, height = image.size
        if width < 1 or height < 1:
            raise ImageDecodeError("the image has no pixels.", source=label, stage="open")
        try:
            orientation = int(image.getexif().get(0x0112, 1))
        except (OSError, ValueError, SyntaxError):
            orientation = 1  # unreadable EXIF: keep the pixels as stored
        if image.format in ("JPEG", "MPO"):
            image.draft(image.mode, _draft_size(width, height, budget))
        decoded_width, decoded_height = image.size
        header = ImageHeader(
            format=str(image.format),
            width=width,
            height=height,
            frames=int(getattr(image, "n_frames", 1)),
            decoded_width=decoded_width,
            decoded_height=decoded_height,
            orientation=orientation,
        )
    pixels = header.decoded_width * header.decoded_height
    if pixels > budget.max_image_pixels:
        raise InputTooLargeError(
            f"{width}x{height} is {pixels / 1e6:.0f} megapixels once decoded, over the budget "
            f"of {budget.max_image_pixels / 1e6:.0f}.",
            source=label,
            stage="open",
            hint="Raise the budget's max_image_pixels if you trust the file.",
        )
    return header


def normalize_to_rgb(image: PILImage.Image) -> PILImage.Image:
    """RGB the way a person sees the image: oriented, 16-bit scaled, transparency on white."""
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(image) or image
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image, dtype=np.float64)
        if mode != "I" or values.max(initial=0) > 255:
            values = values / 257.0  # 16-bit range onto 8 bits (65535 -> 255)
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")
    elif mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if values.max(initial=0) <= 1.0:
            values = values * 255.0
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return image.convert("RGB")


def decode(
    data: ImageSourceData,
    budget: MediaBudget,
    label: str,
    *,
    frame: int = 0,
    expected: tuple[int, int] | None = None,
) -> PILImage.Image:
    """Decode one frame under the budget and normalise it to RGB.

    Raises:
        ImageDecodeError: Truncated or corrupt pixel data, or a file that changed since its
            header was read.
        InputTooLargeError: Over the pixel budget.
    """
    header = read_header(data, budget, label)
    with _open(data, label) as image:
        try:
            if frame:
                image.seek(frame)
            if image.format in ("JPEG", "MPO"):
                image.draft(image.mode, _draft_size(header.width, header.height, budget))
            image.load()
            result = normalize_to_rgb(image)
        except InputError:
            raise
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise ImageDecodeError(
                f"the image data could not be decoded ({type(exc).__name__}: {exc}).",
                source=label,
                stage="decode",
            ) from exc
    if expected is not None and result.size != expected:
        raise ImageDecodeError(
            f"the file changed since it was read: {result.size[0]}x{result.size[1]} now, "
            f"{expected[0]}x{expected[1]} before.",
            source=label,
            stage="decode",
        )
    return result


def load_image(
    data: ImageSourceData,
    *,
    budget: MediaBudget | None = None,
    frames: FramesMode = "first",
    source: str | None = None,
) -> MediaItem:
    """An image file or encoded bytes as one item.

    Args:
        data: A file path, or the encoded image bytes.
        budget: Pixel and byte limits (default: :class:`MediaBudget`).
        frames: For animated images: ``"first"`` (the first frame, as an image) or ``"video"``
            (up to ``budget.max_frames`` frames, evenly spread, as a video).
        source: How to name the image in metadata and errors (default: the path).

    Raises:
        UnsupportedInputError, ImageDecodeError, InputTooLargeError: See :func:`read_header`.

    Example:
        >>> item = load_image(Path("screens/settings.png"))
        >>> item.metadata["image_width"], item.metadata["image_height"]
    """
    budget = budget or MediaBudget()
    label = source or (display_path(data) if isinstance(data, Path) else f"<{len(data)} bytes>")
    if isinstance(data, Path):
        checked_file(data, budget.max_bytes, label, ImageDecodeError)
    elif len(data) > budget.max_bytes:
        raise InputTooLargeError(
            f"{len(data)} bytes is over the budget of {budget.max_bytes}.",
            source=label,
            stage="open",
        )
    header = read_header(data, budget, label)
    width, height = header.oriented_size
    metadata: dict[str, MetadataValue] = {
        "source": label,
        "file_type": header.format.lower(),
        "image_width": width,
        "image_height": height,
        "original_width": header.width,
        "original_height": header.height,
        "frames": header.frames,
    }
    if frames == "video" and header.frames > 1:
        count = min(header.frames, budget.max_frames)
        picks = np.linspace(0, header.frames - 1, count).round().astype(int).tolist()
        lazy_frames = [
            LazyImage(
                width,
                height,
                _loader(data, budget, label, index, (width, height)),
                f"{label}, frame {index}",
            )
            for index in picks
        ]
        return MediaItem(
            "video",
            label,
            {**metadata, "sampled_frames": count},
            video=Video(lazy_frames, max_frames=budget.max_frames),
        )
    image = LazyImage(width, height, _loader(data, budget, label, 0, (width, height)), label)
    return MediaItem("image", label, metadata, image=image)


def _loader(
    data: ImageSourceData,
    budget: MediaBudget,
    label: str,
    frame: int,
    expected: tuple[int, int],
) -> Callable[[], PILImage.Image]:
    return lambda: decode(data, budget, label, frame=frame, expected=expected)
