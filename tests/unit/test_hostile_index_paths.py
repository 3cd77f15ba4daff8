"""Manifest keys of file names: exact bytes back, never two names on one key (issue 15, item 8)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qwen3_vl_rag.checked_files import display_path
from qwen3_vl_rag.index._paths import key_path, path_key

NAMES = [
    b"/data/plain.png",
    b"/data/caf\xc3\xa9.png",  # UTF-8
    b"/data/caf\xe9.png",  # Latin-1: not UTF-8
    b"/data/caf\\xe9.png",  # a backslash, then x, e, 9
    b"/data/caf\\\xe9.png",  # a backslash, then a Latin-1 byte
    b"/data/caf\\\\xe9.png",  # two backslashes
    b"/data/\xed\xa0\x80.png",  # an encoded surrogate: not valid UTF-8
    b"/data/\xff\xfe\\",  # ends in a backslash
    b"/data/tab\there.png",
]


@pytest.mark.parametrize("raw", NAMES)
def test_a_key_gives_back_the_exact_bytes(raw: bytes) -> None:
    key = path_key(os.fsdecode(raw))
    key.encode("utf-8")  # storable in SQLite and Chroma as it is
    assert os.fsencode(key_path(key)) == raw
    assert path_key(raw) == path_key(Path(os.fsdecode(raw))) == key


def test_distinct_names_get_distinct_keys() -> None:
    keys = {path_key(raw) for raw in NAMES}
    assert len(keys) == len(NAMES)
    # the display form alone confuses the two files of the issue
    assert display_path(os.fsdecode(NAMES[2])) == display_path(os.fsdecode(NAMES[3]))


def test_a_readable_name_is_its_own_key() -> None:
    for raw in (NAMES[0], NAMES[1], NAMES[8]):
        assert path_key(os.fsdecode(raw)) == raw.decode()
    assert path_key(os.fsdecode(NAMES[2])) == "/data/caf\\xe9.png"
    assert path_key(os.fsdecode(NAMES[3])) == "/data/caf\\\\xe9.png"


def test_the_gallery_links_to_the_exact_file() -> None:
    from qwen3_vl_rag.cli.gallery import _link
    from qwen3_vl_rag.index._results import SearchResult

    def link(raw: bytes) -> str | None:
        result = SearchResult(
            rank=1,
            id="0" * 32,
            kind="image",
            source=path_key(os.fsdecode(raw)),
            locator="",
            vector_score=0.5,
            rerank_score=None,
            text=None,
            thumbnail=None,
            metadata={},
        )
        return _link(result)

    assert link(b"/data/caf\xe9.png") == "file:///data/caf%E9.png"
    assert link(b"/data/caf\\xe9.png") == "file:///data/caf%5Cxe9.png"
