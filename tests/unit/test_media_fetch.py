"""Remote fetching: off by default; SSRF guards, redirects, time and size limits, for real.

A local HTTP server on 127.0.0.1 plays the hostile remote: it redirects to private and metadata
addresses, loops redirects, never ends its body, drips it, or declares a huge one. Loopback is
only reachable in these tests through an explicit ``allowed_networks`` policy.
"""

from __future__ import annotations

import contextlib
import gc
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qwen3_vl_rag import BlockedURLError, FetchError, InputTooLargeError, RemoteInputError
from qwen3_vl_rag.media import RemotePolicy, fetch, load
from tests import media_files

pytestmark = pytest.mark.enable_socket

PNG = media_files.png_bytes(Image.new("RGB", (40, 30), (250, 10, 10)))


class Remote(BaseHTTPRequestHandler):
    requests: list[str]
    pdf: bytes = b""

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        self.requests.append(self.path)
        route = self.path.split("?")[0]
        # The client giving up mid-response is exactly what several tests want.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            getattr(self, "route_" + route.strip("/").replace("-", "_").split("/")[0])()

    def send(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        if "Content_Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def route_image(self) -> None:
        self.send(200, PNG, Content_Type="image/png")

    def route_report(self) -> None:
        self.send(200, self.pdf, Content_Type="application/pdf")

    def route_private(self) -> None:
        self.send(302, Location="http://10.20.30.40/internal.png")

    def route_metadata(self) -> None:
        self.send(302, Location="http://169.254.169.254/latest/meta-data/")

    def route_hop(self) -> None:
        hops = int(self.path.rsplit("/", 1)[1])
        self.send(302, Location=f"/hop/{hops + 1}")

    def route_to_image(self) -> None:
        self.send(301, Location="/image")

    def route_endless(self) -> None:  # no Content-Length, never ends
        self.send_response(200)
        self.end_headers()
        while True:
            self.wfile.write(b"\0" * 65536)

    def route_drip(self) -> None:  # a valid length, one byte at a time
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        for _ in range(100000):
            self.wfile.write(b"x")
            self.wfile.flush()
            time.sleep(0.05)

    def route_huge(self) -> None:
        self.send(200, b"", Content_Length=str(10**9))

    def route_silent(self) -> None:
        time.sleep(8)

    def route_missing(self) -> None:
        self.send(404, b"no")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    Remote.requests = []
    Remote.pdf = media_files.report_pdf(tmp_path_factory.mktemp("remote") / "r.pdf").read_bytes()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Remote)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", Remote.requests
    httpd.shutdown()
    httpd.server_close()


LOOPBACK = RemotePolicy(
    allowed_networks=("127.0.0.1/32",), read_timeout=1.0, total_timeout=3.0, max_bytes=1024 * 1024
)


def fresh(requests: list[str]) -> list[str]:
    requests.clear()
    return requests


def test_remote_fetching_is_off_by_default(server: tuple[str, list[str]]) -> None:
    base, requests = server
    fresh(requests)
    with pytest.raises(RemoteInputError, match="remote fetching is off") as info:
        load(f"{base}/image")
    assert "allow_remote=True" in (info.value.hint or "")
    assert requests == []


def test_loopback_is_refused_before_any_request(server: tuple[str, list[str]]) -> None:
    base, requests = server
    fresh(requests)
    port = base.rsplit(":", 1)[1]
    for url in (
        f"{base}/image",
        f"http://localhost:{port}/image",
        f"http://2130706433:{port}/image",
        f"http://[::1]:{port}/image",
    ):
        with pytest.raises(BlockedURLError, match="not a public address"):
            load(url, allow_remote=True)
    assert requests == []  # nothing reached the server


@pytest.mark.parametrize(
    "addresses",
    [
        ["10.0.0.7"],
        ["192.168.1.20"],
        ["172.16.5.5"],
        ["169.254.169.254"],
        ["100.64.0.1"],
        ["0.0.0.0"],
        ["::ffff:127.0.0.1"],
        ["fd00:ec2::254"],
        ["224.0.0.1"],
        ["93.184.216.34", "10.0.0.7"],  # one private answer among public ones is enough
    ],
)
def test_private_resolutions_are_refused(addresses: list[str]) -> None:
    policy = RemotePolicy(resolver=lambda host, port: addresses)
    with pytest.raises(BlockedURLError, match="not a public address"):
        fetch("https://images.example.com/x.png", policy)


def test_schemes_and_metadata_names_are_refused() -> None:
    for url in (
        "file:///etc/passwd",
        "ftp://example.com/x.png",
        "gopher://example.com/",
        "javascript:alert(1)",
    ):
        with pytest.raises(BlockedURLError, match="scheme"):
            fetch(url)
    with pytest.raises(BlockedURLError, match="metadata"):
        fetch("http://metadata.google.internal/computeMetadata/v1/")


def test_an_allowed_image_is_fetched_and_loaded(server: tuple[str, list[str]]) -> None:
    base, requests = server
    fresh(requests)
    fetched = fetch(f"{base}/to-image", LOOPBACK)  # one redirect, then the image
    assert fetched.url == f"{base}/image" and fetched.data == PNG
    assert fetched.content_type == "image/png" and requests == ["/to-image", "/image"]
    (item,) = list(load(f"{base}/image", allow_remote=True, policy=LOOPBACK))
    assert item.source == f"{base}/image"
    assert np.asarray(item.load_image())[5, 5].tolist() == [250, 10, 10]


def test_a_fetched_pdf_lives_in_a_temporary_file_while_used(server: tuple[str, list[str]]) -> None:
    base, _ = server
    document = load(f"{base}/report", allow_remote=True, policy=LOOPBACK)
    pages = list(document)
    assert [p.metadata["page"] for p in pages] == [0, 1, 2]
    assert pages[0].source == f"{base}/report"
    assert pages[0].load_image().size == (1152, 1600)
    temporary = Path(document.path)  # type: ignore[attr-defined]
    assert temporary.exists()
    del document, pages
    gc.collect()
    assert not temporary.exists()


@pytest.mark.parametrize("route", ["private", "metadata"])
def test_redirects_are_validated_hop_by_hop(server: tuple[str, list[str]], route: str) -> None:
    base, requests = server
    fresh(requests)
    with pytest.raises(BlockedURLError, match="not a public address"):
        fetch(f"{base}/{route}", LOOPBACK)
    assert requests == [f"/{route}"]  # the private target was never contacted


def test_redirect_chains_are_capped(server: tuple[str, list[str]]) -> None:
    base, requests = server
    fresh(requests)
    with pytest.raises(BlockedURLError, match="more than 5 redirects"):
        fetch(f"{base}/hop/0", LOOPBACK)
    assert len(requests) == 6


def test_a_body_that_never_ends_stops_at_the_byte_cap(server: tuple[str, list[str]]) -> None:
    base, _ = server
    started = time.monotonic()
    with pytest.raises(InputTooLargeError, match="exceeded the limit of 1048576 bytes"):
        fetch(f"{base}/endless", LOOPBACK)
    assert time.monotonic() - started < 3.0


def test_a_declared_huge_body_is_refused_unread(server: tuple[str, list[str]]) -> None:
    base, _ = server
    with pytest.raises(InputTooLargeError, match="1000000000 bytes, over the limit"):
        fetch(f"{base}/huge", LOOPBACK)


def test_a_dripping_body_stops_at_the_total_deadline(server: tuple[str, list[str]]) -> None:
    base, _ = server
    started = time.monotonic()
    with pytest.raises(FetchError, match="took longer than 3 s"):
        fetch(f"{base}/drip", LOOPBACK)
    assert time.monotonic() - started < 4.5


def test_a_silent_server_stops_at_the_read_timeout(server: tuple[str, list[str]]) -> None:
    base, _ = server
    started = time.monotonic()
    with pytest.raises(FetchError, match="no response within 1 s"):
        fetch(f"{base}/silent", LOOPBACK)
    assert time.monotonic() - started < 2.5


def test_http_errors_are_typed(server: tuple[str, list[str]]) -> None:
    base, _ = server
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch(f"{base}/missing", LOOPBACK)


def test_unreachable_hosts_are_typed() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    with pytest.raises(FetchError, match="the request failed"):
        fetch(f"http://127.0.0.1:{port}/x", LOOPBACK)
