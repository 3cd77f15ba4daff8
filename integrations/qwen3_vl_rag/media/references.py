"""Strings that name an image or a video clip, for frameworks that pass everything as ``str``.

LangChain stores a document as one string and LlamaIndex often keeps only a path. These helpers
decide, without guessing from file names, whether such a string is a visual input:

* a ``data:image/...;base64,...`` URI is an image, or a clear error (never text): its size is
  checked before it is decoded, and its bytes must be an image in a format ``media.load``
  accepts;
* a path (or ``file://`` URL) to a file whose *content* is an image is that image, and a path
  to a video file is that video (``video.mp4#t=10,20``, W3C media-fragment syntax, is the clip
  from 10 s to 20 s), **when the file may be read** (see below);
* anything else (prose, a URL, a PDF, a missing file, a file outside the allowed roots) is text.

Which local files a document may name: a string inside a document (its text or its metadata)
comes from whoever wrote the document, so it is only read when its real path (symlinks and
``..`` resolved) lies under an *image root*: a folder one of our loaders or readers wrote to or
read from in this process (:func:`register_image_root`), or one the user allowed explicitly
(the adapters' ``image_roots``). Every other path stays text. A path the caller passes to an
image method itself (``embed_image``, ``get_image_embedding``) is the caller's own choice and is
read wherever it is.

Nothing is fetched from the network unless :func:`resolve_image_reference` is told to allow it,
and then only through the guarded fetcher.
"""

from __future__ import annotations

import os
import re
import stat
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qwen3_vl_rag.errors import (
    InputError,
    RemoteInputError,
    UnsupportedInputError,
)
from qwen3_vl_rag.image_limits import MAX_INLINE_IMAGE_BYTES
from qwen3_vl_rag.inputs import MultimodalInput, Video
from qwen3_vl_rag.media.inline_images import (
    checked_image_bytes,
    decode_base64_image,
    decode_data_uri,
    decode_inline_base64,
    is_base64_image,
    is_data_uri,
)
from qwen3_vl_rag.media.sniff import HEAD_BYTES, sniff_bytes

if TYPE_CHECKING:
    from qwen3_vl_rag.media.remote import RemotePolicy

__all__ = [
    "MAX_INLINE_IMAGE_BYTES",
    "UNUSABLE_VISUAL",
    "ImageRoots",
    "checked_image_bytes",
    "clip_reference",
    "decode_base64_image",
    "decode_data_uri",
    "decode_inline_base64",
    "is_base64_image",
    "is_data_uri",
    "register_image_root",
    "registered_image_roots",
    "ascore_with_text_fallback",
    "resolve_image_reference",
    "score_with_text_fallback",
    "visual_input",
    "visual_with_text",
    "warn_unusable",
]

#: The one reason given for a local file a document names but that cannot be used, whatever
#: the cause: telling "missing" from "not an image" would reveal what exists on this machine.
UNUSABLE_VISUAL = (
    "its image or video cannot be used (missing, unreadable, not an image or video, or outside "
    "the allowed image roots)"
)

# A path longer than this, or with a line break, is prose: no stat call is wasted on it.
_MAX_PATH_CHARS = 4096
_FRAGMENT = re.compile(r"^(?P<path>.+?)#t=(?P<start>\d+(?:\.\d+)?)?(?:,(?P<end>\d+(?:\.\d+)?))?$")

_registry_lock = threading.Lock()
_registered_roots: set[Path] = set()


# -- which local files may be read ---------------------------------------------------------------


def register_image_root(path: str | os.PathLike[str]) -> Path:
    """Let strings in documents name images and videos under ``path`` (a folder or a file).

    Our loaders and readers call this for the folder they write page images to and for the
    files and folders they load, so their documents keep working in the same process (for
    example ``Chroma.from_documents(pages, embeddings)``). The root is kept as its real path.

    Returns:
        The root as registered (its real path).
    """
    root = Path(os.path.realpath(path))
    with _registry_lock:
        _registered_roots.add(root)
    return root


def registered_image_roots() -> tuple[Path, ...]:
    """The roots our loaders and readers registered in this process, sorted."""
    with _registry_lock:
        return tuple(sorted(_registered_roots))


@dataclass(frozen=True)
class ImageRoots:
    """The folders (or single files) whose images and videos document strings may name.

    Example:
        >>> roots = ImageRoots.trusting(["report"])  # plus the loaders' roots
        >>> roots.resolve("report/page-3.png").is_absolute()  # its real path, when it is a file
        True
        >>> roots.resolve("report/../../../etc/passwd") is None
        True
    """

    roots: tuple[Path, ...] = ()

    @classmethod
    def trusting(cls, extra: Iterable[str | os.PathLike[str]] = ()) -> ImageRoots:
        """The registered roots (:func:`register_image_root`) and ``extra``, as real paths."""
        own = tuple(Path(os.path.realpath(root)) for root in extra)
        return cls(registered_image_roots() + own)

    def resolve(self, text: str) -> Path | None:
        """The real path of the regular file ``text`` names, if it lies under a root.

        The check is made on the real path (``..`` and every symlink resolved), and the real
        path is what is returned, so what is read later is what was checked.
        """
        if not self.roots:
            return None  # nothing may be read: not even a stat call
        try:
            real = Path(os.path.realpath(text, strict=True))
            info = real.stat()
        except (OSError, ValueError):  # missing, unreadable, a NUL byte, a symlink loop
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        if not any(real == root or real.is_relative_to(root) for root in self.roots):
            return None
        return real


def _any_regular_file(text: str) -> Path | None:
    path = Path(text)
    try:
        return path if path.is_file() else None
    except (OSError, ValueError):
        return None


# -- strings that name a visual ------------------------------------------------------------------


def clip_reference(path: str | os.PathLike[str], start: float, end: float) -> str:
    """The string naming a clip of a video: ``"/videos/talk.mp4#t=10,20"``.

    Example:
        >>> clip_reference("/videos/talk.mp4", 10.0, 20.5)
        '/videos/talk.mp4#t=10,20.5'
    """
    return f"{os.fspath(path)}#t={start:g},{end:g}"


def visual_input(text: str, *, roots: ImageRoots | None = None) -> bytes | Path | Video | None:
    """The image or video a string in a document names, or ``None`` when the string is text.

    Args:
        text: A document's text, a query, or a metadata value.
        roots: Where local files may be read (default: the registered roots only).

    Returns:
        The decoded bytes of a ``data:`` URI, the real :class:`~pathlib.Path` of an image file
        under ``roots``, or a :class:`~qwen3_vl_rag.Video` (with ``start``/``end`` for a
        ``#t=`` clip), all of which the embedder and the reranker take as they are.

    Raises:
        InputTooLargeError, ImageDecodeError, UnsupportedInputError: A ``data:image/`` URI that
            is too big, corrupt, or not an image in an accepted format.

    Example:
        >>> visual_input("a chart of revenue") is None
        True
        >>> visual_input("report/page-3.png", roots=ImageRoots.trusting(["report"])).name
        'page-3.png'
        >>> visual_input("chart.png", roots=ImageRoots.trusting(["report"])) is None  # not under it
        True
    """
    if is_data_uri(text):
        return decode_data_uri(text)
    return _local_visual(text, (roots or ImageRoots.trusting()).resolve)


def _local_visual(text: str, resolve: Callable[[str], Path | None]) -> Path | Video | None:
    if len(text) > _MAX_PATH_CHARS or "\n" in text or not text.strip():
        return None
    candidate = text[len("file://") :] if text.startswith("file://") else text
    start = end = None
    path = resolve(candidate)
    if path is None:
        match = _FRAGMENT.match(candidate)
        if match is None:
            return None
        path = resolve(match["path"])
        if path is None:
            return None
        start = float(match["start"]) if match["start"] else None
        end = float(match["end"]) if match["end"] else None
    kind = _sniff_regular_file(path)
    if kind == "image" and start is None and end is None:
        return path
    if kind == "video":
        return Video(path, start=start, end=end)
    return None


def _sniff_regular_file(path: Path) -> str | None:
    """The kind of a regular file's content; ``None`` for anything else, without blocking.

    Opened without following a final symlink and without waiting (a file swapped for a link or
    a FIFO since it was checked is refused, never read or waited on).
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        descriptor = os.open(path, flags)
    except (OSError, ValueError):
        return None
    with os.fdopen(descriptor, "rb") as handle:
        try:
            if not stat.S_ISREG(os.fstat(descriptor).st_mode):
                return None
            return sniff_bytes(handle.read(HEAD_BYTES)).kind
        except OSError:
            return None


# -- references given on purpose -----------------------------------------------------------------


def resolve_image_reference(
    uri: str | os.PathLike[str],
    *,
    allow_remote: bool,
    policy: RemotePolicy | None = None,
    roots: ImageRoots | None = None,
) -> Any:
    """The image (or clip) a URI names: a local path, a ``data:`` URI, or a URL when allowed.

    Args:
        uri: The reference.
        allow_remote: Whether http(s) URLs are fetched (through the guarded fetcher).
        policy: Limits of that fetch.
        roots: For a reference found in a document (its metadata, a node's ``image_path``): a
            local file is read only under these roots, and every local failure gets the same
            message. ``None`` for a path the caller passed on purpose: read wherever it is.

    Raises:
        RemoteInputError: A URL while remote fetching is off (``BlockedURLError`` and
            ``FetchError`` when it is on and the fetch is refused or fails).
        UnsupportedInputError: Anything that is not an image file, clip or image URI.
        InputTooLargeError, ImageDecodeError: A ``data:`` URI that is too big or corrupt.
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
    if is_data_uri(text):
        return decode_data_uri(text)
    if roots is not None:
        visual = _local_visual(text, roots.resolve)
        if visual is None:
            raise UnsupportedInputError(
                f"{UNUSABLE_VISUAL}.",
                stage="open",
                hint="Pass image_roots=[...] to allow a folder.",
            )
        return visual
    visual = _local_visual(text, _any_regular_file)
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


# -- reranking documents whose visual cannot be used ----------------------------------------------


def warn_unusable(index: int) -> None:
    """Warn that document ``index`` is scored on its text; the same words for every cause."""
    warnings.warn(
        f"document {index}: {UNUSABLE_VISUAL}; it is scored on its text.",
        UserWarning,
        stacklevel=3,
    )


def score_with_text_fallback(
    engine: Any,
    query: Any,
    documents: Sequence[Any],
    texts: Sequence[str],
    **options: Any,
) -> list[float]:
    """``engine.score(query, documents)``, where a document whose visual fails is scored on text.

    A document the engine cannot use (an image file swapped or corrupted after it was found,
    a video without frames) gets ``texts[i]`` instead and a warning naming its index; the
    pairs are scored again. Errors about the query, or about a text, are raised as they are.
    """
    inputs = list(documents)
    while True:
        try:
            scores: list[float] = engine.score(query, inputs, **options)
            return scores
        except InputError as err:
            index = _visual_that_failed(err, inputs)
            if index is None:
                raise
            warn_unusable(index)
            inputs[index] = texts[index]


async def ascore_with_text_fallback(
    engine: Any,
    query: Any,
    documents: Sequence[Any],
    texts: Sequence[str],
    **options: Any,
) -> list[float]:
    """:func:`score_with_text_fallback` awaiting ``engine.ascore`` (a served model's)."""
    inputs = list(documents)
    while True:
        try:
            scores: list[float] = await engine.ascore(query, inputs, **options)
            return scores
        except InputError as err:
            index = _visual_that_failed(err, inputs)
            if index is None:
                raise
            warn_unusable(index)
            inputs[index] = texts[index]


def _visual_that_failed(err: InputError, inputs: Sequence[Any]) -> int | None:
    """The document whose visual ``err`` is about (to score on its text), or ``None``."""
    index = err.item_index
    if index is None or not 0 <= index < len(inputs) or isinstance(inputs[index], str):
        return None
    return index
