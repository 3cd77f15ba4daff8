"""Telling faults of the disk apart from damage to the index's files.

Chroma reports a full disk as an opaque ``InternalError`` ("Failed to apply logs..."), the same
words as a torn store, and SQLite reports a file-size limit as a plain I/O error. Calling either
"corrupted, run rebuild" sends the user to rewrite an intact index onto a full disk. So before a
failure is called damage, the directory is asked directly: can a small file be written there?
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path

from qwen3_vl_rag.errors import IndexStorageError

__all__ = ["disk_fault", "read_only_fault", "storage_fault"]

_PROBE_BYTES = 1 << 20  # a store commit needs at least this much room
_LOW_SPACE = 64 << 20  # more free than this: a quota or file size limit, not the disk
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}


def disk_fault(directory: Path, exc: BaseException) -> IndexStorageError | None:
    """An :class:`IndexStorageError` if ``directory`` cannot take a write now, else ``None``.

    Args:
        directory: The directory whose write failed.
        exc: The failure, named in the message.
    """
    if not directory.is_dir():
        return None  # a deleted directory is not a disk fault; the caller says what vanished
    code = _probe(directory)
    if code in _FULL:
        free = _free_bytes(directory)
        room = f" ({free // 1024} KiB free)" if free is not None and free < _LOW_SPACE else ""
        return IndexStorageError(
            f"the disk holding {directory} is full or over a size limit{room}; a write failed "
            f"({_short(exc)}). Nothing written before was lost: free some space, then run the "
            "command again."
        )
    if code in _READ_ONLY:
        return read_only_fault(directory, exc)
    return None


def storage_fault(directory: Path, exc: OSError) -> IndexStorageError:
    """The error for an index directory that could not be made or opened."""
    return disk_fault(directory, exc) or IndexStorageError(
        f"the index directory {directory} cannot be used ({exc.strerror or exc}); check that "
        "it can be created and written, or choose another --index directory."
    )


def read_only_fault(directory: Path, exc: BaseException) -> IndexStorageError:
    """The error for an index directory that cannot be written."""
    return IndexStorageError(
        f"the index {directory} cannot be written (read-only file system or no permission: "
        f"{_short(exc)}). Searching and `status` work on a read-only index; to index, prune, "
        "rebuild or recover, make the directory writable or copy the index somewhere writable."
    )


def _probe(directory: Path) -> int | None:
    """The errno of writing and syncing a small file in ``directory``, or ``None`` if it worked."""
    probe = directory / f".space-probe.{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        return exc.errno
    try:
        block = bytes(64 * 1024)
        for _ in range(_PROBE_BYTES // len(block)):
            os.write(fd, block)
        os.fsync(fd)
    except OSError as exc:
        return exc.errno
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(probe)
    return None


def _free_bytes(directory: Path) -> int | None:
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:200]}"
