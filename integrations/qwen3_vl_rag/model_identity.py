"""What a checkpoint is, wherever it lies: a fingerprint of the files that decide its numbers.

An index must know whether a model given to it is the one its vectors were made with. The path
a model was loaded from says where it lies, not what it is: the same checkpoint copied to another
folder, or reached by a relative path from another directory, is the same model, and two folders
of the same name can hold different ones. :func:`model_fingerprint` describes the content.

Standard library only (no torch, no transformers): the engine and the index both use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CheckpointLocation", "model_fingerprint"]

#: Files hashed whole: the model's configuration and everything that turns inputs into numbers.
NUMERIC_FILES = (
    "config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "model.safetensors.index.json",
)
_SCHEME = b"qwen3-vl-rag model fingerprint v1"
_WINDOW = 256  # bytes read from the middle of each tensor
_SPREAD = 16  # windows of _SPREAD_BYTES spread evenly over each weight file
_SPREAD_BYTES = 4096
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit

_cache: dict[tuple[object, ...], str] = {}
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class CheckpointLocation:
    """Where a loaded checkpoint came from.

    Attributes:
        name: What to record and show: a Hub id, or the absolute (resolved) path of a local
            folder, so it means the same from any working directory.
        directory: The folder its files were read from: the local folder, or the Hub id's
            snapshot in the Hugging Face cache.
        local: Whether ``name`` is a local folder.
    """

    name: str
    directory: Path
    local: bool

    def fingerprint(self) -> str:
        """:func:`model_fingerprint` of :attr:`directory`."""
        return model_fingerprint(self.directory)


def model_fingerprint(directory: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) over what decides a checkpoint's numbers, whatever folder holds it.

    Hashed: the bytes of the configuration, processor and tokenizer files
    (:data:`NUMERIC_FILES`, each by name, or as absent), and for each ``*.safetensors`` weight
    file its name, size, whole header (every tensor's name, dtype, shape and place) and samples
    of its data: a window from the middle of every tensor and 16 windows spread over the file.
    So a multi-gigabyte checkpoint is fingerprinted from a few megabytes of reads, in well under
    a second; a result is also kept for the process while its files' sizes and times stay the same.

    Guarantees: byte-identical checkpoints in any two folders have the same fingerprint
    (symbolic links, as in the Hugging Face cache, are followed); a change of any of those
    files, of any tensor's name, dtype or shape, or of a whole tensor (as training or another
    seed changes it) gives another one. Not guaranteed: an edit of a few weight bytes outside
    the sampled windows, which no loader or training run makes.

    Args:
        directory: A checkpoint folder (``config.json`` and safetensors weights).

    Raises:
        OSError: The folder or one of its files cannot be read.

    Example:
        >>> import tempfile, pathlib
        >>> a, b = (pathlib.Path(tempfile.mkdtemp()) for _ in range(2))
        >>> for folder in (a, b):
        ...     _ = (folder / "config.json").write_text('{"model_type": "qwen3_vl"}')
        >>> model_fingerprint(a) == model_fingerprint(b)
        True
        >>> _ = (b / "config.json").write_text('{"model_type": "qwen3_vl", "x": 1}')
        >>> model_fingerprint(a) == model_fingerprint(b)
        False
    """
    root = Path(directory)
    weights = sorted(entry.name for entry in root.iterdir() if entry.name.endswith(".safetensors"))
    files = [*NUMERIC_FILES, *weights]
    key = (os.path.realpath(root), *(_stat_key(root / name) for name in files))
    with _cache_lock:
        known = _cache.get(key)
    if known is not None:
        return known
    digest = hashlib.sha256(_SCHEME)
    for name in NUMERIC_FILES:
        digest.update(f"\0file {name}\0".encode())
        path = root / name
        if path.is_file():
            digest.update(path.read_bytes())
        else:
            digest.update(b"\0absent")
    for name in weights:
        digest.update(f"\0weights {name}\0".encode())
        _hash_weights(root / name, digest)
    fingerprint = digest.hexdigest()
    with _cache_lock:
        _cache[key] = fingerprint
    return fingerprint


def _stat_key(path: Path) -> tuple[str, int, int] | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return (path.name, info.st_size, info.st_mtime_ns)


def _hash_weights(path: Path, digest: hashlib._Hash) -> None:
    """Size, header and sampled data windows of a safetensors file."""
    with path.open("rb") as handle:
        fd = handle.fileno()
        size = os.fstat(fd).st_size
        digest.update(size.to_bytes(8, "little"))
        prefix = os.pread(fd, 8, 0)
        length = int.from_bytes(prefix, "little") if len(prefix) == 8 else 0
        header = os.pread(fd, min(length, _MAX_HEADER), 8) if length else b""
        digest.update(prefix + header)
        start = 8 + len(header)
        for begin, end in _tensor_spans(header):
            window = min(_WINDOW, end - begin)
            digest.update(os.pread(fd, window, start + (begin + end - window) // 2))
        data = max(size - start, 0)
        for sample in range(_SPREAD):
            offset = start + data * sample // _SPREAD
            digest.update(os.pread(fd, _SPREAD_BYTES, offset))
        digest.update(os.pread(fd, _SPREAD_BYTES, max(size - _SPREAD_BYTES, start)))


def _tensor_spans(header: bytes) -> list[tuple[int, int]]:
    """Each tensor's ``data_offsets`` from a safetensors header (none if it does not parse)."""
    try:
        entries = json.loads(header)
    except ValueError:
        return []
    spans = []
    for name, entry in sorted(entries.items()) if isinstance(entries, dict) else ():
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if name != "__metadata__" and isinstance(offsets, list) and len(offsets) == 2:
            begin, end = offsets
            if isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end:
                spans.append((begin, end))
    return spans
