"""The public surface: an explicit ``__all__``, lazy loading, no torch at import time."""

from __future__ import annotations

import subprocess
import sys

import pytest

import qwen3_vl_rag

EXPECTED_ALL = [
    "BlockedURLError",
    "ClusterError",
    "ConfigurationError",
    "DatasetError",
    "DecodeTimeoutError",
    "DecoderCrashedError",
    "EncryptedPdfError",
    "FetchError",
    "ImageDecodeError",
    "ImageSource",
    "IndexCorruptedError",
    "IndexLockedError",
    "IndexMismatchError",
    "IndexStorageError",
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
    "ResourceExhaustedError",
    "SearchResult",
    "ServerConfigurationError",
    "ServerError",
    "ServerOptions",
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


def test_all_snapshot() -> None:
    assert sorted(qwen3_vl_rag.__all__) == EXPECTED_ALL


@pytest.mark.parametrize("name", EXPECTED_ALL)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(qwen3_vl_rag, name) is not None


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = qwen3_vl_rag.Nope  # type: ignore[attr-defined]


def test_import_does_not_load_torch_or_transformers() -> None:
    code = (
        "import sys, qwen3_vl_rag;"
        "from qwen3_vl_rag import MultimodalInput, Video, InputError;"
        "heavy = [m for m in ('torch', 'transformers', 'av', 'PIL') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_testing_module_does_not_load_torch() -> None:
    code = "import sys, qwen3_vl_rag.testing; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_errors_subclass_builtins() -> None:
    assert issubclass(qwen3_vl_rag.InputError, ValueError)
    assert issubclass(qwen3_vl_rag.ImageDecodeError, qwen3_vl_rag.InputError)
    assert issubclass(qwen3_vl_rag.ConfigurationError, ValueError)
    assert issubclass(qwen3_vl_rag.ModelLoadError, OSError)
    assert issubclass(qwen3_vl_rag.MissingDependencyError, ImportError)
    assert issubclass(qwen3_vl_rag.ResourceExhaustedError, RuntimeError)
    assert issubclass(qwen3_vl_rag.PrecisionMismatchWarning, UserWarning)
    for name in EXPECTED_ALL:
        obj = getattr(qwen3_vl_rag, name)
        if isinstance(obj, type) and issubclass(obj, Exception) and not issubclass(obj, Warning):
            assert issubclass(obj, qwen3_vl_rag.Qwen3VLRagError)


def test_missing_dependency_message_names_the_extra() -> None:
    err = qwen3_vl_rag.MissingDependencyError("pymupdf", "pdf", "Rendering PDF pages")
    assert 'pip install "qwen3-vl-rag[pdf]"' in str(err)


def test_input_error_message_names_item_source_and_hint() -> None:
    err = qwen3_vl_rag.ImageDecodeError("not an image.", source="a.png", hint="Check it.")
    assert str(err) == "a.png: not an image. Check it."
    named = err.with_item(3)
    assert isinstance(named, qwen3_vl_rag.ImageDecodeError)
    assert named.item_index == 3
    assert str(named) == "item 3, a.png: not an image. Check it."
    assert named.with_item(5) is named  # the first (innermost) position wins


def test_media_import_loads_no_decoder_or_torch() -> None:
    code = (
        "import sys;"
        "from qwen3_vl_rag.media import load, scan_folder, MediaItem, MediaBudget, fetch;"
        "heavy = [m for m in ('torch', 'transformers', 'av', 'fitz', 'pymupdf')"
        " if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_index_import_loads_no_torch_chroma_or_decoder() -> None:
    code = (
        "import sys;"
        "from qwen3_vl_rag import MultimodalIndex, SearchResult;"
        "from qwen3_vl_rag.cli.main import main;"
        "heavy = [m for m in ('torch', 'transformers', 'chromadb', 'av', 'fitz', 'pymupdf')"
        " if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
