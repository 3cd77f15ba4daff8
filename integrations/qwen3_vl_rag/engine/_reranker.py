"""``Qwen3VLReranker``: a yes/no cross-encoder over multimodal query/document pairs."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from qwen3_vl_rag.engine import _prompts as prompts
from qwen3_vl_rag.engine._backbone import Backbone, HoldsBackbone
from qwen3_vl_rag.engine._encoding import EncodedSequence, ItemPlan, plan_items
from qwen3_vl_rag.engine._loading import PretrainedOptions, check_options, load_score_head
from qwen3_vl_rag.errors import ConfigurationError, InputError
from qwen3_vl_rag.inputs import InputItem

if TYPE_CHECKING:
    import torch
    from typing_extensions import Unpack

    from qwen3_vl_rag.engine._remote import RemoteBackbone, ServerOptions


__all__ = ["Qwen3VLReranker", "RerankResult"]


class RerankResult(NamedTuple):
    """One reranked document: its position in the input list and its relevance in [0, 1].

    Example:
        >>> from qwen3_vl_rag import Qwen3VLReranker
        >>> reranker = Qwen3VLReranker.from_pretrained("Qwen/Qwen3-VL-Reranker-2B")
        >>> ranked = reranker.rerank("quarterly revenue", ["Revenue table", "Team photo"])
        >>> sorted(result.index for result in ranked)  # best first; index into the documents
        [0, 1]
        >>> best = ranked[0]  # a named tuple: (index, score)
        >>> best.index == best[0], 0.0 <= best.score <= 1.0
        (True, True)
    """

    index: int  # type: ignore[assignment]  # shadows tuple.index, as rerank APIs name it
    score: float


class Qwen3VLReranker(HoldsBackbone):
    """Scores how well documents answer a query with Qwen3-VL-Reranker (text, images, video).

    The score is the official one: ``sigmoid(h . (w_yes - w_no))`` at the last token of the judge
    prompt, i.e. the model's probability of answering "yes". Pairs are scored in batches under a
    token budget, not one forward pass per pair, and a query image is decoded once per call.
    The vision tower's encoding of each page is kept in memory (``vision_cache_bytes``, 1 GiB by
    default; see :attr:`vision_cache`), so reranking the same pages for another query runs only
    the language model over them: the scores are the same.

    Example:
        >>> from pathlib import Path
        >>> from qwen3_vl_rag import Qwen3VLReranker
        >>> reranker = Qwen3VLReranker.from_pretrained("Qwen/Qwen3-VL-Reranker-2B")
        >>> ranked = reranker.rerank("red bar chart of 2023 revenue",
        ...                          [Path("p1.png"), "Revenue table", Path("p7.png")], top_n=2)
        >>> [type(index).__name__ for index, score in ranked]  # best first: (index, score) pairs
        ['int', 'int']
        >>> all(0.0 <= score <= 1.0 for _, score in ranked)
        True
    """

    def __init__(
        self,
        backbone: Backbone | RemoteBackbone,
        score_head: torch.Tensor | None,
        *,
        max_length: int = 10240,
        instruction: str = prompts.DEFAULT_RERANK_INSTRUCTION,
    ) -> None:
        if max_length < 32:
            raise ConfigurationError(f"max_length must be at least 32, got {max_length}.")
        self.backbone = backbone
        self.score_head = score_head
        self.max_length = max_length
        self.instruction = instruction

    @classmethod
    def from_pretrained(
        cls,
        model_id_or_path: str | os.PathLike[str],
        *,
        max_length: int = 10240,
        instruction: str = prompts.DEFAULT_RERANK_INSTRUCTION,
        **options: Unpack[PretrainedOptions],
    ) -> Qwen3VLReranker:
        """Load a Qwen3-VL-Reranker checkpoint (2B or 8B) from the Hub or a local directory.

        Args:
            model_id_or_path: A Hub id such as ``"Qwen/Qwen3-VL-Reranker-2B"`` or a local path.
            max_length: Tokens per pair before the five-token answer suffix (official: 10240).
            instruction: The default task instruction.
            **options: How to load and run it, the same as for the embedder's
                ``from_pretrained``; see :class:`~qwen3_vl_rag.PretrainedOptions`.

        Raises:
            ModelLoadError: When the checkpoint cannot be found or loaded, saying why.
            TypeError: For a keyword that is not an option.
        """
        check_options(options, "from_pretrained")
        backbone = Backbone.from_pretrained(model_id_or_path, options)
        head = load_score_head(backbone.loaded)
        return cls(backbone, head, max_length=max_length, instruction=instruction)

    @classmethod
    def from_server(
        cls,
        url: str,
        *,
        model: str | os.PathLike[str] | None = None,
        served_model: str | None = None,
        api_key: str | None = None,
        max_length: int | None = None,
        instruction: str = prompts.DEFAULT_RERANK_INSTRUCTION,
        **options: Unpack[ServerOptions],
    ) -> Qwen3VLReranker:
        """Use a Qwen3-VL-Reranker model that a vLLM server runs, with the official scores.

        The server computes the yes-minus-no logit of each judge prompt; the prompt, its
        truncation, the images and the sigmoid are ours, so the scores are the in-process ones
        (to about 1e-6 in float32). The server needs our judge template (``qwen3-vl-rag serve``
        passes it; without it vLLM's scores sit near 0.5); connecting checks it. Video is refused.

        Args:
            url: The server, e.g. ``"http://127.0.0.1:8001"``.
            model: The checkpoint the client reads its tokenizer from (default: the server's).
            served_model: The server's name for the model, when it differs from ``model``.
            api_key: Sent as a bearer token; never shown or logged.
            max_length: Tokens per pair before the answer suffix (default: 10240, or what the
                server's ``--max-model-len`` allows).
            instruction: The default task instruction.
            **options: As for :meth:`Qwen3VLEmbedder.from_server
                <qwen3_vl_rag.Qwen3VLEmbedder.from_server>`.

        Raises:
            ServerUnreachableError: Nothing answers at ``url``.
            ServerConfigurationError: Another model, or a flag missing (named in the message).

        Example:
            >>> from qwen3_vl_rag import Qwen3VLReranker
            >>> reranker = Qwen3VLReranker.from_server("http://127.0.0.1:8001")  # doctest: +SKIP
            >>> reranker.rerank("revenue", ["Revenue table", "Team photo"])  # doctest: +SKIP
            [RerankResult(index=0, score=0.93...), RerankResult(index=1, score=0.08...)]
        """
        from qwen3_vl_rag.engine._remote import RemoteBackbone, ServerOptions

        check_options(options, "from_server", ServerOptions)
        backbone = RemoteBackbone.connect(
            url,
            "reranker",
            model=model,
            served_model=served_model,
            api_key=api_key,
            options=options,
        )
        length = backbone.max_length_within(
            max_length, 10240, suffix=backbone.encoder.suffix_length
        )
        return cls(backbone, None, max_length=length, instruction=instruction)

    def __repr__(self) -> str:
        return f"Qwen3VLReranker(model={self.model_id!r}, {self._runs_where()})"

    def score(
        self,
        query: InputItem,
        documents: Sequence[InputItem],
        *,
        instruction: str | None = None,
        batch_tokens: int | None = None,
        show_progress: bool = False,
    ) -> list[float]:
        """Relevance of each document to the query, in document order, each in [0, 1].

        Args:
            query: Text, image, video or a :class:`~qwen3_vl_rag.MultimodalInput` mix.
            documents: Items of the same kinds.
            instruction: The task, e.g. "Retrieve charts that answer the question." (default: the
                official "Given a search query, retrieve relevant candidates that answer the
                query."). Used verbatim, as the official reranker does.
            batch_tokens: Padded tokens per forward pass, for this call only.
            show_progress: Show a progress bar.

        Raises:
            InputError: For a document that cannot be used (``item_index`` is its position) or a
                query that cannot be used (the message says "query").
        """
        query_plan = self._query_plan(query)
        document_plans = plan_items(documents, self.backbone.loaded.vision)
        return self._score_pairs(
            [(query_plan, d) for d in document_plans],
            instruction,
            batch_tokens=batch_tokens,
            show_progress=show_progress,
        )

    def _head(self) -> torch.Tensor:
        if self.score_head is None:
            raise ConfigurationError(
                "a reranker running in process needs its score head (w_yes - w_no); load it "
                "with Qwen3VLReranker.from_pretrained."
            )
        return self.score_head

    def _query_plan(self, query: InputItem) -> ItemPlan:
        try:
            (plan,) = plan_items([query], self.backbone.loaded.vision)
        except InputError as err:
            # not an item of the documents' list: no position, every other field kept
            raise err.replace(reason=f"the query: {err.reason}", item_index=None) from err
        return plan

    def score_pairs(
        self,
        pairs: Sequence[tuple[InputItem, InputItem]],
        *,
        instruction: str | None = None,
        batch_tokens: int | None = None,
        show_progress: bool = False,
    ) -> list[float]:
        """Relevance of each ``(query, document)`` pair; queries may differ between pairs.

        An input error's ``item_index`` is the position of the pair.
        """
        vision = self.backbone.loaded.vision
        queries = plan_items([query for query, _ in pairs], vision)
        documents = plan_items([document for _, document in pairs], vision)
        planned = list(zip(queries, documents, strict=True))
        return self._score_pairs(
            planned, instruction, batch_tokens=batch_tokens, show_progress=show_progress
        )

    def rerank(
        self,
        query: InputItem,
        documents: Sequence[InputItem],
        *,
        top_n: int | None = None,
        instruction: str | None = None,
        batch_tokens: int | None = None,
        show_progress: bool = False,
    ) -> list[RerankResult]:
        """Documents sorted best first as ``(index, score)`` pairs, at most ``top_n`` of them.

        Ties keep the input order. Other arguments are those of :meth:`score`.
        """
        _check_top_n(top_n)
        scores = self.score(
            query,
            documents,
            instruction=instruction,
            batch_tokens=batch_tokens,
            show_progress=show_progress,
        )
        return _ranked(scores, top_n)

    def format_prompt(
        self, query: InputItem, document: InputItem, *, instruction: str | None = None
    ) -> str:
        """The pair's judge prompt as the model sees it, with vision placeholders not expanded."""
        query_plan, document_plan = plan_items([query, document], self.backbone.loaded.vision)
        return self.backbone.encoder.reranker_prompt(
            query_plan, document_plan, instruction or self.instruction
        )

    def _score_pairs(
        self,
        pairs: Sequence[tuple[ItemPlan, ItemPlan]],
        instruction: str | None,
        *,
        batch_tokens: int | None,
        show_progress: bool,
    ) -> list[float]:
        from tqdm.auto import tqdm

        sequences = self.backbone.encoder.encode_pairs(
            pairs, instruction or self.instruction, self.max_length
        )
        with tqdm(
            total=len(sequences), desc="Reranking", unit="pair", disable=not show_progress
        ) as bar:
            backbone = self.backbone
            if isinstance(backbone, Backbone):
                logits = _local_logits(backbone, self._head(), sequences, batch_tokens, bar)
            else:
                logits = backbone.pair_logits(sequences, batch_tokens=batch_tokens, progress=bar)
        return _sigmoid(logits)

    async def ascore(
        self,
        query: InputItem,
        documents: Sequence[InputItem],
        *,
        instruction: str | None = None,
        batch_tokens: int | None = None,
    ) -> list[float]:
        """:meth:`score` for asyncio code: the event loop stays free while it runs.

        Example:
            >>> import asyncio
            >>> from qwen3_vl_rag import Qwen3VLReranker
            >>> reranker = Qwen3VLReranker.from_pretrained("Qwen/Qwen3-VL-Reranker-2B")
            >>> scores = asyncio.run(reranker.ascore("revenue", ["Revenue table", "Team photo"]))
            >>> len(scores), all(0.0 <= s <= 1.0 for s in scores)
            (2, True)
        """
        sequences = await asyncio.to_thread(
            self._pair_sequences, query, documents, instruction or self.instruction
        )
        backbone = self.backbone
        if isinstance(backbone, Backbone):
            logits = await asyncio.to_thread(
                _local_logits, backbone, self._head(), sequences, batch_tokens, None
            )
        else:
            logits = await backbone.apair_logits(sequences, batch_tokens=batch_tokens)
        return _sigmoid(logits)

    async def arerank(
        self,
        query: InputItem,
        documents: Sequence[InputItem],
        *,
        top_n: int | None = None,
        instruction: str | None = None,
        batch_tokens: int | None = None,
    ) -> list[RerankResult]:
        """:meth:`rerank` for asyncio code."""
        _check_top_n(top_n)
        scores = await self.ascore(
            query, documents, instruction=instruction, batch_tokens=batch_tokens
        )
        return _ranked(scores, top_n)

    def _pair_sequences(
        self, query: InputItem, documents: Sequence[InputItem], instruction: str
    ) -> list[EncodedSequence]:
        query_plan = self._query_plan(query)
        document_plans = plan_items(documents, self.backbone.loaded.vision)
        return self.backbone.encoder.encode_pairs(
            [(query_plan, d) for d in document_plans], instruction, self.max_length
        )


def _local_logits(
    backbone: Backbone,
    head: torch.Tensor,
    sequences: Sequence[EncodedSequence],
    batch_tokens: int | None,
    progress: object | None,
) -> np.ndarray:
    """The yes-minus-no logit of each sequence, computed in this process."""
    import torch

    hidden = backbone.last_hidden_states(sequences, batch_tokens=batch_tokens, progress=progress)
    logits: np.ndarray = (hidden @ head.to(device="cpu", dtype=torch.float32)).numpy()
    return logits


def _sigmoid(logits: np.ndarray) -> list[float]:
    """The official score, ``sigmoid(logit)``, computed in float32 as torch computes it."""
    import torch

    return [float(s) for s in torch.sigmoid(torch.from_numpy(np.asarray(logits, np.float32)))]


def _check_top_n(top_n: int | None) -> None:
    if top_n is not None and top_n < 0:
        raise ConfigurationError(f"top_n must be non-negative, got {top_n}.")


def _ranked(scores: Sequence[float], top_n: int | None) -> list[RerankResult]:
    """Best first; ties keep the input order."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return [RerankResult(i, scores[i]) for i in order[:top_n]]
