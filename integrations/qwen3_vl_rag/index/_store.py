"""The vector store: an embedded Chroma collection, written only with our own vectors.

Chroma is given explicit embeddings always (its default embedding function would try to
download a model), a cosine space, batches within its maximum batch size, vectors checked
(dimension, finite, non-zero: Chroma silently accepts a zero vector and answers NaN queries)
and metadata it can store (str, int, float, bool; finite; valid UTF-8). Errors that mean the
store's files are damaged (a torn checkpoint after a kill, a file that is not a database) become
:class:`~qwen3_vl_rag.errors.IndexCorruptedError`, whose fix is ``rebuild``; a full disk (which
Chroma reports in the same words) and a read-only directory are
:class:`~qwen3_vl_rag.errors.IndexStorageError`, and a store deleted while in use says so.

Chroma cannot open a store it may not write (it fails with "attempt to write a readonly
database"), so a reader of a read-only index opens a private copy of the store instead.

The collection's metadata records the embedding settings, so that the manifest can be written
again from the store alone (``recover``) if it is lost.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qwen3_vl_rag.errors import (
    ConfigurationError,
    IndexCorruptedError,
    IndexMismatchError,
    IndexStorageError,
    MissingDependencyError,
)
from qwen3_vl_rag.index._faults import disk_fault

__all__ = [
    "ChromaStore",
    "Hit",
    "StoredItem",
    "VectorStore",
    "check_vectors",
    "clean_metadata",
]

COLLECTION = "items"
STORE_DIR = "chroma"
SIGNATURE_KEY = "qwen3_vl_rag_signature"
#: The settings a collection's metadata records (as JSON), for ``recover`` and for readers
#: elsewhere that have no manifest: the embedding settings, the folders the index was built
#: from (search reopens files only inside them), what the vectors were computed in, and the
#: reranker recorded to search it with.
_SETTINGS = {
    "signature": SIGNATURE_KEY,
    "roots": "qwen3_vl_rag_roots",
    "compute_dtypes": "qwen3_vl_rag_compute_dtypes",
    "reranker": "qwen3_vl_rag_reranker",
}


@dataclass(frozen=True)
class StoredItem:
    """One item as the store holds it: enough to write its manifest row again."""

    id: str
    vector: np.ndarray
    metadata: dict[str, Any]
    document: str | None


@dataclass(frozen=True)
class Hit:
    """One nearest neighbour."""

    id: str
    similarity: float
    metadata: dict[str, Any]
    document: str | None


def check_vectors(vectors: np.ndarray, dimension: int) -> np.ndarray:
    """``vectors`` as float32 rows of ``dimension``, all finite and non-zero, or a clear error."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != dimension:
        raise IndexMismatchError(
            f"vectors of shape {tuple(array.shape)} cannot go into an index of dimension "
            f"{dimension}."
        )
    bad = ~np.isfinite(array).all(axis=1) | (np.linalg.norm(array, axis=1) == 0)
    if bad.any():
        raise ConfigurationError(
            f"{int(bad.sum())} vector(s) are not finite or are all zeros (row {int(bad.argmax())}"
            "); they would make every similarity meaningless."
        )
    return array


def clean_metadata(metadata: Mapping[str, Any]) -> dict[str, str | int | float | bool]:
    """Keep what Chroma stores faithfully: finite scalars and valid UTF-8 strings."""
    clean: dict[str, str | int | float | bool] = {}
    for key, value in metadata.items():
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            continue
        if isinstance(value, str):
            value = _utf8(value)
        elif not isinstance(value, bool | int | float):
            value = _utf8(str(value))
        clean[_utf8(str(key))] = value
    return clean


def _utf8(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class ChromaStore(ABC):
    """What an index needs of a Chroma collection, wherever the collection lives.

    :class:`VectorStore` is the embedded one, in the index directory;
    :class:`~qwen3_vl_rag.index._server_store.ServerStore` one on a Chroma server. Both hold
    the same ids, vectors, metadata and page text, in a cosine space, with the index's settings
    in the collection's metadata.

    Example:
        >>> store = VectorStore(Path("my-index"))
        >>> store.count(), store.keeps_thumbnails
        (0, False)
        >>> store.close()
    """

    _collection: Any
    max_batch: int
    #: Whether the store keeps a small JPEG per item (for readers without the files).
    keeps_thumbnails: bool = False

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the vectors live, in words (a folder, or a server and collection)."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection to the collection."""

    @abstractmethod
    def _guard(self, call: Any) -> Any:
        """``call()``, its failures translated into the index's typed errors."""

    def _before_write(self) -> None:  # noqa: B027  (a hook: nothing to do by default)
        """Called before every write (a server store checks that it still may write)."""

    def recorded_settings(self) -> dict[str, Any]:
        """What the collection's metadata records for readers.

        ``signature``, ``roots``, ``compute_dtypes`` and ``reranker``, each present only when
        recorded.
        """
        metadata = self._guard(lambda: self._collection.metadata) or {}
        settings: dict[str, Any] = {}
        for name, key in _SETTINGS.items():
            text = metadata.get(key)
            if isinstance(text, str):
                settings[name] = json.loads(text)
        return settings

    def record_settings(self, **settings: Any) -> None:
        """Record ``signature``, ``roots``, ``compute_dtypes`` or ``reranker`` in its metadata.

        Chroma replaces a collection's metadata as a whole: the other recorded settings are
        written again with the changed one.
        """
        recorded = self.recorded_settings()
        wanted = {**recorded, **{k: v for k, v in settings.items() if v}}
        if wanted == recorded:
            return
        self._before_write()
        metadata = {_SETTINGS[k]: json.dumps(v, sort_keys=True) for k, v in wanted.items()}
        self._guard(lambda: self._collection.modify(metadata=metadata))

    def recorded_signature(self) -> dict[str, Any] | None:
        """The embedding settings recorded with the collection, or ``None``."""
        signature = self.recorded_settings().get("signature")
        return dict(signature) if isinstance(signature, dict) else None

    def record_signature(self, signature: dict[str, Any]) -> None:
        """Record the embedding settings with the collection (for ``recover``)."""
        self.record_settings(signature=signature)

    def items(self) -> Iterator[StoredItem]:
        """Every stored item with its vector, metadata and document, in batches."""
        offset = 0
        while True:
            result = self._guard(
                lambda o=offset: self._collection.get(
                    include=["embeddings", "metadatas", "documents"],
                    limit=self.max_batch,
                    offset=o,
                )
            )
            for item, vector, meta, document in zip(
                result["ids"],
                result["embeddings"],
                result["metadatas"],
                result["documents"],
                strict=True,
            ):
                yield StoredItem(
                    item, np.asarray(vector, dtype=np.float32), dict(meta or {}), document or None
                )
            if len(result["ids"]) < self.max_batch:
                return
            offset += self.max_batch

    def count(self) -> int:
        """Vectors stored."""
        return int(self._guard(self._collection.count))

    def existing(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are stored."""
        found: set[str] = set()
        for start in range(0, len(ids), self.max_batch):
            chunk = list(ids[start : start + self.max_batch])
            result = self._guard(lambda c=chunk: self._collection.get(ids=c, include=[]))
            found.update(result["ids"])
        return found

    def all_ids(self) -> set[str]:
        """Every stored id."""
        found: set[str] = set()
        offset = 0
        while True:
            result = self._guard(
                lambda o=offset: self._collection.get(include=[], limit=self.max_batch, offset=o)
            )
            found.update(result["ids"])
            if len(result["ids"]) < self.max_batch:
                return found
            offset += self.max_batch

    def upsert(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        metadatas: Sequence[Mapping[str, Any]],
        documents: Sequence[str | None],
    ) -> None:
        """Write (or overwrite) items, in batches Chroma accepts."""
        self._before_write()
        for start in range(0, len(ids), self.max_batch):
            stop = start + self.max_batch
            self._guard(
                lambda a=start, b=stop: self._collection.upsert(
                    ids=list(ids[a:b]),
                    embeddings=vectors[a:b],
                    metadatas=[clean_metadata(m) for m in metadatas[a:b]],
                    documents=[_utf8(d or "") for d in documents[a:b]],
                )
            )

    def delete(self, ids: Sequence[str]) -> None:
        """Remove items (unknown ids are ignored)."""
        self._before_write()
        for start in range(0, len(ids), self.max_batch):
            chunk = list(ids[start : start + self.max_batch])
            self._guard(lambda c=chunk: self._collection.delete(ids=c))

    def query(
        self, vector: np.ndarray, k: int, where: Mapping[str, Any] | None = None
    ) -> list[Hit]:
        """The ``k`` nearest items by cosine similarity, best first."""
        result = self._guard(
            lambda: self._collection.query(
                query_embeddings=np.asarray(vector, dtype=np.float32)[None, :],
                n_results=k,
                where=dict(where) if where else None,
                include=["metadatas", "documents", "distances"],
            )
        )
        ids = result["ids"][0]
        distances = result["distances"][0]  # cosine distance = 1 - similarity
        metadatas = result["metadatas"][0]
        documents = result["documents"][0]
        return [
            Hit(item, 1.0 - float(distance), dict(meta or {}), document or None)
            for item, distance, meta, document in zip(
                ids, distances, metadatas, documents, strict=True
            )
        ]

    def put_thumbnails(self, jpegs: Mapping[str, bytes]) -> None:
        """Keep a JPEG per item id (only where :attr:`keeps_thumbnails`)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no thumbnails")

    def thumbnail(self, item: str) -> bytes | None:
        """The JPEG kept for ``item``, or ``None`` (always ``None`` without thumbnails)."""
        return None

    def thumbnail_ids(self, ids: Sequence[str] | None = None) -> set[str]:
        """Which of ``ids`` (default: all) have a thumbnail kept (none without thumbnails)."""
        return set()


class VectorStore(ChromaStore):
    """The embedded Chroma collection of one index directory.

    Args:
        directory: The index directory (the store is its ``chroma/``).
        read_only: Create nothing; if Chroma cannot open the store because it may not write
            there, search a private temporary copy of it.

    Example:
        >>> store = VectorStore(Path("my-index"))
        >>> store.location.endswith("chroma")
        True
        >>> store.close()
    """

    def __init__(self, directory: Path, *, read_only: bool = False) -> None:
        self.path = directory / STORE_DIR
        self._client: Any = None
        self._copy: Path | None = None
        try:
            self._open(self.path, create=not read_only)
        except Exception as exc:  # chromadb raises many kinds; all mean "cannot use it"
            self.close()
            _forget_shared_system(self.path)  # else the next open here reuses the failed one
            if not (read_only and _is_read_only(exc)):
                failure = self._failure(exc)
                assert failure is not None
                raise failure from exc
            self._open_copy(exc)

    def _open(self, path: Path, *, create: bool) -> None:
        try:
            import chromadb
            from chromadb.config import Settings
        except ImportError as exc:
            raise MissingDependencyError("chromadb", "chroma", "The on-disk index") from exc
        self._client = chromadb.PersistentClient(
            path=str(path), settings=Settings(anonymized_telemetry=False, allow_reset=True)
        )
        if create:
            self._collection = self._client.get_or_create_collection(
                COLLECTION, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
            )
        else:
            self._collection = self._client.get_collection(COLLECTION)
        self.max_batch = int(self._client.get_max_batch_size())
        self._collection.count()  # a wedged store fails here

    def _open_copy(self, cause: BaseException) -> None:
        """Open a private copy of a store that cannot be written (a read-only index)."""
        self._copy = Path(tempfile.mkdtemp(prefix="qwen3-vl-rag-readonly-"))
        target = self._copy / STORE_DIR
        try:
            shutil.copytree(self.path, target)
            self._open(target, create=False)
        except Exception as exc:
            self.close()
            raise IndexStorageError(
                f"the vector store {self.path} cannot be written, and a copy of it to read "
                f"could not be opened ({type(exc).__name__}: {exc}); make room in the "
                "temporary directory, or make the index writable."
            ) from cause

    @property
    def location(self) -> str:
        """The store's folder, in the index directory."""
        return str(self.path)

    def close(self) -> None:
        """Release the Chroma client (chromadb shares one per path within a process)."""
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None
        if self._copy is not None:
            _forget_shared_system(self._copy / STORE_DIR)
            shutil.rmtree(self._copy, ignore_errors=True)
            self._copy = None

    @classmethod
    def recreate(cls, directory: Path, current: VectorStore | None) -> VectorStore:
        """An empty store in ``directory``, for ``rebuild`` to fill from the manifest.

        The collection is dropped if the store still opens, its files deleted if not.
        """
        if current is not None and current.path.is_dir():
            try:
                current._client.delete_collection(COLLECTION)
                current.close()
                return cls(directory)
            except Exception:  # a damaged store may not even drop cleanly
                current.close()
        elif current is not None:
            current.close()
        _forget_shared_system(directory / STORE_DIR)
        shutil.rmtree(directory / STORE_DIR, ignore_errors=True)
        return cls(directory)

    def _guard(self, call: Any) -> Any:
        try:
            return call()
        except (ConfigurationError, IndexCorruptedError, IndexStorageError):
            raise
        except Exception as exc:
            failure = self._failure(exc, opening=False)
            if failure is None:
                raise  # not a fault of the files: a bug to see as it is
            raise failure from exc

    def _failure(
        self, exc: BaseException, *, opening: bool = True
    ) -> IndexCorruptedError | IndexStorageError | None:
        """What a failure of Chroma means: files deleted, a disk fault, damage, or none of them.

        Any failure to open the store means it cannot be used; a later failure is damage only
        when its words say so.
        """
        if isinstance(exc, ValueError | TypeError) and not opening:
            return None  # an argument Chroma refused (a bad filter): not the files' fault
        live = self.path if self._copy is None else self._copy / STORE_DIR
        if not (live / "chroma.sqlite3").is_file():
            return IndexCorruptedError(
                f"the vector store {self.path} was deleted while the index was open "
                f"({type(exc).__name__}: {str(exc)[:200]}). The manifest beside it holds every "
                "vector: run `qwen3-vl-rag rebuild` (or MultimodalIndex.rebuild()) to write "
                "the store again from it."
            )
        fault = disk_fault(live.parent, exc)
        if fault is not None:
            return fault
        return _corrupted(self.path, exc) if opening or _looks_damaged(exc) else None


def _forget_shared_system(path: Path) -> None:
    """Drop chromadb's cached system for this one path, bound to the damaged files.

    chromadb keeps one system per persist directory for the whole process; a new client on the
    same path would reuse the broken one. Other paths' systems (other open indexes) are left
    alone. Falls back to chromadb's public cache reset if its internals change.
    """
    from chromadb.api.shared_system_client import SharedSystemClient

    systems = getattr(SharedSystemClient, "_identifier_to_system", None)
    refcounts = getattr(SharedSystemClient, "_identifier_to_refcount", None)
    if not isinstance(systems, dict) or not isinstance(refcounts, dict):
        SharedSystemClient.clear_system_cache()
        return
    system = systems.pop(str(path), None)
    refcounts.pop(str(path), None)
    if system is not None:
        with contextlib.suppress(Exception):
            system.stop()


_DAMAGE_SIGNS = (
    "failed to apply logs",
    "backfill",
    "file is not a database",
    "database disk image is malformed",
    "error finding id",
    "error loading hnsw",
)


def _is_read_only(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "readonly" in text or "read-only" in text or "read only" in text


def _looks_damaged(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(sign in text for sign in _DAMAGE_SIGNS)


def _corrupted(path: Path, exc: BaseException) -> IndexCorruptedError:
    return IndexCorruptedError(
        f"the vector store in {path} cannot be used ({type(exc).__name__}: {exc}). The manifest "
        "beside it holds every vector: run `qwen3-vl-rag rebuild` (or MultimodalIndex.rebuild()) "
        "to write the store again from it."
    )
