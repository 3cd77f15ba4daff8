"""LangChain integration: embeddings, a reranking compressor, loaders and a two-stage retriever.

Install with ``pip install "qwen3-vl-rag[langchain]"`` (add ``pdf`` for PDF pages and ``chroma``
for the embedded vector store). Importing this module loads no model and does not import torch.

Example:
    >>> from langchain_chroma import Chroma
    >>> from qwen3_vl_rag.langchain import PDFPageImageLoader, Qwen3VLEmbeddings, Qwen3VLRerank
    >>> pages = PDFPageImageLoader("report.pdf", image_dir="pages").load()
    >>> store = Chroma.from_documents(pages, Qwen3VLEmbeddings())
    >>> reranked = Qwen3VLRerank(top_n=2).compress_documents(
    ...     store.similarity_search("revenue chart", k=3), "revenue chart"
    ... )
    >>> [(doc.metadata["source"].endswith("report.pdf"), "relevance_score" in doc.metadata)
    ...  for doc in reranked]
    [(True, True), (True, True)]
"""

from __future__ import annotations

from qwen3_vl_rag.errors import MissingDependencyError

try:
    import langchain_core  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise MissingDependencyError("langchain-core", "langchain", "qwen3_vl_rag.langchain") from exc

from qwen3_vl_rag.langchain.document_loaders import (
    ImageLoader,
    PDFPageImageLoader,
    VideoClipLoader,
    default_image_dir,
)
from qwen3_vl_rag.langchain.embeddings import DEFAULT_EMBEDDING_MODEL, Qwen3VLEmbeddings
from qwen3_vl_rag.langchain.messages import documents_to_content_blocks
from qwen3_vl_rag.langchain.rerankers import DEFAULT_RERANKER_MODEL, Qwen3VLRerank
from qwen3_vl_rag.langchain.retrievers import Qwen3VLRerankRetriever

__all__ = [
    "DEFAULT_EMBEDDING_MODEL",
    "DEFAULT_RERANKER_MODEL",
    "ImageLoader",
    "PDFPageImageLoader",
    "Qwen3VLEmbeddings",
    "Qwen3VLRerank",
    "Qwen3VLRerankRetriever",
    "VideoClipLoader",
    "default_image_dir",
    "documents_to_content_blocks",
]
