"""Scoring runs against qrels with ir-measures (pytrec_eval underneath): no metric maths here.

nDCG follows trec_eval (``ndcg_cut``): the gain of a document is its grade, linear (a grade-2
document counts twice a grade-1 one), discounted by ``log2(rank + 1)``. ViDoRe and mteb compare
the same way; some model cards use the exponential gain ``2**grade - 1`` instead, which gives
other numbers on graded qrels (the same on binary ones).

A run is ``{query id: {document id: score}}``, higher is better. Ties are ordered as trec_eval
orders them (by document id, descending); every measure is then computed on that one ranking,
whichever tool of ir-measures provides it, so the numbers are those ``trec_eval`` gives on the run
file :meth:`EvaluationReport.write_trec_run` writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from qwen3_vl_rag.errors import ConfigurationError, MissingDependencyError

__all__ = ["Qrels", "Run", "ranking", "score_run", "score_run_per_query", "standard_measures"]

#: ``{query id: {document id: score}}``; higher scores rank first.
Run = Mapping[str, Mapping[str, float]]
#: ``{query id: {document id: grade}}``; a grade of 0 or less is judged not relevant.
Qrels = Mapping[str, Mapping[str, int]]


def ir_measures() -> Any:
    """The ``ir_measures`` module, or :class:`MissingDependencyError` with the pip command."""
    try:
        import ir_measures as module
    except ImportError as exc:
        raise MissingDependencyError("ir-measures", "evaluate", "Evaluating retrieval") from exc
    return module


def standard_measures(k_values: Sequence[int]) -> list[str]:
    """nDCG@k and R@k (recall) for each ``k``, then RR@10 (MRR@10), in that order.

    Raises:
        ConfigurationError: An empty ``k_values``, or a ``k`` below 1.
        MissingDependencyError: ir-measures, which computes them, is missing
            (``pip install "qwen3-vl-rag[evaluate]"``): said before any model is loaded.

    Example:
        >>> standard_measures([1, 5])
        ['nDCG@1', 'nDCG@5', 'R@1', 'R@5', 'RR@10']
    """
    ks = sorted({int(k) for k in k_values})
    if not ks or ks[0] < 1:
        raise ConfigurationError(f"k values must be at least 1, got {list(k_values)}.")
    ir_measures()
    return [*(f"nDCG@{k}" for k in ks), *(f"R@{k}" for k in ks), "RR@10"]


def ranking(scores: Mapping[str, float]) -> list[str]:
    """Document ids best first: by score, ties by document id descending (trec_eval's order).

    Example:
        >>> ranking({"a": 0.5, "b": 0.9, "c": 0.5})
        ['b', 'c', 'a']
    """
    by_id = sorted(scores, reverse=True)
    return sorted(by_id, key=lambda doc: -scores[doc])  # stable: ties keep the id order


def _parsed(measures: Iterable[Any]) -> list[Any]:
    module = ir_measures()
    parsed = []
    for measure in measures:
        try:
            parsed.append(module.parse_measure(measure) if isinstance(measure, str) else measure)
        except (ValueError, NameError, SyntaxError) as exc:
            raise ConfigurationError(
                f"{measure!r} is not a measure ir-measures knows (e.g. 'nDCG@10', 'R@5', "
                "'RR@10', 'P@5', 'AP')."
            ) from exc
    return parsed


def _ranked_run(run: Run) -> dict[str, dict[str, float]]:
    """The run with scores replaced by ``n - rank``: every provider sees the same order."""
    ranked = {}
    for query, scores in run.items():
        order = ranking(scores)
        ranked[str(query)] = {doc: float(len(order) - rank) for rank, doc in enumerate(order)}
    return ranked


def _qrels(qrels: Qrels) -> dict[str, dict[str, int]]:
    return {str(q): {str(d): int(g) for d, g in docs.items()} for q, docs in qrels.items()}


def score_run(run: Run, qrels: Qrels, measures: Iterable[Any]) -> dict[str, float]:
    """The mean of each measure over the judged queries (those in ``qrels``).

    A judged query missing from the run scores 0; a query of the run that is not judged is
    left out. nDCG uses trec_eval's linear gain (see the module's docstring).

    Args:
        run: ``{query id: {document id: score}}``.
        qrels: ``{query id: {document id: grade}}``.
        measures: ir-measures names (``"nDCG@10"``, ``"R@5"``, ``"RR@10"``, ``"P@1"``...) or
            measure objects.

    Returns:
        ``{measure name: mean}``, in the order the measures were given.

    Raises:
        MissingDependencyError: ir-measures is not installed
            (``pip install "qwen3-vl-rag[evaluate]"``).
        ConfigurationError: A name ir-measures does not know.

    Example:
        >>> run = {"q1": {"d1": 0.9, "d2": 0.8}, "q2": {"d3": 0.7, "d1": 0.1}}
        >>> qrels = {"q1": {"d2": 1}, "q2": {"d3": 2, "d1": 1}}
        >>> score_run(run, qrels, ["RR@10", "R@1"])
        {'RR@10': 0.75, 'R@1': 0.25}
    """
    parsed = _parsed(measures)
    values = ir_measures().calc_aggregate(parsed, _qrels(qrels), _ranked_run(run))
    return {str(measure): float(values[measure]) for measure in parsed}


def score_run_per_query(
    run: Run, qrels: Qrels, measures: Iterable[Any]
) -> dict[str, dict[str, float]]:
    """Each judged query's value of each measure: ``{query id: {measure name: value}}``.

    Queries in the order of ``qrels``, measures in the order given; see :func:`score_run`.

    Example:
        >>> run = {"q1": {"d1": 0.9, "d2": 0.8}, "q2": {"d3": 0.7}}
        >>> score_run_per_query(run, {"q1": {"d2": 1}, "q2": {"d3": 1}}, ["RR@10"])
        {'q1': {'RR@10': 0.5}, 'q2': {'RR@10': 1.0}}
    """
    parsed = _parsed(measures)
    found: dict[str, dict[str, float]] = {}
    for metric in ir_measures().iter_calc(parsed, _qrels(qrels), _ranked_run(run)):
        found.setdefault(metric.query_id, {})[str(metric.measure)] = float(metric.value)
    names = [str(measure) for measure in parsed]
    return {
        str(query): {name: found.get(str(query), {}).get(name, 0.0) for name in names}
        for query in qrels
    }
