"""One loaded model per checkpoint and settings in a process, shared by every adapter.

A LangChain ``Qwen3VLEmbeddings``, a LlamaIndex ``Qwen3VLEmbedding`` and a second chain over
the same checkpoint all get the same :class:`Qwen3VLEmbedder`, so the weights are loaded once;
adapters pointed at the same vLLM server with the same settings share one connection
(:func:`server_embedder`, :func:`server_reranker`). Calls into one in-process model are
serialized with :func:`model_lock`: frameworks run async batches in threads, and two forward
passes at once only compete for the same cores and memory. A served model takes concurrent
calls (the server batches them; the client bounds the requests in flight), and its async
methods are awaited directly (:func:`awaitable`).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qwen3_vl_rag.engine._embedder import Qwen3VLEmbedder
    from qwen3_vl_rag.engine._reranker import Qwen3VLReranker

__all__ = [
    "aembed_in_chunks",
    "awaitable",
    "embed_in_chunks",
    "loading_options",
    "model_lock",
    "object_lock",
    "serialized_calls",
    "server_embedder",
    "server_reranker",
    "shared_embedder",
    "shared_reranker",
]

_loaded: dict[tuple[str, str, tuple[tuple[str, str], ...]], Any] = {}
_loading = threading.Lock()
_locks: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()


#: Options held in the cache's keys only as a digest (a key is not a place for a secret).
_SECRETS = frozenset({"api_key", "token"})


def _key(kind: str, model: str | os.PathLike[str], options: dict[str, Any]) -> Any:
    settings = tuple(
        sorted(
            (name, _secret_digest(value) if name in _SECRETS else repr(value))
            for name, value in options.items()
        )
    )
    return (kind, os.fspath(model), settings)


def _secret_digest(value: Any) -> str:
    return hashlib.sha256(repr(value).encode()).hexdigest()


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


def server_embedder(url: str, **options: Any) -> Qwen3VLEmbedder:
    """The process's connection to the embedding model a vLLM server at ``url`` runs.

    One engine per URL and ``from_server`` options (``model``, ``api_key``, pixel budgets...),
    connected (and checked) on the first call.

    Example:
        >>> a = server_embedder("http://127.0.0.1:8000", max_pixels=602112)  # doctest: +SKIP
        >>> a is server_embedder("http://127.0.0.1:8000", max_pixels=602112)  # doctest: +SKIP
        True
    """
    from qwen3_vl_rag.engine._embedder import Qwen3VLEmbedder

    connect = Qwen3VLEmbedder.from_server
    embedder: Qwen3VLEmbedder = _shared("server-embedder", connect, url, options)
    return embedder


def server_reranker(url: str, **options: Any) -> Qwen3VLReranker:
    """The process's connection to the reranker a vLLM server at ``url`` runs (as above)."""
    from qwen3_vl_rag.engine._reranker import Qwen3VLReranker

    connect = Qwen3VLReranker.from_server
    reranker: Qwen3VLReranker = _shared("server-reranker", connect, url, options)
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
    return object_lock(engine)


def object_lock(owner: Any) -> threading.RLock:
    """One lock per object, made on first use and dropped with the object."""
    with _locks_guard:
        lock = _locks.get(owner)
        if lock is None:
            lock = _locks[owner] = threading.RLock()
        return lock


def serialized_calls(engine: Any) -> contextlib.AbstractContextManager[Any]:
    """What to hold while calling ``engine``: its :func:`model_lock`, or nothing for a server's.

    A served model takes concurrent calls: the server batches them, the client bounds them.
    """
    if getattr(engine, "server", None) is not None:
        return contextlib.nullcontext()
    return model_lock(engine)


def awaitable(engine: Any, name: str) -> Callable[..., Awaitable[Any]] | None:
    """``engine``'s coroutine method ``name``, when awaiting it beats a worker thread; else None.

    A served model (``engine.server`` set) or any other engine with that coroutine method is
    awaited: its requests wait on the event loop, not in a thread. An in-process engine
    (``server`` is ``None``) computes in a thread anyway, and the caller's worker thread keeps
    its calls serialized under :func:`model_lock`; engines without the method (the test fakes)
    run their synchronous one in a worker thread too.

    Example:
        >>> from qwen3_vl_rag.testing.fakes import FakeEmbedder
        >>> awaitable(FakeEmbedder(), "aembed_documents") is None
        True
    """
    if hasattr(engine, "server") and engine.server is None:
        return None
    method = getattr(engine, name, None)
    return method if inspect.iscoroutinefunction(method) else None


@contextlib.contextmanager
def _positions_from(start: int) -> Iterator[None]:
    """An input or out-of-memory error's ``item_index`` moved from a chunk's to the call's."""
    from qwen3_vl_rag.errors import InputError, ResourceExhaustedError

    try:
        yield
    except (InputError, ResourceExhaustedError) as err:
        if err.item_index is not None:
            err.item_index += start  # the message is rendered from it when shown
        raise


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

    if not inputs:
        return []
    method = engine.embed_queries if query else engine.embed_documents
    vectors: list[list[float]] = []
    with tqdm(total=len(inputs), desc="Embedding", unit="item", disable=not show_progress) as bar:
        for start in range(0, len(inputs), chunk_size):
            chunk = list(inputs[start : start + chunk_size])
            with _positions_from(start), serialized_calls(engine):
                array = method(chunk, instruction=instruction, dim=dim, batch_tokens=batch_tokens)
            vectors.extend(array.astype(float).tolist())
            bar.update(len(chunk))
    return vectors


async def aembed_in_chunks(
    engine: Any,
    inputs: Sequence[Any],
    *,
    query: bool,
    instruction: str | None,
    dim: int | None,
    batch_tokens: int | None,
    chunk_size: int,
) -> list[list[float]]:
    """:func:`embed_in_chunks` through the engine's ``aembed_queries`` / ``aembed_documents``.

    For an engine :func:`awaitable` accepts. Chunks go one after another (each bounds the
    pictures decoded at once); the requests within one go concurrently.
    """
    if not inputs:
        return []
    method = awaitable(engine, "aembed_queries" if query else "aembed_documents")
    if method is None:
        raise TypeError(f"{type(engine).__name__} has no async embedding method to await.")
    vectors: list[list[float]] = []
    for start in range(0, len(inputs), chunk_size):
        chunk = list(inputs[start : start + chunk_size])
        with _positions_from(start):
            array = await method(chunk, instruction=instruction, dim=dim, batch_tokens=batch_tokens)
        vectors.extend(array.astype(float).tolist())
    return vectors
