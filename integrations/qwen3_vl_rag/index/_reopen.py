"""Reopening indexed files during a search: only what was indexed, decoded the way indexing decodes.

Search reads source files again to rerank (the reranker reads pixels, not vectors) and to make
thumbnails. The path to open comes from the index's metadata, and files change after indexing,
so a file is reopened only while it is still exactly what was indexed:

* after following links, its path is inside a folder (or is a file) the index was built from;
* it is a regular file: it is opened non-blocking and checked before any byte is read, so a FIFO,
  device or socket put in its place is refused instead of blocking the search;
* its bytes hash to the SHA-256 recorded when it was indexed (and the manifest still records the
  item's file with that content).

The bytes hashed are the bytes decoded: while hashing, the file is copied into a private
temporary folder, and only that copy is handed to the decoders, which run in worker processes
under the index's time and memory limits (:class:`~qwen3_vl_rag.media.isolation.WorkerPool`,
as for indexing). A file swapped after the check can no longer reach a decoder.

Anything else is *stale*: the search keeps the item's vector score, says why, and reads nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qwen3_vl_rag.checked_files import OpenedFile, open_checked
from qwen3_vl_rag.errors import InputError, InputTooLargeError
from qwen3_vl_rag.index._manifest import SourceRow
from qwen3_vl_rag.index._paths import key_path
from qwen3_vl_rag.inputs import LazyImage, MultimodalInput, Video
from qwen3_vl_rag.media.budget import MediaBudget
from qwen3_vl_rag.media.isolation import WorkerPool

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from qwen3_vl_rag.index._manifest import Manifest
    from qwen3_vl_rag.media.loaders import MediaOptions

__all__ = [
    "ROOTS_KEY",
    "Reopener",
    "StaleSourceError",
    "first_frame",
    "jpeg_thumbnail",
    "record_roots",
    "source_path",
]

#: Manifest setting: the real paths of the folders and files the index was built from.
ROOTS_KEY = "roots"

CHANGED = "file changed since indexing"
_THUMBNAIL_SIDE = 320


class StaleSourceError(Exception):
    """An item's file is not what was indexed (or cannot be shown to be); it is not read."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def record_roots(manifest: Manifest, paths: Iterable[str | os.PathLike[str]]) -> None:
    """Add the real paths of indexing roots to the manifest (search reopens files only there)."""
    known = [str(root) for root in manifest.get_meta(ROOTS_KEY) or []]
    added = False
    for path in paths:
        real = os.path.realpath(os.path.abspath(path))
        if os.path.exists(real) and real not in known:
            known.append(real)
            added = True
    if added:
        manifest.set_meta({ROOTS_KEY: known})


def source_path(label: str) -> str:
    """The file system path of a source, with its exact bytes, from its stored ``source`` key."""
    return os.fspath(key_path(label))


def _inside(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([root, path]) == root
    except ValueError:  # one absolute, one relative; or different drives
        return False


class Reopener:
    """Verified reopening of indexed files for one search; :meth:`close` removes the copies.

    Args:
        manifest: The index's manifest (what each file was when indexed, and its folders).
        options: How the index decodes files (budget, password, frame rate).
        pool: The index's decoding worker processes (started on first call, kept after).
        sources_recorded: Whether the manifest records the sources. A reader of a server
            store elsewhere has only the store: a file is then expected to have the content
            hash the item's metadata records (and is still hashed before it is read).
    """

    def __init__(
        self,
        manifest: Manifest,
        options: MediaOptions,
        pool: Callable[[], WorkerPool],
        *,
        sources_recorded: bool = True,
    ) -> None:
        self._manifest = manifest
        self._sources_recorded = sources_recorded
        self.budget: MediaBudget = options.budget
        self._password = options.password
        self._fps = options.fps or 1.0
        self._pool = pool
        roots = self._manifest.get_meta(ROOTS_KEY)
        self._roots = [str(root) for root in roots] if isinstance(roots, list) else None
        self._verdicts: dict[tuple[str, str], str | None] = {}
        self._copies: dict[tuple[str, str], Path] = {}
        self._folder: Path | None = None

    # -- verification ----------------------------------------------------------------------------

    def stale_reason(self, meta: Mapping[str, Any]) -> str | None:
        """Why the item's file cannot be reopened, or ``None`` when it is still what was indexed.

        Decodes nothing. Like ``index``, a regular file whose size and modification time are
        still the recorded ones is taken as unchanged without hashing it (this only labels a
        result; whatever is read is hashed, see :meth:`copy`).
        """
        try:
            key, row = self._expected(meta)
        except StaleSourceError as err:
            return err.reason
        if key not in self._verdicts:
            try:
                self._read(key, row, copy_to=None)
                self._verdicts[key] = None
            except StaleSourceError as err:
                self._verdicts[key] = err.reason
        return self._verdicts[key]

    def copy(self, meta: Mapping[str, Any]) -> Path:
        """A private copy of the item's file, made from the very bytes that were verified.

        Raises:
            StaleSourceError: The file is not what was indexed; nothing of it is kept.
        """
        key, row = self._expected(meta)
        if key in self._copies:
            return self._copies[key]
        reason = self._verdicts.get(key)
        if reason is not None:
            raise StaleSourceError(reason)
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="qwen3vl-search-"))
        suffix = Path(source_path(key[0])).suffix
        suffix = suffix if suffix[1:].isascii() and suffix[1:].isalnum() else ""
        target = self._folder / f"{len(self._copies)}{suffix[:10]}"
        try:
            self._read(key, row, copy_to=target)
        except BaseException as exc:
            target.unlink(missing_ok=True)  # nothing of a refused (or half-copied) file is kept
            if isinstance(exc, StaleSourceError):
                self._verdicts[key] = exc.reason
            raise
        self._verdicts[key] = None
        self._copies[key] = target
        return target

    def _expected(self, meta: Mapping[str, Any]) -> tuple[tuple[str, str], SourceRow]:
        """``(label, digest)`` of the item's file, and the manifest's record of that file."""
        label, digest = meta.get("source"), meta.get("content_hash")
        if not isinstance(label, str) or not isinstance(digest, str) or not label:
            raise StaleSourceError("the index records no file and content hash for this item")
        if not self._sources_recorded:  # size and time unknown: always hashed
            return (label, digest), SourceRow(label, digest, None, None, "indexed", 0, None)
        row = self._manifest.source(label)
        if row is None or row.content_hash != digest:
            raise StaleSourceError("the index no longer records this file with this content")
        return (label, digest), row

    def _read(self, key: tuple[str, str], row: SourceRow, copy_to: Path | None) -> None:
        """Check the file and hash it, copying it to ``copy_to`` as it is read.

        Without ``copy_to``, a file whose size and modification time are the recorded ones is
        not hashed.
        """
        label, digest = key
        if self._roots is None:
            raise StaleSourceError(
                "the index does not record the folders it was built from: run `qwen3-vl-rag "
                "index` on them again to record them"
            )
        real = os.path.realpath(source_path(label))
        if not any(_inside(real, root) for root in self._roots):
            raise StaleSourceError("the file is outside the folders the index was built from")
        try:
            # non-blocking: a FIFO put in the file's place opens at once, and is refused
            opened = open_checked(
                real, max_bytes=self.budget.max_bytes, label=label, follow_symlinks=False
            )
        except InputTooLargeError as exc:
            raise StaleSourceError(CHANGED) from exc
        except InputError as exc:
            raise StaleSourceError(_refusal(exc)) from exc
        with opened:
            size = row.size
            if size is not None and opened.size != size:
                raise StaleSourceError(CHANGED)
            if copy_to is None and opened.identity.mtime_ns == row.mtime_ns:
                return
            hashed = _hash_and_copy(opened, copy_to)
        if hashed != digest:
            raise StaleSourceError(CHANGED)

    # -- decoding, in workers --------------------------------------------------------------------

    @property
    def pool(self) -> WorkerPool:
        """The worker processes that decode the copies: the index's, kept across searches."""
        return self._pool()

    def rerank_input(self, meta: Mapping[str, Any]) -> MultimodalInput:
        """The item as the reranker reads it: its page, image or clip, from the verified copy.

        Raises:
            StaleSourceError: The file is not what was indexed.
            InputError: The copy cannot be decoded (in a worker, under the budget).
        """
        from qwen3_vl_rag.media.pdf import load_pdf
        from qwen3_vl_rag.media.video import IsolatedReader

        path = self.copy(meta)
        label = str(meta["source"])
        kind = meta.get("kind")
        budget = self.budget
        if kind == "page":
            document = load_pdf(
                path,
                pages=[int(meta["page"])],
                password=self._password,
                budget=budget,
                runner=self.pool,
            )
            (page,) = list(document)
            return page.to_input(with_text=False)
        if kind == "image":
            width, height = self.pool.run(
                _image_size, str(path), budget, label, label=label, stage="open"
            )
            pool = self.pool
            image = LazyImage(
                width,
                height,
                lambda: pool.run(
                    _decode_image, str(path), budget, label, label=label, stage="decode"
                ),
                label,
            )
            return MultimodalInput(images=(image,))
        if kind in ("video", "clip"):
            start, end = meta.get("start_seconds"), meta.get("end_seconds")
            video = Video(
                path,
                fps=float(meta.get("sample_fps") or self._fps),
                max_frames=budget.max_frames,
                start=float(start) if start is not None else None,
                end=float(end) if end is not None else None,
                reader=IsolatedReader(self.pool, budget.timeout),
            )
            return MultimodalInput(video=video)
        raise ValueError(f"unknown item kind {kind!r}")

    def thumbnail(self, meta: Mapping[str, Any]) -> bytes:
        """A small JPEG of the item, rendered in a worker from the verified copy.

        Raises:
            StaleSourceError: The file is not what was indexed.
            InputError: The copy cannot be decoded (in a worker, under the budget).
        """
        path = self.copy(meta)
        label = str(meta["source"])
        kind = str(meta.get("kind"))
        where = int(meta["page"]) if kind == "page" else first_frame(meta)
        jpeg: bytes = self.pool.run(
            _thumbnail_jpeg,
            kind,
            str(path),
            where,
            self._password,
            self.budget,
            label,
            label=label,
            stage="thumbnail",
        )
        return jpeg

    def close(self) -> None:
        """Delete the copies (the workers are the index's, and stay)."""
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
        self._copies.clear()

    def __enter__(self) -> Reopener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _refusal(err: InputError) -> str:
    """Why a file :func:`open_checked` refused is stale, in the words search results use."""
    cause = err.__cause__
    if isinstance(cause, FileNotFoundError):
        return "file missing"
    if isinstance(cause, OSError):
        return f"file cannot be opened ({cause.strerror or cause})"
    return "not a regular file any more (it is not read)"


def _hash_and_copy(opened: OpenedFile, copy_to: Path | None) -> str:
    """SHA-256 of the file's bytes, written to ``copy_to`` (if given) as they are read."""
    if copy_to is None:
        return opened.sha256()
    digest = hashlib.sha256()
    fd = os.open(copy_to, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "wb") as out:
        for chunk in opened.chunks():
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


# -- steps run in a decoding worker (module-level: sent by reference) ------------------------------


def _image_size(path: str, budget: MediaBudget, label: str) -> tuple[int, int]:
    from qwen3_vl_rag.media.images import load_image

    item = load_image(Path(path), budget=budget, source=label)
    assert item.image is not None
    return item.image.size


def _decode_image(path: str, budget: MediaBudget, label: str) -> Any:
    from qwen3_vl_rag.media.images import load_image

    return load_image(Path(path), budget=budget, source=label).load_image()


def _thumbnail_jpeg(
    kind: str, path: str, where: int, password: str | None, budget: MediaBudget, label: str
) -> bytes:
    """A JPEG of at most 320 px a side: the page, the image, or the video frame ``where``."""
    from PIL import Image

    if kind == "page":
        from qwen3_vl_rag.media.pdf import load_pdf

        (page,) = list(load_pdf(path, pages=[int(where)], password=password, budget=budget))
        image = page.load_image()
    elif kind == "image":
        image = _decode_image(path, budget, label)
    elif kind in ("video", "clip"):
        from qwen3_vl_rag.video_frames import read_frames

        image = Image.fromarray(read_frames(Path(path), [int(where)], label)[0])
    else:
        raise ValueError(f"unknown item kind {kind!r}")
    return jpeg_thumbnail(image)


def first_frame(meta: Mapping[str, Any]) -> int:
    """The frame a video's or clip's thumbnail shows: the one at its start."""
    fps = float(meta.get("native_fps", 0) or 0)
    return int(float(meta.get("start_seconds", 0.0) or 0.0) * fps) if fps else 0


def jpeg_thumbnail(image: PILImage.Image) -> bytes:
    """``image`` as a JPEG of at most 320 px a side."""
    import io

    image = image.copy()
    image.thumbnail((_THUMBNAIL_SIDE, _THUMBNAIL_SIDE))
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=85)
    return buffer.getvalue()
