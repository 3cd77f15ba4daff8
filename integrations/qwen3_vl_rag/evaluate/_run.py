"""Evaluating models on a BEIR dataset: embed, cosine top-k in NumPy, rerank the top, score."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from qwen3_vl_rag.checked_files import display_path
from qwen3_vl_rag.errors import ConfigurationError, DatasetError, InputError
from qwen3_vl_rag.evaluate._metrics import (
    Qrels,
    Run,
    score_run,
    score_run_per_query,
    standard_measures,
)
from qwen3_vl_rag.evaluate._report import EvaluationReport, StageResult
from qwen3_vl_rag.media.budget import MediaBudget

if TYPE_CHECKING:
    from qwen3_vl_rag.evaluate._dataset import BeirDataset
    from qwen3_vl_rag.inputs import InputItem
    from qwen3_vl_rag.protocols import EmbeddingEngine, RerankingEngine

__all__ = ["evaluate", "retrieval_depth", "stage_result", "with_tail"]

_QUERY_BLOCK = 256  # queries scored against the corpus at a time: bounded memory


@contextlib.contextmanager
def _as_problem(dataset: BeirDataset, file: str, lines: Sequence[int]) -> Iterator[None]:
    """A row a model cannot use (pixels that do not decode...) is a data problem at its line."""
    try:
        yield
    except InputError as err:
        if err.item_index is None or not 0 <= err.item_index < len(lines):
            raise
        where = display_path(dataset.folder / file)
        reason = f"{type(err).__name__}: {err.replace(item_index=None)}"
        raise DatasetError([(where, lines[err.item_index], reason)]) from err


def retrieval_depth(k_values: Sequence[int], rerank_top: int | None) -> int:
    """How many documents the first stage keeps per query: enough for every measure."""
    return max(*k_values, 10, rerank_top or 0)


def _budget(model: Any, fallback: MediaBudget) -> MediaBudget:
    """Pages rendered at the model's size when it says (``.vision``), else the dataset's."""
    if getattr(model, "vision", None) is None:
        return fallback
    return MediaBudget.matching(
        model,
        max_bytes=fallback.max_bytes,
        timeout=fallback.timeout,
        worker_memory=fallback.worker_memory,
        max_image_pixels=fallback.max_image_pixels,
    )


def _unit_rows(vectors: Any) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    unit: np.ndarray = np.divide(array, norms, out=np.zeros_like(array), where=norms > 0)
    return unit


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` best scores, best first, ties by position (exact at the cut)."""
    if k < scores.size:
        kth = np.partition(scores, scores.size - k)[scores.size - k]
        candidates = np.flatnonzero(scores >= kth)
    else:
        candidates = np.arange(scores.size)
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order][:k]


def with_tail(head: Mapping[str, float], tail: Sequence[tuple[str, float]]) -> dict[str, float]:
    """``head`` (reranked), then ``tail`` below all of it, in its own order.

    The tail keeps its scores' gaps, shifted under the lowest head score, so the run ranks the
    reranked documents first and the rest as the first stage did.
    """
    run = dict(head)
    rest = [(doc, score) for doc, score in tail if doc not in run]
    if rest:
        floor = min(run.values(), default=0.0)
        shift = floor - max(score for _, score in rest) - 1.0
        run.update((doc, score + shift) for doc, score in rest)
    return run


def stage_result(
    name: str, run: Run, qrels: Qrels, measures: Sequence[str], seconds: float
) -> StageResult:
    """A stage's metrics and per-query values, computed by ir-measures."""
    return StageResult(
        name,
        score_run(run, qrels, measures),
        score_run_per_query(run, qrels, measures),
        run,
        seconds,
    )


def evaluate(
    embedder: EmbeddingEngine,
    dataset: BeirDataset,
    *,
    reranker: RerankingEngine | None = None,
    k_values: Sequence[int] = (1, 5, 10),
    rerank_top: int = 20,
    dim: int | None = None,
    query_instruction: str | None = None,
    show_progress: bool = False,
) -> EvaluationReport:
    r"""Measure retrieval on a BEIR dataset, with and without the reranker.

    The corpus is embedded with ``embed_documents`` and the queries with ``embed_queries``; each
    query's documents are ranked by cosine similarity (NumPy, exact). With a reranker, each
    query's top ``rerank_top`` are scored with ``reranker.score`` and put first by that score;
    the documents below them keep the first stage's order. Measures: nDCG@k and R@k (recall)
    for each ``k``, and RR@10 (MRR@10), computed by ir-measures (nDCG with trec_eval's linear
    gain). Works with any objects with the engine's methods: the in-process engines, engines on
    a vLLM server, the fakes of :mod:`qwen3_vl_rag.testing.fakes`.

    Args:
        embedder: Embeds queries and documents.
        dataset: From :func:`load_beir` (still open: pictures are decoded in its workers).
        reranker: Scores (query, document) pairs; ``None``: the retrieval stage only.
        k_values: Cut-offs of nDCG and recall.
        rerank_top: Documents reranked per query.
        dim: Matryoshka dimension of the vectors (default: the model's full size).
        query_instruction: The task instruction for queries without their own (default: the
            embedder's query instruction); the reranker gets the same one.
        show_progress: Progress bars while embedding and reranking.

    Returns:
        The metrics per stage and per query, and the runs.

    Raises:
        ConfigurationError: A ``k`` or ``rerank_top`` below 1.
        DatasetError: A row a model cannot use after all (an image whose header reads but
            whose pixels do not decode), named by its file and line.
        MissingDependencyError: ir-measures is missing (``pip install "qwen3-vl-rag[evaluate]"``);
            raised before any model runs.

    Example:
        >>> from qwen3_vl_rag.evaluate import evaluate, load_beir
        >>> from qwen3_vl_rag.testing.fakes import FakeEmbedder, FakeReranker
        >>> import json, pathlib
        >>> folder = pathlib.Path("beir"); (folder / "qrels").mkdir(parents=True)
        >>> _ = (folder / "corpus.jsonl").write_text(
        ...     '{"_id": "d1", "text": "a pie chart"}\n{"_id": "d2", "image": "../chart.png"}')
        >>> _ = (folder / "queries.jsonl").write_text('{"_id": "q1", "text": "a bar chart"}')
        >>> qrels = "query-id\tcorpus-id\tscore\nq1\td2\t1"
        >>> _ = (folder / "qrels" / "test.tsv").write_text(qrels)
        >>> with load_beir(folder) as data:
        ...     report = evaluate(FakeEmbedder(), data, reranker=FakeReranker(), k_values=[1, 2])
        >>> report.measures
        ('nDCG@1', 'nDCG@2', 'R@1', 'R@2', 'RR@10')
        >>> list(report.metrics), report.metrics["retrieval"]["R@2"]
        (['retrieval', 'reranked'], 1.0)
    """
    measures = standard_measures(k_values)
    if rerank_top < 1:
        raise ConfigurationError(f"rerank_top must be at least 1, got {rerank_top}.")
    depth = retrieval_depth(k_values, rerank_top if reranker is not None else None)
    # trec_eval orders ties by document id, descending: so is the corpus, and ties keep it
    doc_ids = sorted(dataset.corpus, reverse=True)
    query_ids = list(dataset.queries)
    options: dict[str, Any] = {"show_progress": True} if show_progress else {}
    if dim is not None:
        options["dim"] = dim
    started = time.perf_counter()
    budget = _budget(embedder, dataset.budget)
    with _as_problem(dataset, "corpus.jsonl", [dataset.corpus[d].line for d in doc_ids]):
        documents = _unit_rows(
            embedder.embed_documents(dataset.document_inputs(doc_ids, budget), **options)
        )
    with _as_problem(dataset, "queries.jsonl", [dataset.queries[q].line for q in query_ids]):
        queries = _unit_rows(
            embedder.embed_queries(
                dataset.query_inputs(query_ids, budget), instruction=query_instruction, **options
            )
        )
    retrieval: dict[str, dict[str, float]] = {}
    top: dict[str, np.ndarray] = {}
    for start in range(0, len(query_ids), _QUERY_BLOCK):
        block = queries[start : start + _QUERY_BLOCK] @ documents.T
        for offset, scores in enumerate(block):
            query_id = query_ids[start + offset]
            positions = _top(scores, depth)
            top[query_id] = positions
            retrieval[query_id] = {doc_ids[p]: float(scores[p]) for p in positions}
    stages = [
        stage_result("retrieval", retrieval, dataset.qrels, measures, time.perf_counter() - started)
    ]
    if reranker is not None:
        started = time.perf_counter()
        reranked = _rerank(
            reranker,
            dataset,
            doc_ids,
            query_ids,
            top,
            retrieval,
            rerank_top,
            query_instruction,
            show_progress,
        )
        stages.append(
            stage_result(
                "reranked", reranked, dataset.qrels, measures, time.perf_counter() - started
            )
        )
    settings = {
        "dataset": str(dataset.folder),
        "split": dataset.split,
        "model": getattr(embedder, "model_id", None),
        "reranker": getattr(reranker, "model_id", None) if reranker is not None else None,
        "k_values": sorted(set(k_values)),
        "rerank_top": rerank_top if reranker is not None else None,
        "dim": dim,
        "query_instruction": query_instruction,
    }
    return EvaluationReport(tuple(stages), tuple(measures), len(query_ids), len(doc_ids), settings)


def _rerank(
    reranker: RerankingEngine,
    dataset: BeirDataset,
    doc_ids: Sequence[str],
    query_ids: Sequence[str],
    top: Mapping[str, np.ndarray],
    retrieval: Mapping[str, Mapping[str, float]],
    rerank_top: int,
    query_instruction: str | None,
    show_progress: bool,
) -> dict[str, dict[str, float]]:
    """Each query's top ``rerank_top`` by the reranker's score, then the rest as retrieved."""
    from tqdm.auto import tqdm

    budget = _budget(reranker, dataset.budget)
    pool = sorted({int(p) for q in query_ids for p in top[q][:rerank_top]})
    inputs: dict[int, InputItem] = dict(
        zip(pool, dataset.document_inputs([doc_ids[p] for p in pool], budget), strict=True)
    )
    query_inputs = dataset.query_inputs(query_ids, budget)
    run: dict[str, dict[str, float]] = {}
    for query_id, query in tqdm(
        list(zip(query_ids, query_inputs, strict=True)),
        desc="Reranking",
        unit="query",
        disable=not show_progress,
    ):
        candidates = [int(p) for p in top[query_id][:rerank_top]]
        instruction = query.instruction or query_instruction
        lines = [dataset.corpus[doc_ids[p]].line for p in candidates]
        with _as_problem(dataset, "corpus.jsonl", lines):
            scores = reranker.score(query, [inputs[p] for p in candidates], instruction=instruction)
        if len(scores) != len(candidates):
            raise ConfigurationError(
                f"the reranker returned {len(scores)} scores for {len(candidates)} documents."
            )
        head = {doc_ids[p]: float(s) for p, s in zip(candidates, scores, strict=True)}
        ranked = retrieval[query_id]
        tail = [(doc, ranked[doc]) for doc in ranked if doc not in head]
        run[query_id] = with_tail(head, tail)
    return run
