"""What a search returns: one ranked hit, with the scores of both stages and where it is."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from qwen3_vl_rag.index._paths import key_path
from qwen3_vl_rag.media.items import MetadataValue

__all__ = ["SearchResult"]


@dataclass(frozen=True)
class SearchResult:
    """One hit of :meth:`MultimodalIndex.search`, best first.

    Attributes:
        rank: 1-based position in the final ranking.
        id: The item's stable id in the index.
        kind: ``"page"``, ``"image"``, ``"video"`` or ``"clip"``.
        source: The file the item came from.
        locator: Where in the file: ``"page 3"``, ``"0:10-0:20"``, or ``""`` for a whole file.
        vector_score: Cosine similarity of the query and the item (recall stage), in [-1, 1].
        rerank_score: The reranker's relevance in [0, 1], or ``None`` without reranking.
        text: The page's text (PDF pages), for snippets and citations; ``None`` otherwise.
        thumbnail: A small JPEG of the item (a page, an image, a clip's first sampled frame), or
            ``None`` when the source could not be read.
        metadata: The item's stored metadata (``page``, ``page_label``, ``start_seconds``...).
        stale: Why the item's file was not read, when it is no longer what was indexed (e.g.
            ``"file changed since indexing"``, ``"file missing"``, ``"not a regular file any
            more"``, ``"the file is outside the folders the index was built from"``); ``None``
            when the file was verified. A stale item keeps its vector score but has no rerank
            score and no thumbnail.

    Example:
        >>> from qwen3_vl_rag import MultimodalIndex, Qwen3VLEmbedder
        >>> embedder = Qwen3VLEmbedder.from_pretrained("Qwen/Qwen3-VL-Embedding-2B")
        >>> with MultimodalIndex("my-index", embedder) as index:
        ...     report = index.index(["chart.png", "photo.png"])
        ...     hits = index.search("a bar chart", top_n=2, rerank=False)
        >>> [(hit.rank, hit.kind, hit.locator) for hit in hits]
        [(1, 'image', ''), (2, 'image', '')]
        >>> sorted(hit.path.name for hit in hits), hits[0].rerank_score
        (['chart.png', 'photo.png'], None)
    """

    rank: int
    id: str
    kind: str
    source: str
    locator: str
    vector_score: float
    rerank_score: float | None = None
    text: str | None = None
    thumbnail: Path | None = None
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)
    stale: str | None = None

    @property
    def score(self) -> float:
        """The final score: the reranker's when there is one, else the vector similarity."""
        return self.rerank_score if self.rerank_score is not None else self.vector_score

    @property
    def path(self) -> Path:
        r"""The source file's path, with its exact bytes.

        ``source`` is text: a name that is not UTF-8 shows its bytes there as ``\xNN``.
        """
        return key_path(self.source)
