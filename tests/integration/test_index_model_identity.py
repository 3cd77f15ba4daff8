"""An index knows its model by what it is (config and weights), not by the folder it lies in."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from qwen3_vl_rag import Qwen3VLEmbedder
from qwen3_vl_rag.cli.main import main
from qwen3_vl_rag.errors import IndexMismatchError, ModelLoadError
from qwen3_vl_rag.index import MultimodalIndex
from qwen3_vl_rag.index._ids import signature_hash
from qwen3_vl_rag.index._manifest import Manifest
from qwen3_vl_rag.index._signature import FINGERPRINT
from qwen3_vl_rag.testing import build_tiny_checkpoint


@pytest.fixture
def project(tmp_path: Path, tiny_embedding_path: Path, tiny_reranker_path: Path) -> Path:
    """A folder holding its models and its documents, as `make demo` leaves one."""
    folder = tmp_path / "project"
    shutil.copytree(tiny_embedding_path, folder / "models" / "embedding")
    shutil.copytree(tiny_reranker_path, folder / "models" / "reranker")
    corpus = folder / "corpus"
    corpus.mkdir()
    Image.new("RGB", (200, 150), (220, 30, 30)).save(corpus / "red.png")
    Image.new("RGB", (150, 200), (30, 30, 220)).save(corpus / "blue.png")
    return folder


def index_with_relative_paths(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`qwen3-vl-rag index corpus --index idx --model models/embedding ...`, run in ``project``."""
    monkeypatch.chdir(project)
    models = ["--model", "models/embedding", "--reranker", "models/reranker"]
    assert main(["index", "corpus", "--index", "idx", *models, "--device", "cpu", "--quiet"]) == 0
    return project / "idx"


def search_json(capsys: pytest.CaptureFixture[str], *args: str | Path) -> dict[str, float]:
    """`search "red" --no-rerank --json` in this process: vector score by file name."""
    capsys.readouterr()
    code = main(["search", "red", "--no-rerank", "--json", "--device", "cpu", *map(str, args)])
    assert code == 0
    results = json.loads(capsys.readouterr().out)
    return {Path(r["source"]).name: r["vector_score"] for r in results}


def test_an_index_made_with_relative_paths_is_searched_from_another_directory(
    tmp_path: Path, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = index_with_relative_paths(project, monkeypatch)
    with MultimodalIndex(index, mode="read") as opened:
        assert opened.status().model == str((project / "models" / "embedding").resolve())
        assert opened.reranker_model() == str((project / "models" / "reranker").resolve())
        assert len(opened.signature[FINGERPRINT]) == 64

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (*sys.path, env.get("PYTHONPATH", "")) if p)
    command = ["search", "red", "--index", str(index), "--json", "--device", "cpu"]
    done = subprocess.run(
        [sys.executable, "-m", "qwen3_vl_rag.cli.main", *command],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert {Path(r["source"]).name for r in results} == {"red.png", "blue.png"}
    assert all(r["rerank_score"] is not None for r in results)  # the recorded reranker loaded


def test_the_same_checkpoint_by_another_path_or_in_another_folder_is_accepted(
    tmp_path: Path,
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    index = index_with_relative_paths(project, monkeypatch)
    recorded = search_json(capsys, "--index", "idx")

    monkeypatch.chdir(tmp_path)
    absolute = project / "models" / "embedding"
    assert search_json(capsys, "--index", index, "--model", absolute) == recorded
    copy = shutil.copytree(absolute, tmp_path / "copied" / "embedding")
    assert search_json(capsys, "--index", index, "--model", copy) == recorded
    link = tmp_path / "link"
    link.symlink_to(copy)
    assert search_json(capsys, "--index", index, "--model", "link") == recorded


def test_another_checkpoint_of_the_same_shape_is_refused_naming_both(
    tmp_path: Path, embedder: Qwen3VLEmbedder, tiny_embedding_path: Path
) -> None:
    Image.new("RGB", (64, 64), (200, 0, 0)).save(tmp_path / "red.png")
    with MultimodalIndex(tmp_path / "index", embedder, workers=1) as index:
        index.index([tmp_path / "red.png"])
    other_path = build_tiny_checkpoint(tmp_path / "seed-7", seed=7)
    # the same config, tokenizer and file names: only the weights differ
    assert (other_path / "config.json").read_bytes() == (
        tiny_embedding_path / "config.json"
    ).read_bytes()
    other = Qwen3VLEmbedder.from_pretrained(other_path, device="cpu")
    with pytest.raises(IndexMismatchError) as refused:
        MultimodalIndex(tmp_path / "index", other)
    message = str(refused.value)
    assert str(tiny_embedding_path.resolve()) in message
    assert str(other_path.resolve()) in message
    assert "another checkpoint" in message


def test_index_again_without_a_model_uses_the_recorded_ones(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    index = index_with_relative_paths(project, monkeypatch)
    capsys.readouterr()
    Image.new("RGB", (90, 90), (30, 220, 30)).save(project / "corpus" / "green.png")
    assert main(["index", "corpus", "--index", str(index), "--device", "cpu", "--quiet"]) == 0
    assert "indexed 1 file(s) (1 items), unchanged 2" in capsys.readouterr().out
    with MultimodalIndex(index, mode="read") as opened:
        assert opened.embedding_model() == str((project / "models" / "embedding").resolve())
        assert opened.reranker_model() == str((project / "models" / "reranker").resolve())


def test_a_recorded_model_folder_that_is_gone_is_named_with_the_fix(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    index = index_with_relative_paths(project, monkeypatch)
    capsys.readouterr()
    moved = project / "moved"
    (project / "models").rename(moved)
    for command in (["search", "red", "--no-rerank"], ["index", "corpus", "--quiet"]):
        assert main([*command, "--index", str(index), "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert "ModelLoadError" in err and "does not exist" in err, err
        assert str(project / "models" / "embedding") in err and "--model PATH" in err
    with MultimodalIndex(index, mode="read") as opened, pytest.raises(ModelLoadError):
        opened.embedding_model()

    # given again from its new place, it is the same model
    assert search_json(capsys, "--index", index, "--model", moved / "embedding")


def test_an_index_recorded_before_fingerprints_is_compared_as_before_then_gains_one(
    tmp_path: Path,
    embedder: Qwen3VLEmbedder,
    tiny_embedding_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    Image.new("RGB", (64, 64), (200, 0, 0)).save(tmp_path / "red.png")
    with MultimodalIndex(tmp_path / "index", embedder, workers=1) as index:
        index.index([tmp_path / "red.png"])
        ids = index.store.all_ids()
        # as an older version wrote it: the path as given (relative), no fingerprint
        legacy = {k: v for k, v in index.signature.items() if k != FINGERPRINT}
        legacy["model"] = tiny_embedding_path.name
        index.manifest.set_meta({"signature": legacy})
        index.store.record_signature(legacy)

    monkeypatch.chdir(tmp_path)  # the old comparison, by name: another name is refused
    with pytest.raises(IndexMismatchError, match="model: index 'embedding', given"):
        MultimodalIndex(tmp_path / "index", embedder)

    monkeypatch.chdir(tiny_embedding_path.parent)  # where the relative name leads to it
    with MultimodalIndex(tmp_path / "index", embedder, mode="read") as index:
        assert FINGERPRINT not in index.signature  # a reader writes nothing
    with MultimodalIndex(tmp_path / "index", embedder) as index:
        assert index.signature[FINGERPRINT] == embedder.backbone.loaded.location.fingerprint()
        assert index.signature["model"] == "embedding"  # kept: the ids hash it
        assert index.signature_hash == signature_hash(legacy)  # the ids it makes are the same
        assert index.store.all_ids() == ids
        assert index.store.recorded_signature() == index.signature  # for `recover`

    # from now on, known by what it is: from anywhere, by any path
    monkeypatch.chdir(tmp_path)
    copy = Qwen3VLEmbedder.from_pretrained(
        shutil.copytree(tiny_embedding_path, tmp_path / "copy"), device="cpu"
    )
    with MultimodalIndex(tmp_path / "index", copy, mode="read") as index:
        assert [hit.id for hit in index.search("red", rerank=False)] == sorted(ids)


@pytest.mark.parametrize(
    ("recorded", "local"),
    [
        ("Qwen/Qwen3-VL-Embedding-2B", False),  # a Hub id (recorded without a revision)
        ("tiny-embedding", False),  # may be a Hub id too: loaded as before
        ("./models/embedding", True),
        ("demo-output/models/embedding", True),
    ],
)
def test_a_model_name_recorded_before_fingerprints_is_read_as_it_was_meant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recorded: str, local: bool
) -> None:
    monkeypatch.chdir(tmp_path)
    signature = {
        "model": recorded,
        "revision": None,
        "dimension": 64,
        "max_pixels": 200704,
        "min_pixels": 3136,
        "factor": 32,
        "fps": 1.0,
        "max_frames": 8,
        "total_pixels": None,
        "segment_seconds": None,
        "instruction": "Represent the user's input.",
    }
    manifest = Manifest(tmp_path / "manifest.sqlite3")
    manifest.set_meta({"signature": signature, "schema_version": 2})
    manifest.close()
    with MultimodalIndex(tmp_path, mode="read") as index:
        if local:
            with pytest.raises(ModelLoadError, match="does not exist"):
                index.embedding_model()
        else:
            assert index.embedding_model() == recorded
