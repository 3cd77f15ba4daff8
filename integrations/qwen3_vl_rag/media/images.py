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
* The header is parsed once per file, and it and every decode run through a
  :class:`~qwen3_vl_rag.media.isolation.DecodeRunner` (a worker process, under the budget's
  time and memory limits, when a folder is scanned): a header that takes minutes to parse (a
  TIFF with 100,000 pages) is stopped, not waited for. A file is reopened for decoding only if
  it is still the file that was checked (see :func:`~qwen3_vl_rag.checked_files.verified_open`).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from qwen3_vl_rag.checked_files import FileIdentity, display_path, open_checked, verified_open
from qwen3_vl_rag.errors import (
    ImageDecodeError,
    InputError,
    InputTooLargeError,
    UnsupportedInputError,
)
from qwen3_vl_rag.image_limits import (
    ALLOWED_FORMATS,
    TIFF_HINT,
    check_image_size,
    smart_resize,
    unsupported_tiff_layout,
)
from qwen3_vl_rag.inputs import LazyImage, Video
from qwen3_vl_rag.media.budget import MediaBudget
from qwen3_vl_rag.media.isolation import IN_PROCESS_RUNNER, DecodeRunner
from qwen3_vl_rag.media.items import MediaItem, MetadataValue
from qwen3_vl_rag.media.sniff import HEAD_BYTES, sniff_bytes

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = ["ALLOWED_FORMATS", "ImageHeader", "load_image", "normalize_to_rgb", "read_header"]

#: Pillow formats we decode (JPEG includes multi-picture MPO files from phones).
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


def _open(stream: Any, head: bytes, label: str) -> PILImage.Image:
    """``Image.open`` restricted to the allowed formats; Pillow's errors become typed ones."""
    from PIL import Image, UnidentifiedImageError

    Image.init()  # register every plugin, so the allowlist can name them
    formats = [name for name in ALLOWED_FORMATS if name in Image.OPEN]
    try:
        return Image.open(stream, formats=formats)
    except Image.DecompressionBombError as exc:
        raise InputTooLargeError(
            f"refused as a decompression bomb ({exc}).", source=label, stage="open"
        ) from exc
    except UnidentifiedImageError as exc:
        sniffed = sniff_bytes(head)
        layout = unsupported_tiff_layout(stream) if sniffed.format == "tiff" else None
        if layout is not None:
            raise UnsupportedInputError(
                f"a valid TIFF of a layout Pillow cannot decode ({layout}).",
                source=label,
                stage="open",
                hint=TIFF_HINT,
            ) from exc
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


def _orientation(image: PILImage.Image) -> int:
    """The EXIF orientation, read without decoding pixels.

    Pillow's ``getexif`` on a PNG decodes the whole image to look for an ``eXIf`` chunk after
    the pixel data; only the chunks before the pixels are read here (for PNG, an ``eXIf`` chunk
    placed after them is ignored, consistently, when decoding too).
    """
    from PIL import Image

    try:
        if image.format == "PNG":
            exif = Image.Exif()
            raw = image.info.get("exif")
            if isinstance(raw, bytes):
                exif.load(raw)
        else:
            exif = image.getexif()
        value = int(exif.get(0x0112, 1))
    except (OSError, ValueError, SyntaxError, TypeError):
        return 1  # unreadable EXIF: keep the pixels as stored
    return value if 1 <= value <= 8 else 1


def _header_of(image: PILImage.Image, budget: MediaBudget, label: str) -> ImageHeader:
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageDecodeError("the image has no pixels.", source=label, stage="open")
    # the model's aspect limit, from the header: a 1 x 60,000,000 strip is refused, not decoded
    check_image_size(width, height, max_pixels=2**62, source=label)
    orientation = _orientation(image)
    if image.format in ("JPEG", "MPO"):
        image.draft(image.mode, _draft_size(width, height, budget))
    decoded_width, decoded_height = image.size
    check_image_size(
        decoded_width, decoded_height, max_pixels=budget.max_image_pixels, source=label
    )
    return ImageHeader(
        format=str(image.format),
        width=width,
        height=height,
        frames=int(getattr(image, "n_frames", 1)),
        decoded_width=decoded_width,
        decoded_height=decoded_height,
        orientation=orientation,
    )


def read_header(
    data: ImageSourceData,
    budget: MediaBudget,
    label: str,
    identity: FileIdentity | None = None,
) -> ImageHeader:
    """Format, size, frame count and orientation from the header; no pixel is decoded.

    A decoding step: run it through a runner (a worker process bounds its time). A path is
    opened through :func:`~qwen3_vl_rag.checked_files.verified_open`: with ``identity``, only
    the file that was checked is read.

    Raises:
        UnsupportedInputError: Not an image in an allowed format, or a strip whose aspect ratio
            the model cannot take.
        InputTooLargeError: More pixels than ``budget.max_image_pixels`` even at reduced size.
        ImageDecodeError: An unreadable header, or not the file that was checked.
    """
    if isinstance(data, bytes):
        with _open(io.BytesIO(data), data[:HEAD_BYTES], label) as image:
            return _header_of(image, budget, label)
    with (
        verified_open(
            data, identity, label=label, error=ImageDecodeError, max_bytes=budget.max_bytes
        ) as opened,
        open(opened.fd, "rb", closefd=False) as handle,
        _open(handle, opened.head(HEAD_BYTES), label) as image,
    ):
        return _header_of(image, budget, label)


_TRANSPOSITIONS = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE"}
_TRANSPOSITIONS.update({6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90"})


def normalize_to_rgb(image: PILImage.Image, orientation: int | None = None) -> PILImage.Image:
    """RGB the way a person sees the image: oriented, 16-bit scaled, transparency on white.

    Args:
        image: A loaded image.
        orientation: Its EXIF orientation as read from the header (default: read it from
            ``image``).
    """
    import numpy as np
    from PIL import Image, ImageOps

    if orientation is None:
        image = ImageOps.exif_transpose(image) or image
    elif orientation in _TRANSPOSITIONS:
        image = image.transpose(Image.Transpose[_TRANSPOSITIONS[orientation]])
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


def _decode_opened(
    image: PILImage.Image, header: ImageHeader, budget: MediaBudget, label: str, frame: int
) -> PILImage.Image:
    try:
        if frame:
            image.seek(frame)
        if image.format in ("JPEG", "MPO"):
            image.draft(image.mode, _draft_size(header.width, header.height, budget))
        if image.size != (header.decoded_width, header.decoded_height):
            raise ImageDecodeError(
                f"the file changed since it was read: {image.size[0]}x{image.size[1]} now, "
                f"{header.decoded_width}x{header.decoded_height} before.",
                source=label,
                stage="decode",
            )
        image.load()
        return normalize_to_rgb(image, header.orientation)
    except InputError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageDecodeError(
            f"the image data could not be decoded ({type(exc).__name__}: {exc}).",
            source=label,
            stage="decode",
        ) from exc


def decode(
    data: ImageSourceData,
    budget: MediaBudget,
    label: str,
    header: ImageHeader,
    frame: int = 0,
    identity: FileIdentity | None = None,
) -> PILImage.Image:
    """Decode one frame of an image whose header was read, and normalise it to RGB.

    A decoding step (see :func:`read_header`): the header is not parsed again, only opened.

    Raises:
        ImageDecodeError: Truncated or corrupt pixel data, or a file that changed since its
            header was read.
    """
    if isinstance(data, bytes):
        with _open(io.BytesIO(data), data[:HEAD_BYTES], label) as image:
            return _decode_opened(image, header, budget, label, frame)
    with (
        verified_open(data, identity, label=label, error=ImageDecodeError) as opened,
        open(opened.fd, "rb", closefd=False) as handle,
        _open(handle, opened.head(HEAD_BYTES), label) as image,
    ):
        return _decode_opened(image, header, budget, label, frame)


def load_image(
    data: ImageSourceData,
    *,
    budget: MediaBudget | None = None,
    frames: FramesMode = "first",
    source: str | None = None,
    runner: DecodeRunner | None = None,
    identity: FileIdentity | None = None,
) -> MediaItem:
    """An image file or encoded bytes as one item.

    Args:
        data: A file path, or the encoded image bytes.
        budget: Pixel, byte and time limits (default: :class:`MediaBudget`).
        frames: For animated images: ``"first"`` (the first frame, as an image) or ``"video"``
            (up to ``budget.max_frames`` frames, evenly spread, as a video).
        source: How to name the image in metadata and errors (default: the path).
        runner: Where the header is parsed and the pixels decoded; pass a
            :class:`~qwen3_vl_rag.media.isolation.WorkerPool` for untrusted files (default:
            this process).
        identity: The file as a scan checked it (see
            :func:`~qwen3_vl_rag.checked_files.open_checked`); default: checked here.

    Raises:
        UnsupportedInputError, ImageDecodeError, InputTooLargeError: See :func:`read_header`.
        DecodeTimeoutError, DecoderCrashedError: From a worker process.

    Example:
        >>> item = load_image(Path("screens/settings.png"))
        >>> item.metadata["image_width"], item.metadata["image_height"]
        (800, 500)
    """
    budget = budget or MediaBudget()
    runner = runner or IN_PROCESS_RUNNER
    label = source or (display_path(data) if isinstance(data, Path) else f"<{len(data)} bytes>")
    if isinstance(data, Path):
        if identity is None:
            with open_checked(
                data, max_bytes=budget.max_bytes, label=label, error=ImageDecodeError
            ) as opened:
                identity = opened.identity
    elif len(data) > budget.max_bytes:
        raise InputTooLargeError(
            f"{len(data)} bytes is over the budget of {budget.max_bytes}.",
            source=label,
            stage="open",
        )
    header: ImageHeader = runner.run(
        read_header,
        data,
        budget,
        label,
        identity,
        label=label,
        stage="open",
        timeout=budget.timeout,
    )
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
    decoding = _Decoding(data, budget, label, header, identity, runner)
    if frames == "video" and header.frames > 1:
        count = min(header.frames, budget.max_frames)
        import numpy as np

        picks = np.linspace(0, header.frames - 1, count).round().astype(int).tolist()
        lazy_frames = [
            LazyImage(width, height, decoding.frame(index), f"{label}, frame {index}")
            for index in picks
        ]
        return MediaItem(
            "video",
            label,
            {**metadata, "sampled_frames": count},
            video=Video(lazy_frames, max_frames=budget.max_frames),
        )
    image = LazyImage(width, height, decoding.frame(0), label)
    return MediaItem("image", label, metadata, image=image)


@dataclass(frozen=True)
class _Decoding:
    """How an image's frames are decoded later: through the runner, from the checked file."""

    data: ImageSourceData
    budget: MediaBudget
    label: str
    header: ImageHeader
    identity: FileIdentity | None
    runner: DecodeRunner

    def frame(self, index: int) -> Callable[[], PILImage.Image]:
        def load() -> PILImage.Image:
            image: PILImage.Image = self.runner.run(
                decode,
                self.data,
                self.budget,
                self.label,
                self.header,
                index,
                self.identity,
                label=self.label if not index else f"{self.label}, frame {index}",
                stage="decode",
                timeout=self.budget.timeout,
            )
            return image

        return load
