"""The ``qwen3-vl-rag`` command end to end on the tiny checkpoints: exit codes, output, report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from qwen3_vl_rag.cli.main import main
from qwen3_vl_rag.demo import make_corpus


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    Image.new("RGB", (200, 150), (220, 30, 30)).save(folder / "red.png")
    Image.new("RGB", (150, 200), (30, 30, 220)).save(folder / "blue.jpg")
    return folder


def models(embedding: Path, reranker: Path) -> list[str]:
    return ["--model", str(embedding), "--reranker", str(reranker), "--device", "cpu"]


def test_index_search_status_and_exit_codes(
    tmp_path: Path,
    corpus: Path,
    tiny_embedding_path: Path,
    tiny_reranker_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    index = tmp_path / "index"
    flags = ["--index", str(index), *models(tiny_embedding_path, tiny_reranker_path)]
    report_path = tmp_path / "report.json"
    assert main(["index", str(corpus), *flags, "--quiet", "--report", str(report_path)]) == 0
    out = capsys.readouterr().out
    assert "indexed 2 file(s) (2 items), unchanged 0, skipped 0, failed 0; 2 embedded" in out
    report = json.loads(report_path.read_text())
    assert report["counts"] == {"indexed": 2, "unchanged": 0, "skipped": 0, "failed": 0, "items": 2}
    assert report["embedded"] == 2

    # a broken file makes the run partial (exit 1), listed with its stage and error class
    (corpus / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    assert main(["index", str(corpus), *flags, "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "unchanged 2, skipped 0, failed 1; 0 embedded" in out
    assert "failed [open] " in out and "broken.png: ImageDecodeError:" in out

    # search uses the model recorded by `index`; --json is machine-readable
    assert main(["search", "a red square", "--index", str(index), "--json", "--top-n", "2"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["rank"] for r in results] == [1, 2]
    assert all(0.0 <= r["rerank_score"] <= 1.0 for r in results)
    assert results[0]["score"] >= results[1]["score"]
    assert {Path(r["source"]).name for r in results} == {"red.png", "blue.jpg"}
    assert all(Path(r["thumbnail"]).is_file() for r in results)

    gallery = tmp_path / "gallery.html"
    image_query = ["search", "--image", str(corpus / "red.png"), "--index", str(index)]
    assert main([*image_query, "--no-rerank", "--html", str(gallery)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 result(s) for ")
    assert " 1 " in out and "red.png" in out.splitlines()[2]  # the same image ranks first
    html = gallery.read_text()
    assert html.count('class="thumb"') == 3  # the query image and two results
    assert "data:image/jpeg;base64," in html

    assert main(["status", "--index", str(index), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["sources"], status["indexed"], status["failed"], status["items"]) == (3, 2, 1, 2)
    assert status["vectors"] == 2 and status["dimension"] == 64

    (corpus / "blue.jpg").unlink()
    assert main(["prune", "--index", str(index)]) == 0
    assert "removed 1 missing file(s), 1 vector(s)" in capsys.readouterr().out
    assert main(["rebuild", "--index", str(index)]) == 0
    assert "1 vector(s)" in capsys.readouterr().out


def test_fatal_errors_exit_2_with_a_clear_message(
    tmp_path: Path, corpus: Path, tiny_embedding_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--index", str(tmp_path / "nowhere")]) == 2
    assert "is not an index" in capsys.readouterr().err
    assert main(["index", str(tmp_path / "missing"), "--model", str(tiny_embedding_path)]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    index = tmp_path / "index"
    flags = ["--index", str(index), "--model", str(tiny_embedding_path), "--quiet"]
    assert main(["index", str(corpus), *flags]) == 0
    capsys.readouterr()
    assert main(["index", str(corpus), *flags, "--dim", "32"]) == 2
    err = capsys.readouterr().err
    assert "IndexMismatchError" in err and "dimension: index 64, given 32" in err
    assert main(["search", "--index", str(index)]) == 2
    assert "give a QUERY, an --image, or both" in capsys.readouterr().err


@pytest.mark.timeout(1800)  # it may train the tiny models first (once per recipe)
def test_the_installed_command_and_the_demo(
    tmp_path: Path, trained_embedding_path: Path, trained_reranker_path: Path
) -> None:
    command = Path(sys.executable).parent / "qwen3-vl-rag"
    if not command.exists():
        pytest.skip("the package is not installed in this environment (no console script)")
    done = subprocess.run(
        [str(command), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and "index" in done.stdout and "search" in done.stdout
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    demo = subprocess.run(
        [
            sys.executable,
            "-m",
            "qwen3_vl_rag.demo",
            "--output",
            str(tmp_path),
            "--device",
            "cpu",
            "--model",
            str(trained_embedding_path),
            "--reranker",
            str(trained_reranker_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert "indexed 7 file(s) (38 items), unchanged 0, skipped 0, failed 0" in demo.stdout
    assert "retrieval" in demo.stdout and "nDCG@5" in demo.stdout  # the evaluation ran
    assert (tmp_path / "gallery.html").read_text().count('class="thumb"') == 5
    assert sorted(p.name for p in make_corpus(tmp_path / "again").iterdir()) == [
        "annual-report.pdf",
        "billing-manual.pdf",
        "settings-screenshot.png",
        "square.mp4",
        "sunset.png",
    ]


def test_the_demo_rebuilds_an_index_an_earlier_demo_made_with_other_models(
    tmp_path: Path, corpus: Path, tiny_embedding_path: Path, tiny_reranker_path: Path
) -> None:
    from qwen3_vl_rag.demo import drop_stale_index

    index = tmp_path / "index"
    assert not drop_stale_index(index, tiny_embedding_path, None)  # nothing there yet
    flags = ["--index", str(index), *models(tiny_embedding_path, tiny_reranker_path), "--quiet"]
    assert main(["index", str(corpus), *flags]) == 0
    assert not drop_stale_index(index, tiny_embedding_path, None)  # the same: kept
    assert not drop_stale_index(index, tiny_embedding_path, 1843200)  # its own budget: kept
    assert index.is_dir()
    assert drop_stale_index(index, tiny_embedding_path, 81920)  # another budget: rebuilt
    assert not index.exists()
    assert main(["index", str(corpus), *flags]) == 0
    assert drop_stale_index(index, tiny_reranker_path, None)  # another model: rebuilt
    assert not index.exists()
