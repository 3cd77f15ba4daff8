"""Hard negatives mined from an existing index, with the technical report's filter.

For each query with known positives (items of the index, named by their file and page), the
index is searched by cosine similarity, and:

* a query is dropped when one of its positives scores below ``positive_threshold`` (``t+``):
  the label or the query is probably wrong;
* a recalled item is kept as a negative only when it scores below ``mean(s+) + margin``, the
  mean of the query's positive scores plus a margin: an item that close to the positives is
  probably an unlabelled positive (a false negative) and would teach the model the wrong thing;
* a positive is never a negative (nor the same bytes under another name: same item id).

Positives and negatives come back as model inputs reopened from the index the way a search
reopens them for its reranker: only while their file is still what was indexed (same content
hash), from a verified private copy, decoded in worker processes under the index's budgets.
An item whose file changed or vanished is skipped and reported, never read.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qwen3_vl_rag.checked_files import display_path
from qwen3_vl_rag.errors import ConfigurationError, DatasetError, InputError
from qwen3_vl_rag.finetune._data import (
    FileChecker,
    RowReader,
    TrainingExample,
    checking_pool,
    instruction_of,
    kind_of,
    read_rows,
    unknown_keys,
)
from qwen3_vl_rag.index._paths import key_path, path_key
from qwen3_vl_rag.index._reopen import Reopener, StaleSourceError
from qwen3_vl_rag.inputs import InputItem, MultimodalInput, as_multimodal_input
from qwen3_vl_rag.media.budget import MediaBudget
from qwen3_vl_rag.media.isolation import IN_PROCESS_RUNNER, WorkerPool

if TYPE_CHECKING:
    from qwen3_vl_rag.index import MultimodalIndex
    from qwen3_vl_rag.index._manifest import Manifest

__all__ = [
    "MiningQuery",
    "MiningResult",
    "mine_hard_negatives",
    "read_mining_queries",
    "select_negatives",
]

_ROW_KEYS = ("query", "positives", "instruction")
_PAGE = "#page="


@dataclass(frozen=True)
class MiningQuery:
    """A query and the names of the index items it should find.

    Attributes:
        query: The query as a search embeds it.
        positives: Index items, by the path the file was indexed under (absolute, or relative
            to the working folder), with ``#page=N`` (1-based) for a PDF page:
            ``"docs/report.pdf#page=3"``, ``"docs/chart.png"``.
        instruction: The query's task instruction (``None``: the model's default).
        source: Where it came from (``"queries.jsonl:4"``).

    Example:
        >>> from qwen3_vl_rag import MultimodalInput
        >>> from qwen3_vl_rag.finetune import MiningQuery
        >>> query = MiningQuery(MultimodalInput(text="revenue chart"), ("report.pdf#page=2",))
        >>> query.positives
        ('report.pdf#page=2',)
    """

    query: MultimodalInput
    positives: tuple[str, ...]
    instruction: str | None = None
    source: str = ""


@dataclass
class MiningResult:
    """Examples with mined hard negatives, and what the filter kept and dropped.

    The examples' items decode from verified copies of the indexed files, in worker processes
    that this result owns: use them inside ``with`` (or before :meth:`close`).

    Attributes:
        examples: One per kept query, its negatives hardest first.
        queries_kept: Queries that became examples.
        dropped_queries: ``(query, reason)`` for each dropped query (``query`` is its source,
            ``"queries.jsonl:4"``, or its position).
        negatives_kept: Negatives in the examples.
        false_negatives: Recalled items dropped for scoring at or above ``mean(s+) + margin``.
        skipped: ``(item, reason)`` for each recalled item that could not be read (its file
            changed, vanished or failed to decode).

    Example:
        >>> from qwen3_vl_rag import MultimodalIndex, Qwen3VLEmbedder
        >>> from qwen3_vl_rag.finetune import mine_hard_negatives
        >>> embedder = Qwen3VLEmbedder.from_pretrained("Qwen/Qwen3-VL-Embedding-2B")
        >>> with MultimodalIndex("my-index", embedder) as index:
        ...     _ = index.index(["documents/"])
        ...     queries = [("revenue table", ["documents/annual-report.pdf#page=2"])]
        ...     with mine_hard_negatives(index, queries, negatives=2) as mined:
        ...         counts = mined.counts()
        >>> counts["queries_kept"], counts["queries_dropped"]
        (1, 0)
    """

    examples: list[TrainingExample]
    queries_kept: int = 0
    dropped_queries: list[tuple[str, str]] = field(default_factory=list)
    negatives_kept: int = 0
    false_negatives: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    _resources: list[Any] = field(default_factory=list, repr=False)

    def counts(self) -> dict[str, int]:
        """The counts at a glance."""
        return {
            "queries_kept": self.queries_kept,
            "queries_dropped": len(self.dropped_queries),
            "negatives_kept": self.negatives_kept,
            "false_negatives": self.false_negatives,
            "skipped": len(self.skipped),
        }

    def close(self) -> None:
        """Delete the verified copies and stop the decoding workers (the items stop working)."""
        while self._resources:
            self._resources.pop().close()

    def __enter__(self) -> MiningResult:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the filter --------------------------------------------------------------------------------


def select_negatives(
    candidates: Sequence[tuple[str, float]],
    positives: Mapping[str, float],
    *,
    margin: float,
) -> tuple[list[str], list[str]]:
    """The report's false-negative guard over recalled items, best first.

    Args:
        candidates: ``(item id, cosine score)`` of the recalled items, best first.
        positives: ``{item id: cosine score}`` of the query's positives.
        margin: An item is kept only below ``mean(positive scores) + margin``.

    Returns:
        ``(kept, false_negatives)``: ids in candidate order; positives are in neither.

    Example:
        >>> select_negatives([("p", 0.9), ("a", 0.85), ("b", 0.5)], {"p": 0.7}, margin=0.1)
        (['b'], ['a'])
    """
    if not positives:
        raise ConfigurationError("a query needs at least one positive to filter negatives.")
    ceiling = float(np.mean(list(positives.values()))) + margin
    kept: list[str] = []
    false: list[str] = []
    for item, score in candidates:
        if item in positives:
            continue
        (kept if score < ceiling else false).append(item)
    return kept, false


# -- reading queries ---------------------------------------------------------------------------


def read_mining_queries(
    path: str | os.PathLike[str],
    *,
    budget: MediaBudget | None = None,
    max_problems: int = 100,
) -> list[MiningQuery]:
    r"""Read and check a JSONL file of queries with the names of their positives in an index.

    One row per line (blank lines skipped)::

        {"query": ITEM, "positives": ["report.pdf#page=3", "chart.png"], "instruction": "..."}

    ``ITEM`` is as in training files. Positives name index items by the path their file was
    indexed under, relative to this file's folder or absolute, with ``#page=N`` (1-based) for
    a PDF page. Rows are checked as in :func:`~qwen3_vl_rag.finetune.read_training_file`; that
    the positives are in the index is checked by :func:`mine_hard_negatives`.

    Raises:
        DatasetError: Every problem found, as ``(file, line, reason)``.

    Example:
        >>> import json
        >>> row = {"query": "revenue table", "positives": ["documents/annual-report.pdf#page=2"]}
        >>> _ = Path("queries.jsonl").write_text(json.dumps(row) + "\n")
        >>> (query,) = read_mining_queries("queries.jsonl")
        >>> query.query.text, Path(query.positives[0]).name, query.source
        ('revenue table', 'annual-report.pdf#page=2', 'queries.jsonl:1')
    """
    path = Path(path)
    budget = budget or MediaBudget()
    with checking_pool(budget) as check_runner:
        reader = RowReader(path.parent, FileChecker(budget, check_runner, IN_PROCESS_RUNNER))

        def row(value: dict[str, Any], reasons: list[str], source: str) -> MiningQuery | None:
            reasons += unknown_keys(list(value), _ROW_KEYS)
            query = None
            if "query" in value:
                query = reader.item(value["query"], "query", reasons)
            else:
                reasons.append('no "query".')
            names: tuple[str, ...] = ()
            if "positives" in value:
                names = _positive_names(value["positives"], path.parent, reasons)
            else:
                reasons.append('no "positives": name at least one index item.')
            instruction = instruction_of(value, reasons)
            if query is None or reasons:
                return None
            return MiningQuery(reader.checker.query(query), names, instruction, source)

        return read_rows(path, row, max_problems)


def _positive_names(value: object, folder: Path, reasons: list[str]) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if values == []:
        reasons.append("positives: an empty list; name at least one index item.")
        return ()
    if not isinstance(values, list):
        reasons.append(f"positives: a list of item names, not {kind_of(value)}.")
        return ()
    names = []
    for number, name in enumerate(values):
        where = f"positives[{number}]"
        if not isinstance(name, str) or not name.strip() or "\x00" in name:
            reasons.append(
                f"{where}: an item name (a path, with #page=N for a page), not {kind_of(name)}."
            )
            continue
        file, page, problem = split_name(name)
        if problem:
            reasons.append(f"{where}: {problem}")
            continue
        names.append(str(folder / file) + (f"{_PAGE}{page}" if page else ""))
    return tuple(names)


def split_name(name: str) -> tuple[str, int | None, str | None]:
    """``(path, 1-based page or None, problem or None)`` of an item name like ``a.pdf#page=3``."""
    file, marker, page = name.rpartition(_PAGE)
    if not marker:
        return name, None, None
    if not file or not page.isdecimal() or int(page) < 1 or len(page) > 9:
        return name, None, f"{name[:80]!r}: a page is named 'file.pdf#page=N', N from 1."
    return file, int(page), None


# -- mining ------------------------------------------------------------------------------------


def mine_hard_negatives(
    index: MultimodalIndex,
    queries: Iterable[MiningQuery | tuple[InputItem, Sequence[str]]],
    *,
    k: int = 20,
    negatives: int = 7,
    positive_threshold: float | None = None,
    margin: float = 0.1,
    show_progress: bool = False,
) -> MiningResult:
    """Mine hard negatives for queries whose positives are items of ``index``.

    Every positive name is resolved in the index first (no model work until all are known);
    then the queries are embedded in one call, the top ``k`` items recalled for each by cosine
    similarity, and the report's filter applied (see the module's description). Scores are the
    cosine of the query's vector with each stored vector.

    Args:
        index: An index opened with the embedder it was built with.
        queries: :class:`MiningQuery` s (from :func:`read_mining_queries`), or
            ``(query, [item names])`` pairs with names relative to the working folder.
        k: Items recalled per query (positives among them are not negatives).
        negatives: Hard negatives kept per query, hardest first.
        positive_threshold: ``t+``: drop a query when a positive scores below it (``None``:
            keep every query).
        margin: Keep a negative only when it scores below the mean positive score plus this.
        show_progress: Show a progress bar over the queries.

    Returns:
        The examples and counts; use the examples inside ``with`` (they decode through it).

    Raises:
        DatasetError: Positives that are not items of the index (each with its query).
        ConfigurationError: ``k`` or ``negatives`` out of range, or no embedder.
    """
    if k < 1 or negatives < 0:
        raise ConfigurationError(
            f"k must be at least 1 and negatives at least 0, got {k}, {negatives}."
        )
    embedder = index.require_embedder()
    asked = _as_mining_queries(queries)
    resolved = _resolve_all(index, asked)
    budget = index.media_options.budget
    pool = WorkerPool(
        max(1, index.workers), timeout=budget.timeout, memory_limit=budget.worker_memory
    )
    reopener = Reopener(index.manifest, index.media_options, lambda: pool)
    result = MiningResult(examples=[], _resources=[pool, reopener])
    inputs = _Inputs(reopener)
    progress = _progress(len(asked), show_progress)
    try:
        vectors = np.empty((0, index.dimension), dtype=np.float32)
        if asked:  # one call: the engine batches by its token budget
            items = [dataclasses.replace(q.query, instruction=q.instruction) for q in asked]
            vectors = np.asarray(embedder.embed_queries(items, dim=index.dimension))
        for query, positives, vector in zip(asked, resolved, vectors, strict=True):
            _mine_one(
                index,
                inputs,
                result,
                query,
                positives,
                vector,
                k=k,
                negatives=negatives,
                threshold=positive_threshold,
                margin=margin,
            )
            progress.update()
    except BaseException:
        result.close()
        raise
    finally:
        progress.close()
    return result


def _as_mining_queries(
    queries: Iterable[MiningQuery | tuple[InputItem, Sequence[str]]],
) -> list[MiningQuery]:
    """Pairs as :class:`MiningQuery` s (names made absolute); every bad name is a problem."""
    made: list[MiningQuery] = []
    problems: list[tuple[str, int, str]] = []
    for number, query in enumerate(queries, start=1):
        if isinstance(query, MiningQuery):
            made.append(query)
            continue
        item, names = query
        where = f"query {number}"
        split = [split_name(name) for name in ([names] if isinstance(names, str) else names)]
        problems += [(where, 0, problem) for _, _, problem in split if problem]
        absolute = tuple(
            os.path.abspath(file) + (f"{_PAGE}{page}" if page else "") for file, page, _ in split
        )
        made.append(MiningQuery(as_multimodal_input(item), absolute, source=where))
    if problems:
        raise DatasetError(problems)
    return made


def _resolve_all(
    index: MultimodalIndex, queries: Sequence[MiningQuery]
) -> list[dict[str, dict[str, Any]]]:
    """``{item id: metadata}`` of each query's positives; every unknown name is a problem."""
    manifest = index.manifest
    by_real: dict[str, str] | None = None
    problems: list[tuple[str, int, str]] = []
    resolved = []
    for query in queries:
        found: dict[str, dict[str, Any]] = {}
        where, _, line = query.source.rpartition(":")
        file_line = (where, int(line)) if where and line.isdecimal() else (query.source, 0)
        if not query.positives:
            problems.append((*file_line, "no positive named."))
        for name in query.positives:
            file, page, _ = split_name(name)
            label = path_key(os.path.abspath(file))
            if manifest.source(label) is None:
                if by_real is None:
                    by_real = {
                        os.path.realpath(key_path(row.path)): row.path for row in manifest.sources()
                    }
                label = by_real.get(os.path.realpath(file), label)
            item = _item(manifest, label, page)
            if isinstance(item, str):
                shown = f"{display_path(file)}{f' page {page}' if page else ''}"
                problems.append((*file_line, f"positive {shown}: {item}"))
                continue
            found[item[0]] = item[1]
        resolved.append(found)
    if problems:
        raise DatasetError(problems)
    return resolved


def _item(manifest: Manifest, label: str, page: int | None) -> tuple[str, dict[str, Any]] | str:
    row = manifest.source(label)
    if row is None:
        return "not in the index (name the file by the path it was indexed under)."
    if row.status != "indexed":
        return f"the index could not read it ({row.error})."
    if page is not None:
        return manifest.current_item(label, f"page:{page - 1}") or (
            f"no such page in the index (it holds {row.items} item(s) of this file)."
        )
    for locator in ("image", "video"):
        found = manifest.current_item(label, locator)
        if found is not None:
            return found
    if manifest.current_item(label, "page:0") is not None:
        return "a PDF: name one of its pages, as 'file.pdf#page=N'."
    return "the index holds it in clips; name an image, a whole video or a PDF page."


def _mine_one(
    index: MultimodalIndex,
    reopener: _Inputs,
    result: MiningResult,
    query: MiningQuery,
    positives: dict[str, dict[str, Any]],
    vector: np.ndarray,
    *,
    k: int,
    negatives: int,
    threshold: float | None,
    margin: float,
) -> None:
    name = query.source
    hits = index.store.query(vector, k)
    metadata = {hit.id: hit.metadata for hit in hits}
    scores = _cosines(index, vector, [*positives, *metadata])
    positive_scores = {item: scores[item] for item in positives}
    if threshold is not None:
        weakest = min(positive_scores, key=positive_scores.__getitem__)
        if positive_scores[weakest] < threshold:
            score = positive_scores[weakest]
            reason = f"a positive scores {score:.4f}, below positive_threshold {threshold:g}"
            result.dropped_queries.append((name, reason))
            return
    documents = []
    for item, meta in positives.items():
        document = reopener.input(item, meta)
        if isinstance(document, str):
            result.dropped_queries.append((name, f"positive {_shown(meta)}: {document}"))
            return
        documents.append(document)
    # a hit the manifest no longer records (a write in between) has no exact score: left out
    candidates = [(hit.id, scores[hit.id]) for hit in hits if hit.id in scores]
    kept, false = select_negatives(candidates, positive_scores, margin=margin)
    result.false_negatives += len(false)
    chosen: list[MultimodalInput] = []
    for item in kept:
        if len(chosen) >= negatives:
            break
        document = reopener.input(item, metadata[item])
        if isinstance(document, str):
            result.skipped.append((_shown(metadata[item]), document))
            continue
        chosen.append(document)
    result.examples.append(
        TrainingExample(query.query, tuple(documents), tuple(chosen), query.instruction, "index")
    )
    result.queries_kept += 1
    result.negatives_kept += len(chosen)


def _cosines(index: MultimodalIndex, vector: np.ndarray, ids: Sequence[str]) -> dict[str, float]:
    """Cosine of ``vector`` with each stored vector of ``ids`` (from the manifest, exactly)."""
    stored = index.manifest.vectors(list(dict.fromkeys(ids)))
    query = np.asarray(vector, dtype=np.float64)
    query = query / np.linalg.norm(query)
    return {
        item: float(np.dot(query, row / np.linalg.norm(row)))
        for item, row in ((i, np.asarray(v, dtype=np.float64)) for i, v in stored.items())
    }


class _Inputs:
    """Items reopened as a search reopens them for its reranker, once each per mining run."""

    def __init__(self, reopener: Reopener) -> None:
        self.reopener = reopener
        self.made: dict[str, MultimodalInput | str] = {}

    def input(self, item: str, meta: Mapping[str, Any]) -> MultimodalInput | str:
        """The item's model input, or why its file cannot be read (stale, undecodable)."""
        if item not in self.made:
            try:
                self.made[item] = self.reopener.rerank_input(meta)
            except StaleSourceError as err:
                self.made[item] = err.reason
            except (InputError, OSError, KeyError, ValueError) as exc:
                self.made[item] = f"{type(exc).__name__}: {exc}"
        return self.made[item]


def _shown(meta: Mapping[str, Any]) -> str:
    locator = meta.get("locator")
    return f"{meta.get('source')}{f', {locator}' if locator else ''}"


class _NoProgress:
    def update(self) -> None: ...
    def close(self) -> None: ...


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="queries", unit="query")
