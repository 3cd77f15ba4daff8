"""Indexing on a real local Ray cluster: the vectors of a local run, and every guarantee kept.

The cluster (two CPUs, ``ray start --head``) is started once per session by tests/ray_cluster.py.
Each run here starts its actors again (a new dataset per run), so the runs are few and small.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qwen3_vl_rag import ClusterError, IndexMismatchError, Qwen3VLEmbedder
from qwen3_vl_rag.cli.main import EXIT_FATAL, EXIT_OK, main
from qwen3_vl_rag.distributed import RayCluster, WorkerEngine
from qwen3_vl_rag.index import MultimodalIndex
from qwen3_vl_rag.media.items import MediaItem
from qwen3_vl_rag.testing.faults import CrashingDecoder, SlowDecoder
from tests import media_files
from tests.chroma_server import ChromaServer
from tests.conftest import write_mp4
from tests.vllm_servers import Server

pytestmark = [pytest.mark.ray, pytest.mark.enable_socket, pytest.mark.timeout(600)]

DRIVER = Path(__file__).with_name("_ray_driver.py")
# two actors of half a CPU and rendering tasks of half a CPU fit the test cluster's two CPUs
TWO_ACTORS = {"actors": 2, "cpus_per_actor": 0.5, "render_cpus": 0.5}


def png(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> Path:
    Image.new("RGB", size, colour).save(path)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PDF of three pages, two images, a video: every kind of item."""
    folder = tmp_path_factory.mktemp("ray") / "corpus"
    folder.mkdir()
    media_files.report_pdf(folder / "report.pdf", pages=3)
    png(folder / "red.png", (200, 30, 30))
    png(folder / "blue.png", (30, 30, 200), size=(80, 40))
    write_mp4(folder / "clip.mp4")
    return folder


def assert_same_vector(got: np.ndarray, expected: np.ndarray) -> None:
    """Equal up to float32 rounding: batches of other sizes sum in another order (1.2e-7)."""
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def vectors(index: MultimodalIndex) -> dict[str, np.ndarray]:
    return {row.id: row.vector for row in index.manifest.current_items()}


@pytest.fixture(scope="module")
def local(
    corpus: Path, embedder: Qwen3VLEmbedder, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, np.ndarray]:
    """The vectors of a local run over the corpus."""
    with MultimodalIndex(tmp_path_factory.mktemp("local") / "index", embedder, workers=1) as index:
        report = index.index([corpus])
        assert report.complete and report.counts()["items"] == 6
        return vectors(index)


def test_a_ray_run_gives_the_vectors_of_a_local_run_and_a_rerun_embeds_nothing(
    ray_address: str,
    corpus: Path,
    embedder: Qwen3VLEmbedder,
    local: dict[str, np.ndarray],
    tmp_path: Path,
) -> None:
    cluster = RayCluster(ray_address, batch_size=2, render_batch=2, **TWO_ACTORS)
    with MultimodalIndex(tmp_path / "index", embedder, workers=1) as index:
        report = index.index([corpus], cluster=cluster)
        assert report.complete, report.files
        assert report.counts() == {
            "indexed": 4,
            "unchanged": 0,
            "skipped": 0,
            "failed": 0,
            "items": 6,
        }
        assert (report.embedded, report.reused) == (6, 0)
        got = vectors(index)
        assert got.keys() == local.keys()
        for item_id, vector in local.items():  # the same model, settings and pixels
            assert_same_vector(got[item_id], vector)
        assert index.store.all_ids() == set(local)
        assert index.compute_dtypes() == ("float32",)  # as the actors reported it

        again = index.index([corpus], cluster=cluster)
        assert [f.status for f in again.files] == ["unchanged"] * 4
        assert (again.embedded, again.reused) == (0, 0)


def test_a_ray_run_into_a_chroma_server_keeps_the_thumbnails_its_workers_made(
    ray_address: str,
    corpus: Path,
    embedder: Qwen3VLEmbedder,
    local: dict[str, np.ndarray],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from qwen3_vl_rag.index import _thumbnails

    made_by_the_driver: list[str] = []
    make = _thumbnails.item_thumbnail

    def counted(item: MediaItem) -> bytes:
        made_by_the_driver.append(item.kind)
        return make(item)

    monkeypatch.setattr(_thumbnails, "item_thumbnail", counted)
    server = ChromaServer(tmp_path / "chroma", tmp_path / "chroma.log").start()
    try:
        with MultimodalIndex(
            tmp_path / "index", embedder, workers=1, server=server.url, collection="ray"
        ) as index:
            report = index.index([corpus], cluster=RayCluster(ray_address, actors=1))
            assert report.complete and index.store.all_ids() == set(local)
            assert index.store.thumbnail_ids() == set(local)
    finally:
        server.stop()
    # pages and images were drawn by the rendering tasks, which made their thumbnails too
    assert made_by_the_driver == ["video"]


def test_a_decoder_crash_in_a_rendering_task_fails_its_file_and_the_run_goes_on(
    ray_address: str, corpus: Path, embedder: Qwen3VLEmbedder, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    media_files.report_pdf(docs / "evil.pdf", pages=2)
    png(docs / "fine.png", (10, 200, 10))
    cluster = RayCluster(ray_address, actors=1, decoding=CrashingDecoder("evil", stage="render"))
    with MultimodalIndex(tmp_path / "index", embedder, workers=1) as index:
        report = index.index([docs], cluster=cluster)
        outcomes = {Path(f.path).name: f for f in report.files}
        assert outcomes["fine.png"].status == "indexed"
        evil = outcomes["evil.pdf"]
        assert (evil.status, evil.stage, evil.error) == ("failed", "render", "DecoderCrashedError")
        assert "SIGSEGV" in (evil.reason or "")
        assert index.status().items == 1
        assert index.store.count() == 1  # nothing of the failed file was kept
        failed = index.manifest.source(str(docs / "evil.pdf"))
        assert failed is not None and failed.status == "failed"


def _actor_pids() -> list[int]:
    listing = subprocess.run(
        ["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True
    ).stdout
    return [
        int(line.split(None, 1)[0])
        for line in listing.splitlines()
        if "EmbedActor" in line and "ps -eo" not in line
    ]


@contextlib.contextmanager
def killing_an_actor(manifest: Path) -> Iterator[list[int]]:
    """SIGKILL the embedding actor once the index recorded its first item; yields its pid."""
    killed: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            pids = _actor_pids()
            if pids and _recorded_items(manifest) >= 1:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield killed
    finally:
        stop.set()
        thread.join(30)


def _recorded_items(manifest: Path) -> int:
    if not manifest.is_file():
        return 0
    db = sqlite3.connect(f"file:{manifest}?mode=ro", uri=True, timeout=5)
    try:
        return int(db.execute("SELECT COUNT(*) FROM items").fetchone()[0])
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0
    finally:
        db.close()


def test_an_actor_killed_mid_run_is_replaced_and_nothing_is_lost_or_doubled(
    ray_address: str, embedder: Qwen3VLEmbedder, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(16):
        png(docs / f"{i:02d}.png", (15 * i, 100, 255 - 15 * i))
    with MultimodalIndex(tmp_path / "local", embedder, workers=1) as index:
        index.index([docs])
        expected = vectors(index)
    # rendering slowed to 0.3 s an image: the run is still under way when the first item is in
    slow = SlowDecoder(0.3, stage="render")
    cluster = RayCluster(ray_address, actors=1, batch_size=1, render_batch=1, decoding=slow)
    manifest = tmp_path / "index" / "manifest.sqlite3"
    with (
        killing_an_actor(manifest) as killed,
        MultimodalIndex(tmp_path / "index", embedder, workers=1) as index,
    ):
        report = index.index([docs], cluster=cluster)
        assert killed, "no actor was killed: the test proved nothing"
        assert report.complete and report.counts()["items"] == 16
        got = vectors(index)
        assert got.keys() == expected.keys()
        for item_id, vector in expected.items():
            assert_same_vector(got[item_id], vector)
        assert index.store.all_ids() == index.manifest.current_ids() == set(expected)
    assert _recorded_items(manifest) == 16  # each item recorded once
    assert killed[0] not in _actor_pids()


def test_a_killed_driver_loses_nothing_and_a_rerun_finishes_the_job(
    ray_address: str,
    embedder: Qwen3VLEmbedder,
    tiny_embedding_path: Path,
    tmp_path: Path,
) -> None:
    total = 12
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(total):
        png(docs / f"{i:02d}.png", (20 * i, 40, 90))
    directory = tmp_path / "index"
    manifest = directory / "manifest.sqlite3"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    with open(tmp_path / "driver.log", "wb") as log:
        driver = subprocess.Popen(
            [sys.executable, DRIVER, directory, docs, tiny_embedding_path, ray_address],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 300
            while _recorded_items(manifest) < 2:  # two batches acknowledged: kill it now
                assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "no batch was recorded in time"
                time.sleep(0.05)
            os.killpg(driver.pid, signal.SIGKILL)
            assert driver.wait(timeout=30) == -signal.SIGKILL
        finally:
            if driver.poll() is None:
                os.killpg(driver.pid, signal.SIGKILL)
                driver.wait(timeout=30)
    recorded = _recorded_items(manifest)
    assert 2 <= recorded < total

    cluster = RayCluster(ray_address, batch_size=4, **TWO_ACTORS)
    with MultimodalIndex(directory, embedder, workers=1) as index:
        report = index.index([docs], cluster=cluster)
        assert report.complete
        # what the killed driver recorded is reused, only the rest embedded; nothing twice
        assert report.reused >= recorded - report.counts()["unchanged"]
        assert report.embedded + report.reused == report.counts()["items"]
        assert report.embedded <= total - recorded
        assert index.store.all_ids() == index.manifest.current_ids()
        assert index.status().items == index.store.count() == total
    with MultimodalIndex(tmp_path / "local", embedder, workers=1) as reference:
        reference.index([docs])
        expected = vectors(reference)
    with MultimodalIndex(directory, mode="read") as index:
        got = vectors(index)
    assert got.keys() == expected.keys()
    for item_id, vector in expected.items():
        assert_same_vector(got[item_id], vector)


def test_an_actor_that_cannot_load_its_model_stops_the_run_with_why(
    ray_address: str, corpus: Path, embedder: Qwen3VLEmbedder, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-model"
    cluster = RayCluster(ray_address, actors=1, engine=WorkerEngine(str(missing)))
    with MultimodalIndex(tmp_path / "index", embedder, workers=1) as index:
        with pytest.raises(ClusterError, match="a Ray actor could not load the model") as info:
            index.index([corpus / "red.png"], cluster=cluster)
        assert "ModelLoadError" in str(info.value) and str(missing) in str(info.value)
        assert index.status().items == 0 and index.store.count() == 0


def test_vectors_of_a_worker_with_other_settings_are_refused(
    ray_address: str, corpus: Path, embedder: Qwen3VLEmbedder, tmp_path: Path
) -> None:
    other = WorkerEngine.like(embedder).with_options(max_pixels=embedder.vision.max_pixels // 2)
    cluster = RayCluster(ray_address, actors=1, engine=other)
    with MultimodalIndex(tmp_path / "index", embedder, workers=1) as index:
        with pytest.raises(IndexMismatchError, match="max_pixels"):
            index.index([corpus / "red.png"], cluster=cluster)
        assert index.status().items == 0 and index.store.count() == 0


def test_the_command_line_indexes_on_ray_and_names_what_to_fix(
    ray_address: str,
    corpus: Path,
    tiny_embedding_path: Path,
    local: dict[str, np.ndarray],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = ["--model", str(tiny_embedding_path), "--device", "cpu", "--dtype", "float32"]

    def command(directory: Path, *options: str) -> list[str]:
        return ["index", str(corpus), "--index", str(directory), *model, "--quiet", *options]

    directory = tmp_path / "index"
    code = main(command(directory, "--ray", ray_address, "--ray-actors", "1"))
    out = capsys.readouterr()
    assert code == EXIT_OK, out.err
    assert "indexed 4 file(s) (6 items)" in out.out
    with MultimodalIndex(directory, mode="read") as index:
        assert vectors(index).keys() == local.keys()

    # nothing changed: the cluster is not even reached
    assert main(command(directory, "--ray", f"127.0.0.1:{_closed_port()}")) == EXIT_OK
    assert "unchanged 4" in capsys.readouterr().out

    gpus = command(tmp_path / "gpus", "--ray", ray_address, "--ray-gpus-per-actor", "1")
    assert main(gpus) == EXIT_FATAL
    assert "--ray-gpus-per-actor" in capsys.readouterr().err

    nobody = f"127.0.0.1:{_closed_port()}"
    assert main(command(tmp_path / "nobody", "--ray", nobody)) == EXIT_FATAL
    err = capsys.readouterr().err
    assert f"nothing answers at the Ray address {nobody}" in err and "--ray HOST:PORT" in err


def _closed_port() -> int:
    from tests.vllm_servers import free_port

    return free_port()


@pytest.mark.vllm
def test_actors_can_embed_through_a_vllm_server_with_the_in_process_vectors(
    ray_address: str, vllm_embedding: Server, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    media_files.report_pdf(docs / "report.pdf", pages=2)
    png(docs / "red.png", (200, 30, 30))
    write_mp4(docs / "clip.mp4")  # the remote engine refuses video: reported, the run goes on
    served = Qwen3VLEmbedder.from_server(vllm_embedding.url)
    in_process = Qwen3VLEmbedder.from_pretrained(
        vllm_embedding.model, dtype="float32", max_length=served.max_length
    )
    with MultimodalIndex(tmp_path / "local", in_process, workers=1) as index:
        index.index([docs / "report.pdf", docs / "red.png"])
        expected = vectors(index)
    engine = WorkerEngine.like(served)
    assert (engine.source, engine.url) == ("server", vllm_embedding.url)
    with MultimodalIndex(tmp_path / "index", served, workers=1) as index:
        report = index.index([docs], cluster=RayCluster(ray_address, actors=1, engine=engine))
        outcomes = {Path(f.path).name: f for f in report.files}
        assert outcomes["report.pdf"].status == outcomes["red.png"].status == "indexed"
        assert outcomes["clip.mp4"].status == "failed"
        got = vectors(index)
    assert got.keys() == expected.keys()
    for item_id, vector in expected.items():  # the server's forward pass, our preprocessing
        np.testing.assert_allclose(got[item_id], vector, rtol=0, atol=1e-5)
