"""The public surface of ``qwen3_vl_rag.evaluate``, and what importing it costs."""

from __future__ import annotations

import qwen3_vl_rag.evaluate
from tests.conftest import python_stdout

EXPECTED_ALL = [
    "BeirDataset",
    "CorpusDocument",
    "EvalQuery",
    "EvaluationReport",
    "Qrels",
    "Run",
    "StageResult",
    "evaluate",
    "evaluate_index",
    "item_name",
    "load_beir",
    "ranking",
    "score_run",
    "score_run_per_query",
    "standard_measures",
]


def test_all_snapshot() -> None:
    assert sorted(qwen3_vl_rag.evaluate.__all__) == EXPECTED_ALL
    assert all(hasattr(qwen3_vl_rag.evaluate, name) for name in EXPECTED_ALL)


def test_importing_it_loads_no_model_store_decoder_or_metrics_library() -> None:
    heavy = ("torch", "transformers", "chromadb", "pymupdf", "av", "ir_measures", "pytrec_eval")
    code = (
        "import sys; import qwen3_vl_rag.evaluate; import qwen3_vl_rag.cli.evaluate; "
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    assert python_stdout(code).strip() == ""
