"""From files to items: PDF pages, images, screenshots and video clips, decoded under budgets.

Framework-free; the LangChain and LlamaIndex loaders and the index are thin layers over it.
Importing it loads neither torch, PyMuPDF nor PyAV.

Example:
    >>> from qwen3_vl_rag import Qwen3VLEmbedder
    >>> from qwen3_vl_rag.media import load, scan_folder
    >>> embedder = Qwen3VLEmbedder.from_pretrained("Qwen/Qwen3-VL-Embedding-2B")
    >>> pages = list(load("report.pdf"))              # one item per page
    >>> with scan_folder("documents/") as scan:      # PDFs, images, videos; a per-file report
    ...     vectors = embedder.embed_documents(list(scan))
    >>> scan.report.counts()
    {'loaded': 5, 'skipped': 0, 'failed': 0, 'items': 8}
"""

from __future__ import annotations

from qwen3_vl_rag.media.budget import MediaBudget
from qwen3_vl_rag.media.clips import VideoDocument, load_video
from qwen3_vl_rag.media.folders import FileReport, FolderScan, ScanReport, scan_folder
from qwen3_vl_rag.media.images import load_image
from qwen3_vl_rag.media.isolation import IN_PROCESS_RUNNER, WorkerPool
from qwen3_vl_rag.media.items import MediaItem
from qwen3_vl_rag.media.loaders import (
    ImageDocument,
    MediaDocument,
    MediaOptions,
    load,
    load_path,
    load_url,
)
from qwen3_vl_rag.media.pdf import PdfDocument, load_pdf
from qwen3_vl_rag.media.remote import Fetched, RemotePolicy, fetch

__all__ = [
    "IN_PROCESS_RUNNER",
    "Fetched",
    "FileReport",
    "FolderScan",
    "ImageDocument",
    "MediaBudget",
    "MediaDocument",
    "MediaItem",
    "MediaOptions",
    "PdfDocument",
    "RemotePolicy",
    "ScanReport",
    "VideoDocument",
    "WorkerPool",
    "fetch",
    "load",
    "load_image",
    "load_path",
    "load_pdf",
    "load_url",
    "load_video",
    "scan_folder",
]
