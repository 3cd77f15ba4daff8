"""A synthetic multimodal corpus, made offline and deterministically, that a tiny model can learn.

Pages come in six kinds (:data:`PAGE_KINDS`: bar, line and pie charts, tables, photo-like scenes,
UI screenshots) and six colours (:data:`COLOURS`). A page's colour is the colour of its chart
marks, its table's header, its screenshot's header bar and buttons, or the tint of its photo; all
else on the page is black, white or grey. Each page is a white portrait image with a title, a
figure over most of the page, a caption and a few lines of text (drawn in the image, and kept as
strings). The figures are big flat shapes, so kind and colour stay visible when a page is seen
at about 256x320 pixels, some 80 visual tokens of a tiny Qwen3-VL: nothing depends on reading
the small text.

Every page draws its data, layout jitter, subject (revenue, headcount, a snowy mountain, the
billing screen...), caption and text from its own generator, seeded by the split's name, the
seed, its class and its number. A ``"train"`` and a ``"test"`` corpus therefore share the classes
but never a page, and the same arguments write the same bytes (with the same Pillow, whose
bundled font draws the text, and the same PyMuPDF for the PDFs).

Queries describe a class the way a user asks for it ("red bar chart of quarterly revenue", "a
pie chart in blue", "photo of a snowy mountain in purple tones"), several phrasings per class.
Relevance is graded by what a page shows at a glance:

* 2: the query's kind and colour;
* 1: the query's kind in another colour (a blue bar chart for "red bar chart": the right kind of
  page is still half an answer);
* 0 (not listed): any other kind, even in the query's colour.

Subject words (revenue, the snowy mountain) make a query read naturally but are not judged: a
model that sees a page in 80 tokens cannot read its title, and judging them would ask it to. For
the same reason the splits' queries come from the same phrasings; what a test split holds out is
its pages.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import re
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, get_args

import numpy as np

from qwen3_vl_rag.errors import ConfigurationError, MissingDependencyError
from qwen3_vl_rag.testing._synthetic_content import subject_words, write_content
from qwen3_vl_rag.testing._synthetic_drawing import draw_page

__all__ = [
    "COLOURS",
    "PAGE_KINDS",
    "Colour",
    "PageKind",
    "SyntheticCorpus",
    "SyntheticPage",
    "SyntheticQuery",
    "make_synthetic_corpus",
]

PageKind = Literal["bar_chart", "line_chart", "pie_chart", "table", "photo", "screenshot"]
Colour = Literal["red", "orange", "yellow", "green", "blue", "purple"]

#: Every kind of page, in the order a corpus lists them.
PAGE_KINDS: tuple[PageKind, ...] = get_args(PageKind)

#: Every colour, with the RGB value its marks are drawn in: hues 0, 30, 50, 130, 220 and 280
#: degrees, far enough apart to tell at a glance.
COLOURS: Mapping[Colour, tuple[int, int, int]] = MappingProxyType(
    {
        "red": (214, 39, 40),
        "orange": (245, 130, 0),
        "yellow": (235, 195, 0),
        "green": (40, 150, 60),
        "blue": (31, 90, 210),
        "purple": (135, 55, 190),
    }
)

_PDF_DATE = "D:20250101000000Z"
_SPLIT_NAME = re.compile(r"[A-Za-z0-9_]+")

_QUERIES: Mapping[PageKind, tuple[str, ...]] = {
    "bar_chart": (
        "{colour} bar chart of {measure}",
        "bar chart of {measure} with {colour} bars",
        "a bar chart in {colour}",
        "{colour} bars showing {measure}",
    ),
    "line_chart": (
        "{colour} line chart of {measure}",
        "line graph of {measure} drawn in {colour}",
        "a {colour} line chart",
        "trend of {measure} as a {colour} line",
    ),
    "pie_chart": (
        "a pie chart in {colour}",
        "{colour} pie chart of {measure}",
        "pie chart showing the share of {measure} in {colour}",
        "{colour} pie chart",
    ),
    "table": (
        "table of {measure} with a {colour} header",
        "a table with a {colour} header row",
        "{measure} table, {colour} header",
        "{colour} striped table",
    ),
    "photo": (
        "photo of a {scene} in {colour} tones",
        "a {colour} photo of a {scene}",
        "{colour} tinted landscape photo",
        "photo with a {colour} tint",
    ),
    "screenshot": (
        "screenshot of a {screen} page with a {colour} header",
        "{colour} app screenshot",
        "UI screenshot of the {screen} form with {colour} buttons",
        "screenshot of a web app in {colour}",
    ),
}


@dataclasses.dataclass(frozen=True)
class SyntheticPage:
    """One generated page: what it shows, what it says, and where it was written.

    Attributes:
        id: Unique across splits, e.g. ``"test-bar_chart-red-01"``.
        kind: What the figure is.
        colour: The colour of the figure's marks (or the photo's tint).
        subject: What the figure is about: a measure (``"revenue"``), a scene or a screen.
        title: The page's title, as drawn at its top.
        caption: The figure's caption, as drawn below it.
        text: The page's text, drawn below the caption (as much as fits).
        image: The page as a PNG.
        pdf: The PDF file that holds the page too, when the corpus was made with ``pdf=True``.
        page: The page's number (1-based) in ``pdf``.

    Example:
        >>> from qwen3_vl_rag.testing import make_synthetic_corpus
        >>> corpus = make_synthetic_corpus("synthetic", kinds=["table"], colours=["green"])
        >>> page = corpus.pages[0]
        >>> page.id, page.kind, page.colour, page.image.name
        ('test-table-green-01', 'table', 'green', 'test-table-green-01.png')
    """

    id: str
    kind: PageKind
    colour: Colour
    subject: str
    title: str
    caption: str
    text: str
    image: Path
    pdf: Path | None = None
    page: int | None = None


@dataclasses.dataclass(frozen=True)
class SyntheticQuery:
    """A query for one class of pages, with every page it finds graded.

    Attributes:
        id: Unique across splits, e.g. ``"test-q-pie_chart-blue-1"``.
        text: What a user would type.
        kind: The kind of page it asks for.
        colour: The colour it asks for.
        relevance: Page id to grade: 2 for the query's kind and colour, 1 for its kind in
            another colour; pages of other kinds are not listed (grade 0).

    Example:
        >>> from qwen3_vl_rag.testing import make_synthetic_corpus
        >>> corpus = make_synthetic_corpus(
        ...     "synthetic", kinds=["pie_chart"], colours=["blue", "red"]
        ... )
        >>> query = corpus.queries[0]
        >>> query.kind, query.colour, "blue" in query.text
        ('pie_chart', 'blue', True)
        >>> query.relevance
        {'test-pie_chart-blue-01': 2, 'test-pie_chart-red-01': 1}
    """

    id: str
    text: str
    kind: PageKind
    colour: Colour
    relevance: Mapping[str, int]


@dataclasses.dataclass(frozen=True)
class SyntheticCorpus:
    """The pages and queries :func:`make_synthetic_corpus` wrote, and the files made from them.

    Attributes:
        folder: Where the pages were written (``images/``, and ``pdf/`` with ``pdf=True``).
        split: The split's name; it starts every page and query id.
        pages: Every page, by kind, then colour, then number.
        queries: Every query, by kind, then colour, then number.

    Example:
        >>> from qwen3_vl_rag.testing import make_synthetic_corpus
        >>> corpus = make_synthetic_corpus("synthetic", kinds=["bar_chart", "photo"])
        >>> len(corpus.pages), len(corpus.queries)
        (12, 36)
        >>> beir = corpus.write_beir("synthetic-beir")
        >>> sorted(p.name for p in beir.iterdir())
        ['corpus.jsonl', 'qrels', 'queries.jsonl']
        >>> rows = corpus.write_training_file("synthetic-train.jsonl").read_text().splitlines()
        >>> len(rows)
        36
    """

    folder: Path
    split: str
    pages: tuple[SyntheticPage, ...]
    queries: tuple[SyntheticQuery, ...]
    _by_id: Mapping[str, SyntheticPage] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {page.id: page for page in self.pages})

    def page(self, page_id: str) -> SyntheticPage:
        """The page with id ``page_id`` (a ``KeyError`` names an unknown one)."""
        return self._by_id[page_id]

    def write_beir(
        self, folder: str | os.PathLike[str], *, source: Literal["image", "pdf"] = "image"
    ) -> Path:
        """Write the corpus in the BEIR layout the ``evaluate`` command reads.

        ``corpus.jsonl`` has one row per page (title, caption and text, and the page as an image
        or, with ``source="pdf"``, as a PDF page), ``queries.jsonl`` one per query, and
        ``qrels/<split>.tsv`` (with its header line) every grade above 0. Paths are relative to
        ``folder``.

        Args:
            folder: Where to write; created if missing.
            source: Which copy of each page the corpus rows point at.

        Returns:
            ``folder``, as a ``Path``.

        Raises:
            ConfigurationError: ``source="pdf"`` for a corpus made without PDFs.
        """
        out = Path(folder)
        (out / "qrels").mkdir(parents=True, exist_ok=True)
        rows = []
        for page in self.pages:
            row: dict[str, Any] = {"_id": page.id, "title": page.title}
            row["text"] = f"{page.caption}\n{page.text}"
            row.update(self._item(page, out, source))
            rows.append(row)
        _write_jsonl(out / "corpus.jsonl", rows)
        _write_jsonl(out / "queries.jsonl", ({"_id": q.id, "text": q.text} for q in self.queries))
        lines = ["query-id\tcorpus-id\tscore"]
        for query in self.queries:
            lines += [f"{query.id}\t{page}\t{grade}" for page, grade in query.relevance.items()]
        (out / "qrels" / f"{self.split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return out

    def write_training_file(self, path: str | os.PathLike[str], *, negatives: int = 3) -> Path:
        """Write fine-tuning rows: each query with each page it is for, and hard negatives.

        One row per query and grade-2 page: ``{"query": text, "positives": {"image": ...},
        "negatives": [{"image": ...}, ...]}``. The negatives are the pages most easily mistaken
        for the positive, half of the same kind in another colour and half of the same colour
        in another kind (the first of an odd count being of the same kind), picked by a
        generator seeded from the split and the row. Rows take the classes in turn, so a batch
        of consecutive rows holds no two queries for the same class (fewer in-batch false
        negatives). Paths are relative to the file's folder.

        Args:
            path: The JSONL file to write; its folder is created if missing.
            negatives: Hard negatives per row (fewer where the corpus has fewer candidates).

        Returns:
            ``path``, as a ``Path``.

        Raises:
            ConfigurationError: ``negatives`` below 0.
        """
        if negatives < 0:
            raise ConfigurationError(f"negatives must be 0 or more, got {negatives}.")
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        by_class: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for query in self.queries:
            for page_id, grade in query.relevance.items():
                if grade < 2:
                    continue
                rows = by_class.setdefault((query.kind, query.colour), [])
                picked = self._hard_negatives(
                    self.page(page_id), negatives, f"{query.id}/{page_id}"
                )
                row: dict[str, Any] = {
                    "query": query.text,
                    "positives": self._item(self.page(page_id), out.parent, "image"),
                    "negatives": [self._item(page, out.parent, "image") for page in picked],
                }
                rows.append(row)
        _write_jsonl(out, _round_robin(list(by_class.values())))
        return out

    def _hard_negatives(self, positive: SyntheticPage, count: int, key: str) -> list[SyntheticPage]:
        rng = random.Random(f"{self.split}/negatives/{key}")
        same_kind = [
            p for p in self.pages if p.kind == positive.kind and p.colour != positive.colour
        ]
        same_colour = [
            p for p in self.pages if p.colour == positive.colour and p.kind != positive.kind
        ]
        from_kind = min(len(same_kind), max((count + 1) // 2, count - len(same_colour)))
        from_colour = min(len(same_colour), count - from_kind)
        return rng.sample(same_kind, from_kind) + rng.sample(same_colour, from_colour)

    def _item(self, page: SyntheticPage, base: Path, source: str) -> dict[str, Any]:
        if source == "image":
            return {"image": _relative(page.image, base)}
        if source != "pdf":
            raise ConfigurationError(f"source must be 'image' or 'pdf', got {source!r}.")
        if page.pdf is None:
            raise ConfigurationError(
                "The corpus has no PDF pages; make it with make_synthetic_corpus(..., pdf=True)."
            )
        return {"pdf": _relative(page.pdf, base), "page": page.page}


def make_synthetic_corpus(
    folder: str | os.PathLike[str],
    *,
    split: str = "test",
    pages_per_class: int = 1,
    queries_per_class: int = 3,
    seed: int = 0,
    size: tuple[int, int] = (256, 320),
    kinds: Sequence[PageKind] = PAGE_KINDS,
    colours: Sequence[Colour] = tuple(COLOURS),
    pdf: bool = False,
) -> SyntheticCorpus:
    """Draw a corpus of pages (every kind in every colour) and write it under ``folder``.

    Pages go to ``folder/images/<id>.png``; with ``pdf=True`` each kind's pages also go, in
    order, into ``folder/pdf/<split>-<kind>.pdf`` (the page image with its text as an invisible
    text layer, fixed metadata: same arguments, same bytes). Existing files are overwritten.

    Args:
        folder: Where to write; created if missing.
        split: A name for the corpus (letters, digits, ``_``): it seeds every page and starts
            every id, so two splits never share a page.
        pages_per_class: Pages of each kind in each colour.
        queries_per_class: Queries for each kind and colour, in different phrasings.
        seed: Another seed draws other pages (and phrasings) of the same split and classes.
        size: Page width and height in pixels (portrait: width below height reads best).
        kinds: The kinds of page to draw (default: all of :data:`PAGE_KINDS`).
        colours: The colours to draw them in (default: all of :data:`COLOURS`).
        pdf: Also write the pages into PDF files (needs ``pip install "qwen3-vl-rag[pdf]"``).

    Returns:
        The pages and queries written.

    Raises:
        ConfigurationError: A count below 1, a page under 64x64 pixels, an unknown or repeated
            kind or colour, or a split name that cannot be part of a file name.
        MissingDependencyError: ``pdf=True`` without PyMuPDF.

    Example:
        >>> from qwen3_vl_rag.testing import make_synthetic_corpus
        >>> corpus = make_synthetic_corpus(
        ...     "synthetic", split="train", pages_per_class=2, kinds=["bar_chart", "pie_chart"]
        ... )
        >>> len(corpus.pages), corpus.pages[0].id, corpus.pages[0].image.as_posix()
        (24, 'train-bar_chart-red-01', 'synthetic/images/train-bar_chart-red-01.png')
        >>> query = corpus.queries[0]
        >>> query.text, query.relevance["train-bar_chart-red-02"], len(query.relevance)
        ('bar chart of sales by region with red bars', 2, 12)
    """
    _check(split, pages_per_class, queries_per_class, size, kinds, colours)
    out = Path(folder)
    (out / "images").mkdir(parents=True, exist_ok=True)
    pages = [
        _make_page(out, split, seed, size, kind, colour, number)
        for kind in kinds
        for colour in colours
        for number in range(1, pages_per_class + 1)
    ]
    if pdf:
        pages = _write_pdfs(out / "pdf", split, size, pages)
    queries = [
        _make_query(split, seed, kind, colour, number, pages)
        for kind in kinds
        for colour in colours
        for number in range(1, queries_per_class + 1)
    ]
    return SyntheticCorpus(folder=out, split=split, pages=tuple(pages), queries=tuple(queries))


def _check(
    split: str,
    pages_per_class: int,
    queries_per_class: int,
    size: tuple[int, int],
    kinds: Sequence[str],
    colours: Sequence[str],
) -> None:
    if not _SPLIT_NAME.fullmatch(split):
        raise ConfigurationError(
            f"split must be letters, digits or '_' (it names files), got {split!r}."
        )
    if pages_per_class < 1 or queries_per_class < 1:
        raise ConfigurationError(
            "pages_per_class and queries_per_class must be 1 or more, "
            f"got {pages_per_class} and {queries_per_class}."
        )
    if min(size) < 64:
        raise ConfigurationError(f"size must be at least 64x64 pixels, got {size[0]}x{size[1]}.")
    for name, given, known in (("kinds", kinds, PAGE_KINDS), ("colours", colours, tuple(COLOURS))):
        unknown = [value for value in given if value not in known]
        if unknown or not given or len(set(given)) != len(given):
            raise ConfigurationError(
                f"{name} must be distinct values among {', '.join(known)}; got {list(given)}."
            )


def _seed(*parts: object) -> int:
    """A 32-bit seed from ``parts``, the same in every process (unlike ``hash``)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _make_page(
    folder: Path,
    split: str,
    seed: int,
    size: tuple[int, int],
    kind: PageKind,
    colour: Colour,
    number: int,
) -> SyntheticPage:
    page_seed = _seed(split, seed, kind, colour, number)
    rng = random.Random(page_seed)
    content = write_content(kind, rng)
    image = draw_page(
        size,
        COLOURS[colour],
        content.figure,
        title=content.title,
        caption=content.caption,
        text=content.text,
        rng=rng,
        noise=np.random.RandomState(page_seed),  # legacy generator: its stream never changes
    )
    page_id = f"{split}-{kind}-{colour}-{number:02d}"
    path = folder / "images" / f"{page_id}.png"
    image.save(path, format="PNG", compress_level=1)  # fast; the size hardly matters
    return SyntheticPage(
        page_id,
        kind,
        colour,
        content.figure.subject,
        content.title,
        content.caption,
        content.text,
        path,
    )


def _make_query(
    split: str,
    seed: int,
    kind: PageKind,
    colour: Colour,
    number: int,
    pages: Sequence[SyntheticPage],
) -> SyntheticQuery:
    templates = _QUERIES[kind]
    # the class's phrasings in a fixed shuffled order, so its first queries differ in wording
    order = random.Random(_seed(split, seed, kind, colour, "phrasings")).sample(
        range(len(templates)), len(templates)
    )
    rng = random.Random(_seed(split, seed, kind, colour, "query", number))
    words = subject_words(kind, rng)
    text = templates[order[(number - 1) % len(templates)]].format(colour=colour, **words)
    relevance = {page.id: 2 if page.colour == colour else 1 for page in pages if page.kind == kind}
    return SyntheticQuery(f"{split}-q-{kind}-{colour}-{number}", text, kind, colour, relevance)


def _write_pdfs(
    folder: Path, split: str, size: tuple[int, int], pages: list[SyntheticPage]
) -> list[SyntheticPage]:
    """Each kind's pages, in order, into one PDF; the pages returned name their PDF page."""
    try:
        import pymupdf as untyped
    except ImportError as exc:
        raise MissingDependencyError("pymupdf", "pdf", "Writing the corpus as PDF") from exc
    pymupdf: Any = untyped  # PyMuPDF ships no type hints

    folder.mkdir(parents=True, exist_ok=True)
    placed: list[SyntheticPage] = []
    for kind in dict.fromkeys(page.kind for page in pages):
        path = folder / f"{split}-{kind}.pdf"
        with pymupdf.open() as document:
            for number, page in enumerate((p for p in pages if p.kind == kind), start=1):
                sheet = document.new_page(width=size[0], height=size[1])  # 1 pt per pixel
                sheet.insert_image(sheet.rect, filename=str(page.image))
                # the page's words as an invisible text layer, like a scanned page after OCR
                lines = [page.title, page.caption, *textwrap.wrap(page.text, 70)]
                sheet.insert_text((8, 12), lines, fontsize=5, render_mode=3)
                placed.append(dataclasses.replace(page, pdf=path, page=number))
            document.set_metadata(
                {
                    "title": f"Synthetic {kind} pages ({split})",
                    "creationDate": _PDF_DATE,
                    "modDate": _PDF_DATE,
                }
            )
            document.save(path, no_new_id=True, deflate=True)
    order = {page.id: i for i, page in enumerate(pages)}
    return sorted(placed, key=lambda page: order[page.id])


def _relative(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()


def _write_jsonl(path: Path, rows: Iterator[dict[str, Any]] | list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    path.write_text(text, encoding="utf-8")


def _round_robin(groups: list[list[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    """The groups' first items, then their second items, and so on."""
    for index in range(max((len(group) for group in groups), default=0)):
        for group in groups:
            if index < len(group):
                yield group[index]
