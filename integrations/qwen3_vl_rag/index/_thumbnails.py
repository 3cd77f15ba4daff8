"""Thumbnails kept in the store, for readers on machines without the source files.

The writer makes them while indexing, from the items it has just loaded (a page rendered or an
image decoded by the media layer, under its budgets; a video frame read through the item's own
reader, in its worker). A thumbnail that cannot be made is logged and skipped: it never fails
the file, whose vectors are what matters.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from qwen3_vl_rag.index._reopen import first_frame, jpeg_thumbnail
from qwen3_vl_rag.index._store import ChromaStore
from qwen3_vl_rag.media.items import MediaItem

__all__ = ["item_thumbnail", "keep_thumbnails"]

logger = logging.getLogger(__name__)


def item_thumbnail(item: MediaItem) -> bytes:
    """A JPEG of at most 320 px a side of ``item``: its page, its image, or its first frame.

    Example:
        >>> from qwen3_vl_rag.media import load_image
        >>> jpeg = item_thumbnail(load_image("chart.png"))
        >>> jpeg.startswith(bytes([0xFF, 0xD8]))  # a JPEG
        True
    """
    if item.image is not None:
        return jpeg_thumbnail(item.load_image())
    video = item.video
    if video is None or not isinstance(video.source, str | Path):
        raise ValueError(f"a {item.kind} item has nothing to show")
    from PIL import Image

    from qwen3_vl_rag.video_frames import read_frames

    frame = first_frame(item.metadata)
    if video.reader is not None:
        frames = video.reader.read(Path(video.source), [frame], item.source)
    else:
        frames = read_frames(Path(video.source), [frame], item.source)
    return jpeg_thumbnail(Image.fromarray(frames[0]))


def keep_thumbnails(
    store: ChromaStore,
    items: Sequence[tuple[str, MediaItem]],
    ready: Mapping[str, bytes] | None = None,
) -> None:
    """Put the thumbnails of ``(id, item)`` pairs the store does not keep yet.

    Args:
        store: Where they are kept.
        items: The items written.
        ready: Thumbnails already made by id (by the workers of a cluster run, from the page
            they drew): used as they are, the others are made here.
    """
    kept = store.thumbnail_ids([item_id for item_id, _ in items])
    jpegs: dict[str, bytes] = {}
    for item_id, item in items:
        if item_id in kept or item_id in jpegs:
            continue
        if ready and ready.get(item_id):
            jpegs[item_id] = ready[item_id]
            continue
        try:
            jpegs[item_id] = item_thumbnail(item)
        except Exception as exc:  # any decoder failure: the item stays, without a thumbnail
            logger.warning("no thumbnail kept for %r: %s: %s", item, type(exc).__name__, exc)
    if jpegs:
        store.put_thumbnails(jpegs)
