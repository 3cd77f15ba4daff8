"""Hostile media against the index (issue 15): what is refused before hashing, what is never read.

The tiny random-weight embedder indexes a few generated files; the hostile ones are built
cheaply (a sparse file, a link swapped in during the run).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qwen3_vl_rag import Qwen3VLEmbedder
from qwen3_vl_rag.index import MultimodalIndex
from qwen3_vl_rag.media.folders import FolderScan


def old_png(path: Path, colour: tuple[int, int, int]) -> Path:
    """A one-colour PNG last modified a minute ago (a fresher mtime is not trusted)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), colour).save(path, "PNG")
    past = time.time_ns() - 60_000_000_000
    os.utime(path, ns=(past, past))
    return path


@pytest.mark.timeout(120)  # hashing the sparse file first would take minutes
def test_a_huge_sparse_file_is_refused_by_size_before_it_is_hashed(
    tmp_path: Path, embedder: Qwen3VLEmbedder
) -> None:
    corpus = tmp_path / "corpus"
    old_png(corpus / "a.png", (200, 30, 30))
    big = corpus / "big.png"
    with big.open("wb") as handle:  # a PNG signature, then 20 GiB of holes (no disk used)
        handle.write(b"\x89PNG\r\n\x1a\n")
        handle.truncate(20 * 1024**3)
    with MultimodalIndex(tmp_path / "index", embedder, workers=1) as index:
        started = time.monotonic()
        report = index.index([corpus])
        seconds = time.monotonic() - started
    outcomes = [(Path(f.path).name, f.status, f.stage, f.reason) for f in report.files]
    assert outcomes == [
        ("a.png", "indexed", None, None),
        (
            "big.png",
            "skipped",
            "open",
            "too large: 21474836480 bytes is over the budget of 536870912",
        ),
    ]
    assert seconds < 60  # hashing 20 GiB takes minutes; the refusal is immediate


@pytest.fixture
def swapping_walk(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """After the walk checks ``a.png`` (a regular file inside), it becomes a link outside."""
    secret = old_png(tmp_path / "private" / "secret.png", (0, 0, 255))
    original = FolderScan.files

    def files(self: FolderScan) -> Iterator[Path]:
        for path in original(self):
            if path.name == "a.png":
                path.unlink()
                path.symlink_to(secret)
            yield path

    monkeypatch.setattr(FolderScan, "files", files)
    return secret


def test_a_file_swapped_for_a_link_outside_during_indexing_is_not_indexed(
    tmp_path: Path, embedder: Qwen3VLEmbedder, swapping_walk: Path
) -> None:
    corpus = tmp_path / "corpus"
    old_png(corpus / "a.png", (200, 30, 30))
    old_png(corpus / "b.png", (30, 200, 30))
    with MultimodalIndex(tmp_path / "index", embedder, workers=1) as index:
        report = index.index([corpus])
        outcomes = {Path(f.path).name: (f.status, f.stage) for f in report.files}
        assert outcomes == {"a.png": ("skipped", "open"), "b.png": ("indexed", None)}
        stored = [row.vector for row in index.manifest.current_items()]
        outside = embedder.embed_documents([swapping_walk], dim=index.dimension)[0]
    assert len(stored) == 1
    assert not any(np.allclose(vector, outside, atol=1e-5) for vector in stored)
