"""The on-disk multimodal index: Chroma for vectors, a SQLite manifest as the source of truth.

Framework-free. Importing it loads neither torch nor Chroma; they load when an index opens.

Example:
    >>> from qwen3_vl_rag import Qwen3VLEmbedder, Qwen3VLReranker
    >>> from qwen3_vl_rag.index import MultimodalIndex
    >>> embedder = Qwen3VLEmbedder.from_pretrained("Qwen/Qwen3-VL-Embedding-2B")
    >>> reranker = Qwen3VLReranker.from_pretrained("Qwen/Qwen3-VL-Reranker-2B")
    >>> with MultimodalIndex("my-index", embedder, reranker) as index:
    ...     report = index.index(["documents/"])
    ...     hits = index.search("the moment two people stand at the ATM", top_n=3)
    >>> [hit.rank for hit in hits]
    [1, 2, 3]
"""

from __future__ import annotations

from qwen3_vl_rag.index._ingest import FileOutcome, IndexReport
from qwen3_vl_rag.index._multimodal import (
    DEFAULT_INDEX_DIR,
    IndexStatus,
    MultimodalIndex,
    PruneReport,
)
from qwen3_vl_rag.index._results import SearchResult

__all__ = [
    "DEFAULT_INDEX_DIR",
    "FileOutcome",
    "IndexReport",
    "IndexStatus",
    "MultimodalIndex",
    "PruneReport",
    "SearchResult",
]
