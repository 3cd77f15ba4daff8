"""Strings that name an image or a video clip, for frameworks that pass everything as ``str``.

LangChain stores a document as one string and LlamaIndex often keeps only a path. These helpers
decide, without guessing from file names, whether such a string is a visual input:

* a ``data:image/...;base64,...`` URI is an image;
* a path (or ``file://`` URL) to an existing file whose *content* is an image is that image;
* a path to a video file is that video, and ``video.mp4#t=10,20`` (W3C media-fragment syntax)
  is the clip from 10 s to 20 s;
* anything else (prose, a URL, a PDF, a missing file) is text.

Nothing is fetched from the network unless :func:`resolve_image_reference` is told to allow it,
and then only through the guarded fetcher.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qwen3_vl_rag.errors import RemoteInputError, UnsupportedInputError
from qwen3_vl_rag.inputs import MultimodalInput, Video
from qwen3_vl_rag.media.sniff import HEAD_BYTES, sniff_bytes, sniff_file

if TYPE_CHECKING:
    from qwen3_vl_rag.media.remote import RemotePolicy

__all__ = [
    "clip_reference",
    "decode_base64_image",
    "resolve_image_reference",
    "visual_input",
    "visual_with_text",
]

# A path longer than this, or with a line break, is prose: no stat call is wasted on it.
_MAX_PATH_CHARS = 4096
_FRAGMENT = re.compile(r"^(?P<path>.+?)#t=(?P<start>\d+(?:\.\d+)?)?(?:,(?P<end>\d+(?:\.\d+)?))?$")


def clip_reference(path: str | os.PathLike[str], start: float, end: float) -> str:
    """The string naming a clip of a video: ``"/videos/talk.mp4#t=10,20"``.

    Example:
        >>> clip_reference("/videos/talk.mp4", 10.0, 20.5)
        '/videos/talk.mp4#t=10,20.5'
    """
    return f"{os.fspath(path)}#t={start:g},{end:g}"


def visual_input(text: str) -> str | Path | Video | None:
    """The image or video a string names, or ``None`` when the string is text.

    Returns:
        The ``data:`` URI itself, a :class:`~pathlib.Path` to an image file, or a
        :class:`~qwen3_vl_rag.Video` (with ``start``/``end`` for a ``#t=`` clip), all of which
        the embedder and the reranker take as they are.

    Example:
        >>> visual_input("a chart of revenue") is None
        True
        >>> visual_input("pages/report-p3.png")  # when that file is a PNG
        PosixPath('pages/report-p3.png')
    """
    if text.startswith("data:image/"):
        return text
    if len(text) > _MAX_PATH_CHARS or "\n" in text or not text.strip():
        return None
    candidate = text[len("file://") :] if text.startswith("file://") else text
    start = end = None
    match = _FRAGMENT.match(candidate)
    if match and not os.path.isfile(candidate):
        candidate = match["path"]
        start = float(match["start"]) if match["start"] else None
        end = float(match["end"]) if match["end"] else None
    path = Path(candidate)
    try:
        if not path.is_file():
            return None
        kind = sniff_file(path).kind
    except OSError:
        return None
    if kind == "image" and start is None and end is None:
        return path
    if kind == "video":
        return Video(path, start=start, end=end)
    return None


def decode_base64_image(text: str) -> bytes | None:
    """The bytes of an image stored as plain base64 (as langchain-chroma's ``add_images`` does).

    Returns ``None`` for anything that is not base64 of a PNG, JPEG, GIF, WebP, BMP or TIFF.
    """
    if len(text) < 16 or " " in text[:64]:
        return None
    try:
        head = base64.b64decode(text[: (HEAD_BYTES // 3) * 4], validate=True)
    except (binascii.Error, ValueError):
        return None
    if sniff_bytes(head).kind != "image":
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def resolve_image_reference(
    uri: str | os.PathLike[str], *, allow_remote: bool, policy: RemotePolicy | None = None
) -> Any:
    """The image (or clip) a URI names: a local path, a ``data:`` URI, or a URL when allowed.

    Raises:
        RemoteInputError: A URL while remote fetching is off (``BlockedURLError`` and
            ``FetchError`` when it is on and the fetch is refused or fails).
        UnsupportedInputError: Anything that is not an image file, clip or image URI.
    """
    if not isinstance(uri, str | os.PathLike):
        raise UnsupportedInputError(
            f"expected an image path or URI, got {type(uri).__name__}.", stage="open"
        )
    text = os.fspath(uri)
    if text.startswith(("http://", "https://")):
        if not allow_remote:
            raise RemoteInputError(
                "remote images are not fetched by default.",
                source=text,
                stage="fetch",
                hint="pass allow_remote=True (private and metadata addresses stay refused)",
            )
        from qwen3_vl_rag.media.remote import fetch

        fetched = fetch(text, policy)
        if sniff_bytes(fetched.data[:1024]).kind != "image":
            raise UnsupportedInputError("the URL did not return an image.", source=text)
        return fetched.data
    visual = visual_input(text)
    if visual is None:
        reason = "no such file" if not os.path.exists(text) else "not an image or video file"
        raise UnsupportedInputError(
            f"{reason}; expected an image path, a data:image/ URI or an http(s) URL.",
            source=text[:200],
            stage="open",
        )
    return visual


def visual_with_text(visual: Any, text: str) -> MultimodalInput:
    """An image (or a clip) and its text as one input, e.g. a page image with its page text."""
    if isinstance(visual, Video):
        return MultimodalInput(text=text, video=visual)
    return MultimodalInput(text=text, images=(visual,))
