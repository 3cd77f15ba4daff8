"""Indexing files and folders: skip what is unchanged, embed in batches across files, write, record.

Order of operations, for crash safety: a batch is embedded (here, or on a Ray cluster: see
:mod:`._embedding`), written to the vector store, then recorded in the manifest (not yet
current). When all of a file's items are written, one manifest transaction makes them the
file's items and forgets the previous ones, whose vectors are deleted last. A kill at any point
loses no acknowledged batch (a re-run reuses recorded vectors instead of embedding them again)
and never leaves a file half old, half new in the manifest.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from qwen3_vl_rag.checked_files import display_path
from qwen3_vl_rag.errors import IndexMismatchError
from qwen3_vl_rag.index._embedding import EmbeddedBatch, ItemEmbedding, ItemFailure, PendingItem
from qwen3_vl_rag.index._ids import item_id, item_locator
from qwen3_vl_rag.index._manifest import ItemRow, Manifest
from qwen3_vl_rag.index._paths import path_key
from qwen3_vl_rag.index._precision import COMPUTE_DTYPES, with_dtype
from qwen3_vl_rag.index._reopen import record_roots
from qwen3_vl_rag.index._signature import differences, mismatch_details
from qwen3_vl_rag.index._store import ChromaStore, check_vectors
from qwen3_vl_rag.index._thumbnails import keep_thumbnails
from qwen3_vl_rag.media.folders import FileReport, FolderScan
from qwen3_vl_rag.media.items import MediaItem
from qwen3_vl_rag.media.loaders import MediaOptions

__all__ = ["FileOutcome", "IndexReport", "IngestTarget", "ingest"]

logger = logging.getLogger(__name__)

Outcome = Literal["indexed", "unchanged", "skipped", "failed"]

# Modification times are as coarse as 2 s on some filesystems (FAT, some network mounts).
_RACY_NS = 2_000_000_000


#: What one run did with one file (or with an entry that is not a file): a media scan's
#: per-file report, with the index's outcomes as its status.
FileOutcome = FileReport[Outcome]


@dataclass
class IndexReport:
    """The outcome of :meth:`MultimodalIndex.index`: per file, and what was computed and written.

    Attributes:
        files: Every file met, in order.
        embedded: Items whose vectors were computed in this run.
        reused: Items whose vectors were already recorded (an interrupted run, a copied file).
        deleted: Vectors removed because their file changed.
        seconds: Wall-clock time of the run.

    Example:
        >>> from qwen3_vl_rag import MultimodalIndex, Qwen3VLEmbedder
        >>> embedder = Qwen3VLEmbedder.from_pretrained("Qwen/Qwen3-VL-Embedding-2B")
        >>> with MultimodalIndex("my-index", embedder) as index:
        ...     first = index.index(["chart.png", "photo.png"])
        ...     again = index.index(["chart.png", "photo.png"])  # nothing changed: nothing embedded
        >>> first.counts(), first.embedded, first.complete
        ({'indexed': 2, 'unchanged': 0, 'skipped': 0, 'failed': 0, 'items': 2}, 2, True)
        >>> [(Path(file.path).name, file.status) for file in again.files]  # FileOutcome
        [('chart.png', 'unchanged'), ('photo.png', 'unchanged')]
    """

    files: list[FileOutcome] = field(default_factory=list)
    embedded: int = 0
    reused: int = 0
    deleted: int = 0
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        """Files per outcome, and the items of the indexed ones."""
        counts = {"indexed": 0, "unchanged": 0, "skipped": 0, "failed": 0}
        for outcome in self.files:
            counts[outcome.status] += 1
        counts["items"] = sum(f.items for f in self.files if f.status == "indexed")
        return counts

    @property
    def complete(self) -> bool:
        """True when no file was skipped or failed."""
        return not any(f.status in ("skipped", "failed") for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "counts": self.counts(),
            "embedded": self.embedded,
            "reused": self.reused,
            "deleted": self.deleted,
            "seconds": round(self.seconds, 3),
            "files": [asdict(f) for f in self.files],
        }


@dataclass(frozen=True)
class IngestTarget:
    """What indexing uses of an open index: where it writes, with which model and settings.

    Attributes:
        directory: The index directory (never indexed itself).
        manifest: Sources and items are recorded here.
        store: Vectors are written here.
        embedding: Where the items become vectors (here, or on a cluster).
        dimension: Matryoshka dimension stored.
        signature: The index's embedding settings (vectors made elsewhere must match them).
        signature_hash: The settings' hash, part of every item id.
        media_options: How files are decoded (budgets, clip length).
        workers: Decoding worker processes.
    """

    directory: Path
    manifest: Manifest
    store: ChromaStore
    embedding: ItemEmbedding
    dimension: int
    signature: dict[str, Any]
    signature_hash: str
    media_options: MediaOptions
    workers: int


@dataclass
class _File:
    """A file being indexed: its items are written over one or more batches."""

    label: str
    path: Path
    digest: str
    size: int
    mtime_ns: int | None
    outcome: FileOutcome
    ids: list[str] = field(default_factory=list)
    waiting: int = 0
    failed: bool = False


@dataclass
class _Entry:
    file: _File
    id: str
    item: MediaItem


class _Run:
    def __init__(self, index: IngestTarget, report: IndexReport, progress: _Progress) -> None:
        self.index = index
        self.report = report
        self.progress = progress
        self.queue: list[_Entry] = []
        self.open_files: list[_File] = []
        self.thumbnails: dict[str, bytes] = {}  # made by a cluster's workers, until written

    # -- per file --------------------------------------------------------------------------------

    def file(self, scan: FolderScan, path: Path) -> None:
        manifest = self.index.manifest
        label = path_key(path)  # exact and injective: two names never share a record
        shown = display_path(path)
        # opened once, checked on the handle (regular, the file the walk saw, inside the folder,
        # within the byte budget) before anything is hashed; hashed and read from that handle
        opened = scan.open_file(path)
        if opened is None:
            self._not_loaded(label, shown, scan.report.files[-1] if scan.report.files else None)
            return
        with opened:
            identity = opened.identity
            row = manifest.source(label)
            if (
                row
                and row.status == "indexed"
                and (row.size, row.mtime_ns) == (identity.size, identity.mtime_ns)
            ):
                self._unchanged(shown, row.items)
                return
            checked_at = time.time_ns()
            try:
                digest = opened.sha256()
            except OSError as exc:
                self.report.files.append(
                    FileOutcome(shown, "skipped", reason=f"cannot be read ({exc.strerror or exc})")
                )
                return
            # a write after the hash, within the same timestamp tick, would keep this mtime: an
            # mtime that recent is not trusted, so the next run hashes the file again (as git does)
            mtime_ns = identity.mtime_ns if checked_at - identity.mtime_ns > _RACY_NS else None
            if row and row.status == "indexed" and row.content_hash == digest:
                manifest.touch_source(label, identity.size, mtime_ns)
                self._unchanged(shown, row.items)
                return
            items = list(scan.load_file(path, opened))
        scanned = scan.report.files[-1] if scan.report.files else None
        if scanned is None or scanned.path != shown or scanned.status != "loaded":
            self._not_loaded(label, shown, scanned)
            return
        outcome = FileOutcome(shown, "indexed", kind=scanned.kind, warnings=list(scanned.warnings))
        self.report.files.append(outcome)
        current = _File(label, path, digest, identity.size, mtime_ns, outcome)
        signature = self.index.signature_hash
        entries = [
            _Entry(current, item_id(signature, digest, item_locator(item)), item) for item in items
        ]
        # the same item twice in a file (two identical clips) is stored once
        unique = list({entry.id: entry for entry in entries}.values())
        current.ids = [entry.id for entry in unique]
        current.waiting = len(unique)
        self.open_files.append(current)
        self._reuse(unique)
        if current.waiting == 0:
            self._finish_ready()

    def _unchanged(self, shown: str, items: int) -> None:
        self.report.files.append(FileOutcome(shown, "unchanged", items=items))

    def _not_loaded(self, label: str, shown: str, scanned: Any) -> None:
        if scanned is None or scanned.path != shown:
            self.report.files.append(FileOutcome(shown, "skipped", reason="not loaded"))
            return
        self.report.files.append(_from_scan(scanned))
        if scanned.status == "failed":
            self.index.manifest.mark_failed(label, f"{scanned.error}: {scanned.reason}")

    def _reuse(self, entries: list[_Entry]) -> None:
        """Reuse recorded vectors (an interrupted run, the same bytes elsewhere): no embedding."""
        known = self.index.manifest.vectors([entry.id for entry in entries])
        reused = [entry for entry in entries if entry.id in known]
        if reused:
            vectors = np.stack([known[entry.id] for entry in reused])
            self._write(reused, vectors)
            self.report.reused += len(reused)
        self.queue.extend(entry for entry in entries if entry.id not in known)
        window = self.index.embedding.window
        while len(self.queue) >= window:
            self.flush(window)

    # -- batches ---------------------------------------------------------------------------------

    def flush(self, limit: int | None = None) -> None:
        """Embed and write the queued items (at most ``limit``)."""
        batch = self.queue[:limit] if limit else list(self.queue)
        del self.queue[: len(batch)]
        # the same bytes met again after an earlier batch recorded them: reuse, do not embed
        known = self.index.manifest.vectors(sorted({entry.id for entry in batch}))
        if known:
            recorded = [entry for entry in batch if entry.id in known]
            self._write(recorded, np.stack([known[entry.id] for entry in recorded]))
            self.report.reused += len(recorded)
            batch = [entry for entry in batch if entry.id not in known]
        # the same bytes twice in one batch (a copied file) are embedded once
        waiting: dict[str, list[_Entry]] = {}
        for entry in batch:
            waiting.setdefault(entry.id, []).append(entry)
        pending = [
            PendingItem(id_, first.item, first.file.label, first.file.path, first.file.digest)
            for id_, (first, *_) in waiting.items()
        ]
        if pending:
            for result in self.index.embedding.embed(pending, self.index.dimension):
                if isinstance(result, ItemFailure):
                    # every file holding these bytes fails alike (a copy, the same failure)
                    for entry in waiting.pop(result.id, ()):
                        if not entry.file.failed:
                            self._fail(entry.file, result)
                else:
                    self._take(result, waiting)
                self._finish_ready()  # files finish as their last results come in
        self._finish_ready()

    def _take(self, result: EmbeddedBatch, waiting: dict[str, list[_Entry]]) -> None:
        """Write a batch of vectors for every entry still waiting for them."""
        if result.signature is not None:
            self._check_settings(result.signature)
        if result.dtype is not None:
            self._record_dtype(result.dtype)
        if result.thumbnails:  # kept until their items are written (dropped with a failed file)
            self.thumbnails.update(
                (id_, jpeg) for id_, jpeg in result.thumbnails.items() if id_ in waiting
            )
        entries: list[_Entry] = []
        rows: list[np.ndarray] = []
        embedded = 0
        for id_, vector in zip(result.ids, result.vectors, strict=True):
            alive = [entry for entry in waiting.pop(id_, ()) if not entry.file.failed]
            embedded += bool(alive)
            entries.extend(alive)
            rows.extend([vector] * len(alive))
        if entries:
            self._write(entries, np.stack(rows))
        self.report.embedded += embedded
        self.report.reused += len(entries) - embedded

    def _check_settings(self, signature: dict[str, Any]) -> None:
        """Refuse vectors a worker made with another model or other settings."""
        changed = differences(self.index.signature, signature)
        if changed:
            raise IndexMismatchError(
                "a worker embedded with other settings than the index's "
                f"({mismatch_details(self.index.signature, signature, changed)}): every worker "
                "must load the same model with the same pixel and frame budgets; nothing it "
                "computed was written."
            )

    def _record_dtype(self, dtype: str) -> None:
        """Record what a worker computed in, before its vectors are written."""
        manifest = self.index.manifest
        recorded = tuple(manifest.get_meta(COMPUTE_DTYPES) or ())
        updated = with_dtype(recorded, dtype)
        if updated != recorded:
            manifest.set_meta({COMPUTE_DTYPES: list(updated)})
            self.index.store.record_settings(compute_dtypes=list(updated))  # for readers

    def _write(self, entries: Sequence[_Entry], vectors: np.ndarray) -> None:
        index = self.index
        vectors = check_vectors(vectors, index.dimension)
        metadatas = [_stored_metadata(entry) for entry in entries]
        texts = [entry.item.text for entry in entries]
        ids = [entry.id for entry in entries]
        # identical files met in one batch share an id: Chroma takes each id once per batch
        first = sorted(
            {item: position for position, item in reversed(list(enumerate(ids)))}.values()
        )
        index.store.upsert(
            [ids[i] for i in first],
            vectors[first],
            [metadatas[i] for i in first],
            [texts[i] for i in first],
        )
        if index.store.keeps_thumbnails:  # for readers without the files (a server store)
            written = [(ids[i], entries[i].item) for i in first]
            keep_thumbnails(index.store, written, self.thumbnails)
            for item_id, _ in written:
                self.thumbnails.pop(item_id, None)
        index.manifest.add_items(
            ItemRow(
                entry.id,
                entry.file.label,
                entry.file.digest,
                entry.item.kind,
                item_locator(entry.item),
                metadata,
                entry.item.text,
                vector,
            )
            for entry, metadata, vector in zip(entries, metadatas, vectors, strict=True)
        )
        for entry in entries:
            entry.file.waiting -= 1
        self.progress.items_written(entries)

    def _fail(self, file: _File, failure: ItemFailure) -> None:
        """A page or clip failed while read or embedded: the file keeps its previous vectors."""
        file.failed = True
        outcome = file.outcome
        outcome.status, outcome.reason = "failed", failure.reason
        outcome.stage, outcome.error = failure.stage, failure.error
        self.queue = [entry for entry in self.queue if entry.file is not file]
        self.open_files.remove(file)
        written = set(file.ids) - self.index.manifest.current_ids()
        self.index.store.delete(sorted(written & self.index.store.existing(sorted(written))))
        self.index.manifest.mark_failed(file.label, f"{outcome.error}: {failure.reason}")

    def _finish_ready(self) -> None:
        for file in [f for f in self.open_files if f.waiting == 0 and not f.failed]:
            stale = self.index.manifest.finish_source(
                file.label, file.digest, file.size, file.mtime_ns, file.ids
            )
            if stale:
                self.index.store.delete(stale)
                self.report.deleted += len(stale)
            file.outcome.items = len(file.ids)
            self.open_files.remove(file)


def _stored_metadata(entry: _Entry) -> dict[str, Any]:
    item = entry.item
    return {
        **dict(item.metadata),
        "source": entry.file.label,
        "kind": item.kind,
        "locator": item.locator,
        "content_hash": entry.file.digest,
    }


_PLURALS = {"page": "pages", "image": "images", "video": "videos", "clip": "clips"}


class _Progress:
    """Two bars: files met, with their outcomes so far; items written, by kind, with items/s."""

    def __init__(self, report: IndexReport, *, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.report = report
        options: dict[str, Any] = {"disable": not enabled, "dynamic_ncols": True}
        self.files = tqdm(desc="files", unit="file", position=0, **options)
        self.items = tqdm(desc="items", unit="item", position=1, **options)
        self.kinds: dict[str, int] = {}

    def files_met(self) -> None:
        if self.files.disable:
            return
        self.files.update(len(self.report.files) - self.files.n)
        counts = self.report.counts()
        shown = {k: counts[k] for k in ("indexed", "unchanged", "skipped", "failed") if counts[k]}
        self.files.set_postfix(shown, refresh=False)

    def items_written(self, entries: Sequence[_Entry]) -> None:
        if self.items.disable or not entries:
            return
        for entry in entries:
            name = _PLURALS.get(entry.item.kind, entry.item.kind)
            self.kinds[name] = self.kinds.get(name, 0) + 1
        self.items.set_postfix(self.kinds, refresh=False)
        self.items.update(len(entries))

    def close(self) -> None:
        self.files_met()
        self.items.close()
        self.files.close()


def ingest(
    index: IngestTarget, paths: Iterable[str | os.PathLike[str]], *, show_progress: bool
) -> IndexReport:
    """Index files and folders into ``index``; see :meth:`MultimodalIndex.index`."""
    started = time.perf_counter()
    report = IndexReport()
    progress = _Progress(report, enabled=show_progress)
    paths = list(paths)
    record_roots(index.manifest, paths)  # search reopens files only inside these
    try:
        run = _Run(index, report, progress)
        for root in paths:
            with FolderScan(
                Path(os.path.abspath(root)),
                index.media_options,
                workers=index.workers,
                exclude=(index.directory,),  # never index the index's own files (thumbnails...)
            ) as scan:
                count = len(scan.report.files)
                for path in scan.files():
                    for skipped in scan.report.files[count:]:
                        report.files.append(_from_scan(skipped))
                    run.file(scan, path)
                    count = len(scan.report.files)
                    progress.files_met()
                run.flush()  # the items of this root render through its worker pool
                for skipped in scan.report.files[count:]:
                    report.files.append(_from_scan(skipped))
    finally:
        progress.close()
    report.seconds = time.perf_counter() - started
    return report


def _from_scan(scanned: Any) -> FileOutcome:
    return FileOutcome(
        scanned.path,
        scanned.status,
        kind=scanned.kind,
        reason=scanned.reason,
        stage=scanned.stage,
        error=scanned.error,
        warnings=list(scanned.warnings),
    )
