"""qwen3-vl-rag: retrieval that sees, with Qwen3-VL-Embedding and Qwen3-VL-Reranker.

Importing the package is cheap: torch and transformers load on first use of a model class.

Example:
    >>> from qwen3_vl_rag import Qwen3VLEmbedder, Qwen3VLReranker, MultimodalInput
    >>> embedder = Qwen3VLEmbedder.from_pretrained("Qwen/Qwen3-VL-Embedding-2B")
    >>> vectors = embedder.embed_documents(["a caption", MultimodalInput(images=["page.png"])])
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from qwen3_vl_rag.errors import (
    BlockedURLError,
    ClusterError,
    ConfigurationError,
    DatasetError,
    DecoderCrashedError,
    DecodeTimeoutError,
    EncryptedPdfError,
    FetchError,
    ImageDecodeError,
    IndexCorruptedError,
    IndexLockedError,
    IndexMismatchError,
    IndexStorageError,
    InputError,
    InputTooLargeError,
    InputTooLongError,
    MissingDependencyError,
    ModelLoadError,
    PdfError,
    PrecisionMismatchWarning,
    Qwen3VLRagError,
    RemoteInputError,
    ResourceExhaustedError,
    ServerConfigurationError,
    ServerError,
    ServerResponseError,
    ServerTimeoutError,
    ServerUnreachableError,
    SourceChangedError,
    StoreUnavailableError,
    UnsupportedInputError,
    VideoDecodeError,
)
from qwen3_vl_rag.inputs import (
    ImageSource,
    InputItem,
    LazyImage,
    MultimodalInput,
    Video,
    VideoSource,
)

if TYPE_CHECKING:
    from qwen3_vl_rag.engine import (
        Precision,
        PretrainedOptions,
        QuantizationCalibration,
        Qwen3VLEmbedder,
        Qwen3VLReranker,
        RerankResult,
        ServerOptions,
        VisionSettings,
        quantize_embeddings,
        truncate_embeddings,
    )
    from qwen3_vl_rag.index import MultimodalIndex, SearchResult

# A library prints nothing through logging's last-resort handler: an application that configures
# logging sees the package's warnings, one that does not sees nothing (reports say it all).
logging.getLogger(__name__).addHandler(logging.NullHandler())

try:
    __version__ = version("qwen3-vl-rag")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

_LAZY = {
    "Qwen3VLEmbedder": "qwen3_vl_rag.engine",
    "Qwen3VLReranker": "qwen3_vl_rag.engine",
    "RerankResult": "qwen3_vl_rag.engine",
    "PretrainedOptions": "qwen3_vl_rag.engine",
    "Precision": "qwen3_vl_rag.engine",
    "QuantizationCalibration": "qwen3_vl_rag.engine",
    "quantize_embeddings": "qwen3_vl_rag.engine",
    "truncate_embeddings": "qwen3_vl_rag.engine",
    "VisionSettings": "qwen3_vl_rag.engine",
    "ServerOptions": "qwen3_vl_rag.engine",
    "MultimodalIndex": "qwen3_vl_rag.index",
    "SearchResult": "qwen3_vl_rag.index",
}

__all__ = [
    "BlockedURLError",
    "ClusterError",
    "ConfigurationError",
    "DatasetError",
    "DecodeTimeoutError",
    "DecoderCrashedError",
    "EncryptedPdfError",
    "FetchError",
    "ImageDecodeError",
    "IndexCorruptedError",
    "IndexLockedError",
    "IndexMismatchError",
    "IndexStorageError",
    "ImageSource",
    "InputError",
    "InputItem",
    "InputTooLargeError",
    "InputTooLongError",
    "LazyImage",
    "MissingDependencyError",
    "ModelLoadError",
    "MultimodalIndex",
    "MultimodalInput",
    "PdfError",
    "Precision",
    "PrecisionMismatchWarning",
    "PretrainedOptions",
    "QuantizationCalibration",
    "Qwen3VLEmbedder",
    "Qwen3VLRagError",
    "Qwen3VLReranker",
    "RemoteInputError",
    "RerankResult",
    "SearchResult",
    "ServerOptions",
    "ResourceExhaustedError",
    "ServerConfigurationError",
    "ServerError",
    "ServerResponseError",
    "ServerTimeoutError",
    "ServerUnreachableError",
    "SourceChangedError",
    "StoreUnavailableError",
    "UnsupportedInputError",
    "Video",
    "VideoDecodeError",
    "VideoSource",
    "VisionSettings",
    "__version__",
    "quantize_embeddings",
    "truncate_embeddings",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module 'qwen3_vl_rag' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
