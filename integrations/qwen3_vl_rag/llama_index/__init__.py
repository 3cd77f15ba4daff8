"""LlamaIndex integration: a multimodal embedding, a reranking postprocessor, and readers.

Install with ``pip install "qwen3-vl-rag[llamaindex]"`` (add ``pdf`` for PDF pages). Importing
this module loads no model and does not import torch.

Example:
    >>> from llama_index.core import VectorStoreIndex
    >>> from qwen3_vl_rag.llama_index import PDFPageImageReader, Qwen3VLEmbedding, Qwen3VLRerank
    >>> embed_model = Qwen3VLEmbedding()
    >>> pages = PDFPageImageReader().load_data("report.pdf")
    >>> index = VectorStoreIndex.from_documents(pages, embed_model=embed_model)
    >>> engine = index.as_query_engine(
    ...     similarity_top_k=20, node_postprocessors=[Qwen3VLRerank(top_n=3)], llm=llm
    ... )
"""

from __future__ import annotations

from qwen3_vl_rag.errors import MissingDependencyError

try:
    import llama_index.core  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise MissingDependencyError(
        "llama-index-core", "llamaindex", "qwen3_vl_rag.llama_index"
    ) from exc

from qwen3_vl_rag.llama_index.embeddings import DEFAULT_EMBEDDING_MODEL, Qwen3VLEmbedding
from qwen3_vl_rag.llama_index.postprocessors import DEFAULT_RERANKER_MODEL, Qwen3VLRerank
from qwen3_vl_rag.llama_index.readers import ImageReader, PDFPageImageReader, VideoClipReader

__all__ = [
    "DEFAULT_EMBEDDING_MODEL",
    "DEFAULT_RERANKER_MODEL",
    "ImageReader",
    "PDFPageImageReader",
    "Qwen3VLEmbedding",
    "Qwen3VLRerank",
    "VideoClipReader",
]
