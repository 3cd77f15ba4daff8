"""LangChain loaders that turn PDF pages, images and videos into documents the embedder sees.

Each loader yields one ``Document`` per page, image or clip, whose ``page_content`` names the
visual (the rendered page's PNG, the image file, or ``video.mp4#t=10,20`` for a clip), so
:class:`~qwen3_vl_rag.langchain.Qwen3VLEmbeddings` embeds the pixels, and whose metadata is
flat (str, int, float, bool) as every vector store wants. Files are read through
:mod:`qwen3_vl_rag.media`: its budgets apply, and a folder's files that cannot be read are
skipped and listed in ``loader.report`` instead of stopping the load.

Each loader registers the folder it writes page images to, or the file or folder it loads, as
an image root (:func:`~qwen3_vl_rag.media.references.register_image_root`): in this process,
the embeddings, the reranker and ``documents_to_content_blocks`` read the files its documents
name. In another process, pass that folder as their ``image_roots``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.document_loaders import BaseLoader
from langchain_core.documents import Document

from qwen3_vl_rag._adapters import MediaScan
from qwen3_vl_rag.media.page_images import default_image_dir
from qwen3_vl_rag.media.references import clip_reference, register_image_root

if TYPE_CHECKING:
    from qwen3_vl_rag.media.budget import MediaBudget
    from qwen3_vl_rag.media.page_images import PageImage

__all__ = ["ImageLoader", "PDFPageImageLoader", "VideoClipLoader", "default_image_dir"]

PageContent = Literal["image", "text"]


class PDFPageImageLoader(BaseLoader):
    """One Document per PDF page, rendered to a PNG at the size the embedder uses.

    ``page_content`` is the PNG's path (``content="image"``, the default), so embedding the
    documents embeds the pages as images; or the page's text (``content="text"``), with the
    image in metadata for the reranker and the chat model. Metadata follows
    ``PyMuPDFLoader``: ``source``, ``file_path``, ``page`` (0-based int), ``total_pages``,
    ``page_label``; plus ``image_path``, ``mime_type``, ``page_text``, ``image_width`` and
    ``image_height``. Pages are rendered once: a PNG named by the PDF's content hash, the page
    and the size is reused when the PDF is loaded again.

    Example:
        >>> from pathlib import Path
        >>> from langchain_chroma import Chroma
        >>> from qwen3_vl_rag.langchain import Qwen3VLEmbeddings
        >>> pages = PDFPageImageLoader("annual-report.pdf", image_dir="store/pages").load()
        >>> store = Chroma.from_documents(pages, Qwen3VLEmbeddings(), persist_directory="store")
        >>> best = store.similarity_search("bar chart of revenue by region", k=1)[0]
        >>> best.metadata["page"] in range(len(pages)), Path(best.metadata["image_path"]).parent
        (True, PosixPath('/.../store/pages'))
    """

    def __init__(
        self,
        file_path: str | os.PathLike[str],
        *,
        image_dir: str | os.PathLike[str] | None = None,
        content: PageContent = "image",
        pages: Sequence[int] | None = None,
        password: str | None = None,
        budget: MediaBudget | None = None,
    ) -> None:
        """Configure the loader (nothing is read until :meth:`lazy_load`).

        Paths are made absolute here, so documents name their files wherever they are used.

        Args:
            file_path: The PDF.
            image_dir: Where page PNGs are written (default :func:`default_image_dir`).
            content: ``"image"`` (page_content is the PNG path) or ``"text"`` (the page text;
            a page without text says so, never an empty string).
            pages: 0-based pages to load (default: all, up to ``budget.max_pages``).
            password: For an encrypted PDF.
            budget: Pixel and page limits (default ``MediaBudget()``: the embedder's defaults).
        """
        if content not in ("image", "text"):
            raise ValueError(f'content must be "image" or "text", got {content!r}')
        self.file_path = Path(file_path).resolve()
        self.image_dir = Path(image_dir if image_dir is not None else default_image_dir()).resolve()
        self.content = content
        self.pages = pages
        self.password = password
        self.budget = budget

    def lazy_load(self) -> Iterator[Document]:
        """Render and yield the pages one at a time.

        Raises:
            PdfError: Not a PDF, unreadable, or without pages (``EncryptedPdfError`` without
                the right password).
            MissingDependencyError: PyMuPDF is missing (``pip install "qwen3-vl-rag[pdf]"``).
        """
        from qwen3_vl_rag.media.page_images import page_images

        register_image_root(self.image_dir)  # our pages' paths may be read back from documents
        for page in page_images(
            self.file_path,
            self.image_dir,
            pages=self.pages,
            password=self.password,
            budget=self.budget,
        ):
            yield self._document(page)

    def _document(self, page: PageImage) -> Document:
        meta = page.item.metadata
        text = page.text
        metadata: dict[str, Any] = {
            "source": str(self.file_path),
            "file_path": str(self.file_path),
            "page": page.page,
            "total_pages": int(meta["total_pages"]),
            "page_label": str(meta["page_label"]),
            "image_path": str(page.path),
            "mime_type": "image/png",
            "image_width": int(meta["image_width"]),
            "image_height": int(meta["image_height"]),
            "page_text": text,
        }
        if self.content == "image":
            content = str(page.path)
        elif text.strip():
            content = text
        else:  # never empty: some stores and splitters drop empty documents
            content = f"[page {meta['page_label']} of {self.file_path.name}: no text]"
        return Document(page_content=content, metadata=metadata)


class _FolderLoader(MediaScan, BaseLoader):
    """A loader of one file or a folder's files, through :mod:`qwen3_vl_rag.media`."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        recursive: bool = True,
        include_hidden: bool = False,
        budget: MediaBudget | None = None,
    ) -> None:
        """Configure the loader (nothing is read until :meth:`lazy_load`).

        Args:
            path: A file or a folder (made absolute here, as are the paths documents name).
            recursive: Look in subfolders.
            include_hidden: Take hidden files (they are reported as skipped otherwise).
            budget: Pixel, frame, byte and time limits.
        """
        super().__init__(recursive=recursive, include_hidden=include_hidden, budget=budget)
        self.path = Path(path).resolve()


class ImageLoader(_FolderLoader):
    """One Document per image file (screenshots, photos, scans), from a file or a folder.

    ``page_content`` is the image's path, so :class:`Qwen3VLEmbeddings` embeds the image.
    Files are recognised by content (PNG, JPEG, WebP, GIF, BMP, TIFF); a folder's other files
    are skipped and, with unreadable ones, listed in :attr:`report`.

    Example:
        >>> from pathlib import Path
        >>> loader = ImageLoader("screenshots/")
        >>> shots = loader.load()
        >>> sorted(Path(shot.page_content).name for shot in shots)
        ['billing.png', 'settings.png']
        >>> Path(shots[0].metadata["image_path"]).is_absolute()
        True
        >>> loader.report.counts()
        {'loaded': 2, 'skipped': 0, 'failed': 0, 'items': 2}
    """

    def lazy_load(self) -> Iterator[Document]:
        """Yield the images one at a time; :attr:`report` is complete when this ends."""
        for item in self._items(self.path, "image"):
            metadata = {**dict(item.metadata), "image_path": item.source}
            metadata["mime_type"] = f"image/{metadata.get('file_type', 'png')}"
            yield Document(page_content=item.source, metadata=metadata)


class VideoClipLoader(_FolderLoader):
    """One Document per video clip (or per video), from a file or a folder.

    ``page_content`` is the clip's reference, ``"talk.mp4#t=10,20"`` (W3C media-fragment
    syntax), which :class:`Qwen3VLEmbeddings` and :class:`Qwen3VLRerank` read as that clip;
    metadata has ``source``, ``start_seconds``, ``end_seconds``, ``clip_index``, ``duration``
    and the sampling settings.

    Example:
        >>> clips = VideoClipLoader("meeting.mp4", segment_seconds=1).load()
        >>> clips[2].page_content, clips[2].metadata["start_seconds"]
        ('/.../meeting.mp4#t=2,3', 2.0)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        segment_seconds: float | None = 10.0,
        fps: float | None = None,
        recursive: bool = True,
        include_hidden: bool = False,
        budget: MediaBudget | None = None,
    ) -> None:
        """Configure the loader (nothing is read until :meth:`lazy_load`).

        Args:
            path: A video file or a folder (made absolute here).
            segment_seconds: Clip length; ``None`` gives one document per whole video.
            fps: Frames sampled per second (default 1.0, as the official code).
            recursive: Look in subfolders.
            include_hidden: Take hidden files.
            budget: Frame, clip, byte and time limits.
        """
        super().__init__(path, recursive=recursive, include_hidden=include_hidden, budget=budget)
        self.segment_seconds = segment_seconds
        self.fps = fps

    def lazy_load(self) -> Iterator[Document]:
        """Yield the clips one at a time; :attr:`report` is complete when this ends."""
        for item in self._items(self.path, "video", self.segment_seconds, self.fps):
            metadata = dict(item.metadata)
            if item.kind == "clip":
                start, end = float(metadata["start_seconds"]), float(metadata["end_seconds"])
                content = clip_reference(item.source, start, end)
            else:
                content = item.source
            yield Document(page_content=content, metadata=metadata)
