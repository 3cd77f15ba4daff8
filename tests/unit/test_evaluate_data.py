"""BEIR folders: read whole, every problem reported with its file and line before any model runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from qwen3_vl_rag.errors import DatasetError
from qwen3_vl_rag.evaluate import load_beir
from qwen3_vl_rag.inputs import MultimodalInput
from qwen3_vl_rag.media import MediaBudget, MediaItem
from tests.evaluation_data import picture_beir, write_beir
from tests.media_files import report_pdf


def problems_of(folder: Path, **options: object) -> list[tuple[str, int, str]]:
    with pytest.raises(DatasetError) as caught:
        load_beir(folder, **options)  # type: ignore[arg-type]
    return [(Path(file).name, line, reason) for file, line, reason in caught.value.problems]


def test_a_folder_of_texts_images_and_pages(tmp_path: Path) -> None:
    folder = picture_beir(tmp_path / "beir")
    with load_beir(folder) as data:
        assert list(data.corpus) == ["t-revenue", "t-weather", "i-red", "i-blue", "p-1", "p-2"]
        assert [d.kind for d in data.corpus.values()] == [
            "text",
            "text",
            "image",
            "image",
            "page",
            "page",
        ]
        assert list(data.queries) == ["q-chart", "q-red"]  # the other split's query is left out
        assert data.qrels == {
            "q-chart": {"p-2": 2, "t-revenue": 1, "p-1": 0},
            "q-red": {"i-red": 1},
        }
        budget = MediaBudget(max_pixels=64 * 32 * 32)
        texts, weather, red, _, page_1, page_2 = data.document_inputs(list(data.corpus), budget)
        assert (
            texts == "Revenue\nRevenue grew 12% in Q3."
            and weather == "Rain is expected on Tuesday."
        )
        assert isinstance(red, MediaItem) and red.kind == "image"
        assert red.to_input().text is None  # a picture row is embedded as the picture
        assert isinstance(page_2, MediaItem) and page_2.kind == "page"
        assert page_2.metadata["page"] == 1 and page_1.metadata["page"] == 0  # type: ignore[union-attr]
        # the page is rendered at the size of the budget it is made for
        width, height = page_2.image.size  # type: ignore[union-attr]
        assert width * height <= budget.max_pixels and width % 32 == 0 and height % 32 == 0
        assert page_2.load_image().size == (width, height)
        (chart, red_query) = data.query_inputs(["q-chart", "q-red"], budget)
        assert chart == MultimodalInput(text="bar chart of quarterly revenue")
        assert red_query.text == "this colour" and len(red_query.images) == 1


def test_the_qrels_header_is_optional_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    folder = write_beir(
        tmp_path,
        ["", {"_id": 7, "text": "x"}],
        [{"_id": "q", "text": "y"}, ""],
        ["q\t7\t1", ""],
        header=False,
    )
    with load_beir(folder) as data:
        assert list(data.corpus) == ["7"] and data.qrels == {"q": {"7": 1}}


def test_every_problem_is_reported_with_its_file_and_line(tmp_path: Path) -> None:
    report_pdf(tmp_path / "two.pdf", pages=2)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    (tmp_path / "fake.pdf").write_text("not a pdf")
    corpus = [
        {"_id": "ok", "text": "fine"},  # 1
        "{not json",  # 2
        {"title": "no id"},  # 3
        {"_id": "ok", "text": "again"},  # 4
        {"_id": "gone", "image": "missing.png"},  # 5
        {"_id": "far", "pdf": "two.pdf", "page": 3},  # 6
        {"_id": "bad", "image": "broken.png"},  # 7
        {"_id": "both", "image": "x.png", "pdf": "two.pdf", "page": 1},  # 8
        {"_id": "nopage", "pdf": "two.pdf"},  # 9
        {"_id": "empty"},  # 10
        {"_id": "two words", "text": "x"},  # 11
        {"_id": "fakepdf", "pdf": "fake.pdf", "page": 1},  # 12
        "[1, 2]",  # 13
    ]
    queries = [{"_id": "q1", "text": "a"}, {"_id": "q2"}, {"_id": "q3", "text": "c"}]
    qrels = [
        "q1\tok\t1",  # 2
        "q1\tnobody\t1",  # 3
        "ghost\tok\t1",  # 4
        "q3\tok\t0",  # 5: q3 has no relevant document
        "q1\tok\t2",  # 6: judged twice
        "q1\tok",  # 7
        "q1\tfar\thigh",  # 8
    ]
    found = problems_of(write_beir(tmp_path, corpus, queries, qrels))
    expected = [
        ("corpus.jsonl", 2, "not JSON"),
        ("corpus.jsonl", 3, "no '_id'"),
        ("corpus.jsonl", 4, "the id 'ok' is used already (line 1)"),
        ("corpus.jsonl", 8, "'image' and 'pdf' exclude each other"),
        ("corpus.jsonl", 9, "'pdf' needs 'page'"),
        ("corpus.jsonl", 10, "no text, image or PDF page"),
        ("corpus.jsonl", 11, "holds whitespace"),
        ("corpus.jsonl", 13, "a JSON object is needed, not list"),
        ("queries.jsonl", 2, "no text and no image"),
        ("test.tsv", 6, "q1 / ok is judged already (line 2)"),
        ("test.tsv", 7, "3 tab-separated fields are needed"),
        ("test.tsv", 8, "'high' is not an integer grade"),
        ("test.tsv", 3, "the document 'nobody' is not in the corpus"),
        ("test.tsv", 4, "the query 'ghost' is not in the queries file"),
        ("test.tsv", 5, "the query 'q3' has no relevant document"),
        ("corpus.jsonl", 5, "no such file"),
        ("corpus.jsonl", 6, "two.pdf has 2 page(s), there is no page 3"),
        ("corpus.jsonl", 7, "ImageDecodeError"),
        ("corpus.jsonl", 12, "PdfError"),
    ]
    assert len(found) == len(expected), "\n".join(map(str, found))
    for (file, line, reason), (want_file, want_line, want) in zip(found, expected, strict=True):
        assert (file, line) == (want_file, want_line) and want in reason, (file, line, reason)


def test_missing_files_and_an_empty_split(tmp_path: Path) -> None:
    assert [p[:2] for p in problems_of(tmp_path)] == [
        ("corpus.jsonl", 0),
        ("queries.jsonl", 0),
        ("test.tsv", 0),
    ]
    folder = write_beir(
        tmp_path / "b", [{"_id": "d", "text": "x"}], [{"_id": "q", "text": "y"}], []
    )
    assert problems_of(folder) == [("test.tsv", 0, "no judgements: nothing to evaluate.")]
    assert problems_of(folder, split="dev")[0][:2] == ("dev.tsv", 0)


def test_a_hostile_image_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    from tests.media_files import bomb_png

    bomb_png(tmp_path / "bomb.png")
    folder = write_beir(
        tmp_path,
        [{"_id": "d", "image": "bomb.png"}],
        [{"_id": "q", "image": "bomb.png"}],
        ["q\td\t1"],
    )
    found = problems_of(folder)
    assert [(file, line) for file, line, _ in found] == [("corpus.jsonl", 1), ("queries.jsonl", 1)]
    assert all("InputTooLargeError" in reason for _, _, reason in found)
