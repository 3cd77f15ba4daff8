"""What a new user meets at the command line: the demo, help, version, quiet and clean output."""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from transformers.utils import logging as transformers_logging

from qwen3_vl_rag.cli.gallery import write_gallery
from qwen3_vl_rag.cli.main import main
from qwen3_vl_rag.demo import main as demo
from qwen3_vl_rag.demo import make_demo_corpus
from qwen3_vl_rag.engine._embedder import Qwen3VLEmbedder
from qwen3_vl_rag.engine._reranker import Qwen3VLReranker
from qwen3_vl_rag.index import MultimodalIndex
from qwen3_vl_rag.index._results import SearchResult
from qwen3_vl_rag.testing import RANDOM_WEIGHTS_MARKER, is_random_test_checkpoint

# What no line of human output or HTML text may carry (C0 but newline, DEL, C1).
CONTROLS = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def run(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` in this process: its exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def index(
    tmp_path_factory: pytest.TempPathFactory, tiny_embedding_path: Path, tiny_reranker_path: Path
) -> Path:
    folder = tmp_path_factory.mktemp("usability")
    corpus = folder / "corpus"
    corpus.mkdir()
    Image.new("RGB", (200, 150), (220, 30, 30)).save(corpus / "red.png")
    Image.new("RGB", (150, 200), (30, 30, 220)).save(corpus / "blue.png")
    models = ["--model", str(tiny_embedding_path), "--reranker", str(tiny_reranker_path)]
    directory = folder / "index"
    code, out, _ = run(["index", str(corpus), "--index", str(directory), *models, "--quiet"])
    assert code == 0, out
    return directory


@pytest.fixture
def model_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each embedder and reranker load, and each query embedding, in order."""
    events: list[str] = []
    load_embedder, load_reranker = Qwen3VLEmbedder.from_pretrained, Qwen3VLReranker.from_pretrained
    embed_queries = Qwen3VLEmbedder.embed_queries

    def embedder(*args: object, **kwargs: object) -> Qwen3VLEmbedder:
        events.append("embedder")
        return load_embedder(*args, **kwargs)  # type: ignore[arg-type]

    def reranker(*args: object, **kwargs: object) -> Qwen3VLReranker:
        events.append("reranker")
        return load_reranker(*args, **kwargs)  # type: ignore[arg-type]

    def queries(self: Qwen3VLEmbedder, *args: object, **kwargs: object) -> object:
        events.append("query")
        return embed_queries(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Qwen3VLEmbedder, "from_pretrained", embedder)
    monkeypatch.setattr(Qwen3VLReranker, "from_pretrained", reranker)
    monkeypatch.setattr(Qwen3VLEmbedder, "embed_queries", queries)
    return events


# -- --version and --help ------------------------------------------------------------------------


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"qwen3-vl-rag {importlib.metadata.version('qwen3-vl-rag')}\n"


def _help(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_help_shows_every_default(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # no line breaks inside the names asserted below
    index = _help("index", capsys)
    assert "--index INDEX index directory (default: .qwen3vl-index)" in index
    assert "(default: the index's, else Qwen/Qwen3-VL-Embedding-2B)" in index
    assert "(default: the index's, else Qwen/Qwen3-VL-Reranker-2B)" in index
    assert "--max-pixels MAX_PIXELS pixel budget per page or image (default: the index's, " in index
    assert "--dim DIM store the first N dimensions (Matryoshka; default: all" in index
    assert "(default: one item per video)" in index
    search = _help("search", capsys)
    assert "--index INDEX index directory (default: .qwen3vl-index)" in search
    assert (
        "--model MODEL embedding model: a Hub id or a local directory (default: the index's"
        in search
    )
    assert "-k K items recalled (default 20)" in search
    assert "--quiet" in search
    recover = _help("recover", capsys)
    assert "--device DEVICE with --model: cuda, cpu or auto (default: auto)" in recover
    for text in (index, search, recover):
        assert "(default: None)" not in text and "(default: False)" not in text


# -- the reranker loads only when a search reranks ------------------------------------------------


def test_index_and_unreranked_search_never_load_the_reranker(
    tmp_path: Path, tiny_embedding_path: Path, model_loads: list[str]
) -> None:
    Image.new("RGB", (64, 64), (0, 200, 0)).save(tmp_path / "green.png")
    flags = ["--index", str(tmp_path / "index"), "--model", str(tiny_embedding_path)]
    assert run(["index", str(tmp_path / "green.png"), *flags, "--quiet"])[0] == 0
    assert model_loads == ["embedder"]
    model_loads.clear()
    code, out, _ = run(["search", "green", "--index", str(tmp_path / "index"), "--no-rerank"])
    assert code == 0 and out.startswith("1 result(s)")
    assert model_loads == ["embedder", "query"]


def test_search_loads_the_reranker_after_the_first_stage(
    index: Path, model_loads: list[str]
) -> None:
    code, out, _ = run(["search", "red", "--index", str(index), "--top-n", "1"])
    assert code == 0 and out.startswith('1 result(s) for "red"')
    assert model_loads == ["embedder", "query", "reranker"]
    model_loads.clear()
    # nothing recalled (no videos here): nothing to rerank, no reranker loaded
    code, out, _ = run(["search", "red", "--index", str(index), "--kind", "video"])
    assert (code, out.splitlines()[0]) == (0, '0 result(s) for "red"')
    assert model_loads == ["embedder", "query"]


# -- quiet, progress and notes --------------------------------------------------------------------


def test_search_quiet_prints_only_the_results(index: Path, tmp_path: Path) -> None:
    gallery = tmp_path / "gallery.html"
    code, out, err = run(["search", "red", "--index", str(index), "--html", str(gallery)])
    assert code == 0
    assert "random-weight test checkpoints" in err  # the note, on stderr
    assert out.splitlines()[-1] == f"gallery: {gallery}"

    bars = transformers_logging.is_progress_bar_enabled()
    code, out, err = run(
        ["search", "red", "--index", str(index), "--html", str(gallery), "--quiet"]
    )
    assert code == 0
    assert err == ""
    assert transformers_logging.is_progress_bar_enabled() == bars  # as it was, after the command
    lines = out.splitlines()
    assert lines[0] == '2 result(s) for "red"'
    assert len(lines) == 4  # the heading, the columns, two results
    assert gallery.is_file()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bars_only_on_a_terminal(
    tmp_path: Path, tiny_embedding_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a", "b"):
        Image.new("RGB", (64, 64), (len(name) * 90, 0, 0)).save(tmp_path / f"{name}.png")
    flags = ["--model", str(tiny_embedding_path), "--device", "cpu"]
    # a pipe (as in CI logs or `2>&1 | tee`): no bars
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "qwen3_vl_rag.cli.main",
            "index",
            str(tmp_path / "a.png"),
            "--index",
            str(tmp_path / "piped"),
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "indexed 1 file(s)" in done.stdout
    lines = re.split(r"[\r\n]", done.stderr)
    assert not [line for line in lines if re.match(r"\s*(files|items):", line)], done.stderr
    assert "\x1b[" not in done.stderr  # no cursor moves between two bars

    # a terminal: the bars are drawn
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["index", str(tmp_path / "b.png"), "--index", str(tmp_path / "tty"), *flags])
    assert code == 0
    assert re.search(r"files: .*1file", terminal.getvalue())
    assert re.search(r"items: .*1item", terminal.getvalue())


# -- control characters --------------------------------------------------------------------------


def _dirty_result(source: str) -> SearchResult:
    return SearchResult(
        rank=1,
        id="p1",
        kind="page",
        source=source,
        locator="page\x85 1",
        vector_score=0.5,
        rerank_score=0.6,
        text="Revenue\x88 grew\x00 12%\x1b[31m in\x9b Q4\x07\x7f.\u202e",
        metadata={"page": 0},
    )


def test_control_characters_never_reach_the_output(
    index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Old indexes hold PDF text with controls (U+0088): snippets drop them, names escape them."""
    source = str(tmp_path / "re\x1bport.pdf")
    monkeypatch.setattr(MultimodalIndex, "search", lambda *args, **kwargs: [_dirty_result(source)])
    gallery = tmp_path / "gallery.html"
    code, out, _ = run(["search", "q", "--index", str(index), "--html", str(gallery)])
    assert code == 0
    assert not CONTROLS.search(out) and "\u202e" not in out
    assert "Revenue grew 12%[31m in Q4." in out  # the snippet: controls dropped
    assert "re\\x1bport.pdf" in out  # the name: the control shown, not obeyed

    document = gallery.read_text(encoding="utf-8")
    assert not CONTROLS.search(document.replace("\t", "")) and "\u202e" not in document
    assert "Revenue grew 12%[31m in Q4." in document
    assert "re\\x1bport.pdf" in document and "page\\x85 1" in document


# -- random-weight test checkpoints are named as such --------------------------------------------


def _retrained(checkpoint: Path, folder: Path) -> Path:
    """A copy of ``checkpoint`` saved again as training would: without the marker."""
    from safetensors.torch import load_file, save_file

    folder.mkdir()
    for file in checkpoint.iterdir():
        if file.suffix != ".safetensors":
            (folder / file.name).write_bytes(file.read_bytes())
    tensors = load_file(str(checkpoint / "model.safetensors"))
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def test_a_hub_id_in_the_local_cache_is_recognised(
    tmp_path: Path, tiny_embedding_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    commit = "0" * 40
    repo = tmp_path / "hub" / "models--someone--tiny-embedding"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    weights = (tiny_embedding_path / "model.safetensors").read_bytes()
    (repo / "snapshots" / commit / "model.safetensors").write_bytes(weights)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert is_random_test_checkpoint("someone/tiny-embedding")
    assert not is_random_test_checkpoint("someone/not-cached")


def test_the_gallery_warns_about_random_weight_models(
    tmp_path: Path, tiny_embedding_path: Path, tiny_reranker_path: Path
) -> None:
    assert is_random_test_checkpoint(tiny_embedding_path)
    assert is_random_test_checkpoint(str(tiny_reranker_path))
    trained = _retrained(tiny_embedding_path, tmp_path / "trained")
    assert not is_random_test_checkpoint(trained)
    assert not is_random_test_checkpoint("Qwen/Qwen3-VL-Embedding-2B")
    assert not is_random_test_checkpoint(tmp_path / "missing")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.safetensors").write_bytes(b"\xff" * 8 + b"{}")
    assert not is_random_test_checkpoint(tmp_path / "broken")
    header = (tiny_embedding_path / "model.safetensors").read_bytes()[:4096]
    assert f'"{RANDOM_WEIGHTS_MARKER}":"true"'.encode() in header

    hits = [_dirty_result("report.pdf")]
    warned = write_gallery(
        tmp_path / "a.html", hits, query="q", models=[tiny_embedding_path, trained]
    ).read_text()
    banner = re.search(r'<p class="warning" role="note">(.*?)</p>', warned, re.S)
    assert banner is not None
    assert str(tiny_embedding_path) in banner.group(1)
    assert str(trained) not in banner.group(1)
    assert "ranking means nothing" in banner.group(1)
    assert str(trained) in warned  # the header names every model

    calm = write_gallery(tmp_path / "b.html", hits, query="q", models=[trained]).read_text()
    assert 'class="warning"' not in calm
    assert 'class="warning"' not in write_gallery(tmp_path / "c.html", hits).read_text()


# -- the demo --------------------------------------------------------------------------------------


def test_the_demo_corpus_is_byte_for_byte_the_same(tmp_path: Path) -> None:
    first = make_demo_corpus(tmp_path / "one" / "corpus")[0]
    second = make_demo_corpus(tmp_path / "two" / "c")[0]
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir()) and len(names) == 7
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


@pytest.fixture(scope="module")
def demo_run(
    tmp_path_factory: pytest.TempPathFactory, tiny_embedding_path: Path, tiny_reranker_path: Path
) -> Iterator[tuple[Path, str]]:
    """The demo run in a folder, its output in a folder whose name has a space; what it printed."""
    where = tmp_path_factory.mktemp("demo")
    previous = Path.cwd()
    os.chdir(where)
    try:
        out = io.StringIO()
        argv = ["--output", "demo output", "--device", "cpu"]
        argv += ["--model", str(tiny_embedding_path), "--reranker", str(tiny_reranker_path)]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            assert demo(argv) == 0
        yield where, out.getvalue()
    finally:
        os.chdir(previous)


def test_the_demo_prints_commands_that_paste_and_reruns_embed_nothing(
    demo_run: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    where, printed = demo_run
    assert "indexed 7 file(s) (38 items), unchanged 0, skipped 0, failed 0; 38 embedded" in printed
    assert f"runs as printed from {shlex.quote(str(where))}:" in printed
    commands = [shlex.split(line[2:]) for line in printed.splitlines() if line.startswith("$ ")]
    assert [c[:2] for c in commands] == [
        ["qwen3-vl-rag", "index"],
        ["qwen3-vl-rag", "search"],
        ["qwen3-vl-rag", "search"],
        ["qwen3-vl-rag", "evaluate"],
        ["qwen3-vl-rag", "status"],
    ]
    index, search = commands[0][1:], commands[1][1:]
    assert search[1] == "red bar chart of quarterly revenue"
    assert "demo output/index" in search

    # A second run generates the corpus again, then indexes it: every file is unchanged.
    monkeypatch.chdir(where)
    make_demo_corpus(Path("demo output", "corpus"))
    code, out, _ = run(index)  # as pasted into a shell in that folder
    assert code == 0
    assert "indexed 0 file(s) (0 items), unchanged 7, skipped 0, failed 0; 0 embedded" in out

    code, out, _ = run(search)
    assert code == 0
    assert out.startswith('5 result(s) for "red bar chart of quarterly revenue"')
    gallery = (where / "demo output" / "gallery.html").read_text()
    assert 'class="warning"' in gallery  # the demo's tiny models are named as such
