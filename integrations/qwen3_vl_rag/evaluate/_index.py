"""Evaluating an existing :class:`~qwen3_vl_rag.MultimodalIndex` with queries and qrels.

How a qrels corpus-id names an index item, tried in this order:

* the item's id (32 hexadecimal characters, :attr:`SearchResult.id`);
* its file's path, for an image or a whole video: absolute, or relative to the qrels file's
  folder (``images/chart.png``);
* the path and ``#page=N`` (1-based) for a PDF page (``reports/q4.pdf#page=3``).

The paths are those the index was built from (``qwen3-vl-rag index PATH``, made absolute), not
resolved through links. Video clips are named by id. In the runs, a judged item keeps the name
the qrels give it (as written there) and any other item is named by its id.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from qwen3_vl_rag.errors import ConfigurationError, DatasetError
from qwen3_vl_rag.evaluate._dataset import check_pictures, check_qrels
from qwen3_vl_rag.evaluate._metrics import standard_measures
from qwen3_vl_rag.evaluate._report import EvaluationReport
from qwen3_vl_rag.evaluate._rows import EvalQuery, Problems, read_qrels, read_queries
from qwen3_vl_rag.evaluate._run import retrieval_depth, stage_result, with_tail
from qwen3_vl_rag.media.budget import MediaBudget
from qwen3_vl_rag.media.isolation import WorkerPool

if TYPE_CHECKING:
    from qwen3_vl_rag.index import MultimodalIndex, SearchResult

__all__ = ["evaluate_index", "item_name"]

_ITEM_ID = re.compile(r"[0-9a-f]{32}")
_PAGE = re.compile(r"^(?P<path>.+)#page=(?P<page>[1-9][0-9]*)$")


def item_name(result: SearchResult) -> str:
    """A search result's path name: its file's absolute path, plus ``#page=N`` for a PDF page.

    Example:
        >>> from qwen3_vl_rag.index import SearchResult
        >>> hit = SearchResult(1, "0" * 32, "page", "/data/q4.pdf", "page 3", 0.5,
        ...                    metadata={"page": 2})
        >>> item_name(hit)
        '/data/q4.pdf#page=3'
    """
    path = os.fspath(result.path)
    if result.kind == "page":
        return f"{path}#page={int(result.metadata['page']) + 1}"
    return path


def _canonical(name: str, folder: Path) -> str:
    """A qrels corpus-id as :func:`item_name` spells it (an item id stays as it is)."""
    if _ITEM_ID.fullmatch(name):
        return name
    match = _PAGE.match(name)
    path, page = (match["path"], f"#page={match['page']}") if match else (name, "")
    absolute = path if os.path.isabs(path) else os.path.join(folder, path)
    return os.path.abspath(absolute) + page


def evaluate_index(
    index: MultimodalIndex,
    queries: str | os.PathLike[str],
    qrels: str | os.PathLike[str],
    *,
    rerank: bool | None = None,
    k_values: Sequence[int] = (1, 5, 10),
    rerank_top: int = 20,
    show_progress: bool = False,
) -> EvaluationReport:
    r"""Measure retrieval on an index built already, with and without its reranker.

    Each query runs through :meth:`MultimodalIndex.search`: once without reranking (the first
    stage, ranked by vector similarity), and once reranking the top ``rerank_top``, under which
    the rest keep the first stage's order. See the module's docstring for how qrels name items.

    Args:
        index: An open index with an embedder (and a reranker to rerank).
        queries: A queries JSONL file (``{"_id": ..., "text": ..., "image": ...}``); a per-query
            ``instruction`` is refused (the index embeds queries with its embedder's).
        qrels: A qrels TSV file (``query-id<TAB>corpus-id<TAB>grade``).
        rerank: Add the reranked stage (default: when the index has a reranker).
        k_values: Cut-offs of nDCG and recall.
        rerank_top: Items reranked per query.
        show_progress: A progress bar over the queries.

    Raises:
        DatasetError: Every problem of the queries and qrels, before any query runs.
        ConfigurationError: ``rerank=True`` without a reranker, a ``k`` below 1.
        MissingDependencyError: ir-measures is missing (``pip install "qwen3-vl-rag[evaluate]"``).

    Example:
        >>> from qwen3_vl_rag import MultimodalIndex, Qwen3VLEmbedder
        >>> from qwen3_vl_rag.evaluate import evaluate_index
        >>> embedder = Qwen3VLEmbedder.from_pretrained("Qwen/Qwen3-VL-Embedding-2B")
        >>> with MultimodalIndex("my-index", embedder) as index:
        ...     _ = index.index(["chart.png", "photo.png"])
        ...     _ = open("queries.jsonl", "w").write('{"_id": "q1", "text": "a bar chart"}')
        ...     _ = open("qrels.tsv", "w").write("q1\tchart.png\t1\n")
        ...     report = evaluate_index(index, "queries.jsonl", "qrels.tsv", k_values=[1, 2])
        >>> list(report.metrics), report.metrics["retrieval"]["R@2"]
        (['retrieval'], 1.0)
    """
    measures = standard_measures(k_values)
    rerank = index.reranker is not None if rerank is None else rerank
    if rerank and index.reranker is None:
        raise ConfigurationError("rerank=True needs an index opened with a reranker.")
    if rerank_top < 1:
        raise ConfigurationError(f"rerank_top must be at least 1, got {rerank_top}.")
    queries_path, qrels_path = Path(queries), Path(qrels)
    chosen, raw_qrels, names = _read(queries_path, qrels_path)
    depth = retrieval_depth(k_values, rerank_top if rerank else None)
    from tqdm.auto import tqdm

    first: dict[str, dict[str, float]] = {}
    second: dict[str, dict[str, float]] = {}
    seconds = {"retrieval": 0.0, "reranked": 0.0}
    for query in tqdm(chosen, desc="Searching", unit="query", disable=not show_progress):
        started = time.perf_counter()
        hits = index.search(query.text, query.image, k=depth, rerank=False, top_n=depth)
        first[query.id] = {_name(hit, names): hit.vector_score for hit in hits}
        seconds["retrieval"] += time.perf_counter() - started
        if rerank:
            started = time.perf_counter()
            top = index.search(query.text, query.image, k=rerank_top, rerank=True, top_n=rerank_top)
            head = _in_order({_name(hit, names): hit for hit in top})
            second[query.id] = with_tail(head, list(first[query.id].items()))
            seconds["reranked"] += time.perf_counter() - started
    stages = [stage_result("retrieval", first, raw_qrels, measures, seconds["retrieval"])]
    if rerank:
        stages.append(stage_result("reranked", second, raw_qrels, measures, seconds["reranked"]))
    settings = {
        "index": str(index.directory),
        "queries": str(queries_path),
        "qrels": str(qrels_path),
        "model": index.signature.get("model"),
        "reranker": getattr(index.reranker, "model_id", None) if rerank else None,
        "k_values": sorted(set(k_values)),
        "rerank_top": rerank_top if rerank else None,
        "dim": index.dimension,
    }
    documents = index.status().items
    return EvaluationReport(tuple(stages), tuple(measures), len(chosen), documents, settings)


def _name(hit: SearchResult, names: Mapping[str, str]) -> str:
    """The name a qrels file gives the hit (by its id or its path), else its id."""
    return names.get(hit.id) or names.get(item_name(hit)) or hit.id


def _in_order(hits: Mapping[str, SearchResult]) -> dict[str, float]:
    """Scores that keep the index's order: rerank scores, then the unreranked below them."""
    reranked = {
        name: hit.rerank_score for name, hit in hits.items() if hit.rerank_score is not None
    }
    rest = [(name, hit.vector_score) for name, hit in hits.items() if hit.rerank_score is None]
    return with_tail(reranked, rest)


def _read(
    queries_path: Path, qrels_path: Path
) -> tuple[list[EvalQuery], dict[str, dict[str, int]], dict[str, str]]:
    """The judged queries, the qrels, and ``{item_name or id: the qrels' name for it}``."""
    problems = Problems()
    for path in (queries_path, qrels_path):
        if not path.is_file():
            problems.add(path, 0, "missing.")
    if problems:
        raise DatasetError(problems.found)
    queries = read_queries(queries_path, problems)
    raw, lines = read_qrels(qrels_path, problems)
    check_qrels(qrels_path, raw, lines, queries, None, problems)
    names: dict[str, str] = {}
    for query_id, docs in raw.items():
        for doc in docs:
            name = _canonical(doc, qrels_path.parent)
            line = lines[query_id, doc]
            if not _ITEM_ID.fullmatch(name) and not os.path.isfile(_PAGE.sub(r"\g<path>", name)):
                problems.add(
                    qrels_path,
                    line,
                    f"{doc!r} is neither an item id nor a file (see evaluate_index).",
                )
            elif names.setdefault(name, doc) != doc:
                problems.add(
                    qrels_path,
                    line,
                    f"{doc!r} and {names[name]!r} name the same item: use one name.",
                )
    chosen = [query for query_id, query in queries.items() if query_id in raw]
    for query in chosen:
        if query.instruction:
            problems.add(
                queries_path,
                query.line,
                "a per-query 'instruction' cannot be used with an index (it embeds queries with "
                "its embedder's query_instruction): set that, and drop the field.",
            )
    budget = MediaBudget()
    with WorkerPool(1, timeout=budget.timeout, memory_limit=budget.worker_memory) as pool:
        check_pictures(
            [(queries_path, q.line, q.image, None) for q in chosen if q.image is not None],
            problems,
            budget,
            pool,
        )
    if problems:
        raise DatasetError(problems.found)
    return chosen, raw, names
