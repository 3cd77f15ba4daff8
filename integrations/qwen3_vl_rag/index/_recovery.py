"""Writing the manifest again from the vector store, after the manifest was damaged or lost.

The manifest is the index's source of truth, but everything in it that matters for search is
also in the store: each item's vector, its metadata (source key, kind, place in the file, content
hash) and text, and (since schema 2) the embedding settings in the collection's metadata. Item
ids hash those settings, the content hash and the place in the file, so every recovered row is
checked against its id before anything is written: a store from other settings is refused.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qwen3_vl_rag.errors import ConfigurationError, IndexCorruptedError, IndexMismatchError
from qwen3_vl_rag.index._ids import item_id, locator_of, signature_hash
from qwen3_vl_rag.index._lock import IndexLock
from qwen3_vl_rag.index._manifest import MANIFEST_NAME, SCHEMA_VERSION, ItemRow, Manifest
from qwen3_vl_rag.index._precision import COMPUTE_DTYPES
from qwen3_vl_rag.index._reopen import ROOTS_KEY
from qwen3_vl_rag.index._signature import differences, embedding_signature, mismatch_details
from qwen3_vl_rag.index._store import STORE_DIR, ChromaStore, StoredItem, VectorStore

if TYPE_CHECKING:
    from qwen3_vl_rag.engine import Qwen3VLEmbedder

__all__ = ["recover_manifest"]


def recover_manifest(
    directory: Path,
    embedder: Qwen3VLEmbedder | None = None,
    *,
    dim: int | None = None,
    segment_seconds: float | None = None,
    store: ChromaStore | None = None,
) -> int:
    """See :meth:`MultimodalIndex.recover`.

    ``store``: a server store to recover from (closed here), instead of the directory's own.
    """
    if store is not None:  # a new machine may recover into a new directory
        directory.mkdir(parents=True, exist_ok=True)
    with IndexLock(directory, "write"):
        manifest_path = directory / MANIFEST_NAME
        _refuse_an_intact_manifest(manifest_path)
        if store is None and not (directory / STORE_DIR / "chroma.sqlite3").is_file():
            raise ConfigurationError(
                f"{directory} has no vector store ({STORE_DIR}/) to recover the manifest from."
            )
        store = store or VectorStore(directory)
        try:
            signature = _signature(store, embedder, dim, segment_seconds)
            rows = _checked_rows(store, signature)
            settings = store.recorded_settings()
        finally:
            store.close()
        meta: dict[str, Any] = {"signature": signature, "schema_version": SCHEMA_VERSION}
        # what the store records of the folders and dtypes (search reopens files in those)
        if isinstance(settings.get("roots"), list):
            meta[ROOTS_KEY] = settings["roots"]
        if isinstance(settings.get("compute_dtypes"), list):
            meta[COMPUTE_DTYPES] = settings["compute_dtypes"]
        if isinstance(settings.get("reranker"), str):
            meta["reranker"] = settings["reranker"]  # the manifest key record_reranker writes
        _set_aside(manifest_path)
        manifest = Manifest(manifest_path)
        try:
            manifest.restore(rows, meta)
        finally:
            manifest.close()
        return len(rows)


def _refuse_an_intact_manifest(path: Path) -> None:
    """Recovery replaces only a damaged, empty or missing manifest."""
    if not path.is_file():
        return
    try:
        manifest = Manifest(path, read_only=True)
    except IndexCorruptedError:
        return
    try:
        intact = manifest.is_intact() and manifest.item_count() > 0
    except IndexCorruptedError:
        intact = False
    finally:
        manifest.close()
    if intact:
        raise ConfigurationError(
            f"the manifest {path} is intact and records items: nothing to recover. If the "
            "vector store is damaged, run `qwen3-vl-rag rebuild` instead."
        )


def _signature(
    store: ChromaStore,
    embedder: Qwen3VLEmbedder | None,
    dim: int | None,
    segment_seconds: float | None,
) -> dict[str, Any]:
    recorded = store.recorded_signature()
    if embedder is None:
        if recorded is None:
            raise ConfigurationError(
                "the vector store does not record its embedding settings (it was written "
                "before they were kept with it): recover with the model it was built with, "
                "`qwen3-vl-rag recover --model ID [--dim N] [--segment-seconds S]` (or "
                "MultimodalIndex.recover(dir, embedder, dim=..., segment_seconds=...))."
            )
        return recorded
    given = embedding_signature(embedder, dim, segment_seconds)
    if recorded is None:
        return given
    changed = differences(recorded, given)
    if changed:
        raise IndexMismatchError(
            "the vector store was built with other embedding settings than the ones given "
            f"({mismatch_details(recorded, given, changed)}); recover without a model to use "
            "the store's own."
        )
    return recorded  # its ids hash the model's name as recorded


def _checked_rows(store: ChromaStore, signature: dict[str, Any]) -> list[ItemRow]:
    """Every stored item as a manifest row, each checked against its id."""
    digest = signature_hash(signature)
    dimension = int(signature["dimension"])
    rows: list[ItemRow] = []
    refused = 0
    total = 0
    for item in store.items():
        total += 1
        row = _row(item, digest, dimension)
        if row is None:
            refused += 1
        else:
            rows.append(row)
    if refused:
        raise IndexMismatchError(
            f"{refused} of the store's {total} vector(s) do not match the embedding settings "
            "(their ids are not those of these settings, or their metadata is incomplete); "
            "nothing was written. Give the model and settings the index was built with."
        )
    return rows


def _row(item: StoredItem, digest: str, dimension: int) -> ItemRow | None:
    meta = item.metadata
    try:
        source, kind, file_hash = str(meta["source"]), str(meta["kind"]), str(meta["content_hash"])
        locator = locator_of(kind, meta)
    except (KeyError, TypeError, ValueError):
        return None
    if item_id(digest, file_hash, locator) != item.id or item.vector.shape != (dimension,):
        return None
    return ItemRow(item.id, source, file_hash, kind, locator, meta, item.document, item.vector)


def _set_aside(path: Path) -> Path | None:
    """Move a damaged manifest (and its journal files) out of the way; it is never deleted."""
    if not path.exists():
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return None
    stamp = time.strftime("%Y%m%dT%H%M%S")
    kept = path.with_name(f"{path.name}.damaged-{stamp}")
    number = 1
    while kept.exists():
        number += 1
        kept = path.with_name(f"{path.name}.damaged-{stamp}-{number}")
    os.replace(path, kept)
    for suffix in ("-wal", "-shm"):
        journal = Path(f"{path}{suffix}")
        if journal.exists():
            os.replace(journal, Path(f"{kept}{suffix}"))
    return kept
