"""Evaluation end to end on the tiny checkpoints: a BEIR folder of texts, images and PDF pages,
and an index built from the same files, named in qrels by path, page and id."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qwen3_vl_rag import MultimodalIndex, Qwen3VLEmbedder, Qwen3VLReranker
from qwen3_vl_rag.errors import DatasetError
from qwen3_vl_rag.evaluate import evaluate, evaluate_index, load_beir
from qwen3_vl_rag.media import MediaBudget, load_pdf
from tests.evaluation_data import picture_beir

SMALL = 64 * 32 * 32  # pages and images at 64 visual tokens: quick on CPU


@pytest.fixture(scope="module")
def small_embedder(tiny_embedding_path: Path) -> Qwen3VLEmbedder:
    return Qwen3VLEmbedder.from_pretrained(tiny_embedding_path, device="cpu", max_pixels=SMALL)


@pytest.fixture(scope="module")
def small_reranker(tiny_reranker_path: Path) -> Qwen3VLReranker:
    return Qwen3VLReranker.from_pretrained(tiny_reranker_path, device="cpu", max_pixels=SMALL)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return picture_beir(tmp_path_factory.mktemp("beir"))


def test_a_beir_folder_with_both_models(
    folder: Path, small_embedder: Qwen3VLEmbedder, small_reranker: Qwen3VLReranker
) -> None:
    with load_beir(folder) as data:
        report = evaluate(
            small_embedder, data, reranker=small_reranker, k_values=(1, 6), rerank_top=3
        )
    retrieval, reranked = report.stage("retrieval"), report.stage("reranked")
    for stage in (retrieval, reranked):
        assert set(stage.run) == {"q-chart", "q-red"}
        assert all(len(scores) == 6 for scores in stage.run.values())  # the whole corpus
        assert stage.metrics["R@6"] == 1.0  # everything relevant is somewhere in the six
        assert all(0.0 <= value <= 1.0 for value in stage.metrics.values())
    for query in ("q-chart", "q-red"):
        first = retrieval.ranking(query)
        second = reranked.ranking(query)
        assert set(second[:3]) == set(first[:3]) and second[3:] == first[3:]
        assert all(0.0 <= reranked.run[query][doc] <= 1.0 for doc in second[:3])
    # a page's score is the cosine of the page as the embedder sees it (rendered at its size)
    (page,) = load_pdf(
        folder / "report.pdf", pages=[1], budget=MediaBudget.matching(small_embedder)
    )
    vectors = small_embedder.embed_documents([page])
    query = small_embedder.embed_queries(["bar chart of quarterly revenue"])
    expected = float((query @ vectors.T)[0, 0])
    assert retrieval.run["q-chart"]["p-2"] == pytest.approx(expected, abs=1e-4)
    assert report.settings["model"] == small_embedder.model_id


@pytest.fixture(scope="module")
def index_dir(
    folder: Path, small_embedder: Qwen3VLEmbedder, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    directory = tmp_path_factory.mktemp("index") / "index"
    with MultimodalIndex(directory, small_embedder) as index:
        report = index.index([folder / "images", folder / "report.pdf"])
    assert report.counts()["items"] == 5  # two images and three pages
    return directory


def page_one_id(index: MultimodalIndex) -> str:
    hits = index.search("report", k=10, rerank=False, top_n=10)
    (hit,) = [hit for hit in hits if hit.kind == "page" and hit.metadata["page"] == 0]
    return hit.id


def test_an_index_with_qrels_naming_items_by_path_page_and_id(
    folder: Path,
    index_dir: Path,
    small_embedder: Qwen3VLEmbedder,
    small_reranker: Qwen3VLReranker,
    tmp_path: Path,
) -> None:
    with MultimodalIndex(index_dir, small_embedder, small_reranker, mode="read") as index:
        by_id = page_one_id(index)
        queries = tmp_path / "queries.jsonl"
        queries.write_text(
            json.dumps({"_id": "q-chart", "text": "bar chart of quarterly revenue"})
            + "\n"
            + json.dumps({"_id": "q-red", "image": str(folder / "images" / "red.png")})
            + "\n"
        )
        qrels = folder / "index-qrels.tsv"  # paths are relative to the qrels file's folder
        qrels.write_text(
            f"q-chart\treport.pdf#page=2\t2\nq-chart\t{by_id}\t1\nq-red\timages/red.png\t1\n"
        )
        report = evaluate_index(index, queries, qrels, k_values=(1, 5), rerank_top=2)
    retrieval, reranked = report.stage("retrieval"), report.stage("reranked")
    assert (report.queries, report.documents) == (2, 5)
    for stage in (retrieval, reranked):
        assert stage.metrics["R@5"] == 1.0, stage.run
        names = set(stage.run["q-chart"])
        assert {"report.pdf#page=2", by_id} <= names and len(names) == 5
        others = names - {"report.pdf#page=2", by_id, "images/red.png"}
        assert all(len(name) == 32 and int(name, 16) >= 0 for name in others)  # by item id
        assert "images/red.png" in stage.run["q-red"]
    head = reranked.ranking("q-chart")[:2]
    assert set(head) == set(retrieval.ranking("q-chart")[:2])
    assert reranked.ranking("q-chart")[2:] == retrieval.ranking("q-chart")[2:]
    # the judged page is found by its path and its page number: same score either way named
    assert retrieval.run["q-chart"]["report.pdf#page=2"] == pytest.approx(
        float(
            small_embedder.embed_queries(["bar chart of quarterly revenue"])[0]
            @ _stored_vector(index_dir, small_embedder, folder / "report.pdf", page=1)
        ),
        abs=1e-4,
    )


def _stored_vector(index_dir: Path, embedder: Qwen3VLEmbedder, pdf: Path, page: int) -> np.ndarray:
    (item,) = load_pdf(pdf, pages=[page], budget=MediaBudget.matching(embedder))
    return np.asarray(embedder.embed_documents([item])[0])


def test_index_qrels_problems_are_reported_together(
    folder: Path, index_dir: Path, small_embedder: Qwen3VLEmbedder, tmp_path: Path
) -> None:
    queries = tmp_path / "queries.jsonl"
    queries.write_text(
        '{"_id": "q1", "text": "x", "instruction": "Find it."}\n{"_id": "q2", "text": "y"}\n'
    )
    qrels = tmp_path / "qrels.tsv"
    (tmp_path / "a.png").write_bytes(b"")
    qrels.write_text("q1\tnowhere.png\t1\nq2\ta.png\t1\nq2\t./a.png\t1\nq3\ta.png\t1\n")
    with (
        MultimodalIndex(index_dir, small_embedder, mode="read") as index,
        pytest.raises(DatasetError) as caught,
    ):
        evaluate_index(index, queries, qrels)
    found = [(Path(file).name, line, reason) for file, line, reason in caught.value.problems]
    assert [(file, line) for file, line, _ in found] == [
        ("qrels.tsv", 4),  # q3 is not a query
        ("qrels.tsv", 1),  # no such file
        ("qrels.tsv", 3),  # two names for one file
        ("queries.jsonl", 1),  # an instruction the index cannot use
    ]
    assert "neither an item id nor a file" in found[1][2]
    assert "name the same item" in found[2][2]
    assert "instruction" in found[3][2]


def test_pixels_that_do_not_decode_are_a_problem_at_their_row(
    tmp_path: Path, small_embedder: Qwen3VLEmbedder
) -> None:
    from PIL import Image

    from tests.evaluation_data import write_beir
    from tests.media_files import png_bytes

    noise = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    data = png_bytes(Image.fromarray(noise))
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])  # the header reads, pixels do not
    folder = write_beir(
        tmp_path,
        [{"_id": "fine", "text": "a text"}, {"_id": "cut", "image": "cut.png"}],
        [{"_id": "q", "text": "anything"}],
        ["q\tcut\t1"],
    )
    with load_beir(folder) as dataset, pytest.raises(DatasetError) as caught:
        evaluate(small_embedder, dataset)
    ((file, line, reason),) = caught.value.problems
    assert (Path(file).name, line) == ("corpus.jsonl", 2)
    assert reason.startswith("ImageDecodeError: ") and "cut.png" in reason
