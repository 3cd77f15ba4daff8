"""Search reopens only what was indexed: files swapped, linked out, or named by a tampered index.

Search reads source files again to rerank and to make thumbnails. Each test changes what an
indexed path holds after indexing (another image, a link out of the folder, a FIFO, a huge
image) or what the index says (a source outside the folder, a linked thumbnail), and checks that
the item is reported stale, keeps its vector score, and that nothing of it is read.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from qwen3_vl_rag import Qwen3VLEmbedder, Qwen3VLReranker
from qwen3_vl_rag.cli.gallery import write_gallery
from qwen3_vl_rag.cli.main import main
from qwen3_vl_rag.errors import ImageDecodeError
from qwen3_vl_rag.index import MultimodalIndex, SearchResult
from tests.bounded import Bounded, run_bounded
from tests.conftest import write_mp4
from tests.integration.test_cli import models
from tests.integration.test_index import png

RED = (220, 20, 20)
BLUE = (20, 20, 220)
GREEN = (20, 220, 20)
CHANGED = "file changed since indexing"


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    png(folder / "red.png", RED)
    png(folder / "blue.png", BLUE)
    return folder


@pytest.fixture
def index(
    tmp_path: Path, corpus: Path, embedder: Qwen3VLEmbedder, reranker: Qwen3VLReranker
) -> Iterator[MultimodalIndex]:
    with MultimodalIndex(tmp_path / "index", embedder, reranker, workers=1) as opened:
        report = opened.index([corpus])
        assert report.counts()["indexed"] == 2
        yield opened


def by_name(results: list[SearchResult]) -> dict[str, SearchResult]:
    return {Path(r.source).name: r for r in results}


def assert_fresh(result: SearchResult) -> None:
    assert result.stale is None
    assert result.rerank_score is not None
    assert result.thumbnail is not None and result.thumbnail.read_bytes()[:3] == b"\xff\xd8\xff"


def assert_stale(result: SearchResult, reason: str, vector_score: float) -> None:
    assert result.stale is not None and reason in result.stale
    assert result.rerank_score is None
    assert result.thumbnail is None
    assert result.score == result.vector_score == pytest.approx(vector_score, abs=1e-5)


def vector_scores(index: MultimodalIndex) -> dict[str, float]:
    """Each file's vector score for "red", taken before a change (no thumbnail is left made)."""
    scores = {Path(r.source).name: r.vector_score for r in index.search("red", rerank=False)}
    shutil.rmtree(index.directory / "thumbnails")
    return scores


# -- the file changed ------------------------------------------------------------------------------


def test_a_file_changed_since_indexing_is_stale_and_not_read(
    index: MultimodalIndex, corpus: Path
) -> None:
    before = vector_scores(index)
    red = corpus / "red.png"
    info = red.stat()
    png(red, GREEN)
    # the same size and modification time: only the content hash can tell
    assert red.stat().st_size == info.st_size
    os.utime(red, ns=(info.st_atime_ns, info.st_mtime_ns))

    results = index.search("red", top_n=2)
    found = by_name(results)
    assert_stale(found["red.png"], CHANGED, before["red.png"])
    assert_fresh(found["blue.png"])
    # reranked hits first; the stale one after them, by its vector score
    assert [Path(r.source).name for r in results] == ["blue.png", "red.png"]
    assert [r.rank for r in results] == [1, 2]
    thumbnails = sorted(p.name for p in (index.directory / "thumbnails").iterdir())
    assert thumbnails == [f"{found['blue.png'].id}.jpg"]

    # without reranking too: the stale item has no thumbnail, the other one has
    plain = by_name(index.search("red", rerank=False, top_n=2))
    assert plain["red.png"].stale == CHANGED and plain["red.png"].thumbnail is None
    assert plain["blue.png"].stale is None and plain["blue.png"].thumbnail is not None


def test_a_missing_file_is_stale(index: MultimodalIndex, corpus: Path) -> None:
    before = vector_scores(index)
    (corpus / "red.png").unlink()
    found = by_name(index.search("red", top_n=2))
    assert_stale(found["red.png"], "file missing", before["red.png"])
    assert_fresh(found["blue.png"])


def test_verified_images_are_decoded_in_a_worker_not_in_the_search_process(
    index: MultimodalIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    import qwen3_vl_rag.media.images as images

    def refuse(*args: object, **kwargs: object) -> None:
        raise ImageDecodeError("decoded in the search process", stage="decode")

    monkeypatch.setattr(images, "decode", refuse)  # the workers are fresh interpreters
    for result in index.search("red", top_n=2):
        assert_fresh(result)
        assert "rerank_skipped" not in result.metadata


# -- links and paths out of the indexed folders ----------------------------------------------------


def test_a_link_swapped_in_to_a_file_outside_the_folder_is_not_followed(
    tmp_path: Path, index: MultimodalIndex, corpus: Path
) -> None:
    before = vector_scores(index)
    outside = tmp_path / "private"
    outside.mkdir()
    # the very bytes that were indexed, so only the folder check can refuse it
    shutil.copy2(corpus / "red.png", outside / "red.png")
    (corpus / "red.png").unlink()
    (corpus / "red.png").symlink_to(outside / "red.png")

    found = by_name(index.search("red", top_n=2))
    assert_stale(
        found["red.png"], "outside the folders the index was built from", before["red.png"]
    )
    assert_fresh(found["blue.png"])


def test_a_link_inside_the_folder_to_the_same_bytes_is_followed(
    index: MultimodalIndex, corpus: Path
) -> None:
    kept = corpus / "kept"
    kept.mkdir()
    (corpus / "red.png").rename(kept / "red.png")
    (corpus / "red.png").symlink_to(kept / "red.png")
    for result in index.search("red", top_n=2):
        assert_fresh(result)


def test_a_tampered_index_cannot_make_search_read_another_file(
    tmp_path: Path, index: MultimodalIndex
) -> None:
    """A received index names a local image as an item's source: it is neither read nor shown."""
    secret = png(tmp_path / "private" / "secret.png", GREEN)
    (hit,) = [r for r in index.search("red", rerank=False, top_n=2) if r.source.endswith("red.png")]
    metadata = {**hit.metadata, "source": str(secret)}
    vector = index.manifest.vectors([hit.id])[hit.id]
    index.store.upsert([hit.id], vector[None, :], [metadata], [None])
    shutil.rmtree(index.directory / "thumbnails")

    results = index.search("red", top_n=2)
    (tampered,) = [r for r in results if r.id == hit.id]
    assert tampered.source == str(secret)
    assert_stale(tampered, "no longer records this file", hit.vector_score)
    page = write_gallery(tmp_path / "out.html", results, query="red").read_text()
    assert page.count("data:image/jpeg") == 1  # the verified result's thumbnail only


def test_a_thumbnail_linked_out_of_the_index_is_not_used(
    tmp_path: Path, index: MultimodalIndex
) -> None:
    """A received index's ``thumbnails/<id>.jpg`` is a link to a private JPEG elsewhere."""
    (hit,) = [r for r in index.search("red", rerank=False, top_n=2) if r.source.endswith("red.png")]
    private = tmp_path / "private.jpg"
    Image.new("RGB", (40, 30), GREEN).save(private, "JPEG")
    assert hit.thumbnail is not None
    hit.thumbnail.unlink()
    hit.thumbnail.symlink_to(private)

    again = next(r for r in index.search("red", rerank=False, top_n=2) if r.id == hit.id)
    assert again.thumbnail is not None
    assert not again.thumbnail.is_symlink()  # made again from the verified source
    with Image.open(again.thumbnail) as thumbnail:
        assert thumbnail.convert("RGB").getpixel((5, 5))[0] > 150  # red, not the private green
    assert private.read_bytes()[:3] == b"\xff\xd8\xff"  # the link's target is left alone

    # and the gallery never follows such a link, whoever made the result
    linked = tmp_path / "linked.jpg"
    linked.symlink_to(private)
    planted = SearchResult(1, hit.id, "image", hit.source, "", 0.5, thumbnail=linked)
    page = write_gallery(tmp_path / "out.html", [planted]).read_text()
    assert "data:image/jpeg" not in page


def test_an_index_without_recorded_roots_reads_nothing_until_indexed_again(
    index: MultimodalIndex, corpus: Path
) -> None:
    directory = index.directory
    embedder, reranker = index.embedder, index.reranker
    index.close()
    with sqlite3.connect(directory / "manifest.sqlite3") as db:
        assert json.loads(db.execute("SELECT value FROM meta WHERE key='roots'").fetchone()[0]) == [
            os.path.realpath(corpus)
        ]
        db.execute("DELETE FROM meta WHERE key = 'roots'")
    shutil.rmtree(directory / "thumbnails", ignore_errors=True)
    with MultimodalIndex(directory, embedder, reranker, mode="read") as old:
        for result in old.search("red", top_n=2):
            assert result.stale is not None and "run `qwen3-vl-rag index`" in result.stale
            assert result.rerank_score is None and result.thumbnail is None
    with MultimodalIndex(directory, embedder, reranker) as reopened:
        assert reopened.index([corpus]).counts()["unchanged"] == 2
        for result in reopened.search("red", top_n=2):
            assert_fresh(result)


# -- the command shows stale results ---------------------------------------------------------------


def test_the_command_shows_stale_results(
    tmp_path: Path,
    corpus: Path,
    tiny_embedding_path: Path,
    tiny_reranker_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    index = tmp_path / "index"
    flags = ["--index", str(index), *models(tiny_embedding_path, tiny_reranker_path)]
    assert main(["index", str(corpus), *flags, "--quiet"]) == 0
    png(corpus / "red.png", GREEN, size=(50, 50))
    capsys.readouterr()

    assert main(["search", "red", "--index", str(index), "--json", "--top-n", "2"]) == 0
    results = {Path(r["source"]).name: r for r in json.loads(capsys.readouterr().out)}
    assert results["red.png"]["stale"] == CHANGED
    assert results["red.png"]["rerank_score"] is None and results["red.png"]["thumbnail"] is None
    assert results["blue.png"]["stale"] is None

    html = tmp_path / "out.html"
    assert main(["search", "red", "--index", str(index), "--html", str(html)]) == 0
    out = capsys.readouterr().out
    assert f"stale: {CHANGED} (not read)" in out
    assert out.count("stale:") == 1
    assert f"stale: {CHANGED}" in html.read_text()


# -- hostile swaps, in a bounded child -------------------------------------------------------------

# The child embeds the query with a stand-in (no model to load): what is under test is how search
# reopens files for thumbnails, which is where a FIFO hung it and a huge image was decoded.
SEARCH_CHILD = """
import json
from pathlib import Path
import numpy as np
from qwen3_vl_rag.index import MultimodalIndex

class Queries:
    def embed_queries(self, queries, dim):
        return np.ones((len(queries), dim), np.float32)

with MultimodalIndex({index!r}, mode="read") as index:
    index.embedder = Queries()
    results = index.search("red", rerank=False, top_n=10)
print(json.dumps({{Path(r.source).name: [r.stale, r.thumbnail is not None] for r in results}}))
"""


def search_in_child(directory: Path) -> tuple[object, Bounded]:
    """Search ``directory`` in a fresh interpreter killed after 60 s; its findings and run."""
    done = run_bounded(SEARCH_CHILD.format(index=str(directory)), seconds=60)
    assert not done.timed_out, "search ran past 60 s"
    assert done.returncode == 0, done.stderr[-2000:]
    return done.json(), done


def test_an_indexed_video_swapped_for_a_fifo_does_not_hang_search(
    tmp_path: Path, corpus: Path, embedder: Qwen3VLEmbedder
) -> None:
    video = write_mp4(corpus / "clip.mp4")
    directory = tmp_path / "index"
    with MultimodalIndex(directory, embedder, workers=1) as index:
        assert index.index([corpus]).counts()["indexed"] == 3
    video.unlink()
    os.mkfifo(video)

    found, _ = search_in_child(directory)
    assert found == {
        "clip.mp4": ["not a regular file any more (it is not read)", False],
        "red.png": [None, True],
        "blue.png": [None, True],
    }
    # the read lock is free again: a writer gets in
    with MultimodalIndex(directory, embedder, workers=1) as writer:
        assert writer.status().items == 3


def huge_png(path: Path, width: int, height: int) -> Path:
    """A black RGB PNG of ``width`` x ``height``, compressed as it is made (about 1 MB here)."""
    compressor = zlib.compressobj(1)
    row = b"\x00" + b"\x00\x00\x00" * width
    rows_per_chunk = max(1, (1 << 22) // len(row))
    parts = [
        compressor.compress(row * min(rows_per_chunk, height - start))
        for start in range(0, height, rows_per_chunk)
    ]
    parts.append(compressor.flush())

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def test_an_indexed_image_swapped_for_a_huge_one_is_not_decoded(
    tmp_path: Path, corpus: Path, embedder: Qwen3VLEmbedder
) -> None:
    """1 x 60,000,000 pixels in 1 MB (under the pixel budget): decoding it takes gigabytes."""
    directory = tmp_path / "index"
    with MultimodalIndex(directory, embedder, workers=1) as index:
        assert index.index([corpus]).counts()["indexed"] == 2
    huge_png(corpus / "red.png", 1, 60_000_000)

    found, done = search_in_child(directory)
    assert found == {"red.png": [CHANGED, False], "blue.png": [None, True]}
    assert done.peak_rss_mib is not None and done.peak_rss_mib < 500
