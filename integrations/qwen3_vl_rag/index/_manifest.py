"""The index's own record of sources and items, kept in SQLite beside the vector store.

It holds every item's vector, metadata and text, so the vector store can be rebuilt from it
without the model or the files, and what each source file was when it was indexed (content hash,
size, time, outcome). A row is committed only after the vector store acknowledged the write it
describes, in one transaction per batch, so a crash at any moment leaves a manifest that a re-run
can trust: acknowledged items are reused, not embedded again.

SQLite's own failures are translated where they happen: a file that is not (or no longer) a
database is :class:`~qwen3_vl_rag.errors.IndexCorruptedError` naming ``recover`` (the vector store
still holds every vector with its metadata), a full disk or a read-only directory is
:class:`~qwen3_vl_rag.errors.IndexStorageError`. A read-only manifest is opened without writing
anything, so an index on a read-only file system can be searched.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import numpy as np

from qwen3_vl_rag.errors import ConfigurationError, IndexCorruptedError, IndexStorageError
from qwen3_vl_rag.index._faults import disk_fault, read_only_fault

__all__ = ["ItemRow", "Manifest", "SourceRow"]

# 2: source keys are index.paths.path_key (exact bytes); 1 stored a lossy display form
SCHEMA_VERSION = 2
MANIFEST_NAME = "manifest.sqlite3"
REBUILDING = "rebuild_in_progress"

_P = ParamSpec("_P")
_R = TypeVar("_R")

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


def _guarded(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Translate SQLite's errors in a :class:`Manifest` method into the index's typed errors."""

    @functools.wraps(method)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except sqlite3.Error as exc:
            manifest = args[0]
            assert isinstance(manifest, Manifest)
            raise manifest.translate(exc) from exc

    return call


class Manifest:
    """The SQLite manifest of one index directory.

    Args:
        path: The database file.
        read_only: Open without writing anything (no journal files, no schema): for readers,
            and for indexes on read-only file systems.

    Raises:
        IndexCorruptedError: The file is not a manifest (random bytes, truncated, no tables).
        IndexStorageError: It cannot be opened (a full disk, a read-only directory).
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        self._db: sqlite3.Connection | None = None
        try:
            if read_only:
                self._db = _connect_read_only(path)
                tables = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master")}
                if not {"meta", "sources", "items"} <= tables:
                    raise IndexCorruptedError(self._damaged_text("it holds no manifest tables"))
            else:
                self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")  # a committed batch survives power loss
                self.db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            self.close()
            raise self.translate(exc) from exc
        except BaseException:
            self.close()
            raise

    @classmethod
    def detached(cls, meta: dict[str, Any]) -> Manifest:
        """A manifest in memory holding only settings, and no source.

        What a reader of a server store on another machine knows: the collection's metadata.
        """
        manifest = cls(Path(":memory:"))
        manifest.set_meta(meta)
        return manifest

    @property
    def db(self) -> sqlite3.Connection:
        """The open connection."""
        if self._db is None:
            raise ConfigurationError(f"the manifest {self.path} is closed.")
        return self._db

    def close(self) -> None:
        """Close the database."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def translate(self, exc: sqlite3.Error) -> Exception:
        """The typed error for a failure of SQLite on this manifest."""
        name = getattr(exc, "sqlite_errorname", "") or ""
        text = str(exc).lower()
        directory = self.path.parent
        if (
            name.startswith("SQLITE_CORRUPT")
            or name == "SQLITE_NOTADB"
            or ("not a database" in text or "malformed" in text)
        ):
            return IndexCorruptedError(self._damaged_text(f"{type(exc).__name__}: {exc}"))
        if name.startswith(("SQLITE_FULL", "SQLITE_IOERR")) or "disk is full" in text:
            fault = disk_fault(directory, exc)
            if fault is not None:
                return fault
        if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")) or "readonly" in text:
            if not self.path.exists():
                return IndexStorageError(
                    f"the manifest {self.path} is gone (deleted while the index was open). "
                    "If the vector store is still there, run `qwen3-vl-rag recover` to write "
                    "the manifest again from it."
                )
            return read_only_fault(directory, exc)
        if name.startswith("SQLITE_IOERR"):
            return IndexStorageError(
                f"the manifest {self.path} could not be read or written ({type(exc).__name__}: "
                f"{exc}); check the disk, then run the command again."
            )
        return exc

    def _damaged_text(self, what: str) -> str:
        return (
            f"the manifest {self.path} is damaged ({what}). The vector store beside it still "
            "holds every vector with its metadata: run `qwen3-vl-rag recover` (or "
            "MultimodalIndex.recover()) to write a new manifest from it; the damaged file is "
            "kept beside it."
        )

    # -- meta ------------------------------------------------------------------------------------

    @_guarded
    def get_meta(self, key: str) -> Any:
        """A stored setting (JSON), or ``None``."""
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    @_guarded
    def set_meta(self, values: dict[str, Any]) -> None:
        """Store settings (JSON) in one transaction."""
        with self._transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(key, json.dumps(value, sort_keys=True)) for key, value in values.items()],
            )

    @_guarded
    def delete_meta(self, key: str) -> None:
        """Forget a setting."""
        with self._transaction():
            self.db.execute("DELETE FROM meta WHERE key = ?", (key,))

    @_guarded
    def is_empty(self) -> bool:
        """True when the manifest records no setting, source or item (new, or emptied)."""
        for table in ("meta", "sources", "items"):
            if self.db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
                return False
        return True

    @_guarded
    def is_intact(self) -> bool:
        """SQLite's own check of every page (reads the whole file)."""
        rows = self.db.execute("PRAGMA quick_check").fetchall()
        return rows == [("ok",)]

    @_guarded
    def item_count(self) -> int:
        """Item rows of any state (current, or written by an unfinished run)."""
        (count,) = self.db.execute("SELECT COUNT(*) FROM items").fetchone()
        return int(count)

    # -- sources ---------------------------------------------------------------------------------

    @_guarded
    def source(self, path: str) -> SourceRow | None:
        """The source's last record."""
        row = self.db.execute(
            "SELECT path, content_hash, size, mtime_ns, status, items, error FROM sources "
            "WHERE path = ?",
            (path,),
        ).fetchone()
        return None if row is None else SourceRow(*row)

    @_guarded
    def sources(self) -> list[SourceRow]:
        """Every source, by path."""
        rows = self.db.execute(
            "SELECT path, content_hash, size, mtime_ns, status, items, error FROM sources "
            "ORDER BY path"
        ).fetchall()
        return [SourceRow(*row) for row in rows]

    @_guarded
    def touch_source(self, path: str, size: int, mtime_ns: int | None) -> None:
        """Record a new modification time for an unchanged file (no re-hash next time)."""
        with self._transaction():
            self.db.execute(
                "UPDATE sources SET size = ?, mtime_ns = ? WHERE path = ?", (size, mtime_ns, path)
            )

    @_guarded
    def mark_failed(self, path: str, error: str) -> None:
        """Note that the file failed to load; its indexed items (if any) are kept."""
        with self._transaction():
            self.db.execute(
                "INSERT INTO sources (path, status, error, updated_at) VALUES (?, 'failed', ?, ?) "
                "ON CONFLICT(path) DO UPDATE SET status = 'failed', error = excluded.error, "
                "mtime_ns = NULL, updated_at = excluded.updated_at",
                (path, error, time.time()),
            )

    @_guarded
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
            self.db.executemany(
                "DELETE FROM items WHERE id = ? AND source = ?", [(item, path) for item in stale]
            )
            self.db.execute("UPDATE items SET current = 1 WHERE source = ?", (path,))
            self.db.execute(
                "INSERT INTO sources (path, content_hash, size, mtime_ns, status, items, error, "
                "updated_at) VALUES (?, ?, ?, ?, 'indexed', ?, NULL, ?) ON CONFLICT(path) DO "
                "UPDATE SET content_hash = excluded.content_hash, size = excluded.size, "
                "mtime_ns = excluded.mtime_ns, status = 'indexed', items = excluded.items, "
                "error = NULL, updated_at = excluded.updated_at",
                (path, content_hash, size, mtime_ns, len(keep), time.time()),
            )
            return self._unused(stale)

    @_guarded
    def remove_source(self, path: str) -> list[str]:
        """Forget a source and its items; return the ids no source uses any more."""
        with self._transaction():
            ids = self._ids_of(path)
            self.db.execute("DELETE FROM items WHERE source = ?", (path,))
            self.db.execute("DELETE FROM sources WHERE path = ?", (path,))
            return self._unused(ids)

    # -- items -----------------------------------------------------------------------------------

    @_guarded
    def add_items(self, rows: Iterable[ItemRow]) -> None:
        """Record items written to the vector store (not yet the source's current items)."""
        with self._transaction():
            self._insert_items(rows, current=False)

    @_guarded
    def vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors of any of ``ids`` (from whichever source holds them)."""
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for item, blob in self.db.execute(
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
        try:
            for row in self.db.execute(query):
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
        except sqlite3.Error as exc:
            raise self.translate(exc) from exc

    @_guarded
    def current_item(self, source: str, locator: str) -> tuple[str, dict[str, Any]] | None:
        """Id and metadata of the source's current item at ``locator`` (``"page:2"``, ``"image"``).

        ``locator`` is the stable form of ``_ids.locator_of`` (0-based pages).
        """
        row = self.db.execute(
            "SELECT id, metadata FROM items WHERE source = ? AND locator = ? AND current = 1",
            (source, locator),
        ).fetchone()
        return None if row is None else (row[0], json.loads(row[1]))

    @_guarded
    def current_ids(self) -> set[str]:
        """Ids of every current item."""
        return {row[0] for row in self.db.execute("SELECT id FROM items WHERE current = 1")}

    @_guarded
    def counts(self) -> dict[str, int]:
        """Sources per status, and current items."""
        counts = dict(self.db.execute("SELECT status, COUNT(*) FROM sources GROUP BY status"))
        (items,) = self.db.execute(
            "SELECT COUNT(DISTINCT id) FROM items WHERE current = 1"
        ).fetchone()
        return {"sources": sum(counts.values()), **counts, "items": items}

    # -- upgrades and recovery --------------------------------------------------------------------

    @_guarded
    def forget_ambiguous_sources(self) -> list[str]:
        r"""Schema 1 to 2: forget sources whose stored name may stand for two files.

        Schema 1 keyed a source by a display form that wrote a non-UTF-8 byte as ``\xNN``,
        exactly as a name that really contains those four characters is written; only keys with
        a backslash can be ambiguous. They are forgotten (the next run indexes those files again,
        reusing nothing wrongly); every other key means the same file in both schemas.

        Returns:
            The ids no source uses any more (to delete from the vector store).
        """
        paths = [
            row[0] for row in self.db.execute("SELECT path FROM sources WHERE instr(path, '\\')")
        ]
        unused: list[str] = []
        for path in paths:
            unused.extend(self.remove_source(path))
        self.set_meta({"schema_version": SCHEMA_VERSION})
        return unused

    @_guarded
    def restore(self, rows: Sequence[ItemRow], meta: dict[str, Any]) -> None:
        """Record settings and recovered items as their sources' current items, at once.

        Sizes and times are not known, so the next run hashes each file once and finds it
        unchanged if its bytes are the recorded ones.
        """
        by_source: dict[str, list[ItemRow]] = {}
        for row in rows:
            by_source.setdefault(row.source, []).append(row)
        with self._transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(key, json.dumps(value, sort_keys=True)) for key, value in meta.items()],
            )
            self._insert_items(rows, current=True)
            self.db.executemany(
                "INSERT OR REPLACE INTO sources (path, content_hash, size, mtime_ns, status, "
                "items, error, updated_at) VALUES (?, ?, NULL, NULL, 'indexed', ?, NULL, ?)",
                [
                    (source, items[0].content_hash, len(items), time.time())
                    for source, items in by_source.items()
                ],
            )

    # -- helpers ---------------------------------------------------------------------------------

    @_guarded
    def _ids_of(self, path: str) -> list[str]:
        rows = self.db.execute("SELECT id FROM items WHERE source = ?", (path,)).fetchall()
        return [row[0] for row in rows]

    @_guarded
    def _unused(self, ids: Sequence[str]) -> list[str]:
        unused = []
        for item in ids:
            row = self.db.execute("SELECT 1 FROM items WHERE id = ? LIMIT 1", (item,)).fetchone()
            if row is None:
                unused.append(item)
        return unused

    def _insert_items(self, rows: Iterable[ItemRow], *, current: bool) -> None:
        """Write item rows (inside the caller's transaction)."""
        self.db.executemany(
            "INSERT OR REPLACE INTO items (id, source, content_hash, current, kind, locator, "
            "metadata, text, vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    row.id,
                    row.source,
                    row.content_hash,
                    int(current),
                    row.kind,
                    row.locator,
                    json.dumps(row.metadata, sort_keys=True),
                    row.text,
                    np.asarray(row.vector, dtype=np.float32).tobytes(),
                )
                for row in rows
            ],
        )

    def _transaction(self) -> _Transaction:
        return _Transaction(self.db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *rest: object) -> None:
        if kind is None:
            self._db.execute("COMMIT")
            return
        # SQLite may have rolled back already (a full disk does): the first error is the one
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that writes nothing, not even the WAL's shared-memory file.

    ``mode=ro`` still needs to create ``-shm`` beside a WAL database; when the directory is
    read-only that fails, and nobody can be writing there, so the file is read as immutable.
    """
    uri = f"file:{urllib.parse.quote(str(path.absolute()))}"
    try:
        db = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False)
        db.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
        return db
    except sqlite3.OperationalError:
        return sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=False)
