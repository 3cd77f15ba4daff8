"""Metrics of hand-made runs against hand-computed values (ir-measures, trec_eval's conventions)."""

from __future__ import annotations

import math
import sys

import pytest

from qwen3_vl_rag.errors import ConfigurationError, MissingDependencyError
from qwen3_vl_rag.evaluate import ranking, score_run, score_run_per_query, standard_measures

QRELS = {"q1": {"d1": 2, "d2": 1, "d3": 0}, "q2": {"d4": 1}}
RUN = {
    "q1": {"d3": 0.9, "d1": 0.8, "d5": 0.7, "d2": 0.6},  # ranks: d3 (0), d1 (2), d5, d2 (1)
    "q2": {"d5": 0.9, "d6": 0.8, "d7": 0.7},  # its relevant document is not found
}


def log2(rank: int) -> float:
    return math.log2(rank + 1)


def test_graded_ndcg_uses_trec_evals_linear_gain() -> None:
    dcg = 0 / log2(1) + 2 / log2(2) + 0 / log2(3)
    ideal = 2 / log2(1) + 1 / log2(2) + 0 / log2(3)
    q1 = dcg / ideal
    exponential = (3 / log2(2)) / (3 / log2(1) + 1 / log2(2))
    assert abs(q1 - exponential) > 0.03  # the two conventions differ on these grades
    values = score_run_per_query(RUN, QRELS, ["nDCG@3", "nDCG@1"])
    assert values["q1"]["nDCG@3"] == pytest.approx(q1)
    assert values == {
        "q1": {"nDCG@3": pytest.approx(q1), "nDCG@1": 0.0},
        "q2": {"nDCG@3": 0.0, "nDCG@1": 0.0},
    }
    assert score_run(RUN, QRELS, ["nDCG@3"]) == {"nDCG@3": pytest.approx(q1 / 2)}


def test_recall_and_reciprocal_rank() -> None:
    assert score_run_per_query(RUN, QRELS, ["R@1", "R@3", "R@4", "RR@10"]) == {
        "q1": {"R@1": 0.0, "R@3": 0.5, "R@4": 1.0, "RR@10": 0.5},
        "q2": {"R@1": 0.0, "R@3": 0.0, "R@4": 0.0, "RR@10": 0.0},
    }
    assert score_run(RUN, QRELS, ["RR@10", "R@4"]) == {"RR@10": 0.25, "R@4": 0.5}


def test_reciprocal_rank_stops_at_ten() -> None:
    run = {"q": {f"n{i:02d}": 1.0 - i / 100 for i in range(10)} | {"hit": 0.01}}
    assert score_run(run, {"q": {"hit": 1}}, ["RR@10", "RR@100"]) == {
        "RR@10": 0.0,
        "RR@100": pytest.approx(1 / 11),
    }


def test_ties_are_ranked_by_document_id_descending_for_every_measure() -> None:
    run = {"q": {"a": 0.5, "b": 0.5, "c": 0.1}}
    assert ranking(run["q"]) == ["b", "a", "c"]
    values = score_run(run, {"q": {"a": 1}}, ["RR@10", "nDCG@10", "R@1"])
    assert values == {"RR@10": 0.5, "nDCG@10": pytest.approx(1 / log2(2)), "R@1": 0.0}


def test_judged_queries_missing_from_the_run_count_zero_unjudged_ones_are_ignored() -> None:
    run = {"q1": {"d1": 1.0}, "extra": {"d1": 1.0}}
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    assert score_run(run, qrels, ["RR@10"]) == {"RR@10": 0.5}
    assert list(score_run_per_query(run, qrels, ["RR@10"])) == ["q1", "q2"]


def test_standard_measures_and_bad_names() -> None:
    assert standard_measures([10, 1, 5, 5]) == [
        "nDCG@1",
        "nDCG@5",
        "nDCG@10",
        "R@1",
        "R@5",
        "R@10",
        "RR@10",
    ]
    with pytest.raises(ConfigurationError, match="at least 1"):
        standard_measures([0, 5])
    with pytest.raises(ConfigurationError, match="at least 1"):
        standard_measures([])
    with pytest.raises(ConfigurationError, match="not a measure ir-measures knows"):
        score_run(RUN, QRELS, ["nDCG@@3"])


def test_a_missing_ir_measures_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ir_measures", None)  # `import ir_measures` now fails
    with pytest.raises(MissingDependencyError, match=r'pip install "qwen3-vl-rag\[evaluate\]"'):
        score_run(RUN, QRELS, ["RR@10"])
