"""Measure retrieval: a BEIR folder or an existing index, with and without the reranker.

nDCG@k, Recall@k (``R@k``) and MRR@10 (``RR@10``) come from ir-measures (pytrec_eval
underneath; ``pip install "qwen3-vl-rag[evaluate]"``), never from our own maths. nDCG uses
trec_eval's gain, linear in the grade (a grade-2 document counts twice a grade-1 one), as ViDoRe
and mteb compare; some model cards use the exponential gain ``2**grade - 1``, which differs on
graded qrels.

The BEIR layout: ``corpus.jsonl`` (``{"_id", "title", "text"}``, with ``"image"`` or ``"pdf"`` +
``"page"`` for a picture), ``queries.jsonl`` (``{"_id", "text", "image", "instruction"}``) and
``qrels/<split>.tsv`` (``query-id<TAB>corpus-id<TAB>grade``). A bad folder raises one
:class:`~qwen3_vl_rag.errors.DatasetError` listing every problem before any model runs.

Example:
    >>> from qwen3_vl_rag import Qwen3VLEmbedder, Qwen3VLReranker
    >>> from qwen3_vl_rag.evaluate import evaluate, load_beir
    >>> embedder = Qwen3VLEmbedder.from_pretrained("Qwen/Qwen3-VL-Embedding-2B")
    >>> reranker = Qwen3VLReranker.from_pretrained("Qwen/Qwen3-VL-Reranker-2B")
    >>> with load_beir("my-beir-folder") as data:  # doctest: +SKIP
    ...     report = evaluate(embedder, data, reranker=reranker)
    >>> print(report.table())  # doctest: +SKIP
    >>> report.write_trec_run("run.trec")  # doctest: +SKIP
"""

from __future__ import annotations

from qwen3_vl_rag.evaluate._dataset import BeirDataset, load_beir
from qwen3_vl_rag.evaluate._index import evaluate_index, item_name
from qwen3_vl_rag.evaluate._metrics import (
    Qrels,
    Run,
    ranking,
    score_run,
    score_run_per_query,
    standard_measures,
)
from qwen3_vl_rag.evaluate._report import EvaluationReport, StageResult
from qwen3_vl_rag.evaluate._rows import CorpusDocument, EvalQuery
from qwen3_vl_rag.evaluate._run import evaluate

__all__ = [
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
