"""The synthetic corpus: deterministic, disjoint splits, graded queries, files the formats accept.

Its pages must teach a tiny model (one visual token per 32x32 pixels) kind and colour, so one test
checks that a page's colour is still the dominant hue once the page is shrunk to 32x40 pixels.
"""

from __future__ import annotations

import colorsys
import csv
import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pymupdf
import pytest
from PIL import Image

from qwen3_vl_rag.errors import ConfigurationError
from qwen3_vl_rag.testing import (
    COLOURS,
    PAGE_KINDS,
    SyntheticCorpus,
    make_synthetic_corpus,
)

PAGES_PER_CLASS = 2
KIND_WORDS = {
    "bar_chart": "bar",
    "line_chart": "line",
    "pie_chart": "pie",
    "table": "table",
    "photo": "photo",
    "screenshot": "screenshot",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> SyntheticCorpus:
    folder = tmp_path_factory.mktemp("synthetic") / "corpus"
    return make_synthetic_corpus(folder, pages_per_class=PAGES_PER_CLASS, pdf=True)


def _hashes(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_same_arguments_write_the_same_bytes(tmp_path: Path) -> None:
    for name in ("a", "b"):
        pages = tmp_path / name / "pages"
        made = make_synthetic_corpus(pages, split="dev", seed=7, size=(128, 160), pdf=True)
        made.write_beir(tmp_path / name / "beir")
        made.write_training_file(tmp_path / name / "train.jsonl")
    first, second = _hashes(tmp_path / "a"), _hashes(tmp_path / "b")
    assert len(first) == 36 + 6 + 4  # PNG pages, one PDF per kind, BEIR files, training file
    assert first == second


def test_splits_and_seeds_share_classes_but_never_pages(
    corpus: SyntheticCorpus, tmp_path: Path
) -> None:
    train = make_synthetic_corpus(tmp_path / "train", split="train", pages_per_class=2)
    reseeded = make_synthetic_corpus(tmp_path / "seed1", seed=1)

    def classes(made: SyntheticCorpus) -> set[tuple[str, str]]:
        return {(page.kind, page.colour) for page in made.pages}

    assert classes(train) == classes(reseeded) == classes(corpus)
    assert not {page.id for page in train.pages} & {page.id for page in corpus.pages}
    for other in (train, reseeded):
        ours = {page.image.read_bytes() for page in corpus.pages}
        assert not ours & {page.image.read_bytes() for page in other.pages}
        words = {page.title + page.text for page in other.pages}
        assert not {page.title + page.text for page in corpus.pages} <= words


def test_every_kind_comes_in_every_colour(corpus: SyntheticCorpus) -> None:
    assert PAGE_KINDS == ("bar_chart", "line_chart", "pie_chart", "table", "photo", "screenshot")
    assert list(COLOURS) == ["red", "orange", "yellow", "green", "blue", "purple"]
    counts = Counter((page.kind, page.colour) for page in corpus.pages)
    assert counts == {(k, c): PAGES_PER_CLASS for k in PAGE_KINDS for c in COLOURS}
    for page in corpus.pages:
        assert page.image.is_file() and page.title and page.caption and page.text
        with Image.open(page.image) as image:
            assert image.size == (256, 320)
        assert corpus.page(page.id) is page


def test_queries_grade_pages_by_kind_then_colour(corpus: SyntheticCorpus) -> None:
    assert len(corpus.queries) == len(PAGE_KINDS) * len(COLOURS) * 3
    assert len({query.id for query in corpus.queries}) == len(corpus.queries)
    for query in corpus.queries:
        assert query.colour in query.text and KIND_WORDS[query.kind] in query.text.lower()
        expected = {
            page.id: 2 if page.colour == query.colour else 1
            for page in corpus.pages
            if page.kind == query.kind
        }
        assert dict(query.relevance) == expected
        assert Counter(expected.values()) == {2: PAGES_PER_CLASS, 1: PAGES_PER_CLASS * 5}
    phrasings = Counter((query.kind, query.colour, query.text) for query in corpus.queries)
    assert max(phrasings.values()) == 1  # a class's queries are worded differently


def test_beir_files_follow_the_layout(corpus: SyntheticCorpus, tmp_path: Path) -> None:
    folder = corpus.write_beir(tmp_path / "beir")
    rows = _read_jsonl(folder / "corpus.jsonl")
    assert [row["_id"] for row in rows] == [page.id for page in corpus.pages]
    for row, page in zip(rows, corpus.pages, strict=True):
        assert set(row) == {"_id", "title", "text", "image"}
        assert (folder / row["image"]).resolve() == page.image.resolve()
        assert row["title"] == page.title and page.text in row["text"]
    queries = _read_jsonl(folder / "queries.jsonl")
    assert queries == [{"_id": q.id, "text": q.text} for q in corpus.queries]
    with (folder / "qrels" / "test.tsv").open(encoding="utf-8", newline="") as file:
        table = list(csv.reader(file, delimiter="\t"))
    assert table[0] == ["query-id", "corpus-id", "score"]
    expected = [
        [q.id, page, str(grade)] for q in corpus.queries for page, grade in q.relevance.items()
    ]
    assert table[1:] == expected


def test_beir_corpus_can_point_at_the_pdf_pages(corpus: SyntheticCorpus, tmp_path: Path) -> None:
    folder = corpus.write_beir(tmp_path / "beir", source="pdf")
    for row, page in zip(_read_jsonl(folder / "corpus.jsonl"), corpus.pages, strict=True):
        assert "image" not in row
        assert page.pdf is not None and (folder / row["pdf"]).resolve() == page.pdf.resolve()
        assert row["page"] == page.page


def test_pdf_files_hold_each_kinds_pages_in_order(corpus: SyntheticCorpus) -> None:
    pdfs = {page.pdf for page in corpus.pages}
    assert {path.name for path in pdfs if path} == {f"test-{kind}.pdf" for kind in PAGE_KINDS}
    for kind in PAGE_KINDS:
        pages = [page for page in corpus.pages if page.kind == kind]
        assert [page.page for page in pages] == list(range(1, len(COLOURS) * PAGES_PER_CLASS + 1))
        with pymupdf.open(pages[0].pdf) as document:
            assert document.page_count == len(pages)
            assert document.metadata["creationDate"] == "D:20250101000000Z"
            for page in pages:
                assert page.page is not None
                sheet = document[page.page - 1]
                assert page.title in sheet.get_text()  # the invisible text layer
                assert (sheet.rect.width, sheet.rect.height) == (256, 320)


def test_pdf_source_needs_a_corpus_made_with_pdfs(tmp_path: Path) -> None:
    plain = make_synthetic_corpus(tmp_path / "plain", kinds=["table"], colours=["red"])
    with pytest.raises(ConfigurationError, match=r"pdf=True"):
        plain.write_beir(tmp_path / "beir", source="pdf")


def test_training_rows_pair_queries_with_pages_and_hard_negatives(
    corpus: SyntheticCorpus, tmp_path: Path
) -> None:
    path = corpus.write_training_file(tmp_path / "data" / "train.jsonl", negatives=3)
    rows = _read_jsonl(path)
    assert len(rows) == len(corpus.queries) * PAGES_PER_CLASS
    by_image = {page.image.resolve(): page for page in corpus.pages}
    query_of = {query.text: query for query in corpus.queries}
    classes_seen = []
    for row in rows:
        assert set(row) == {"query", "positives", "negatives"}
        query = query_of[row["query"]]
        positive = by_image[(path.parent / row["positives"]["image"]).resolve()]
        assert query.relevance[positive.id] == 2
        negatives = [by_image[(path.parent / n["image"]).resolve()] for n in row["negatives"]]
        assert len(negatives) == 3 and len(set(negatives)) == 3
        for negative in negatives:
            same_kind = negative.kind == positive.kind and negative.colour != positive.colour
            same_colour = negative.colour == positive.colour and negative.kind != positive.kind
            assert same_kind or same_colour
        assert sum(negative.kind == positive.kind for negative in negatives) == 2
        classes_seen.append((query.kind, query.colour))
    # the classes take turns: a batch of consecutive rows never holds one class twice
    classes = len(PAGE_KINDS) * len(COLOURS)
    assert len(set(classes_seen[:classes])) == classes


def test_a_pages_colour_is_its_dominant_hue_at_low_resolution(corpus: SyntheticCorpus) -> None:
    hues = {name: colorsys.rgb_to_hsv(*(v / 255 for v in rgb))[0] for name, rgb in COLOURS.items()}
    names, centres = list(hues), np.array(list(hues.values()))
    for page in corpus.pages:
        with Image.open(page.image) as image:
            small = image.resize((32, 40), Image.Resampling.BOX)  # ~ one pixel per vision token
        hsv = np.asarray(small.convert("HSV"), np.float64) / 255
        coloured = (hsv[..., 1] > 0.25) & (hsv[..., 2] > 0.25)  # not white, grey or black
        distance = np.abs(hsv[..., 0][coloured][:, None] - centres[None, :])
        nearest = np.minimum(distance, 1 - distance).argmin(axis=1)  # hue is an angle
        votes = np.bincount(nearest, minlength=len(names))
        assert names[votes.argmax()] == page.colour, page.id
        assert votes.max() >= 0.8 * coloured.sum(), page.id  # and hardly any other colour
        assert coloured.mean() >= 0.01, page.id  # at least a dozen of the 1280 pixels


def test_held_out_pages_look_like_their_class_at_one_pixel_per_token(
    corpus: SyntheticCorpus, tmp_path: Path
) -> None:
    """Raw pixels alone already tell most classes apart, so a model has something to learn."""
    held_out = make_synthetic_corpus(tmp_path, split="held_out")

    def pixels(made: SyntheticCorpus) -> np.ndarray:
        rows = []
        for page in made.pages:
            with Image.open(page.image) as image:  # 8x10: one pixel per 32x32 vision token
                rows.append(np.asarray(image.resize((8, 10), Image.Resampling.BOX), np.float64))
        return np.stack(rows).reshape(len(made.pages), -1) / 255

    known, new = pixels(corpus), pixels(held_out)
    nearest = ((new[:, None, :] - known[None, :, :]) ** 2).sum(axis=-1).argmin(axis=1)
    found = [corpus.pages[i] for i in nearest]
    kind = np.mean([a.kind == b.kind for a, b in zip(found, held_out.pages, strict=True)])
    both = np.mean(
        [
            (a.kind, a.colour) == (b.kind, b.colour)
            for a, b in zip(found, held_out.pages, strict=True)
        ]
    )
    # measured 0.75 and 0.69 (bar and line charts are what it mixes up); chance: 1/6 and 1/36
    assert kind >= 0.65
    assert both >= 0.45


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"split": "my split"}, "split must be"),
        ({"pages_per_class": 0}, "must be 1 or more"),
        ({"queries_per_class": 0}, "must be 1 or more"),
        ({"size": (48, 64)}, "at least 64x64"),
        ({"kinds": ["map"]}, "kinds must be"),
        ({"colours": ["red", "red"]}, "colours must be"),
        ({"colours": []}, "colours must be"),
    ],
)
def test_arguments_that_cannot_work_are_refused(
    tmp_path: Path, arguments: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make_synthetic_corpus(tmp_path, **arguments)  # type: ignore[arg-type]
    assert not (tmp_path / "images").exists()


def test_negative_hard_negative_count_is_refused(tmp_path: Path) -> None:
    made = make_synthetic_corpus(tmp_path, kinds=["photo"], colours=["blue"])
    with pytest.raises(ConfigurationError, match="negatives must be 0 or more"):
        made.write_training_file(tmp_path / "train.jsonl", negatives=-1)
