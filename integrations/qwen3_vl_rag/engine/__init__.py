"""The Qwen3-VL engine: the only part of the package that imports torch and transformers.

Its modules are private (``_embedder``, ``_vision``, …); this package is its surface, and the
user-facing classes are also exported from :mod:`qwen3_vl_rag`. Names load on first use, so
importing the package loads no torch.

Example:
    >>> from qwen3_vl_rag.engine import Qwen3VLEmbedder, shared_embedder
    >>> embedder = shared_embedder("Qwen/Qwen3-VL-Embedding-2B", device="cpu")
    >>> isinstance(embedder, Qwen3VLEmbedder)
    True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qwen3_vl_rag.engine._embedder import Qwen3VLEmbedder
    from qwen3_vl_rag.engine._hub import HubOptions
    from qwen3_vl_rag.engine._loading import PretrainedOptions
    from qwen3_vl_rag.engine._prompts import (
        DEFAULT_DOCUMENT_INSTRUCTION,
        DEFAULT_QUERY_INSTRUCTION,
        DEFAULT_RERANK_INSTRUCTION,
    )
    from qwen3_vl_rag.engine._quantize import (
        Precision,
        QuantizationCalibration,
        quantize_embeddings,
        truncate_embeddings,
    )
    from qwen3_vl_rag.engine._remote import ServerOptions
    from qwen3_vl_rag.engine._reranker import Qwen3VLReranker, RerankResult
    from qwen3_vl_rag.engine._shared import (
        aembed_in_chunks,
        awaitable,
        embed_in_chunks,
        loading_options,
        model_lock,
        serialized_calls,
        server_embedder,
        server_reranker,
        shared_embedder,
        shared_reranker,
    )
    from qwen3_vl_rag.engine._vision import VisionSettings
    from qwen3_vl_rag.engine._vision_cache import VisionCache, VisionCacheStats

_LAZY = {
    "Qwen3VLEmbedder": "_embedder",
    "Qwen3VLReranker": "_reranker",
    "RerankResult": "_reranker",
    "PretrainedOptions": "_loading",
    "HubOptions": "_hub",
    "VisionSettings": "_vision",
    "VisionCache": "_vision_cache",
    "VisionCacheStats": "_vision_cache",
    "ServerOptions": "_remote",
    "Precision": "_quantize",
    "QuantizationCalibration": "_quantize",
    "quantize_embeddings": "_quantize",
    "truncate_embeddings": "_quantize",
    "DEFAULT_QUERY_INSTRUCTION": "_prompts",
    "DEFAULT_DOCUMENT_INSTRUCTION": "_prompts",
    "DEFAULT_RERANK_INSTRUCTION": "_prompts",
    # one loaded model per process and settings, shared by the adapters (and their helpers)
    "shared_embedder": "_shared",
    "shared_reranker": "_shared",
    "loading_options": "_shared",
    "model_lock": "_shared",
    "embed_in_chunks": "_shared",
    "aembed_in_chunks": "_shared",
    "awaitable": "_shared",
    "serialized_calls": "_shared",
    "server_embedder": "_shared",
    "server_reranker": "_shared",
}

__all__ = [
    "DEFAULT_DOCUMENT_INSTRUCTION",
    "DEFAULT_QUERY_INSTRUCTION",
    "DEFAULT_RERANK_INSTRUCTION",
    "HubOptions",
    "Precision",
    "PretrainedOptions",
    "QuantizationCalibration",
    "Qwen3VLEmbedder",
    "Qwen3VLReranker",
    "RerankResult",
    "ServerOptions",
    "VisionCache",
    "VisionCacheStats",
    "VisionSettings",
    "aembed_in_chunks",
    "awaitable",
    "embed_in_chunks",
    "loading_options",
    "model_lock",
    "quantize_embeddings",
    "serialized_calls",
    "server_embedder",
    "server_reranker",
    "shared_embedder",
    "shared_reranker",
    "truncate_embeddings",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module 'qwen3_vl_rag.engine' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
