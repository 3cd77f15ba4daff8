"""Searching an index: embed the query, recall by vector similarity, rerank, make thumbnails.

To rerank, each recalled item is rebuilt from its source file (a page rendered again, a clip
cut again), since the reranker reads the pixels, not the vectors. An item whose file is gone or
unreadable keeps its vector score, goes after the reranked ones, and says why in its metadata.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qwen3_vl_rag.errors import ConfigurationError, InputError
from qwen3_vl_rag.index.paths import key_path
from qwen3_vl_rag.index.results import SearchResult
from qwen3_vl_rag.index.store import Hit
from qwen3_vl_rag.inputs import MultimodalInput, Video
from qwen3_vl_rag.media.items import MediaItem

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from qwen3_vl_rag.index.multimodal import MultimodalIndex

__all__ = ["search"]

logger = logging.getLogger(__name__)

THUMBNAIL_SIDE = 320
THUMBNAIL_DIR = "thumbnails"


def search(
    index: MultimodalIndex,
    query_text: str | None,
    query_image: str | os.PathLike[str] | PILImage.Image | None,
    *,
    k: int,
    rerank: bool,
    top_n: int,
    filters: Mapping[str, Any] | None,
) -> list[SearchResult]:
    """See :meth:`MultimodalIndex.search`."""
    if not (query_text and query_text.strip()) and query_image is None:
        raise ConfigurationError("give a query text, a query image, or both.")
    if k < 1 or top_n < 1:
        raise ConfigurationError(f"k and top_n must be at least 1, got k={k}, top_n={top_n}.")
    image = Path(query_image) if isinstance(query_image, str | os.PathLike) else query_image
    query = MultimodalInput(text=query_text or None, images=(image,) if image is not None else ())
    vector = index.require_embedder().embed_queries([query], dim=index.dimension)[0]
    if not np.isfinite(vector).all() or not np.any(vector):
        raise ConfigurationError("the query embedded to a vector that is not finite or is zero.")
    hits = index.store.query(vector, k, filters)
    scores: list[float | None] = [None] * len(hits)
    if rerank and hits:
        if index.reranker is None:
            raise ConfigurationError(
                "reranking needs a reranker: open the index with reranker=Qwen3VLReranker(...) "
                "or search with rerank=False."
            )
        scores = _rerank(index, query, hits)
    order = sorted(
        range(len(hits)),
        key=lambda i: (scores[i] is None, -(scores[i] or 0.0), -hits[i].similarity),
    )
    results = []
    for rank, position in enumerate(order[:top_n], start=1):
        hit = hits[position]
        results.append(
            SearchResult(
                rank=rank,
                id=hit.id,
                kind=str(hit.metadata.get("kind", "")),
                source=str(hit.metadata.get("source", "")),
                locator=str(hit.metadata.get("locator", "")),
                vector_score=hit.similarity,
                rerank_score=scores[position],
                text=hit.document,
                thumbnail=_thumbnail(index, hit),
                metadata=hit.metadata,
            )
        )
    return results


def _rerank(
    index: MultimodalIndex, query: MultimodalInput, hits: Sequence[Hit]
) -> list[float | None]:
    """Reranker scores of the hits whose items can be rebuilt; ``None`` for the others."""
    documents: dict[int, Any] = {}
    for position, hit in enumerate(hits):
        try:
            documents[position] = _rebuild(index, hit).to_input(with_text=False)
        except (InputError, OSError, KeyError, ValueError) as exc:
            hit.metadata["rerank_skipped"] = f"{type(exc).__name__}: {exc}"
    assert index.reranker is not None
    scores: list[float | None] = [None] * len(hits)
    while documents:
        positions = list(documents)
        try:
            values = index.reranker.score(query, [documents[p] for p in positions])
        except InputError as err:
            if err.item_index is None:
                raise
            bad = positions[err.item_index]
            hits[bad].metadata["rerank_skipped"] = f"{type(err).__name__}: {err.reason}"
            del documents[bad]
            continue
        for position, value in zip(positions, values, strict=True):
            scores[position] = float(value)
        break
    return scores


def _rebuild(index: MultimodalIndex, hit: Hit) -> MediaItem:
    """The recalled item, read again from its source file."""
    from qwen3_vl_rag.media.images import load_image
    from qwen3_vl_rag.media.pdf import load_pdf

    meta = hit.metadata
    path = key_path(str(meta["source"]))
    options = index.load_options
    kind = meta.get("kind")
    if kind == "page":
        (page,) = list(
            load_pdf(
                path, pages=[int(meta["page"])], password=options.password, budget=options.budget
            )
        )
        return page
    if kind == "image":
        return load_image(path, budget=options.budget, frames=options.frames)
    if kind in ("video", "clip"):
        fps = float(meta.get("sample_fps", options.fps or 1.0))
        start = meta.get("start_seconds")
        end = meta.get("end_seconds")
        video = Video(
            path,
            fps=fps,
            max_frames=options.budget.max_frames,
            start=float(start) if start is not None else None,
            end=float(end) if end is not None else None,
        )
        return MediaItem(kind, str(path), meta, video=video)
    raise ValueError(f"unknown item kind {kind!r}")


def _thumbnail(index: MultimodalIndex, hit: Hit) -> Path | None:
    """A small JPEG of the item, made once and kept under ``<index>/thumbnails``."""
    folder = index.directory / THUMBNAIL_DIR
    target = folder / f"{hit.id}.jpg"  # ids are hex: no path can be smuggled in
    if target.is_file():
        return target
    try:
        image = _preview(index, hit)
    except (InputError, OSError, KeyError, ValueError) as exc:
        logger.info("no thumbnail for %s: %s", hit.id, exc)
        return None
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        image.convert("RGB").save(partial, "JPEG", quality=85)
        os.replace(partial, target)
    except OSError as exc:  # a read-only index, a full disk: the result stands without it
        logger.info("no thumbnail for %s: %s", hit.id, exc)
        with contextlib.suppress(OSError):
            partial.unlink()
        return None
    return target


def _preview(index: MultimodalIndex, hit: Hit) -> PILImage.Image:
    from PIL import Image

    from qwen3_vl_rag.media.video import read_frames

    meta = hit.metadata
    if meta.get("kind") in ("page", "image"):
        return _rebuild(index, hit).load_image()
    fps = float(meta.get("native_fps", 0) or 0)
    start = float(meta.get("start_seconds", 0.0) or 0.0)
    frame = int(start * fps) if fps else 0
    array = read_frames(key_path(str(meta["source"])), [frame])
    return Image.fromarray(array[0])
