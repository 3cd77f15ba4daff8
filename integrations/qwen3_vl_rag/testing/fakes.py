"""Fake embedder and reranker with the engine's methods, for fast adapter tests.

They load no model and read no file: a vector or score is a hash of what was asked for (the
instruction, and each input's kind and identity), so tests can assert routing exactly: a query
and a document of the same text get different vectors, as with the real model, and an image
path embeds differently from the same path as text. Every call is recorded.

Example:
    >>> embedder = FakeEmbedder(dimension=8)
    >>> embedder.embed_queries(["hello"]).shape
    (1, 8)
    >>> embedder.calls[0].method, embedder.calls[0].inputs
    ('embed_queries', ['text:hello'])
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qwen3_vl_rag.engine._prompts import (  # constants only: no torch
    DEFAULT_DOCUMENT_INSTRUCTION,
    DEFAULT_QUERY_INSTRUCTION,
)
from qwen3_vl_rag.inputs import LazyImage, MultimodalInput, Video

__all__ = ["FakeCall", "FakeEmbedder", "FakeReranker", "describe"]


def describe(item: Any) -> str:
    """A stable description of one input: its kind and identity (``"image:/a.png"``).

    As in the engine, a ``str`` item is always text (even a path or a ``data:`` URI); only
    inside a :class:`MultimodalInput`'s images is a string an image.
    """
    if isinstance(item, str):
        return f"text:{item}"
    if isinstance(item, os.PathLike):
        return f"image:{os.fspath(item)}"
    if isinstance(item, bytes | bytearray):
        return f"image-bytes:{hashlib.sha256(item).hexdigest()[:16]}"
    if isinstance(item, LazyImage):  # a page or an image the media layer decodes when used
        return f"image:{item.description}"
    if isinstance(item, Video):
        return f"video:{item.source}#{item.start},{item.end}"
    if isinstance(item, MultimodalInput):
        parts = [f"text:{item.text}"] if item.text else []
        parts += [_describe_image(image) for image in item.images]
        if item.video is not None:
            parts.append(describe(item.video))
        return "+".join(parts)
    if hasattr(item, "to_input"):  # a MediaItem
        return describe(item.to_input())
    if hasattr(item, "tobytes"):  # a PIL image or an array
        return f"image-pixels:{hashlib.sha256(item.tobytes()).hexdigest()[:16]}"
    raise TypeError(f"the fake cannot describe {type(item).__name__}")


def _describe_image(image: Any) -> str:
    if isinstance(image, str):  # a path or a data: URI, as the engine reads it here
        return f"image:{image[:48]}" if image.startswith("data:") else f"image:{image}"
    return describe(image)


def _unit_vector(seed_text: str, dimension: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(seed_text.encode()).digest()[:8], "little")
    vector = np.random.default_rng(seed).normal(size=dimension).astype(np.float32)
    return vector / np.linalg.norm(vector)


@dataclass
class FakeCall:
    """One call: the method, each input's description, and the keyword arguments."""

    method: str
    inputs: list[str]
    kwargs: dict[str, Any] = field(default_factory=dict)
    query: str | None = None


class FakeEmbedder:
    """Deterministic unit vectors from ``(instruction, input)``; records every call."""

    def __init__(self, dimension: int = 16, model_id: str = "fake/qwen3-vl-embedding") -> None:
        self.dimension = dimension
        self.model_id = model_id
        self.query_instruction = DEFAULT_QUERY_INSTRUCTION
        self.document_instruction = DEFAULT_DOCUMENT_INSTRUCTION
        self.calls: list[FakeCall] = []

    def embed(
        self,
        items: Sequence[Any],
        *,
        instruction: str | None = None,
        dim: int | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Like :meth:`Qwen3VLEmbedder.embed` (document instruction by default)."""
        return self._vectors("embed", items, instruction or self.document_instruction, dim, kwargs)

    def embed_queries(
        self, items: Sequence[Any], *, instruction: str | None = None, **kwargs: Any
    ) -> np.ndarray:
        """Like :meth:`Qwen3VLEmbedder.embed_queries`."""
        dim = kwargs.pop("dim", None)
        return self._vectors(
            "embed_queries", items, instruction or self.query_instruction, dim, kwargs
        )

    def embed_documents(
        self, items: Sequence[Any], *, instruction: str | None = None, **kwargs: Any
    ) -> np.ndarray:
        """Like :meth:`Qwen3VLEmbedder.embed_documents`."""
        dim = kwargs.pop("dim", None)
        return self._vectors(
            "embed_documents", items, instruction or self.document_instruction, dim, kwargs
        )

    def vector_of(self, description: str, instruction: str, dim: int | None = None) -> np.ndarray:
        """The vector the fake gives an input described as ``description``."""
        vector = _unit_vector(f"{instruction}\x00{description}", self.dimension)
        if dim:
            vector = vector[:dim] / np.linalg.norm(vector[:dim])
        return vector

    def _vectors(
        self,
        method: str,
        items: Sequence[Any],
        instruction: str,
        dim: int | None,
        kwargs: dict[str, Any],
    ) -> np.ndarray:
        described = [describe(item) for item in items]
        self.calls.append(FakeCall(method, described, {"instruction": instruction, "dim": dim}))
        width = dim or self.dimension
        if not described:
            return np.zeros((0, width), dtype=np.float32)
        return np.stack([self.vector_of(d, instruction, dim) for d in described])


class FakeReranker:
    """Deterministic scores in (0, 1) from ``(query, document)``; records every call."""

    def __init__(self, model_id: str = "fake/qwen3-vl-reranker") -> None:
        self.model_id = model_id
        self.calls: list[FakeCall] = []

    def score_of(self, query: str, document: str) -> float:
        """The score the fake gives a pair of described inputs."""
        digest = hashlib.sha256(f"{query}\x00{document}".encode()).digest()
        return (int.from_bytes(digest[:4], "little") + 1) / (2**32 + 2)

    def score(
        self, query: Any, documents: Sequence[Any], *, instruction: str | None = None, **_: Any
    ) -> list[float]:
        """Like :meth:`Qwen3VLReranker.score`."""
        described_query = describe(query)
        described = [describe(document) for document in documents]
        self.calls.append(
            FakeCall("score", described, {"instruction": instruction}, query=described_query)
        )
        return [self.score_of(described_query, d) for d in described]
