"""The index under hostile conditions: kills during rebuild, damaged manifests, odd file names,
full disks, read-only directories and a store deleted while in use (issue 15, items 6-8, 13).

Small indexes are written straight into the manifest and the store (random unit vectors, no model)
where only the index's own bookkeeping is under test; the tiny checkpoints embed real files where
the path from a file to its vector is.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image

from qwen3_vl_rag import Qwen3VLEmbedder, Qwen3VLReranker
from qwen3_vl_rag.index import MultimodalIndex


def png(path: Path, colour: tuple[int, int, int]) -> Path:
    """A one-colour PNG, last modified a minute ago (a fresher mtime is not trusted)."""
    Image.new("RGB", (64, 48), colour).save(path, "PNG")
    past_ns = time.time_ns() - 60_000_000_000
    os.utime(path, ns=(past_ns, past_ns))
    return path


# -- item 8: non-UTF-8 file names ----------------------------------------------------------------


def latin1_and_lookalike(folder: Path) -> tuple[bytes, bytes]:
    r"""``caf\xe9.png`` (one Latin-1 byte) beside a file literally named ``caf\\xe9.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    latin1 = os.fsencode(folder) + b"/caf\xe9.png"
    lookalike = os.fsencode(folder) + b"/caf\\xe9.png"
    png(Path(os.fsdecode(latin1)), (200, 30, 30))
    png(Path(os.fsdecode(lookalike)), (30, 30, 200))
    return latin1, lookalike


def test_a_latin1_name_and_its_escaped_lookalike_stay_two_files(
    tmp_path: Path, embedder: Qwen3VLEmbedder, reranker: Qwen3VLReranker
) -> None:
    latin1, lookalike = latin1_and_lookalike(tmp_path / "corpus")
    with MultimodalIndex(tmp_path / "index", embedder, reranker, workers=1) as index:
        first = index.index([tmp_path / "corpus"])
        assert first.counts()["indexed"] == 2
        status = index.status()
        assert (status.sources, status.items, status.vectors) == (2, 2, 2)
        # a second run finds both unchanged: nothing embedded, nothing deleted
        second = index.index([tmp_path / "corpus"])
        assert second.counts()["unchanged"] == 2
        assert (second.embedded, second.deleted) == (0, 0)
        assert index.status().vectors == 2
        # each result reopens its own file: both rerank and get a thumbnail
        results = index.search("a colour", k=5, top_n=5)
        assert len(results) == 2
        for result in results:
            assert result.rerank_score is not None, result.metadata
            assert result.thumbnail is not None and result.thumbnail.is_file()
        opened = {os.fsencode(index_source_path(r.source)) for r in results}
        assert opened == {latin1, lookalike}
        # both exist: prune forgets neither
        assert index.prune().sources == []
        os.unlink(latin1)
        pruned = index.prune()
        assert len(pruned.sources) == 1 and pruned.vectors == 1
        assert index.status().vectors == 1
        (left,) = index.search("a colour", k=5, top_n=5, rerank=False)
        assert os.fsencode(index_source_path(left.source)) == lookalike


def index_source_path(source: str) -> Path:
    from qwen3_vl_rag.index.paths import key_path

    return key_path(source)
