"""Hard negatives mined from an index: the report's filter, reopened items, stale files, names.

The index is built with the tiny random-weight embedder; where the filter's arithmetic must be
exact, the query vectors are chosen (a stored vector, so the positive scores exactly 1) and the
expected scores are computed here from the stored vectors.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from qwen3_vl_rag import (
    ConfigurationError,
    DatasetError,
    MultimodalIndex,
    MultimodalInput,
    Qwen3VLEmbedder,
)
from qwen3_vl_rag.finetune import (
    MiningQuery,
    mine_hard_negatives,
    read_mining_queries,
    read_training_file,
    select_negatives,
)
from qwen3_vl_rag.media import MediaBudget

COLOURS = [(220, 20, 20), (20, 200, 20), (20, 20, 220), (230, 230, 30), (30, 200, 200)]


def png(path: Path, colour: tuple[int, int, int]) -> Path:
    """A one-colour PNG, last modified a minute ago (a fresher mtime is not trusted)."""
    Image.new("RGB", (64, 48), colour).save(path, "PNG")
    past_ns = time.time_ns() - 60_000_000_000
    os.utime(path, ns=(past_ns, past_ns))
    return path


def three_page_pdf(path: Path) -> Path:
    import pymupdf

    document = pymupdf.open()
    for number in range(1, 4):
        page = document.new_page(width=300, height=400)
        page.insert_text((30, 60), f"Page {number}", fontsize=12)
        page.draw_rect(pymupdf.Rect(60, 60 * number, 220, 320), fill=(0.2 * number, 0.1, 0.5))
    document.save(path)
    document.close()
    return path


@dataclass
class Built:
    index: MultimodalIndex
    corpus: Path


def build(folder: Path, embedder: Qwen3VLEmbedder) -> Built:
    corpus = folder / "corpus"
    corpus.mkdir()
    for number, colour in enumerate(COLOURS):
        png(corpus / f"img{number}.png", colour)
    three_page_pdf(corpus / "report.pdf")
    index = MultimodalIndex(folder / "index", embedder, workers=1)
    report = index.index([corpus])
    assert report.counts()["items"] == 8
    return Built(index, corpus)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, embedder: Qwen3VLEmbedder) -> Iterator[Built]:
    made = build(tmp_path_factory.mktemp("mining"), embedder)
    yield made
    made.index.close()


class ChosenQueries:
    """Stands in for the embedder at query time: each query's vector is given by the test."""

    def __init__(self, vectors: Sequence[np.ndarray]) -> None:
        self.vectors = np.stack(vectors)
        self.calls: list[list[Any]] = []

    def embed_queries(self, items: Sequence[Any], **kwargs: Any) -> np.ndarray:
        self.calls.append(list(items))
        return self.vectors[: len(items)]


def stored(index: MultimodalIndex, source: Path, locator: str) -> tuple[str, np.ndarray]:
    found = index.manifest.current_item(str(source), locator)
    assert found is not None
    item = found[0]
    return item, index.manifest.vectors([item])[item]


def cosines(index: MultimodalIndex, vector: np.ndarray) -> dict[str, float]:
    """Cosine of ``vector`` with every stored item, by the item's file name (and page)."""
    unit = vector / np.linalg.norm(vector)
    scores = {}
    for row in index.manifest.current_items():
        name = Path(row.source).name + (f"#{row.locator}" if row.kind == "page" else "")
        scores[name] = float(np.dot(unit, row.vector / np.linalg.norm(row.vector)))
    return scores


def image_names(inputs: Sequence[Any]) -> list[str]:
    return [Path(item.images[0].description).name for item in inputs]


# -- the filter, with chosen scores ----------------------------------------------------------------


def test_negatives_are_the_hardest_items_below_the_ceiling_never_the_positive(
    built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    index, corpus = built.index, built.corpus
    _, vector = stored(index, corpus / "img0.png", "image")
    monkeypatch.setattr(index, "embedder", ChosenQueries([vector]))
    scores = cosines(index, vector)
    assert scores["img0.png"] == pytest.approx(1.0, abs=1e-6)
    others = sorted((s, n) for n, s in scores.items() if n != "img0.png")[::-1]

    with mine_hard_negatives(
        index, [("red", [str(corpus / "img0.png")])], k=8, negatives=3, margin=0.1
    ) as mined:
        (example,) = mined.examples
        # the ceiling is 1.0 + 0.1: nothing is a probable false negative; the 3 hardest are kept
        assert mined.counts() == {
            "queries_kept": 1,
            "queries_dropped": 0,
            "negatives_kept": 3,
            "false_negatives": 0,
            "skipped": 0,
        }
        expected = [name for _, name in others[:3]]
        shown = [
            Path(item.images[0].description).name
            if item.images[0].description.endswith(".png")
            else "report.pdf#page:" + str(int(item.images[0].description.split("page ")[-1]) - 1)
            for item in example.negatives
        ]
        assert shown == expected
        assert image_names(example.positives) == ["img0.png"]
        assert example.source == "index"
        assert example.query.text == "red"
        # the items decode (from the verified copy, in the result's workers)
        assert example.positives[0].images[0].load().getpixel((5, 5)) == COLOURS[0]


def test_items_scoring_at_or_above_mean_positive_plus_margin_are_dropped_as_false_negatives(
    built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    index, corpus = built.index, built.corpus
    _, first = stored(index, corpus / "img1.png", "image")
    _, second = stored(index, corpus / "img2.png", "image")
    vector = first + second  # two positives with different scores: the mean matters
    monkeypatch.setattr(index, "embedder", ChosenQueries([vector]))
    scores = cosines(index, vector)
    mean_positive = (scores["img1.png"] + scores["img2.png"]) / 2
    others = sorted(
        ((s, n) for n, s in scores.items() if n not in ("img1.png", "img2.png")), reverse=True
    )
    # a ceiling between the 2nd and 3rd hardest others: those two are probable false negatives
    margin = (others[1][0] + others[2][0]) / 2 - mean_positive
    names = [str(corpus / "img1.png"), str(corpus / "img2.png")]
    with mine_hard_negatives(index, [("q", names)], k=8, negatives=2, margin=margin) as mined:
        (example,) = mined.examples
        assert mined.false_negatives == 2
        assert mined.negatives_kept == 2
        kept = [others[2][1], others[3][1]]
        assert len(example.negatives) == 2
        assert sorted(image_names(example.positives)) == ["img1.png", "img2.png"]
        descriptions = [item.images[0].description for item in example.negatives]
        for name, description in zip(kept, descriptions, strict=True):
            if name.startswith("report.pdf"):
                assert description.endswith(f"page {int(name.split(':')[-1]) + 1}")
            else:
                assert Path(description).name == name


def test_a_query_whose_positive_scores_below_the_threshold_is_dropped(
    built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    index, corpus = built.index, built.corpus
    _, red = stored(index, corpus / "img0.png", "image")
    _, green = stored(index, corpus / "img1.png", "image")
    monkeypatch.setattr(index, "embedder", ChosenQueries([red, green]))
    green_score = cosines(index, green)["img0.png"]  # the 2nd query's score for its positive
    queries = [
        MiningQuery(MultimodalInput(text="a"), (str(corpus / "img0.png"),), source="q.jsonl:1"),
        MiningQuery(MultimodalInput(text="b"), (str(corpus / "img0.png"),), source="q.jsonl:2"),
    ]
    threshold = (1.0 + green_score) / 2
    with mine_hard_negatives(index, queries, k=4, positive_threshold=threshold) as mined:
        assert mined.queries_kept == 1
        assert [e.query.text for e in mined.examples] == ["a"]
        ((where, reason),) = mined.dropped_queries
        assert where == "q.jsonl:2"
        assert reason == (
            f"a positive scores {green_score:.4f}, below positive_threshold {threshold:g}"
        )
    with mine_hard_negatives(index, queries, k=4, positive_threshold=None) as mined:
        assert mined.queries_kept == 2


# -- names, checked before any model work -------------------------------------------------------


def test_unknown_positives_fail_with_every_problem_before_any_query_is_embedded(
    built: Built, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    index, corpus = built.index, built.corpus
    chosen = ChosenQueries([np.ones(index.dimension, dtype=np.float32)])
    monkeypatch.setattr(index, "embedder", chosen)
    rows = [
        {"query": "a", "positives": [os.path.relpath(corpus / "img0.png", tmp_path)]},
        {"query": "b", "positives": [str(corpus / "missing.png")]},
        {"query": "c", "positives": [str(corpus / "report.pdf")]},
        {"query": "d", "positives": [str(corpus / "report.pdf") + "#page=9"]},
    ]
    path = tmp_path / "queries.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    queries = read_mining_queries(path)
    assert queries[0].positives == (str(tmp_path / os.path.relpath(corpus / "img0.png", tmp_path)),)
    with pytest.raises(DatasetError) as caught:
        mine_hard_negatives(index, queries)
    problems = caught.value.problems
    assert [(Path(file).name, line) for file, line, _ in problems] == [
        ("queries.jsonl", 2),
        ("queries.jsonl", 3),
        ("queries.jsonl", 4),
    ]
    assert "missing.png: not in the index" in problems[0][2]
    assert "a PDF: name one of its pages, as 'file.pdf#page=N'" in problems[1][2]
    assert "page 9: no such page in the index" in problems[2][2]
    assert chosen.calls == []  # nothing was embedded


def test_a_page_positive_is_named_with_its_1_based_page(
    built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    index, corpus = built.index, built.corpus
    _, vector = stored(index, corpus / "report.pdf", "page:1")
    monkeypatch.setattr(index, "embedder", ChosenQueries([vector]))
    with mine_hard_negatives(
        index, [("page two", [f"{corpus / 'report.pdf'}#page=2"])], k=8, negatives=7
    ) as mined:
        (example,) = mined.examples
        (positive,) = example.positives
        assert positive.images[0].description.endswith("page 2")
        assert len(example.negatives) == 7  # every other item of the index


# -- stale files ---------------------------------------------------------------------------------


def test_a_negative_whose_file_changed_is_skipped_and_reported(
    tmp_path: Path, embedder: Qwen3VLEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = build(tmp_path, embedder)
    with made.index as index:
        corpus = made.corpus
        _, vector = stored(index, corpus / "img0.png", "image")
        hardest = max((s, n) for n, s in cosines(index, vector).items() if n != "img0.png")[1]
        if hardest.startswith("report.pdf"):
            changed = corpus / "report.pdf"
            three_page_pdf(changed)
            with changed.open("ab") as handle:
                handle.write(b"\n% changed\n")
        else:
            changed = png(corpus / hardest, (1, 2, 3))
        monkeypatch.setattr(index, "embedder", ChosenQueries([vector]))
        with mine_hard_negatives(
            index, [("red", [str(corpus / "img0.png")])], k=8, negatives=2
        ) as mined:
            (example,) = mined.examples
            assert len(example.negatives) == 2  # the next ones take its place
            assert mined.skipped
            assert {reason for _, reason in mined.skipped} == {"file changed since indexing"}
            assert all(str(changed) in item for item, _ in mined.skipped)


def test_a_query_whose_positive_file_changed_is_dropped(
    tmp_path: Path, embedder: Qwen3VLEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = build(tmp_path, embedder)
    with made.index as index:
        corpus = made.corpus
        _, vector = stored(index, corpus / "img0.png", "image")
        (corpus / "img0.png").unlink()
        monkeypatch.setattr(index, "embedder", ChosenQueries([vector]))
        with mine_hard_negatives(index, [("red", [str(corpus / "img0.png")])]) as mined:
            assert mined.examples == []
            ((where, reason),) = mined.dropped_queries
            assert where == "query 1"
            assert reason.endswith("img0.png: file missing")


# -- the same pixels as the index ----------------------------------------------------------------


def test_mined_and_file_items_embed_to_the_vectors_the_index_stores(
    built: Built, embedder: Qwen3VLEmbedder, tmp_path: Path
) -> None:
    index, corpus = built.index, built.corpus
    _, page_vector = stored(index, corpus / "report.pdf", "page:2")
    _, image_vector = stored(index, corpus / "img3.png", "image")
    with mine_hard_negatives(
        index,
        [("q", [f"{corpus / 'report.pdf'}#page=3", str(corpus / "img3.png")])],
        k=2,
        negatives=1,
    ) as mined:
        (example,) = mined.examples
        vectors = embedder.embed_documents(list(example.positives), dim=index.dimension)
    row = {
        "query": "q",
        "positives": [{"pdf": str(corpus / "report.pdf"), "page": 3}],
        "negatives": [{"image": str(corpus / "img3.png")}],
    }
    (tmp_path / "train.jsonl").write_text(json.dumps(row) + "\n")
    (from_file,) = read_training_file(
        tmp_path / "train.jsonl", budget=MediaBudget.matching(embedder)
    )
    file_vectors = embedder.embed_documents(
        [*from_file.positives, *from_file.negatives], dim=index.dimension
    )
    for got in (vectors, file_vectors):
        np.testing.assert_allclose(got[0], page_vector, atol=1e-5)
        np.testing.assert_allclose(got[1], image_vector, atol=1e-5)


def test_the_items_stop_working_once_the_result_is_closed(
    built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    index, corpus = built.index, built.corpus
    _, vector = stored(index, corpus / "img4.png", "image")
    monkeypatch.setattr(index, "embedder", ChosenQueries([vector]))
    with mine_hard_negatives(index, [("q", [str(corpus / "img4.png")])], k=3) as mined:
        (positive,) = mined.examples[0].positives
        assert positive.images[0].load().getpixel((1, 1)) == COLOURS[4]  # type: ignore[union-attr]
    with pytest.raises(ConfigurationError, match="worker pool is closed"):
        positive.images[0].load()  # type: ignore[union-attr]


# -- the filter and the query file, without an index ---------------------------------------------


def test_select_negatives_uses_the_mean_of_the_positive_scores() -> None:
    candidates = [("p1", 0.9), ("a", 0.8), ("b", 0.7), ("p2", 0.5), ("c", 0.69), ("d", 0.1)]
    positives = {"p1": 0.9, "p2": 0.5}  # mean 0.7
    assert select_negatives(candidates, positives, margin=0.0) == (["c", "d"], ["a", "b"])
    assert select_negatives(candidates, positives, margin=0.1) == (["b", "c", "d"], ["a"])
    assert select_negatives(candidates, positives, margin=-0.6) == ([], ["a", "b", "c", "d"])
    with pytest.raises(ConfigurationError, match="at least one positive"):
        select_negatives(candidates, {}, margin=0.1)


def test_query_file_problems_are_reported_with_their_lines(tmp_path: Path) -> None:
    rows = [
        {"query": "a", "positives": ["x.png", "r.pdf#page=2"], "instruction": "Find it."},
        {"query": "b", "positives": []},
        {"query": "c", "positives": ["r.pdf#page=0", "", 3]},
        {"query": "d"},
        {"query": "e", "positives": "x.png", "negatives": ["y.png"]},
        {"query": {"image": "missing.png"}, "positives": "x.png"},
    ]
    path = tmp_path / "queries.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows[:1]) + "\n")
    (query,) = read_mining_queries(path)
    assert query == MiningQuery(
        MultimodalInput(text="a"),
        (str(tmp_path / "x.png"), f"{tmp_path / 'r.pdf'}#page=2"),
        "Find it.",
        f"{path}:1",
    )
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    with pytest.raises(DatasetError) as caught:
        read_mining_queries(path)
    found = [(line, reason) for _, line, reason in caught.value.problems]
    assert found == [
        (2, "positives: an empty list; name at least one index item."),
        (3, "positives[0]: 'r.pdf#page=0': a page is named 'file.pdf#page=N', N from 1."),
        (3, "positives[1]: an item name (a path, with #page=N for a page), not the string ''."),
        (3, "positives[2]: an item name (a path, with #page=N for a page), not the number 3."),
        (4, 'no "positives": name at least one index item.'),
        (5, "unknown key 'negatives'; the keys are query, positives, instruction."),
        (6, f"query: {tmp_path / 'missing.png'}: no such file."),
    ]


def test_mining_arguments_are_checked(built: Built) -> None:
    with pytest.raises(ConfigurationError, match="k must be at least 1"):
        mine_hard_negatives(built.index, [], k=0)
    with pytest.raises(DatasetError) as caught:
        mine_hard_negatives(built.index, [("q", ["a.pdf#page=x"]), ("r", ["b.pdf#page=0"])])
    assert [(where, line) for where, line, _ in caught.value.problems] == [
        ("query 1", 0),
        ("query 2", 0),
    ]
    with pytest.raises(DatasetError, match="no positive named"):
        mine_hard_negatives(built.index, [("q", [])])


def test_an_item_met_by_many_queries_is_reopened_once_and_progress_is_shown(
    built: Built, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    index, corpus = built.index, built.corpus
    _, vector = stored(index, corpus / "img0.png", "image")
    monkeypatch.setattr(index, "embedder", ChosenQueries([vector, vector]))
    queries = [("a", [str(corpus / "img0.png")]), ("b", [str(corpus / "img0.png")])]
    with mine_hard_negatives(index, queries, k=3, negatives=2, show_progress=True) as mined:
        first, second = mined.examples
        assert first.positives[0] is second.positives[0]
        assert first.negatives == second.negatives
        assert all(a is b for a, b in zip(first.negatives, second.negatives, strict=True))
    assert "queries: 100%" in capsys.readouterr().err
