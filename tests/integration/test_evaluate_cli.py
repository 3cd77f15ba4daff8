"""``qwen3-vl-rag evaluate`` on the tiny checkpoints: the table, the files, the exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qwen3_vl_rag.cli.main import main
from tests.evaluation_data import picture_beir

SMALL = str(64 * 32 * 32)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return picture_beir(tmp_path_factory.mktemp("beir"))


def models(embedding: Path, reranker: Path | None = None) -> list[str]:
    flags = ["--model", str(embedding), "--device", "cpu", "--max-pixels", SMALL]
    return [*flags, "--reranker", str(reranker)] if reranker else flags


def test_a_beir_folder_with_both_stages_and_the_files(
    folder: Path,
    tiny_embedding_path: Path,
    tiny_reranker_path: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run, per_query = tmp_path / "out" / "run.trec", tmp_path / "out" / "per-query.json"
    code = main(
        [
            "evaluate",
            str(folder),
            *models(tiny_embedding_path, tiny_reranker_path),
            "--k",
            "1,6",
            "--rerank-top",
            "3",
            "--run-file",
            str(run),
            "--per-query",
            str(per_query),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "2 queries, 6 documents"
    assert lines[1].split() == ["stage", "nDCG@1", "nDCG@6", "R@1", "R@6", "RR@10"]
    assert [line.split()[0] for line in lines[2:]] == ["retrieval", "reranked"]
    assert all(line.split()[4] == "1.0000" for line in lines[2:])  # R@6: the whole corpus
    assert "random-weight test checkpoint" in err and f"run (reranked): {run}" in err
    rows = [line.split(" ") for line in run.read_text().splitlines()]
    assert len(rows) == 12 and all(len(row) == 6 and row[1] == "Q0" for row in rows)
    assert {row[5] for row in rows} == {"qwen3-vl-rag-reranked"}
    assert [row[3] for row in rows[:6]] == ["1", "2", "3", "4", "5", "6"]
    retrieval = run.with_name("run.retrieval.trec")
    assert {line.split()[5] for line in retrieval.read_text().splitlines()} == {
        "qwen3-vl-rag-retrieval"
    }
    values = json.loads(per_query.read_text())
    assert set(values) == {"retrieval", "reranked"}
    assert set(values["reranked"]) == {"q-chart", "q-red"}
    assert set(values["reranked"]["q-red"]) == {"nDCG@1", "nDCG@6", "R@1", "R@6", "RR@10"}


def test_json_output(
    folder: Path, tiny_embedding_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = [*models(tiny_embedding_path), "--k", "3", "--dim", "32", "--json", "--quiet"]
    assert main(["evaluate", str(folder), *flags]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert list(report["metrics"]) == ["retrieval"] and err == ""
    assert report["settings"]["dim"] == 32 and report["queries"] == 2
    assert report["measures"] == ["nDCG@3", "R@3", "RR@10"] and "per_query" not in report


def test_data_and_usage_errors_exit_2(
    folder: Path, tiny_embedding_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "qrels").mkdir()
    (broken / "corpus.jsonl").write_text('{"_id": "d", "text": "x"}\n{oops\n')
    (broken / "queries.jsonl").write_text('{"_id": "q", "text": "y"}\n')
    (broken / "qrels" / "test.tsv").write_text("q\tnobody\t1\n")
    # the model is never loaded: the folder is checked first (this one does not exist)
    assert main(["evaluate", str(broken), "--model", str(tmp_path / "no-model")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "2 problems in the data:"
    assert err[1].endswith(
        "corpus.jsonl:2: not JSON (Expecting property name enclosed in double quotes, column 2)."
    )
    assert err[2].endswith("test.tsv:1: the document 'nobody' is not in the corpus.")
    for argv, message in [
        (["evaluate"], "give a DATA_DIR"),
        (["evaluate", str(folder), "--index", "x", "--queries", "q", "--qrels", "r"], "not both"),
        (["evaluate", "--index", "x"], "--index needs --queries and --qrels"),
        (["evaluate", str(folder), "--qrels", "r"], "go with --index"),
        (["evaluate", str(folder), "--k", "1,a"], "--k takes comma-separated integers"),
        (["evaluate", str(folder), "--k", "0"], "k values must be at least 1"),
    ]:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv


def test_an_index_with_queries_and_qrels(
    folder: Path,
    tiny_embedding_path: Path,
    tiny_reranker_path: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    index = tmp_path / "index"
    built = ["index", str(folder / "images"), "--index", str(index), "--quiet"]
    assert main([*built, *models(tiny_embedding_path)]) == 0
    capsys.readouterr()
    queries = tmp_path / "queries.jsonl"
    queries.write_text('{"_id": "q-red", "text": "a red square"}\n')
    qrels = folder / "cli-qrels.tsv"
    qrels.write_text("q-red\timages/red.png\t1\n")
    common = ["evaluate", "--index", str(index), "--queries", str(queries), "--qrels", str(qrels)]
    # the index's own model; the reranker when one is given
    run = tmp_path / "run.trec"
    flags = ["--reranker", str(tiny_reranker_path), "--device", "cpu", "--k", "2"]
    assert main([*common, *flags, "--run-file", str(run), "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "1 queries, 2 documents"
    assert [line.split()[0] for line in lines[2:]] == ["retrieval", "reranked"]
    assert all(line.split()[2] == "1.0000" for line in lines[2:])  # R@2
    assert "images/red.png" in {line.split()[2] for line in run.read_text().splitlines()}
    assert main([*common, "--dim", "32"]) == 2
    assert "--dim is the index's own" in capsys.readouterr().err


def test_a_missing_ir_measures_is_said_before_anything_loads(
    folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(__import__("sys").modules, "ir_measures", None)
    assert main(["evaluate", str(folder), "--model", str(tmp_path / "no-model")]) == 2
    err = capsys.readouterr().err
    assert "MissingDependencyError" in err and 'pip install "qwen3-vl-rag[evaluate]"' in err
