"""LlamaIndex integration: a multimodal embedding, a reranking postprocessor, and readers.

Install with ``pip install "qwen3-vl-rag[llamaindex]"`` (add ``pdf`` for PDF pages). Importing
this module loads no model and does not import torch.

Example:
    >>> from llama_index.core import VectorStoreIndex
    >>> from llama_index.core.llms import MockLLM
    >>> from qwen3_vl_rag.llama_index import PDFPageImageReader, Qwen3VLEmbedding, Qwen3VLRerank
    >>> embed_model = Qwen3VLEmbedding()
    >>> pages = PDFPageImageReader(image_dir="pages").load_data("report.pdf")
    >>> index = VectorStoreIndex.from_documents(pages, embed_model=embed_model)
    >>> engine = index.as_query_engine(
    ...     similarity_top_k=3, node_postprocessors=[Qwen3VLRerank(top_n=2)], llm=MockLLM()
    ... )
    >>> response = engine.query("Which chart shows revenue by region?")
    >>> [node.metadata["file_name"] for node in response.source_nodes]
    ['report.pdf', 'report.pdf']
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
