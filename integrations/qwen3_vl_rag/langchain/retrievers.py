"""``Qwen3VLRerankRetriever``: recall from any vector store, rerank with Qwen3-VL-Reranker."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import VectorStore
from pydantic import ConfigDict, Field

from qwen3_vl_rag.langchain.rerankers import Qwen3VLRerank, ranked_copies

__all__ = ["Qwen3VLRerankRetriever"]


class Qwen3VLRerankRetriever(BaseRetriever):
    """Recall ``fetch_k`` documents by vector similarity, return the reranker's best ``k``.

    The same as ``ContextualCompressionRetriever(base_compressor=Qwen3VLRerank(...),
    base_retriever=store.as_retriever(...))``, without langchain-classic, with ``k`` settable
    per call, and the recall query sent as it is (an image path is an image query when the
    store's embeddings are :class:`~qwen3_vl_rag.langchain.Qwen3VLEmbeddings`).

    Example:
        >>> from langchain_core.vectorstores import InMemoryVectorStore
        >>> from qwen3_vl_rag.langchain import Qwen3VLEmbeddings
        >>> store = InMemoryVectorStore.from_texts(
        ...     ["Q1 churn was 4%.", "Q2 churn was 7%.", "The office moved."],
        ...     Qwen3VLEmbeddings(),
        ...     metadatas=[{"source": "q1.txt"}, {"source": "q2.txt"}, {"source": "news.txt"}],
        ... )
        >>> retriever = Qwen3VLRerankRetriever(
        ...     vectorstore=store, reranker=Qwen3VLRerank(), k=2, fetch_k=3
        ... )
        >>> docs = retriever.invoke("Which quarter had the highest churn?")
        >>> [sorted(doc.metadata) for doc in docs]
        [['relevance_score', 'source'], ['relevance_score', 'source']]
        >>> len(retriever.invoke("Which quarter had the highest churn?", k=1))
        1
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    vectorstore: VectorStore = Field(description="Where candidates are recalled from.")
    reranker: Qwen3VLRerank = Field(
        default_factory=Qwen3VLRerank, description="Scores each candidate against the query."
    )
    k: int = Field(default=4, ge=1, description="Documents returned (after reranking).")
    fetch_k: int = Field(default=20, ge=1, description="Candidates recalled for reranking.")
    search_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="More arguments for the store's similarity_search, e.g. {'filter': ...}.",
    )

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        k = int(kwargs.pop("k", self.k))
        fetch_k = max(int(kwargs.pop("fetch_k", self.fetch_k)), k)
        candidates = self.vectorstore.similarity_search(
            query, k=fetch_k, **{**self.search_kwargs, **kwargs}
        )
        if not candidates:
            return []
        return ranked_copies(candidates, self.reranker.rerank(candidates, query, top_n=k))

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        # the store's and the reranker's own async paths: a served model is awaited, never
        # waited for in a thread
        k = int(kwargs.pop("k", self.k))
        fetch_k = max(int(kwargs.pop("fetch_k", self.fetch_k)), k)
        candidates = await self.vectorstore.asimilarity_search(
            query, k=fetch_k, **{**self.search_kwargs, **kwargs}
        )
        if not candidates:
            return []
        return ranked_copies(candidates, await self.reranker.arerank(candidates, query, top_n=k))
