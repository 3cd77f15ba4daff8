"""``MultimodalIndex``: PDF pages, images and video clips on disk, searchable by text or image.

Layout of an index directory::

    <index>/
      .lock                 one writer, shared readers (flock)
      manifest.sqlite3      sources, items, vectors, settings (the source of truth)
      chroma/               the vector store (rebuilt from the manifest when damaged)
      thumbnails/           small JPEGs of search results, named by item id
      manifest.sqlite3.damaged-<time>   a damaged manifest, kept aside by ``recover``

With ``server=``, the vectors, metadata and page text live in a collection on a Chroma server
instead of ``chroma/`` (:mod:`qwen3_vl_rag.index._server_store`), with a JPEG per item beside
them; the writer's directory still keeps the manifest and the lock, and the writer also holds a
lease on the server (:mod:`qwen3_vl_rag.index._lease`), since a lock file cannot see other
machines. A reader elsewhere needs no directory of the writer's: the collection's metadata
records the settings, the indexed folders and the dtypes, and each hit its citation.

Each side can restore the other: ``rebuild`` writes the store from the manifest, ``recover``
the manifest from the store (its vectors, metadata and recorded settings). An index notices
when its store lost vectors the manifest records (an interrupted rebuild) and refuses to work
until it is rebuilt; it never lets a rebuild wipe a store under an empty manifest.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from qwen3_vl_rag.errors import (
    ConfigurationError,
    IndexCorruptedError,
    IndexMismatchError,
    PrecisionMismatchWarning,
)
from qwen3_vl_rag.index._embedding import (
    EmbeddingCluster,
    EmbeddingJob,
    ItemEmbedding,
    LocalEmbedding,
)
from qwen3_vl_rag.index._faults import storage_fault
from qwen3_vl_rag.index._ids import signature_hash
from qwen3_vl_rag.index._ingest import IndexReport, IngestTarget, ingest
from qwen3_vl_rag.index._lease import DEFAULT_LEASE_SECONDS, WriterLease
from qwen3_vl_rag.index._lock import IndexLock
from qwen3_vl_rag.index._manifest import MANIFEST_NAME, REBUILDING, SCHEMA_VERSION, Manifest
from qwen3_vl_rag.index._paths import key_path
from qwen3_vl_rag.index._precision import (
    COMPUTE_DTYPES,
    compute_dtype,
    precision_mismatch,
    with_dtype,
)
from qwen3_vl_rag.index._recovery import recover_manifest
from qwen3_vl_rag.index._reopen import ROOTS_KEY, record_roots
from qwen3_vl_rag.index._results import SearchResult
from qwen3_vl_rag.index._search import SearchSource, search
from qwen3_vl_rag.index._server_store import (
    DEFAULT_COLLECTION,
    DEFAULT_RETRY_SECONDS,
    ServerStore,
)
from qwen3_vl_rag.index._signature import (
    FINGERPRINT,
    could_be_hub_id,
    differences,
    embedding_signature,
    loadable_model,
    mismatch_details,
    recorded_name,
)
from qwen3_vl_rag.index._store import STORE_DIR, ChromaStore, VectorStore, check_vectors
from qwen3_vl_rag.media.budget import MediaBudget
from qwen3_vl_rag.media.loaders import MediaOptions

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from qwen3_vl_rag.engine import Qwen3VLEmbedder, Qwen3VLReranker
    from qwen3_vl_rag.media.isolation import WorkerPool

__all__ = ["IndexStatus", "MultimodalIndex", "PruneReport", "embedding_signature"]

DEFAULT_INDEX_DIR = ".qwen3vl-index"
_RERANKER = "reranker"  # manifest setting: the reranker `record_reranker` chose


@dataclass(frozen=True)
class IndexStatus:
    """What an index holds.

    Example:
        >>> from qwen3_vl_rag import MultimodalIndex, Qwen3VLEmbedder
        >>> embedder = Qwen3VLEmbedder.from_pretrained("Qwen/Qwen3-VL-Embedding-2B")
        >>> with MultimodalIndex("my-index", embedder) as index:
        ...     report = index.index(["chart.png", "photo.png"])
        ...     status = index.status()
        >>> status.model, status.sources, status.items, status.vectors
        ('Qwen/Qwen3-VL-Embedding-2B', 2, 2, 2)
    """

    directory: str
    model: str | None
    dimension: int | None
    sources: int
    indexed: int
    failed: int
    items: int
    vectors: int
    bytes_on_disk: int
    compute_dtypes: tuple[str, ...] = ()
    """What the stored vectors were computed in (``("float32",)``; two names when runs
    differed; ``()`` for an index made before they were recorded)."""
    vector_store: str = ""
    """Where the vectors live: the ``chroma`` folder, or ``collection NAME on URL``. A reader
    of a server store without the writer's manifest counts no sources, and its ``items`` are
    the vectors stored."""


@dataclass(frozen=True)
class PruneReport:
    """What ``prune`` removed.

    Example:
        >>> from qwen3_vl_rag import MultimodalIndex, Qwen3VLEmbedder
        >>> embedder = Qwen3VLEmbedder.from_pretrained("Qwen/Qwen3-VL-Embedding-2B")
        >>> with MultimodalIndex("my-index", embedder) as index:
        ...     report = index.index(["chart.png", "photo.png"])
        ...     Path("photo.png").unlink()
        ...     pruned = index.prune()
        >>> [Path(source).name for source in pruned.sources], pruned.vectors
        (['photo.png'], 1)
    """

    sources: list[str]
    vectors: int


class MultimodalIndex:
    """A persistent multimodal index over an embedded Chroma store, with its own manifest.

    Args:
        directory: The index directory (created if missing).
        embedder: The embedder for documents and queries. The index records its model and
            settings on first use and refuses another one afterwards. A model is known by
            what it is (a fingerprint of its configuration, tokenizer and weights), so the same
            checkpoint is accepted from any folder and by any path.
        reranker: The reranker for ``search(rerank=True)``.
        dim: Matryoshka dimension to store (default: the embedder's full size).
        segment_seconds: Cut videos into clips this long (default: one item per video).
        mode: ``"write"`` (one process at a time) or ``"read"`` (shared; ``search`` and
            ``status`` only).
        workers: Decoding worker processes for PDFs and videos.
        server: A Chroma server's URL (``"http://127.0.0.1:8000"``, as ``chroma run``
            listens) to keep the vectors in, instead of the directory's ``chroma/``. The
            directory keeps the manifest; a reader (``mode="read"``) needs no manifest
            there: the directory may be empty or missing (thumbnails are cached in it if it
            can be written).
        collection: The collection on ``server`` (default ``"qwen3-vl-rag"``); several
            indexes share a server under different names.
        server_retry_seconds: How long a call to ``server`` is retried while it does not
            answer, before :class:`~qwen3_vl_rag.errors.StoreUnavailableError`.
        lease_seconds: How long the writer's lease on ``server`` lasts without a heartbeat:
            how long a killed writer keeps others out.

    Example:
        >>> from qwen3_vl_rag import MultimodalIndex, Qwen3VLEmbedder, Qwen3VLReranker
        >>> embedder = Qwen3VLEmbedder.from_pretrained("Qwen/Qwen3-VL-Embedding-2B")
        >>> reranker = Qwen3VLReranker.from_pretrained("Qwen/Qwen3-VL-Reranker-2B")
        >>> with MultimodalIndex("my-index", embedder, reranker) as index:
        ...     report = index.index(["reports/", "screenshots/"])
        ...     hits = index.search("bar chart of quarterly revenue", top_n=3)
        >>> report.complete, [hit.rank for hit in hits]
        (True, [1, 2, 3])
        >>> with MultimodalIndex("my-index", mode="read") as index:  # the model it was built with
        ...     index.embedding_model()
        'Qwen/Qwen3-VL-Embedding-2B'

        The vectors on a Chroma server (``chroma run --path DIR``), searched from anywhere:

        >>> server = {"server": "http://127.0.0.1:8000", "collection": "reports"}
        >>> with MultimodalIndex("my-index", embedder, **server) as index:  # doctest: +SKIP
        ...     report = index.index(["reports/"])
        >>> elsewhere = MultimodalIndex("cache", embedder, mode="read", **server)  # doctest: +SKIP
        >>> hits = elsewhere.search("bar chart", rerank=False)  # doctest: +SKIP
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] = DEFAULT_INDEX_DIR,
        embedder: Qwen3VLEmbedder | None = None,
        reranker: Qwen3VLReranker | None = None,
        *,
        dim: int | None = None,
        segment_seconds: float | None = None,
        mode: Literal["read", "write"] = "write",
        workers: int = 2,
        batch_items: int = 32,
        server: str | None = None,
        collection: str | None = None,
        server_retry_seconds: float = DEFAULT_RETRY_SECONDS,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        self.directory = Path(directory)
        self.mode = mode
        self.server = server
        self.collection = (collection or DEFAULT_COLLECTION) if server else None
        self.server_retry_seconds = server_retry_seconds
        if collection and not server:
            raise ConfigurationError("collection= names a collection on a server: give server=.")
        # a reader of a server store on another machine: no manifest, only the collection
        self.detached = server is not None and mode == "read" and not self.exists(directory)
        if mode == "read" and not self.exists(self.directory) and not self.detached:
            raise ConfigurationError(
                f"{self.directory} is not an index (no {MANIFEST_NAME}); build one with "
                "`qwen3-vl-rag index PATH --index DIR`."
            )
        if mode == "write":
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise storage_fault(self.directory, exc) from exc
        self._lock = IndexLock(self.directory, mode)
        if not self.detached:
            self._lock.acquire()
        self._store: ChromaStore | None = None
        self._lease: WriterLease | None = None
        self._damage: IndexCorruptedError | None = None
        self._search_pool: WorkerPool | None = None
        self._precision_warned = False
        try:
            if self.detached:
                self.manifest = self._detached_manifest()
            else:
                self.manifest = Manifest(self.directory / MANIFEST_NAME, read_only=mode == "read")
            self._check_schema()
            self.embedder = embedder
            self.reranker = reranker
            self.workers = workers
            self.batch_items = batch_items
            items = self.manifest.counts()["items"]
            self._open_store(items)
            if server is not None and mode == "write":
                self._lease = WriterLease(
                    self._server_store(), self.directory, lease_seconds
                ).acquire()
            self.signature = self._settle_signature(embedder, dim, segment_seconds)
            self._check_collection_signature()
            self.signature_hash = signature_hash(self.signature) if self.signature else ""
            self.dimension = int(self.signature["dimension"]) if self.signature else 0
            self.media_options = self._media_options()
            self._check_store(items)
            if mode == "write":
                self._upgrade()
        except BaseException:
            self.close()
            raise

    @staticmethod
    def exists(directory: str | os.PathLike[str]) -> bool:
        """Whether ``directory`` holds an index (its manifest)."""
        return (Path(directory) / MANIFEST_NAME).is_file()

    def _check_schema(self) -> None:
        version = self.manifest.get_meta("schema_version")
        if isinstance(version, int) and version > SCHEMA_VERSION:
            raise ConfigurationError(
                f"the index {self.directory} was written by a newer qwen3-vl-rag (manifest "
                f"schema {version}, this version reads up to {SCHEMA_VERSION}): upgrade it."
            )

    def _server_store(self, *, create: bool = True) -> ServerStore:
        assert self.server is not None
        assert self.collection is not None
        if self._store is None:
            self._store = ServerStore(
                self.server,
                self.collection,
                create=create,
                retry_seconds=self.server_retry_seconds,
            )
        assert isinstance(self._store, ServerStore)
        return self._store

    def _detached_manifest(self) -> Manifest:
        """What a reader without the writer's manifest knows: the collection's settings."""
        settings = self._server_store(create=False).recorded_settings()
        meta: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
        for name, key in (
            ("signature", "signature"),
            ("roots", ROOTS_KEY),
            ("compute_dtypes", COMPUTE_DTYPES),
            ("reranker", _RERANKER),
        ):
            if name in settings:
                meta[key] = settings[name]
        return Manifest.detached(meta)

    def _check_collection_signature(self) -> None:
        """Refuse a server collection that another index wrote with other settings."""
        if not isinstance(self._store, ServerStore) or self.detached or not self.signature:
            return
        recorded = self._store.recorded_signature()
        changed = differences(recorded, self.signature) if recorded else []
        if recorded and changed:
            details = mismatch_details(recorded, self.signature, changed)
            raise IndexMismatchError(
                f"the {self._store.location} holds vectors of other embedding settings than "
                f"the index {self.directory} ({details}): vectors of different models or "
                "settings cannot be compared. Use another --collection for this index."
            )

    def _open_store(self, items: int) -> None:
        """Open the vector store, or note why it cannot be used (``rebuild`` still runs)."""
        if self.server is not None:
            store = self._server_store(create=self.mode == "write")
            if not self.detached and self.manifest.item_count() == 0 and store.count() > 0:
                raise IndexCorruptedError(
                    f"the manifest {self.directory / MANIFEST_NAME} records nothing, while "
                    f"the {store.location} holds {store.count()} vector(s): it belongs to "
                    "another index directory, or this manifest was lost. Use another "
                    "--collection, or run `qwen3-vl-rag recover` with the same --chroma-server "
                    "and --collection to write the manifest again from it."
                )
            return
        if items and not (self.directory / STORE_DIR).is_dir():
            # an empty new store would quietly find nothing
            self._damage = IndexCorruptedError(
                f"the vector store {self.directory / STORE_DIR} is missing, while the "
                f"manifest records {items} item(s) with their vectors: run `qwen3-vl-rag "
                "rebuild` (or MultimodalIndex.rebuild()) to write it again."
            )
            return
        read_only = self.mode == "read" and (self.directory / STORE_DIR).is_dir()
        try:
            self._store = VectorStore(self.directory, read_only=read_only)
        except IndexCorruptedError as err:
            self._damage = err  # rebuild() can still run; everything else raises it
            return
        if self.manifest.item_count() == 0 and self._store.count() > 0:
            # an emptied or replaced manifest: rebuild would wipe the store, index re-embed all
            raise IndexCorruptedError(
                f"the manifest {self.directory / MANIFEST_NAME} records nothing, while the "
                f"vector store holds {self._store.count()} vector(s) (the manifest was emptied "
                "or replaced). Run `qwen3-vl-rag recover` (or MultimodalIndex.recover()) to "
                "write the manifest again from the store; the old file is kept beside it."
            )

    def _check_store(self, items: int) -> None:
        """Notice a store that lost vectors the manifest records (an interrupted rebuild)."""
        if self._store is None or self._damage is not None:
            return
        vectors = self._store.count()
        if self.manifest.get_meta(REBUILDING):
            what = "a rebuild of the vector store was interrupted"
        elif vectors < items:
            what = "vectors are missing from the vector store"
        else:
            return
        self._damage = IndexCorruptedError(
            f"{what}: it holds {vectors} vector(s) of the {items} item(s) the manifest "
            f"records, so searches would miss the others. Run `qwen3-vl-rag rebuild` (or "
            "MultimodalIndex.rebuild()) to write the store again from the manifest."
        )

    def _upgrade(self) -> None:
        """Bring an older manifest up to :data:`SCHEMA_VERSION`; record settings in the store.

        Left for later while the store is damaged (``rebuild`` first).
        """
        if self._store is None or self._damage is not None:
            return
        version = self.manifest.get_meta("schema_version")
        if not self.manifest.is_empty() and version != SCHEMA_VERSION:
            unused = self.manifest.forget_ambiguous_sources()
            if unused:
                self._store.delete(unused)
        self._record_settings()

    def _record_settings(self) -> None:
        """Record in the collection what a reader without the manifest needs (and ``recover``)."""
        self.store.record_settings(
            signature=self.signature,
            roots=self.manifest.get_meta(ROOTS_KEY),
            compute_dtypes=list(self.compute_dtypes()),
            reranker=self.manifest.get_meta(_RERANKER),
        )

    @property
    def store(self) -> ChromaStore:
        """The vector store (raises :class:`IndexCorruptedError` if it cannot be used)."""
        if self._damage is not None:
            raise self._damage
        assert self._store is not None
        return self._store

    # -- settings --------------------------------------------------------------------------------

    def _settle_signature(
        self, embedder: Qwen3VLEmbedder | None, dim: int | None, segment_seconds: float | None
    ) -> dict[str, Any]:
        recorded = self.manifest.get_meta("signature")
        if embedder is None:
            return dict(recorded or {})
        wanted = embedding_signature(embedder, dim, segment_seconds)
        if recorded is None:
            if self.mode == "read":
                return wanted
            self.manifest.set_meta({"signature": wanted, "schema_version": SCHEMA_VERSION})
            return wanted
        # settings not given are the index's own (its dimension, its clip length)
        if dim is None:
            wanted["dimension"] = recorded.get("dimension")
        if segment_seconds is None:
            wanted["segment_seconds"] = recorded.get("segment_seconds")
        changed = differences(recorded, wanted)
        if changed:
            raise IndexMismatchError(
                f"the index {self.directory} was built with other embedding settings "
                f"({mismatch_details(recorded, wanted, changed)}). Vectors of different models "
                "or settings cannot be compared: use the same model and settings, or build a "
                "new index in another directory."
            )
        if FINGERPRINT in wanted and FINGERPRINT not in recorded and self.mode == "write":
            # recorded before fingerprints, by this model: now known by what it is (same ids)
            recorded = {**recorded, FINGERPRINT: wanted[FINGERPRINT]}
            self.manifest.set_meta({"signature": recorded})
        return dict(recorded)

    def _media_options(self) -> MediaOptions:
        if not self.signature:
            return MediaOptions()
        budget = MediaBudget(
            max_pixels=int(self.signature["max_pixels"]),
            min_pixels=int(self.signature["min_pixels"]),
            factor=int(self.signature["factor"]),
            max_frames=int(self.signature["max_frames"]),
        )
        return MediaOptions(
            budget=budget,
            fps=float(self.signature["fps"]),
            segment_seconds=self.signature.get("segment_seconds"),
        )

    def require_embedder(self) -> Qwen3VLEmbedder:
        """The embedder, or a clear error when the index was opened without one."""
        if self.embedder is None:
            raise ConfigurationError("this needs an embedder: MultimodalIndex(dir, embedder).")
        return self.embedder

    def embedding_model(self) -> str | None:
        """The embedding model the index was built with, to load it again (``None``: not yet).

        A Hub id, or a local folder's absolute path (indexes made before paths were recorded
        absolute may hold a relative one).

        Raises:
            ModelLoadError: It was a local folder that no longer exists.
        """
        name = self.signature.get("model")
        # local folders are recorded absolute; before fingerprints, as they were given
        local = isinstance(name, str) and (
            os.path.isabs(name) or (FINGERPRINT not in self.signature and not could_be_hub_id(name))
        )
        return loadable_model(name, local=local, what="embedding model", index=str(self.directory))

    def reranker_model(self) -> str | None:
        """The reranker recorded with :meth:`record_reranker` (``None``: none recorded).

        Raises:
            ModelLoadError: It was a local folder that no longer exists.
        """
        name = self.manifest.get_meta(_RERANKER)
        local = isinstance(name, str) and os.path.isabs(name)
        return loadable_model(name, local=local, what="reranker", index=str(self.directory))

    def record_reranker(self, model: str | os.PathLike[str]) -> None:
        """Record the reranker to search this index with (a local folder by its absolute path)."""
        self._need_writer()
        name = recorded_name(model)
        if self.manifest.get_meta(_RERANKER) != name:
            self.manifest.set_meta({_RERANKER: name})
            self._record_settings()

    # -- operations ------------------------------------------------------------------------------

    def index(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        show_progress: bool = False,
        cluster: EmbeddingCluster | None = None,
    ) -> IndexReport:
        """Index files and folders: new and changed files are embedded, unchanged ones skipped.

        A changed file's old vectors are removed after its new ones are written. A file that
        fails to load keeps the vectors it had and is reported. Deleted files are removed only
        by :meth:`prune`.

        Args:
            paths: Files and folders.
            show_progress: Show progress bars (files met; items written, with items/s).
            cluster: Embed on a cluster instead of in this process, e.g.
                :class:`qwen3_vl_rag.distributed.RayCluster`: its workers read the files
                again (they must see them at the same paths) and embed them with the same
                model; this process lists, hashes and writes, with the same guarantees.
        """
        self._need_writer()
        embedder = self.require_embedder()
        if cluster is None:
            recorded = self.compute_dtypes()
            updated = with_dtype(recorded, compute_dtype(embedder))
            if updated != recorded:  # before any vector is written: the record never falls behind
                self.manifest.set_meta({COMPUTE_DTYPES: list(updated)})
        store = self.store  # a damaged store is reported now, not after hashing every file
        paths = list(paths)
        record_roots(self.manifest, paths)  # (ingest records them too)
        self._record_settings()  # the same, in the store, for readers elsewhere
        embedding: ItemEmbedding
        if cluster is None:
            embedding = LocalEmbedding(embedder, batch_items=self.batch_items)
        else:  # workers report what they compute in with their first vectors
            job = EmbeddingJob(
                embedder=embedder,
                signature=dict(self.signature),
                dimension=self.dimension,
                segment_seconds=self.signature.get("segment_seconds"),
                media_options=self.media_options,
                thumbnails=store.keeps_thumbnails,
            )
            embedding = cluster.embedding(job)
        target = IngestTarget(
            directory=self.directory,
            manifest=self.manifest,
            store=store,
            embedding=embedding,
            dimension=self.dimension,
            signature=dict(self.signature),
            signature_hash=self.signature_hash,
            media_options=self.media_options,
            workers=self.workers,
        )
        try:
            return ingest(target, paths, show_progress=show_progress)
        finally:
            embedding.close()

    def search(
        self,
        query_text: str | None = None,
        query_image: str | os.PathLike[str] | PILImage.Image | None = None,
        *,
        k: int = 20,
        rerank: bool = True,
        top_n: int = 5,
        filters: Mapping[str, Any] | None = None,
    ) -> list[SearchResult]:
        """Find the items that best match a text, an image, or both.

        Args:
            query_text: What to look for.
            query_image: An image to look for (a path or a PIL image).
            k: Items recalled by vector similarity.
            rerank: Rerank the recalled items with the reranker.
            top_n: Results returned.
            filters: A Chroma ``where`` filter on item metadata, e.g. ``{"kind": "page"}``.
        """
        embedder = self.require_embedder()
        self._warn_on_precision(embedder)
        source = SearchSource(
            directory=self.directory,
            manifest=self.manifest,
            store=self.store,
            embedder=embedder,
            reranker=self.reranker,
            dimension=self.dimension,
            media_options=self.media_options,
            pool=self.search_pool,
            sources_recorded=not self.detached,
        )
        return search(
            source, query_text, query_image, k=k, rerank=rerank, top_n=top_n, filters=filters
        )

    def status(self) -> IndexStatus:
        """Counts, model, dimension and size on disk."""
        counts = self.manifest.counts()
        vectors = self.store.count()
        if self.detached:
            counts["items"] = vectors
        size = sum(entry.stat().st_size for entry in self.directory.rglob("*") if entry.is_file())
        return IndexStatus(
            directory=str(self.directory),
            model=self.signature.get("model"),
            dimension=self.signature.get("dimension"),
            sources=counts.get("sources", 0),
            indexed=counts.get("indexed", 0),
            failed=counts.get("failed", 0),
            items=counts.get("items", 0),
            vectors=vectors,
            bytes_on_disk=size,
            compute_dtypes=self.compute_dtypes(),
            vector_store=self.store.location,
        )

    def compute_dtypes(self) -> tuple[str, ...]:
        """What the stored vectors were computed in, e.g. ``("float32",)`` (``()``: unknown)."""
        return tuple(self.manifest.get_meta(COMPUTE_DTYPES) or ())

    def precision_mismatch(self, embedder: Qwen3VLEmbedder | None = None) -> str | None:
        """Why queries embedded by ``embedder`` (default: the index's) may score a little off.

        ``None`` when the embedder computes in the dtype of the stored vectors, or either is
        unknown (a served model; an index made before dtypes were recorded).
        """
        chosen = embedder or self.embedder
        if chosen is None:
            return None
        return precision_mismatch(self.compute_dtypes(), compute_dtype(chosen))

    def _warn_on_precision(self, embedder: Qwen3VLEmbedder) -> None:
        if self._precision_warned:
            return
        message = self.precision_mismatch(embedder)
        if message is not None:
            self._precision_warned = True
            warnings.warn(message, PrecisionMismatchWarning, stacklevel=3)

    def prune(self) -> PruneReport:
        """Remove the sources whose files no longer exist, and vectors no source uses."""
        self._need_writer()
        store = self.store  # a damaged store is reported before the manifest forgets anything
        removed: list[str] = []
        stale: list[str] = []
        for source in self.manifest.sources():
            if not os.path.lexists(key_path(source.path)):
                removed.append(source.path)
                stale.extend(self.manifest.remove_source(source.path))
        current = self.manifest.current_ids()
        doomed = set(stale) | (store.all_ids() - current)
        # a server store's thumbnails of items gone (a rebuild keeps them all) go with them
        store.delete(sorted(doomed | (store.thumbnail_ids() - current)))
        return PruneReport(removed, len(doomed))

    def rebuild(self) -> int:
        """Write the vector store again from the manifest (no model or files needed).

        Returns:
            The number of vectors written.
        """
        self._need_writer()
        if self.manifest.item_count() == 0 and self._store_holds_vectors():
            raise IndexCorruptedError(
                f"the manifest {self.directory / MANIFEST_NAME} records no item while the "
                "vector store holds vectors: a rebuild would delete them all. Run "
                "`qwen3-vl-rag recover` to write the manifest again from the store."
            )
        # noted first: a kill before the last vector is written is seen on the next open
        self.manifest.set_meta({REBUILDING: True})
        if isinstance(self._store, ServerStore):
            self._store.recreate()
        else:
            assert self._store is None or isinstance(self._store, VectorStore)
            self._store = VectorStore.recreate(self.directory, self._store)
        self._damage = None
        self._record_settings()
        written = 0
        batch: list[Any] = []
        for row in self.manifest.current_items():
            batch.append(row)
            if len(batch) >= self.store.max_batch:
                written += self._restore(batch)
                batch = []
        if batch:
            written += self._restore(batch)
        self.manifest.delete_meta(REBUILDING)
        return written

    def _store_holds_vectors(self) -> bool:
        try:
            return self._store is not None and self._store.count() > 0
        except IndexCorruptedError:
            return True  # unreadable: the manifest must not be trusted to replace it

    @classmethod
    def recover(
        cls,
        directory: str | os.PathLike[str] = DEFAULT_INDEX_DIR,
        embedder: Qwen3VLEmbedder | None = None,
        *,
        dim: int | None = None,
        segment_seconds: float | None = None,
        server: str | None = None,
        collection: str | None = None,
    ) -> int:
        """Write a new manifest from the vector store, after the manifest was damaged or lost.

        The store keeps every vector with its metadata (source, kind, place in the file,
        content hash) and the embedding settings; each item's id is checked against them.
        The damaged manifest is kept beside the new one as ``manifest.sqlite3.damaged-<time>``.
        Sizes and times are not in the store, so the next ``index`` hashes each file once;
        files that failed before are tried again.

        Args:
            directory: The index directory.
            embedder: Only for stores written before the settings were recorded with them:
                the embedder the index was built with.
            dim: With ``embedder``: the index's Matryoshka dimension.
            segment_seconds: With ``embedder``: the index's clip length.
            server: The Chroma server holding the index's vectors (with ``collection``).
            collection: Its collection (default ``"qwen3-vl-rag"``).

        Returns:
            The number of items recovered.

        Raises:
            ConfigurationError: The manifest is intact, or there is no store to recover from.
            IndexMismatchError: The vectors were not made with the given settings.
        """
        store = None
        if server is not None:
            store = ServerStore(server, collection or DEFAULT_COLLECTION, create=False)
        elif collection:
            raise ConfigurationError("collection= names a collection on a server: give server=.")
        return recover_manifest(
            Path(directory), embedder, dim=dim, segment_seconds=segment_seconds, store=store
        )

    def _restore(self, rows: list[Any]) -> int:
        import numpy as np

        vectors = check_vectors(np.stack([row.vector for row in rows]), self.dimension)
        self.store.upsert(
            [row.id for row in rows],
            vectors,
            [row.metadata for row in rows],
            [row.text for row in rows],
        )
        return len(rows)

    def _need_writer(self) -> None:
        if self.mode != "write":
            raise ConfigurationError("this index was opened read-only (mode='read').")

    def search_pool(self) -> WorkerPool:
        """The worker processes searches decode reopened files in (started on first use).

        Kept for the index's lifetime, so a session of searches starts them once.
        """
        if self._search_pool is None:
            from qwen3_vl_rag.media.isolation import WorkerPool

            budget = self.media_options.budget
            self._search_pool = WorkerPool(
                max(1, self.workers), timeout=budget.timeout, memory_limit=budget.worker_memory
            )
        return self._search_pool

    def close(self) -> None:
        """Stop the search workers, close the vector store and the manifest, release the lock."""
        if self._search_pool is not None:
            self._search_pool.close()
            self._search_pool = None
        if self._lease is not None:
            self._lease.release()
            self._lease = None
        if self._store is not None:
            self._store.close()
        if getattr(self, "manifest", None) is not None:
            self.manifest.close()
        self._lock.release()

    def __enter__(self) -> MultimodalIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
