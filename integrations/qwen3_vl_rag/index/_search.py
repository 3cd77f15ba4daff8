"""Searching an index: embed the query, recall by vector similarity, rerank, make thumbnails.

To rerank, each recalled item is read again from its source file (a page rendered again, a clip
cut again), since the reranker reads the pixels, not the vectors. Files are reopened only while
they are still what was indexed (see :mod:`qwen3_vl_rag.index._reopen`): inside the indexed
folders, regular files, with the recorded content hash; and they are decoded in worker processes
under the index's time and memory limits. An item whose file fails that check is *stale*: it is
not read, keeps its vector score, goes after the reranked items (ordered by vector score, as
items without a rerank score always are), and its result says why (:attr:`SearchResult.stale`),
with no thumbnail. An item whose file is verified but cannot be decoded is ordered the same way
and says why in its metadata (``rerank_skipped``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qwen3_vl_rag.errors import ConfigurationError, InputError
from qwen3_vl_rag.index._manifest import Manifest
from qwen3_vl_rag.index._reopen import Reopener, StaleSourceError
from qwen3_vl_rag.index._results import SearchResult
from qwen3_vl_rag.index._store import ChromaStore, Hit
from qwen3_vl_rag.inputs import MultimodalInput
from qwen3_vl_rag.media.loaders import MediaOptions

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from qwen3_vl_rag.engine import Qwen3VLEmbedder, Qwen3VLReranker
    from qwen3_vl_rag.media.isolation import WorkerPool

__all__ = ["SearchSource", "search"]

logger = logging.getLogger(__name__)

THUMBNAIL_DIR = "thumbnails"
_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class SearchSource:
    """What searching uses of an open index: its vectors, its record of files, its models.

    Attributes:
        directory: The index directory (thumbnails are kept in it).
        manifest: What each file was when indexed (to reopen only those).
        store: The vectors recalled.
        embedder: Embeds the query.
        reranker: Reranks the recalled items (``None``: the index has none).
        dimension: Matryoshka dimension stored.
        media_options: How files are decoded again (the index's budgets).
        pool: The worker processes files are decoded in (started on first call).
        sources_recorded: Whether ``manifest`` records the sources (``False``: a reader of a
            server store elsewhere, which checks files against the hits' own metadata).
    """

    directory: Path
    manifest: Manifest
    store: ChromaStore
    embedder: Qwen3VLEmbedder
    reranker: Qwen3VLReranker | None
    dimension: int
    media_options: MediaOptions
    pool: Callable[[], WorkerPool]
    sources_recorded: bool = True


def search(
    index: SearchSource,
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
    vector = index.embedder.embed_queries([query], dim=index.dimension)[0]
    if not np.isfinite(vector).all() or not np.any(vector):
        raise ConfigurationError("the query embedded to a vector that is not finite or is zero.")
    hits = index.store.query(vector, k, filters)
    with Reopener(
        index.manifest, index.media_options, index.pool, sources_recorded=index.sources_recorded
    ) as reopener:
        scores: list[float | None] = [None] * len(hits)
        if rerank and hits:
            if index.reranker is None:
                raise ConfigurationError(
                    "reranking needs a reranker: open the index with reranker=Qwen3VLReranker(...) "
                    "or search with rerank=False."
                )
            scores = _rerank(index, reopener, query, hits)
        # reranked hits first, by the reranker's score; then the others (stale ones included)
        # by their vector score
        order = sorted(
            range(len(hits)),
            key=lambda i: (scores[i] is None, -(scores[i] or 0.0), -hits[i].similarity),
        )
        results = []
        for rank, position in enumerate(order[:top_n], start=1):
            hit = hits[position]
            thumbnail, stale = _thumbnail(index, reopener, hit), reopener.stale_reason(hit.metadata)
            if stale and not index.store.keeps_thumbnails:
                thumbnail = None  # the file is not what was indexed, and nothing else shows it
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
                    thumbnail=thumbnail,
                    metadata=hit.metadata,
                    stale=stale,
                )
            )
    return results


def _rerank(
    index: SearchSource, reopener: Reopener, query: MultimodalInput, hits: Sequence[Hit]
) -> list[float | None]:
    """Reranker scores of the hits whose items can be reopened; ``None`` for the others."""
    documents: dict[int, MultimodalInput] = {}
    for position, hit in enumerate(hits):
        try:
            documents[position] = reopener.rerank_input(hit.metadata)
        except StaleSourceError:
            continue  # reported as the result's `stale`
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


def _thumbnail(index: SearchSource, reopener: Reopener, hit: Hit) -> Path | None:
    """A small JPEG of the item, made once and kept under ``<index>/thumbnails``.

    Only a regular file directly inside a real (not linked) ``thumbnails`` folder is used or
    written: an index received from elsewhere cannot point either at another place.
    """
    if not _ID.fullmatch(hit.id):
        return None  # ids are hex: anything else could smuggle a path in
    folder = index.directory / THUMBNAIL_DIR
    target = folder / f"{hit.id}.jpg"
    if _is_plain(folder, stat.S_ISDIR) and _is_plain(target, stat.S_ISREG):
        return target
    try:
        jpeg = reopener.thumbnail(hit.metadata)
    except StaleSourceError:
        return _kept_thumbnail(index, hit)
    except (InputError, OSError, KeyError, ValueError) as exc:
        logger.info("no thumbnail for %s: %s", hit.id, exc)
        return _kept_thumbnail(index, hit)
    return _cache(folder, hit.id, jpeg)


def _kept_thumbnail(index: SearchSource, hit: Hit) -> Path | None:
    """The thumbnail the store keeps for the hit (a server store), cached under ``thumbnails``.

    It was made from the indexed content (an item id hashes it), so it shows the item even
    when its file changed or is not on this machine.
    """
    if not index.store.keeps_thumbnails or not _ID.fullmatch(hit.id):
        return None
    folder = index.directory / THUMBNAIL_DIR
    target = folder / f"{hit.id}.jpg"
    if _is_plain(folder, stat.S_ISDIR) and _is_plain(target, stat.S_ISREG):
        return target
    jpeg = index.store.thumbnail(hit.id)
    return None if jpeg is None else _cache(folder, hit.id, jpeg)


def _cache(folder: Path, item: str, jpeg: bytes) -> Path | None:
    """Write ``jpeg`` as ``folder/<item>.jpg`` (``None`` where it cannot be written)."""
    target = folder / f"{item}.jpg"
    partial = folder / f"{item}.{os.getpid()}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not _is_plain(folder, stat.S_ISDIR):
            return None
        partial.unlink(missing_ok=True)
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with open(descriptor, "wb") as handle:
            handle.write(jpeg)
        os.replace(partial, target)  # replaces a link itself, never what it points at
    except OSError as exc:  # a read-only index, a full disk: the result stands without it
        logger.info("no thumbnail for %s: %s", item, exc)
        with contextlib.suppress(OSError):
            partial.unlink()
        return None
    return target


def _is_plain(path: Path, kind: Callable[[int], bool]) -> bool:
    """``path`` exists, is not a symbolic link, and is of ``kind`` (``stat.S_ISDIR``...)."""
    try:
        return kind(path.lstat().st_mode)
    except OSError:
        return False
