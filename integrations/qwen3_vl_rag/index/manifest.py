"""The index's own record of sources and items, kept in SQLite beside the vector store.

It holds every item's vector, metadata and text, so the vector store can be rebuilt from it
without the model or the files, and what each source file was when it was indexed (content hash,
size, time, outcome). A row is committed only after the vector store acknowledged the write it
describes, in one transaction per batch, so a crash at any moment leaves a manifest that a re-run
can trust: acknowledged items are reused, not embedded again.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ItemRow", "Manifest", "SourceRow"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sources (
    path TEXT PRIMARY KEY,
    content_hash TEXT,
    size INTEGER,
    mtime_ns INTEGER,
    status TEXT NOT NULL,
    items INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    id TEXT NOT NULL,
    source TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    current INTEGER NOT NULL,
    kind TEXT NOT NULL,
    locator TEXT NOT NULL,
    metadata TEXT NOT NULL,
    text TEXT,
    vector BLOB NOT NULL,
    PRIMARY KEY (id, source)
);
CREATE INDEX IF NOT EXISTS items_by_source ON items (source);
"""


@dataclass(frozen=True)
class SourceRow:
    """What a source file was when it was last indexed."""

    path: str
    content_hash: str | None
    size: int | None
    mtime_ns: int | None
    status: str
    items: int
    error: str | None


@dataclass(frozen=True)
class ItemRow:
    """One item as stored: everything needed to write it to the vector store again."""

    id: str
    source: str
    content_hash: str
    kind: str
    locator: str
    metadata: dict[str, Any]
    text: str | None
    vector: np.ndarray


class Manifest:
    """The SQLite manifest of one index directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a committed batch survives power loss
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    # -- meta ------------------------------------------------------------------------------------

    def get_meta(self, key: str) -> Any:
        """A stored setting (JSON), or ``None``."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def set_meta(self, values: dict[str, Any]) -> None:
        """Store settings (JSON) in one transaction."""
        with self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(key, json.dumps(value, sort_keys=True)) for key, value in values.items()],
            )

    # -- sources ---------------------------------------------------------------------------------

    def source(self, path: str) -> SourceRow | None:
        """The source's last record."""
        row = self._db.execute(
            "SELECT path, content_hash, size, mtime_ns, status, items, error FROM sources "
            "WHERE path = ?",
            (path,),
        ).fetchone()
        return None if row is None else SourceRow(*row)

    def sources(self) -> list[SourceRow]:
        """Every source, by path."""
        rows = self._db.execute(
            "SELECT path, content_hash, size, mtime_ns, status, items, error FROM sources "
            "ORDER BY path"
        ).fetchall()
        return [SourceRow(*row) for row in rows]

    def touch_source(self, path: str, size: int, mtime_ns: int | None) -> None:
        """Record a new modification time for an unchanged file (no re-hash next time)."""
        with self._transaction():
            self._db.execute(
                "UPDATE sources SET size = ?, mtime_ns = ? WHERE path = ?", (size, mtime_ns, path)
            )

    def mark_failed(self, path: str, error: str) -> None:
        """Note that the file failed to load; its indexed items (if any) are kept."""
        with self._transaction():
            self._db.execute(
                "INSERT INTO sources (path, status, error, updated_at) VALUES (?, 'failed', ?, ?) "
                "ON CONFLICT(path) DO UPDATE SET status = 'failed', error = excluded.error, "
                "mtime_ns = NULL, updated_at = excluded.updated_at",
                (path, error, time.time()),
            )

    def finish_source(
        self, path: str, content_hash: str, size: int, mtime_ns: int | None, ids: Sequence[str]
    ) -> list[str]:
        """Make ``ids`` the source's items and forget its previous ones.

        Returns:
            The ids no source uses any more (to delete from the vector store).
        """
        with self._transaction():
            previous = self._ids_of(path)
            keep = set(ids)
            stale = [item for item in previous if item not in keep]
            self._db.executemany(
                "DELETE FROM items WHERE id = ? AND source = ?", [(item, path) for item in stale]
            )
            self._db.execute("UPDATE items SET current = 1 WHERE source = ?", (path,))
            self._db.execute(
                "INSERT INTO sources (path, content_hash, size, mtime_ns, status, items, error, "
                "updated_at) VALUES (?, ?, ?, ?, 'indexed', ?, NULL, ?) ON CONFLICT(path) DO "
                "UPDATE SET content_hash = excluded.content_hash, size = excluded.size, "
                "mtime_ns = excluded.mtime_ns, status = 'indexed', items = excluded.items, "
                "error = NULL, updated_at = excluded.updated_at",
                (path, content_hash, size, mtime_ns, len(keep), time.time()),
            )
            return self._unused(stale)

    def remove_source(self, path: str) -> list[str]:
        """Forget a source and its items; return the ids no source uses any more."""
        with self._transaction():
            ids = self._ids_of(path)
            self._db.execute("DELETE FROM items WHERE source = ?", (path,))
            self._db.execute("DELETE FROM sources WHERE path = ?", (path,))
            return self._unused(ids)

    # -- items -----------------------------------------------------------------------------------

    def add_items(self, rows: Iterable[ItemRow]) -> None:
        """Record items written to the vector store (not yet the source's current items)."""
        with self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO items (id, source, content_hash, current, kind, locator, "
                "metadata, text, vector) VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?)",
                [
                    (
                        row.id,
                        row.source,
                        row.content_hash,
                        row.kind,
                        row.locator,
                        json.dumps(row.metadata, sort_keys=True),
                        row.text,
                        np.asarray(row.vector, dtype=np.float32).tobytes(),
                    )
                    for row in rows
                ],
            )

    def vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors of any of ``ids`` (from whichever source holds them)."""
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for item, blob in self._db.execute(
                f"SELECT id, vector FROM items WHERE id IN ({marks})", chunk
            ):
                found[item] = np.frombuffer(blob, dtype=np.float32)
        return found

    def current_items(self) -> Iterator[ItemRow]:
        """Every current item once (an id shared by two sources comes once)."""
        query = (
            "SELECT id, source, content_hash, kind, locator, metadata, text, vector FROM items "
            "WHERE current = 1 GROUP BY id ORDER BY id"
        )
        for row in self._db.execute(query):
            item, source, digest, kind, locator, metadata, text, blob = row
            yield ItemRow(
                item,
                source,
                digest,
                kind,
                locator,
                json.loads(metadata),
                text,
                np.frombuffer(blob, dtype=np.float32),
            )

    def current_ids(self) -> set[str]:
        """Ids of every current item."""
        return {row[0] for row in self._db.execute("SELECT id FROM items WHERE current = 1")}

    def pending_ids(self, path: str) -> list[str]:
        """Items of ``path`` written during an unfinished run (not current yet)."""
        rows = self._db.execute(
            "SELECT id FROM items WHERE source = ? AND current = 0", (path,)
        ).fetchall()
        return [row[0] for row in rows]

    def counts(self) -> dict[str, int]:
        """Sources per status, and current items."""
        counts = dict(self._db.execute("SELECT status, COUNT(*) FROM sources GROUP BY status"))
        (items,) = self._db.execute(
            "SELECT COUNT(DISTINCT id) FROM items WHERE current = 1"
        ).fetchone()
        return {"sources": sum(counts.values()), **counts, "items": items}

    # -- helpers ---------------------------------------------------------------------------------

    def _ids_of(self, path: str) -> list[str]:
        rows = self._db.execute("SELECT id FROM items WHERE source = ?", (path,)).fetchall()
        return [row[0] for row in rows]

    def _unused(self, ids: Sequence[str]) -> list[str]:
        unused = []
        for item in ids:
            row = self._db.execute("SELECT 1 FROM items WHERE id = ? LIMIT 1", (item,)).fetchone()
            if row is None:
                unused.append(item)
        return unused

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *rest: object) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")
