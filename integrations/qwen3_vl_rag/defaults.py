"""The checkpoints used when none is named: by the CLI and by every framework adapter.

A leaf module (it imports nothing), so each of them names the same models.

Example:
    >>> from qwen3_vl_rag.defaults import DEFAULT_EMBEDDING_MODEL, DEFAULT_RERANKER_MODEL
    >>> DEFAULT_EMBEDDING_MODEL, DEFAULT_RERANKER_MODEL
    ('Qwen/Qwen3-VL-Embedding-2B', 'Qwen/Qwen3-VL-Reranker-2B')
"""

from __future__ import annotations

__all__ = ["DEFAULT_EMBEDDING_MODEL", "DEFAULT_RERANKER_MODEL"]

#: The embedding checkpoint on the Hugging Face Hub (the 8B is ``Qwen/Qwen3-VL-Embedding-8B``).
DEFAULT_EMBEDDING_MODEL = "Qwen/Qwen3-VL-Embedding-2B"

#: The reranking checkpoint on the Hugging Face Hub (the 8B is ``Qwen/Qwen3-VL-Reranker-8B``).
DEFAULT_RERANKER_MODEL = "Qwen/Qwen3-VL-Reranker-2B"
