"""One loaded model per checkpoint and settings in a process, shared by every adapter.

A LangChain ``Qwen3VLEmbeddings``, a LlamaIndex ``Qwen3VLEmbedding`` and a second chain over
the same checkpoint all get the same :class:`Qwen3VLEmbedder`, so the weights are loaded once.
Calls into one model are serialized with :func:`model_lock`: frameworks run async batches in
threads, and two forward passes at once only compete for the same cores and memory.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qwen3_vl_rag.engine._embedder import Qwen3VLEmbedder
    from qwen3_vl_rag.engine._reranker import Qwen3VLReranker

__all__ = [
    "embed_in_chunks",
    "loading_options",
    "model_lock",
    "shared_embedder",
    "shared_reranker",
]

_loaded: dict[tuple[str, str, tuple[tuple[str, str], ...]], Any] = {}
_loading = threading.Lock()
_locks: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()


def _key(kind: str, model: str | os.PathLike[str], options: dict[str, Any]) -> Any:
    settings = tuple(sorted((name, repr(value)) for name, value in options.items()))
    return (kind, os.fspath(model), settings)


def shared_embedder(model: str | os.PathLike[str], **options: Any) -> Qwen3VLEmbedder:
    """The process's embedder for ``model`` with these ``from_pretrained`` options.

    Example:
        >>> a = shared_embedder("Qwen/Qwen3-VL-Embedding-2B", device="cpu")
        >>> b = shared_embedder("Qwen/Qwen3-VL-Embedding-2B", device="cpu")
        >>> a is b
        True
    """
    from qwen3_vl_rag.engine._embedder import Qwen3VLEmbedder

    embedder: Qwen3VLEmbedder = _shared("embedder", Qwen3VLEmbedder.from_pretrained, model, options)
    return embedder


def shared_reranker(model: str | os.PathLike[str], **options: Any) -> Qwen3VLReranker:
    """The process's reranker for ``model`` with these ``from_pretrained`` options."""
    from qwen3_vl_rag.engine._reranker import Qwen3VLReranker

    reranker: Qwen3VLReranker = _shared("reranker", Qwen3VLReranker.from_pretrained, model, options)
    return reranker


def _shared(
    kind: str,
    load: Callable[..., Any],
    model: str | os.PathLike[str],
    options: dict[str, Any],
) -> Any:
    """The engine loaded once per kind, model and options (loads run one at a time)."""
    key = _key(kind, model, options)
    with _loading:
        if key not in _loaded:
            _loaded[key] = load(model, **options)
        return _loaded[key]


def loading_options(
    device: str, dtype: str, max_pixels: int | None, extra: dict[str, Any]
) -> dict[str, Any]:
    """``from_pretrained`` options from an adapter's fields (``max_pixels`` only when set)."""
    options: dict[str, Any] = {"device": device, "dtype": dtype}
    if max_pixels is not None:
        options["max_pixels"] = max_pixels
    return {**options, **extra}


def model_lock(engine: Any) -> threading.RLock:
    """The lock that serializes calls into ``engine`` (one per engine object)."""
    with _locks_guard:
        lock = _locks.get(engine)
        if lock is None:
            lock = _locks[engine] = threading.RLock()
        return lock


def embed_in_chunks(
    engine: Any,
    inputs: Sequence[Any],
    *,
    query: bool,
    instruction: str | None,
    dim: int | None,
    batch_tokens: int | None,
    chunk_size: int,
    show_progress: bool = False,
) -> list[list[float]]:
    """Embed ``inputs`` as queries or documents, ``chunk_size`` per locked call into the model.

    Returns lists of Python floats (what LangChain and LlamaIndex expect). An input or
    out-of-memory error's ``item_index`` (and its message) is the position in ``inputs``, not in
    the chunk.
    """
    from tqdm.auto import tqdm

    from qwen3_vl_rag.errors import InputError, ResourceExhaustedError

    if not inputs:
        return []
    method = engine.embed_queries if query else engine.embed_documents
    vectors: list[list[float]] = []
    with tqdm(total=len(inputs), desc="Embedding", unit="item", disable=not show_progress) as bar:
        for start in range(0, len(inputs), chunk_size):
            chunk = list(inputs[start : start + chunk_size])
            try:
                with model_lock(engine):
                    array = method(
                        chunk, instruction=instruction, dim=dim, batch_tokens=batch_tokens
                    )
            except (InputError, ResourceExhaustedError) as err:
                if err.item_index is not None:
                    err.item_index += start  # the message is rendered from it when shown
                raise
            vectors.extend(array.astype(float).tolist())
            bar.update(len(chunk))
    return vectors
