"""PDF pages rendered once to PNG files, for frameworks whose documents refer to images by path.

LangChain and LlamaIndex keep a document's image as a path, which their vector stores, rerankers
and chat models read later. Each page is rendered at the size the embedder uses and written to
``<image_dir>/<stem>-<pdf hash>-p<page>-<w>x<h>.png``; a PNG that is already there (the same
PDF bytes, page and size) is reused, so loading a PDF again renders nothing.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from qwen3_vl_rag.checked_files import file_sha256

if TYPE_CHECKING:
    from qwen3_vl_rag.media.budget import MediaBudget
    from qwen3_vl_rag.media.items import MediaItem

__all__ = ["PageImage", "default_image_dir", "page_images"]


@dataclass(frozen=True)
class PageImage:
    """A rendered page: its PNG, the page item (metadata, text) and a fingerprint of its pixels.

    ``fingerprint`` identifies the pixels (PDF bytes, page, size) without reading the PNG: two
    pages with the same text but different pictures always differ in it.
    """

    path: Path
    item: MediaItem
    fingerprint: str

    @property
    def page(self) -> int:
        """0-based page number."""
        return int(self.item.metadata["page"])

    @property
    def text(self) -> str:
        """The page's text ("" when it has none)."""
        return self.item.text or ""


def default_image_dir() -> Path:
    """``$XDG_CACHE_HOME/qwen3-vl-rag/pages`` (``~/.cache/...``): where pages go by default.

    Pass your own folder to keep page images with your vector store: documents refer to them.
    """
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(cache) / "qwen3-vl-rag" / "pages"


def page_images(
    pdf: str | os.PathLike[str],
    image_dir: str | os.PathLike[str] | None = None,
    *,
    pages: Sequence[int] | None = None,
    password: str | None = None,
    budget: MediaBudget | None = None,
) -> Iterator[PageImage]:
    """Render the PDF's pages to PNG files (once) and yield them one at a time.

    Raises:
        PdfError: Not a PDF, unreadable, or without pages (``EncryptedPdfError`` without the
            right password).
        MissingDependencyError: PyMuPDF is missing (``pip install "qwen3-vl-rag[pdf]"``).

    Example:
        >>> for page in page_images("report.pdf", "store/pages"):
        ...     print(page.page, page.path.name, page.text.splitlines()[0])
        0 report-...-p0001-1152x1600.png Annual report - page 1
        1 report-...-p0002-1152x1600.png Annual report - page 2
        2 report-...-p0003-1152x1600.png Annual report - page 3
    """
    from qwen3_vl_rag.media.budget import MediaBudget
    from qwen3_vl_rag.media.pdf import load_pdf

    path = Path(pdf)
    # opened (and checked: a regular file within the budget) before its bytes are hashed
    document = load_pdf(path, pages=pages, password=password, budget=budget or MediaBudget())
    digest = file_sha256(path)
    folder = Path(image_dir) if image_dir is not None else default_image_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for page in document:
        meta = page.metadata
        width, height = int(meta["image_width"]), int(meta["image_height"])
        number = int(meta["page"])
        target = folder / f"{_safe_stem(path)}-{digest[:12]}-p{number + 1:04d}-{width}x{height}.png"
        if not target.is_file():
            partial = target.with_suffix(f".{os.getpid()}.tmp")
            page.load_image().save(partial, "PNG")
            os.replace(partial, target)  # never a half-written PNG under the final name
        fingerprint = hashlib.sha256(f"{digest}:{number}:{width}x{height}".encode()).hexdigest()
        yield PageImage(target, page, fingerprint)


def _safe_stem(path: Path) -> str:
    """The file's stem as a safe file-name part (no separators, no control characters)."""
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in path.stem)
    return stem[:60] or "document"
