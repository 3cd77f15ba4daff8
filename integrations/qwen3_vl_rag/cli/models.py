"""The models behind a command: a reranker loaded only when needed, and a word on test weights."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qwen3_vl_rag.engine import Qwen3VLReranker
    from qwen3_vl_rag.inputs import InputItem

__all__ = [
    "RerankerOnDemand",
    "random_test_checkpoints",
    "random_weights_note",
    "synthetic_trained",
]


class RerankerOnDemand:
    """A reranker that loads its checkpoint (or connects to its server) at its first use.

    A search pays for loading the reranker only when the first stage found something to
    rerank; one that finds nothing, or fails before, never loads it.

    Args:
        model: A Hub id or a local directory; with ``server``, the checkpoint the client reads
            its tokenizer from (``None``: the one the server runs).
        device: ``"cuda"``, ``"cpu"`` or ``"auto"`` (not for a server's model).
        dtype: ``"auto"``, ``"float32"``, ``"bfloat16"``... (not for a server's model).
        server: The URL of a vLLM server that runs the reranker.
        api_key: The server's API key.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None,
        *,
        device: str = "auto",
        dtype: str = "auto",
        server: str | None = None,
        api_key: str | None = None,
    ) -> None:
        self.model = model
        self.device = device
        self.dtype = dtype
        self.server = server
        self._api_key = api_key
        self._loaded: Qwen3VLReranker | None = None

    @property
    def loaded(self) -> bool:
        """Whether the checkpoint has been loaded."""
        return self._loaded is not None

    def load(self) -> Qwen3VLReranker:
        """The reranker, loaded (or connected to) on the first call."""
        if self._loaded is None:
            self._loaded = self._open()
        return self._loaded

    def _open(self) -> Qwen3VLReranker:
        from qwen3_vl_rag.engine import Qwen3VLReranker

        if self.server is not None:
            return Qwen3VLReranker.from_server(self.server, model=self.model, api_key=self._api_key)
        if self.model is None:
            raise ValueError("RerankerOnDemand needs a model, a server, or both.")
        return Qwen3VLReranker.from_pretrained(self.model, device=self.device, dtype=self.dtype)

    def __getattr__(self, name: str) -> Any:
        """Anything else a reranker has: the model is loaded for it."""
        if name.startswith("_"):  # never load for copy/pickle probes, nor recurse in them
            raise AttributeError(name)
        return getattr(self.load(), name)

    def score(
        self, query: InputItem, documents: Sequence[InputItem], **options: Any
    ) -> list[float]:
        """:meth:`Qwen3VLReranker.score`, loading the model first if needed."""
        return self.load().score(query, documents, **options)


def random_test_checkpoints(models: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Those of ``models`` that are random-weight test checkpoints (read from their headers)."""
    # here, not at import: the checkpoint builder's module loads numpy, which --help never needs
    from qwen3_vl_rag.testing.checkpoints import is_random_test_checkpoint

    return [str(model) for model in models if is_random_test_checkpoint(model)]


def random_weights_note(models: Sequence[str | os.PathLike[str]]) -> str | None:
    """One line on test models among ``models``: random weights, or trained on synthetic pages."""
    untrained = random_test_checkpoints(models)
    if not untrained:
        return _synthetic_note(models)
    return (
        f"{', '.join(untrained)}: random-weight test checkpoint"
        f"{'' if len(untrained) == 1 else 's'} (qwen3_vl_rag.testing); the scores and the ranking "
        "mean nothing."
    )


def synthetic_trained(models: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Those of ``models`` that are the tiny models trained on the synthetic corpus."""
    from qwen3_vl_rag.testing.trained import is_synthetic_trained_checkpoint

    return [str(model) for model in models if is_synthetic_trained_checkpoint(model)]


def _synthetic_note(models: Sequence[str | os.PathLike[str]]) -> str | None:
    """One line naming the models trained on the synthetic corpus, or ``None``."""
    toys = synthetic_trained(models)
    if not toys:
        return None
    one = len(toys) == 1
    return (
        f"{', '.join(toys)}: tiny model{'' if one else 's'} trained on the synthetic corpus "
        f"(qwen3_vl_rag.testing): {'it knows' if one else 'they know'} six kinds of page in six "
        "colours, nothing else."
    )
