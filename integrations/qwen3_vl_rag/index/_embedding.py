"""Where the items an indexing run queues become vectors: in this process, or on a cluster.

Ingestion decides *what* is embedded (new items of new or changed files, each once) and records
what comes back, in the order that keeps the index crash-safe. An :class:`ItemEmbedding` decides
*where*: :class:`LocalEmbedding` calls the index's embedder here; a Ray run
(:mod:`qwen3_vl_rag.distributed`) sends the items to workers that read the files again, and
streams results back as they finish. Either way a result is a batch of vectors or the failure
of one item (its file is then reported with the stage and error, and keeps its old vectors).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from qwen3_vl_rag.errors import InputError

if TYPE_CHECKING:
    from qwen3_vl_rag.engine import Qwen3VLEmbedder
    from qwen3_vl_rag.media.items import MediaItem
    from qwen3_vl_rag.media.loaders import MediaOptions

__all__ = [
    "EmbeddedBatch",
    "EmbeddingCluster",
    "EmbeddingJob",
    "EmbeddingResult",
    "ItemEmbedding",
    "ItemFailure",
    "LocalEmbedding",
    "PendingItem",
]


@dataclass(frozen=True)
class PendingItem:
    """An item waiting for its vector.

    Attributes:
        id: Its stable id (settings, file content and place in the file).
        item: The item as the media layer described it here.
        file: Its file's key in the manifest; when one item of a file fails, the file's other
            items are not embedded.
        path: The file, for a worker that reads it again.
        digest: The file's SHA-256 when it was hashed: a worker that reads it again checks it.
    """

    id: str
    item: MediaItem
    file: str
    path: Path
    digest: str


@dataclass(frozen=True)
class EmbeddedBatch:
    """Vectors of some of the items given, one row per id.

    Attributes:
        ids: Item ids.
        vectors: ``(len(ids), dimension)`` float32.
        dtype: What they were computed in, when the embedding ran elsewhere (``None``: the
            index's embedder, already recorded).
        signature: The embedding settings of the engine that computed them, when it ran
            elsewhere; the index refuses vectors of other settings.
        thumbnails: Thumbnails (JPEG) the workers made from the pages they drew, by id, for a
            store that keeps them.
    """

    ids: list[str]
    vectors: np.ndarray
    dtype: str | None = None
    signature: dict[str, Any] | None = None
    thumbnails: dict[str, bytes] | None = None


@dataclass(frozen=True)
class ItemFailure:
    """An item that could not be read or embedded; its file is reported as failed.

    Attributes:
        id: The item's id.
        reason: What went wrong, for the report.
        stage: Where: ``"open"``, ``"render"``, ``"decode"``, ``"embed"``...
        error: The error's class name.
    """

    id: str
    reason: str
    stage: str
    error: str

    @classmethod
    def of(cls, item_id: str, err: InputError, stage: str = "embed") -> ItemFailure:
        """The failure an :class:`~qwen3_vl_rag.errors.InputError` describes."""
        return cls(item_id, err.reason, err.stage or stage, type(err).__name__)


EmbeddingResult = EmbeddedBatch | ItemFailure


class ItemEmbedding(Protocol):
    """Turns pending items into vectors (or item failures), streaming results as they are ready."""

    @property
    def window(self) -> int:
        """How many items ingestion queues before it hands them over."""
        ...

    def embed(self, items: Sequence[PendingItem], dimension: int) -> Iterator[EmbeddingResult]:
        """Vectors of ``dimension`` for ``items`` (each id once), in any order, or failures.

        Raises:
            Qwen3VLRagError: Something that is not one item's fault (a model, a cluster); the
                run stops, and what was already written stays.
        """
        ...

    def close(self) -> None:
        """Release what the embedding holds (workers, a cluster connection)."""
        ...


@dataclass(frozen=True)
class EmbeddingJob:
    """What a cluster needs to know of the index it embeds for.

    Attributes:
        embedder: The index's embedder in this process (workers load the same model).
        signature: The index's embedding settings; workers' vectors must match them.
        dimension: Matryoshka dimension stored.
        segment_seconds: The index's clip length (``None``: whole videos).
        media_options: How files are decoded (budgets, frame rate); workers decode alike.
        thumbnails: Whether the store keeps thumbnails (workers then make those of the pages
            and images they draw).
    """

    embedder: Qwen3VLEmbedder
    signature: dict[str, Any]
    dimension: int
    segment_seconds: float | None
    media_options: MediaOptions
    thumbnails: bool = False


class EmbeddingCluster(Protocol):
    """Embeds an index's items elsewhere (:class:`qwen3_vl_rag.distributed.RayCluster`)."""

    def embedding(self, job: EmbeddingJob) -> ItemEmbedding:
        """Connect, and embed ``job``'s items until :meth:`ItemEmbedding.close`."""
        ...


class LocalEmbedding:
    """Embeds in this process with the index's embedder, one batch of ``batch_items`` at a time.

    Example:
        >>> from qwen3_vl_rag import Qwen3VLEmbedder
        >>> embedder = Qwen3VLEmbedder.from_pretrained("Qwen/Qwen3-VL-Embedding-2B")
        >>> LocalEmbedding(embedder, batch_items=32).window
        32
    """

    def __init__(self, embedder: Qwen3VLEmbedder, *, batch_items: int) -> None:
        self.embedder = embedder
        self.batch_items = batch_items

    @property
    def window(self) -> int:
        """Items per batch."""
        return self.batch_items

    def embed(self, items: Sequence[PendingItem], dimension: int) -> Iterator[EmbeddingResult]:
        """One batch; an item that fails is reported and its file's items are left out."""
        batch = list(items)
        while batch:
            try:
                vectors = self.embedder.embed_documents([p.item for p in batch], dim=dimension)
            except InputError as err:
                if err.item_index is None:
                    raise
                bad = batch[err.item_index]
                yield ItemFailure.of(bad.id, err)
                batch = [pending for pending in batch if pending.file != bad.file]
                continue
            yield EmbeddedBatch([pending.id for pending in batch], vectors)
            return

    def close(self) -> None:
        """Nothing to release: the embedder is the index's."""
