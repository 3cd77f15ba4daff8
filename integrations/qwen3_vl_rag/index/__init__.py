"""The on-disk multimodal index: Chroma for vectors, a SQLite manifest as the source of truth.

Framework-free. Importing it loads neither torch nor Chroma; they load when an index opens.

Example:
    >>> from qwen3_vl_rag.index import MultimodalIndex
    >>> with MultimodalIndex("my-index", embedder, reranker) as index:
    ...     index.index(["documents/"])
    ...     hits = index.search("the moment two people stand at the ATM")
"""

from __future__ import annotations

from qwen3_vl_rag.index.ingest import FileOutcome, IndexReport
from qwen3_vl_rag.index.multimodal import (
    DEFAULT_INDEX_DIR,
    IndexStatus,
    MultimodalIndex,
    PruneReport,
)
from qwen3_vl_rag.index.results import SearchResult

__all__ = [
    "DEFAULT_INDEX_DIR",
    "FileOutcome",
    "IndexReport",
    "IndexStatus",
    "MultimodalIndex",
    "PruneReport",
    "SearchResult",
]
