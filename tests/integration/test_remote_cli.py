"""``index --server`` and ``search --server --reranker-server`` on real vLLM servers.

An index built on the server and one built in process hold the same vectors: each is searched
both ways with the same results (ranks, sources, scores within 1e-5), and neither raises a
mismatch. An unreachable server is a one-line error naming its URL, with exit code 2.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from qwen3_vl_rag.cli.main import main
from tests.vllm_servers import Server

pytestmark = [pytest.mark.vllm, pytest.mark.enable_socket, pytest.mark.timeout(900)]

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    Image.new("RGB", (200, 150), (220, 30, 30)).save(folder / "red.png")
    Image.new("RGB", (150, 200), (30, 30, 220)).save(folder / "blue.jpg")
    noise = np.random.default_rng(1).integers(0, 255, size=(120, 160, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "noise.png")
    return folder


@pytest.fixture(autouse=True)
def _no_key_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QWEN3_VL_RAG_API_KEY", raising=False)


def closed_port_url() -> str:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def search(capsys: pytest.CaptureFixture[str], index: Path, *flags: str) -> list[dict[str, Any]]:
    code = main(["search", "a red square", "--index", str(index), "--json", "--quiet", *flags])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    results: list[dict[str, Any]] = json.loads(captured.out)
    return results


def assert_same_results(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [(r["rank"], Path(r["source"]).name) for r in got] == [
        (r["rank"], Path(r["source"]).name) for r in expected
    ]
    for key in ("score", "vector_score", "rerank_score"):
        assert np.allclose([r[key] for r in got], [r[key] for r in expected], atol=TOLERANCE), key


def test_an_index_built_on_the_server_or_in_process_is_searched_either_way(
    tmp_path: Path,
    corpus: Path,
    vllm_embedding: Server,
    vllm_reranker: Server,
    capsys: pytest.CaptureFixture[str],
) -> None:
    served, local = tmp_path / "served", tmp_path / "local"
    assert main(["index", str(corpus), "--index", str(served), "--server", vllm_embedding.url]) == 0
    err = capsys.readouterr().err
    assert f"connecting to {vllm_embedding.url} ..." in err
    in_process = ["--model", str(vllm_embedding.model), "--device", "cpu"]
    assert main(["index", str(corpus), "--index", str(local), *in_process, "--quiet"]) == 0
    capsys.readouterr()

    statuses = []
    for index in (served, local):
        assert main(["status", "--index", str(index), "--json"]) == 0
        statuses.append(json.loads(capsys.readouterr().out))
    assert statuses[0]["model"] == statuses[1]["model"]  # the checkpoint, recorded as usual
    assert statuses[0]["vectors"] == statuses[1]["vectors"] == 3

    reranker = ["--reranker", str(vllm_reranker.model), "--device", "cpu"]
    servers = ["--server", vllm_embedding.url, "--reranker-server", vllm_reranker.url]
    expected = search(capsys, local, *reranker)
    assert len(expected) == 3 and all(r["rerank_score"] is not None for r in expected)
    assert_same_results(search(capsys, served, *servers), expected)  # all on the servers
    assert_same_results(search(capsys, local, *servers), expected)  # built here, served there
    assert_same_results(search(capsys, served, *reranker), expected)  # built there, run here
    mixed = search(capsys, served, "--server", vllm_embedding.url, *reranker)
    assert_same_results(mixed, expected)
    no_rerank = search(capsys, local, "--server", vllm_embedding.url, "--no-rerank")
    assert [r["rerank_score"] for r in no_rerank] == [None] * 3


def test_a_named_checkpoint_and_the_gallery_with_servers(
    tmp_path: Path,
    corpus: Path,
    vllm_embedding: Server,
    vllm_reranker: Server,
    capsys: pytest.CaptureFixture[str],
) -> None:
    index = tmp_path / "index"
    served = ["--server", vllm_embedding.url, "--model", str(vllm_embedding.model), "--quiet"]
    assert main(["index", str(corpus), "--index", str(index), *served]) == 0
    capsys.readouterr()
    gallery = tmp_path / "gallery.html"
    flags = ["--index", str(index), "--server", vllm_embedding.url, "--html", str(gallery)]
    code = main(["search", "red", *flags, "--reranker-server", vllm_reranker.url, "--quiet"])
    assert code == 0, capsys.readouterr().err
    html = gallery.read_text()
    assert str(vllm_embedding.model) in html and str(vllm_reranker.model) in html


def test_unreachable_servers_exit_2_with_one_line_naming_them(
    tmp_path: Path, corpus: Path, vllm_embedding: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    index = tmp_path / "index"
    assert main(["index", str(corpus), "--index", str(index), "--server", vllm_embedding.url]) == 0
    capsys.readouterr()
    nowhere = closed_port_url()
    for flags in (
        ["--server", nowhere],
        ["--server", vllm_embedding.url, "--reranker-server", nowhere],  # connected on demand
    ):
        code = main(["search", "red", "--index", str(index), "--quiet", *flags])
        captured = capsys.readouterr()
        assert code == 2 and captured.out == ""
        (line,) = captured.err.strip().splitlines()
        assert line.startswith("error: ServerUnreachableError: ") and nowhere in line
    # nothing recalled, nothing to rerank: the reranker's server is never contacted
    flags = ["--server", vllm_embedding.url, "--reranker-server", nowhere, "--kind", "video"]
    assert main(["search", "red", "--index", str(index), "--quiet", "--json", *flags]) == 0
    assert json.loads(capsys.readouterr().out) == []
