"""The on-disk multimodal index: counts, idempotence, changes, crashes, locks, search, damage.

Every test runs the tiny random-weight checkpoints on a few small generated files. Numbers are
exact: items per file, vectors computed per run, vectors in the store, ids removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from qwen3_vl_rag import MultimodalInput, Qwen3VLEmbedder, Qwen3VLReranker
from qwen3_vl_rag.checked_files import file_sha256
from qwen3_vl_rag.errors import (
    ConfigurationError,
    IndexCorruptedError,
    IndexLockedError,
    IndexMismatchError,
)
from qwen3_vl_rag.index import IndexReport, MultimodalIndex, PruneReport
from qwen3_vl_rag.index._ids import item_id
from qwen3_vl_rag.index._store import check_vectors, clean_metadata
from tests.conftest import write_mp4

HEX32 = re.compile(r"[0-9a-f]{32}")
CORRUPT_PNG = b"\x89PNG\r\n\x1a\n" + bytes(40)
PAGE_TEXT = (
    "a lighthouse on a rocky coast",
    "a bar chart of harbour traffic",
    "tide tables for the winter",
)
WEDGED = (
    "Error executing plan: Error sending backfill request to compactor: "
    "Failed to apply logs to the hnsw segment writer"
)
WRITER = Path(__file__).with_name("_index_writer.py")
TOL = 1e-4

# -- generated files -------------------------------------------------------------------------------


def png(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> Path:
    """A one-colour PNG, last modified a minute ago (a fresher mtime is not trusted)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, "PNG")
    past_ns = time.time_ns() - 60_000_000_000
    os.utime(path, ns=(past_ns, past_ns))
    return path


def colour(i: int) -> tuple[int, int, int]:
    return ((37 * i) % 256, (101 + 53 * i) % 256, (211 + 17 * i) % 256)


def png_folder(folder: Path, count: int) -> list[Path]:
    return [png(folder / f"img{i:02d}.png", colour(i)) for i in range(count)]


def three_page_pdf(path: Path) -> Path:
    """Three small pages, each with a line of text; page 2 also has a filled coloured box."""
    import pymupdf

    document = pymupdf.open()
    for number, text in enumerate(PAGE_TEXT, start=1):
        page = document.new_page(width=300, height=400)
        page.insert_text((30, 60), f"Page {number}: {text}", fontsize=12)
        if number == 2:
            page.draw_rect(
                pymupdf.Rect(60, 120, 220, 320), color=(0.9, 0.1, 0.1), fill=(0.9, 0.1, 0.1)
            )
    document.save(path)
    document.close()
    return path


def bump_mtime(path: Path, seconds: int = 5) -> int:
    """Move the file's mtime forward (a rewrite within one clock tick could keep the old one)."""
    info = path.stat()
    mtime_ns = info.st_mtime_ns + seconds * 1_000_000_000
    os.utime(path, ns=(info.st_atime_ns, mtime_ns))
    return mtime_ns


def content_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def image_id(index: MultimodalIndex, path: Path) -> str:
    return item_id(index.signature_hash, file_sha256(path), "image")


def statuses(report: IndexReport) -> dict[str, tuple[str, int]]:
    return {Path(f.path).name: (f.status, f.items) for f in report.files}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def brute_force(index: MultimodalIndex, query: MultimodalInput) -> list[tuple[str, float]]:
    """Every current item with its cosine similarity to the query, best first."""
    vector = index.require_embedder().embed_queries([query], dim=index.dimension)[0]
    scored = [(row.id, cosine(vector, row.vector)) for row in index.manifest.current_items()]
    return sorted(scored, key=lambda pair: -pair[1])


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (*sys.path, env.get("PYTHONPATH", "")) if p)
    return env


LOCK_PROBE = """
import sys
from qwen3_vl_rag.errors import IndexLockedError
from qwen3_vl_rag.index import MultimodalIndex
try:
    index = MultimodalIndex(sys.argv[1], mode=sys.argv[2])
except IndexLockedError as err:
    print(f"IndexLockedError: {err}")
    sys.exit(3)
print("opened", index.status().items, index.status().vectors)
if len(sys.argv) > 3:
    print("pruned", index.prune())
index.close()
"""


def probe(
    directory: Path, mode: str, *extra: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Open the index in another process; exit code 3 means IndexLockedError."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", LOCK_PROBE, str(directory), mode, *extra],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
        check=False,
    )
    return done, time.monotonic() - started


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture
def embed_calls(embedder: Qwen3VLEmbedder) -> Iterator[list[int]]:
    """The number of items of every ``embed_documents`` call made through the shared embedder."""
    calls: list[int] = []
    original = embedder.embed_documents

    def counting(items: Sequence[Any], **kwargs: Any) -> np.ndarray:
        calls.append(len(items))
        return original(items, **kwargs)

    embedder.embed_documents = counting  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        del embedder.embed_documents  # the class's method again


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files whose bytes the indexer hashed (from the handle it opened them with, once)."""
    from qwen3_vl_rag.checked_files import OpenedFile

    calls: list[str] = []
    original = OpenedFile.sha256

    def counting(self: OpenedFile) -> str:
        calls.append(self.path.name)
        return original(self)

    monkeypatch.setattr(OpenedFile, "sha256", counting)
    return calls


@dataclass
class Built:
    index: MultimodalIndex
    corpus: Path
    report: IndexReport


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory, embedder: Qwen3VLEmbedder, reranker: Qwen3VLReranker
) -> Iterator[Built]:
    """A PDF, two PNGs, a corrupt PNG and a video, indexed once for the read-only tests."""
    corpus = tmp_path_factory.mktemp("corpus")
    three_page_pdf(corpus / "report.pdf")
    png(corpus / "red.png", (220, 20, 20))
    png(corpus / "blue.png", (20, 20, 220))
    (corpus / "broken.png").write_bytes(CORRUPT_PNG)
    write_mp4(corpus / "clip.mp4")
    index = MultimodalIndex(tmp_path_factory.mktemp("index"), embedder, reranker, workers=1)
    report = index.index([corpus])
    yield Built(index, corpus, report)
    index.close()


# -- 1. a folder of every kind ---------------------------------------------------------------------


def test_indexing_a_folder_counts_every_file_and_item(
    built: Built, tiny_embedding_path: Path
) -> None:
    report, index = built.report, built.index
    assert report.counts() == {"indexed": 4, "unchanged": 0, "skipped": 0, "failed": 1, "items": 6}
    # files come in name order, each with its items
    assert list(statuses(report).items()) == [
        ("blue.png", ("indexed", 1)),
        ("broken.png", ("failed", 0)),
        ("clip.mp4", ("indexed", 1)),
        ("red.png", ("indexed", 1)),
        ("report.pdf", ("indexed", 3)),
    ]
    (broken,) = [f for f in report.files if f.status == "failed"]
    assert broken.error == "ImageDecodeError"
    assert broken.stage == "open"
    assert broken.reason
    assert (report.embedded, report.reused, report.deleted) == (6, 0, 0)
    assert not report.complete
    assert report.to_dict()["counts"] == report.counts()

    status = index.status()
    assert (status.sources, status.indexed, status.failed, status.items) == (5, 4, 1, 6)
    assert status.vectors == status.items == 6
    assert status.model == str(tiny_embedding_path)
    assert status.dimension == 64
    assert status.bytes_on_disk > 0

    source = index.manifest.source(str(built.corpus / "broken.png"))
    assert source is not None
    assert source.status == "failed"
    assert source.error is not None
    assert source.error.startswith("ImageDecodeError: ")
    kinds = sorted(row.kind for row in index.manifest.current_items())
    assert kinds == ["image", "image", "page", "page", "page", "video"]
    ids = index.manifest.current_ids()
    assert len(ids) == 6
    assert all(HEX32.fullmatch(i) for i in ids)
    assert index.store.all_ids() == ids


def test_progress_shows_files_with_outcomes_and_items_by_kind(
    tmp_path: Path, embedder: Qwen3VLEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    three_page_pdf(corpus / "a.pdf")
    png(corpus / "b.png", (1, 2, 3))
    (corpus / "c.png").write_bytes(CORRUPT_PNG)
    with MultimodalIndex(tmp_path / "index", embedder, workers=1) as index:
        index.index([corpus], show_progress=True)
        shown = capsys.readouterr().err
        files = [line for line in re.split(r"[\r\n]+", shown) if line.startswith("files")]
        items = [line for line in re.split(r"[\r\n]+", shown) if line.startswith("items")]
        # tqdm writes a slow rate inverted (s/file): a loaded machine must not fail the test
        assert re.fullmatch(r"files: 3file \[.*(file/s|s/file), indexed=2, failed=1\]", files[-1])
        assert re.fullmatch(r"items: 4item \[.*(item/s|s/item), pages=3, images=1\]", items[-1])

        index.index([corpus], show_progress=False)  # quiet: nothing at all
        assert capsys.readouterr().err == ""


# -- 2. idempotence --------------------------------------------------------------------------------


def test_reindexing_unchanged_files_embeds_nothing(
    tmp_path: Path, embedder: Qwen3VLEmbedder, embed_calls: list[int], hashed: list[str]
) -> None:
    files = png_folder(tmp_path / "corpus", 3)
    with MultimodalIndex(tmp_path / "index", embedder, workers=1) as index:
        first = index.index([tmp_path / "corpus"])
        assert (first.embedded, first.reused) == (3, 0)
        assert sum(embed_calls) == 3
        assert sorted(hashed) == ["img00.png", "img01.png", "img02.png"]
        ids = index.store.all_ids()
        embed_calls.clear()
        hashed.clear()

        second = index.index([tmp_path / "corpus"])
        assert (second.embedded, second.reused, second.deleted) == (0, 0, 0)
        assert embed_calls == []
        assert hashed == []  # size and mtime matched: no file was even read
        assert [(f.status, f.items) for f in second.files] == [("unchanged", 1)] * 3
        assert second.counts() == {
            "indexed": 0,
            "unchanged": 3,
            "skipped": 0,
            "failed": 0,
            "items": 0,
        }
        assert index.store.count() == 3
        assert index.store.all_ids() == ids

        # a new mtime, the same bytes: hashed once, not embedded, and the new mtime recorded
        touched = files[1]
        mtime_ns = bump_mtime(touched)
        third = index.index([tmp_path / "corpus"])
        assert (third.embedded, third.reused) == (0, 0)
        assert embed_calls == []
        assert hashed == ["img01.png"]
        assert [f.status for f in third.files] == ["unchanged"] * 3
        source = index.manifest.source(str(touched))
        assert source is not None
        assert source.mtime_ns == mtime_ns
        assert index.store.all_ids() == ids
        hashed.clear()

        fourth = index.index([tmp_path / "corpus"])
        assert hashed == []
        assert [f.status for f in fourth.files] == ["unchanged"] * 3


def test_a_rewrite_within_the_same_mtime_tick_is_seen(
    tmp_path: Path, embedder: Qwen3VLEmbedder, hashed: list[str]
) -> None:
    """A file indexed right after it was written is hashed again next time (racy mtime)."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    path = corpus / "shot.bmp"
    Image.new("RGB", (32, 24), (200, 10, 10)).save(path, "BMP")
    with MultimodalIndex(tmp_path / "index", embedder, workers=1) as index:
        index.index([corpus])
        first = index.store.all_ids()
        info = path.stat()
        # the same size and the same mtime, other pixels: what a quick rewrite leaves
        Image.new("RGB", (32, 24), (10, 200, 10)).save(path, "BMP")
        os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
        assert path.stat().st_size == info.st_size
        hashed.clear()

        report = index.index([corpus])
        assert hashed == ["shot.bmp"]
        assert statuses(report) == {"shot.bmp": ("indexed", 1)}
        assert report.deleted == 1
        assert index.store.all_ids() != first
        assert len(index.store.all_ids()) == 1


# -- 3. changed and deleted files ------------------------------------------------------------------


def test_a_changed_file_is_embedded_again_and_its_old_vector_removed(
    tmp_path: Path, embedder: Qwen3VLEmbedder, embed_calls: list[int]
) -> None:
    files = png_folder(tmp_path / "corpus", 3)
    with MultimodalIndex(tmp_path / "index", embedder, workers=1) as index:
        index.index([tmp_path / "corpus"])
        changed = files[2]
        old_id = image_id(index, changed)
        assert index.store.existing([old_id]) == {old_id}
        embed_calls.clear()

        png(changed, (1, 2, 3))
        bump_mtime(changed)
        new_id = image_id(index, changed)
        assert new_id != old_id
        report = index.index([tmp_path / "corpus"])
        assert (report.embedded, report.reused, report.deleted) == (1, 0, 1)
        assert embed_calls == [1]
        assert statuses(report) == {
            "img00.png": ("unchanged", 1),
            "img01.png": ("unchanged", 1),
            "img02.png": ("indexed", 1),
        }
        assert index.store.existing([old_id]) == set()
        assert index.store.existing([new_id]) == {new_id}
        assert index.store.count() == 3
        assert index.manifest.current_ids() == index.store.all_ids()
        source = index.manifest.source(str(changed))
        assert source is not None
        assert source.content_hash == file_sha256(changed)
        assert index.manifest.vectors([old_id]) == {}  # forgotten by the manifest too


def test_a_deleted_file_keeps_its_vector_until_prune(
    tmp_path: Path, embedder: Qwen3VLEmbedder, embed_calls: list[int]
) -> None:
    files = png_folder(tmp_path / "corpus", 3)
    with MultimodalIndex(tmp_path / "index", embedder, workers=1) as index:
        index.index([tmp_path / "corpus"])
        gone = files[0]
        gone_id = image_id(index, gone)
        gone.unlink()
        embed_calls.clear()

        report = index.index([tmp_path / "corpus"])
        assert [f.status for f in report.files] == ["unchanged", "unchanged"]
        assert (report.embedded, report.deleted) == (0, 0)
        assert embed_calls == []
        assert index.store.count() == 3
        assert index.status().items == 3
        hits = index.search(
            query_text="colours", rerank=False, top_n=5, filters={"source": str(gone)}
        )
        assert [hit.id for hit in hits] == [gone_id]
        assert hits[0].thumbnail is None  # the file is gone: no preview, but still a result

        pruned = index.prune()
        assert pruned == PruneReport(sources=[str(gone)], vectors=1)
        assert index.store.count() == 2
        assert index.store.existing([gone_id]) == set()
        status = index.status()
        assert (status.sources, status.indexed, status.items, status.vectors) == (2, 2, 2, 2)
        assert index.prune() == PruneReport(sources=[], vectors=0)


# -- 4. a file that stops loading keeps its vectors ------------------------------------------------


def test_a_file_that_fails_on_a_rerun_keeps_its_vector(
    tmp_path: Path, embedder: Qwen3VLEmbedder, embed_calls: list[int]
) -> None:
    (good,) = png_folder(tmp_path / "corpus", 1)
    original = good.read_bytes()
    with MultimodalIndex(tmp_path / "index", embedder, workers=1) as index:
        index.index([tmp_path / "corpus"])
        good_id = image_id(index, good)
        embed_calls.clear()

        good.write_bytes(CORRUPT_PNG)
        bump_mtime(good)
        report = index.index([tmp_path / "corpus"])
        (outcome,) = report.files
        assert (outcome.status, outcome.error, outcome.items) == ("failed", "ImageDecodeError", 0)
        assert (report.embedded, report.reused, report.deleted) == (0, 0, 0)
        assert embed_calls == []
        assert index.store.count() == 1
        assert index.store.existing([good_id]) == {good_id}
        source = index.manifest.source(str(good))
        assert source is not None
        assert source.status == "failed"
        assert source.error is not None
        assert source.error.startswith("ImageDecodeError")
        status = index.status()
        assert (status.indexed, status.failed, status.items, status.vectors) == (0, 1, 1, 1)

        # the old bytes back: indexed again from the recorded vector, nothing embedded
        good.write_bytes(original)
        bump_mtime(good, 10)
        restored = index.index([tmp_path / "corpus"])
        assert statuses(restored) == {"img00.png": ("indexed", 1)}
        assert (restored.embedded, restored.reused, restored.deleted) == (0, 1, 0)
        assert embed_calls == []
        assert index.store.all_ids() == {good_id}
        status = index.status()
        assert (status.indexed, status.failed, status.items, status.vectors) == (1, 0, 1, 1)


# -- 5. the same bytes at two paths ----------------------------------------------------------------


def test_the_same_bytes_at_two_paths_share_one_vector(
    tmp_path: Path, embedder: Qwen3VLEmbedder, embed_calls: list[int]
) -> None:
    corpus = tmp_path / "corpus"
    first = png(corpus / "a.png", (10, 200, 30))
    with MultimodalIndex(tmp_path / "index", embedder, workers=1) as index:
        index.index([corpus])
        shared = image_id(index, first)
        second = corpus / "b.png"
        second.write_bytes(first.read_bytes())
        embed_calls.clear()

        report = index.index([corpus])
        assert statuses(report) == {"a.png": ("unchanged", 1), "b.png": ("indexed", 1)}
        assert (report.embedded, report.reused) == (0, 1)
        assert embed_calls == []
        assert index.store.all_ids() == {shared}
        status = index.status()
        assert (status.sources, status.indexed, status.items, status.vectors) == (2, 2, 1, 1)

        first.unlink()
        assert index.prune() == PruneReport(sources=[str(first)], vectors=0)
        assert index.store.all_ids() == {shared}
        assert index.status().items == 1

        second.unlink()
        assert index.prune() == PruneReport(sources=[str(second)], vectors=1)
        assert index.store.count() == 0
        assert index.status().items == 0


def test_the_same_bytes_at_two_paths_in_one_run_share_one_vector(
    tmp_path: Path, embedder: Qwen3VLEmbedder, embed_calls: list[int]
) -> None:
    corpus = tmp_path / "corpus"
    first = png(corpus / "a.png", (10, 200, 30))
    (corpus / "b.png").write_bytes(first.read_bytes())
    with MultimodalIndex(tmp_path / "index", embedder, workers=1) as index:
        report = index.index([corpus])
        assert statuses(report) == {"a.png": ("indexed", 1), "b.png": ("indexed", 1)}
        assert (report.embedded, report.reused) == (1, 1)
        assert embed_calls == [1]  # met in one batch: embedded once, stored once
        assert index.store.all_ids() == {image_id(index, first)}
        assert index.status().items == 1


def test_copies_met_across_batches_are_embedded_once(
    tmp_path: Path, embedder: Qwen3VLEmbedder, embed_calls: list[int]
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    original = three_page_pdf(corpus / "a.pdf")
    (corpus / "b.pdf").write_bytes(original.read_bytes())
    # batches of 4: a's three pages and b's first in one batch, b's last two in the next
    with MultimodalIndex(tmp_path / "index", embedder, workers=1, batch_items=4) as index:
        report = index.index([corpus])
        assert statuses(report) == {"a.pdf": ("indexed", 3), "b.pdf": ("indexed", 3)}
        assert embed_calls == [3]
        assert (report.embedded, report.reused) == (3, 3)
        assert index.store.count() == 3
        assert index.status().items == 3


# -- 6. other settings -----------------------------------------------------------------------------


def test_other_embedding_settings_are_refused(tmp_path: Path, embedder: Qwen3VLEmbedder) -> None:
    png_folder(tmp_path / "corpus", 1)
    with MultimodalIndex(tmp_path / "index", embedder, workers=1) as index:
        index.index([tmp_path / "corpus"])

    with pytest.raises(IndexMismatchError) as excinfo:
        MultimodalIndex(tmp_path / "index", embedder, dim=32)
    message = str(excinfo.value)
    assert "dimension: index 64, given 32" in message
    assert "use the same model and settings, or build a new index in another directory" in message

    other = Qwen3VLEmbedder(embedder.backbone, document_instruction="Describe the picture.")
    with pytest.raises(
        IndexMismatchError, match=r"\(instruction: index .*, given 'Describe the picture\.'\)"
    ):
        MultimodalIndex(tmp_path / "index", other)

    # a refused open lets go of the lock; the same settings (or none) open it again
    with MultimodalIndex(tmp_path / "index", embedder, dim=64) as index:
        assert index.status().items == 1
    with MultimodalIndex(tmp_path / "index", mode="read") as index:
        assert (index.dimension, index.status().vectors) == (64, 1)
        with pytest.raises(ConfigurationError, match="read-only"):
            index.prune()
        with pytest.raises(ConfigurationError, match="needs an embedder"):
            index.search("anything")
    with pytest.raises(ConfigurationError, match="is not an index"):
        MultimodalIndex(tmp_path / "elsewhere", mode="read")


# -- 7. one writer ---------------------------------------------------------------------------------


def test_one_writer_at_a_time_across_processes(tmp_path: Path, embedder: Qwen3VLEmbedder) -> None:
    png_folder(tmp_path / "corpus", 1)
    directory = tmp_path / "index"
    index = MultimodalIndex(directory, embedder, workers=1)
    try:
        index.index([tmp_path / "corpus"])
        for mode, words in (("write", "in use"), ("read", "being written")):
            done, seconds = probe(directory, mode)
            assert done.returncode == 3, done.stderr
            assert done.stdout.startswith(
                f"IndexLockedError: the index {directory} is {words} by another process "
                f"(pid {os.getpid()})."
            )
            assert "One process may write an index at a time" in done.stdout
            assert seconds < 30  # refused at once, not after waiting for the lock
        # in this process too: a second descriptor on the lock file conflicts the same way
        with pytest.raises(IndexLockedError, match="in use by another process"):
            MultimodalIndex(directory, embedder)
    finally:
        index.close()

    done, _ = probe(directory, "write")
    assert (done.returncode, done.stdout.split()) == (0, ["opened", "1", "1"]), done.stderr
    done, _ = probe(directory, "read")
    assert (done.returncode, done.stdout.split()) == (0, ["opened", "1", "1"]), done.stderr
    # readers share the lock, and keep writers out while they read
    with MultimodalIndex(directory, mode="read") as reader:
        done, _ = probe(directory, "read")
        assert done.returncode == 0, done.stderr
        done, _ = probe(directory, "write")
        assert done.returncode == 3
        assert reader.status().items == 1


def test_a_refused_writer_names_no_process_that_does_not_hold_the_lock(
    tmp_path: Path, embedder: Qwen3VLEmbedder
) -> None:
    png_folder(tmp_path / "corpus", 1)
    directory = tmp_path / "index"
    with MultimodalIndex(directory, embedder, workers=1) as index:
        index.index([tmp_path / "corpus"])
    done, _ = probe(directory, "write")  # another process writes, then exits
    assert done.returncode == 0, done.stderr
    assert (directory / ".lock").read_text() == ""  # a writer that exits leaves no pid behind
    with MultimodalIndex(directory, mode="read"), pytest.raises(IndexLockedError) as excinfo:
        MultimodalIndex(directory, embedder)
    assert "pid" not in str(excinfo.value)


KILLED_WRITER = """
import os, signal, sys
from qwen3_vl_rag.index import MultimodalIndex
index = MultimodalIndex(sys.argv[1])
print(os.getpid(), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_refused_writer_names_no_killed_writer(tmp_path: Path, embedder: Qwen3VLEmbedder) -> None:
    png_folder(tmp_path / "corpus", 1)
    directory = tmp_path / "index"
    with MultimodalIndex(directory, embedder, workers=1) as index:
        index.index([tmp_path / "corpus"])
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(directory)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    dead_pid = int(killed.stdout)
    # the kernel let go of the lock: a reader gets it at once
    with MultimodalIndex(directory, mode="read"), pytest.raises(IndexLockedError) as excinfo:
        MultimodalIndex(directory, embedder)
    assert f"pid {dead_pid}" not in str(excinfo.value)


# -- 8. a kill part-way through --------------------------------------------------------------------


def _manifest_rows(path: Path) -> tuple[set[str], list[tuple[str, int]]]:
    """(sources indexed, (id, current) of every item row) of a manifest on disk."""
    db = sqlite3.connect(path, timeout=5)
    try:
        done = {row[0] for row in db.execute("SELECT path FROM sources WHERE status = 'indexed'")}
        items = db.execute("SELECT id, current FROM items").fetchall()
    finally:
        db.close()
    return done, [(str(i), int(c)) for i, c in items]


@pytest.mark.timeout(180)
def test_a_killed_indexer_loses_nothing_and_duplicates_nothing(
    tmp_path: Path, embedder: Qwen3VLEmbedder, tiny_embedding_path: Path, embed_calls: list[int]
) -> None:
    total = 40
    corpus = tmp_path / "corpus"
    png_folder(corpus, total)
    directory = tmp_path / "index"
    manifest = directory / "manifest.sqlite3"
    log = (tmp_path / "writer.log").open("w")
    writer = subprocess.Popen(
        [
            sys.executable,
            str(WRITER),
            str(directory),
            str(corpus),
            str(tiny_embedding_path),
            "4",
            "0.5",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=subprocess_env(),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 150
        while True:
            assert writer.poll() is None, (
                "the writer ended before it was killed: " + (tmp_path / "writer.log").read_text()
            )
            assert time.monotonic() < deadline, "no batch was committed in time"
            if manifest.is_file():
                try:
                    _, rows = _manifest_rows(manifest)
                except sqlite3.OperationalError:  # the schema is not there yet
                    rows = []
                if len(rows) >= 4:  # the first batch is acknowledged: kill the next one
                    break
            time.sleep(0.01)
        os.kill(writer.pid, signal.SIGKILL)
        assert writer.wait(timeout=30) == -signal.SIGKILL
    finally:
        if writer.poll() is None:
            os.kill(writer.pid, signal.SIGKILL)
            writer.wait(timeout=30)
        log.close()

    done, rows = _manifest_rows(manifest)
    pending = {item for item, current in rows if not current}
    # killed after its first acknowledged batch, well before the end
    assert 4 <= len(rows) < total
    assert len(done) < total
    assert len(pending) == len(rows) - len(done)  # one item per file

    with MultimodalIndex(directory, embedder, workers=1) as index:
        report = index.index([corpus])
        counts = report.counts()
        remaining = total - len(done)
        assert counts == {
            "indexed": remaining,
            "unchanged": len(done),
            "skipped": 0,
            "failed": 0,
            "items": remaining,
        }
        # what the killed run recorded is reused, the rest embedded; nothing twice
        assert report.reused == len(pending)
        assert report.embedded == remaining - len(pending)
        assert report.embedded + report.reused == remaining
        assert sum(embed_calls) == report.embedded
        status = index.status()
        assert (status.sources, status.indexed, status.items, status.vectors) == (40, 40, 40, 40)
        ids = index.store.all_ids()
        assert ids == index.manifest.current_ids()
        assert len(ids) == total
        _, rows = _manifest_rows(manifest)
        assert len(rows) == len({item for item, _ in rows}) == total
        assert all(current for _, current in rows)
        assert ids == {image_id(index, path) for path in sorted(corpus.iterdir())}


# -- 9. more items than one Chroma batch -----------------------------------------------------------


def test_writes_and_rebuilds_in_chromas_batch_size(
    tmp_path: Path, embedder: Qwen3VLEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chromadb.api.client import Client
    from chromadb.api.models.Collection import Collection

    sizes: list[int] = []
    upsert = Collection.upsert

    def recording(self: Collection, *args: Any, **kwargs: Any) -> Any:
        sizes.append(len(kwargs["ids"]))
        return upsert(self, *args, **kwargs)

    monkeypatch.setattr(Collection, "upsert", recording)
    png_folder(tmp_path / "corpus", 8)
    with MultimodalIndex(tmp_path / "index", embedder, workers=1) as index:
        index.store.max_batch = 3
        report = index.index([tmp_path / "corpus"])
        assert report.embedded == 8
        assert sizes == [3, 3, 2]
        assert index.store.count() == 8
        ids = index.store.all_ids()  # read back in pages of 3
        assert ids == index.manifest.current_ids()
        assert len(ids) == 8
        assert index.store.existing(sorted(ids)) == ids

        sizes.clear()
        monkeypatch.setattr(Client, "get_max_batch_size", lambda self: 3)
        assert index.rebuild() == 8
        assert index.store.max_batch == 3
        assert sizes == [3, 3, 2]
        assert index.store.count() == 8
        assert index.store.all_ids() == ids
        assert len(index.search("colours", rerank=False, top_n=8)) == 8


# -- 10. search ------------------------------------------------------------------------------------


def check_vector_ranking(
    index: MultimodalIndex, query: MultimodalInput, results: Sequence[Any], top_n: int
) -> None:
    expected = brute_force(index, query)[:top_n]
    assert [r.id for r in results] == [item for item, _ in expected]
    assert [r.rank for r in results] == list(range(1, top_n + 1))
    for result, (_, similarity) in zip(results, expected, strict=True):
        assert result.rerank_score is None
        assert result.score == result.vector_score
        assert result.vector_score == pytest.approx(similarity, abs=TOL)
    scores = [r.vector_score for r in results]
    assert scores == sorted(scores, reverse=True)


def test_text_search_without_rerank_ranks_by_cosine_similarity(built: Built) -> None:
    results = built.index.search("a lighthouse", rerank=False, top_n=4)
    check_vector_ranking(built.index, MultimodalInput(text="a lighthouse"), results, 4)


def test_image_search_without_rerank_ranks_by_cosine_similarity(built: Built) -> None:
    query = built.corpus / "red.png"
    results = built.index.search(query_image=query, rerank=False, top_n=3)
    check_vector_ranking(built.index, MultimodalInput(images=(query,)), results, 3)
    with Image.open(query) as image:
        again = built.index.search(query_image=image, rerank=False, top_n=3)
    assert [r.id for r in again] == [r.id for r in results]
    assert [r.vector_score for r in again] == pytest.approx([r.vector_score for r in results])


def test_text_and_image_search_without_rerank(built: Built) -> None:
    image = built.corpus / "blue.png"
    results = built.index.search("blue", image, rerank=False, top_n=6)
    check_vector_ranking(built.index, MultimodalInput(text="blue", images=(image,)), results, 6)


def test_reranked_search_orders_by_reranker_score(built: Built) -> None:
    index = built.index
    everything = index.search("a bar chart", top_n=6)
    assert len(everything) == 6
    scores = [r.rerank_score for r in everything]
    assert all(s is not None and 0.0 <= s <= 1.0 for s in scores)
    assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]
    assert [r.score for r in everything] == scores
    assert [r.rank for r in everything] == [1, 2, 3, 4, 5, 6]
    assert all("rerank_skipped" not in r.metadata for r in everything)
    # the recall stage's scores are unchanged by reranking
    plain = {r.id: r.vector_score for r in index.search("a bar chart", rerank=False, top_n=6)}
    assert {r.id: r.vector_score for r in everything} == pytest.approx(plain)

    top = index.search("a bar chart", top_n=2)
    assert [r.id for r in top] == [r.id for r in everything[:2]]
    assert [r.rerank_score for r in top] == pytest.approx(scores[:2])

    # every result has a JPEG thumbnail named by its id
    folder = index.directory / "thumbnails"
    for result in everything:
        assert HEX32.fullmatch(result.id)
        assert result.thumbnail == folder / f"{result.id}.jpg"
        assert result.thumbnail.read_bytes()[:3] == b"\xff\xd8\xff"
        with Image.open(result.thumbnail) as thumbnail:
            assert thumbnail.format == "JPEG"
            assert max(thumbnail.size) <= 320
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{r.id}.jpg" for r in everything)
    kinds = sorted(r.kind for r in everything)
    assert kinds == ["image", "image", "page", "page", "page", "video"]


def test_search_filters_and_page_results(built: Built) -> None:
    pdf = str(built.corpus / "report.pdf")
    pages = built.index.search("tides", rerank=False, top_n=10, filters={"kind": "page"})
    assert len(pages) == 3
    assert {r.kind for r in pages} == {"page"}
    by_locator = {r.locator: r for r in pages}
    assert sorted(by_locator) == ["page 1", "page 2", "page 3"]
    for number, text in enumerate(PAGE_TEXT, start=1):
        result = by_locator[f"page {number}"]
        assert result.source == pdf
        assert result.metadata["page"] == number - 1
        assert result.text is not None
        assert f"Page {number}: {text}" in result.text
    images = built.index.search("tides", rerank=False, top_n=10, filters={"kind": "image"})
    assert sorted(Path(r.source).name for r in images) == ["blue.png", "red.png"]
    assert all(r.locator == "" and r.text is None for r in images)
    (video,) = built.index.search("tides", rerank=False, filters={"kind": "video"})
    assert (Path(video.source).name, video.locator) == ("clip.mp4", "")


def test_search_refuses_what_it_cannot_do(tmp_path: Path, embedder: Qwen3VLEmbedder) -> None:
    png_folder(tmp_path / "corpus", 2)
    with MultimodalIndex(tmp_path / "index", embedder, workers=1) as index:
        index.index([tmp_path / "corpus"])
        with pytest.raises(ConfigurationError, match="reranking needs a reranker"):
            index.search("colours", rerank=True)
        assert len(index.search("colours", rerank=False)) == 2
        for text in (None, "", "   "):
            with pytest.raises(ConfigurationError, match="give a query text, a query image"):
                index.search(text)
        with pytest.raises(ConfigurationError, match="k and top_n must be at least 1"):
            index.search("colours", rerank=False, top_n=0)


# -- 11. a damaged store ---------------------------------------------------------------------------


def test_a_damaged_store_is_reported_and_rebuilt_from_the_manifest(
    tmp_path: Path, embedder: Qwen3VLEmbedder
) -> None:
    png_folder(tmp_path / "corpus", 3)
    directory = tmp_path / "index"
    with MultimodalIndex(directory, embedder, workers=1) as index:
        index.index([tmp_path / "corpus"])
        before = {r.id: r.vector_score for r in index.search("colours", rerank=False)}
    assert len(before) == 3
    store = directory / "chroma" / "chroma.sqlite3"
    store.write_bytes(np.random.RandomState(7).bytes(store.stat().st_size))

    png_folder(tmp_path / "other-corpus", 2)
    other = MultimodalIndex(tmp_path / "other", embedder, workers=1)
    other.index([tmp_path / "other-corpus"])
    with MultimodalIndex(directory, embedder, workers=1) as index:
        with pytest.raises(IndexCorruptedError, match="rebuild") as excinfo:
            index.search("colours", rerank=False)
        assert "MultimodalIndex.rebuild()" in str(excinfo.value)
        with pytest.raises(IndexCorruptedError):
            index.status()
        assert index.rebuild() == 3
        # another index open in the same process keeps chromadb's shared system for its path:
        # a second system on one path serves stale searches (measured with chromadb 1.5)
        import chromadb
        from chromadb.config import Settings

        client = chromadb.PersistentClient(
            path=str(tmp_path / "other" / "chroma"),
            settings=Settings(anonymized_telemetry=False, allow_reset=True),
        )
        vector = next(iter(other.manifest.current_items())).vector
        client.get_collection("items").upsert(ids=["extra"], embeddings=vector[None, :])
        assert len(other.search("colours", k=5, top_n=5, rerank=False)) == 3
        other.close()
        status = index.status()
        assert (status.items, status.vectors) == (3, 3)
        after = index.search("colours", rerank=False)
        assert [r.id for r in after] == list(before)
        assert {r.id: r.vector_score for r in after} == pytest.approx(before)
    with MultimodalIndex(directory, embedder, workers=1) as index:
        assert index.store.all_ids() == index.manifest.current_ids()


def test_a_deleted_store_is_reported_and_rebuilt(tmp_path: Path, embedder: Qwen3VLEmbedder) -> None:
    png_folder(tmp_path / "corpus", 2)
    directory = tmp_path / "index"
    with MultimodalIndex(directory, embedder, workers=1) as index:
        index.index([tmp_path / "corpus"])
    shutil.rmtree(directory / "chroma")

    with (
        MultimodalIndex(directory, mode="read") as index,
        pytest.raises(IndexCorruptedError, match=r"is missing.*2 item"),
    ):
        index.status()
    assert not (directory / "chroma").exists()  # a reader creates nothing
    with MultimodalIndex(directory, embedder, workers=1) as index:
        with pytest.raises(IndexCorruptedError, match="rebuild"):
            index.search("colours", rerank=False)
        assert index.rebuild() == 2
        assert len(index.search("colours", rerank=False)) == 2


def test_a_wedged_store_is_reported_as_damaged(
    tmp_path: Path, embedder: Qwen3VLEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    png_folder(tmp_path / "corpus", 2)
    with MultimodalIndex(tmp_path / "index", embedder, workers=1) as index:
        index.index([tmp_path / "corpus"])
        collection = index.store._collection

        def wedged() -> int:
            raise Exception(WEDGED)  # what chromadb raises

        def broken() -> int:
            raise RuntimeError("boom")

        monkeypatch.setattr(collection, "count", wedged)
        with pytest.raises(IndexCorruptedError, match="Failed to apply logs") as excinfo:
            index.store.count()
        assert "rebuild" in str(excinfo.value)
        assert str(excinfo.value.__cause__) == WEDGED
        with pytest.raises(IndexCorruptedError):
            index.status()
        # other errors are not mistaken for damage
        monkeypatch.setattr(collection, "count", broken)
        with pytest.raises(RuntimeError, match="boom") as other:
            index.store.count()
        assert not isinstance(other.value, IndexCorruptedError)
        monkeypatch.undo()
        assert index.store.count() == 2


def test_reopening_sees_what_another_process_wrote(
    tmp_path: Path, embedder: Qwen3VLEmbedder
) -> None:
    files = png_folder(tmp_path / "corpus", 3)
    directory = tmp_path / "index"
    with MultimodalIndex(directory, embedder, workers=1) as index:
        index.index([tmp_path / "corpus"])
        assert len(index.search("colours", rerank=False)) == 3
    files[1].unlink()
    done, _ = probe(directory, "write", "prune")  # another process removes its vector
    assert done.returncode == 0, done.stderr
    assert "vectors=1" in done.stdout

    with MultimodalIndex(directory, embedder, workers=1) as index:
        assert index.store.count() == 2
        results = index.search("colours", rerank=False)
        assert sorted(Path(r.source).name for r in results) == ["img00.png", "img02.png"]


# -- 12. what goes into the store ------------------------------------------------------------------


def test_check_vectors_accepts_only_finite_nonzero_rows_of_the_index_dimension() -> None:
    good = np.arange(1, 9, dtype=np.float64).reshape(2, 4)
    checked = check_vectors(good, 4)
    assert checked.dtype == np.float32
    np.testing.assert_array_equal(checked, good.astype(np.float32))

    with pytest.raises(
        IndexMismatchError, match=r"shape \(2, 4\) cannot go into an index of dimension 3"
    ):
        check_vectors(good, 3)
    with pytest.raises(IndexMismatchError, match=r"shape \(4,\)"):
        check_vectors(good[0], 4)
    for value, row in ((np.nan, 1), (np.inf, 0), (-np.inf, 1)):
        bad = good.copy()
        bad[row, 2] = value
        with pytest.raises(ConfigurationError, match=rf"1 vector\(s\) .* \(row {row}\)") as excinfo:
            check_vectors(bad, 4)
        assert type(excinfo.value) is ConfigurationError
    zeros = np.zeros((3, 4))
    zeros[0] = 1.0
    with pytest.raises(
        ConfigurationError, match=r"2 vector\(s\) are not finite or are all zeros \(row 1\)"
    ):
        check_vectors(zeros, 4)


def test_clean_metadata_keeps_what_chroma_stores_faithfully() -> None:
    cleaned = clean_metadata(
        {
            "none": None,
            "nan": float("nan"),
            "inf": float("inf"),
            "flag": True,
            "off": False,
            "count": 3,
            "zero": 0,
            "ratio": 1.5,
            "name": "caf\u00e9 \ud800 end",
            "key \udcff": "x",
            "path": Path("a/b.png"),
        }
    )
    assert cleaned == {
        "flag": True,
        "off": False,
        "count": 3,
        "zero": 0,
        "ratio": 1.5,
        "name": "caf\u00e9 \\ud800 end",
        "key \\udcff": "x",
        "path": "a/b.png",
    }
    assert type(cleaned["flag"]) is bool
    assert type(cleaned["count"]) is int
    for key, value in cleaned.items():
        key.encode("utf-8")  # valid UTF-8 throughout
        if isinstance(value, str):
            value.encode("utf-8")
    assert json.dumps(cleaned)


def test_settings_not_given_on_reopen_are_the_indexs_own(
    tmp_path: Path, embedder: Qwen3VLEmbedder
) -> None:
    directory = tmp_path / "index"
    with MultimodalIndex(directory, embedder, segment_seconds=5, workers=1):
        pass
    with MultimodalIndex(directory, embedder, dim=embedder.dimension, workers=1) as index:
        assert index.signature["segment_seconds"] == 5
    with MultimodalIndex(directory, embedder, segment_seconds=5, workers=1) as index:
        assert index.dimension == embedder.dimension
    with pytest.raises(IndexMismatchError, match="segment_seconds: index 5, given 10"):
        MultimodalIndex(directory, embedder, segment_seconds=10, workers=1)
