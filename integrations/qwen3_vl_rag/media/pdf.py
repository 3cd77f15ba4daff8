"""PDF pages as items, rendered straight at the size the embedder uses (PyMuPDF, ``pdf`` extra).

Each page becomes a :class:`~qwen3_vl_rag.media.items.MediaItem` whose image is rendered only
when needed, at exactly the size the model will see: the page is scaled so that its area fits
the pixel budget (and at most ``max_dpi``), with both sides multiples of 32, so the embedder does
no further resizing. A 3,000,000-point MediaBox or a 200-inch page therefore costs what a normal
page costs.

Metadata follows LangChain's ``PyMuPDFLoader`` keys (``source``, 0-based ``page``,
``total_pages``) plus ``page_label``, the page size in points and the rendered size; the page's
text is kept (capped) for citations.

Every PyMuPDF call is a module-level *step* run through a
:class:`~qwen3_vl_rag.media.isolation.DecodeRunner`: in a worker process for folder ingestion
(hangs and crashes contained), or in this process for a trusted single file.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from qwen3_vl_rag.checked_files import FileIdentity, display_path, open_checked, verified_open
from qwen3_vl_rag.errors import EncryptedPdfError, InputError, MissingDependencyError, PdfError
from qwen3_vl_rag.image_limits import smart_resize
from qwen3_vl_rag.inputs import LazyImage
from qwen3_vl_rag.media.budget import MediaBudget
from qwen3_vl_rag.media.isolation import IN_PROCESS_RUNNER, WORKER_ENV, DecodeRunner
from qwen3_vl_rag.media.items import MediaItem, MetadataValue
from qwen3_vl_rag.media.pdf_text import clean_text, page_label
from qwen3_vl_rag.media.sniff import HEAD_BYTES, sniff_bytes

__all__ = ["PdfDocument", "load_pdf"]

_PAGE_INFO_CHUNK = 64  # pages described per worker step: bounded memory, few round trips


def _pymupdf() -> Any:
    try:
        import pymupdf
    except ImportError as exc:
        raise MissingDependencyError("pymupdf", "pdf", "Reading PDF pages") from exc
    if os.environ.get(WORKER_ENV):
        # in a decoding worker, MuPDF's repair chatter would only clutter the caller's console
        tools: Any = pymupdf.TOOLS
        tools.mupdf_display_errors(False)
        tools.mupdf_display_warnings(False)
    return pymupdf


# -- steps (run in a worker process or in this one) ------------------------------------------------

T = TypeVar("T")

# MuPDF is not thread-safe and PyMuPDF holds the GIL while rendering anyway (measured: two threads
# render no faster than one), so steps run one at a time per process. This matters in this
# process, where the embedder's decoding threads render pages concurrently; workers are
# single-threaded.
_MUPDF_LOCK = threading.RLock()


def _serialized(step: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(step)
    def run(*args: Any) -> T:
        with _MUPDF_LOCK:
            return step(*args)

    return run


_OPEN_DOCUMENTS: dict[tuple[FileIdentity | None, str, str | None], Any] = {}


def _open(path: str, identity: FileIdentity | None, password: str | None, label: str) -> Any:
    """Open (and unlock) a PDF; keep a few open per process, keyed by the file's identity.

    The file is reopened only if it is still the one that was checked (a FIFO or another file
    swapped in is refused, never read).
    """
    pymupdf = _pymupdf()
    key = (identity, path if identity is None else "", password)
    document = _OPEN_DOCUMENTS.get(key)
    if document is not None:
        return document
    with verified_open(path, identity, label=label, error=PdfError) as opened:
        document = _open_document(pymupdf, opened.name_for_libraries(), label)
    if not document.is_pdf:
        document.close()
        raise PdfError("the file is not a PDF.", source=label, stage="open")
    if document.needs_pass:
        if password is None:
            document.close()
            raise EncryptedPdfError(
                "the PDF is encrypted.",
                source=label,
                stage="open",
                hint="Pass its password with password=... .",
            )
        if not document.authenticate(password):
            document.close()
            raise EncryptedPdfError("the password is wrong.", source=label, stage="open")
    while len(_OPEN_DOCUMENTS) >= 4:
        _OPEN_DOCUMENTS.pop(next(iter(_OPEN_DOCUMENTS))).close()
    _OPEN_DOCUMENTS[key] = document
    return document


def _open_document(pymupdf: Any, name: str, label: str) -> Any:
    try:
        return pymupdf.open(name, filetype="pdf")
    except Exception as exc:
        message = str(exc) or type(exc).__name__
        reason = (
            "the file is empty."
            if "empty" in message.lower()
            else (f"not a readable PDF ({type(exc).__name__}: {message}).")
        )
        raise PdfError(reason, source=label, stage="open") from exc


@_serialized
def _describe_document(
    path: str, identity: FileIdentity | None, password: str | None, label: str
) -> dict[str, Any]:
    """Page count, repair flag and document metadata."""
    document = _open(path, identity, password, label)
    try:
        count = document.page_count
    except Exception as exc:
        raise PdfError(f"its page tree is broken ({exc}).", source=label, stage="open") from exc
    metadata = {
        key: clean_text(str(value))
        for key, value in (document.metadata or {}).items()
        if value
        and key in ("title", "author", "subject", "creator", "producer", "creationDate", "modDate")
    }
    return {
        "pages": count,
        "repaired": bool(getattr(document, "is_repaired", False)),
        "metadata": metadata,
    }


def _render_size(width_pt: float, height_pt: float, budget: MediaBudget) -> tuple[int, int]:
    """Pixel size a page is rendered at: the budget's area (at most max_dpi), sides of 32."""
    if width_pt <= 0 or height_pt <= 0:
        return (budget.factor, budget.factor)
    zoom = min(budget.max_dpi / 72.0, math.sqrt(budget.max_pixels / (width_pt * height_pt)))
    width, height = max(1.0, width_pt * zoom), max(1.0, height_pt * zoom)
    if max(width, height) / min(width, height) > 200:  # an absurd strip: keep the model's limit
        return (budget.factor, budget.factor)
    rendered_h, rendered_w = smart_resize(
        round(height), round(width), budget.factor, budget.min_pixels, budget.max_pixels
    )
    return (rendered_w, rendered_h)


@_serialized
def _describe_pages(
    path: str,
    identity: FileIdentity | None,
    password: str | None,
    label: str,
    indices: Sequence[int],
    budget: MediaBudget,
) -> list[dict[str, Any]]:
    """Label, size, render size and text of some pages."""
    document = _open(path, identity, password, label)
    rules = _label_rules(document)
    pages = []
    for index in indices:
        try:
            page = document[index]
            rect = page.rect
            text = clean_text(page.get_text("text"))
        except Exception as exc:
            raise PdfError(
                f"page {index + 1} cannot be read ({exc}).", source=label, stage="open"
            ) from exc
        width, height = _render_size(rect.width, rect.height, budget)
        pages.append(
            {
                "index": index,
                "label": page_label(rules, index),
                "width_pt": float(rect.width),
                "height_pt": float(rect.height),
                "width": width,
                "height": height,
                "text": text[: budget.max_text_chars],
                "text_truncated": len(text) > budget.max_text_chars,
            }
        )
    return pages


def _label_rules(document: Any) -> list[dict[str, Any]]:
    """The document's page label rules (prefixes as written; decoded by ``page_label``)."""
    try:
        return list(document.get_page_labels())
    except Exception:  # a damaged /PageLabels tree: pages are named by their number
        return []


@_serialized
def _render_page(
    path: str,
    identity: FileIdentity | None,
    password: str | None,
    label: str,
    index: int,
    width: int,
    height: int,
) -> bytes:
    """The page as raw RGB bytes of exactly ``width x height``."""
    pymupdf = _pymupdf()
    document = _open(path, identity, password, label)
    try:
        page = document[index]
        rect = page.rect
        matrix = pymupdf.Matrix(width / rect.width, height / rect.height)
        pixmap = page.get_pixmap(matrix=matrix, alpha=False, colorspace=pymupdf.csRGB)
    except Exception as exc:
        raise PdfError(
            f"page {index + 1} could not be rendered ({type(exc).__name__}: {exc}).",
            source=label,
            stage="render",
        ) from exc
    if (pixmap.width, pixmap.height) != (width, height) or pixmap.stride != width * 3:
        return _fit(pixmap, width, height)  # rounding left it a pixel off
    return bytes(pixmap.samples)


def _fit(pixmap: Any, width: int, height: int) -> bytes:
    """Crop or pad (white) a pixmap whose rounding left it a pixel off the wanted size."""
    import numpy as np

    array = (
        np.frombuffer(pixmap.samples, dtype=np.uint8)
        .reshape(pixmap.height, pixmap.stride)[:, : pixmap.width * 3]
        .reshape(pixmap.height, pixmap.width, 3)
    )
    out = np.full((height, width, 3), 255, np.uint8)
    out[: min(height, pixmap.height), : min(width, pixmap.width)] = array[:height, :width]
    return out.tobytes()


# -- the document ----------------------------------------------------------------------------------


@dataclass
class PdfDocument:
    """A PDF's pages as items, described in chunks and rendered only when an item's image is used.

    Iterate it for the items. ``warnings`` lists what was left out (pages over the budget) and
    what was noticed (a repaired file), for reports.

    Example:
        >>> from qwen3_vl_rag.media import MediaBudget, load_pdf
        >>> document = load_pdf("report.pdf", budget=MediaBudget(max_pages=2))
        >>> document.total_pages, len(document), [page.locator for page in document]
        (3, 2, ['page 1', 'page 2'])
        >>> document.warnings
        ['only the first 2 of 3 pages were read (max_pages)']
    """

    path: Path
    source: str
    total_pages: int
    pages: Sequence[int]
    repaired: bool
    metadata: dict[str, str]
    budget: MediaBudget
    runner: DecodeRunner
    password: str | None = field(default=None, repr=False)
    warnings: list[str] = field(default_factory=list)
    identity: FileIdentity | None = None

    def __iter__(self) -> Iterator[MediaItem]:
        for start in range(0, len(self.pages), _PAGE_INFO_CHUNK):
            chunk = list(self.pages[start : start + _PAGE_INFO_CHUNK])
            for page in self.runner.run(
                _describe_pages,
                str(self.path),
                self.identity,
                self.password,
                self.source,
                chunk,
                self.budget,
                label=self.source,
                stage="open",
                timeout=self.budget.timeout,
            ):
                yield self._item(page)

    def __len__(self) -> int:
        return len(self.pages)

    def _item(self, page: dict[str, Any]) -> MediaItem:
        index = int(page["index"])
        width, height = int(page["width"]), int(page["height"])
        metadata: dict[str, MetadataValue] = {
            "source": self.source,
            "file_type": "pdf",
            "page": index,
            "page_label": page["label"] or str(index + 1),
            "total_pages": self.total_pages,
            "page_width": round(page["width_pt"], 2),
            "page_height": round(page["height_pt"], 2),
            "image_width": width,
            "image_height": height,
        }
        if self.repaired:
            metadata["repaired"] = True
        if page["text_truncated"]:
            metadata["text_truncated"] = True
        image = LazyImage(
            width,
            height,
            _PageRenderer(self, index, width, height),
            f"{self.source}, page {index + 1}",
        )
        return MediaItem("page", self.source, metadata, image=image, text=page["text"])


@dataclass(frozen=True)
class _PageRenderer:
    document: PdfDocument
    index: int
    width: int
    height: int

    def __call__(self) -> Any:
        from PIL import Image

        document = self.document
        samples = document.runner.run(
            _render_page,
            str(document.path),
            document.identity,
            document.password,
            document.source,
            self.index,
            self.width,
            self.height,
            label=f"{document.source}, page {self.index + 1}",
            stage="render",
            timeout=document.budget.timeout,
        )
        return Image.frombytes("RGB", (self.width, self.height), samples)


def load_pdf(
    path: str | Path,
    *,
    pages: Sequence[int] | range | None = None,
    password: str | None = None,
    budget: MediaBudget | None = None,
    runner: DecodeRunner | None = None,
    identity: FileIdentity | None = None,
) -> PdfDocument:
    """Open a PDF and describe its pages as items (rendered on demand).

    Args:
        path: The PDF file.
        pages: 0-based page numbers to keep (default: all, up to ``budget.max_pages``).
        password: The user password of an encrypted PDF.
        budget: Pixel, page, byte and time limits (default: :class:`MediaBudget`).
        runner: Where PyMuPDF runs; pass a :class:`~qwen3_vl_rag.media.isolation.WorkerPool`
            for untrusted files (default: this process).
        identity: The file as a scan checked it (see
            :func:`~qwen3_vl_rag.checked_files.open_checked`); default: checked here. Every
            later read of the file (in a worker too) refuses anything but that file.

    Raises:
        PdfError: Not a PDF (whatever its name), empty, unreadable, or with no pages.
        EncryptedPdfError: Encrypted and no password, or a wrong one.
        InputTooLargeError: Over ``budget.max_bytes``.
        MissingDependencyError: PyMuPDF is not installed (``pip install "qwen3-vl-rag[pdf]"``).

    Example:
        >>> document = load_pdf("report.pdf", pages=range(0, 2))
        >>> for page in document:
        ...     print(page.metadata["page_label"], page.image.size, page.text.splitlines()[0])
        1 (1152, 1600) Annual report - page 1
        2 (1152, 1600) Annual report - page 2
    """
    budget = budget or MediaBudget()
    runner = runner or IN_PROCESS_RUNNER
    path = Path(path)
    label = display_path(path)
    with open_checked(
        path, max_bytes=budget.max_bytes, label=label, error=PdfError, expected=identity
    ) as opened:
        identity, head = opened.identity, opened.head(HEAD_BYTES)
    if identity.size == 0:
        raise PdfError("the file is empty.", source=label, stage="open")
    sniffed = sniff_bytes(head)
    if sniffed.kind != "pdf":
        found = f"it looks like {sniffed.format.upper()}" if sniffed.format else "unknown content"
        raise PdfError(f"the file is not a PDF ({found}).", source=label, stage="open")
    described = runner.run(
        _describe_document,
        str(path),
        identity,
        password,
        label,
        label=label,
        stage="open",
        timeout=budget.timeout,
    )
    total = int(described["pages"])
    if total <= 0:
        raise PdfError("the PDF has no pages.", source=label, stage="open")
    chosen = list(range(total)) if pages is None else sorted({int(p) for p in pages})
    outside = [p for p in chosen if not 0 <= p < total]
    if outside:
        raise InputError(
            f"pages {outside[:5]} do not exist (the PDF has {total}; pages are 0-based).",
            source=label,
            stage="open",
        )
    warnings = []
    if described["repaired"]:
        warnings.append("the file was damaged and repaired on opening; some pages may be blank")
    if len(chosen) > budget.max_pages:
        warnings.append(
            f"only the first {budget.max_pages} of {len(chosen)} pages were read (max_pages)"
        )
        chosen = chosen[: budget.max_pages]
    return PdfDocument(
        path=path,
        source=label,
        total_pages=total,
        pages=chosen,
        repaired=described["repaired"],
        metadata=described["metadata"],
        budget=budget,
        runner=runner,
        password=password,
        warnings=warnings,
        identity=identity,
    )
