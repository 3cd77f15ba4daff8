"""The index under hostile conditions: kills during rebuild, damaged manifests, odd file names,
full disks, read-only directories and a store deleted while in use (issue 15, items 6-8, 13).

Where only the index's own bookkeeping is under test, a 300-item index is written straight into
the manifest and the store (random unit vectors, no model); the tiny checkpoints embed real
files where the way from a file to its vector is under test.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from qwen3_vl_rag import Qwen3VLEmbedder, Qwen3VLReranker
from qwen3_vl_rag.cli.main import main
from qwen3_vl_rag.errors import IndexCorruptedError, IndexMismatchError
from qwen3_vl_rag.index import MultimodalIndex
from qwen3_vl_rag.index._ids import item_id, signature_hash
from qwen3_vl_rag.index._manifest import ItemRow, Manifest
from qwen3_vl_rag.index._store import VectorStore

MANIFEST = "manifest.sqlite3"
DIMENSION = 8
FILES, PAGES = 30, 10
ITEMS = FILES * PAGES
SIGNATURE = {
    "model": "test/no-model",
    "revision": None,
    "dimension": DIMENSION,
    "max_pixels": 200704,
    "min_pixels": 3136,
    "factor": 32,
    "fps": 1.0,
    "max_frames": 8,
    "total_pixels": None,
    "segment_seconds": None,
    "instruction": "Represent the user's input.",
}


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (*sys.path, env.get("PYTHONPATH", "")) if p)
    return env


def run_python(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=timeout,
        check=False,
    )


def build_index(directory: Path, *, schema_version: int = 2) -> dict[str, np.ndarray]:
    """30 "PDFs" of 10 pages, written as ingest writes them; returns every id's vector.

    The PDFs do not exist: ``prune`` would forget them all, so it must not run before the store
    is known to be usable.
    """
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    manifest = Manifest(directory / MANIFEST)
    manifest.set_meta({"signature": SIGNATURE, "schema_version": schema_version})
    store = VectorStore(directory)
    if schema_version >= 2:
        store.record_signature(SIGNATURE)
    signature = signature_hash(SIGNATURE)
    vectors: dict[str, np.ndarray] = {}
    try:
        for number in range(FILES):
            source = str(directory.parent / "data" / f"report{number:02d}.pdf")
            digest = hashlib.sha256(source.encode()).hexdigest()
            rows = []
            for page in range(PAGES):
                vector = rng.normal(size=DIMENSION).astype(np.float32)
                vector /= np.linalg.norm(vector)
                metadata = {
                    "source": source,
                    "kind": "page",
                    "locator": f"page {page + 1}",
                    "content_hash": digest,
                    "page": page,
                }
                locator = f"page:{page}"
                rows.append(
                    ItemRow(
                        item_id(signature, digest, locator),
                        source,
                        digest,
                        "page",
                        locator,
                        metadata,
                        f"page {page} of report {number}",
                        vector,
                    )
                )
                vectors[rows[-1].id] = vector
            store.upsert(
                [r.id for r in rows],
                np.stack([r.vector for r in rows]),
                [r.metadata for r in rows],
                [r.text for r in rows],
            )
            manifest.add_items(rows)
            manifest.finish_source(source, digest, 1000, 1, [r.id for r in rows])
    finally:
        store.close()
        manifest.close()
    return vectors


def nearest(index: MultimodalIndex, vectors: dict[str, np.ndarray], probe: str) -> list[str]:
    """The store's five nearest ids to one stored vector (the first is itself)."""
    return [hit.id for hit in index.store.query(vectors[probe], 5)]


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str, kind: str, *words: str) -> None:
    """One ``error: Kind: ...`` line (a model's loading bars may come before), no traceback."""
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {kind}: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], err


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    directory = tmp_path / "index"
    return directory, build_index(directory)


# -- item 6: a SIGKILL during rebuild ------------------------------------------------------------

KILLED_REBUILD = """
import sys, time
from qwen3_vl_rag.index import MultimodalIndex
from qwen3_vl_rag.index._store import VectorStore

def stalled(self, *args, **kwargs):
    print("writing", flush=True)  # the store was just emptied: the parent kills us now
    time.sleep(120)

VectorStore.upsert = stalled
with MultimodalIndex(sys.argv[1]) as index:
    index.rebuild()
"""


@pytest.mark.timeout(120)
def test_a_rebuild_killed_before_its_first_write_is_noticed_and_repaired(
    built: tuple[Path, dict[str, np.ndarray]], capsys: pytest.CaptureFixture[str]
) -> None:
    directory, vectors = built
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_REBUILD, str(directory)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "writing", child.stderr
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)

    # the store is empty under a full manifest: every command says so and names the fix
    with MultimodalIndex(directory, mode="read") as index:
        with pytest.raises(IndexCorruptedError, match=r"rebuild .* interrupted.* 0 vector\(s\)"):
            index.status()
        with pytest.raises(IndexCorruptedError, match="qwen3-vl-rag rebuild"):
            index.store.query(next(iter(vectors.values())), 5)
    with MultimodalIndex(directory) as index, pytest.raises(IndexCorruptedError, match="rebuild"):
        index.prune()
    code, out, err = cli(capsys, "status", "--index", str(directory))
    assert code == 2 and out == ""
    one_line_error(err, "IndexCorruptedError", "interrupted", "qwen3-vl-rag rebuild")

    code, out, _ = cli(capsys, "rebuild", "--index", str(directory))
    assert code == 0 and f"{ITEMS} vector(s)" in out
    with MultimodalIndex(directory, mode="read") as index:
        status = index.status()
        assert (status.items, status.vectors) == (ITEMS, ITEMS)
        probe = sorted(vectors)[7]
        assert nearest(index, vectors, probe)[0] == probe


def test_vectors_missing_from_the_store_are_noticed(
    built: tuple[Path, dict[str, np.ndarray]], capsys: pytest.CaptureFixture[str]
) -> None:
    directory, vectors = built
    store = VectorStore(directory)
    store.delete(sorted(vectors)[:40])
    store.close()
    with (
        MultimodalIndex(directory, mode="read") as index,
        pytest.raises(IndexCorruptedError, match=r"missing.* 260 vector\(s\) of the 300"),
    ):
        index.status()
    code, _, err = cli(capsys, "status", "--index", str(directory))
    assert code == 2
    one_line_error(err, "IndexCorruptedError", "qwen3-vl-rag rebuild")
    with MultimodalIndex(directory) as index:
        assert index.rebuild() == ITEMS
        assert index.status().vectors == ITEMS


# -- item 7: a damaged or emptied manifest -------------------------------------------------------


def test_an_emptied_manifest_never_wipes_the_store_and_is_recovered(
    built: tuple[Path, dict[str, np.ndarray]], capsys: pytest.CaptureFixture[str]
) -> None:
    directory, vectors = built
    (directory / MANIFEST).write_bytes(b"")
    for command in ("rebuild", "status", "prune"):
        code, _, err = cli(capsys, command, "--index", str(directory))
        assert code == 2, command
        one_line_error(err, "IndexCorruptedError", "records nothing", "qwen3-vl-rag recover")
    with pytest.raises(IndexCorruptedError, match="recover"):
        MultimodalIndex(directory)
    store = VectorStore(directory)
    assert store.count() == ITEMS  # nothing was deleted
    store.close()

    code, out, _ = cli(capsys, "recover", "--index", str(directory))
    assert code == 0 and f"{ITEMS} item(s)" in out
    assert [p.name for p in directory.glob(f"{MANIFEST}.damaged-*")]  # the old file is kept
    with MultimodalIndex(directory) as index:
        status = index.status()
        assert (status.sources, status.indexed, status.items, status.vectors) == (
            FILES,
            FILES,
            ITEMS,
            ITEMS,
        )
        assert index.signature == SIGNATURE
        recovered = {row.id: row for row in index.manifest.current_items()}
        assert set(recovered) == set(vectors)
        for item, vector in vectors.items():
            np.testing.assert_allclose(recovered[item].vector, vector, atol=1e-6)
        row = recovered[sorted(vectors)[3]]
        assert row.kind == "page" and row.locator.startswith("page:")
        assert row.text and row.text.startswith("page ")
        # and the store can be rebuilt from the recovered manifest, to the same answers
        probe = sorted(vectors)[11]
        before = nearest(index, vectors, probe)
        assert index.rebuild() == ITEMS
        assert nearest(index, vectors, probe) == before


@pytest.mark.parametrize("damage", ["random", "truncated"])
def test_a_damaged_manifest_is_a_typed_error_with_a_way_out(
    built: tuple[Path, dict[str, np.ndarray]], capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    directory, vectors = built
    path = directory / MANIFEST
    size = path.stat().st_size
    if damage == "random":
        damaged = np.random.default_rng(3).bytes(size)
    else:
        damaged = path.read_bytes()[: size // 3]
    path.write_bytes(damaged)
    for mode in ("read", "write"):
        with pytest.raises(IndexCorruptedError, match="qwen3-vl-rag recover"):
            MultimodalIndex(directory, mode=mode).status()  # type: ignore[arg-type]
    for command in ("status", "rebuild", "prune"):
        code, _, err = cli(capsys, command, "--index", str(directory))
        assert code == 2, command
        one_line_error(err, "IndexCorruptedError", "damaged", "qwen3-vl-rag recover")

    code, out, _ = cli(capsys, "recover", "--index", str(directory))
    assert code == 0 and f"{ITEMS} item(s)" in out
    kept = next(
        p for p in directory.glob(f"{MANIFEST}.damaged-*") if not p.name.endswith(("-wal", "-shm"))
    )
    assert kept.read_bytes() == damaged  # kept as it was
    with MultimodalIndex(directory) as index:
        assert (index.status().items, index.status().vectors) == (ITEMS, ITEMS)
        assert index.manifest.current_ids() == set(vectors)


def test_recover_leaves_an_intact_manifest_and_checks_every_id(
    built: tuple[Path, dict[str, np.ndarray]], capsys: pytest.CaptureFixture[str]
) -> None:
    directory, _ = built
    code, _, err = cli(capsys, "recover", "--index", str(directory))
    assert code == 2
    one_line_error(err, "ConfigurationError", "intact", "rebuild")
    assert not list(directory.glob(f"{MANIFEST}.damaged-*"))

    # a store whose recorded settings are not those its ids were made with is refused
    (directory / MANIFEST).write_bytes(b"")
    store = VectorStore(directory)
    store.record_signature({**SIGNATURE, "model": "another/model"})
    store.close()
    with pytest.raises(IndexMismatchError, match=f"{ITEMS} of the store's {ITEMS}"):
        MultimodalIndex.recover(directory)
    assert (directory / MANIFEST).read_bytes() == b""  # nothing written


# -- item 8: non-UTF-8 file names ----------------------------------------------------------------


def png(path: Path, colour: tuple[int, int, int]) -> Path:
    """A one-colour PNG, last modified a minute ago (a fresher mtime is not trusted)."""
    Image.new("RGB", (64, 48), colour).save(path, "PNG")
    past_ns = time.time_ns() - 60_000_000_000
    os.utime(path, ns=(past_ns, past_ns))
    return path


def test_a_latin1_name_and_its_escaped_lookalike_stay_two_files(
    tmp_path: Path, embedder: Qwen3VLEmbedder, reranker: Qwen3VLReranker
) -> None:
    from qwen3_vl_rag.index._paths import key_path

    folder = tmp_path / "corpus"
    folder.mkdir()
    latin1 = os.fsencode(folder) + b"/caf\xe9.png"  # one Latin-1 byte
    lookalike = os.fsencode(folder) + b"/caf\\xe9.png"  # a backslash, x, e, 9
    png(Path(os.fsdecode(latin1)), (200, 30, 30))
    png(Path(os.fsdecode(lookalike)), (30, 30, 200))
    with MultimodalIndex(tmp_path / "index", embedder, reranker, workers=1) as index:
        first = index.index([folder])
        assert first.counts()["indexed"] == 2
        status = index.status()
        assert (status.sources, status.items, status.vectors) == (2, 2, 2)
        # a second run finds both unchanged: nothing embedded, nothing deleted
        second = index.index([folder])
        assert second.counts()["unchanged"] == 2
        assert (second.embedded, second.deleted) == (0, 0)
        assert index.status().vectors == 2
        # each result reopens its own file: both rerank and get a thumbnail
        results = index.search("a colour", k=5, top_n=5)
        assert len(results) == 2
        for result in results:
            assert result.rerank_score is not None, result.metadata
            assert result.thumbnail is not None and result.thumbnail.is_file()
        assert {os.fsencode(key_path(r.source)) for r in results} == {latin1, lookalike}
        # both exist: prune forgets neither; then only the one that is gone
        assert index.prune().sources == []
        os.unlink(latin1)
        pruned = index.prune()
        assert len(pruned.sources) == 1 and pruned.vectors == 1
        (left,) = index.search("a colour", k=5, top_n=5, rerank=False)
        assert os.fsencode(key_path(left.source)) == lookalike


def test_a_recovered_manifest_lets_the_next_run_embed_nothing(
    tmp_path: Path, embedder: Qwen3VLEmbedder
) -> None:
    folder = tmp_path / "corpus"
    folder.mkdir()
    png(Path(os.fsdecode(os.fsencode(folder) + b"/caf\xe9.png")), (200, 30, 30))
    png(folder / "plain.png", (30, 200, 30))
    directory = tmp_path / "index"
    with MultimodalIndex(directory, embedder, workers=1) as index:
        index.index([folder])
        before = {row.id: row.source for row in index.manifest.current_items()}
    (directory / MANIFEST).write_bytes(b"")
    assert MultimodalIndex.recover(directory) == 2
    with MultimodalIndex(directory, embedder, workers=1) as index:
        assert {row.id: row.source for row in index.manifest.current_items()} == before
        again = index.index([folder])
        assert again.counts()["unchanged"] == 2
        assert (again.embedded, again.reused, again.deleted) == (0, 0, 0)
        assert index.store.all_ids() == set(before)


def test_a_schema_1_manifest_forgets_only_names_it_may_have_confused(tmp_path: Path) -> None:
    directory = tmp_path / "index"
    vectors = build_index(directory, schema_version=1)
    manifest = Manifest(directory / MANIFEST)
    ambiguous = sorted(row.path for row in manifest.sources())[:2]
    # schema 1 stored a non-UTF-8 byte as "\xe9", exactly like a name spelled with a backslash
    manifest.db.executemany(
        "UPDATE items SET source = ? WHERE source = ?",
        [(path.replace("report", "caf\\xe9-"), path) for path in ambiguous],
    )
    manifest.db.executemany(
        "UPDATE sources SET path = ? WHERE path = ?",
        [(path.replace("report", "caf\\xe9-"), path) for path in ambiguous],
    )
    manifest.close()
    with MultimodalIndex(directory) as index:
        status = index.status()
        assert (status.sources, status.items, status.vectors) == (
            FILES - 2,
            ITEMS - 2 * PAGES,
            ITEMS - 2 * PAGES,
        )
        assert index.manifest.get_meta("schema_version") == 2
        assert index.store.all_ids() == index.manifest.current_ids() < set(vectors)


# -- item 13: faults of the disk -----------------------------------------------------------------

UNDER_FILE_SIZE_LIMIT = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
if sys.argv[2] == "manifest":
    from qwen3_vl_rag.index import MultimodalIndex
    from qwen3_vl_rag.errors import IndexStorageError
    with MultimodalIndex(sys.argv[3]) as index:
        try:
            index.manifest.set_meta({"note": "x" * 4_000_000})
        except IndexStorageError as err:
            print(f"IndexStorageError: {err}")
    sys.exit(0)
from qwen3_vl_rag.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.timeout(120)
def test_a_full_disk_is_reported_as_full_not_as_damage(
    built: tuple[Path, dict[str, np.ndarray]],
) -> None:
    directory, vectors = built
    limit = str(256 * 1024)  # below the store's and the manifest's size: their writes fail
    done = run_python(UNDER_FILE_SIZE_LIMIT, limit, "rebuild", "--index", str(directory))
    assert done.returncode == 2, done.stderr
    one_line_error(done.stderr, "IndexStorageError", "full", "free some space")
    assert "rebuild" not in done.stderr.split("run the command")[0]

    done = run_python(UNDER_FILE_SIZE_LIMIT, limit, "manifest", str(directory))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("IndexStorageError: the disk holding"), done.stdout

    # with room again, the interrupted rebuild is named and finishes
    with MultimodalIndex(directory) as index:
        with pytest.raises(IndexCorruptedError, match="interrupted"):
            index.status()
        assert index.rebuild() == ITEMS
        probe = sorted(vectors)[5]
        assert nearest(index, vectors, probe)[0] == probe


@pytest.mark.timeout(300)
def test_indexing_onto_a_full_disk_says_so_and_loses_nothing(
    tmp_path: Path, embedder: Qwen3VLEmbedder, tiny_embedding_path: Path
) -> None:
    folder = tmp_path / "corpus"
    folder.mkdir()
    for number in range(2):
        png(folder / f"first{number}.png", (40 * number, 90, 200))
    flags = ["--model", str(tiny_embedding_path), "--device", "cpu", "--quiet"]

    def index_under_limit(directory: Path, limit: int) -> subprocess.CompletedProcess[str]:
        command = ["index", str(folder), "--index", str(directory), *flags]
        return run_python(UNDER_FILE_SIZE_LIMIT, str(limit), *command, timeout=240)

    # a new index whose store cannot even be created: full, not "corrupted, run rebuild"
    done = index_under_limit(tmp_path / "new", 64 * 1024)
    assert done.returncode == 2, done.stderr
    one_line_error(done.stderr, "IndexStorageError", "full", "free some space")

    # an index that grows past what the disk takes: the run stops, saying so
    directory = tmp_path / "index"
    with MultimodalIndex(directory, embedder, workers=1) as index:
        index.index([folder])
    for number in range(3):
        png(folder / f"second{number}.png", (200, 40 * number, 90))
    done = index_under_limit(directory, 40 * 1024)
    assert done.returncode == 2, done.stderr
    one_line_error(done.stderr, "IndexStorageError", "full")
    # with room again, the next run finishes it; store and manifest agree
    with MultimodalIndex(directory, embedder, workers=1) as index:
        report = index.index([folder])
        assert report.counts()["unchanged"] + report.counts()["indexed"] == 5
        status = index.status()
        assert (status.sources, status.items, status.vectors) == (5, 5, 5)
        assert index.store.all_ids() == index.manifest.current_ids()


def test_a_store_deleted_while_in_use_is_named_and_rebuilt(
    built: tuple[Path, dict[str, np.ndarray]],
) -> None:
    directory, vectors = built
    with MultimodalIndex(directory) as index:
        shutil.rmtree(directory / "chroma")
        some = sorted(vectors)[:3]
        with pytest.raises(IndexCorruptedError, match="deleted while the index was open"):
            index.store.upsert(
                some, np.stack([vectors[i] for i in some]), [{"kind": "page"}] * 3, [None] * 3
            )
        assert index.rebuild() == ITEMS
        assert index.status().vectors == ITEMS


def read_only_runner(directory: Path) -> list[str] | None:
    """A command prefix that runs a command with ``directory`` read-only, or ``None``.

    A read-only bind mount in a user namespace works as root and as a user; without user
    namespaces, a user (not root, who ignores modes) gets a directory without write permission.
    """
    mount = f'mount --bind -o ro {directory} {directory} && exec "$@"'
    probe = (
        subprocess.run(
            ["unshare", "-rm", "sh", "-c", mount, "sh", "true"], capture_output=True, check=False
        )
        if shutil.which("unshare")
        else None
    )
    if probe is not None and probe.returncode == 0:
        return ["unshare", "-rm", "sh", "-c", mount, "sh"]
    if os.geteuid() != 0:
        for path in [directory, *directory.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
        return []
    return None


@pytest.mark.timeout(300)
def test_a_read_only_index_can_be_searched(
    tmp_path: Path, embedder: Qwen3VLEmbedder, tiny_embedding_path: Path
) -> None:
    folder = tmp_path / "corpus"
    folder.mkdir()
    png(folder / "red.png", (220, 20, 20))
    png(folder / "blue.png", (20, 20, 220))
    directory = tmp_path / "index"
    with MultimodalIndex(directory, embedder, workers=1) as index:
        index.index([folder])
    runner = read_only_runner(directory)
    if runner is None:
        pytest.skip("no way to make a directory read-only here (root without user namespaces)")
    listing = sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))

    def command(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*runner, sys.executable, "-m", "qwen3_vl_rag.cli.main", *argv],
            capture_output=True,
            text=True,
            env={**subprocess_env(), "HF_HUB_OFFLINE": "1"},
            timeout=120,
            check=False,
        )

    # the lock file is there: a reader locks it opened read-only
    done = command("status", "--index", str(directory), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["vectors"] == 2
    # a copied index may come without one: there is no writer to share with
    mode = directory.stat().st_mode
    directory.chmod(mode | 0o200)  # (writable for a moment where it is read-only by its mode)
    (directory / ".lock").unlink()
    directory.chmod(mode)
    listing.remove(".lock")
    flags = ["--index", str(directory), "--model", str(tiny_embedding_path), "--device", "cpu"]
    done = command("search", "a red square", *flags, "--no-rerank", "--json")
    assert done.returncode == 0, done.stderr
    results: list[dict[str, Any]] = json.loads(done.stdout)
    assert sorted(Path(r["source"]).name for r in results) == ["blue.png", "red.png"]
    done = command("status", "--index", str(directory), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["vectors"] == 2
    # writing is refused with what to do
    done = command("prune", "--index", str(directory))
    assert done.returncode == 2
    one_line_error(done.stderr, "IndexStorageError", "cannot be written", "writable")
    assert sorted(str(p.relative_to(directory)) for p in directory.rglob("*")) == listing
