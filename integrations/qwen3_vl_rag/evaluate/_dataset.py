"""A BEIR folder, checked whole before any model runs, and its rows as model inputs.

The layout: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``. Pictures are opened
through the media layer under its budgets, in worker processes (a hostile file is a reported
problem, never a crash or a hang): an image's header is read, a PDF is opened and its pages
counted. At evaluation, pages are rendered at the size each model uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qwen3_vl_rag.errors import DatasetError, InputError
from qwen3_vl_rag.evaluate._rows import (
    CorpusDocument,
    EvalQuery,
    Problems,
    read_corpus,
    read_qrels,
    read_queries,
)
from qwen3_vl_rag.inputs import InputItem, MultimodalInput
from qwen3_vl_rag.media.budget import MediaBudget
from qwen3_vl_rag.media.images import load_image
from qwen3_vl_rag.media.isolation import WorkerPool
from qwen3_vl_rag.media.items import MediaItem
from qwen3_vl_rag.media.pdf import load_pdf

if TYPE_CHECKING:
    from qwen3_vl_rag.media.isolation import DecodeRunner

__all__ = ["BeirDataset", "check_pictures", "load_beir", "query_input"]


@dataclass(frozen=True, eq=False)
class BeirDataset:
    r"""A checked BEIR folder: its corpus, the queries judged in one split, and their qrels.

    Pictures are decoded in the dataset's worker processes: use it inside ``with`` (or call
    :meth:`close`) so they stop when the evaluation is done.

    Attributes:
        folder: The dataset's folder.
        split: The qrels split (``qrels/<split>.tsv``).
        corpus: Every corpus row by id, in file order.
        queries: The queries judged in the split, by id, in file order (the other rows of
            ``queries.jsonl``, which other splits judge, are left out).
        qrels: ``{query id: {corpus id: grade}}``.
        budget: The limits pictures were checked under (byte, pixel and time budgets).
        pool: The worker processes pictures are decoded in (``None``: in this process).

    Example:
        >>> import json
        >>> from pathlib import Path
        >>> from qwen3_vl_rag.evaluate import load_beir
        >>> folder = Path("beir")
        >>> (folder / "qrels").mkdir(parents=True)
        >>> rows = [{"_id": "d1", "text": "Revenue grew."}, {"_id": "d2", "image": "../chart.png"}]
        >>> _ = (folder / "corpus.jsonl").write_text("\n".join(map(json.dumps, rows)))
        >>> _ = (folder / "queries.jsonl").write_text('{"_id": "q1", "text": "a bar chart"}')
        >>> _ = (folder / "qrels" / "test.tsv").write_text("q1\td2\t1\n")
        >>> with load_beir(folder) as data:
        ...     print(len(data.corpus), list(data.queries), data.qrels)
        2 ['q1'] {'q1': {'d2': 1}}
    """

    folder: Path
    split: str
    corpus: Mapping[str, CorpusDocument]
    queries: Mapping[str, EvalQuery]
    qrels: Mapping[str, Mapping[str, int]]
    budget: MediaBudget = field(default_factory=MediaBudget)
    pool: WorkerPool | None = field(default=None, repr=False)

    def document_inputs(
        self, ids: Sequence[str], budget: MediaBudget | None = None
    ) -> list[InputItem]:
        """The model input of each corpus row of ``ids``: its text, image or page.

        Args:
            ids: Corpus ids, in the order wanted.
            budget: The model's budget (``MediaBudget.matching(model)``): pages are rendered
                at its size (default: :attr:`budget`).
        """
        budget = budget or self.budget
        runner = self._runner()
        pages = _pages(self.corpus, ids, budget, runner)
        inputs: list[InputItem] = []
        for doc_id in ids:
            document = self.corpus[doc_id]
            if document.image is not None:
                inputs.append(load_image(document.image, budget=budget, runner=runner))
            elif document.pdf is not None and document.page is not None:
                inputs.append(pages[document.pdf, document.page])
            else:
                inputs.append(document.model_text)
        return inputs

    def query_inputs(
        self, ids: Sequence[str], budget: MediaBudget | None = None
    ) -> list[MultimodalInput]:
        """The model input of each query of ``ids``: text, image, its own instruction."""
        budget = budget or self.budget
        runner = self._runner()
        return [query_input(self.queries[query_id], budget, runner) for query_id in ids]

    def _runner(self) -> DecodeRunner:
        if self.pool is None:
            from qwen3_vl_rag.media.isolation import IN_PROCESS_RUNNER

            return IN_PROCESS_RUNNER
        return self.pool

    def close(self) -> None:
        """Stop the worker processes pictures are decoded in."""
        if self.pool is not None:
            self.pool.close()

    def __enter__(self) -> BeirDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def query_input(query: EvalQuery, budget: MediaBudget, runner: DecodeRunner) -> MultimodalInput:
    """A query row as a model input (its image decoded through ``runner`` when used)."""
    images: tuple[Any, ...] = ()
    if query.image is not None:
        item = load_image(query.image, budget=budget, runner=runner)
        images = tuple(item.to_input().images)
    return MultimodalInput(text=query.text, images=images, instruction=query.instruction)


def _pages(
    corpus: Mapping[str, CorpusDocument],
    ids: Sequence[str],
    budget: MediaBudget,
    runner: DecodeRunner,
) -> dict[tuple[Path, int], MediaItem]:
    """The page items the rows of ``ids`` need, each PDF opened once."""
    wanted: dict[Path, set[int]] = {}
    for doc_id in ids:
        document = corpus[doc_id]
        if document.pdf is not None and document.page is not None:
            wanted.setdefault(document.pdf, set()).add(document.page - 1)
    pages = {}
    for pdf, numbers in wanted.items():
        fitted = replace(budget, max_pages=max(budget.max_pages, len(numbers)))
        for item in load_pdf(pdf, pages=sorted(numbers), budget=fitted, runner=runner):
            pages[pdf, int(item.metadata["page"]) + 1] = item
    return pages


def check_pictures(
    rows: Sequence[tuple[Path, int, Path, int | None]],
    problems: Problems,
    budget: MediaBudget,
    runner: DecodeRunner,
) -> None:
    """Open every picture rows name: ``(file, line, picture, page)``, page ``None`` for images.

    An image's header is read (format, size within the budget); a PDF is opened once and the
    page checked against its count. What fails is a problem at the row's line.
    """
    page_counts: dict[Path, int | str] = {}
    headers: dict[Path, str | None] = {}
    for file, line, picture, page in rows:
        if page is None:
            if picture not in headers:
                headers[picture] = _image_problem(picture, budget, runner)
            reason = headers[picture]
        else:
            if picture not in page_counts:
                page_counts[picture] = _page_count(picture, budget, runner)
            count = page_counts[picture]
            if isinstance(count, str):
                reason = count
            elif page > count:
                reason = f"{picture.name} has {count} page(s), there is no page {page}."
            else:
                reason = None
        if reason:
            problems.add(file, line, reason)


def _image_problem(path: Path, budget: MediaBudget, runner: DecodeRunner) -> str | None:
    if not path.exists():
        return f"no such file: {path}."
    try:
        load_image(path, budget=budget, runner=runner)
    except InputError as err:
        return f"{type(err).__name__}: {err}"
    except OSError as exc:
        return f"{path} cannot be read ({exc.strerror or exc})."
    return None


def _page_count(path: Path, budget: MediaBudget, runner: DecodeRunner) -> int | str:
    if not path.exists():
        return f"no such file: {path}."
    try:
        return load_pdf(path, pages=[], budget=budget, runner=runner).total_pages
    except InputError as err:
        return f"{type(err).__name__}: {err}"
    except OSError as exc:
        return f"{path} cannot be read ({exc.strerror or exc})."


def load_beir(
    folder: str | Path,
    *,
    split: str = "test",
    budget: MediaBudget | None = None,
    workers: int = 2,
) -> BeirDataset:
    """Read and check a BEIR folder; every problem in it is raised at once.

    Checked: each line is a JSON object with a string ``_id`` used once; a corpus row has a
    text, an image or a PDF page (``"pdf"`` with a 1-based ``"page"``), a query a text or an
    image; every file named exists and opens (an image's header is read under the budget, a PDF's
    pages are counted); each qrels line has three tab-separated fields with an integer grade,
    names a known query and document, and each judged query has a relevant document (a grade
    above 0). Queries not judged in the split are left out.

    Args:
        folder: The folder holding ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/``.
        split: Which ``qrels/<split>.tsv`` to read.
        budget: Byte, pixel and time limits for opening pictures (default :class:`MediaBudget`).
            The models' own pixel budgets apply when pages are rendered for them.
        workers: Worker processes pictures are opened in.

    Raises:
        DatasetError: Every problem found, with its file and line.
        MissingDependencyError: A PDF is named and PyMuPDF is missing
            (``pip install "qwen3-vl-rag[pdf]"``).

    Example:
        >>> from qwen3_vl_rag.errors import DatasetError
        >>> try:
        ...     load_beir("no-such-folder")
        ... except DatasetError as err:
        ...     print(len(err.problems), err.problems[0][1:])
        3 (0, 'missing: a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/<split>.tsv.')
    """
    root = Path(folder)
    budget = budget or MediaBudget()
    problems = Problems()
    paths = {
        "corpus": root / "corpus.jsonl",
        "queries": root / "queries.jsonl",
        "qrels": root / "qrels" / f"{split}.tsv",
    }
    for path in paths.values():
        if not path.is_file():
            problems.add(
                path,
                0,
                "missing: a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/<split>.tsv.",
            )
    if problems:
        raise DatasetError(problems.found)
    corpus = read_corpus(paths["corpus"], problems)
    all_queries = read_queries(paths["queries"], problems)
    qrels, lines = read_qrels(paths["qrels"], problems)
    check_qrels(paths["qrels"], qrels, lines, all_queries, corpus, problems)
    queries = {query_id: query for query_id, query in all_queries.items() if query_id in qrels}
    pool = WorkerPool(workers, timeout=budget.timeout, memory_limit=budget.worker_memory)
    try:
        pictures = [
            (paths["corpus"], doc.line, doc.image or doc.pdf, doc.page)
            for doc in corpus.values()
            if doc.image is not None or doc.pdf is not None
        ]
        pictures += [
            (paths["queries"], query.line, query.image, None)
            for query in queries.values()
            if query.image is not None
        ]
        check_pictures(
            [(file, line, picture, page) for file, line, picture, page in pictures if picture],
            problems,
            budget,
            pool,
        )
        if problems:
            raise DatasetError(problems.found)
    except BaseException:
        pool.close()
        raise
    return BeirDataset(root, split, corpus, queries, qrels, budget, pool)


def check_qrels(
    path: Path,
    qrels: Mapping[str, Mapping[str, int]],
    lines: Mapping[tuple[str, str], int],
    queries: Mapping[str, Any],
    corpus: Mapping[str, Any] | None,
    problems: Problems,
) -> None:
    """Judged queries must be known and have a relevant document; documents must be known.

    ``corpus`` ``None``: documents are not checked (an index names its own).
    """
    for query_id, judged in qrels.items():
        line = min(lines.get((query_id, doc_id), 0) for doc_id in judged)
        if query_id not in queries:
            problems.add(path, line, f"the query {query_id!r} is not in the queries file.")
        if corpus is not None:
            for doc_id in judged:
                if doc_id not in corpus:
                    problems.add(
                        path,
                        lines.get((query_id, doc_id), 0),
                        f"the document {doc_id!r} is not in the corpus.",
                    )
        if not any(grade > 0 for grade in judged.values()):
            problems.add(
                path, line, f"the query {query_id!r} has no relevant document (no grade above 0)."
            )
    if not qrels and not problems:
        problems.add(path, 0, "no judgements: nothing to evaluate.")
