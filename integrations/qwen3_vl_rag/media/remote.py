"""Fetch images, PDFs and videos over HTTP(S), with guards against SSRF and resource exhaustion.

Remote fetching is off unless a caller turns it on (``allow_remote=True``); URLs found *inside*
documents are never followed. When it is on, every request:

* uses an allowed scheme (``https`` and ``http`` by default);
* resolves the host first (within the total time) and refuses it unless **every** address is
  globally routable: loopback, private, link-local (cloud metadata at 169.254.169.254),
  carrier-grade NAT, multicast and reserved addresses are refused, as are known metadata host
  names, and so are IPv6 addresses that carry one of those IPv4 addresses (IPv4-mapped,
  IPv4-compatible, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``, Teredo) and the local-use NAT64
  prefix ``64:ff9b:1::/48``;
* connects to the address it validated (no second lookup, so DNS rebinding cannot swap it);
* follows at most ``max_redirects`` redirects by hand, validating each new URL the same way;
* stops at ``connect_timeout``, ``read_timeout`` (per read) and ``total_timeout`` (the whole
  fetch: every socket operation, from connecting to the status line, headers, chunk sizes and
  body, waits at most for what is left of it, so a server dripping bytes cannot stretch it);
* refuses a body over ``max_bytes``, from ``Content-Length`` or while streaming.

Environment proxies are ignored: a proxy would make the address checks meaningless.
"""

from __future__ import annotations

import http.client
import io
import ipaddress
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from qwen3_vl_rag.errors import BlockedURLError, FetchError, InputTooLargeError

__all__ = ["Fetched", "RemotePolicy", "fetch"]

_REDIRECTS = (301, 302, 303, 307, 308)
_METADATA_HOSTS = frozenset(
    {
        "metadata.google.internal",
        "metadata.goog",
        "metadata",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
Resolver = Callable[[str, int], Sequence[str]]


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


@dataclass(frozen=True)
class RemotePolicy:
    """What remote fetching may do.

    Args:
        schemes: Allowed URL schemes.
        max_bytes: Largest body accepted.
        connect_timeout: Seconds to establish a connection.
        read_timeout: Seconds one read may wait.
        total_timeout: Seconds the whole fetch (redirects included) may take.
        max_redirects: Redirects followed at most.
        allowed_networks: Networks allowed although not public (an intranet such as
            ``"10.20.0.0/16"``); empty by default.
        resolver: ``(host, port) -> addresses``; the system resolver by default (tests inject one).
        user_agent: The ``User-Agent`` header.

    Example:
        >>> from qwen3_vl_rag.media import RemotePolicy, load
        >>> policy = RemotePolicy(max_bytes=10_000_000, allowed_networks=("10.20.0.0/16",))
        >>> policy.networks()
        [IPv4Network('10.20.0.0/16')]
        >>> load("http://metadata.google.internal/v1/", allow_remote=True, policy=policy)
        Traceback (most recent call last):
          ...
        qwen3_vl_rag.errors.BlockedURLError: http://metadata.google.internal/v1/: cloud metadata
        hosts are never fetched.
    """

    schemes: frozenset[str] = frozenset({"https", "http"})
    max_bytes: int = 64 * 1024 * 1024
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    total_timeout: float = 30.0
    max_redirects: int = 5
    allowed_networks: tuple[str, ...] = ()
    resolver: Resolver | None = field(default=None, compare=False, repr=False)
    user_agent: str = "qwen3-vl-rag"

    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """The allowed non-public networks, parsed."""
        return [ipaddress.ip_network(n, strict=False) for n in self.allowed_networks]


@dataclass(frozen=True)
class Fetched:
    """A fetched body: the final URL (after redirects), the bytes and the declared type.

    Example:
        >>> from pathlib import Path
        >>> from qwen3_vl_rag.media import Fetched, load_image
        >>> fetched = Fetched("https://example.com/chart.png", Path("chart.png").read_bytes(),
        ...                   "image/png")  # what fetch("https://example.com/chart.png") returns
        >>> load_image(fetched.data, source=fetched.url)
        MediaItem(image, 'https://example.com/chart.png')
    """

    url: str
    data: bytes
    content_type: str | None


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str
    address: str


# IPv6 forms that carry an IPv4 address in their low 32 bits and mean exactly that IPv4 host:
# IPv4-mapped, IPv4-translated (SIIT), IPv4-compatible (deprecated) and well-known NAT64.
_IPV4_IN_LOW_BITS = tuple(
    ipaddress.IPv6Network(n) for n in ("::ffff:0:0/96", "::ffff:0:0:0/96", "::/96", "64:ff9b::/96")
)
# Prefixes never public whatever the Python version's tables say (3.13 knows them, 3.11 does not):
# local-use NAT64, whose embedding position depends on a local prefix length, so it cannot be read.
_NOT_PUBLIC_V6 = (ipaddress.IPv6Network("64:ff9b:1::/48"),)

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _addresses_to_judge(ip: _Address) -> list[_Address]:
    """The addresses a connection to ``ip`` actually reaches, to be judged one by one.

    An IPv6 address that wraps an IPv4 one (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible
    ``::a.b.c.d``, NAT64 ``64:ff9b::a.b.c.d``) is judged as that IPv4 address; a 6to4
    (``2002:AABB:CCDD::/48``) or Teredo (``2001::/32``) address is judged both as itself and as the
    IPv4 address it embeds. Any other address is judged as itself.

    Example:
        >>> _addresses_to_judge(ipaddress.ip_address("64:ff9b::a9fe:a9fe"))
        [IPv4Address('169.254.169.254')]
    """
    if isinstance(ip, ipaddress.IPv4Address):
        return [ip]
    if any(ip in network for network in _IPV4_IN_LOW_BITS):
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    judged: list[_Address] = []
    if ip.sixtofour is not None:
        judged.append(ip.sixtofour)
    if ip.teredo is not None:
        judged.append(ip.teredo[1])  # the client's (de-obfuscated) address is where it goes
    return [*judged, ip]


def _is_public(judged: _Address) -> bool:
    """Whether one judged address is a globally routable unicast address."""
    if not judged.is_global or judged.is_multicast:
        return False
    if isinstance(judged, ipaddress.IPv6Address):
        return not judged.is_reserved and not any(judged in net for net in _NOT_PUBLIC_V6)
    return True


def _check_address(address: str, policy: RemotePolicy, url: str) -> None:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError as exc:
        raise BlockedURLError(
            f"its host resolves to {address!r}, which is not an IP address.",
            source=url,
            stage="fetch",
        ) from exc
    networks = policy.networks()
    if any(ip in network for network in networks):
        return
    for judged in _addresses_to_judge(ip):
        if any(judged in network for network in networks):
            continue
        if not _is_public(judged):
            shown = f"{ip} (which carries {judged})" if judged != ip else f"{ip}"
            raise BlockedURLError(
                f"its host resolves to {shown}, which is not a public address.",
                source=url,
                stage="fetch",
                hint="Only public addresses are fetched; allow a network explicitly with "
                "RemotePolicy(allowed_networks=...) if you trust it.",
            )


def _resolve(url: str, policy: RemotePolicy, deadline: float) -> _Target:
    """Parse and validate a URL; return where to connect."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BlockedURLError(f"not a valid URL ({exc}).", source=url, stage="fetch") from exc
    scheme = parts.scheme.lower()
    if scheme not in policy.schemes:
        raise BlockedURLError(
            f"the scheme {scheme or '(none)'!r} is not allowed; allowed: "
            f"{', '.join(sorted(policy.schemes))}.",
            source=url,
            stage="fetch",
        )
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise BlockedURLError("the URL has no host.", source=url, stage="fetch")
    if host in _METADATA_HOSTS:
        raise BlockedURLError("cloud metadata hosts are never fetched.", source=url, stage="fetch")
    port = port or (443 if scheme == "https" else 80)
    resolver = policy.resolver or _system_resolver
    try:
        addresses = _lookup(resolver, host, port, deadline - time.monotonic())
    except TimeoutError as exc:
        raise _timed_out(deadline, policy, url, "") from exc
    except (OSError, UnicodeError) as exc:
        raise FetchError(
            f"the host could not be resolved ({exc}).", source=url, stage="fetch"
        ) from exc
    if not addresses:
        raise FetchError("the host has no address.", source=url, stage="fetch")
    for address in addresses:  # every address must pass: one private answer is enough to refuse
        _check_address(address, policy, url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return _Target(scheme, host, port, path, addresses[0])


class _OutOfTime(TimeoutError):
    """The whole fetch ran past ``total_timeout`` (raised before a socket operation)."""


@dataclass(frozen=True)
class _Clock:
    """One fetch's time: each socket wait is the smaller of its own limit and what is left."""

    deadline: float
    read_timeout: float
    connect_timeout: float

    def left(self, limit: float) -> float:
        """Seconds the next socket operation may wait; raises once the fetch is out of time."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise _OutOfTime
        return min(limit, remaining)

    def arm(self, sock: socket.socket) -> None:
        """Set the socket's timeout for its next read or write."""
        sock.settimeout(self.left(self.read_timeout))


class _ClockedReader(io.RawIOBase):
    """The response's byte source: re-arms the socket's timeout from the clock before every read.

    ``http.client`` reads the status line, headers, chunk sizes and body through this, so a server
    sending one byte at a time still stops at the total deadline, not one read timeout per byte.
    """

    def __init__(self, raw: io.RawIOBase, sock: socket.socket, clock: _Clock) -> None:
        super().__init__()
        self._raw, self._sock, self._clock = raw, sock, clock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        self._clock.arm(self._sock)
        return self._raw.readinto(buffer)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()  # releases the socket's reference held by makefile()
        super().close()


class _ClockedResponse(http.client.HTTPResponse):
    _clock: _Clock  # set on the per-connection subclass made by _response_class

    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        raw = self.fp.detach()  # nothing is buffered yet: the constructor reads nothing
        self.fp = io.BufferedReader(_ClockedReader(raw, sock, self._clock))


def _response_class(clock: _Clock) -> type[http.client.HTTPResponse]:
    class Response(_ClockedResponse):
        _clock = clock

    return Response


def _connect(address: str, port: int, clock: _Clock) -> socket.socket:
    """A TCP connection to a validated address, within the connect timeout and the clock."""
    sock = socket.create_connection((address, port), clock.left(clock.connect_timeout))
    clock.arm(sock)
    return sock


def _lookup(resolver: Resolver, host: str, port: int, seconds: float) -> list[str]:
    """``resolver(host, port)``, given at most ``seconds``: a slow name server is a slow server.

    The lookup runs in a daemon thread (``getaddrinfo`` cannot be interrupted); past the time it
    is abandoned, and ends on its own at the system resolver's timeout.
    """
    outcome: list[list[str] | BaseException] = []

    def run() -> None:
        try:
            outcome.append(list(resolver(host, port)))
        except BaseException as exc:  # handed to the caller's thread
            outcome.append(exc)

    thread = threading.Thread(target=run, name="qwen3-vl-rag-resolve", daemon=True)
    thread.start()
    thread.join(max(seconds, 0.0))
    if not outcome:
        raise TimeoutError
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to a validated address while speaking to the named host."""

    def __init__(self, target: _Target, clock: _Clock) -> None:
        super().__init__(target.host, target.port, timeout=clock.connect_timeout)
        self._address, self._clock = target.address, clock
        self.response_class = _response_class(clock)

    def connect(self) -> None:
        self.sock = _connect(self._address, self.port, self._clock)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """The TLS variant: certificate checked against the host name, socket to the address."""

    def __init__(self, target: _Target, clock: _Clock) -> None:
        super().__init__(
            target.host,
            target.port,
            timeout=clock.connect_timeout,
            context=ssl.create_default_context(),
        )
        self._address, self._clock = target.address, clock
        self.response_class = _response_class(clock)

    def connect(self) -> None:
        raw = _connect(self._address, self.port, self._clock)  # the handshake waits at most this
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


def fetch(url: str, policy: RemotePolicy | None = None) -> Fetched:
    """GET ``url`` under ``policy`` and return its body.

    Raises:
        BlockedURLError: A scheme, host, address or redirect the policy refuses (nothing is sent
            to a refused address).
        FetchError: Connection failure, time limit, too many redirects, or an HTTP error status.
        InputTooLargeError: A body over ``policy.max_bytes``.

    Example:
        >>> fetched = fetch("https://example.com/chart.png", RemotePolicy(max_bytes=10_000_000))
        ... # doctest: +SKIP
        >>> fetched.content_type, len(fetched.data)  # doctest: +SKIP
        ('image/png', 48213)

        Schemes other than http(s), and addresses inside the machine or its network, are
        refused before anything is sent:

        >>> fetch("file:///etc/passwd")
        Traceback (most recent call last):
          ...
        qwen3_vl_rag.errors.BlockedURLError: ...
    """
    policy = policy or RemotePolicy()
    deadline = time.monotonic() + policy.total_timeout
    clock = _Clock(deadline, policy.read_timeout, policy.connect_timeout)
    current = url
    for _ in range(policy.max_redirects + 1):
        target = _resolve(current, policy, deadline)
        connection_type: Any = (
            _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
        )
        connection = connection_type(target, clock)
        try:
            response = _request(connection, target, policy, current, deadline)
            if response.status in _REDIRECTS:
                location = response.getheader("Location")
                if not location:
                    raise FetchError(
                        f"HTTP {response.status} without a Location.", source=current, stage="fetch"
                    )
                current = urllib.parse.urljoin(current, location)
                continue
            if response.status >= 400:
                raise FetchError(
                    f"HTTP {response.status} {response.reason}.", source=current, stage="fetch"
                )
            data = _read_body(response, policy, current, deadline)
            return Fetched(current, data, response.getheader("Content-Type"))
        finally:
            connection.close()
    raise BlockedURLError(f"more than {policy.max_redirects} redirects.", source=url, stage="fetch")


def _request(
    connection: Any, target: _Target, policy: RemotePolicy, url: str, deadline: float
) -> http.client.HTTPResponse:
    _check_deadline(deadline, policy, url)
    try:
        connection.request(
            "GET",
            target.path,
            headers={
                "User-Agent": policy.user_agent,
                "Accept": "*/*",
                "Accept-Encoding": "identity",
            },
        )
        response: http.client.HTTPResponse = connection.getresponse()
    except TimeoutError as exc:
        raise _timed_out(
            deadline, policy, url, f"no response within {policy.read_timeout:g} s."
        ) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise FetchError(
            f"the request failed ({type(exc).__name__}: {exc}).", source=url, stage="fetch"
        ) from exc
    return response


def _read_body(
    response: http.client.HTTPResponse, policy: RemotePolicy, url: str, deadline: float
) -> bytes:
    declared = response.getheader("Content-Length")
    if declared and declared.isdigit() and int(declared) > policy.max_bytes:
        raise InputTooLargeError(
            f"the body is {int(declared)} bytes, over the limit of {policy.max_bytes}.",
            source=url,
            stage="fetch",
        )
    chunks: list[bytes] = []
    total = 0
    while True:
        _check_deadline(deadline, policy, url)
        try:
            chunk = response.read1(64 * 1024)  # what is there: a drip cannot dodge the deadline
        except TimeoutError as exc:
            stalled = f"the body stalled for {policy.read_timeout:g} s."
            raise _timed_out(deadline, policy, url, stalled) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise FetchError(
                f"reading the body failed ({type(exc).__name__}: {exc}).", source=url, stage="fetch"
            ) from exc
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > policy.max_bytes:
            raise InputTooLargeError(
                f"the body exceeded the limit of {policy.max_bytes} bytes.",
                source=url,
                stage="fetch",
            )
        chunks.append(chunk)


def _check_deadline(deadline: float, policy: RemotePolicy, url: str) -> None:
    if time.monotonic() >= deadline:
        raise _timed_out(deadline, policy, url, "")


def _timed_out(deadline: float, policy: RemotePolicy, url: str, otherwise: str) -> FetchError:
    """The error for a timeout: the total limit once it is spent, else ``otherwise``."""
    if time.monotonic() >= deadline or not otherwise:
        reason = f"the fetch took longer than {policy.total_timeout:g} s."
    else:
        reason = otherwise
    return FetchError(reason, source=url, stage="fetch")
