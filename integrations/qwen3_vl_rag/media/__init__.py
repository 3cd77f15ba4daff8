"""From files to items: PDF pages, images, screenshots and video clips, decoded under budgets.

Framework-free; the LangChain and LlamaIndex loaders and the index are thin layers over it.
Importing it loads neither torch, PyMuPDF nor PyAV.

Example:
    >>> from qwen3_vl_rag.media import load, scan_folder
    >>> pages = list(load("report.pdf"))                 # one item per page
    >>> with scan_folder("shared-drive/") as scan:      # PDFs, images, videos; a per-file report
    ...     vectors = embedder.embed_documents(list(scan))
    >>> scan.report.counts()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Lazy exports: the engine imports ``media.video`` for its frame readers, and the loaders import
# the engine's resize rule, so an eager package init here would be an import cycle.
_LAZY = {
    "IN_PROCESS": "isolation",
    "Fetched": "remote",
    "FileReport": "folders",
    "FolderScan": "folders",
    "ImageDocument": "loaders",
    "LoadOptions": "loaders",
    "MediaBudget": "budget",
    "MediaDocument": "loaders",
    "MediaItem": "items",
    "PdfDocument": "pdf",
    "RemotePolicy": "remote",
    "ScanReport": "folders",
    "VideoDocument": "clips",
    "WorkerPool": "isolation",
    "fetch": "remote",
    "load": "loaders",
    "load_image": "images",
    "load_path": "loaders",
    "load_pdf": "pdf",
    "load_url": "loaders",
    "load_video": "clips",
    "scan_folder": "folders",
}

if TYPE_CHECKING:
    from qwen3_vl_rag.media.budget import MediaBudget
    from qwen3_vl_rag.media.clips import VideoDocument, load_video
    from qwen3_vl_rag.media.folders import FileReport, FolderScan, ScanReport, scan_folder
    from qwen3_vl_rag.media.images import load_image
    from qwen3_vl_rag.media.isolation import IN_PROCESS, WorkerPool
    from qwen3_vl_rag.media.items import MediaItem
    from qwen3_vl_rag.media.loaders import (
        ImageDocument,
        LoadOptions,
        MediaDocument,
        load,
        load_path,
        load_url,
    )
    from qwen3_vl_rag.media.pdf import PdfDocument, load_pdf
    from qwen3_vl_rag.media.remote import Fetched, RemotePolicy, fetch

__all__ = [
    "IN_PROCESS",
    "Fetched",
    "FileReport",
    "FolderScan",
    "ImageDocument",
    "LoadOptions",
    "MediaBudget",
    "MediaDocument",
    "MediaItem",
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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module 'qwen3_vl_rag.media' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(f"qwen3_vl_rag.media.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
