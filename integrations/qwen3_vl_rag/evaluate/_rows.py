"""Reading evaluation files row by row: JSONL queries and corpora, qrels TSV; problems collected.

Nothing here opens a picture: rows are parsed and their fields checked, and every problem is
kept as ``(file, line, reason)`` for one :class:`~qwen3_vl_rag.errors.DatasetError`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwen3_vl_rag.checked_files import display_path

__all__ = ["CorpusDocument", "EvalQuery", "Problems", "read_corpus", "read_qrels", "read_queries"]

Problem = tuple[str, int, str]


class Problems:
    """The problems found so far, each with its file and 1-based line (0: the file itself)."""

    def __init__(self) -> None:
        self.found: list[Problem] = []

    def add(self, path: Path, line: int, reason: str) -> None:
        self.found.append((display_path(path), line, reason))

    def __bool__(self) -> bool:
        return bool(self.found)


@dataclass(frozen=True)
class CorpusDocument:
    r"""One corpus row: a text, an image, or a PDF page.

    A row with an image or a page is embedded as that picture (its title and text are kept, not
    embedded, as the index keeps a PDF page's text); a row with only a title and a text is
    embedded as the text ``"title\ntext"`` (the title left out when empty).

    Attributes:
        id: The row's ``_id``.
        title: Its ``title`` (``""`` when none).
        text: Its ``text`` (``""`` when none).
        image: The image file, resolved against the corpus file's folder.
        pdf: The PDF file, resolved the same way.
        page: The PDF page, 1-based.
        line: The row's line in ``corpus.jsonl``.

    Example:
        >>> CorpusDocument("d1", title="Q4", text="Revenue grew.").model_text
        'Q4\nRevenue grew.'
    """

    id: str
    title: str = ""
    text: str = ""
    image: Path | None = None
    pdf: Path | None = None
    page: int | None = None
    line: int = 0

    @property
    def kind(self) -> str:
        """``"image"``, ``"page"`` or ``"text"``."""
        return "image" if self.image else "page" if self.pdf else "text"

    @property
    def model_text(self) -> str:
        """The text a text-only row is embedded as."""
        return f"{self.title}\n{self.text}" if self.title else self.text


@dataclass(frozen=True)
class EvalQuery:
    """One query row: a text, an image, or both, with an optional instruction.

    Attributes:
        id: The row's ``_id``.
        text: Its ``text``, or ``None``.
        image: Its image file (resolved against the queries file's folder), or ``None``.
        instruction: The task instruction for this query, or ``None`` (the call's).
        line: The row's line in the queries file.

    Example:
        >>> EvalQuery("q1", text="bar chart of revenue").image is None
        True
    """

    id: str
    text: str | None = None
    image: Path | None = None
    instruction: str | None = None
    line: int = 0


def _json_rows(path: Path, problems: Problems) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line, object)`` of each non-blank line; bad lines become problems."""
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        problems.add(path, 0, f"cannot be read ({exc.strerror or exc}).")
        return
    with handle:
        try:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    problems.add(path, number, f"not JSON ({exc.msg}, column {exc.colno}).")
                    continue
                if not isinstance(row, dict):
                    problems.add(
                        path, number, f"a JSON object is needed, not {type(row).__name__}."
                    )
                    continue
                yield number, row
        except UnicodeDecodeError as exc:
            problems.add(path, 0, f"not UTF-8 text ({exc.reason} at byte {exc.start}).")


def _row_id(path: Path, number: int, row: dict[str, Any], problems: Problems) -> str | None:
    value = row.get("_id")
    if isinstance(value, bool) or not isinstance(value, str | int):
        problems.add(path, number, "no '_id' (a string) in the row.")
        return None
    text = str(value)
    if not text or any(character.isspace() for character in text):
        problems.add(
            path, number, f"the id {text!r} is empty or holds whitespace (run files split on it)."
        )
        return None
    return text


def _string(path: Path, number: int, row: dict[str, Any], key: str, problems: Problems) -> str:
    value = row.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        problems.add(path, number, f"{key!r} must be a string, not {type(value).__name__}.")
        return ""
    return value


def _file(path: Path, number: int, value: Any, key: str, problems: Problems) -> Path | None:
    """A file named by a row, resolved against the row's file's folder."""
    if not isinstance(value, str) or not value:
        problems.add(path, number, f"{key!r} must be a file path (a non-empty string).")
        return None
    named = Path(value)
    return named if named.is_absolute() else path.parent / named


def read_corpus(path: Path, problems: Problems) -> dict[str, CorpusDocument]:
    """The corpus rows by id, in file order; duplicate ids and bad fields become problems."""
    documents: dict[str, CorpusDocument] = {}
    for number, row in _json_rows(path, problems):
        doc_id = _row_id(path, number, row, problems)
        title = _string(path, number, row, "title", problems)
        text = _string(path, number, row, "text", problems)
        image = pdf = page = None
        if "image" in row and "pdf" in row:
            problems.add(path, number, "'image' and 'pdf' exclude each other.")
            continue
        if "image" in row:
            image = _file(path, number, row["image"], "image", problems)
        elif "pdf" in row:
            pdf = _file(path, number, row["pdf"], "pdf", problems)
            page = row.get("page")
            if isinstance(page, bool) or not isinstance(page, int) or page < 1:
                problems.add(path, number, "'pdf' needs 'page', a page number from 1.")
                continue
        elif "page" in row:
            problems.add(path, number, "'page' without 'pdf'.")
            continue
        if "image" not in row and "pdf" not in row and not (title or text):
            problems.add(path, number, "the row has no text, image or PDF page.")
            continue
        if doc_id is None or (image is None and "image" in row) or (pdf is None and "pdf" in row):
            continue
        if doc_id in documents:
            first = documents[doc_id].line
            problems.add(path, number, f"the id {doc_id!r} is used already (line {first}).")
            continue
        documents[doc_id] = CorpusDocument(doc_id, title, text, image, pdf, page, number)
    return documents


def read_queries(path: Path, problems: Problems) -> dict[str, EvalQuery]:
    """The query rows by id, in file order; duplicate ids and bad fields become problems."""
    queries: dict[str, EvalQuery] = {}
    for number, row in _json_rows(path, problems):
        query_id = _row_id(path, number, row, problems)
        text = _string(path, number, row, "text", problems) or None
        instruction = _string(path, number, row, "instruction", problems) or None
        image = _file(path, number, row["image"], "image", problems) if "image" in row else None
        if text is None and image is None:
            if "image" not in row:
                problems.add(path, number, "the query has no text and no image.")
            continue
        if query_id is None:
            continue
        if query_id in queries:
            first = queries[query_id].line
            problems.add(path, number, f"the id {query_id!r} is used already (line {first}).")
            continue
        queries[query_id] = EvalQuery(query_id, text, image, instruction, number)
    return queries


def read_qrels(
    path: Path, problems: Problems
) -> tuple[dict[str, dict[str, int]], dict[tuple[str, str], int]]:
    """``({query id: {corpus id: grade}}, {(query id, corpus id): line})``.

    Lines are ``query-id<TAB>corpus-id<TAB>score``; a first line whose score is not an integer is
    the header. A pair judged twice is a problem.
    """
    qrels: dict[str, dict[str, int]] = {}
    lines: dict[tuple[str, str], int] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        problems.add(path, 0, f"cannot be read ({exc.strerror or exc}).")
        return qrels, lines
    except UnicodeDecodeError as exc:
        problems.add(path, 0, f"not UTF-8 text ({exc.reason} at byte {exc.start}).")
        return qrels, lines
    header_allowed = True
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        maybe_header, header_allowed = header_allowed, False
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) != 3:
            problems.add(
                path,
                number,
                f"3 tab-separated fields are needed (query-id, corpus-id, score), "
                f"found {len(fields)}.",
            )
            continue
        query_id, doc_id, score = (field.strip() for field in fields)
        try:
            grade = int(score)
        except ValueError:
            if maybe_header:
                continue  # the header line
            problems.add(path, number, f"the score {score!r} is not an integer grade.")
            continue
        if not query_id or not doc_id:
            problems.add(path, number, "an empty query or corpus id.")
            continue
        if (query_id, doc_id) in lines:
            problems.add(
                path,
                number,
                f"{query_id} / {doc_id} is judged already (line {lines[query_id, doc_id]}).",
            )
            continue
        lines[query_id, doc_id] = number
        qrels.setdefault(query_id, {})[doc_id] = grade
    return qrels, lines
