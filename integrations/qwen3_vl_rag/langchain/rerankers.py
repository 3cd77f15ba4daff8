"""``Qwen3VLRerank``: a LangChain document compressor that reranks text, page images and clips."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from copy import deepcopy
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import Field, InstanceOf

from qwen3_vl_rag._adapters import EngineSettings, aranked, ranked
from qwen3_vl_rag.defaults import DEFAULT_RERANKER_MODEL
from qwen3_vl_rag.errors import ConfigurationError, InputError
from qwen3_vl_rag.inputs import InputItem
from qwen3_vl_rag.langchain._inputs import (
    ImageInputs,
    document_input,
    fallback_text,
    text_or_visual,
)
from qwen3_vl_rag.media.references import ImageRoots, warn_unusable
from qwen3_vl_rag.media.remote import RemotePolicy
from qwen3_vl_rag.protocols import RerankingEngine

__all__ = ["DEFAULT_RERANKER_MODEL", "Qwen3VLRerank", "ranked_copies"]


class Qwen3VLRerank(EngineSettings, BaseDocumentCompressor):
    """Qwen3-VL-Reranker as a LangChain document compressor: one score per (query, document).

    Each document is read as what it is: the image named in its metadata (``image_path``,
    ``image_uri``...), base64 image data in ``page_content`` (as ``Chroma.add_images`` stores
    it), the image file or clip ``page_content`` names, or else its text. A query string that
    names an image file is an image query. Scores are in [0, 1] (the probability of "yes").

    Documents come from a vector store, so their strings are not trusted to pick files: a path
    in page_content or metadata is read only when its real path lies under the folders our
    loaders wrote to or loaded from in this process, or under ``image_roots``. A document
    whose image cannot be used (missing, not an image, outside those roots, a broken data URI)
    is scored on its text (``page_text``, else ``page_content``), with a warning that names its
    index and the same words for every cause.

    Returns copies of the documents, best first, with ``metadata["relevance_score"]``; each copy
    keeps its ``id``. All pairs are scored in batched forward passes, and the query's prompt runs
    once for all of them. With ``base_url`` the model runs on a vLLM server (``qwen3-vl-rag
    serve``) with the same scores, and :meth:`arerank` / ``acompress_documents`` await it on the
    event loop (an in-process model runs in a worker thread).

    Example:
        >>> from langchain_classic.retrievers import ContextualCompressionRetriever
        >>> from langchain_core.vectorstores import InMemoryVectorStore
        >>> from qwen3_vl_rag.langchain import Qwen3VLEmbeddings
        >>> store = InMemoryVectorStore.from_texts(
        ...     ["Q1 churn was 4%.", "Q2 churn was 7%.", "Q3 churn was 3%.", "The office moved."],
        ...     Qwen3VLEmbeddings(),
        ... )
        >>> reranker = Qwen3VLRerank(model="Qwen/Qwen3-VL-Reranker-2B", top_n=2)
        >>> retriever = ContextualCompressionRetriever(
        ...     base_compressor=reranker, base_retriever=store.as_retriever(search_kwargs={"k": 4})
        ... )
        >>> best = retriever.invoke("Which quarter had the highest churn?")
        >>> len(best), all(0 <= doc.metadata["relevance_score"] <= 1 for doc in best)
        (2, True)
        >>> ranked = reranker.rerank(["a bar chart", "a cat"], "revenue chart", top_n=None)
        >>> sorted(row["index"] for row in ranked)
        [0, 1]
    """

    model: str = Field(
        default=DEFAULT_RERANKER_MODEL,
        description="A Hub id (Qwen/Qwen3-VL-Reranker-2B or -8B) or a local checkpoint directory.",
    )
    engine: RerankingEngine | None = Field(
        default=None,
        exclude=True,
        description="An already loaded Qwen3VLReranker (or an object with its `score` method); "
        "not pickled (a copy loads `model`).",
    )
    top_n: int | None = Field(default=3, ge=0, description="Documents kept (None keeps all).")
    instruction: str | None = Field(
        default=None,
        description='The task, e.g. "Retrieve charts that answer the question." (default: the '
        'official "Given a search query, retrieve relevant candidates that answer the query.").',
    )
    image_inputs: ImageInputs = Field(
        default="auto",
        description='"auto": documents and queries that name an image or clip are read as one; '
        '"never": page_content is always text.',
    )
    with_text: bool = Field(
        default=False,
        description="Give the reranker a page's text along with its image (metadata "
        "`page_text`, or page_content when the image comes from metadata).",
    )
    remote_policy: InstanceOf[RemotePolicy] | None = Field(
        default=None, exclude=True, description="A RemotePolicy for those fetches."
    )

    @property
    def reranker(self) -> RerankingEngine:
        """The reranking engine: ``engine``, or ``model`` (loaded now if needed)."""
        return self.engine if self.engine is not None else self._shared_reranker()

    def rerank(
        self,
        documents: Sequence[Document | str],
        query: str,
        *,
        top_n: int | None = -1,
    ) -> list[dict[str, Any]]:
        """``[{"index": i, "relevance_score": s}, ...]`` best first (ties keep input order).

        Args:
            documents: Documents, or plain strings (read like ``page_content``).
            query: The query text, or an image path for an image query.
            top_n: How many to return; ``-1`` (default) uses the field, ``None`` returns all.
        """
        limit = self._limit(top_n)
        if not documents:
            return []
        query_input, inputs, texts = self._pairs(documents, query)
        best = ranked(
            self.reranker,
            query_input,
            inputs,
            texts,
            instruction=self.instruction,
            batch_tokens=self.batch_tokens,
        )
        return [{"index": i, "relevance_score": score} for i, score in best[:limit]]

    async def arerank(
        self,
        documents: Sequence[Document | str],
        query: str,
        *,
        top_n: int | None = -1,
    ) -> list[dict[str, Any]]:
        """:meth:`rerank` without blocking the event loop.

        A server engine's requests are awaited; an in-process model runs in a worker thread.
        """
        limit = self._limit(top_n)
        if not documents:
            return []
        engine = await self._awaited("reranker", "ascore")
        if engine is None:
            return await asyncio.to_thread(self.rerank, documents, query, top_n=top_n)
        query_input, inputs, texts = await asyncio.to_thread(self._pairs, documents, query)
        best = await aranked(
            engine,
            query_input,
            inputs,
            texts,
            instruction=self.instruction,
            batch_tokens=self.batch_tokens,
        )
        return [{"index": i, "relevance_score": score} for i, score in best[:limit]]

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Rerank ``documents`` for ``query``: copies, best first, with ``relevance_score``."""
        return ranked_copies(documents, self.rerank(documents, query))

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """:meth:`compress_documents` without blocking the event loop (see :meth:`arerank`)."""
        return ranked_copies(documents, await self.arerank(documents, query))

    def _limit(self, top_n: int | None) -> int | None:
        limit = self.top_n if top_n == -1 else top_n
        if limit is not None and limit < 0:
            raise ConfigurationError(f"top_n must be non-negative or None, got {limit}.")
        return limit

    def _pairs(
        self, documents: Sequence[Document | str], query: str
    ) -> tuple[InputItem, list[InputItem], list[str]]:
        """The query and documents as engine inputs, and each document's fallback text."""
        roots = self._roots()
        query_input = text_or_visual(query, self.image_inputs, roots)
        texts = [fallback_text(d) for d in documents]
        inputs = [self._input(i, d, roots, texts[i]) for i, d in enumerate(documents)]
        return query_input, inputs, texts

    def _input(
        self, index: int, document: Document | str, roots: ImageRoots, text: str
    ) -> InputItem:
        try:
            if isinstance(document, str):
                return text_or_visual(document, self.image_inputs, roots)
            return document_input(
                document,
                image_inputs=self.image_inputs,
                with_text=self.with_text,
                allow_remote=self.allow_remote,
                policy=self.remote_policy,
                roots=roots,
            )
        except InputError:
            warn_unusable(index)
            return text


def ranked_copies(
    documents: Sequence[Document], ranked: Sequence[dict[str, Any]]
) -> list[Document]:
    """Copies of ``documents`` in ``ranked`` order, with ``relevance_score``; ids are kept."""
    kept = []
    for row in ranked:
        original = documents[row["index"]]
        metadata = deepcopy(original.metadata)
        metadata["relevance_score"] = row["relevance_score"]
        kept.append(Document(page_content=original.page_content, metadata=metadata, id=original.id))
    return kept
