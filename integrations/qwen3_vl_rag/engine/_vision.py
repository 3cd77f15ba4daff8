"""Pixels for Qwen3-VL: smart resize, image and video planning, decoding, and patchify.

This reproduces the official pipeline (qwen-vl-utils 0.0.14 feeding transformers'
``Qwen3VLProcessor`` with ``do_resize=False``) with Pillow, PyAV and torch only, no torchvision.
Work is split in two steps so batches can be planned before any pixel is decoded:

1. *plan*: read only headers (image size, video frame count and rate) and decide the resized size,
   the sampled frames and therefore the exact number of vision tokens;
2. *load*: decode, resize and normalise the pixels for one batch.

Behaviour kept from the official pipeline on purpose (it defines the released models' numbers):

* images go through ``to_rgb`` (RGBA composited on white, everything else ``convert("RGB")``) and a
  Pillow bicubic resize to multiples of 32;
* frames given as a list are first snapped to multiples of 64 (qwen-vl-utils passes the merged
  factor as the patch size there), sampled with ``np.linspace(..., dtype=int)``, padded to an even
  count with the last frame, and time-stamped as if sampled at 2 fps;
* videos are resized with bicubic antialiasing on uint8 tensors, rounded back to uint8.

One deliberate fix: the total-pixel cap (``total_pixels``) applies to video files too (the
reference drops it for files, so a long video file could take ~115k tokens).
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qwen3_vl_rag.checked_files import open_checked
from qwen3_vl_rag.errors import (
    ConfigurationError,
    ImageDecodeError,
    InputError,
    InputTooLargeError,
    UnsupportedInputError,
)
from qwen3_vl_rag.image_limits import (
    ALLOWED_FORMATS,
    MAX_IMAGE_PIXELS,
    MAX_INLINE_IMAGE_BYTES,
    TIFF_HINT,
    check_image_size,
    smart_resize,
    unsupported_tiff_layout,
)
from qwen3_vl_rag.inputs import LazyImage, Video
from qwen3_vl_rag.video_frames import FRAME_FACTOR, IN_PROCESS_READER, FrameReader, sample_frames

if TYPE_CHECKING:
    import torch
    from PIL import Image as PILImage

__all__ = [
    "ImagePlan",
    "VideoPlan",
    "VisionSettings",
    "load_image_pixels",
    "load_video_pixels",
    "patchify",
    "plan_image",
    "plan_video",
    "smart_resize",
]

IMAGE_MIN_TOKENS = 4
IMAGE_MAX_TOKENS = 16384
VIDEO_MIN_TOKENS = 128
VIDEO_MAX_TOKENS = 768
FRAME_LIST_SAMPLE_FPS = 2.0
#: Largest decoded payload of a ``data:`` URI image, checked from the URI's length before decoding.
MAX_DATA_URI_BYTES = MAX_INLINE_IMAGE_BYTES


@dataclass(frozen=True)
class VisionSettings:
    """Pixel and frame budgets, and the checkpoint's patch geometry.

    The defaults are the official Qwen3-VL-Embedding/Reranker constants.

    Args:
        min_pixels: Lower bound on an image's pixels after resizing (4 visual tokens).
        max_pixels: Upper bound on an image's pixels after resizing (1800 visual tokens).
        video_min_pixels: Lower bound per video frame (128 tokens).
        video_max_pixels: Upper bound per video frame (768 tokens).
        total_pixels: Upper bound on all frames of one video together (7680 tokens).
        fps: Frames sampled per second from video files.
        max_frames: Upper bound on frames sampled from one video.
        patch_size: Vision patch size (from the checkpoint).
        merge_size: Spatial merge size (from the checkpoint).
        temporal_patch_size: Frames per temporal patch (from the checkpoint).
        image_mean: Per-channel normalisation mean (from the checkpoint).
        image_std: Per-channel normalisation std (from the checkpoint).

    Example:
        >>> from qwen3_vl_rag import Qwen3VLEmbedder
        >>> embedder = Qwen3VLEmbedder.from_pretrained(
        ...     "Qwen/Qwen3-VL-Embedding-2B", max_pixels=602112, max_frames=32
        ... )
        >>> embedder.vision.max_pixels, embedder.vision.max_frames, embedder.vision.factor
        (602112, 32, 32)
    """

    min_pixels: int = 4 * 32 * 32
    max_pixels: int = 1800 * 32 * 32
    video_min_pixels: int = VIDEO_MIN_TOKENS * 32 * 32
    video_max_pixels: int = VIDEO_MAX_TOKENS * 32 * 32
    total_pixels: int = 10 * 768 * 32 * 32
    fps: float = 1.0
    max_frames: int = 64
    patch_size: int = 16
    merge_size: int = 2
    temporal_patch_size: int = 2
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        if not 0 < self.min_pixels <= self.max_pixels:
            raise ConfigurationError(
                f"need 0 < min_pixels <= max_pixels, got {self.min_pixels} and {self.max_pixels}."
            )
        if not 0 < self.video_min_pixels <= self.video_max_pixels:
            raise ConfigurationError(
                "need 0 < video_min_pixels <= video_max_pixels, "
                f"got {self.video_min_pixels} and {self.video_max_pixels}."
            )
        if self.total_pixels <= 0 or self.fps <= 0 or self.max_frames < FRAME_FACTOR:
            raise ConfigurationError(
                "total_pixels and fps must be positive and max_frames at least 2, got "
                f"{self.total_pixels}, {self.fps}, {self.max_frames}."
            )

    @property
    def factor(self) -> int:
        """Pixels per visual token side (patch size times merge size, 32 for Qwen3-VL)."""
        return self.patch_size * self.merge_size


# Smart resize (the size Qwen3-VL sees) lives in the leaf :mod:`qwen3_vl_rag.image_limits`, which
# the media loaders use too; it is re-exported here as part of this module's surface.


# --------------------------------------------------------------------------------------------------
# images


def describe_source(source: object) -> str:
    """A short, printable name for an image or video source (for error messages)."""
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if text.startswith("data:"):
            return f"<data URI, {len(text)} chars>"
        return text if len(text) <= 200 else text[:197] + "..."
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    if isinstance(source, LazyImage):
        return source.description
    name = type(source).__name__
    if hasattr(source, "size") and hasattr(source, "mode"):
        return f"<PIL image {source.size[0]}x{source.size[1]} {source.mode}>"
    if hasattr(source, "shape"):
        return f"<array {tuple(source.shape)}>"
    return f"<{name}>"


def _decode_data_uri(uri: str) -> bytes:
    comma = uri.find(",")
    header = uri[:comma] if comma != -1 else uri[:200]
    if comma == -1 or ";base64" not in header:
        raise UnsupportedInputError(
            "only base64 data: URIs are supported (data:image/...;base64,...)."
        )
    if not header[5:].startswith("image/"):
        raise UnsupportedInputError(
            f"a data: URI for an image must be image/*, got {header[5:]!r}."
        )
    # checked from the length, before the payload is copied or decoded: an upper bound
    decoded_size = (len(uri) - comma - 1 + 3) // 4 * 3
    if decoded_size > MAX_DATA_URI_BYTES:
        raise InputTooLargeError(
            f"the data: URI's payload decodes to up to {decoded_size} bytes, over the budget of "
            f"{MAX_DATA_URI_BYTES}.",
            source=describe_source(uri),
            hint="Pass a large image as a file or as bytes.",
        )
    payload = uri[comma + 1 :]
    try:
        return base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise ImageDecodeError("the data: URI's base64 payload is invalid.") from exc


def _local_path(source: str | os.PathLike[str]) -> Path:
    text = os.fspath(source)
    return Path(text[7:] if text.startswith("file://") else text)


def open_image(source: object) -> PILImage.Image:
    """Open an image lazily (header only for files and bytes); do not decode pixels yet.

    Raises:
        ImageDecodeError: When the file is missing or not a recognisable image.
        InputTooLargeError: For a ``data:`` URI whose payload is over ``MAX_DATA_URI_BYTES``.
        UnsupportedInputError: For a type that is not an image.
    """
    from PIL import Image

    if isinstance(source, Image.Image):
        return source
    if type(source).__module__ == "numpy" and type(source).__name__ == "ndarray":
        return _array_to_image(source)
    try:
        if isinstance(source, (bytes, bytearray)):
            return _open_allowed(io.BytesIO(bytes(source)), source)
        if isinstance(source, str) and source.startswith("data:"):
            return _open_allowed(io.BytesIO(_decode_data_uri(source)), source)
        if isinstance(source, (str, os.PathLike)):
            return _open_image_file(_local_path(source), describe_source(source))
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(
            f"refused as a decompression bomb ({exc}).", source=describe_source(source)
        ) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageDecodeError(
            f"not a readable image ({type(exc).__name__}: {exc}).", source=describe_source(source)
        ) from exc
    raise UnsupportedInputError(
        f"unsupported image type {type(source).__name__}.",
        hint="Pass a PIL image, a path, bytes, a data: URI or an HxWx3 uint8 array.",
    )


def _open_image_file(path: Path, label: str) -> PILImage.Image:
    """Open an image file lazily, checked on the open handle (a FIFO is never waited on).

    On Linux, Pillow reads the very file that was checked (through ``/proc/self/fd``), so
    nothing can be swapped in between the check and the reading.
    """
    if not os.path.lexists(path):
        raise ImageDecodeError("no such image file.", source=label)
    with open_checked(path, max_bytes=2**63, label=label, error=ImageDecodeError) as opened:
        return _open_allowed(opened.name_for_libraries(), path)


def _open_allowed(file: str | io.BytesIO, source: object) -> PILImage.Image:
    """``Image.open`` restricted to the formats ``media.load`` reads (no TGA, EPS, FITS...).

    Raises:
        ImageDecodeError: Not an image of one of
            :data:`~qwen3_vl_rag.image_limits.ALLOWED_FORMATS` that Pillow can parse.
    """
    from PIL import Image, UnidentifiedImageError

    Image.init()  # every plugin registered, so the allowlist can name them
    try:
        return Image.open(file, formats=[name for name in ALLOWED_FORMATS if name in Image.OPEN])
    except UnidentifiedImageError as exc:
        layout = unsupported_tiff_layout(file)
        if layout is not None:
            raise UnsupportedInputError(
                f"a valid TIFF of a layout Pillow cannot decode ({layout}).",
                source=describe_source(source),
                hint=TIFF_HINT,
            ) from exc
        # as before the allowlist: unreadable bytes and other formats alike are not decodable
        raise ImageDecodeError(
            f"not a readable image in a supported format ({', '.join(ALLOWED_FORMATS)}).",
            source=describe_source(source),
        ) from exc


def _refuse_oversized(image: PILImage.Image, source: object) -> None:
    """The pixel budget every entry point applies (``media.load`` too), from the header.

    Files, bytes and ``data:`` URIs are refused before their pixels are decoded; images and
    arrays given in memory were decoded by their caller already.

    Raises:
        InputTooLargeError: Over :data:`~qwen3_vl_rag.image_limits.MAX_IMAGE_PIXELS`.
        UnsupportedInputError: An aspect ratio the model cannot take.
    """
    if isinstance(source, (str, os.PathLike, bytes, bytearray)):
        width, height = image.size
        try:
            check_image_size(
                width, height, max_pixels=MAX_IMAGE_PIXELS, source=describe_source(source)
            )
        except InputError:
            image.close()
            raise


def _array_to_image(array: Any) -> PILImage.Image:
    from PIL import Image

    arr = np.asarray(array)
    if arr.dtype != np.uint8:
        raise UnsupportedInputError(
            f"image arrays must be uint8, got {arr.dtype}.",
            hint="Scale to 0-255 and cast to uint8.",
        )
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4)):
        return Image.fromarray(arr)
    raise UnsupportedInputError(f"image arrays must be HxW, HxWx3 or HxWx4, got shape {arr.shape}.")


def to_rgb(image: PILImage.Image) -> PILImage.Image:
    """RGBA onto white, everything else ``convert("RGB")``, exactly as the official pipeline."""
    from PIL import Image

    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.split()[3])
        return background
    return image.convert("RGB")


def decode_image(source: object) -> PILImage.Image:
    """Open and fully decode an image into RGB.

    Raises:
        ImageDecodeError: When the pixel data cannot be decoded (truncated or corrupt file).
    """
    if isinstance(source, LazyImage):
        return _load_lazy(source)
    image = open_image(source)
    _refuse_oversized(image, source)
    try:
        image.load()
        return to_rgb(image)
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageDecodeError(
            f"image data could not be decoded ({type(exc).__name__}: {exc}).",
            source=describe_source(source),
        ) from exc


def _load_lazy(source: LazyImage) -> PILImage.Image:
    image = source.load()
    if image.mode != "RGB" or image.size != source.size:
        raise ImageDecodeError(
            f"the lazy image produced a {image.mode} {image.size[0]}x{image.size[1]} image; "
            f"expected RGB {source.width}x{source.height}.",
            source=source.description,
        )
    return image


@dataclass(frozen=True)
class ImagePlan:
    """An image whose resized size, and so token count, is known before decoding."""

    source: object
    height: int
    width: int
    resized_height: int
    resized_width: int
    patch_size: int
    merge_size: int

    @property
    def grid(self) -> tuple[int, int, int]:
        """``(t, h, w)`` patch grid as the model expects it in ``image_grid_thw``."""
        return (1, self.resized_height // self.patch_size, self.resized_width // self.patch_size)

    @property
    def num_tokens(self) -> int:
        """Number of ``<|image_pad|>`` tokens this image takes."""
        _, h, w = self.grid
        return h * w // (self.merge_size**2)


def plan_image(
    source: object,
    settings: VisionSettings,
    *,
    factor: int | None = None,
    min_pixels: float | None = None,
    max_pixels: float | None = None,
) -> ImagePlan:
    """Read an image's size from its header and decide its resized size."""
    if isinstance(source, LazyImage):
        width, height = source.size
    else:
        image = open_image(source)
        width, height = image.size
        if width >= 1 and height >= 1:
            _refuse_oversized(image, source)
        if image is not source and hasattr(image, "close"):
            image.close()
    if width < 1 or height < 1:
        raise ImageDecodeError("the image has no pixels.", source=describe_source(source))
    factor = factor or settings.factor
    rh, rw = smart_resize(
        height,
        width,
        factor,
        settings.min_pixels if min_pixels is None else min_pixels,
        settings.max_pixels if max_pixels is None else max_pixels,
    )
    return ImagePlan(source, height, width, rh, rw, settings.patch_size, settings.merge_size)


def load_image_pixels(plan: ImagePlan) -> torch.Tensor:
    """Decode and resize one planned image: a ``(1, 3, H, W)`` uint8 tensor."""
    import torch

    array = np.asarray(resized_image(plan), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0)


def resized_image(plan: ImagePlan) -> PILImage.Image:
    """Decode one planned image and resize it to its planned size: the RGB picture the model sees.

    The in-process engine turns it into pixels; the remote engine sends it losslessly, so a server
    with resizing off sees the same picture.
    """
    from PIL import Image

    image = decode_image(plan.source)
    if image.size != (plan.width, plan.height):
        raise ImageDecodeError(
            f"the image changed size between planning ({plan.width}x{plan.height}) and decoding "
            f"({image.size[0]}x{image.size[1]}).",
            source=describe_source(plan.source),
        )
    return image.resize((plan.resized_width, plan.resized_height), Image.Resampling.BICUBIC)


# --------------------------------------------------------------------------------------------------
# video


@dataclass(frozen=True)
class VideoPlan:
    """A video whose sampled frames, resized size and token count are known before decoding.

    ``frame_sources`` holds the (sampled, padded) frames of a frame-list video; ``path`` and
    ``frame_indices`` the frames to decode from a file.
    """

    label: str
    path: Path | None
    reader: FrameReader
    frame_sources: tuple[ImagePlan, ...]
    frame_indices: tuple[int, ...]
    fps: float
    resized_height: int
    resized_width: int
    patch_size: int
    merge_size: int
    temporal_patch_size: int

    @property
    def num_frames(self) -> int:
        """Frames fed to the model (before temporal padding)."""
        return len(self.frame_indices)

    @property
    def grid(self) -> tuple[int, int, int]:
        """``(t, h, w)`` patch grid as the model expects it in ``video_grid_thw``."""
        t = math.ceil(self.num_frames / self.temporal_patch_size)
        return (t, self.resized_height // self.patch_size, self.resized_width // self.patch_size)

    @property
    def tokens_per_frame(self) -> int:
        """``<|video_pad|>`` tokens in each temporal group's block."""
        _, h, w = self.grid
        return h * w // (self.merge_size**2)

    @property
    def num_tokens(self) -> int:
        """All ``<|video_pad|>`` tokens of the video."""
        return self.grid[0] * self.tokens_per_frame

    @property
    def timestamps(self) -> tuple[float, ...]:
        """Seconds of each temporal group: the mean time of its first and last frame."""
        indices = list(self.frame_indices)
        merge = self.merge_size
        if len(indices) % merge:
            indices.extend([indices[-1]] * (merge - len(indices) % merge))
        seconds = [i / self.fps for i in indices]
        return tuple(
            (seconds[i] + seconds[i + merge - 1]) / 2 for i in range(0, len(seconds), merge)
        )


def _video_max_pixels(settings: VisionSettings, num_frames: int) -> float:
    cap = min(settings.video_max_pixels, settings.total_pixels / num_frames * FRAME_FACTOR)
    return max(cap, int(settings.video_min_pixels * 1.05))


def plan_video(video: Video, settings: VisionSettings) -> VideoPlan:
    """Decide which frames to use and their size, reading only headers.

    Raises:
        VideoDecodeError: For a missing, unreadable or too-short video.
        ImageDecodeError: For an unreadable frame of a frame-list video.
    """
    if video.is_file:
        return _plan_video_file(video, settings)
    return _plan_frame_list(video, settings)


def _plan_frame_list(video: Video, settings: VisionSettings) -> VideoPlan:
    frames = list(video.source)  # type: ignore[arg-type]
    max_frames = video.max_frames or settings.max_frames
    if len(frames) > max_frames:
        keep = np.linspace(0, len(frames) - 1, max_frames, dtype=int).tolist()
        frames = [frames[i] for i in keep]
    # Each frame is snapped like a standalone image, but with the merged factor (64) as patch size.
    snap_factor = settings.factor * settings.merge_size
    plans = [
        plan_image(
            f,
            settings,
            factor=snap_factor,
            min_pixels=IMAGE_MIN_TOKENS * snap_factor**2,
            max_pixels=IMAGE_MAX_TOKENS * snap_factor**2,
        )
        for f in frames
    ]
    sizes = {(p.resized_height, p.resized_width) for p in plans}
    if len(sizes) > 1:
        raise UnsupportedInputError(
            f"the frames of a video must share one size; got {len(sizes)} sizes "
            f"({sorted(sizes)[:3]} after snapping to multiples of {snap_factor})."
        )
    count = math.ceil(len(plans) / FRAME_FACTOR) * FRAME_FACTOR
    plans += [plans[-1]] * (count - len(plans))
    ((height, width),) = sizes
    rh, rw = smart_resize(
        height,
        width,
        settings.factor,
        settings.video_min_pixels,
        _video_max_pixels(settings, count),
    )
    return VideoPlan(
        label=f"<video of {len(frames)} frames>",
        path=None,
        reader=IN_PROCESS_READER,
        frame_sources=tuple(plans),
        frame_indices=tuple(range(count)),
        fps=FRAME_LIST_SAMPLE_FPS,
        resized_height=rh,
        resized_width=rw,
        patch_size=settings.patch_size,
        merge_size=settings.merge_size,
        temporal_patch_size=settings.temporal_patch_size,
    )


def _plan_video_file(video: Video, settings: VisionSettings) -> VideoPlan:
    path = _local_path(video.source)  # type: ignore[arg-type]
    label = describe_source(video.source)
    reader = video.reader or IN_PROCESS_READER
    header = reader.probe(path, label)
    indices = sample_frames(
        header,
        fps=video.fps or settings.fps,
        max_frames=video.max_frames or settings.max_frames,
        start=video.start,
        end=video.end,
        label=label,
    )
    rh, rw = smart_resize(
        header.height,
        header.width,
        settings.factor,
        settings.video_min_pixels,
        _video_max_pixels(settings, len(indices)),
    )
    return VideoPlan(
        label=label,
        path=path,
        reader=reader,
        frame_sources=(),
        frame_indices=tuple(indices),
        fps=header.fps,
        resized_height=rh,
        resized_width=rw,
        patch_size=settings.patch_size,
        merge_size=settings.merge_size,
        temporal_patch_size=settings.temporal_patch_size,
    )


def load_video_pixels(plan: VideoPlan) -> torch.Tensor:
    """Decode, sample and resize one planned video: a ``(T, 3, H, W)`` float32 tensor in 0-255."""
    import torch

    if plan.path is None:
        frames = torch.cat([load_image_pixels(p) for p in plan.frame_sources])
    else:
        array = plan.reader.read(plan.path, plan.frame_indices, plan.label)
        frames = torch.from_numpy(array).permute(0, 3, 1, 2)
    return _resize_frames(frames, plan.resized_height, plan.resized_width).to(torch.float32)


def _resize_frames(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bicubic antialiased resize of uint8 frames, rounded back to uint8, as torchvision does."""
    import torch
    import torch.nn.functional as F

    if tuple(frames.shape[-2:]) == (height, width):
        return frames
    out = F.interpolate(
        frames.to(torch.float32),
        size=[height, width],
        mode="bicubic",
        align_corners=False,
        antialias=True,
    )
    return out.clamp_(0, 255).round_().to(torch.uint8)


# --------------------------------------------------------------------------------------------------
# patchify


def patchify(frames: torch.Tensor, settings: VisionSettings) -> torch.Tensor:
    """Normalise ``(T, 3, H, W)`` pixels in 0-255 and cut them into Qwen3-VL patches.

    Returns:
        A ``(t * h * w, 3 * temporal_patch * patch * patch)`` float32 tensor, patches ordered by
        merge window, as transformers' Qwen3-VL image and video processors lay them out.
    """
    import torch

    # rescale (1/255) and normalise fused into one affine map, as transformers does
    scale = 1.0 / (1 / 255)
    mean = torch.tensor(settings.image_mean, dtype=torch.float32) * scale
    std = torch.tensor(settings.image_std, dtype=torch.float32) * scale
    x = (frames.to(torch.float32) - mean[:, None, None]) / std[:, None, None]
    tps, patch, merge = settings.temporal_patch_size, settings.patch_size, settings.merge_size
    if x.shape[0] % tps:
        x = torch.cat([x, x[-1:].expand(tps - x.shape[0] % tps, -1, -1, -1)])
    t, c, h, w = x.shape
    gt, gh, gw = t // tps, h // patch, w // patch
    x = x.view(gt, tps, c, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(gt * gh * gw, c * tps * patch * patch)
