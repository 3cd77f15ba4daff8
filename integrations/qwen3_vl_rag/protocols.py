"""What the adapters need of an engine, as protocols the engines and the test fakes implement.

:class:`~qwen3_vl_rag.Qwen3VLEmbedder`, :class:`~qwen3_vl_rag.Qwen3VLReranker` and the fakes
of :mod:`qwen3_vl_rag.testing.fakes` all have these methods. A leaf module (no framework, no
torch), so adapters and the index can name the engine they take without loading one. The
protocols are runtime-checkable: ``isinstance`` checks that the methods are there (mypy checks
their signatures).

Example:
    >>> from qwen3_vl_rag.testing.fakes import FakeEmbedder, FakeReranker
    >>> isinstance(FakeEmbedder(), EmbeddingEngine), isinstance(FakeReranker(), EmbeddingEngine)
    (True, False)
    >>> isinstance(FakeReranker(), RerankingEngine)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from qwen3_vl_rag.inputs import InputItem

__all__ = ["EmbeddingEngine", "RerankingEngine"]


@runtime_checkable
class EmbeddingEngine(Protocol):
    """Embeds queries and documents: :class:`~qwen3_vl_rag.Qwen3VLEmbedder` or a fake."""

    def embed_queries(
        self, items: Sequence[InputItem], *, instruction: str | None = None, **kwargs: Any
    ) -> np.ndarray:
        """One row per query (``dim=``, ``batch_tokens=`` as :meth:`Qwen3VLEmbedder.embed`)."""
        ...

    def embed_documents(
        self, items: Sequence[InputItem], *, instruction: str | None = None, **kwargs: Any
    ) -> np.ndarray:
        """One row per document (``dim=``, ``batch_tokens=`` as :meth:`Qwen3VLEmbedder.embed`)."""
        ...


@runtime_checkable
class RerankingEngine(Protocol):
    """Scores documents against a query: :class:`~qwen3_vl_rag.Qwen3VLReranker` or a fake."""

    def score(
        self,
        query: InputItem,
        documents: Sequence[InputItem],
        *,
        instruction: str | None = None,
        batch_tokens: int | None = None,
    ) -> list[float]:
        """One score in [0, 1] per document, in document order."""
        ...
