r"""Walk a folder and stream its PDFs, images and videos as items, with a per-file report.

The walk is safe on hostile trees: symbolic-link loops are detected (each directory is entered
once), links leading outside the folder are not followed, FIFOs, devices and sockets are never
opened, empty and oversized files are skipped, and file names that are not valid UTF-8 are kept
(and shown with ``\xNN`` escapes). Files are recognised by their bytes, not their names.

What the walk checked is what is read: each file is opened once, without blocking, and the open
handle must be the regular file the walk saw (same device and inode) and really lie inside the
folder, so a file swapped for a FIFO or a link to somewhere else between the walk and the
reading is reported as skipped, never read. Later reads (a worker rendering a page) reopen it
only if it is still that file (:func:`~qwen3_vl_rag.checked_files.verified_open`).

Items stream lazily: one file is open at a time, and pages are rendered only when used, so
memory does not grow with the size of the folder. PDFs and videos are read in worker processes
(:class:`~qwen3_vl_rag.media.isolation.WorkerPool`), so a file that hangs or crashes its decoder
is reported and the scan goes on. Every file ends up in :attr:`FolderScan.report` as
``loaded``, ``skipped`` (with the reason) or ``failed`` (with the stage and the error class):
none is dropped silently. (A scan only loads; the index reports what it indexed.)
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Collection, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from qwen3_vl_rag.checked_files import OpenedFile, display_path, open_checked
from qwen3_vl_rag.errors import InputError, InputTooLargeError
from qwen3_vl_rag.media.isolation import WorkerPool
from qwen3_vl_rag.media.items import MediaItem
from qwen3_vl_rag.media.loaders import MediaOptions, load_path
from qwen3_vl_rag.media.sniff import HEAD_BYTES, MediaKind, sniff_bytes

__all__ = ["FileReport", "FolderScan", "ScanReport", "scan_folder"]

logger = logging.getLogger(__name__)

#: What a scan did with a file: its items were loaded, or it was skipped or failed (see why).
Status = Literal["loaded", "skipped", "failed"]
StatusT = TypeVar("StatusT", bound=str)

_EXPECTED_KIND = {
    ".pdf": "pdf",
    ".png": "image",
    ".jpg": "image",
    ".jpeg": "image",
    ".webp": "image",
    ".gif": "image",
    ".bmp": "image",
    ".tif": "image",
    ".tiff": "image",
    ".mp4": "video",
    ".mov": "video",
    ".m4v": "video",
    ".webm": "video",
    ".mkv": "video",
    ".avi": "video",
}


@dataclass
class FileReport(Generic[StatusT]):
    """What happened to one file (or one entry that was not a file).

    The same record serves a scan (``FileReport[Status]``) and the index's runs, which have
    statuses of their own (``indexed``, ``unchanged``...).

    Example:
        >>> from qwen3_vl_rag.media import scan_folder
        >>> with scan_folder("documents/") as scan:
        ...     items = list(scan)
        >>> first = scan.report.files[0]
        >>> first.path, first.status, first.kind, first.items
        ('documents/annual-report.pdf', 'loaded', 'pdf', 3)
    """

    path: str
    status: StatusT
    kind: str | None = None
    items: int = 0
    reason: str | None = None
    stage: str | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class ScanReport:
    """Every file met by a scan, in the order met.

    Example:
        >>> from pathlib import Path
        >>> from qwen3_vl_rag.media import scan_folder
        >>> _ = Path("documents/notes.txt").write_text("not a picture")
        >>> with scan_folder("documents/") as scan:
        ...     items = list(scan)
        >>> scan.report.counts()
        {'loaded': 5, 'skipped': 1, 'failed': 0, 'items': 8}
        >>> [(file.path, file.reason) for file in scan.report.by_status("skipped")]
        [('documents/notes.txt', ...)]
    """

    root: str
    files: list[FileReport[Status]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Files per status, and the items produced."""
        counts = {"loaded": 0, "skipped": 0, "failed": 0}
        for report in self.files:
            counts[report.status] += 1
        counts["items"] = sum(report.items for report in self.files)
        return counts

    def by_status(self, status: Status) -> list[FileReport[Status]]:
        """The reports of one status."""
        return [report for report in self.files if report.status == status]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (every string is valid UTF-8)."""
        return {
            "root": self.root,
            "counts": self.counts(),
            "files": [asdict(report) for report in self.files],
        }


class FolderScan:
    """A lazy scan of a folder (or a single file): iterate it for items, then read ``report``.

    Use it as a context manager so its worker processes stop when you are done with the items
    (items rendered after that raise a clear error).

    Example:
        >>> from qwen3_vl_rag import Qwen3VLEmbedder
        >>> embedder = Qwen3VLEmbedder.from_pretrained("Qwen/Qwen3-VL-Embedding-2B")
        >>> with scan_folder("documents/") as scan:
        ...     vectors = embedder.embed_documents(list(scan))
        >>> scan.report.counts()
        {'loaded': 5, 'skipped': 0, 'failed': 0, 'items': 8}
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        options: MediaOptions | None = None,
        *,
        recursive: bool = True,
        follow_symlinks: bool = True,
        include_hidden: bool = False,
        isolate: bool = True,
        workers: int = 2,
        kinds: Collection[MediaKind] | None = None,
        exclude: Collection[str | os.PathLike[str]] = (),
    ) -> None:
        self.root = Path(root)
        self._excluded = _Excluded(exclude)
        self.kinds = frozenset(kinds) if kinds is not None else None
        self.recursive = recursive
        self.follow_symlinks = follow_symlinks
        self.include_hidden = include_hidden
        options = options or MediaOptions()
        self._pool: WorkerPool | None = None
        if isolate and options.runner is None:
            budget = options.budget
            self._pool = WorkerPool(
                workers, timeout=budget.timeout, memory_limit=budget.worker_memory
            )
            options = replace(options, runner=self._pool)
        self.options = options
        self.report = ScanReport(display_path(self.root))
        # what the walk checked about each file it yields: its stat, and whether it was a link
        self._checked: dict[Path, tuple[os.stat_result, bool]] = {}
        self._real_root: str | None = None

    def __enter__(self) -> FolderScan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker processes."""
        if self._pool is not None:
            self._pool.close()

    def __iter__(self) -> Iterator[MediaItem]:
        for path in self.files():
            yield from self.load_file(path)

    def files(self) -> Iterator[Path]:
        """The files the walk finds, one at a time (what it leaves out goes to the report).

        With :meth:`load_file`, this lets a caller decide per file, e.g. skip unchanged ones.
        """
        return self._walk()

    def load_file(self, path: Path, opened: OpenedFile | None = None) -> Iterator[MediaItem]:
        """One found file's items; its outcome goes to the report.

        Args:
            path: A file from :meth:`files`.
            opened: The file as :meth:`open_file` opened it (default: opened here).
        """
        return self._load(path, opened)

    def open_file(self, path: Path) -> OpenedFile | None:
        """Open a found file once, checked on its handle; ``None`` once reported as skipped.

        The handle must be a regular file (a FIFO swapped in is never waited on), the very file
        the walk checked (same device and inode), inside the folder (a link swapped in between
        the walk and now is caught), non-empty and within the byte budget. Read what you need
        (e.g. a content hash) from it, then pass it to :meth:`load_file`; close it when done.
        """
        label = display_path(path)
        checked, was_link = self._checked.pop(path, (None, True))
        budget = self.options.budget
        try:
            opened = open_checked(
                path,
                max_bytes=budget.max_bytes,
                label=label,
                expected=checked,
                root=self._real_root,
                follow_symlinks=was_link,
            )
        except InputTooLargeError as err:
            self._skip(path, f"too large: {err.reason.rstrip('.')}", stage="open")
            return None
        except InputError as err:
            self._skip(path, err.reason.rstrip("."), stage="open")
            return None
        if opened.size == 0:
            opened.close()
            self._skip(path, "empty file")
            return None
        return opened

    # -- the walk ----------------------------------------------------------------------------------

    def _skip(self, path: str | os.PathLike[str], reason: str, stage: str = "walk") -> None:
        self.report.files.append(
            FileReport[Status](display_path(path), "skipped", reason=reason, stage=stage)
        )

    def _walk(self) -> Iterator[Path]:
        root = self.root
        try:
            info = root.stat()
        except OSError as exc:
            self._skip(root, f"cannot be read ({exc.strerror or exc})")
            return
        if self._excluded.holds(root):
            self._skip(root, "inside a folder excluded from the scan (such as the index itself)")
            return
        if stat.S_ISREG(info.st_mode):
            self._checked[root] = (info, True)  # a file named by the caller: links are followed
            yield root
            return
        if not stat.S_ISDIR(info.st_mode):
            self._skip(root, "not a regular file or folder")
            return
        real_root = os.path.realpath(root)
        self._real_root = real_root
        visited = {(info.st_dev, info.st_ino)}
        seen_files: set[str] = set()
        # Real entries first, links afterwards: a link then only ever counts as a second path to
        # something already scanned (or as the way to reach what the walk does not otherwise see).
        folders: list[Path] = [root]
        links: list[os.DirEntry[str]] = []
        while folders or links:
            if folders:
                directory = folders.pop()
                entries = self._list(directory)
                found = []
                for entry in entries:
                    path = Path(entry.path)
                    if self._excluded.is_folder(entry):
                        continue  # not content: the index directory, hidden or not
                    if entry.name.startswith(".") and not self.include_hidden:
                        self._skip(path, "hidden (pass include_hidden=True to scan it)")
                    elif entry.is_symlink():
                        links.append(entry)
                    else:
                        found.append(entry)
                subfolders: list[Path] = []
                for entry in found:
                    yield from self._visit(entry, real_root, visited, seen_files, subfolders)
                folders.extend(reversed(subfolders))
                continue
            subfolders = []
            yield from self._visit(links.pop(0), real_root, visited, seen_files, subfolders)
            folders.extend(reversed(subfolders))

    def _list(self, directory: Path) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(directory) as listing:
                return sorted(listing, key=lambda entry: os.fsencode(entry.name))
        except OSError as exc:
            self._skip(directory, f"folder cannot be listed ({exc.strerror or exc})")
            return []

    def _visit(
        self,
        entry: os.DirEntry[str],
        real_root: str,
        visited: set[tuple[int, int]],
        seen_files: set[str],
        subfolders: list[Path],
    ) -> Iterator[Path]:
        path = Path(entry.path)
        target = self._resolve(entry, path, real_root)
        if target is None:
            return
        kind, info = target
        if kind == "dir":
            key = (info.st_dev, info.st_ino)
            if self._excluded.holds(path):
                return  # a link to an excluded folder or into one
            if key in visited:
                self._skip(path, "folder already scanned (a link loop or a second link)")
            elif self.recursive:
                visited.add(key)
                subfolders.append(path)
            return
        real = os.path.realpath(path)
        if self._excluded.holds(real):
            return  # a link to a file of an excluded folder
        if real in seen_files:
            self._skip(path, "same file as one already scanned (through a link)")
            return
        seen_files.add(real)
        self._checked[path] = (info, entry.is_symlink())
        yield path

    def _resolve(
        self, entry: os.DirEntry[str], path: Path, real_root: str
    ) -> tuple[str, os.stat_result] | None:
        """``("dir"|"file", stat)`` for an entry to go on with; ``None`` once it is reported."""
        try:
            if entry.is_symlink():
                if not self.follow_symlinks:
                    self._skip(path, "symbolic link (not followed)")
                    return None
                try:
                    info = os.stat(path)  # follows the link
                except OSError as exc:
                    looped = exc.errno == errno.ELOOP
                    self._skip(path, "symbolic link loop" if looped else "broken symbolic link")
                    return None
                real = os.path.realpath(path)
                if os.path.commonpath([real_root, real]) != real_root:
                    self._skip(path, "symbolic link leading outside the folder")
                    return None
            else:
                info = entry.stat(follow_symlinks=False)
        except OSError as exc:
            self._skip(path, f"cannot be read ({exc.strerror or exc})")
            return None
        if stat.S_ISDIR(info.st_mode):
            return ("dir", info)
        if not stat.S_ISREG(info.st_mode):
            self._skip(path, "not a regular file (a FIFO, device or socket is never opened)")
            return None
        return ("file", info)

    # -- one file ----------------------------------------------------------------------------------

    def _load(self, path: Path, opened: OpenedFile | None) -> Iterator[MediaItem]:
        label = display_path(path)
        own = opened is None
        opened = opened or self.open_file(path)
        if opened is None:
            return
        try:
            head = opened.head(HEAD_BYTES)
        except OSError as exc:
            self._skip(path, f"cannot be read ({exc.strerror or exc})", stage="sniff")
            return
        finally:
            if own:
                opened.close()  # the loaders reopen it only as this same file
        identity = opened.identity
        sniffed = sniff_bytes(head)
        if not sniffed.known:
            self._skip(path, "not a PDF, image or video (by content)", stage="sniff")
            return
        if self.kinds is not None and sniffed.kind not in self.kinds:
            wanted = " or ".join(sorted(f"{kind}s" for kind in self.kinds))
            self._skip(path, f"a {sniffed.kind}; this scan takes {wanted}", stage="sniff")
            return
        report = FileReport[Status](label, "loaded", kind=sniffed.kind)
        expected = _EXPECTED_KIND.get(path.suffix.lower())
        if expected and expected != sniffed.kind:
            report.warnings.append(
                f"named {path.suffix} but its content is {(sniffed.format or '').upper()}; "
                f"loaded as {sniffed.kind}"
            )
        self.report.files.append(report)
        try:
            document = load_path(
                path, self.options, sniffed=sniffed, source=label, identity=identity
            )
            report.warnings.extend(document.warnings)
            for item in document:
                report.items += 1
                yield item
        except InputError as err:
            self._fail(report, err.reason, err.stage or "load", type(err).__name__)
        except Exception as exc:
            logger.warning("unexpected error while reading %s", label, exc_info=True)
            self._fail(report, f"{type(exc).__name__}: {exc}", "load", type(exc).__name__)

    @staticmethod
    def _fail(report: FileReport[Status], reason: str, stage: str | None, error: str) -> None:
        report.status, report.reason, report.stage, report.error = "failed", reason, stage, error


class _Excluded:
    """Folders a scan leaves out, known by identity (device and inode) and by real path."""

    def __init__(self, folders: Collection[str | os.PathLike[str]]) -> None:
        self.keys: set[tuple[int, int]] = set()
        self.real: list[str] = []
        for folder in folders:
            try:
                info = os.stat(folder)
            except OSError:
                continue  # not there (yet): nothing of it can be met
            self.keys.add((info.st_dev, info.st_ino))
            self.real.append(os.path.realpath(folder))

    def is_folder(self, entry: os.DirEntry[str]) -> bool:
        """Whether a listed entry is one of the folders (a real folder, not a link to one)."""
        if not self.keys or entry.is_symlink() or not entry.is_dir(follow_symlinks=False):
            return False
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            return False
        return (info.st_dev, info.st_ino) in self.keys

    def holds(self, path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` (resolved) is one of the folders or inside one."""
        if not self.real:
            return False
        real = os.path.realpath(path)
        return any(os.path.commonpath([folder, real]) == folder for folder in self.real)


def scan_folder(
    root: str | os.PathLike[str],
    options: MediaOptions | None = None,
    **scan_options: Any,
) -> FolderScan:
    """Scan a folder (or one file) for PDFs, images and videos; see :class:`FolderScan`.

    Args:
        root: The folder, or a single file.
        options: How files become items (budget, PDF password, video segments...).
        **scan_options: ``recursive``, ``follow_symlinks``, ``include_hidden``, ``isolate``,
            ``workers``, ``kinds`` (e.g. ``{"image"}``: files of other kinds are reported as
            skipped) and ``exclude`` (folders left out with everything under them, e.g. the
            index directory; not reported); see :class:`FolderScan`.
    """
    return FolderScan(root, options, **scan_options)


def stream_items(
    root: str | os.PathLike[str],
    options: MediaOptions,
    *,
    kinds: Collection[MediaKind],
    recursive: bool = True,
    include_hidden: bool = False,
) -> tuple[ScanReport, Iterator[MediaItem]]:
    """The items of the files of ``kinds`` under ``root``, and the scan's report.

    The report fills in as the items are consumed (complete when they run out); files skipped
    or failed are also logged as warnings at the end, for applications that configure logging
    (the package prints nothing by itself). This is what the framework loaders use.

    Example:
        >>> report, items = stream_items("screenshots/", MediaOptions(), kinds={"image"})
        >>> [item.source for item in items]
        ['screenshots/billing.png', 'screenshots/settings.png']
        >>> report.counts()
        {'loaded': 2, 'skipped': 0, 'failed': 0, 'items': 2}
    """
    scan = scan_folder(
        root, options, recursive=recursive, include_hidden=include_hidden, kinds=kinds
    )

    def items() -> Iterator[MediaItem]:
        with scan:
            yield from scan
        for file in scan.report.files:
            if file.status != "loaded":
                logger.warning("%s %s: %s", file.status, file.path, file.reason)

    return scan.report, items()
