"""``Qwen3VLRerank``: a LlamaIndex node postprocessor that reranks text, image and clip nodes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from llama_index.core.bridge.pydantic import Field
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle

from qwen3_vl_rag._adapters import EngineSettings, aranked, ranked
from qwen3_vl_rag.defaults import DEFAULT_RERANKER_MODEL
from qwen3_vl_rag.errors import InputError
from qwen3_vl_rag.inputs import InputItem
from qwen3_vl_rag.llama_index._inputs import fallback_text, query_input, rerank_input
from qwen3_vl_rag.media.references import ImageRoots, warn_unusable
from qwen3_vl_rag.protocols import RerankingEngine

__all__ = ["DEFAULT_RERANKER_MODEL", "Qwen3VLRerank"]

dispatcher = get_dispatcher(__name__)


class Qwen3VLRerank(EngineSettings, BaseNodePostprocessor):
    """Qwen3-VL-Reranker as a node postprocessor: one score per (query, node), best first.

    Each node is read as what it is: an ``ImageNode``'s image, a node's ``image_resource``, a
    clip from :class:`~qwen3_vl_rag.llama_index.VideoClipReader`, an image file named by
    ``metadata["image_path"]`` or ``metadata["file_path"]``, or else its text. The query is the
    bundle's text, its ``image_path``, or both. Scores are floats in [0, 1] (the probability of
    "yes"); all pairs are scored in batched forward passes, the query's prompt once.

    Nodes come from a vector store, so their paths are not trusted to pick files: one is read
    only when its real path lies under the folders our readers wrote to or read from in this
    process, or under ``image_roots``. A node whose image or clip cannot be used (missing, not
    an image, outside those roots, broken inline data) is scored on its text (``page_text``,
    else its embedding text), with a warning that names its index and the same words for every
    cause.

    Returns new ``NodeWithScore`` objects, best first, at most ``top_n``. With
    ``keep_retrieval_score=True`` the vector store's score is kept in
    ``metadata["retrieval_score"]`` of a copy of the node (the original is not changed).

    With ``base_url`` the model runs on a vLLM server (``qwen3-vl-rag serve``) with the same
    scores, and ``apostprocess_nodes`` awaits it on the event loop (an in-process model runs in
    a worker thread).

    Example:
        >>> from llama_index.core.schema import NodeWithScore, TextNode
        >>> reranker = Qwen3VLRerank(model="Qwen/Qwen3-VL-Reranker-2B", top_n=2)
        >>> texts = ["Q1 churn was 4%.", "Q2 churn was 7%.", "The office moved."]
        >>> nodes = [NodeWithScore(node=TextNode(text=text), score=0.5) for text in texts]
        >>> best = reranker.postprocess_nodes(nodes, query_str="Which quarter had the most churn?")
        >>> len(best), all(0 <= node.score <= 1 for node in best)
        (2, True)

        In a query engine: ``index.as_query_engine(similarity_top_k=20,
        node_postprocessors=[Qwen3VLRerank(top_n=5)])``.
    """

    model: str = Field(
        default=DEFAULT_RERANKER_MODEL,
        description="A Hub id (Qwen/Qwen3-VL-Reranker-2B or -8B) or a local checkpoint directory.",
    )
    top_n: int = Field(default=3, ge=1, description="Nodes kept.")
    keep_retrieval_score: bool = Field(
        default=False, description='Keep the retrieval score in metadata["retrieval_score"].'
    )
    instruction: str | None = Field(
        default=None,
        description='The task (default: the official "Given a search query, retrieve relevant '
        'candidates that answer the query.").',
    )
    with_text: bool = Field(
        default=False, description="Give the reranker an image node's text along with its image."
    )

    def __init__(self, *, engine: RerankingEngine | None = None, **kwargs: Any) -> None:
        """Args are the fields; ``engine`` is an already loaded ``Qwen3VLReranker`` to use.

        A given ``engine`` is not pickled: a copy loads ``model`` on first use.
        """
        super().__init__(**kwargs)
        self._given(engine, RerankingEngine)

    @classmethod
    def class_name(cls) -> str:
        """The name ``to_dict`` / ``from_dict`` use."""
        return "Qwen3VLRerank"

    @property
    def reranker(self) -> RerankingEngine:
        """The reranking engine (loaded now if needed)."""
        return self._shared_reranker()

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if query_bundle is None:
            raise ValueError("Missing query bundle in extra info.")
        if not nodes:
            return []
        with self._reranking(nodes, query_bundle) as kept:
            query, documents, texts = self._pairs(nodes, query_bundle)
            best = ranked(
                self.reranker,
                query,
                documents,
                texts,
                instruction=self.instruction,
                batch_tokens=self.batch_tokens,
            )
            kept.extend(self._scored(nodes[i], score) for i, score in best[: self.top_n])
        return kept

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        engine = await self._awaited("reranker", "ascore")
        if engine is None:
            return await asyncio.to_thread(self._postprocess_nodes, nodes, query_bundle)
        if query_bundle is None:
            raise ValueError("Missing query bundle in extra info.")
        if not nodes:
            return []
        with self._reranking(nodes, query_bundle) as kept:
            query, documents, texts = await asyncio.to_thread(self._pairs, nodes, query_bundle)
            best = await aranked(
                engine,
                query,
                documents,
                texts,
                instruction=self.instruction,
                batch_tokens=self.batch_tokens,
            )
            kept.extend(self._scored(nodes[i], score) for i, score in best[: self.top_n])
        return kept

    @contextlib.contextmanager
    def _reranking(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle
    ) -> Iterator[list[NodeWithScore]]:
        """LlamaIndex's rerank events and callbacks around a ranking that fills the list given."""
        dispatcher.event(
            ReRankStartEvent(
                query=query_bundle, nodes=nodes, top_n=self.top_n, model_name=self.model
            )
        )
        with self.callback_manager.event(
            CBEventType.RERANKING,
            payload={
                EventPayload.NODES: nodes,
                EventPayload.MODEL_NAME: self.model,
                EventPayload.QUERY_STR: query_bundle.query_str,
                EventPayload.TOP_K: self.top_n,
            },
        ) as event:
            kept: list[NodeWithScore] = []
            yield kept
            event.on_end(payload={EventPayload.NODES: kept})
        dispatcher.event(ReRankEndEvent(nodes=kept))

    def _pairs(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle
    ) -> tuple[InputItem, list[InputItem], list[str]]:
        """The query and nodes as engine inputs, and each node's fallback text."""
        query = query_input(query_bundle, allow_remote=self.allow_remote, policy=None)
        roots = self._roots()
        texts = [fallback_text(n.node) for n in nodes]
        documents = [self._input(i, n, roots, texts[i]) for i, n in enumerate(nodes)]
        return query, documents, texts

    def _input(self, index: int, node: NodeWithScore, roots: ImageRoots, text: str) -> InputItem:
        try:
            return rerank_input(
                node.node,
                allow_remote=self.allow_remote,
                policy=None,
                with_text=self.with_text,
                roots=roots,
            )
        except InputError:
            warn_unusable(index)
            return text

    def _scored(self, original: NodeWithScore, score: float) -> NodeWithScore:
        node = original.node
        if self.keep_retrieval_score:
            node = node.model_copy(update={"metadata": dict(node.metadata)})
            node.metadata["retrieval_score"] = original.score
        return NodeWithScore(node=node, score=score)
