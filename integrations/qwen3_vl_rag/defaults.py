"""The checkpoints used when none is named, and where a server's API key is read from.

Used by the CLI and by every framework adapter. A leaf module (it imports nothing), so each of
them names the same models and the same variable.

Example:
    >>> from qwen3_vl_rag.defaults import DEFAULT_EMBEDDING_MODEL, DEFAULT_RERANKER_MODEL
    >>> DEFAULT_EMBEDDING_MODEL, DEFAULT_RERANKER_MODEL
    ('Qwen/Qwen3-VL-Embedding-2B', 'Qwen/Qwen3-VL-Reranker-2B')
"""

from __future__ import annotations

__all__ = ["API_KEY_ENV", "DEFAULT_EMBEDDING_MODEL", "DEFAULT_RERANKER_MODEL"]

#: The embedding checkpoint on the Hugging Face Hub (the 8B is ``Qwen/Qwen3-VL-Embedding-8B``).
DEFAULT_EMBEDDING_MODEL = "Qwen/Qwen3-VL-Embedding-2B"

#: The reranking checkpoint on the Hugging Face Hub (the 8B is ``Qwen/Qwen3-VL-Reranker-8B``).
DEFAULT_RERANKER_MODEL = "Qwen/Qwen3-VL-Reranker-2B"

#: The environment variable that holds a vLLM server's API key (its ``--api-key``) when none is
#: given: read by the command (never a flag: it would show in ``ps`` and the shell's history)
#: and by adapters given a ``base_url`` without an ``api_key``.
API_KEY_ENV = "QWEN3_VL_RAG_API_KEY"
