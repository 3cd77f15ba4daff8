"""Typed inputs: what an item to embed or rerank can be.

An *item* is one thing that becomes one vector (embedder) or one side of a pair (reranker):

* ``str`` is always **text** (never guessed to be a path or URL).
* An image is a ``PIL.Image.Image``, a ``pathlib.Path`` or ``os.PathLike``, ``bytes`` of an encoded
  image, or an ``H x W x 3`` ``uint8`` ``numpy`` array. Inside :class:`MultimodalInput` a ``str`` is
  also accepted as a file path or a ``data:image/...;base64,`` URI.
* A video is a file path (``.mp4``, ``.webm``, ``.mkv``, ``.mov``, ...), a sequence of frames
  (any of the image forms above), or a :class:`Video` carrying sampling options.
* :class:`MultimodalInput` combines text, several images and a video in one item.
* A ``dict`` with the official reference's keys (``text``, ``image``, ``video``, ``instruction``) is
  accepted too, to ease migration.

This module does not import torch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, Union

from qwen3_vl_rag.errors import RemoteInputError, UnsupportedInputError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image as PILImage

    from qwen3_vl_rag.video_frames import FrameReader

__all__ = [
    "VIDEO_EXTENSIONS",
    "ImageSource",
    "InputItem",
    "LazyImage",
    "MultimodalInput",
    "SupportsToInput",
    "Video",
    "VideoSource",
    "as_multimodal_input",
]

#: File extensions treated as video when a bare path is given as an item.
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".mpeg", ".mpg"})


@dataclass(frozen=True, eq=False)
class LazyImage:
    """An image whose size is known before it is decoded or rendered.

    The engine plans batches from ``width`` and ``height`` and calls ``load`` only when the batch
    that holds the image runs, so a 500-page PDF can be handed over as 500 pages without holding
    500 rendered pages. ``load`` must return an RGB ``PIL.Image`` of exactly that size.

    Args:
        width: Width in pixels of the image ``load`` returns.
        height: Height in pixels of the image ``load`` returns.
        load: Produces the image (may raise an :class:`~qwen3_vl_rag.errors.InputError`).
        description: A short name for messages, such as ``"report.pdf, page 3"``.

    Example:
        >>> from PIL import Image
        >>> from qwen3_vl_rag import LazyImage, MultimodalInput
        >>> blank = LazyImage(640, 480, lambda: Image.new("RGB", (640, 480), "white"), "blank")
        >>> blank.size
        (640, 480)
        >>> item = MultimodalInput(images=[blank])  # drawn only when its batch runs
    """

    width: int
    height: int
    load: Callable[[], PILImage.Image]
    description: str = "<lazy image>"

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``, like ``PIL.Image.size``."""
        return (self.width, self.height)


ImageSource: TypeAlias = Union[
    "PILImage.Image", str, "os.PathLike[str]", bytes, "np.ndarray", LazyImage
]
"""An image: PIL image, file path, ``data:`` URI, encoded bytes, HxWx3 uint8 array or LazyImage."""

VideoSource: TypeAlias = Union[str, "os.PathLike[str]", Sequence[ImageSource], "Video"]
"""A video: a file path, a sequence of frames, or a :class:`Video`."""

_REMOTE_PREFIXES = ("http://", "https://", "ftp://", "ftps://", "s3://", "gs://")


@dataclass(frozen=True)
class Video:
    """A video with its own sampling options.

    Args:
        source: A video file path, or a sequence of frames (images in any accepted form).
        fps: Frames sampled per second of video (files only); ``None`` uses the default (1.0).
        max_frames: Upper bound on sampled frames. ``None`` uses the model's default (64).
        start: Start of the clip to read, in seconds (files only).
        end: End of the clip to read, in seconds (files only).
        reader: Where the file's header is read and its frames decoded (files only); ``None``
            decodes in this process. The media layer passes one that runs in a worker process.

    Example:
        >>> clip = Video("meeting.mp4", fps=2.0, max_frames=32, start=60.0, end=90.0)
        >>> item = MultimodalInput(text="two people at the ATM", video=clip)
    """

    source: str | os.PathLike[str] | Sequence[ImageSource]
    fps: float | None = None
    max_frames: int | None = None
    start: float | None = None
    end: float | None = None
    reader: FrameReader | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.fps is not None and not self.fps > 0:
            raise UnsupportedInputError(f"Video fps must be positive, got {self.fps!r}.")
        if self.max_frames is not None and self.max_frames < 2:
            raise UnsupportedInputError(
                f"Video max_frames must be at least 2 (frames are paired), got {self.max_frames!r}."
            )
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise UnsupportedInputError(
                f"Video start ({self.start}s) must be before end ({self.end}s)."
            )

    @property
    def is_file(self) -> bool:
        """Whether the source is a file path (as opposed to a sequence of frames)."""
        return isinstance(self.source, (str, os.PathLike))


@dataclass(frozen=True)
class MultimodalInput:
    """One item made of text, images and/or a video.

    The model sees the parts in the official order, whatever order they are given in: the video,
    then the images, then the text. An item with no part at all is embedded as the text ``"NULL"``,
    as the official implementation does. An empty string is kept as an (empty) text part.

    Args:
        text: The text part.
        images: Images, in order (a single image is accepted too).
        video: A video file path, a sequence of frames, or a :class:`Video`.
        instruction: Overrides the call's instruction for this item only (embedder).

    Example:
        >>> from qwen3_vl_rag import MultimodalInput
        >>> page = MultimodalInput(text="Q3 revenue", images=["report/page-3.png"])
    """

    text: str | None = None
    images: Sequence[ImageSource] = field(default=())
    video: VideoSource | None = None
    instruction: str | None = None

    def __post_init__(self) -> None:
        images: Any = self.images
        if images is None:
            images = ()
        elif is_single_image(images):
            images = (images,)
        object.__setattr__(self, "images", tuple(images))
        if self.text is not None and not isinstance(self.text, str):
            raise UnsupportedInputError(
                f"MultimodalInput.text must be a str, got {type(self.text).__name__}."
            )
        if self.instruction is not None and not isinstance(self.instruction, str):
            raise UnsupportedInputError(
                f"MultimodalInput.instruction must be a str, got {type(self.instruction).__name__}."
            )

    @property
    def is_empty(self) -> bool:
        """True when the item has no text, image or video (it is embedded as ``"NULL"``)."""
        return self.text is None and not self.images and self.video is None

    def as_video(self) -> Video | None:
        """The video part as a :class:`Video` (``None`` when there is none)."""
        if self.video is None or isinstance(self.video, Video):
            return self.video
        return Video(self.video)


InputItem: TypeAlias = Union[
    str, MultimodalInput, Video, ImageSource, Mapping[str, Any], "SupportsToInput"
]
"""Anything accepted as one item by ``embed`` or as a query/document by the reranker."""


class SupportsToInput(Protocol):
    """Anything that knows its model input, such as a media item (a PDF page, a clip)."""

    def to_input(self) -> MultimodalInput:
        """The item as a :class:`MultimodalInput`."""
        ...


def is_single_image(value: object) -> bool:
    if isinstance(value, (str, bytes, bytearray, os.PathLike, LazyImage)):
        return True
    type_name = type(value).__module__ + "." + type(value).__name__
    if type_name.startswith("PIL."):
        return True
    return type_name == "numpy.ndarray"


def _is_remote(value: object) -> bool:
    return isinstance(value, str) and value.lower().startswith(_REMOTE_PREFIXES)


def check_local_source(value: object, what: str) -> None:
    """Refuse remote URLs with an error that says what to do instead."""
    if _is_remote(value):
        raise RemoteInputError(
            f"{what} {str(value)[:120]!r} is a remote URL; remote fetching is not enabled.",
            hint="Download the file and pass its local path (guarded remote fetching comes "
            "with the media layer's allow_remote=True).",
        )


def as_multimodal_input(item: object) -> MultimodalInput:
    """Coerce any accepted item into a :class:`MultimodalInput`.

    Raises:
        UnsupportedInputError: For a type or value that is not an accepted item.
        RemoteInputError: For an http(s) URL (remote fetching is not enabled here).
    """
    if isinstance(item, MultimodalInput):
        result = item
    elif isinstance(item, str):
        result = MultimodalInput(text=item)
    elif isinstance(item, Video):
        result = MultimodalInput(video=item)
    elif isinstance(item, Mapping):
        result = _from_mapping(item)
    elif isinstance(item, os.PathLike):
        path = Path(item)
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            result = MultimodalInput(video=Video(path))
        else:
            result = MultimodalInput(images=(path,))
    elif isinstance(item, (bytes, bytearray)) or is_single_image(item):
        result = MultimodalInput(images=(item,))  # type: ignore[arg-type]
    elif callable(getattr(item, "to_input", None)):
        # items produced by the media layer (PDF pages, images, clips) carry their own input
        result = item.to_input()  # type: ignore[attr-defined]
        if not isinstance(result, MultimodalInput):
            raise UnsupportedInputError(
                f"{type(item).__name__}.to_input() returned {type(result).__name__}, "
                "not a MultimodalInput."
            )
    else:
        raise UnsupportedInputError(
            f"unsupported item type {type(item).__name__}.",
            hint="Pass text as str, an image as PIL.Image/pathlib.Path/bytes/ndarray, a video as "
            "Video(...), or combine them with MultimodalInput(text=..., images=[...], video=...).",
        )
    for image in result.images:
        check_local_source(image, "image")
    video = result.as_video()
    if video is not None:
        if video.is_file:
            check_local_source(video.source, "video")
        else:
            frames = video.source
            if isinstance(frames, (bytes, bytearray)) or not isinstance(frames, Sequence):
                raise UnsupportedInputError(
                    "a video must be a file path or a sequence of frames, "
                    f"got {type(frames).__name__}."
                )
            if len(frames) == 0:
                raise UnsupportedInputError("a video given as frames needs at least one frame.")
            for frame in frames:
                check_local_source(frame, "video frame")
    return result


_MAPPING_KEYS = frozenset({"text", "image", "images", "video", "instruction"})


def _from_mapping(item: Mapping[str, Any]) -> MultimodalInput:
    unknown = set(item) - _MAPPING_KEYS
    if unknown:
        raise UnsupportedInputError(
            f"unknown keys {sorted(unknown)} in a dict item; "
            f"accepted keys are {sorted(_MAPPING_KEYS)}."
        )
    text = item.get("text")
    if isinstance(text, list):
        # The reference concatenates several texts with no separator.
        text = "".join(text)
    images = item.get("images", item.get("image"))
    if images is None:
        images = ()
    elif is_single_image(images):
        images = (images,)
    return MultimodalInput(
        text=text,
        images=tuple(images),
        video=item.get("video"),
        instruction=item.get("instruction"),
    )
