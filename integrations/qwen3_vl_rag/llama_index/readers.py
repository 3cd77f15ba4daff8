"""LlamaIndex readers: PDF pages and images as ``ImageDocument``s, video clips as documents.

They plug into ``SimpleDirectoryReader(file_extractor={".pdf": PDFPageImageReader(), ...})``
(which calls ``load_data(file, extra_info=...)``) and also read a folder on their own, through
:mod:`qwen3_vl_rag.media`: its budgets apply, and files that cannot be read are skipped and
listed in ``reader.report``.

Metadata stays flat (str, int, float). Bookkeeping keys (``image_path``, ``image_fingerprint``,
``video_clip``...) are kept out of what the LLM sees. For embedding, a document exposes exactly
its visual: its embedding text is ``"image_path: <png>"`` (or ``"video_clip: <clip>"``), which
:class:`~qwen3_vl_rag.llama_index.Qwen3VLEmbedding` embeds as that image or clip, so even a plain
``VectorStoreIndex.from_documents`` embeds pixels. ``image_fingerprint`` identifies the pixels,
so LlamaIndex's ingestion cache (keyed on text and metadata) never confuses two pages that have
the same text.

Each reader registers the folder it writes page images to, or the file or folder it reads, as an
image root (:func:`~qwen3_vl_rag.media.references.register_image_root`): in this process, the
embedding and the reranker read the files its documents name. In another process, pass that
folder as their ``image_roots``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from llama_index.core.readers.base import BaseReader
from llama_index.core.schema import Document, ImageDocument, MediaResource

from qwen3_vl_rag._adapters import MediaScan
from qwen3_vl_rag.checked_files import file_sha256
from qwen3_vl_rag.media.page_images import default_image_dir
from qwen3_vl_rag.media.references import clip_reference, register_image_root

if TYPE_CHECKING:
    from qwen3_vl_rag.media.budget import MediaBudget

__all__ = ["ImageReader", "PDFPageImageReader", "VideoClipReader"]


#: An empty text that still counts as text: ``text=""`` leaves a document without a text
#: resource, and then its content ignores metadata, and so does the ingestion cache's key (two
#: pages with the same text would share cached nodes). An empty resource keeps metadata in.
def _no_text() -> dict[str, Any]:
    return {"text_resource": MediaResource(text="")}


AnyDocument = TypeVar("AnyDocument", bound=Document)

#: Keys that only serve bookkeeping: never shown to the LLM.
BOOKKEEPING = ("image_path", "image_fingerprint", "video_clip", "video_path")


def _visual_document(
    factory: type[AnyDocument], reference_key: str, metadata: dict[str, Any], **fields: Any
) -> AnyDocument:
    """A document whose embedding text is only ``"<reference_key>: <reference>"``."""
    return factory(
        metadata=metadata,
        excluded_embed_metadata_keys=[k for k in metadata if k != reference_key],
        excluded_llm_metadata_keys=[k for k in metadata if k in BOOKKEEPING],
        **fields,
    )


class PDFPageImageReader(BaseReader):
    """One ``ImageDocument`` per PDF page, rendered to a PNG at the size the embedder uses.

    Metadata: ``file_path`` and ``file_name`` (the PDF), ``page`` (0-based), ``page_label``,
    ``total_pages``, ``page_text``, ``image_path`` (the PNG) and ``image_fingerprint``, plus what
    ``SimpleDirectoryReader`` passes in ``extra_info``. Pages are rendered once: a PNG named by
    the PDF's content hash, page and size is reused when the PDF is read again.

    Example:
        >>> from llama_index.core import SimpleDirectoryReader
        >>> reader = PDFPageImageReader(image_dir="store/pages")
        >>> documents = SimpleDirectoryReader(
        ...     "reports/", file_extractor={".pdf": reader}
        ... ).load_data()
        >>> sorted({(doc.metadata["file_name"], doc.metadata["total_pages"]) for doc in documents})
        [('annual-report.pdf', 3), ('billing-manual.pdf', 2)]
    """

    def __init__(
        self,
        *,
        image_dir: str | os.PathLike[str] | None = None,
        pages: Sequence[int] | None = None,
        password: str | None = None,
        budget: MediaBudget | None = None,
    ) -> None:
        """Configure the reader (nothing is read until :meth:`lazy_load_data`).

        Args:
            image_dir: Where page PNGs are written (default ``~/.cache/qwen3-vl-rag/pages``; made
                absolute here, as are the PDF paths documents name).
            pages: 0-based pages to read (default: all, up to ``budget.max_pages``).
            password: For encrypted PDFs.
            budget: Pixel and page limits (default ``MediaBudget()``: the embedder's defaults).
        """
        super().__init__()
        self.image_dir = Path(image_dir if image_dir is not None else default_image_dir()).resolve()
        self.pages = pages
        self.password = password
        self.budget = budget

    def lazy_load_data(
        self,
        file: str | os.PathLike[str],
        extra_info: dict[str, Any] | None = None,
        fs: Any = None,
    ) -> Iterable[ImageDocument]:
        """Render and yield the pages of ``file`` one at a time.

        Raises:
            PdfError: Not a PDF, unreadable, or without pages (``EncryptedPdfError`` without
                the right password).
            MissingDependencyError: PyMuPDF is missing (``pip install "qwen3-vl-rag[pdf]"``).
        """
        from qwen3_vl_rag.media.page_images import page_images

        path = Path(file).resolve()
        register_image_root(self.image_dir)  # our pages' paths may be read back from nodes
        for page in page_images(
            path, self.image_dir, pages=self.pages, password=self.password, budget=self.budget
        ):
            meta = page.item.metadata
            metadata = {
                **(extra_info or {}),
                "file_path": str(path),
                "file_name": path.name,
                "page": page.page,
                "page_label": str(meta["page_label"]),
                "total_pages": int(meta["total_pages"]),
                "page_text": page.text,
                "image_path": str(page.path),
                "image_fingerprint": page.fingerprint,
            }
            yield _visual_document(
                ImageDocument, "image_path", metadata, image_path=str(page.path), **_no_text()
            )


class ImageReader(MediaScan, BaseReader):
    """One ``ImageDocument`` per image file (screenshots, photos, scans), from a file or folder.

    Files are recognised by content (PNG, JPEG, WebP, GIF, BMP, TIFF); in a folder, other files
    are skipped and, with unreadable ones, listed in :attr:`report`. ``image_fingerprint`` is
    the SHA-256 of the file's bytes.

    Example:
        >>> from pathlib import Path
        >>> shots = ImageReader().load_data("screenshots/")
        >>> sorted(doc.metadata["file_name"] for doc in shots)
        ['billing.png', 'settings.png']
        >>> Path(shots[0].image_path).is_absolute()
        True
    """

    def lazy_load_data(
        self,
        file: str | os.PathLike[str],
        extra_info: dict[str, Any] | None = None,
        fs: Any = None,
    ) -> Iterable[ImageDocument]:
        """Yield the image (or a folder's images) one at a time."""
        for item in self._items(file, "image"):
            source = item.source
            metadata = {
                **(extra_info or {}),
                "file_path": source,
                "file_name": Path(source).name,
                "image_width": int(item.metadata["image_width"]),
                "image_height": int(item.metadata["image_height"]),
                "image_path": source,
                "image_fingerprint": file_sha256(source),
            }
            yield _visual_document(
                ImageDocument, "image_path", metadata, image_path=source, **_no_text()
            )


class VideoClipReader(MediaScan, BaseReader):
    """One document per video clip (or per video), from a file or a folder.

    Its text says which clip it is (``"Video clip: talk.mp4, 10-20 s"``) for the LLM; its
    metadata has ``video_path``, ``start_seconds``, ``end_seconds``, ``clip_index``, ``duration``
    and ``video_clip`` (``"talk.mp4#t=10,20"``), which the embedder and the reranker read as
    that clip.

    Example:
        >>> clips = VideoClipReader(segment_seconds=1).load_data("meeting.mp4")
        >>> clips[2].text, clips[2].metadata["start_seconds"], clips[2].metadata["end_seconds"]
        ('Video clip: meeting.mp4, 2-3 s', 2.0, 3.0)
    """

    def __init__(
        self,
        *,
        segment_seconds: float | None = 10.0,
        fps: float | None = None,
        recursive: bool = True,
        include_hidden: bool = False,
        budget: MediaBudget | None = None,
    ) -> None:
        """Configure the reader.

        Args:
            segment_seconds: Clip length; ``None`` gives one document per whole video.
            fps: Frames sampled per second (default 1.0, as the official code).
            recursive: Look in subfolders of a folder.
            include_hidden: Take hidden files.
            budget: Frame, clip, byte and time limits.
        """
        super().__init__(recursive=recursive, include_hidden=include_hidden, budget=budget)
        self.segment_seconds = segment_seconds
        self.fps = fps

    def lazy_load_data(
        self,
        file: str | os.PathLike[str],
        extra_info: dict[str, Any] | None = None,
        fs: Any = None,
    ) -> Iterable[Document]:
        """Yield the clips one at a time."""
        for item in self._items(file, "video", self.segment_seconds, self.fps):
            meta = dict(item.metadata)
            start = float(meta.get("start_seconds", 0.0))
            end = float(meta.get("end_seconds", meta.get("duration", 0.0)))
            metadata = {
                **(extra_info or {}),
                **{k: v for k, v in meta.items() if k != "source"},
                "file_path": item.source,
                "file_name": Path(item.source).name,
                "video_path": item.source,
                "start_seconds": start,
                "end_seconds": end,
                "video_clip": clip_reference(item.source, start, end),
            }
            text = f"Video clip: {Path(item.source).name}, {start:g}-{end:g} s"
            yield _visual_document(Document, "video_clip", metadata, text=text)
