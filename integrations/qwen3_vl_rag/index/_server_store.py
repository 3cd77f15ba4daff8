"""The vector store on a Chroma server (``chroma run``): shared by many readers, one writer.

The collection holds exactly what the embedded store holds (ids, vectors, metadata, page text,
a cosine space, the index's settings in its metadata). Two side collections sit beside it:

* ``<collection>__thumbnails``: a small JPEG per item id, made by the writer while it still
  has the files, so that readers on machines without them still show thumbnails. Kept apart so
  that queries do not carry them (a query returns every hit's metadata) and keyed by item id so
  that deleting an item's vector deletes its thumbnail in the same call.
* ``<collection>__writer``: the writer's lease (see :mod:`qwen3_vl_rag.index._lease`).

A server that does not answer is asked again with backoff for ``retry_seconds``; then
:class:`~qwen3_vl_rag.errors.StoreUnavailableError`. Every call is safe to repeat (upserts,
deletes and reads), so a retried write never duplicates anything; a writer checks its lease
before each retry, so a write is never sent again once the lease may have passed to another.
"""

from __future__ import annotations

import base64
import contextlib
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qwen3_vl_rag.errors import (
    ConfigurationError,
    IndexCorruptedError,
    IndexLockedError,
    IndexStorageError,
    MissingDependencyError,
    StoreUnavailableError,
)
from qwen3_vl_rag.index._store import ChromaStore

__all__ = [
    "DEFAULT_COLLECTION",
    "DEFAULT_RETRY_SECONDS",
    "ServerAddress",
    "ServerStore",
    "server_address",
]

#: The collection an index uses on a server when none is named.
DEFAULT_COLLECTION = "qwen3-vl-rag"
#: How long a call is retried while the server does not answer.
DEFAULT_RETRY_SECONDS = 30.0
THUMBNAILS_SUFFIX = "__thumbnails"
WRITER_SUFFIX = "__writer"

# Chroma's rule for collection names (measured on 1.5: 3-512 of these, alphanumeric ends)
_NAME = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9._-]{1,510})[a-zA-Z0-9]")
_FIRST_DELAY = 0.2
_MAX_DELAY = 5.0


@dataclass(frozen=True)
class ServerAddress:
    """A Chroma server's address, checked.

    Example:
        >>> server_address("http://127.0.0.1:8000")
        ServerAddress(host='127.0.0.1', port=8000, ssl=False)
        >>> server_address("https://chroma.example.com").url
        'https://chroma.example.com:443'
    """

    host: str
    port: int
    ssl: bool

    @property
    def url(self) -> str:
        """The address as a URL."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.ssl else 'http'}://{host}:{self.port}"


def server_address(url: str) -> ServerAddress:
    """Check a Chroma server URL.

    ``http`` or ``https``; the port is 8000 by default over http (as ``chroma run``), 443
    over https.

    Raises:
        ConfigurationError: It is not such a URL (the message names ``server``).
    """
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"server={url!r} is not a URL ({exc}).") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"server={url!r} is not a Chroma server URL: give http://HOST:PORT or "
            "https://HOST[:PORT] (e.g. http://127.0.0.1:8000, where `chroma run` listens)."
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ConfigurationError(
            f"server={url!r} has a path, query or user name; give only http(s)://HOST:PORT."
        )
    ssl = parts.scheme == "https"
    return ServerAddress(parts.hostname, port or (443 if ssl else 8000), ssl)


def check_collection_name(name: str) -> str:
    """``name`` if Chroma accepts it (with the side collections' suffixes), else a clear error."""
    if not _NAME.fullmatch(name) or len(name) + len(THUMBNAILS_SUFFIX) > 512:
        raise ConfigurationError(
            f"collection={name!r} is not a valid Chroma collection name: 3 to 500 letters, "
            "digits, '.', '_' or '-', starting and ending with a letter or digit."
        )
    return name


class ServerStore(ChromaStore):
    """An index's collection on a Chroma server.

    Args:
        server: The server's URL, e.g. ``"http://127.0.0.1:8000"``.
        collection: The collection's name (several indexes can share a server under
            different names).
        create: Create the collection if it is missing (a writer); a reader is refused
            a missing one.
        retry_seconds: How long a call is retried while the server does not answer.

    Raises:
        ConfigurationError: A bad URL or name, or (``create=False``) no such collection.
        StoreUnavailableError: The server did not answer within ``retry_seconds``.

    Example:
        >>> store = ServerStore("http://127.0.0.1:8000", "my-index")  # doctest: +SKIP
        >>> store.location, store.keeps_thumbnails  # doctest: +SKIP
        ('collection my-index on http://127.0.0.1:8000', True)
    """

    keeps_thumbnails = True

    def __init__(
        self,
        server: str,
        collection: str = DEFAULT_COLLECTION,
        *,
        create: bool = True,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
    ) -> None:
        self.address = server_address(server)
        self.name = check_collection_name(collection)
        if retry_seconds < 0:
            raise ConfigurationError(f"retry_seconds must be >= 0, got {retry_seconds}.")
        self.retry_seconds = retry_seconds
        self.before_write: Callable[[], None] | None = None
        self._client: Any = None
        try:
            import chromadb  # noqa: F401  (the dependency, checked before connecting)
        except ImportError as exc:
            raise MissingDependencyError("chromadb", "chroma", "A Chroma server store") from exc
        self._client = self._guard(self._connect)
        if create:
            self._collection = self._guard(
                lambda: self._client.get_or_create_collection(
                    self.name,
                    embedding_function=None,
                    configuration={"hnsw": {"space": "cosine"}},
                )
            )
        else:
            self._collection = self._guard(self._existing)
        self._thumbnails: Any = None
        self.max_batch = int(self._guard(self._client.get_max_batch_size))

    def _connect(self) -> Any:
        import chromadb
        from chromadb.config import Settings

        return chromadb.HttpClient(
            host=self.address.host,
            port=self.address.port,
            ssl=self.address.ssl,
            settings=Settings(anonymized_telemetry=False),
        )

    def _existing(self) -> Any:
        from chromadb.errors import NotFoundError

        try:
            return self._client.get_collection(self.name)
        except NotFoundError:
            raise ConfigurationError(
                f"the Chroma server {self.address.url} has no collection {self.name!r}: index "
                f"into it first (`qwen3-vl-rag index PATH --chroma-server {self.address.url} "
                f"--collection {self.name}`), or name the collection the index was built in."
            ) from None

    @property
    def location(self) -> str:
        """``"collection NAME on URL"``."""
        return f"collection {self.name} on {self.address.url}"

    def side_collection(self, suffix: str) -> Any:
        """A collection beside the index's (thumbnails, the writer's lease), made on first use."""
        return self._guard(
            lambda: self._client.get_or_create_collection(
                f"{self.name}{suffix}", embedding_function=None
            )
        )

    def close(self) -> None:
        """Forget the connection (the server keeps everything)."""
        self._client = None

    def _before_write(self) -> None:
        if self.before_write is not None:
            self.before_write()  # the writer's lease: still ours?

    # -- thumbnails --------------------------------------------------------------------------------

    def _thumbnail_collection(self) -> Any:
        if self._thumbnails is None:
            self._thumbnails = self.side_collection(THUMBNAILS_SUFFIX)
        return self._thumbnails

    def put_thumbnails(self, jpegs: Mapping[str, bytes]) -> None:
        """Keep a JPEG per item id.

        Base64 text in the side collection, with a 1-d placeholder vector: Chroma keeps no
        record without one.
        """
        self._before_write()
        ids = list(jpegs)
        collection = self._thumbnail_collection()
        for start in range(0, len(ids), self.max_batch):
            chunk = ids[start : start + self.max_batch]
            self._guard(
                lambda c=chunk: collection.upsert(
                    ids=c,
                    embeddings=[[1.0]] * len(c),
                    documents=[base64.b64encode(jpegs[item]).decode("ascii") for item in c],
                )
            )

    def thumbnail(self, item: str) -> bytes | None:
        """The JPEG kept for ``item``, or ``None``."""
        collection = self._thumbnail_collection()
        result = self._guard(lambda: collection.get(ids=[item], include=["documents"]))
        documents = result.get("documents") or []
        if not documents or not documents[0]:
            return None
        try:
            return base64.b64decode(documents[0], validate=True)
        except ValueError:
            return None

    def thumbnail_ids(self, ids: Sequence[str] | None = None) -> set[str]:
        """Which of ``ids`` (default: all) have a thumbnail kept."""
        collection = self._thumbnail_collection()
        found: set[str] = set()
        if ids is None:
            offset = 0
            while True:
                result = self._guard(
                    lambda o=offset: collection.get(include=[], limit=self.max_batch, offset=o)
                )
                found.update(result["ids"])
                if len(result["ids"]) < self.max_batch:
                    return found
                offset += self.max_batch
        for start in range(0, len(ids), self.max_batch):
            chunk = list(ids[start : start + self.max_batch])
            found.update(self._guard(lambda c=chunk: collection.get(ids=c, include=[]))["ids"])
        return found

    def delete(self, ids: Sequence[str]) -> None:
        """Remove items and their thumbnails (unknown ids are ignored)."""
        super().delete(ids)
        collection = self._thumbnail_collection()
        for start in range(0, len(ids), self.max_batch):
            chunk = list(ids[start : start + self.max_batch])
            self._guard(lambda c=chunk: collection.delete(ids=c))

    # -- rebuild -----------------------------------------------------------------------------------

    def recreate(self) -> ServerStore:
        """Drop the collection and make it again, empty.

        Thumbnails and the lease are kept (``prune`` removes thumbnails no item uses).
        """
        from chromadb.errors import NotFoundError

        self._before_write()
        with contextlib.suppress(NotFoundError):
            self._guard(lambda: self._client.delete_collection(self.name))
        self._collection = self._guard(
            lambda: self._client.get_or_create_collection(
                self.name, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
            )
        )
        return self

    # -- failures ----------------------------------------------------------------------------------

    def _guard(self, call: Any) -> Any:
        """``call()``, asked again with backoff while the server does not answer."""
        started = time.monotonic()
        deadline = started + self.retry_seconds
        delay = _FIRST_DELAY
        while True:
            try:
                return call()
            except (ConfigurationError, IndexCorruptedError, IndexStorageError, IndexLockedError):
                raise
            except Exception as exc:
                if not _unanswered(exc):
                    failure = self._failure(exc)
                    if failure is None:
                        raise  # an argument Chroma refused, or a bug: seen as it is
                    raise failure from exc
                if time.monotonic() + delay > deadline:
                    raise self._unavailable(exc, time.monotonic() - started) from exc
                time.sleep(delay)
                delay = min(delay * 2, _MAX_DELAY)
                try:  # a writer whose lease may have lapsed meanwhile must not send it again
                    self._before_write()
                except IndexLockedError as lost:
                    raise self._unavailable(exc, time.monotonic() - started, lost) from exc

    def _unavailable(
        self, exc: Exception, waited: float, lost: IndexLockedError | None = None
    ) -> StoreUnavailableError:
        lease = " (this writer's lease on it lapsed meanwhile)" if lost is not None else ""
        return StoreUnavailableError(
            f"the Chroma server {self.address.url} did not answer for {waited:.0f} s{lease} "
            f"({type(exc).__name__}: {str(exc)[:200]}). Nothing it acknowledged is lost: start "
            "it again (or check the network), then run the same command again. Longer "
            f"outages than {self.retry_seconds:g} s are waited for with "
            "MultimodalIndex(..., server_retry_seconds=S)."
        )

    def _failure(self, exc: Exception) -> Exception | None:
        from chromadb.errors import NotFoundError

        if isinstance(exc, NotFoundError):
            return IndexCorruptedError(
                f"the collection {self.name!r} was deleted from {self.address.url} while the "
                "index was open. A writer's rebuild drops it and writes it again: open the "
                "index again once that is done. Else the writer's manifest holds every vector: "
                "run `qwen3-vl-rag rebuild --chroma-server URL --collection NAME` in its index "
                "directory."
            )
        return None


def _unanswered(exc: BaseException) -> bool:
    """Whether ``exc`` means the server did not answer (down, restarting, unreachable)."""
    import httpx

    if isinstance(exc, httpx.TransportError):
        return True
    # HttpClient checks the server when it is made, and says so in a ValueError
    return isinstance(exc, ValueError) and "could not connect" in str(exc).lower()
