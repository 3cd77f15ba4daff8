"""One entry point for a file or URL: sniff what it is, then load it as a PDF, image or video."""

from __future__ import annotations

import contextlib
import os
import tempfile
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from qwen3_vl_rag.checked_files import FileIdentity, display_path, open_checked
from qwen3_vl_rag.errors import RemoteInputError, UnsupportedInputError
from qwen3_vl_rag.media.budget import MediaBudget
from qwen3_vl_rag.media.clips import VideoDocument, load_video
from qwen3_vl_rag.media.images import FramesMode, load_image
from qwen3_vl_rag.media.isolation import DecodeRunner
from qwen3_vl_rag.media.items import MediaItem
from qwen3_vl_rag.media.pdf import PdfDocument, load_pdf
from qwen3_vl_rag.media.remote import RemotePolicy, fetch
from qwen3_vl_rag.media.sniff import HEAD_BYTES, MediaKind, Sniffed, sniff_bytes

__all__ = ["MediaOptions", "MediaDocument", "load", "load_path", "load_url"]


class MediaDocument(Protocol):
    """A loaded file: its items (produced lazily) and what was noticed while loading it.

    Example:
        >>> from qwen3_vl_rag.media import load
        >>> for name in ["report.pdf", "chart.png", "clip.mp4"]:
        ...     document = load(name)
        ...     print(type(document).__name__, document.source, list(document), document.warnings)
        PdfDocument report.pdf [MediaItem(page, 'report.pdf', page 1), ...] []
        ImageDocument chart.png [MediaItem(image, 'chart.png')] []
        VideoDocument clip.mp4 [MediaItem(video, 'clip.mp4')] []
    """

    source: str
    warnings: list[str]

    def __iter__(self) -> Iterator[MediaItem]:
        """The file's items."""
        ...


@dataclass
class ImageDocument:
    """An image file: one item.

    Example:
        >>> from qwen3_vl_rag.media import load
        >>> document = load("chart.png")
        >>> type(document).__name__, len(document), document.item.metadata["image_width"]
        ('ImageDocument', 1, 640)
    """

    source: str
    item: MediaItem
    warnings: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[MediaItem]:
        yield self.item

    def __len__(self) -> int:
        return 1


@dataclass(frozen=True)
class MediaOptions:
    """How files are turned into items (shared by single-file loads and folder scans).

    Args:
        budget: Pixel, page, frame, byte and time limits.
        runner: Where PyMuPDF, FFmpeg and Pillow run (a worker pool contains hangs and
            crashes, and bounds each step's time and memory).
        password: Password for encrypted PDFs.
        pages: 0-based PDF pages to keep (default: all, up to the budget).
        frames: Animated images: ``"first"`` frame, or their frames as a ``"video"``.
        fps: Frames sampled per second of video (default 1.0).
        segment_seconds: Cut videos into clips this long (default: one item per video).

    Example:
        >>> from qwen3_vl_rag.media import MediaOptions, load, scan_folder
        >>> options = MediaOptions(pages=[0, 2], segment_seconds=2.0)
        >>> [item.locator for item in load("report.pdf", options)]
        ['page 1', 'page 3']
        >>> [item.locator for item in load("clip.mp4", options)]
        ['0:00-0:02', '0:02-0:04']
        >>> with scan_folder("documents/", options) as scan:  # the same options for a folder
        ...     items = list(scan)
    """

    budget: MediaBudget = field(default_factory=MediaBudget)
    runner: DecodeRunner | None = None
    password: str | None = field(default=None, repr=False)
    pages: Sequence[int] | None = None
    frames: FramesMode = "first"
    fps: float | None = None
    segment_seconds: float | None = None


def load_path(
    path: str | os.PathLike[str],
    options: MediaOptions | None = None,
    *,
    sniffed: Sniffed | None = None,
    source: str | None = None,
    identity: FileIdentity | None = None,
) -> MediaDocument:
    """Load a local file by what its bytes say it is (its name does not matter).

    Args:
        path: The file.
        options: See :class:`MediaOptions`.
        sniffed: What the file's first bytes say (default: read here).
        source: How to name it in metadata and errors (default: the path).
        identity: The file as a scan checked it
            (:func:`~qwen3_vl_rag.checked_files.open_checked`); every read of it, here or in a
            worker, refuses anything else found at ``path`` (default: checked here).

    Raises:
        UnsupportedInputError: Not a PDF, an image or a video we can read.
        InputError: Any typed error of the PDF, image or video loaders.
    """
    options = options or MediaOptions()
    path = Path(path)
    label = source or display_path(path)
    if identity is None or sniffed is None:
        with open_checked(
            path, max_bytes=options.budget.max_bytes, label=label, expected=identity
        ) as opened:
            identity = opened.identity
            sniffed = sniffed or sniff_bytes(opened.head(HEAD_BYTES))
    return _dispatch(path, sniffed.kind, label, options, identity)


def _dispatch(
    path: Path,
    kind: MediaKind | None,
    label: str,
    options: MediaOptions,
    identity: FileIdentity | None = None,
) -> PdfDocument | ImageDocument | VideoDocument:
    if kind == "pdf":
        document = load_pdf(
            path,
            pages=options.pages,
            password=options.password,
            budget=options.budget,
            runner=options.runner,
            identity=identity,
        )
        document.source = label
        return document
    if kind == "image":
        return _image_document(path, label, options, identity)
    if kind == "video":
        video = load_video(
            path,
            fps=options.fps,
            segment_seconds=options.segment_seconds,
            budget=options.budget,
            runner=options.runner,
            identity=identity,
        )
        video.source = label
        return video
    raise UnsupportedInputError(
        "not a PDF, an image (PNG, JPEG, WebP, GIF, BMP, TIFF) or a video (MP4, MOV, WebM, "
        "MKV, AVI).",
        source=label,
        stage="sniff",
    )


def _image_document(
    data: Path | bytes, label: str, options: MediaOptions, identity: FileIdentity | None = None
) -> ImageDocument:
    image = load_image(
        data,
        budget=options.budget,
        frames=options.frames,
        source=label,
        runner=options.runner,
        identity=identity,
    )
    return ImageDocument(label, image)


def load_url(
    url: str, options: MediaOptions | None = None, *, policy: RemotePolicy | None = None
) -> MediaDocument:
    """Fetch a URL under ``policy`` and load what it holds.

    Images are decoded from memory; PDFs and videos are kept in a private temporary file for as
    long as their items are in use.

    Raises:
        BlockedURLError, FetchError, InputTooLargeError: See
            :func:`~qwen3_vl_rag.media.remote.fetch`.
        UnsupportedInputError: The body is not a PDF, image or video.
    """
    options = options or MediaOptions()
    policy = policy or RemotePolicy(max_bytes=options.budget.max_bytes)
    fetched = fetch(url, policy)
    sniffed = sniff_bytes(fetched.data[:1024])
    if sniffed.kind == "image":
        return _image_document(fetched.data, url, options)
    if sniffed.kind is None:
        raise UnsupportedInputError(
            f"the URL returned {fetched.content_type or 'unknown content'}, not a PDF, an "
            "image or a video.",
            source=url,
            stage="sniff",
        )
    directory = tempfile.mkdtemp(prefix="qwen3vl-fetch-")
    path = Path(directory) / f"download.{sniffed.format}"
    path.write_bytes(fetched.data)
    document = _dispatch(path, sniffed.kind, url, options)
    # the temporary file lives as long as what the items hold: a PDF's pages hold the document,
    # a video's clips hold its frame reader
    owner = document.reader if isinstance(document, VideoDocument) else document
    weakref.finalize(owner, _remove, path, directory)
    return document


def _remove(path: Path, directory: str) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
        os.rmdir(directory)


def load(
    source: str | os.PathLike[str],
    options: MediaOptions | None = None,
    *,
    allow_remote: bool = False,
    policy: RemotePolicy | None = None,
) -> MediaDocument:
    """Load a file path, or an ``http(s)://`` URL when ``allow_remote`` is true.

    Args:
        source: A path, or a URL.
        options: See :class:`MediaOptions`.
        allow_remote: Fetch URLs (off by default; see :mod:`qwen3_vl_rag.media.remote`).
        policy: The remote fetching policy (default :class:`RemotePolicy`).

    Raises:
        RemoteInputError: A URL while ``allow_remote`` is false.

    Example:
        >>> for item in load("report.pdf"):
        ...     print(item.locator, item.image.size)
        page 1 (1152, 1600)
        page 2 (1152, 1600)
        page 3 (1152, 1600)
        >>> chart = load("https://example.com/chart.png")  # allow_remote=True fetches it
        Traceback (most recent call last):
        ...
        qwen3_vl_rag.errors.RemoteInputError: https://example.com/chart.png: ...
    """
    text = os.fspath(source)
    scheme = text.split(":", 1)[0].lower() if "://" in text else ""
    if scheme and scheme != "file":
        if not allow_remote:
            raise RemoteInputError(
                f"{text[:120]!r} is a URL and remote fetching is off.",
                source=text[:120],
                stage="fetch",
                hint="Pass allow_remote=True to fetch it under the safe policy.",
            )
        return load_url(text, options, policy=policy)
    if scheme == "file":
        text = text[len("file://") :]
    return load_path(text, options)
