"""A loopback HTTP proxy in front of a real server, to stage its faults in a test.

It forwards every request to ``upstream`` unless told to answer with an error status first
(``fail``), to wait before answering (``delay``), or to stop listening altogether (``stop``).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx


class FaultyProxy:
    """Forwards to ``upstream``; ``url`` is where clients connect."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.fail: deque[int] = deque()  # statuses to answer, one per request, before forwarding
        # refuse requests whose body holds this text, with this status and message, as a server
        # set up so would (e.g. vLLM without --trust-request-mm-kwargs)
        self.refuse: tuple[bytes, int, str] | None = None
        self.delay = 0.0
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path, headers)
        self.forward_after: int | None = None  # go down after this many forwarded requests
        self.down = False
        self._forwarded = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        """Go down: new connections are refused, open ones dropped."""
        self.down = True
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt: str, *args: Any) -> None:
                return

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy.down:  # gone: a kept-alive connection is dropped without an answer
                    self.close_connection = True
                    return
                with proxy._lock:
                    proxy.requests.append((self.command, self.path, dict(self.headers)))
                    status = proxy.fail.popleft() if proxy.fail else None
                message = "staged failure"
                if status is None and proxy.refuse is not None and proxy.refuse[0] in body:
                    _, status, message = proxy.refuse
                if status is not None:
                    payload = json.dumps({"error": {"message": message}}).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if proxy.delay:
                    time.sleep(proxy.delay)
                headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
                if "Authorization" in self.headers:
                    headers["Authorization"] = self.headers["Authorization"]
                answer = httpx.request(
                    self.command,
                    proxy.upstream + self.path,
                    content=body,
                    headers=headers,
                    timeout=300,
                    trust_env=False,
                )
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("content-type", "text/plain"))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)
                with proxy._lock:
                    proxy._forwarded += 1
                    done = (
                        proxy.forward_after is not None and proxy._forwarded >= proxy.forward_after
                    )
                if done:
                    proxy.down = True
                    threading.Thread(target=proxy.stop, daemon=True).start()

            do_GET = _relay
            do_POST = _relay

        return Handler
