r"""Source paths as manifest keys: text that gives back the exact bytes of the file's name.

POSIX file names are bytes, and need not be UTF-8. SQLite and Chroma take valid UTF-8 only, so
a name is stored as text with every undecodable byte written ``\xNN`` and every backslash
doubled: ``caf\xe9.png`` (a Latin-1 byte) and a name literally spelled ``caf\xe9.png`` get
different keys, and each key turns back into its own bytes. A UTF-8 name without a backslash
is its own key, so keys read as the paths they are.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["key_path", "path_key"]

_ESCAPE = re.compile(r"\\(\\|x[0-9a-fA-F]{2})")


def path_key(path: str | os.PathLike[str] | bytes) -> str:
    """The manifest key of ``path``: valid UTF-8 text, one key per distinct byte string."""
    raw = os.fsencode(path)
    return raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")


def key_path(key: str) -> Path:
    r"""The path a key was made from, with its exact bytes (the inverse of :func:`path_key`).

    A lone backslash that escapes nothing (a key written before names were escaped) is kept
    as it is.
    """
    raw = bytearray()
    position = 0
    for match in _ESCAPE.finditer(key):
        raw += key[position : match.start()].encode("utf-8", "surrogateescape")
        escaped = match.group(1)
        raw += b"\\" if escaped == "\\" else bytes([int(escaped[1:], 16)])
        position = match.end()
    raw += key[position:].encode("utf-8", "surrogateescape")
    return Path(os.fsdecode(bytes(raw)))
