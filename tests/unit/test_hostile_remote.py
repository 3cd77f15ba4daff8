"""The remote fetcher under attack: slow-drip servers and IPv6 disguises of private addresses.

A raw TCP server on 127.0.0.1 drips its status line, headers or chunk sizes one byte every 0.3 s;
the fetch must stop at its total time limit however the bytes trickle in. Loopback is only
reachable here through an explicit ``allowed_networks`` policy. The address classifier is tested
with injected resolver answers: nothing is ever sent to them.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from qwen3_vl_rag import BlockedURLError, FetchError
from qwen3_vl_rag.media import RemotePolicy, fetch
from qwen3_vl_rag.media.remote import _addresses_to_judge, _check_address

pytestmark = pytest.mark.enable_socket

DRIP_SECONDS = 0.3
LIMIT = 2.0
# A per-read timeout well above the drip interval: only the total limit can stop these fetches.
DRIPPING = RemotePolicy(
    allowed_networks=("127.0.0.1/32",), read_timeout=1.0, total_timeout=LIMIT, max_bytes=1 << 20
)

# What each route sends: (fast prefix, dripped part, fast suffix). Each drip lasts ~6 s, so an
# unguarded fetch takes well past LIMIT + 1 s instead of hanging the test run.
ROUTES = {
    "status": (b"", b"HTTP/1.1 200 OK\r\n", b"Content-Length: 2\r\n\r\nok"),
    "headers": (b"HTTP/1.1 200 OK\r\n", b"X-Slow: aaaaaaaaaaa\r\n", b"Content-Length: 2\r\n\r\nok"),
    "chunk-size": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"00000000000000000002\r\n",
        b"ok\r\n0\r\n\r\n",
    ),
    "brief": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"2\r\n",
        b"ok\r\n0\r\n\r\n",
    ),
}


class DripServer:
    """Answers each connection by its request path, dripping the middle part byte by byte."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                request = conn.recv(4096).decode("latin-1")
                path = request.split(" ", 2)[1].strip("/")
                if path == "silent":  # says nothing for longer than the total limit
                    self.stop.wait(6.0)
                    return
                fast, dripped, rest = ROUTES[path]
                conn.sendall(fast)
                for byte in dripped:
                    if self.stop.wait(DRIP_SECONDS):
                        return
                    conn.sendall(bytes([byte]))
                conn.sendall(rest)
            except OSError:  # the client gave up: exactly what the tests want
                pass

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


@pytest.fixture(scope="module")
def drip() -> Iterator[str]:
    server = DripServer()
    yield f"http://127.0.0.1:{server.port}"
    server.close()


@pytest.mark.parametrize("route", ["status", "headers", "chunk-size"])
def test_a_drip_stops_at_the_total_limit(drip: str, route: str) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError, match=f"took longer than {LIMIT:g} s"):
        fetch(f"{drip}/{route}", DRIPPING)
    assert time.monotonic() - started < LIMIT + 1.0


def test_the_total_limit_cuts_a_longer_read_timeout(drip: str) -> None:
    policy = RemotePolicy(
        allowed_networks=("127.0.0.1/32",), read_timeout=30.0, total_timeout=LIMIT
    )
    started = time.monotonic()
    with pytest.raises(FetchError, match=f"took longer than {LIMIT:g} s"):
        fetch(f"{drip}/silent", policy)
    assert time.monotonic() - started < LIMIT + 1.0


def test_a_drip_inside_the_limit_is_fetched(drip: str) -> None:
    patient = RemotePolicy(allowed_networks=("127.0.0.1/32",), read_timeout=1.0, total_timeout=20)
    fetched = fetch(f"{drip}/brief", patient)
    assert fetched.data == b"ok"


# -- the address classifier ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "carried"),
    [
        ("64:ff9b::7f00:1", "127.0.0.1"),  # NAT64 well-known prefix
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),
        ("64:ff9b::a00:5", "10.0.0.5"),
        ("2002:7f00:1::", "127.0.0.1"),  # 6to4
        ("2002:a9fe:a9fe:1::1", "169.254.169.254"),
        ("2002:c0a8:101::", "192.168.1.1"),
        ("::7f00:1", "127.0.0.1"),  # IPv4-compatible
        ("::a00:1", "10.0.0.1"),
        ("::ffff:0:a9fe:a9fe", "169.254.169.254"),  # IPv4-translated (SIIT)
        ("::ffff:ac10:1", "172.16.0.1"),  # IPv4-mapped
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "10.0.0.1"),  # Teredo, client obfuscated
    ],
)
def test_ipv6_forms_of_private_addresses_are_refused(address: str, carried: str) -> None:
    judged = [str(ip) for ip in _addresses_to_judge(ipaddress.ip_address(address))]
    assert carried in judged
    policy = RemotePolicy(resolver=lambda host, port: [address])
    with pytest.raises(BlockedURLError, match=re.escape(carried) + ".*not a public address"):
        fetch("https://images.example.com/x.png", policy)


def test_the_local_use_nat64_prefix_is_refused() -> None:
    policy = RemotePolicy(resolver=lambda host, port: ["64:ff9b:1::a00:1"])
    with pytest.raises(BlockedURLError, match="not a public address"):
        fetch("https://images.example.com/x.png", policy)


@pytest.mark.parametrize(
    "address",
    ["93.184.216.34", "2606:2800:220:1::1", "64:ff9b::5db8:d822", "::ffff:93.184.216.34"],
)
def test_public_addresses_and_their_ipv6_forms_pass(address: str) -> None:
    _check_address(address, RemotePolicy(), "https://images.example.com/x.png")


def test_an_allowed_network_covers_its_ipv6_forms() -> None:
    policy = RemotePolicy(allowed_networks=("10.0.0.0/8",))
    _check_address("64:ff9b::a00:5", policy, "https://intranet.example/x.png")
    with pytest.raises(BlockedURLError, match=re.escape("169.254.169.254")):
        _check_address("64:ff9b::a9fe:a9fe", policy, "https://intranet.example/x.png")


def test_a_resolver_answer_that_is_no_address_is_refused() -> None:
    policy = RemotePolicy(resolver=lambda host, port: ["not-an-ip"])
    with pytest.raises(BlockedURLError, match="not an IP address"):
        fetch("https://images.example.com/x.png", policy)


def test_a_slow_name_lookup_counts_against_the_total_limit() -> None:
    def slow(host: str, port: int) -> list[str]:
        time.sleep(5)
        return ["93.184.216.34"]

    started = time.monotonic()
    with pytest.raises(FetchError, match="took longer than 1 s"):
        fetch("https://images.example.com/x.png", RemotePolicy(resolver=slow, total_timeout=1.0))
    assert time.monotonic() - started < 2.0
