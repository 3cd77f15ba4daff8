"""An index whose vectors live on a real Chroma server (``chroma run`` on a loopback port).

Covers what a shared store promises: the same vectors as the embedded store, readers in other
processes with neither the manifest nor the files (citations and thumbnails from the server),
one writer across processes (a lease, taken over when its writer died), a server killed in the
middle of a run (a typed error, then a re-run that completes with nothing lost or duplicated),
``rebuild`` and ``recover`` against the server, and the command-line flags.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from qwen3_vl_rag import Qwen3VLEmbedder
from qwen3_vl_rag.cli.main import main
from qwen3_vl_rag.errors import (
    ConfigurationError,
    IndexCorruptedError,
    IndexLockedError,
    IndexMismatchError,
    StoreUnavailableError,
)
from qwen3_vl_rag.index import MultimodalIndex
from qwen3_vl_rag.index._lease import WriterLease
from qwen3_vl_rag.index._server_store import ServerStore
from tests.chroma_server import ChromaServer
from tests.media_files import report_pdf

pytestmark = [pytest.mark.enable_socket, pytest.mark.timeout(300)]

JPEG = "ffd8ff"


# -- servers and files -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chroma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    """One server for the session; each test uses collections of its own."""
    folder = tmp_path_factory.mktemp("chroma-server")
    server = ChromaServer(folder / "data", folder / "log").start()
    yield server
    server.stop()


@pytest.fixture
def own_chroma(tmp_path: Path) -> Iterator[ChromaServer]:
    """A server of this test's own, to kill and restart."""
    server = ChromaServer(tmp_path / "chroma-data", tmp_path / "chroma.log").start()
    yield server
    server.stop()


def png(path: Path, colour: tuple[int, int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), colour).save(path, "PNG")
    past_ns = time.time_ns() - 60_000_000_000  # a fresher mtime is not trusted by `index`
    os.utime(path, ns=(past_ns, past_ns))
    return path


def corpus(folder: Path, images: int = 3) -> Path:
    """``images`` one-colour PNGs and a two-page PDF: ``images + 2`` items."""
    for i in range(images):
        png(folder / f"img{i:02d}.png", ((40 * i) % 256, (90 + 70 * i) % 256, 200))
    report_pdf(folder / "report.pdf", pages=2)
    return folder


def server_ids(url: str, collection: str, *, thumbnails: bool = False) -> set[str]:
    """The ids of the collection's vectors (or of the thumbnails kept beside them)."""
    store = ServerStore(url, collection, create=False)
    try:
        return store.thumbnail_ids() if thumbnails else store.all_ids()
    finally:
        store.close()


def manifest_ids(directory: Path) -> set[str]:
    db = sqlite3.connect(directory / "manifest.sqlite3", timeout=5)
    try:
        return {row[0] for row in db.execute("SELECT id FROM items WHERE current = 1")}
    finally:
        db.close()


def run_python(code: str, *args: object, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# -- a reader in another process, without the manifest or the files --------------------------------

READER = """
import json, shutil, sys
from pathlib import Path
from qwen3_vl_rag import MultimodalIndex, Qwen3VLEmbedder, Qwen3VLReranker
url, name, embedding, reranking, files, hidden, with_files, without = sys.argv[1:]
embedder = Qwen3VLEmbedder.from_pretrained(embedding, device="cpu", dtype="float32")
reranker = Qwen3VLReranker.from_pretrained(reranking, device="cpu", dtype="float32")
answers = []
for local in (with_files, without):  # the files at their place, then gone
    with MultimodalIndex(
        local, embedder, reranker, server=url, collection=name, mode="read"
    ) as index:
        results = index.search("quarterly report", k=10, top_n=10)
        status = index.status()
        answers.append({
            "reranker": index.reranker_model(),
            "store": status.vector_store, "vectors": status.vectors,
            "dtypes": list(status.compute_dtypes),
            "results": [{
                "id": r.id, "kind": r.kind, "source": r.source, "locator": r.locator,
                "text": r.text, "stale": r.stale, "rerank": r.rerank_score,
                "thumbnail": r.thumbnail and Path(r.thumbnail).read_bytes()[:3].hex(),
            } for r in results],
        })
    if local == with_files:
        shutil.move(files, hidden)
print(json.dumps(answers))
"""


def test_an_index_on_the_server_is_searched_from_another_process_without_manifest_or_files(
    chroma: ChromaServer,
    tmp_path: Path,
    embedder: Qwen3VLEmbedder,
    tiny_embedding_path: Path,
    tiny_reranker_path: Path,
) -> None:
    files = corpus(tmp_path / "files")
    with MultimodalIndex(
        tmp_path / "writer", embedder, server=chroma.url, collection="shared-reader"
    ) as index:
        report = index.index([files])
        index.record_reranker("Qwen/Qwen3-VL-Reranker-2B")
        status = index.status()
    assert report.counts()["items"] == 5 and report.embedded == 5
    where = f"collection shared-reader on {chroma.url}"
    assert status.vectors == 5 and status.vector_store == where
    assert not (tmp_path / "writer" / "chroma").exists()  # the vectors are on the server only

    reader = run_python(
        READER,
        chroma.url,
        "shared-reader",
        tiny_embedding_path,
        tiny_reranker_path,
        files,
        tmp_path / "elsewhere",
        tmp_path / "reader-a",
        tmp_path / "reader-b" / "new",
        timeout=240,
    )
    assert reader.returncode == 0, reader.stderr[-3000:]
    seen, blind = json.loads(reader.stdout)

    # the same files at the same path: the reader reranks them, as a local reader would
    assert seen["vectors"] == 5 and seen["dtypes"] == ["float32"] and seen["store"] == where
    assert seen["reranker"] == "Qwen/Qwen3-VL-Reranker-2B"  # recorded with the collection
    assert all(r["stale"] is None and r["rerank"] is not None for r in seen["results"])

    # the files gone (another machine): citations, page text and thumbnails from the server
    results = blind["results"]
    assert {r["id"] for r in results} == server_ids(chroma.url, "shared-reader")
    assert sorted(Path(r["source"]).name for r in results) == [
        "img00.png",
        "img01.png",
        "img02.png",
        "report.pdf",
        "report.pdf",
    ]
    pages = sorted((r["locator"], r["text"]) for r in results if r["kind"] == "page")
    assert [locator for locator, _ in pages] == ["page A-1", "page A-2"]
    assert all("Quarterly report" in (text or "") for _, text in pages)
    assert all(r["stale"] == "file missing" and r["rerank"] is None for r in results)
    assert [r["thumbnail"] for r in results] == [JPEG] * 5


def test_a_reader_of_a_missing_collection_and_a_bad_url_are_told_so(
    chroma: ChromaServer, tmp_path: Path, embedder: Qwen3VLEmbedder
) -> None:
    with pytest.raises(ConfigurationError, match="has no collection 'never-made'"):
        MultimodalIndex(
            tmp_path / "r", embedder, server=chroma.url, collection="never-made", mode="read"
        )
    with pytest.raises(ConfigurationError, match="server='ftp://x'"):
        MultimodalIndex(tmp_path / "w", embedder, server="ftp://x")
    with pytest.raises(ConfigurationError, match="collection='a'"):
        MultimodalIndex(tmp_path / "w", embedder, server=chroma.url, collection="a")


def test_a_collection_written_with_other_settings_is_refused(
    chroma: ChromaServer, tmp_path: Path, embedder: Qwen3VLEmbedder
) -> None:
    image = png(tmp_path / "files" / "x.png", (9, 9, 9))
    with MultimodalIndex(tmp_path / "a", embedder, server=chroma.url, collection="full-size") as a:
        a.index([image])
    with MultimodalIndex(
        tmp_path / "b", embedder, dim=32, server=chroma.url, collection="smaller"
    ) as b:
        b.index([image])
    with pytest.raises(IndexMismatchError, match="collection full-size"):
        MultimodalIndex(tmp_path / "b", embedder, server=chroma.url, collection="full-size")
    with pytest.raises(IndexCorruptedError, match="belongs to another index directory"):
        MultimodalIndex(tmp_path / "c", embedder, server=chroma.url, collection="full-size")


def test_vectors_on_the_server_equal_the_embedded_stores(
    chroma: ChromaServer, tmp_path: Path, embedder: Qwen3VLEmbedder
) -> None:
    files = corpus(tmp_path / "files")
    with MultimodalIndex(tmp_path / "embedded", embedder) as local:
        local.index([files])
        expected = {item.id: item for item in local.store.items()}
    with MultimodalIndex(
        tmp_path / "served", embedder, server=chroma.url, collection="same-vectors"
    ) as served:
        served.index([files])
        stored = {item.id: item for item in served.store.items()}
        settings = served.store.recorded_settings()
    assert set(stored) == set(expected) and len(stored) == 5
    for key, item in stored.items():
        np.testing.assert_allclose(item.vector, expected[key].vector, atol=1e-6)
        assert item.metadata == expected[key].metadata
        assert item.document == expected[key].document
    assert settings["roots"] == [str(files.resolve())]
    assert settings["compute_dtypes"] == ["float32"]
    assert settings["signature"]["dimension"] == len(next(iter(stored.values())).vector)


# -- one writer across processes -------------------------------------------------------------------

HOLDER = """
import sys, time
from qwen3_vl_rag import MultimodalIndex
directory, url, name, seconds = sys.argv[1:5]
index = MultimodalIndex(directory, server=url, collection=name, lease_seconds=float(seconds))
print("holding", flush=True)
time.sleep(600)
"""


def test_one_writer_at_a_time_and_a_dead_writers_lease_is_taken_over(
    chroma: ChromaServer, tmp_path: Path, embedder: Qwen3VLEmbedder
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "a"), chroma.url, "one-writer", "3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        with pytest.raises(IndexLockedError) as refused:
            MultimodalIndex(tmp_path / "b", embedder, server=chroma.url, collection="one-writer")
        message = str(refused.value)
        assert f"pid {holder.pid}" in message and str(tmp_path / "a") in message
        assert "collection one-writer" in message
        time.sleep(4)  # past the lease: the heartbeat keeps it alive
        with pytest.raises(IndexLockedError, match=f"pid {holder.pid}"):
            MultimodalIndex(tmp_path / "b", embedder, server=chroma.url, collection="one-writer")
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    time.sleep(3.5)  # the killed writer's lease expires
    with MultimodalIndex(
        tmp_path / "b", embedder, server=chroma.url, collection="one-writer", lease_seconds=3
    ) as taken:
        taken.index([png(tmp_path / "files" / "x.png", (1, 2, 3))])
        assert taken.status().vectors == 1


def test_the_chroma_semantics_the_lease_relies_on(chroma: ChromaServer) -> None:
    store = ServerStore(chroma.url, "semantics")
    records = store.side_collection("__probe")
    records.add(ids=["x"], embeddings=[[1.0]], metadatas=[{"token": "first"}])
    records.add(ids=["x"], embeddings=[[1.0]], metadatas=[{"token": "second"}])
    assert records.get(ids=["x"])["metadatas"] == [{"token": "first"}]  # add keeps the first
    records.delete(ids=["x"], where={"token": "second"})
    assert records.get(ids=["x"])["ids"] == ["x"]  # a delete whose filter fails deletes nothing
    records.delete(ids=["x"], where={"token": "first"})
    assert records.get(ids=["x"])["ids"] == []


def test_of_writers_racing_for_an_expired_lease_exactly_one_wins(
    chroma: ChromaServer, tmp_path: Path
) -> None:
    stores = [ServerStore(chroma.url, "raced") for _ in range(6)]
    dead = WriterLease(stores[0], tmp_path / "dead", seconds=0.5).acquire()
    dead._stop.set()  # killed: no heartbeat, never released
    time.sleep(1.0)
    outcomes: list[str] = []
    winners: list[WriterLease] = []
    barrier = threading.Barrier(5)

    def race(store: ServerStore, n: int) -> None:
        barrier.wait()
        try:
            winners.append(WriterLease(store, tmp_path / f"w{n}", seconds=30).acquire())
            outcomes.append("won")
        except IndexLockedError:
            outcomes.append("refused")

    threads = [threading.Thread(target=race, args=(s, n)) for n, s in enumerate(stores[1:])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for lease in winners:
        lease.release()
    assert sorted(outcomes) == ["refused"] * 4 + ["won"]


def test_a_writer_that_lost_its_lease_stops_before_its_next_write(
    chroma: ChromaServer, tmp_path: Path, embedder: Qwen3VLEmbedder
) -> None:
    with MultimodalIndex(
        tmp_path / "a", embedder, server=chroma.url, collection="lost-lease", lease_seconds=1.5
    ) as index:
        # another writer's record replaces this one's (as after a take-over)
        store = index.store
        assert isinstance(store, ServerStore)
        records = store.side_collection("__writer")
        meta = records.get(ids=["writer"])["metadatas"][0]
        records.update(ids=["writer"], metadatas=[{**meta, "token": "someone-else"}])
        time.sleep(1.5)  # a heartbeat sees it
        with pytest.raises(IndexLockedError, match="lost its lease"):
            index.index([png(tmp_path / "files" / "x.png", (1, 2, 3))])
        assert index.store.count() == 0


# -- the server killed mid-run ---------------------------------------------------------------------

SLOW_WRITER = """
import json, sys, time
from qwen3_vl_rag import MultimodalIndex, Qwen3VLEmbedder
from qwen3_vl_rag.errors import StoreUnavailableError
directory, url, files, checkpoint = sys.argv[1:5]
embedder = Qwen3VLEmbedder.from_pretrained(checkpoint, device="cpu", dtype="float32")
embed = embedder.embed_documents
def slowed(items, **kwargs):
    vectors = embed(items, **kwargs)
    time.sleep(0.5)
    return vectors
embedder.embed_documents = slowed
try:
    with MultimodalIndex(directory, embedder, server=url, collection="restarted",
                         batch_items=1, workers=1, server_retry_seconds=2,
                         lease_seconds=4) as index:
        index.index([files])
except StoreUnavailableError as err:
    print(json.dumps({"error": type(err).__name__, "message": str(err)}), flush=True)
    sys.exit(3)
"""


def test_a_server_killed_mid_run_stops_it_with_a_typed_error_and_a_rerun_completes(
    own_chroma: ChromaServer,
    tmp_path: Path,
    embedder: Qwen3VLEmbedder,
    tiny_embedding_path: Path,
) -> None:
    files = tmp_path / "files"
    for i in range(8):
        png(files / f"img{i:02d}.png", ((30 * i) % 256, 60, (200 - 20 * i) % 256))
    directory = tmp_path / "index"
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SLOW_WRITER,
            str(directory),
            own_chroma.url,
            str(files),
            str(tiny_embedding_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and writer.poll() is None:
        if (directory / "manifest.sqlite3").exists() and len(manifest_rows(directory)) >= 2:
            break
        time.sleep(0.1)
    own_chroma.kill()  # mid-run: some batches acknowledged and recorded, the others not
    out, err = writer.communicate(timeout=120)
    assert writer.returncode == 3, err[-3000:]
    failure = json.loads(out)
    assert failure["error"] == "StoreUnavailableError"
    assert own_chroma.url in failure["message"] and "server_retry_seconds" in failure["message"]
    acknowledged = manifest_rows(directory)
    assert 2 <= len(acknowledged) < 8

    own_chroma.start()  # the same path and port
    with opened_when_the_lease_expires(
        directory, embedder, server=own_chroma.url, collection="restarted", workers=1
    ) as index:
        report = index.index([files])
    counts = report.counts()
    assert report.complete and counts["indexed"] + counts["unchanged"] == 8
    assert report.embedded == 8 - len(acknowledged)  # nothing acknowledged is embedded again
    assert server_ids(own_chroma.url, "restarted") == manifest_ids(directory)
    assert server_ids(own_chroma.url, "restarted", thumbnails=True) == manifest_ids(directory)
    assert len(manifest_ids(directory)) == 8 and acknowledged <= manifest_ids(directory)


def opened_when_the_lease_expires(*args: Any, **kwargs: Any) -> MultimodalIndex:
    """The index opened for writing once the lease of a writer that stopped has expired."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return MultimodalIndex(*args, **kwargs)
        except IndexLockedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def manifest_rows(directory: Path) -> set[str]:
    """Every item id the manifest records, current or not (acknowledged by the store)."""
    try:
        db = sqlite3.connect(f"file:{directory / 'manifest.sqlite3'}?mode=ro", uri=True, timeout=5)
        try:
            return {row[0] for row in db.execute("SELECT id FROM items")}
        finally:
            db.close()
    except sqlite3.Error:
        return set()


def test_a_call_waits_for_a_server_that_comes_back_within_the_retry_time(
    own_chroma: ChromaServer,
) -> None:
    store = ServerStore(own_chroma.url, "comes-back", retry_seconds=60)
    store.upsert(["a" * 32], np.ones((1, 4), dtype=np.float32), [{"kind": "image"}], [None])
    own_chroma.kill()
    restart = threading.Timer(1.5, own_chroma.start)  # back while the call below retries
    restart.start()
    try:
        assert store.count() == 1  # and what it acknowledged before the kill is there
    finally:
        restart.join()
    quick = ServerStore(own_chroma.url, "comes-back", retry_seconds=0.5)
    own_chroma.kill()
    with pytest.raises(StoreUnavailableError, match=own_chroma.url):
        quick.count()


# -- rebuild, recover and the command line ---------------------------------------------------------


def test_rebuild_and_recover_against_the_server(
    chroma: ChromaServer, tmp_path: Path, embedder: Qwen3VLEmbedder
) -> None:
    files = corpus(tmp_path / "files", images=2)
    directory = tmp_path / "index"
    options: dict[str, Any] = {"server": chroma.url, "collection": "rebuilt"}
    with MultimodalIndex(directory, embedder, **options) as index:
        index.index([files])
        index.record_reranker("Qwen/Qwen3-VL-Reranker-2B")
        before = {item.id: item.vector for item in index.store.items()}
        index.store.delete(sorted(before)[:2])  # vectors lost on the server
    with MultimodalIndex(directory, embedder, **options) as index:
        with pytest.raises(IndexCorruptedError, match="vectors are missing"):
            index.search("report", rerank=False)
        assert index.rebuild() == 4
        after = {item.id: item.vector for item in index.store.items()}
    assert set(after) == set(before)
    for key, vector in after.items():
        np.testing.assert_allclose(vector, before[key])

    (directory / "manifest.sqlite3").unlink()  # the writer's manifest lost
    assert MultimodalIndex.recover(tmp_path / "recovered", **options) == 4
    assert manifest_ids(tmp_path / "recovered") == set(before)
    with MultimodalIndex(tmp_path / "recovered", mode="read", **options) as recovered:
        assert recovered.reranker_model() == "Qwen/Qwen3-VL-Reranker-2B"
        assert recovered.compute_dtypes() == ("float32",)
    with MultimodalIndex(tmp_path / "recovered", embedder, **options) as index:
        again = index.index([files])
        assert again.embedded == 0 and again.counts()["unchanged"] == 3
        hits = index.search("report", rerank=False, top_n=4)
        assert all(hit.stale is None for hit in hits)  # the folders were recovered too


def test_the_command_line_takes_the_server_and_collection(
    chroma: ChromaServer,
    tmp_path: Path,
    tiny_embedding_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    files = tmp_path / "files"
    png(files / "a.png", (200, 10, 10))
    doomed = png(files / "b.png", (10, 200, 10))
    store = ["--chroma-server", chroma.url, "--collection", "from-cli"]
    model = ["--model", str(tiny_embedding_path), "--device", "cpu", "--dtype", "float32"]
    index = ["--index", str(tmp_path / "index")]
    assert main(["index", str(files), *index, *store, *model, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["status", "--index", str(tmp_path / "nowhere"), *store, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (
        status["vectors"] == 2 and status["vector_store"] == f"collection from-cli on {chroma.url}"
    )
    assert main(["status", *index, *store]) == 0
    assert f"vectors:   in collection from-cli on {chroma.url}" in capsys.readouterr().out
    search = ["search", "red", "--index", str(tmp_path / "reader"), *store, *model]
    assert main([*search, "--no-rerank", "--json", "--quiet"]) == 0
    assert {Path(r["source"]).name for r in json.loads(capsys.readouterr().out)} == {
        "a.png",
        "b.png",
    }
    doomed.unlink()
    assert main(["prune", *index, *store]) == 0
    assert "1 vector(s)" in capsys.readouterr().out
    kept = server_ids(chroma.url, "from-cli")
    assert len(kept) == 1 and server_ids(chroma.url, "from-cli", thumbnails=True) == kept
    assert main(["rebuild", *index, *store]) == 0
    assert "1 vector(s)" in capsys.readouterr().out
    assert server_ids(chroma.url, "from-cli") == kept
    assert main(["recover", "--index", str(tmp_path / "new-machine"), *store]) == 0
    assert "1 item(s)" in capsys.readouterr().out
    assert manifest_ids(tmp_path / "new-machine") == kept
