"""The report's TREC run file: six columns, ranks as the metrics used them, readable back."""

from __future__ import annotations

from pathlib import Path

import pytest

from qwen3_vl_rag.errors import ConfigurationError
from qwen3_vl_rag.evaluate import EvaluationReport, StageResult, score_run
from qwen3_vl_rag.evaluate._run import with_tail

QRELS = {"q1": {"b": 1}, "q2": {"x": 2}}
RUN = {"q1": {"a": 0.25, "b": 0.5, "c": 0.5}, "q2": {"x": 0.1234567890123, "y": -0.5}}


def report_of(run: dict[str, dict[str, float]]) -> EvaluationReport:
    measures = ("nDCG@3", "RR@10")
    stage = StageResult("retrieval", score_run(run, QRELS, measures), {}, run)
    reranked = StageResult("reranked", score_run(run, QRELS, measures), {}, run)
    return EvaluationReport((stage, reranked), measures, queries=2, documents=5)


def read_run(path: Path) -> dict[str, dict[str, float]]:
    run: dict[str, dict[str, float]] = {}
    for line in path.read_text().splitlines():
        query, _, doc, _, score, _ = line.split()
        run.setdefault(query, {})[doc] = float(score)
    return run


def test_the_trec_run_file(tmp_path: Path) -> None:
    report = report_of(RUN)
    path = tmp_path / "run.trec"
    report.write_trec_run(path, "retrieval")
    rows = [line.split(" ") for line in path.read_text().splitlines()]
    assert rows == [
        ["q1", "Q0", "c", "1", "0.5", "qwen3-vl-rag-retrieval"],  # tie with b: id descending
        ["q1", "Q0", "b", "2", "0.5", "qwen3-vl-rag-retrieval"],
        ["q1", "Q0", "a", "3", "0.25", "qwen3-vl-rag-retrieval"],
        ["q2", "Q0", "x", "1", "0.1234567890123", "qwen3-vl-rag-retrieval"],
        ["q2", "Q0", "y", "2", "-0.5", "qwen3-vl-rag-retrieval"],
    ]
    # read back, the file scores as the report did (scores kept exactly)
    assert read_run(path) == RUN
    assert score_run(read_run(path), QRELS, report.measures) == report.metrics["retrieval"]
    report.write_trec_run(path, tag="mine")  # the last stage by default
    assert path.read_text().splitlines()[0] == "q1 Q0 c 1 0.5 mine"


def test_names_the_format_cannot_hold(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="whitespace"):
        report_of({"q1": {"my file.pdf#page=1": 1.0}}).write_trec_run(tmp_path / "r")
    with pytest.raises(ConfigurationError, match="whitespace"):
        report_of(RUN).write_trec_run(tmp_path / "r", tag="two words")
    with pytest.raises(ConfigurationError, match="no stage 'final'"):
        report_of(RUN).write_trec_run(tmp_path / "r", "final")


def test_a_reranked_head_goes_above_the_first_stage_tail() -> None:
    run = with_tail({"d3": 0.2, "d1": 0.9}, [("d1", 0.8), ("d5", 0.7), ("d2", 0.95), ("d4", 0.1)])
    assert sorted(run, key=lambda d: -run[d]) == ["d1", "d3", "d2", "d5", "d4"]
    assert run["d2"] - run["d5"] == pytest.approx(0.25)  # the tail keeps its gaps
    assert with_tail({}, [("a", 0.5)]) == {"a": pytest.approx(-1.0)}
