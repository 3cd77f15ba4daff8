"""Files opened once and checked on their handle: regular, within a byte budget, named safely.

A leaf module (it imports only :mod:`qwen3_vl_rag.errors`): the media loaders, the engine's
image and video readers and the index all open files through it, without importing each other.

A file is opened once, checked on the open handle (never by a second look at its name), and
identified by a :class:`FileIdentity`. Whatever reads it later (a decoding worker rendering a
page, a search re-reading a hit) reopens it through :func:`verified_open`, which refuses anything
that is not the very file that was checked: a file swapped for a FIFO, for a symbolic link to
another file, or rewritten in between, is an error, never read.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from qwen3_vl_rag.errors import InputError, InputTooLargeError

__all__ = [
    "FileIdentity",
    "OpenedFile",
    "checked_file",
    "display_path",
    "file_sha256",
    "open_checked",
    "verified_open",
]

_CHUNK = 1024 * 1024
_PROC_FD = "/proc/self/fd"


def display_path(path: str | os.PathLike[str]) -> str:
    r"""A path as text that is always valid UTF-8: undecodable bytes appear as ``\xNN`` escapes.

    Non-UTF-8 file names are legal on POSIX; as-is they break JSON reports and vector stores.
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class FileIdentity:
    """Which file was checked: its device, inode, size and modification time.

    Two opens that agree on all four read the same bytes (short of an edit that keeps the size
    and forges the time), so a decoder that reopens a file by name can tell it is still the one
    that was checked.
    """

    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, info: os.stat_result) -> FileIdentity:
        """The identity recorded in a ``stat`` result."""
        return cls(info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)

    def same_inode(self, info: os.stat_result) -> bool:
        """Whether ``info`` describes the same inode (whatever its size and time now)."""
        return (self.device, self.inode) == (info.st_dev, info.st_ino)


class OpenedFile:
    """A regular file opened once and checked on its handle; close it (or use ``with``).

    Attributes:
        path: The name it was opened by.
        identity: What :func:`verified_open` will require of a later open.
    """

    def __init__(self, fd: int, path: Path, identity: FileIdentity) -> None:
        self.fd = fd
        self.path = path
        self.identity = identity

    @property
    def size(self) -> int:
        """Size in bytes when it was opened."""
        return self.identity.size

    def head(self, count: int) -> bytes:
        """The first ``count`` bytes (or fewer, for a shorter file)."""
        return os.pread(self.fd, count, 0)

    def chunks(self, size: int = _CHUNK) -> Iterator[bytes]:
        """The bytes from the start, ``size`` at a time (at most the size it was opened with)."""
        offset = 0
        while offset < self.identity.size:
            chunk = os.pread(self.fd, min(size, self.identity.size - offset), offset)
            if not chunk:
                return
            offset += len(chunk)
            yield chunk

    def sha256(self) -> str:
        """SHA-256 of the bytes, read from this handle (the same digest as :func:`file_sha256`)."""
        return _sha256(self.chunks())

    def name_for_libraries(self) -> str:
        """A name that opens exactly this file, for libraries that only take names.

        On Linux, ``/proc/self/fd/N`` reopens the inode behind the handle without resolving the
        original name again; elsewhere, the name itself (already verified).
        """
        proc = f"{_PROC_FD}/{self.fd}"
        return proc if os.path.exists(proc) else os.fspath(self.path)

    def close(self) -> None:
        """Close the handle (idempotent)."""
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> OpenedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes (hex), read in chunks: the one content hash of the package.

    Example:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile() as file:
        ...     _ = file.write(b"abc") and file.flush()
        ...     file_sha256(file.name)[:16]
        'ba7816bf8f01cfea'
    """
    with open(path, "rb") as handle:
        return _sha256(iter(lambda: handle.read(_CHUNK), b""))


def _sha256(chunks: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def _real_path(fd: int, path: Path) -> str:
    """Where the open handle really is (from the kernel on Linux, not from the name)."""
    try:
        return os.readlink(f"{_PROC_FD}/{fd}")
    except OSError:
        return os.path.realpath(path)


def _inside(root: str, real: str) -> bool:
    try:
        return os.path.commonpath([root, real]) == root
    except ValueError:
        return False


def open_checked(
    path: str | os.PathLike[str],
    *,
    max_bytes: int,
    label: str,
    error: type[InputError] = InputError,
    expected: FileIdentity | os.stat_result | None = None,
    root: str | None = None,
    follow_symlinks: bool = True,
) -> OpenedFile:
    """Open a file once, and check the open handle: a regular file, the expected one, in budget.

    The file is opened without blocking (a FIFO or device swapped in is seen as such, never
    waited on) and every check is made on the handle, so nothing can be swapped between the
    check and the reading.

    Args:
        path: The file.
        max_bytes: Largest size accepted.
        label: How errors name it.
        error: The error class for a missing, unreadable or non-regular file.
        expected: The file a directory walk checked (its ``stat``) or a previous open found (its
            identity): a different inode is refused. With a :class:`FileIdentity`, a different
            size or modification time is refused too.
        root: A folder the file must really be in (links and renamed folders included).
        follow_symlinks: ``False`` refuses a symbolic link as the last component.

    Raises:
        InputTooLargeError: Over ``max_bytes``.
        InputError: (``error``) Missing, unreadable, not a regular file, not the expected file,
            or outside ``root``.
    """
    path = Path(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            reason = "no such file."
        elif not follow_symlinks and os.path.islink(path):
            reason = "it became a symbolic link after it was checked; not followed."
        else:
            reason = f"cannot be read ({exc.strerror or exc})."
        raise error(reason, source=label, stage="open") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(
                "not a regular file (a FIFO, device or socket is never read).",
                source=label,
                stage="open",
            )
        if expected is not None:
            same = (
                FileIdentity.of(info) == expected
                if isinstance(expected, FileIdentity)
                else (info.st_dev, info.st_ino) == (expected.st_dev, expected.st_ino)
            )
            if not same:
                raise error(
                    "the file changed since it was read (rewritten, or replaced by another); "
                    "not read.",
                    source=label,
                    stage="open",
                    hint="Run again once the folder has stopped changing.",
                )
        if root is not None and not _inside(root, _real_path(fd, path)):
            raise error(
                "it leads outside the folder (a link or folder changed during the scan); not read.",
                source=label,
                stage="open",
            )
        if info.st_size > max_bytes:
            raise InputTooLargeError(
                f"{info.st_size} bytes is over the budget of {max_bytes}.",
                source=label,
                stage="open",
                hint="Raise the budget's max_bytes if you trust the file.",
            )
    except BaseException:
        os.close(fd)
        raise
    return OpenedFile(fd, path, FileIdentity.of(info))


@contextlib.contextmanager
def verified_open(
    path: str | os.PathLike[str],
    identity: FileIdentity | None,
    *,
    label: str,
    error: type[InputError] = InputError,
    max_bytes: int | None = None,
) -> Iterator[OpenedFile]:
    """Reopen a file that was checked before, refusing anything but that same file.

    This is what decoders use (in a worker process or here) to read a file found earlier:
    open it without blocking, and require the handle to be a regular file with ``identity``.
    With ``identity=None`` (a path given directly by a caller) only the regular-file and size
    checks apply.

    Raises:
        InputError: (``error``) Not a regular file, or not the file that was checked.
        InputTooLargeError: Over ``max_bytes``.
    """
    opened = open_checked(
        path,
        max_bytes=identity.size if identity is not None else (max_bytes or 2**63),
        label=label,
        error=error,
        expected=identity,
    )
    with opened:
        yield opened


def checked_file(
    path: Path, max_bytes: int, label: str, error: type[InputError] = InputError
) -> int:
    """Size of ``path`` if it is a regular file within ``max_bytes``; else a typed error.

    The check is made on a non-blocking handle (a FIFO is never waited on, ``/dev/zero`` never
    read). Prefer :func:`open_checked` when the file is read afterwards.

    Raises:
        InputTooLargeError: Over ``max_bytes``.
        InputError: (``error``) Missing, unreadable, or not a regular file.
    """
    with open_checked(path, max_bytes=max_bytes, label=label, error=error) as opened:
        return opened.size
