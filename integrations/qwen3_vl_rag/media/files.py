"""File checks shared by the loaders: regular files only, under a byte budget, named safely."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from qwen3_vl_rag.errors import InputError, InputTooLargeError

__all__ = ["checked_file", "display_path"]


def display_path(path: str | os.PathLike[str]) -> str:
    r"""A path as text that is always valid UTF-8: undecodable bytes appear as ``\xNN`` escapes.

    Non-UTF-8 file names are legal on POSIX; as-is they break JSON reports and vector stores.
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def checked_file(
    path: Path, max_bytes: int, label: str, error: type[InputError] = InputError
) -> int:
    """Size of ``path`` if it is a regular file within ``max_bytes``; else a typed error.

    FIFOs, devices and sockets are refused without being opened (reading a FIFO blocks
    forever, ``/dev/zero`` never ends).

    Raises:
        InputTooLargeError: Over ``max_bytes``.
        InputError: (``error``) Missing, unreadable, or not a regular file.
    """
    try:
        info = path.stat()
    except OSError as exc:
        reason = (
            "no such file."
            if isinstance(exc, FileNotFoundError)
            else (f"cannot be read ({exc.strerror or exc}).")
        )
        raise error(reason, source=label, stage="open") from exc
    if not stat.S_ISREG(info.st_mode):
        raise error("not a regular file.", source=label, stage="open")
    if info.st_size > max_bytes:
        raise InputTooLargeError(
            f"{info.st_size} bytes is over the budget of {max_bytes}.",
            source=label,
            stage="open",
            hint="Raise the budget's max_bytes if you trust the file.",
        )
    return info.st_size
