"""HTTP to one model server: pooled connections, a concurrency limit, time limits and retries.

The remote engine talks to vLLM through :class:`ServerClient`. This module knows HTTP and JSON,
not vLLM's request shapes. Every request the engine sends is idempotent (the same inputs give
the same vectors), so a POST is retried exactly like a GET.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import random
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import httpx

from qwen3_vl_rag.errors import (
    ConfigurationError,
    ServerError,
    ServerResponseError,
    ServerTimeoutError,
    ServerUnreachableError,
)

__all__ = ["ServerClient", "retry_delay", "server_message"]

logger = logging.getLogger(__name__)

#: answers worth another try: too many requests, and a gateway or server that is (re)starting
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: the longest wait of our own back-off, and the longest ``Retry-After`` we honour
MAX_BACKOFF_S = 30.0
MAX_RETRY_AFTER_S = 60.0
#: how much of a server's error text goes into a message
MAX_ERROR_TEXT = 500

_START_SERVER = "Start one with `qwen3-vl-rag serve --model ...`, or check the URL and port."


def retry_delay(attempt: int, backoff: float, retry_after: str | None = None) -> float:
    """Seconds to wait after failed attempt ``attempt`` (0 for the first) before the next one.

    A numeric ``Retry-After`` from the server wins (at most :data:`MAX_RETRY_AFTER_S`); otherwise
    ``backoff * 2**attempt``, capped at :data:`MAX_BACKOFF_S`, times a random factor in
    [0.5, 1] so that clients that failed together do not come back together.

    Example:
        >>> retry_delay(0, backoff=0.5, retry_after="2")
        2.0
        >>> 2.0 <= retry_delay(3, backoff=0.5) <= 4.0
        True
    """
    if retry_after is not None:
        try:
            seconds = float(retry_after)
        except ValueError:
            pass  # an HTTP date: our own back-off is good enough
        else:
            if 0 <= seconds < float("inf"):
                return min(seconds, MAX_RETRY_AFTER_S)
    nominal = min(backoff * 2.0 ** min(attempt, 32), MAX_BACKOFF_S)
    return nominal * random.uniform(0.5, 1.0)


def server_message(response: httpx.Response) -> str:
    """The server's own error text from an answer, on one line and at most 500 characters.

    vLLM (and FastAPI, and OpenAI-compatible servers) put it in ``{"error": {"message": ...}}``,
    ``{"message": ...}`` or ``{"detail": ...}``; any other body is shown as it is.

    Example:
        >>> server_message(httpx.Response(400, json={"error": {"message": "too long"}}))
        'too long'
        >>> server_message(httpx.Response(502, text="<h1>Bad gateway</h1>"))
        '<h1>Bad gateway</h1>'
    """
    try:
        text = _message_in(json.loads(response.content))
    except ValueError:
        text = response.text
    text = " ".join(text.split()) or "(no error text)"
    if len(text) > MAX_ERROR_TEXT:
        text = text[: MAX_ERROR_TEXT - 1] + "…"
    return text


def _message_in(data: Any) -> str:
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and "message" in error:
            error = error["message"]
        if isinstance(error, str):
            return error
        for key in ("message", "detail"):
            if key in data:
                value = data[key]
                return value if isinstance(value, str) else json.dumps(value)
    return json.dumps(data)


@dataclass(frozen=True)
class _Failure:
    """One attempt that did not give an answer: what happened, and whether to try again."""

    kind: Literal["refused", "connect_timeout", "broken", "timeout", "status"]
    detail: str  # for logs and messages, the API key already taken out
    retryable: bool
    response: httpx.Response | None = None
    exception: Exception | None = None


class ServerClient:
    """Pooled HTTP client for one server: JSON requests, a concurrency limit, timeouts, retries.

    One ``httpx.Client`` (and, once ``async`` methods are used, one ``httpx.AsyncClient`` for the
    running event loop) keeps at most ``max_concurrency`` connections open and reuses them.
    Environment proxies are ignored (``HTTP_PROXY`` must not send calls for a local server
    elsewhere) and redirects are not followed. Answers 429, 502, 503 and 504, refused or broken
    connections and read time-outs are retried with exponential back-off, honouring a numeric
    ``Retry-After``; after ``max_retries`` retries the typed :class:`~qwen3_vl_rag.ServerError`
    says what happened. Methods may be called from several threads at once.

    The API key is sent as ``Authorization: Bearer <key>`` and never shown by ``repr``, errors or
    logs. A pickle of the client *does* hold it, so that a copy in a worker process still
    authenticates: keep pickles as private as the key itself.

    Args:
        url: The server's base URL, such as ``"http://127.0.0.1:8000"`` (a trailing slash is
            dropped; paths such as ``"/v1/embeddings"`` are given per request).
        api_key: The server's key (vLLM's ``--api-key``), or ``None`` for an open server.
        timeout: Seconds to wait for each answer (and each write or read on the connection).
        connect_timeout: Seconds to wait for a connection.
        max_retries: Retries after a failed attempt; ``0`` tries once.
        backoff: Seconds before the first retry; each next one waits twice as long.
        max_concurrency: Requests in flight at most, and connections kept open.

    Example:
        >>> client = ServerClient("http://127.0.0.1:8000/", api_key="sk-not-shown")
        >>> client
        ServerClient(url='http://127.0.0.1:8000', api_key='***', timeout=120.0, max_concurrency=8)
        >>> vectors = client.post("/v1/embeddings", {"model": "m", "input": "hi"})  # doctest: +SKIP
        >>> client.close()
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_concurrency: int = 8,
    ) -> None:
        self.url = _normalise_url(url)
        _require(timeout > 0, f"timeout={timeout!r} must be a positive number of seconds.")
        _require(
            connect_timeout > 0,
            f"connect_timeout={connect_timeout!r} must be a positive number of seconds.",
        )
        _require(max_retries >= 0, f"max_retries={max_retries!r} must be 0 or more.")
        _require(backoff >= 0, f"backoff={backoff!r} must be 0 or more seconds.")
        _require(max_concurrency >= 1, f"max_concurrency={max_concurrency!r} must be 1 or more.")
        self._api_key = api_key or None  # an empty key (an unset variable) is no key
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.max_concurrency = int(max_concurrency)
        self._slots = threading.BoundedSemaphore(self.max_concurrency)
        self._client = httpx.Client(**self._client_options())
        self._lock = threading.Lock()  # guards the lazily made async client
        # made on first async use, for the running loop
        self._async: tuple[asyncio.AbstractEventLoop, httpx.AsyncClient, asyncio.Semaphore] | None
        self._async = None

    # --- sync ---------------------------------------------------------------------------------

    def get(self, path: str) -> Any:
        """The JSON body of a GET of ``path`` (``"/v1/models"``)."""
        return self._request("GET", path, None)

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        """The JSON body of the answer to POSTing ``body`` (as JSON) to ``path``."""
        return self._request("POST", path, _encode(body))

    def post_many(
        self,
        path: str,
        bodies: Sequence[Mapping[str, Any]],
        *,
        on_done: Callable[[int], None] | None = None,
    ) -> list[Any]:
        """POST every body to ``path``, ``max_concurrency`` at a time; answers in ``bodies`` order.

        On the first failure no further body is sent; those in flight are waited for, then the
        error is raised. ``on_done(i)`` is called (in the calling thread) as body ``i`` is answered.
        """
        if not bodies:
            return []
        stop = threading.Event()

        def send(i: int) -> tuple[int, Any]:
            if stop.is_set():
                return i, _SKIPPED
            try:
                return i, self.post(path, bodies[i])
            except BaseException:
                stop.set()  # here, before this worker takes the next body
                raise

        results: list[Any] = [None] * len(bodies)
        failure: BaseException | None = None
        workers = min(self.max_concurrency, len(bodies))
        with concurrent.futures.ThreadPoolExecutor(workers, "qwen3-vl-rag-http") as pool:
            futures = [pool.submit(send, i) for i in range(len(bodies))]
            try:
                for future in concurrent.futures.as_completed(futures):
                    try:
                        i, answer = future.result()
                        if answer is not _SKIPPED:
                            results[i] = answer
                            if on_done is not None:
                                on_done(i)
                    except Exception as exc:
                        failure = failure or exc
                        stop.set()
            except BaseException:
                stop.set()  # interrupted: leaving the block still waits for those in flight
                raise
        if failure is not None:
            raise failure
        return results

    def close(self) -> None:
        """Close the pooled connections (an async client of a running loop is only let go)."""
        self._client.close()
        with self._lock:
            self._async = None

    def __enter__(self) -> ServerClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- async --------------------------------------------------------------------------------

    async def aget(self, path: str) -> Any:
        """The JSON body of a GET of ``path``, without blocking the event loop."""
        return await self._arequest("GET", path, None)

    async def apost(self, path: str, body: Mapping[str, Any]) -> Any:
        """The JSON body of the answer to POSTing ``body`` to ``path``, without blocking."""
        return await self._arequest("POST", path, _encode(body))

    async def apost_many(
        self,
        path: str,
        bodies: Sequence[Mapping[str, Any]],
        *,
        on_done: Callable[[int], None] | None = None,
    ) -> list[Any]:
        """:meth:`post_many` for the event loop: the same order, limit and failure rule."""
        if not bodies:
            return []
        limit = asyncio.Semaphore(self.max_concurrency)
        stop = False

        async def send(i: int) -> tuple[int, Any]:
            nonlocal stop
            async with limit:
                if stop:
                    return i, _SKIPPED
                try:
                    return i, await self.apost(path, bodies[i])
                except BaseException:
                    stop = True  # before the slot goes to the next body
                    raise

        results: list[Any] = [None] * len(bodies)
        failure: BaseException | None = None
        tasks = [asyncio.ensure_future(send(i)) for i in range(len(bodies))]
        try:
            for next_done in asyncio.as_completed(tasks):
                try:
                    i, answer = await next_done
                    if answer is not _SKIPPED:
                        results[i] = answer
                        if on_done is not None:
                            on_done(i)
                except Exception as exc:
                    failure = failure or exc
                    stop = True
        finally:
            for task in tasks:  # only left undone when the caller was cancelled
                task.cancel()
        if failure is not None:
            raise failure
        return results

    async def aclose(self) -> None:
        """Close the pooled connections, the async client's included."""
        with self._lock:
            state, self._async = self._async, None
        if state is not None and state[0] is asyncio.get_running_loop():
            await state[1].aclose()
        self._client.close()

    async def __aenter__(self) -> ServerClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- shown and pickled --------------------------------------------------------------------

    def __repr__(self) -> str:
        key = None if self._api_key is None else "***"
        return (
            f"ServerClient(url={self.url!r}, api_key={key!r}, timeout={self.timeout}, "
            f"max_concurrency={self.max_concurrency})"
        )

    def __reduce__(self) -> tuple[object, ...]:
        # The key travels: a copy in a worker process must still authenticate (see the docstring).
        settings = {
            "api_key": self._api_key,
            "timeout": self.timeout,
            "connect_timeout": self.connect_timeout,
            "max_retries": self.max_retries,
            "backoff": self.backoff,
            "max_concurrency": self.max_concurrency,
        }
        return (_restore_client, (self.url, settings))

    # --- one request, with its retries --------------------------------------------------------

    def _request(self, method: str, path: str, content: bytes | None) -> Any:
        url, headers = self._target(path), _content_headers(content)
        with self._slots:
            attempt = 0
            while True:
                try:
                    response = self._client.request(method, url, content=content, headers=headers)
                except httpx.TransportError as exc:
                    failure = self._transport_failure(exc)
                else:
                    if response.is_success:
                        return self._json(method, path, response)
                    failure = self._status_failure(response)
                time.sleep(self._wait_or_raise(method, path, failure, attempt))
                attempt += 1

    async def _arequest(self, method: str, path: str, content: bytes | None) -> Any:
        url, headers = self._target(path), _content_headers(content)
        client, slots = self._async_client()
        async with slots:
            attempt = 0
            while True:
                try:
                    response = await client.request(method, url, content=content, headers=headers)
                except httpx.TransportError as exc:
                    failure = self._transport_failure(exc)
                else:
                    if response.is_success:
                        return self._json(method, path, response)
                    failure = self._status_failure(response)
                await asyncio.sleep(self._wait_or_raise(method, path, failure, attempt))
                attempt += 1

    def _wait_or_raise(self, method: str, path: str, failure: _Failure, attempt: int) -> float:
        """Seconds to wait before trying again; raises the typed error when it is time to stop."""
        if not failure.retryable or attempt >= self.max_retries:
            raise self._error(method, path, failure, attempts=attempt + 1) from failure.exception
        retry_after = (
            None if failure.response is None else failure.response.headers.get("Retry-After")
        )
        delay = retry_delay(attempt, self.backoff, retry_after)
        logger.debug(
            "%s %s%s failed (%s); retry %d of %d in %.2f s",
            method,
            self.url,
            path,
            failure.detail,
            attempt + 1,
            self.max_retries,
            delay,
        )
        return delay

    def _transport_failure(self, exc: httpx.TransportError) -> _Failure:
        detail = self._redact(str(exc) or type(exc).__name__)
        if isinstance(exc, httpx.ConnectTimeout):
            return _Failure("connect_timeout", detail, retryable=True, exception=exc)
        if isinstance(exc, httpx.TimeoutException):
            return _Failure("timeout", detail, retryable=True, exception=exc)
        if isinstance(exc, httpx.ConnectError):
            return _Failure("refused", detail, retryable=True, exception=exc)
        # reset, or closed mid-answer (a restart, or a keep-alive connection the server dropped)
        retryable = isinstance(exc, (httpx.NetworkError, httpx.RemoteProtocolError))
        return _Failure("broken", detail, retryable=retryable, exception=exc)

    def _status_failure(self, response: httpx.Response) -> _Failure:
        status = response.status_code
        detail = f"HTTP {status} {response.reason_phrase}".rstrip()
        return _Failure("status", detail, retryable=status in RETRY_STATUSES, response=response)

    def _json(self, method: str, path: str, response: httpx.Response) -> Any:
        try:
            return json.loads(response.content)
        except ValueError:
            kind = response.headers.get("Content-Type", "no content type")
            start = self._redact(" ".join(response.text[:120].split()))
            raise ServerResponseError(
                f"the server at {self.url} answered {method} {path} with a body that is not "
                f"JSON ({kind}: {start!r}): it does not look like a vLLM server. Check the URL "
                "and port.",
                url=self.url,
                status=response.status_code,
            ) from None

    def _error(self, method: str, path: str, failure: _Failure, *, attempts: int) -> ServerError:
        tries = f"{attempts} attempt{'s' if attempts > 1 else ''}"
        if failure.response is not None:
            return self._status_error(method, path, failure.response, tries)
        where = f"the vLLM server at {self.url}"
        if failure.kind == "refused":
            reason = "connection refused" if "refused" in failure.detail.lower() else failure.detail
            return ServerUnreachableError(
                f"cannot reach {where} ({reason} after {tries}). Is it running? {_START_SERVER}",
                url=self.url,
            )
        if failure.kind == "connect_timeout":
            return ServerUnreachableError(
                f"cannot reach {where} (no connection within connect_timeout="
                f"{self.connect_timeout:g} s, after {tries}). Is it running, and reachable from "
                f"here? {_START_SERVER}",
                url=self.url,
            )
        if failure.kind == "broken":
            return ServerUnreachableError(
                f"{where} dropped the connection during {method} {path} ({failure.detail}; "
                f"{tries}). It may have crashed or restarted: check its log, and that the URL "
                "is a vLLM server.",
                url=self.url,
            )
        return ServerTimeoutError(
            f"{where} did not answer {method} {path} within timeout={self.timeout:g} s "
            f"({tries}). It may be overloaded or the request too large: raise timeout=, or "
            "send fewer items per request.",
            url=self.url,
        )

    def _status_error(
        self, method: str, path: str, response: httpx.Response, tries: str
    ) -> ServerResponseError:
        status = response.status_code
        said = f"HTTP {status} {response.reason_phrase}".rstrip()
        if response.is_redirect:
            location = self._redact(response.headers.get("Location", "?"))
            message = (
                f"the server at {self.url} answered {method} {path} with a redirect ({said} to "
                f"{location}); redirects are not followed: give the URL they lead to."
            )
            return ServerResponseError(message, url=self.url, status=status)
        if status in RETRY_STATUSES:
            said += f" after {tries}"
        message = (
            f"the vLLM server at {self.url} answered {method} {path} with {said}: "
            f"{self._redact(server_message(response))}"
        )
        hint = _hint(status, has_key=self._api_key is not None)
        return ServerResponseError(f"{message} {hint}".rstrip(), url=self.url, status=status)

    # --- plumbing -----------------------------------------------------------------------------

    def _client_options(self) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return {
            "headers": headers,
            # the pool waits as long as it must: max_concurrency requests hold every connection
            "timeout": httpx.Timeout(self.timeout, connect=self.connect_timeout, pool=None),
            "limits": httpx.Limits(
                max_connections=self.max_concurrency,
                max_keepalive_connections=self.max_concurrency,
            ),
            "trust_env": False,
            "follow_redirects": False,
        }

    def _async_client(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        # An AsyncClient and a Semaphore belong to the loop they were first used in: a call from
        # another loop (a second asyncio.run) gets fresh ones.
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._async is None or self._async[0] is not loop:
                client = httpx.AsyncClient(**self._client_options())
                self._async = (loop, client, asyncio.Semaphore(self.max_concurrency))
            return self._async[1], self._async[2]

    def _target(self, path: str) -> str:
        if not path.startswith("/"):
            msg = f"the request path must start with '/', got {path!r}."
            raise ValueError(msg)
        return self.url + path

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text


_SKIPPED = object()  # post_many: a body not sent because another failed


def _hint(status: int, *, has_key: bool) -> str:
    if status in (401, 403):
        if has_key:
            return "The API key was refused: check api_key= against the server's --api-key."
        return "The server wants an API key, and none was given: pass it as api_key=."
    if status in (429, 503):
        return "The server is overloaded: lower max_concurrency=, or raise max_retries=."
    if status in (502, 504):
        return "A proxy in front of the server could not reach it: check the server behind it."
    if status == 404:
        return "Check the URL (the server's base URL, without /v1) and the model it serves."
    if status == 413:
        return "The request is too large for the server: send fewer or smaller items."
    return ""


def _content_headers(content: bytes | None) -> dict[str, str] | None:
    return None if content is None else {"Content-Type": "application/json"}


def _encode(body: Mapping[str, Any]) -> bytes:
    # encoded once, reused by every retry (a body may hold megabytes of base64 images)
    return json.dumps(dict(body), ensure_ascii=False, separators=(",", ":")).encode()


def _normalise_url(url: str) -> str:
    text = url.strip()
    try:
        parts = urllib.parse.urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ConfigurationError(f"{url!r} is not a valid server URL ({exc}).") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        msg = (
            f"{url!r} is not a server URL: give its scheme and host, e.g. 'http://127.0.0.1:8000'."
        )
        raise ConfigurationError(msg)
    if parts.username is not None or parts.password is not None:
        msg = (
            "the server URL must not hold credentials (they would show in logs and errors): "
            "pass the server's key as api_key=."
        )
        raise ConfigurationError(msg)
    if parts.query or parts.fragment:
        msg = f"{url!r}: give the server's base URL, without a query or fragment."
        raise ConfigurationError(msg)
    return text.rstrip("/")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigurationError(message)


def _restore_client(url: str, settings: dict[str, Any]) -> ServerClient:
    return ServerClient(url, **settings)
