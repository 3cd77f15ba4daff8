"""What an evaluation found: metrics per stage and per query, the runs, a TREC run file, a table."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwen3_vl_rag.errors import ConfigurationError
from qwen3_vl_rag.evaluate._metrics import Run, ranking

__all__ = ["EvaluationReport", "StageResult"]


@dataclass(frozen=True)
class StageResult:
    """One stage of an evaluation: ``"retrieval"`` (cosine top-k) or ``"reranked"``.

    Attributes:
        name: The stage.
        metrics: ``{measure: mean over the judged queries}``, e.g. ``{"nDCG@10": 0.81}``
            (ir-measures names: ``R@k`` is recall, ``RR@10`` is MRR@10).
        per_query: ``{query id: {measure: value}}``.
        run: ``{query id: {document id: score}}``, the ranking the metrics were computed on.
        seconds: Wall-clock time of the stage (embedding included for retrieval).

    Example:
        >>> run = {"q1": {"d1": 0.9}}
        >>> stage = StageResult("retrieval", {"RR@10": 1.0}, {"q1": {"RR@10": 1.0}}, run)
        >>> stage.ranking("q1")
        ['d1']
    """

    name: str
    metrics: Mapping[str, float]
    per_query: Mapping[str, Mapping[str, float]]
    run: Run
    seconds: float = 0.0

    def ranking(self, query_id: str) -> list[str]:
        """The query's document ids, best first (ties by id descending, as trec_eval)."""
        return ranking(self.run.get(query_id, {}))


@dataclass(frozen=True)
class EvaluationReport:
    """Metrics with and without the reranker, per query, and the runs behind them.

    nDCG uses trec_eval's linear gain (the grade itself; see :mod:`qwen3_vl_rag.evaluate`).

    Attributes:
        stages: ``"retrieval"``, then ``"reranked"`` when a reranker ran.
        measures: The measures, in table order.
        queries: Queries evaluated.
        documents: Documents searched.
        settings: What was evaluated: models, ``k_values``, ``rerank_top``, ``dim``...

    Example:
        >>> from qwen3_vl_rag.evaluate import EvaluationReport, StageResult
        >>> retrieval = StageResult("retrieval", {"RR@10": 0.5}, {"q1": {"RR@10": 0.5}},
        ...                         {"q1": {"d1": 0.9, "d2": 0.8}})
        >>> report = EvaluationReport((retrieval,), ("RR@10",), queries=1, documents=2)
        >>> report.metrics
        {'retrieval': {'RR@10': 0.5}}
        >>> print(report.table())
        1 queries, 2 documents
        stage      RR@10
        retrieval  0.5000
        >>> report.write_trec_run("run.trec")
        >>> print(open("run.trec").read(), end="")
        q1 Q0 d1 1 0.9 qwen3-vl-rag-retrieval
        q1 Q0 d2 2 0.8 qwen3-vl-rag-retrieval
    """

    stages: tuple[StageResult, ...]
    measures: tuple[str, ...]
    queries: int
    documents: int
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, dict[str, float]]:
        """``{stage: {measure: mean}}``."""
        return {stage.name: dict(stage.metrics) for stage in self.stages}

    @property
    def per_query(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{stage: {query id: {measure: value}}}``."""
        return {
            stage.name: {query: dict(values) for query, values in stage.per_query.items()}
            for stage in self.stages
        }

    @property
    def runs(self) -> dict[str, Run]:
        """``{stage: {query id: {document id: score}}}``."""
        return {stage.name: stage.run for stage in self.stages}

    @property
    def final(self) -> StageResult:
        """The last stage: ``"reranked"`` when a reranker ran, else ``"retrieval"``."""
        return self.stages[-1]

    def stage(self, name: str) -> StageResult:
        """The stage called ``name``.

        Raises:
            ConfigurationError: No such stage (``"reranked"`` without a reranker).
        """
        for stage in self.stages:
            if stage.name == name:
                return stage
        names = ", ".join(repr(stage.name) for stage in self.stages)
        raise ConfigurationError(f"no stage {name!r} in this evaluation (it has {names}).")

    def write_trec_run(
        self, path: str | os.PathLike[str], stage: str | None = None, *, tag: str | None = None
    ) -> None:
        """Write a stage's run as a TREC run file: ``qid Q0 docid rank score tag`` per line.

        Ranks follow the order the metrics used (ties by document id descending, as trec_eval
        reads them), so ``trec_eval`` on this file gives the report's numbers.

        Args:
            path: The file to write.
            stage: ``"retrieval"`` or ``"reranked"`` (default: the last stage).
            tag: The run's name in the last column (default ``qwen3-vl-rag-<stage>``).

        Raises:
            ConfigurationError: An unknown stage, or a tag or document id holding whitespace
                (the format splits on it).
        """
        chosen = self.stage(stage) if stage else self.final
        tag = tag or f"qwen3-vl-rag-{chosen.name}"
        if not tag or any(character.isspace() for character in tag):
            raise ConfigurationError(f"a run tag cannot hold whitespace, got {tag!r}.")
        lines = []
        for query, scores in chosen.run.items():
            for rank, doc in enumerate(ranking(scores), start=1):
                if any(character.isspace() for character in doc):
                    raise ConfigurationError(
                        f"the document id {doc!r} holds whitespace, which a TREC run file "
                        "cannot: name the document without it (an index item by its id)."
                    )
                lines.append(f"{query} Q0 {doc} {rank} {float(scores[doc])!r} {tag}\n")
        Path(path).write_text("".join(lines), encoding="utf-8")

    def to_dict(self, *, per_query: bool = True, runs: bool = False) -> dict[str, Any]:
        """A JSON-ready form: settings, counts, metrics; per-query values and runs on request."""
        data: dict[str, Any] = {
            "settings": dict(self.settings),
            "queries": self.queries,
            "documents": self.documents,
            "measures": list(self.measures),
            "metrics": self.metrics,
            "seconds": {stage.name: round(stage.seconds, 3) for stage in self.stages},
        }
        if per_query:
            data["per_query"] = self.per_query
        if runs:
            data["runs"] = {
                stage.name: {q: dict(scores) for q, scores in stage.run.items()}
                for stage in self.stages
            }
        return data

    def to_json(self, *, per_query: bool = True, runs: bool = False) -> str:
        """:meth:`to_dict` as indented JSON."""
        return json.dumps(self.to_dict(per_query=per_query, runs=runs), indent=2)

    def table(self) -> str:
        """The metrics as a plain-text table, one row per stage."""
        width = max(len("stage"), *(len(stage.name) for stage in self.stages))
        columns = [max(6, len(measure)) for measure in self.measures]
        head = "  ".join(
            [
                f"{'stage':<{width}}",
                *(f"{m:<{c}}" for m, c in zip(self.measures, columns, strict=True)),
            ]
        )
        rows = [f"{self.queries} queries, {self.documents} documents", head.rstrip()]
        for stage in self.stages:
            values = [
                f"{stage.metrics.get(m, float('nan')):<{c}.4f}"
                for m, c in zip(self.measures, columns, strict=True)
            ]
            rows.append("  ".join([f"{stage.name:<{width}}", *values]).rstrip())
        return "\n".join(rows)
