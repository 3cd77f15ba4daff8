"""Evaluation with engines whose rankings are known: the runs, the metrics, what each model got."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qwen3_vl_rag.errors import ConfigurationError, MissingDependencyError
from qwen3_vl_rag.evaluate import evaluate, load_beir
from qwen3_vl_rag.inputs import MultimodalInput
from qwen3_vl_rag.testing.fakes import FakeEmbedder, FakeReranker
from tests.evaluation_data import picture_beir, write_beir

DOCS = {"d1": [1, 0, 0, 0], "d2": [0, 1, 0, 0], "d3": [0, 0, 1, 0], "d4": [0, 0, 0, 1]}
QUERIES = {"find three": [0.9, 0.1, 0.3, 0.0], "find four": [0.0, 0.0, 0.0, 1.0]}


class LookupEmbedder:
    """Vectors looked up by text; records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Any], dict[str, Any]]] = []

    def embed_documents(self, items: Sequence[Any], **kwargs: Any) -> np.ndarray:
        self.calls.append(("documents", list(items), kwargs))
        return np.array([DOCS[item] for item in items], dtype=np.float32) * 3  # not unit

    def embed_queries(self, items: Sequence[Any], **kwargs: Any) -> np.ndarray:
        self.calls.append(("queries", list(items), kwargs))
        return np.array([QUERIES[item.text] for item in items], dtype=np.float32)


class LookupReranker:
    """Scores looked up by (query text, document); records each call."""

    def __init__(self, scores: dict[tuple[str, str], float]) -> None:
        self.scores = scores
        self.calls: list[tuple[str, list[Any], str | None]] = []

    def score(
        self, query: Any, documents: Sequence[Any], *, instruction: str | None = None
    ) -> list[float]:
        self.calls.append((query.text, list(documents), instruction))
        return [self.scores.get((query.text, doc), 0.5) for doc in documents]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    corpus = [{"_id": doc, "text": doc} for doc in DOCS]
    queries = [
        {"_id": "q1", "text": "find three"},
        {"_id": "q2", "text": "find four", "instruction": "Find the fourth."},
    ]
    return write_beir(tmp_path, corpus, queries, ["q1\td3\t1", "q2\td2\t1"])


def test_the_runs_and_metrics_follow_the_known_rankings(folder: Path) -> None:
    embedder = LookupEmbedder()
    reranker = LookupReranker({("find three", "d3"): 0.9, ("find three", "d1"): 0.2})
    with load_beir(folder) as data:
        report = evaluate(
            embedder,
            data,
            reranker=reranker,
            k_values=(1, 4),
            rerank_top=2,
            query_instruction="Find it.",
            dim=4,
        )
    retrieval, reranked = report.stage("retrieval"), report.stage("reranked")
    # q1: cosines d1 .94 > d3 .31 > d2 .10 > d4 0; q2: d4, then ties by id descending
    assert retrieval.ranking("q1") == ["d1", "d3", "d2", "d4"]
    assert retrieval.ranking("q2") == ["d4", "d3", "d2", "d1"]
    norm = np.linalg.norm(QUERIES["find three"])
    assert retrieval.run["q1"]["d1"] == pytest.approx(0.9 / norm)  # cosine, whatever the norms
    assert retrieval.per_query["q1"]["RR@10"] == 0.5 and retrieval.per_query["q2"]["RR@10"] == 1 / 3
    # the top 2 are reranked; the rest keep their order below them
    assert reranked.ranking("q1") == ["d3", "d1", "d2", "d4"]
    assert reranked.ranking("q2") == ["d4", "d3", "d2", "d1"]  # both .5: ties by id
    assert reranked.run["q1"]["d3"] == 0.9
    assert report.metrics == {
        "retrieval": {
            "nDCG@1": 0.0,
            "nDCG@4": pytest.approx((1 / np.log2(3) + 0.5) / 2),
            "R@1": 0.0,
            "R@4": 1.0,
            "RR@10": pytest.approx(5 / 12),
        },
        "reranked": {
            "nDCG@1": 0.5,
            "nDCG@4": pytest.approx((1 + 0.5) / 2),
            "R@1": 0.5,
            "R@4": 1.0,
            "RR@10": pytest.approx(2 / 3),
        },
    }
    # what each model was asked
    (_, documents, doc_options), (_, queries, query_options) = embedder.calls
    assert sorted(documents) == ["d1", "d2", "d3", "d4"] and doc_options == {"dim": 4}
    assert query_options == {"instruction": "Find it.", "dim": 4}
    assert [q.instruction for q in queries] == [None, "Find the fourth."]  # a row's own wins
    assert [(text, sorted(docs), instruction) for text, docs, instruction in reranker.calls] == [
        ("find three", ["d1", "d3"], "Find it."),
        ("find four", ["d3", "d4"], "Find the fourth."),
    ]
    assert report.settings["rerank_top"] == 2 and report.settings["dim"] == 4
    assert (report.queries, report.documents) == (2, 4)


def test_without_a_reranker_there_is_one_stage(folder: Path) -> None:
    with load_beir(folder) as data:
        report = evaluate(LookupEmbedder(), data)
    assert [stage.name for stage in report.stages] == ["retrieval"]
    assert report.measures == ("nDCG@1", "nDCG@5", "nDCG@10", "R@1", "R@5", "R@10", "RR@10")
    with pytest.raises(ConfigurationError, match=r"no stage 'reranked'.*'retrieval'"):
        report.stage("reranked")


def test_the_fake_engines_on_pictures_give_their_own_cosines(tmp_path: Path) -> None:
    embedder, reranker = FakeEmbedder(dimension=8), FakeReranker()
    with load_beir(picture_beir(tmp_path)) as data:
        report = evaluate(embedder, data, reranker=reranker, k_values=(6,))
    documents, queries = embedder.calls
    assert documents.method == "embed_documents" and queries.method == "embed_queries"
    described = dict(
        zip(
            sorted(["t-revenue", "t-weather", "i-red", "i-blue", "p-1", "p-2"], reverse=True),
            documents.inputs,
            strict=True,
        )
    )
    assert described["t-revenue"] == "text:Revenue\nRevenue grew 12% in Q3."
    assert described["i-red"] == f"image:{tmp_path / 'images' / 'red.png'}"  # the picture only
    assert described["p-2"] == f"image:{tmp_path / 'report.pdf'}, page 2"
    query = embedder.vector_of(queries.inputs[0], embedder.query_instruction)
    page = embedder.vector_of(described["p-2"], embedder.document_instruction)
    # float32 sums in another order (a matrix product against one dot): equal to ~1e-7 absolute
    assert report.stage("retrieval").run["q-chart"]["p-2"] == pytest.approx(
        float(query @ page), abs=1e-6
    )
    assert report.stage("retrieval").per_query["q-chart"]["R@6"] == 1.0  # all six retrieved
    first = reranker.calls[0]
    assert first.query == queries.inputs[0] and len(first.inputs) == 6
    assert report.stage("reranked").run["q-chart"]["p-2"] == reranker.score_of(
        first.query, described["p-2"]
    )


def test_bad_settings_and_a_missing_extra_stop_before_any_model_runs(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder = LookupEmbedder()
    with load_beir(folder) as data:
        with pytest.raises(ConfigurationError, match="at least 1"):
            evaluate(embedder, data, k_values=(0,))
        with pytest.raises(ConfigurationError, match="rerank_top"):
            evaluate(embedder, data, reranker=LookupReranker({}), rerank_top=0)
        monkeypatch.setitem(__import__("sys").modules, "ir_measures", None)
        with pytest.raises(MissingDependencyError, match="evaluate"):
            evaluate(embedder, data)
    assert embedder.calls == []


def test_the_report_as_json_and_a_table(folder: Path) -> None:
    with load_beir(folder) as data:
        report = evaluate(LookupEmbedder(), data, reranker=LookupReranker({}), k_values=(1,))
    data = json.loads(report.to_json(runs=True))
    assert data["metrics"] == report.metrics and data["measures"] == ["nDCG@1", "R@1", "RR@10"]
    assert data["per_query"]["reranked"]["q2"] == report.per_query["reranked"]["q2"]
    assert data["runs"]["retrieval"]["q1"] == dict(report.stage("retrieval").run["q1"])
    assert "runs" not in report.to_dict() and "per_query" not in report.to_dict(per_query=False)
    lines = report.table().splitlines()
    assert lines[0] == "2 queries, 4 documents"
    assert lines[1].split() == ["stage", "nDCG@1", "R@1", "RR@10"]
    retrieval = report.metrics["retrieval"]
    assert lines[2].split() == ["retrieval", *(f"{retrieval[m]:.4f}" for m in report.measures)]
    assert lines[3].split()[0] == "reranked"


def test_query_inputs_carry_text_image_and_instruction(tmp_path: Path) -> None:
    with load_beir(picture_beir(tmp_path)) as data:
        (chart, red) = data.query_inputs(["q-chart", "q-red"])
    assert chart == MultimodalInput(text="bar chart of quarterly revenue")
    assert red.text == "this colour" and red.images[0].description.endswith("red.png")
