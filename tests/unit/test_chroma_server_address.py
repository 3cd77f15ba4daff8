"""A Chroma server's URL and collection name are checked before anything connects."""

from __future__ import annotations

import pytest

from qwen3_vl_rag.errors import ConfigurationError
from qwen3_vl_rag.index._server_store import (
    ServerAddress,
    check_collection_name,
    server_address,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8000", ServerAddress("127.0.0.1", 8000, ssl=False)),
        ("http://chroma.local", ServerAddress("chroma.local", 8000, ssl=False)),
        ("https://chroma.example.com/", ServerAddress("chroma.example.com", 443, ssl=True)),
        (" https://[::1]:9000 ", ServerAddress("::1", 9000, ssl=True)),
    ],
)
def test_a_server_url_gives_host_port_and_tls(url: str, expected: ServerAddress) -> None:
    assert server_address(url) == expected


def test_an_ipv6_address_is_written_back_in_brackets() -> None:
    assert server_address("http://[::1]:8000").url == "http://[::1]:8000"


@pytest.mark.parametrize(
    "url",
    ["127.0.0.1:8000", "ftp://host", "http://", "http://host:99999", "http://host/api", "x"],
)
def test_anything_else_is_refused_naming_server(url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"server="):
        server_address(url)


@pytest.mark.parametrize("name", ["ab", "-index", "index-", "with space", "a" * 501])
def test_a_collection_chroma_would_refuse_is_refused_first(name: str) -> None:
    with pytest.raises(ConfigurationError, match="collection="):
        check_collection_name(name)


def test_a_valid_collection_name_is_kept() -> None:
    assert check_collection_name("team.docs_2024-v1") == "team.docs_2024-v1"
