"""One writer per collection on a Chroma server, across machines: a lease record on the server.

The local ``flock`` (:mod:`qwen3_vl_rag.index._lock`) cannot see another machine, so a writer
also holds a lease: one record, id ``writer``, in the side collection ``<collection>__writer``,
naming its holder (host, pid, index directory), a random token and an expiry time. A heartbeat
thread pushes the expiry forward every third of the lease; closing the index deletes it. A
killed writer's lease expires, and the next writer takes it over.

What Chroma guarantees, and what this relies on (measured on chromadb 1.5 against ``chroma
run``): ``add`` of an id that exists keeps the first record and ignores the second, and
``delete(ids=..., where=...)`` deletes only when the filter still matches. So taking a free
lease is ``add`` then read back (of two racing writers, exactly one finds its token), and taking
an expired one is ``delete(where=token of the expired holder)`` then the same: a racer whose
delete comes second deletes nothing, and its ``add`` is ignored. Chroma has no conditional
update, so the heartbeat reads the record, checks its token, then writes; the writer also stops
before any write once its lease could have expired (no heartbeat confirmed within the lease),
so a take-over can only follow a writer that has already stopped writing. Expiry times are
compared across machines: their clocks must agree to well within the lease (NTP does).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qwen3_vl_rag.errors import ConfigurationError, IndexLockedError
from qwen3_vl_rag.index._server_store import WRITER_SUFFIX

if TYPE_CHECKING:
    from pathlib import Path

    from qwen3_vl_rag.index._server_store import ServerStore

__all__ = ["DEFAULT_LEASE_SECONDS", "WriterLease"]

#: How long a writer's lease lasts without a heartbeat (a killed writer blocks others this long).
DEFAULT_LEASE_SECONDS = 60.0
_RECORD = "writer"
_TRIES = 3


@dataclass(frozen=True)
class _Holder:
    token: str
    host: str
    pid: int
    directory: str
    expires: float

    def describe(self) -> str:
        return f"host {self.host}, pid {self.pid}, index directory {self.directory}"


class WriterLease:
    """The lease of the one writer of a server collection.

    Args:
        store: The collection's store.
        directory: The writer's index directory (named to a refused writer).
        seconds: How long the lease lasts without a heartbeat.

    Example:
        >>> lease = WriterLease(store, Path("my-index")).acquire()  # doctest: +SKIP
        >>> lease.check()  # raises IndexLockedError once the lease is lost  # doctest: +SKIP
        >>> lease.release()  # doctest: +SKIP
    """

    def __init__(
        self, store: ServerStore, directory: Path, seconds: float = DEFAULT_LEASE_SECONDS
    ) -> None:
        if not seconds > 0:
            raise ConfigurationError(f"lease_seconds must be > 0, got {seconds}.")
        self.store = store
        self.seconds = float(seconds)
        self.token = secrets.token_hex(16)
        self.host = socket.gethostname()
        self.directory = str(directory.absolute())
        self._records: Any = None
        self._confirmed = 0.0  # time.monotonic() of the last time the server said it is ours
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- taking and giving back ----------------------------------------------------------------

    def acquire(self) -> WriterLease:
        """Take the lease now, or raise :class:`IndexLockedError` naming its holder."""
        self._records = self.store.side_collection(WRITER_SUFFIX)
        for _ in range(_TRIES):
            holder = self._holder()
            if holder is not None and holder.token != self.token:
                if holder.expires > time.time():
                    raise self._refusal(holder)
                # expired: delete it only if it is still that holder's (a racer may be first)
                self._call(
                    lambda h=holder: self._records.delete(ids=[_RECORD], where={"token": h.token})
                )
            started = time.monotonic()
            self._call(lambda: self._records.add(**self._record()))  # ignored if one exists
            holder = self._holder()
            if holder is not None and holder.token == self.token:
                self._confirmed = started
                self._thread = threading.Thread(
                    target=self._beat, name="qwen3-vl-rag-lease", daemon=True
                )
                self._thread.start()
                self.store.before_write = self.check
                return self
        assert holder is not None
        raise self._refusal(holder)

    def release(self) -> None:
        """Stop the heartbeat and delete the lease (only if it is still this writer's)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            self.store.before_write = None
            if self._lost is None:
                # once, not retried: a run that stops because the server is gone must not wait
                # for it again; the lease then expires by itself
                with contextlib.suppress(Exception):
                    self._records.delete(ids=[_RECORD], where={"token": self.token})

    def check(self) -> None:
        """Raise :class:`IndexLockedError` if the lease is lost or may have expired."""
        if self._lost is None and time.monotonic() - self._confirmed >= self.seconds:
            self._lost = (
                f"no heartbeat reached the server for {self.seconds:g} s, so another writer "
                "may have taken the lease over"
            )
        if self._lost is not None:
            raise IndexLockedError(
                f"this writer lost its lease on {self.store.location} ({self._lost}); it "
                "stopped before writing again. Nothing acknowledged is lost: run the same "
                "command again once no other writer uses the collection."
            )

    # -- the heartbeat -------------------------------------------------------------------------

    def _beat(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            started = time.monotonic()
            try:
                holder = self._holder(retry=False)  # a later beat tries again
                if holder is None or holder.token != self.token:
                    who = "nobody" if holder is None else holder.describe()
                    self._lost = f"the server now records {who} as the writer"
                    return
                self._records.update(**self._record())
                self._confirmed = started
            except Exception:  # unreachable for now: `check` stops writes once it may be lost
                continue

    # -- the record ----------------------------------------------------------------------------

    def _record(self) -> dict[str, Any]:
        return {
            "ids": [_RECORD],
            "embeddings": [[1.0]],
            "metadatas": [
                {
                    "token": self.token,
                    "host": self.host,
                    "pid": os.getpid(),
                    "directory": self.directory,
                    "expires": time.time() + self.seconds,
                }
            ],
        }

    def _holder(self, *, retry: bool = True) -> _Holder | None:
        def get() -> Any:
            return self._records.get(ids=[_RECORD], include=["metadatas"])

        result = self._call(get) if retry else get()
        if not result["ids"]:
            return None
        meta = result["metadatas"][0] or {}
        return _Holder(
            str(meta.get("token", "")),
            str(meta.get("host", "?")),
            int(meta.get("pid", 0) or 0),
            str(meta.get("directory", "?")),
            float(meta.get("expires", 0.0) or 0.0),
        )

    def _call(self, call: Any) -> Any:
        return self.store._guard(call)

    def _refusal(self, holder: _Holder) -> IndexLockedError:
        left = max(0.0, holder.expires - time.time())
        return IndexLockedError(
            f"{self.store.location} is being written by another writer ({holder.describe()}). "
            "One writer at a time, across machines: wait for it to finish, or use another "
            f"collection. If that writer was killed, its lease expires in {left:.0f} s and the "
            "next writer takes it over."
        )
