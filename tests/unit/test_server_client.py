"""The remote engine's HTTP client, against real loopback servers scripted per test.

Each test starts a ``ThreadingHTTPServer`` on 127.0.0.1 and tells it how to answer: 503 then
200, too slowly, cut off mid-answer, 401, HTML... The client's limits are set small (a few
retries, millisecond back-off, sub-second time-outs) so every test stays well under two seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import pickle
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from qwen3_vl_rag import (
    ConfigurationError,
    Qwen3VLRagError,
    ServerConfigurationError,
    ServerError,
    ServerResponseError,
    ServerTimeoutError,
    ServerUnreachableError,
)
from qwen3_vl_rag.engine._http import (
    MAX_BACKOFF_S,
    MAX_RETRY_AFTER_S,
    ServerClient,
    retry_delay,
    server_message,
)

pytestmark = pytest.mark.enable_socket

KEY = "sk-test-5e3cr3t-k3y"


def client_for(url: str, **settings: Any) -> ServerClient:
    """A client with test-sized back-off and time limits (unless given)."""
    return ServerClient(
        url, **{"backoff": 0.001, "timeout": 2.0, "connect_timeout": 2.0, **settings}
    )


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    port: int
    at: float


Script = Callable[["Handler", int, Any], None]


class Server(ThreadingHTTPServer):
    daemon_threads = True
    script: Script
    seen: list[Seen]
    cond: threading.Condition
    in_flight: int
    max_in_flight: int
    finished: list[int]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def ports(self) -> set[int]:
        return {seen.port for seen in self.seen}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse can be seen
    disable_nagle_algorithm = True  # headers and body go out in two writes
    server: Server

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.handle_request()

    def do_POST(self) -> None:
        self.handle_request()

    def handle_request(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        srv = self.server
        with srv.cond:
            n = len(srv.seen)
            srv.seen.append(
                Seen(
                    self.command,
                    self.path,
                    dict(self.headers.items()),
                    body,
                    self.client_address[1],
                    time.monotonic(),
                )
            )
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
            srv.cond.notify_all()
        try:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                srv.script(self, n, body)
        finally:
            with srv.cond:
                srv.in_flight -= 1

    def reply(
        self, status: int, data: Any = None, *, text: str | None = None, **headers: str
    ) -> None:
        if text is not None:
            payload = text.encode()
            headers.setdefault("Content_Type", "text/html")
        else:
            payload = json.dumps(data).encode()
            headers.setdefault("Content_Type", "application/json")
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def echo(handler: Handler, n: int, body: Any) -> None:
    handler.reply(200, {"n": n, "path": handler.path, "body": body})


@pytest.fixture
def server() -> Iterator[Server]:
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.script = echo
    httpd.seen = []
    httpd.cond = threading.Condition()
    httpd.in_flight = httpd.max_in_flight = 0
    httpd.finished = []
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def statuses(*answers: int, final: Script = echo, **headers: str) -> Script:
    """A script answering the first requests with these statuses, then ``final``."""

    def script(handler: Handler, n: int, body: Any) -> None:
        if n < len(answers):
            handler.reply(answers[n], {"error": {"message": f"busy {n}"}}, **headers)
        else:
            final(handler, n, body)

    return script


# --- requests and answers ----------------------------------------------------------------------


def test_post_sends_json_and_returns_the_answer(server: Server) -> None:
    with client_for(server.url + "/") as client:
        assert client.url == server.url
        answer = client.post("/v1/embeddings", {"input": "héllo", "n": [1, 2]})
    assert answer == {"n": 0, "path": "/v1/embeddings", "body": {"input": "héllo", "n": [1, 2]}}
    assert server.seen[0].method == "POST"
    assert server.seen[0].headers["Content-Type"] == "application/json"
    assert "Authorization" not in server.seen[0].headers


def test_get_returns_the_answer(server: Server) -> None:
    with ServerClient(server.url) as client:
        assert client.get("/v1/models") == {"n": 0, "path": "/v1/models", "body": None}
    assert server.seen[0].method == "GET"
    assert "Content-Type" not in server.seen[0].headers


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("127.0.0.1:8000", "scheme and host"),
        ("ftp://host/", "scheme and host"),
        ("http://", "scheme and host"),
        ("http://user:pw@host:8000", "api_key="),
        ("http://host:port", "not a valid server URL"),
        ("http://host:8000/?x=1", "without a query"),
    ],
)
def test_a_url_that_cannot_work_is_a_configuration_error(url: str, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        ServerClient(url)


@pytest.mark.parametrize(
    "settings",
    [{"timeout": 0}, {"connect_timeout": -1}, {"max_retries": -1}, {"max_concurrency": 0}],
)
def test_settings_that_cannot_work_are_configuration_errors(settings: dict[str, Any]) -> None:
    name = next(iter(settings))
    with pytest.raises(ConfigurationError, match=f"{name}="):
        ServerClient("http://127.0.0.1:8000", **settings)


def test_a_path_must_start_with_a_slash(server: Server) -> None:
    with ServerClient(server.url) as client, pytest.raises(ValueError, match="start with '/'"):
        client.get("v1/models")


def test_environment_proxies_are_ignored(
    server: Server, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = f"http://127.0.0.1:{closed_port}"
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with ServerClient(server.url, max_retries=0) as client:
        assert client.get("/health")["path"] == "/health"


def test_a_redirect_is_not_followed(server: Server) -> None:
    server.script = lambda h, n, body: h.reply(307, {}, Location="http://example.com/v1/models")
    with client_for(server.url) as client, pytest.raises(ServerResponseError) as info:
        client.get("/v1/models")
    assert len(server.seen) == 1
    assert info.value.status == 307
    assert "http://example.com/v1/models" in str(info.value)
    assert "redirects are not followed" in str(info.value)


# --- retries -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_a_busy_answer_is_retried_until_success(server: Server, status: int) -> None:
    server.script = statuses(status, status)
    with client_for(server.url, max_retries=2) as client:
        answer = client.post("/v1/embeddings", {"input": "x"})
    assert answer["n"] == 2
    assert len(server.seen) == 3
    assert [seen.body for seen in server.seen] == [{"input": "x"}] * 3


def test_retry_after_is_honoured(server: Server) -> None:
    server.script = statuses(429, Retry_After="0.3")
    with ServerClient(server.url, backoff=0.0) as client:
        client.post("/v1/embeddings", {"input": "x"})
    first, second = server.seen
    assert second.at - first.at >= 0.3


def test_retries_exhausted_on_503_is_a_response_error_with_the_servers_text(
    server: Server,
) -> None:
    server.script = lambda h, n, body: h.reply(503, {"error": {"message": "engine overloaded"}})
    client = client_for(server.url, max_retries=2)
    with client, pytest.raises(ServerResponseError) as info:
        client.post("/v1/embeddings", {"input": "x"})
    assert len(server.seen) == 3
    err = info.value
    assert (err.status, err.url) == (503, server.url)
    assert "HTTP 503" in str(err)
    assert "3 attempts" in str(err)
    assert "engine overloaded" in str(err)
    assert "/v1/embeddings" in str(err)
    assert "max_concurrency=" in str(err)


def test_a_refused_connection_is_unreachable_and_names_the_url(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    client = client_for(url, max_retries=2)
    with client, pytest.raises(ServerUnreachableError) as info:
        client.get("/v1/models")
    err = info.value
    assert isinstance(err, ConnectionError)
    assert (err.url, err.status) == (url, None)
    assert f"cannot reach the vLLM server at {url}" in str(err)
    assert "connection refused after 3 attempts" in str(err)
    assert "qwen3-vl-rag serve" in str(err)


@pytest.mark.skipif(sys.platform != "linux", reason="a full accept queue drops SYNs on Linux")
def test_a_full_listen_queue_is_a_connect_timeout() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        waiting = []
        for _ in range(4):  # fill the accept queue: later connection attempts get no answer
            sock = socket.socket()
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.connect(listener.getsockname())
            waiting.append(sock)
        try:
            client = ServerClient(url, connect_timeout=0.2, max_retries=1, backoff=0.001)
            with client, pytest.raises(ServerUnreachableError) as info:
                client.get("/v1/models")
        finally:
            for sock in waiting:
                sock.close()
    assert "connect_timeout=0.2" in str(info.value)


def test_a_slow_answer_is_a_timeout_error_naming_the_knob(server: Server) -> None:
    server.script = lambda h, n, body: time.sleep(1.0)
    client = ServerClient(server.url, timeout=0.2, max_retries=1, backoff=0.001)
    with client, pytest.raises(ServerTimeoutError) as info:
        client.post("/v1/embeddings", {"input": "x"})
    assert len(server.seen) == 2
    err = info.value
    assert isinstance(err, TimeoutError)
    assert (err.url, err.status) == (server.url, None)
    assert "timeout=0.2" in str(err)
    assert server.url in str(err)


def drop_mid_answer(handler: Handler, n: int, body: Any) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    handler.wfile.write(b'{"data": [0.1, ')
    handler.wfile.flush()
    handler.close_connection = True


def drop_without_answer(handler: Handler, n: int, body: Any) -> None:
    handler.close_connection = True


@pytest.mark.parametrize("drop", [drop_mid_answer, drop_without_answer])
def test_a_dropped_connection_is_retried(server: Server, drop: Script) -> None:
    def script(handler: Handler, n: int, body: Any) -> None:
        (drop if n == 0 else echo)(handler, n, body)

    server.script = script
    with client_for(server.url, max_retries=1) as client:
        assert client.post("/score", {"q": 1})["n"] == 1


def test_a_connection_dropped_every_time_is_unreachable(server: Server) -> None:
    server.script = drop_mid_answer
    client = client_for(server.url, max_retries=2)
    with client, pytest.raises(ServerUnreachableError) as info:
        client.post("/score", {"q": 1})
    assert len(server.seen) == 3
    assert "dropped the connection during POST /score" in str(info.value)


def test_each_retry_logs_one_debug_line_without_key_or_body(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    server.script = statuses(503, 502)
    caplog.set_level(logging.DEBUG, logger="qwen3_vl_rag")
    with client_for(server.url, api_key=KEY, max_retries=3) as client:
        client.post("/v1/embeddings", {"input": "a private document"})
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("qwen3_vl_rag")]
    assert len(lines) == 2
    assert "HTTP 503" in lines[0]
    assert "retry 1 of 3" in lines[0]
    assert "retry 2 of 3" in lines[1]
    assert not any(KEY in line or "private document" in line for line in lines)


def test_retry_delay_grows_exponentially_with_jitter_and_caps() -> None:
    for attempt in range(5):
        delay = retry_delay(attempt, backoff=0.5)
        assert 0.25 * 2**attempt <= delay <= 0.5 * 2**attempt
    assert MAX_BACKOFF_S / 2 <= retry_delay(20, backoff=0.5) <= MAX_BACKOFF_S
    assert retry_delay(10_000, backoff=0.5) <= MAX_BACKOFF_S  # no overflow
    assert retry_delay(0, backoff=0.0) == 0.0


def test_retry_delay_honours_a_numeric_retry_after_up_to_a_minute() -> None:
    assert retry_delay(0, backoff=0.5, retry_after="2.5") == 2.5
    assert retry_delay(0, backoff=0.5, retry_after="3600") == MAX_RETRY_AFTER_S
    for ignored in ("Wed, 21 Oct 2026 07:28:00 GMT", "-1", "nan", "inf"):
        assert 0.25 <= retry_delay(0, backoff=0.5, retry_after=ignored) <= 0.5


# --- answers that are errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "text", "shown"),
    [
        ({"error": {"message": "too many tokens", "code": 400}}, None, "too many tokens"),
        ({"message": "bad field"}, None, "bad field"),
        ({"detail": [{"loc": ["body"], "msg": "missing"}]}, None, '"msg": "missing"'),
        ({"object": "error", "error": "plain"}, None, "plain"),
        (None, "Bad request\n  really", "Bad request really"),
    ],
)
def test_a_client_error_carries_the_servers_text(
    server: Server, data: Any, text: str | None, shown: str
) -> None:
    server.script = lambda h, n, body: h.reply(400, data, text=text)
    client = client_for(server.url)
    with client, pytest.raises(ServerResponseError) as info:
        client.post("/v1/embeddings", {})
    assert len(server.seen) == 1  # not retried
    err = info.value
    assert err.status == 400
    assert "HTTP 400 Bad Request" in str(err)
    assert "POST /v1/embeddings" in str(err)
    assert shown in str(err)


def test_the_servers_text_is_cut_to_500_characters() -> None:
    message = server_message(httpx.Response(500, json={"message": "x" * 2000}))
    assert len(message) == 500
    assert message.endswith("…")


def test_a_server_error_500_is_not_retried(server: Server) -> None:
    server.script = lambda h, n, body: h.reply(500, {"message": "boom"})
    with client_for(server.url) as client, pytest.raises(ServerResponseError) as info:
        client.get("/v1/models")
    assert len(server.seen) == 1
    assert info.value.status == 500
    assert "boom" in str(info.value)


def test_a_non_json_answer_does_not_look_like_vllm(server: Server) -> None:
    server.script = lambda h, n, body: h.reply(200, text="<html><h1>Welcome to nginx</h1></html>")
    with client_for(server.url) as client, pytest.raises(ServerResponseError) as info:
        client.get("/v1/models")
    assert len(server.seen) == 1
    assert info.value.status == 200
    assert "does not look like a vLLM server" in str(info.value)
    assert "Welcome to nginx" in str(info.value)


# --- the API key -------------------------------------------------------------------------------


def needs_key(handler: Handler, n: int, body: Any) -> None:
    if handler.headers.get("Authorization") == f"Bearer {KEY}":
        echo(handler, n, body)
    else:
        handler.reply(401, {"error": {"message": f"bad key {handler.headers['Authorization']}"}})


def test_the_key_is_sent_as_a_bearer_token_and_never_shown(server: Server) -> None:
    server.script = needs_key
    client = client_for(server.url, api_key=KEY)
    with client:
        assert client.get("/v1/models")["n"] == 0
    assert server.seen[0].headers["Authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(client)
    assert KEY not in str(client)
    assert "api_key='***'" in repr(client)
    assert "api_key=None" in repr(ServerClient(server.url))
    assert "api_key=None" in repr(ServerClient(server.url, api_key=""))


def test_a_refused_key_says_so_and_is_redacted_from_the_servers_text(server: Server) -> None:
    server.script = needs_key  # echoes the key it was given in its error text
    client = client_for(server.url, api_key=KEY + "-wrong")
    with client, pytest.raises(ServerResponseError) as info:
        client.get("/v1/models")
    err = info.value
    assert err.status == 401
    assert "api_key=" in str(err)
    assert "refused" in str(err)
    assert KEY not in str(err)
    assert KEY not in repr(err)
    assert "bad key Bearer ***" in str(err)


def test_a_missing_key_says_so(server: Server) -> None:
    server.script = lambda h, n, body: h.reply(401, {"error": {"message": "Unauthorized"}})
    with client_for(server.url) as client, pytest.raises(ServerResponseError) as info:
        client.get("/v1/models")
    assert "none was given: pass it as api_key=" in str(info.value)


def test_a_pickled_client_keeps_its_settings_and_authenticates(server: Server) -> None:
    server.script = needs_key
    client = ServerClient(
        server.url, api_key=KEY, timeout=7.0, max_retries=2, backoff=0.01, max_concurrency=3
    )
    copy = pickle.loads(pickle.dumps(client))
    with client, copy:
        assert repr(copy) == repr(client)
        assert (copy.url, copy.timeout, copy.max_retries, copy.backoff, copy.max_concurrency) == (
            server.url,
            7.0,
            2,
            0.01,
            3,
        )
        assert copy.get("/v1/models")["n"] == 0


@pytest.mark.parametrize(
    "cls",
    [
        ServerError,
        ServerUnreachableError,
        ServerTimeoutError,
        ServerResponseError,
        ServerConfigurationError,
    ],
)
def test_server_errors_pickle_with_their_fields(cls: type[ServerError]) -> None:
    err = cls("it failed", url="http://127.0.0.1:8000", status=503)
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is cls
    assert (str(copy), copy.url, copy.status) == ("it failed", "http://127.0.0.1:8000", 503)
    assert isinstance(copy, Qwen3VLRagError)


def test_server_errors_are_the_builtins_callers_catch() -> None:
    assert issubclass(ServerUnreachableError, ConnectionError)
    assert issubclass(ServerTimeoutError, TimeoutError)
    assert issubclass(ServerConfigurationError, ConfigurationError)
    assert issubclass(ServerConfigurationError, ValueError)
    assert issubclass(ServerError, RuntimeError)


# --- many requests -----------------------------------------------------------------------------


def held_together(limit: int) -> Script:
    """The first ``limit`` requests wait until all of them are in flight, then linger a little
    (so one request too many would be seen in flight); the rest answer after a short wait that
    is longest for the earliest bodies (so answers come back out of order)."""

    def script(handler: Handler, n: int, body: Any) -> None:
        srv = handler.server
        if n < limit:
            with srv.cond:
                srv.cond.wait_for(lambda: srv.in_flight >= limit, timeout=2.0)
            time.sleep(0.1)
        else:
            time.sleep(0.01 * (3 - body["i"] % 4))
        handler.reply(200, {"i": body["i"]})

    return script


def test_post_many_keeps_the_order_and_the_concurrency_limit(server: Server) -> None:
    server.script = held_together(3)
    done: list[int] = []
    with client_for(server.url, max_concurrency=3) as client:
        answers = client.post_many(
            "/v1/embeddings", [{"i": i} for i in range(16)], on_done=done.append
        )
    assert answers == [{"i": i} for i in range(16)]
    assert sorted(done) == list(range(16))
    assert server.max_in_flight == 3
    assert len(server.ports()) <= 3


def fail_second_while_first_is_slow(handler: Handler, n: int, body: Any) -> None:
    if body["i"] == 0:
        time.sleep(0.3)
        handler.server.finished.append(0)
        handler.reply(200, {"i": 0})
    elif body["i"] == 1:
        handler.reply(400, {"error": {"message": "item 1 is bad"}})
    else:
        echo(handler, n, body)


def test_post_many_stops_after_a_failure_and_waits_for_those_in_flight(server: Server) -> None:
    server.script = fail_second_while_first_is_slow
    done: list[int] = []
    with client_for(server.url, max_concurrency=2) as client:
        with pytest.raises(ServerResponseError, match="item 1 is bad"):
            client.post_many("/v1/embeddings", [{"i": i} for i in range(10)], on_done=done.append)
        assert server.finished == [0]  # the one in flight was waited for
    assert sorted(seen.body["i"] for seen in server.seen) == [0, 1]  # nothing sent after
    assert done == [0]


def test_post_many_of_nothing_sends_nothing(server: Server) -> None:
    with ServerClient(server.url) as client:
        assert client.post_many("/v1/embeddings", []) == []
    assert server.seen == []


def test_connections_are_reused(server: Server) -> None:
    with client_for(server.url) as client:
        for i in range(20):
            assert client.post("/v1/embeddings", {"i": i})["n"] == i
    assert len(server.seen) == 20
    assert len(server.ports()) == 1


def test_threads_share_one_client(server: Server) -> None:
    client = client_for(server.url, max_concurrency=4)
    answers: dict[tuple[int, int], Any] = {}

    def work(thread: int) -> None:
        for i in range(10):
            answers[thread, i] = client.post("/v1/embeddings", {"t": thread, "i": i})["body"]

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    with client:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert answers == {(t, i): {"t": t, "i": i} for t in range(6) for i in range(10)}
    assert server.max_in_flight <= 4
    assert len(server.ports()) <= 4


# --- async -------------------------------------------------------------------------------------


async def test_async_get_and_post(server: Server) -> None:
    async with client_for(server.url, api_key=KEY) as client:
        assert (await client.aget("/v1/models"))["path"] == "/v1/models"
        assert (await client.apost("/score", {"q": 1}))["body"] == {"q": 1}
    assert server.seen[1].headers["Authorization"] == f"Bearer {KEY}"
    assert len(server.ports()) == 1


async def test_async_retries_then_succeeds(server: Server) -> None:
    server.script = statuses(503, 429)
    async with client_for(server.url, max_retries=2) as client:
        assert (await client.apost("/v1/embeddings", {"x": 1}))["n"] == 2


async def test_async_refused_connection_is_unreachable(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    async with client_for(url, max_retries=1) as client:
        with pytest.raises(ServerUnreachableError, match=f"cannot reach the vLLM server at {url}"):
            await client.aget("/v1/models")


async def test_async_slow_answer_is_a_timeout(server: Server) -> None:
    server.script = lambda h, n, body: time.sleep(1.0)
    async with ServerClient(server.url, timeout=0.2, max_retries=0) as client:
        with pytest.raises(ServerTimeoutError, match=r"timeout=0\.2"):
            await client.apost("/v1/embeddings", {})


async def test_apost_many_keeps_the_order_and_the_concurrency_limit(server: Server) -> None:
    server.script = held_together(3)
    done: list[int] = []
    async with client_for(server.url, max_concurrency=3) as client:
        answers = await client.apost_many(
            "/v1/embeddings", [{"i": i} for i in range(16)], on_done=done.append
        )
    assert answers == [{"i": i} for i in range(16)]
    assert sorted(done) == list(range(16))
    assert server.max_in_flight == 3
    assert len(server.ports()) <= 3


async def test_apost_many_stops_after_a_failure_and_waits_for_those_in_flight(
    server: Server,
) -> None:
    server.script = fail_second_while_first_is_slow
    async with client_for(server.url, max_concurrency=2) as client:
        with pytest.raises(ServerResponseError, match="item 1 is bad"):
            await client.apost_many("/v1/embeddings", [{"i": i} for i in range(10)])
        assert server.finished == [0]
    assert sorted(seen.body["i"] for seen in server.seen) == [0, 1]


def test_one_client_serves_several_event_loops(server: Server) -> None:
    with client_for(server.url) as client:
        first = asyncio.run(client.aget("/a"))
        second = asyncio.run(client.aget("/b"))
        assert client.get("/c")["n"] == 2
    assert (first["path"], second["path"]) == ("/a", "/b")
