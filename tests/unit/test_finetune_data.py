"""Fine-tuning files: every row, key, type and file checked before anything is returned.

Each problem is reported with its file and line, all at once, before any model work; hostile
files (decompression bombs, devices, huge lines, binary garbage, deep nesting) are problems,
never crashes or hangs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from qwen3_vl_rag import ConfigurationError, DatasetError, LazyImage, MultimodalInput
from qwen3_vl_rag.finetune import TrainingExample, read_training_file, split_held_out
from qwen3_vl_rag.finetune._data import MAX_LINE_BYTES
from qwen3_vl_rag.media import MediaBudget
from tests import media_files


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A chart image, a photo and a three-page PDF beside the data file."""
    Image.new("RGB", (320, 200), (200, 30, 30)).save(tmp_path / "chart.png")
    (tmp_path / "images").mkdir()
    Image.new("RGB", (64, 48), (30, 30, 200)).save(tmp_path / "images" / "photo.png")
    media_files.report_pdf(tmp_path / "report.pdf")
    return tmp_path


def write(folder: Path, *rows: Any, name: str = "train.jsonl") -> Path:
    """Rows as JSONL; a ``str`` row is written as it is (a raw line)."""
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path = folder / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def problems_of(path: Path, **kwargs: Any) -> list[tuple[int, str]]:
    with pytest.raises(DatasetError) as caught:
        read_training_file(path, **kwargs)
    assert all(file == str(path) for file, _, _ in caught.value.problems)
    return [(line, reason) for _, line, reason in caught.value.problems]


GOOD = {"query": "red chart", "positives": {"image": "chart.png"}}


# -- what a good file gives ----------------------------------------------------------------------


def test_every_item_form_becomes_the_input_the_engine_embeds(folder: Path) -> None:
    path = write(
        folder,
        {
            "query": {"text": "like this", "image": "images/photo.png"},
            "positives": [{"pdf": "report.pdf", "page": 2}, "a caption"],
            "negatives": [{"text": "chart", "image": str(folder / "chart.png")}],
            "instruction": "Find the page.",
        },
        "",
        GOOD,
    )
    first, second = read_training_file(path, budget=MediaBudget(max_pixels=256 * 256))
    assert (first.source, second.source) == (f"{path}:1", f"{path}:3")  # blank line 2 skipped
    assert first.instruction == "Find the page." and second.instruction is None
    # a query image stays a path: the engine decodes it as it decodes a search's query image
    assert first.query == MultimodalInput(text="like this", images=(folder / "images/photo.png",))
    page, caption = first.positives
    assert caption == MultimodalInput(text="a caption")
    (picture,) = page.images
    assert isinstance(picture, LazyImage) and page.text is None  # page text is not embedded
    width, height = picture.size
    assert width % 32 == 0 and height % 32 == 0 and width * height <= 256 * 256
    assert picture.description.endswith("report.pdf, page 2")
    assert picture.load().size == picture.size
    (negative,) = first.negatives
    assert negative.text == "chart"
    assert negative.images[0].size == (320, 200)  # type: ignore[union-attr]
    assert negative.images[0].load().getpixel((0, 0)) == (200, 30, 30)  # type: ignore[union-attr]
    assert second.positives[0].images[0].size == (320, 200)  # type: ignore[union-attr]
    assert second.negatives == ()


def test_a_bad_file_reads_no_pixel(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import qwen3_vl_rag.media.images as images
    import qwen3_vl_rag.media.pdf as pdf

    decoded: list[object] = []
    monkeypatch.setattr(images, "decode", lambda *a: decoded.append(a))
    monkeypatch.setattr(pdf, "_render_page", lambda *a: decoded.append(a))
    rows = [GOOD, {"query": "b", "positives": [{"pdf": "report.pdf", "page": 1}]}, "{oops"]
    assert [line for line, _ in problems_of(write(folder, *rows))] == [3]
    assert decoded == []  # headers were read; nothing was decoded or rendered


# -- rows and keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "reasons"),
    [
        ("{oops", ["not valid JSON (Expecting property name"]),
        ("[1, 2]", ["a row is a JSON object, not a list."]),
        ('"just text"', ["a row is a JSON object, not the string 'just text'."]),
        ("null", ["a row is a JSON object, not null."]),
        (
            {"query": "q", "positve": "p"},
            [
                "unknown key 'positve' (did you mean 'positives'?)",
                'no "positives": give at least one.',
            ],
        ),
        ({"query": "q", "positives": "p", "negatves": []}, ["unknown key 'negatves' (did you"]),
        ({"positives": "p"}, ['no "query".']),
        ({"query": "q", "positives": []}, ["positives: an empty list."]),
        ({"query": "q", "positives": 7}, ["positives: an item is a text or an object, not the"]),
        ({"query": "q", "positives": "p", "negatives": "n"}, ["negatives: must be a list of"]),
        ({"query": "", "positives": "p"}, ["query: an empty text."]),
        ({"query": "  ", "positives": "p"}, ["query: an empty text."]),
        ({"query": {}, "positives": "p"}, ['query: an empty item: give "text", "image", or']),
        ({"query": {"txt": "q"}, "positives": "p"}, ["query: unknown key 'txt' (did you mean"]),
        ({"query": {"text": 3}, "positives": "p"}, ['query: "text" must be a non-empty string']),
        ({"query": {"text": ""}, "positives": "p"}, ['query: "text" must be a non-empty string']),
        ({"query": {"image": 3}, "positives": "p"}, ["query: 'image' must be a path (a string)"]),
        ({"query": {"image": ""}, "positives": "p"}, ["query: 'image' is an empty path."]),
        (
            {"query": {"image": "https://x.org/a.png"}, "positives": "p"},
            ["query: 'image' is a URL ('https://x.org/a.png'); download the file"],
        ),
        ({"query": {"image": "a\u0000b"}, "positives": "p"}, ["query: 'image' holds a NUL"]),
        (
            {"query": "q", "positives": [{"image": "chart.png", "pdf": "report.pdf", "page": 1}]},
            ['positives[0]: "image" and "pdf" exclude each other'],
        ),
        (
            {"query": "q", "positives": [{"pdf": "report.pdf"}]},
            ['positives[0]: "pdf" needs "page" (1-based).'],
        ),
        ({"query": "q", "positives": [{"page": 2}]}, ['positives[0]: "page" needs "pdf".']),
        (
            {"query": "q", "positives": [{"pdf": "report.pdf", "page": 0}]},
            ['positives[0]: "page" must be a page number from 1, not the number 0.'],
        ),
        (
            {"query": "q", "positives": [{"pdf": "report.pdf", "page": "2"}]},
            ["\"page\" must be a page number from 1, not the string '2'."],
        ),
        (
            {"query": "q", "positives": [{"pdf": "report.pdf", "page": True}]},
            ['"page" must be a page number from 1, not the boolean true.'],
        ),
        (
            {"query": "q", "positives": [{"pdf": "report.pdf", "page": 1.0}]},
            ['"page" must be a page number from 1, not the number 1.0.'],
        ),
        ({"query": "q", "positives": "p", "instruction": ""}, ['"instruction" must be a non-']),
        ({"query": "q", "positives": "p", "instruction": 5}, ['"instruction" must be a non-']),
        ({"query": "q", "positives": ["p", ""]}, ["positives[1]: an empty text."]),
        ('{"query": "\\ud800", "positives": "p"}', ["query: the text holds an unpaired surrogate"]),
        (
            '{"query": {"text": "a\\udc00"}, "positives": "p"}',
            ['query: "text" holds an unpaired surrogate'],
        ),
        ({"query": "q", "positives": "p", "negatives": [None]}, ["negatives[0]: an item is"]),
    ],
)
def test_each_rule_is_a_problem_with_its_line(folder: Path, line: Any, reasons: list[str]) -> None:
    found = problems_of(write(folder, GOOD, line))
    assert [number for number, _ in found] == [2] * len(reasons)
    for (_, reason), expected in zip(found, reasons, strict=True):
        assert expected in reason


def test_every_problem_of_the_file_is_reported_at_once(folder: Path) -> None:
    path = write(
        folder,
        GOOD,
        {"query": "q"},
        "",
        {"query": "q", "positives": [{"image": "nope.png"}, {"pdf": "report.pdf", "page": 9}]},
        GOOD,
        "{",
    )
    found = problems_of(path)
    assert [line for line, _ in found] == [2, 4, 4, 6]
    assert found[1][1] == f"positives[0]: {folder / 'nope.png'}: no such file."
    assert (
        found[2][1]
        == f"positives[1]: {folder / 'report.pdf'}, page 9: the PDF has 3 pages, no page 9."
    )
    assert "1 problem" not in str(DatasetError([(str(path), 2, found[0][1])] * 4))


def test_an_empty_file_holds_no_example(folder: Path) -> None:
    assert problems_of(write(folder, "", "  ")) == [(0, "the file holds no row.")]


def test_paths_are_relative_to_the_file_and_absolute_ones_are_kept(folder: Path) -> None:
    sub = folder / "data"
    sub.mkdir()
    path = write(
        sub,
        {
            "query": "q",
            "positives": [{"image": "../chart.png"}, {"image": str(folder / "chart.png")}],
        },
    )
    (example,) = read_training_file(path)
    assert [image.description for p in example.positives for image in p.images] == [  # type: ignore[union-attr]
        str(sub / "../chart.png"),
        str(folder / "chart.png"),
    ]


# -- referenced files ----------------------------------------------------------------------------


def test_hostile_and_missing_files_are_problems(folder: Path) -> None:
    media_files.bomb_png(folder / "bomb.png")
    media_files.bomb_png(folder / "big.png", side=10_000)
    (folder / "garbage.png").write_bytes(os.urandom(4096))
    (folder / "fake.pdf").write_bytes((folder / "chart.png").read_bytes())
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7\n" + os.urandom(2000))
    (folder / "empty.png").write_bytes(b"")
    os.mkfifo(folder / "fifo.png")
    os.symlink("/dev/zero", folder / "zero.png")
    (folder / "dir.png").mkdir()
    wide = folder / "wide.png"
    Image.new("RGB", (4000, 10)).save(wide)
    rows = [
        {"query": "q", "positives": [{"image": name}]}
        for name in (
            "bomb.png",
            "garbage.png",
            "empty.png",
            "fifo.png",
            "zero.png",
            "dir.png",
            "wide.png",
        )
    ]
    rows += [
        {"query": "q", "positives": [{"pdf": "fake.pdf", "page": 1}]},
        {"query": "q", "positives": [{"pdf": "broken.pdf", "page": 1}]},
        {"query": {"image": "big.png"}, "positives": "p"},
    ]
    found = dict(problems_of(write(folder, *rows)))
    assert sorted(found) == list(range(1, 11))
    assert "refused as a decompression bomb" in found[1]
    assert "not an image in a supported format" in found[2]
    assert "empty" in found[3] or "not an image" in found[3]
    assert "not a regular file" in found[4]
    assert "not a regular file" in found[5]
    assert "not a regular file" in found[6] or "cannot be read" in found[6]
    assert "aspect ratio 400:1" in found[7]
    assert found[8].endswith("the file is not a PDF (it looks like PNG).")
    assert "not a readable PDF" in found[9] or "no pages" in found[9]
    assert found[10] == (
        f"query: {folder / 'big.png'}: 10000x10000 is 100 megapixels once decoded, over the "
        "budget of 64. Raise the budget's max_image_pixels if you trust the file."
    )


def test_a_header_that_takes_minutes_to_parse_is_stopped_at_the_time_budget(
    folder: Path,
) -> None:
    media_files.many_page_tiff(folder / "pages.tif", 25_000)  # counting its pages takes ~30 s
    path = write(folder, GOOD, {"query": "q", "positives": {"image": "pages.tif"}}, GOOD)
    found = problems_of(path, budget=MediaBudget(timeout=1.0))
    assert found == [
        (
            2,
            f"positives: {folder / 'pages.tif'}: open took longer than 1 s; the worker was "
            "stopped. Raise the budget's timeout if the file is legitimately heavy.",
        )
    ]


def test_the_budget_decides_what_is_too_large(folder: Path) -> None:
    path = write(folder, GOOD)
    found = problems_of(path, budget=MediaBudget(max_image_pixels=50_000))
    assert found == [
        (
            1,
            f"positives: {folder / 'chart.png'}: 320x200 is 0 megapixels once decoded, over the "
            "budget of 0. Raise the budget's max_image_pixels if you trust the file.",
        )
    ]
    assert "over the budget of" in problems_of(path, budget=MediaBudget(max_bytes=100))[0][1]


def test_a_file_named_many_times_is_checked_once(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qwen3_vl_rag.media.isolation import WorkerPool

    steps: list[str] = []
    run = WorkerPool.run

    def counted(self: WorkerPool, step: Any, *args: Any, **kwargs: Any) -> Any:
        steps.append(step.__name__)
        return run(self, step, *args, **kwargs)

    monkeypatch.setattr(WorkerPool, "run", counted)
    rows = [GOOD] * 5 + [{"query": "q", "positives": "p", "negatives": [{"image": "chart.png"}]}]
    examples = read_training_file(write(folder, *rows))
    assert steps == ["read_header"]  # in the checking worker, once; nothing decoded there
    pictures = {id(e.positives[0].images[0]) for e in examples[:5]}
    pictures.add(id(examples[5].negatives[0].images[0]))
    assert len(pictures) == 1  # and one lazy picture for all of them


# -- hostile data files ----------------------------------------------------------------------------


def test_a_huge_line_is_a_problem_and_the_next_lines_keep_their_numbers(folder: Path) -> None:
    huge = json.dumps({"query": "x" * (3 * MAX_LINE_BYTES), "positives": "p"})
    found = problems_of(write(folder, GOOD, huge, GOOD, "{"))
    assert found[0][0] == 2
    assert found[0][1].startswith(f"the line is {len(huge) + 1} bytes, over the limit of")
    assert found[1][0] == 4


def test_binary_garbage_stops_after_max_problems(folder: Path) -> None:
    path = folder / "garbage.jsonl"
    path.write_bytes(b"\n".join(os.urandom(40) for _ in range(500)))
    found = problems_of(path, max_problems=25)
    assert len(found) == 26
    assert found[-1] == (0, "stopped reading after 25 problems.")


def test_deeply_nested_json_is_a_problem(folder: Path) -> None:
    deep = '{"query": ' + "[" * 200_000 + "]" * 200_000 + ', "positives": "p"}'
    assert problems_of(write(folder, GOOD, deep)) == [(2, "the JSON is nested too deeply.")]


def test_a_number_too_long_to_parse_is_a_problem(folder: Path) -> None:
    found = problems_of(
        write(folder, '{"query": "q", "positives": "p", "x": ' + "9" * 10_000 + "}")
    )
    assert found[0][1].startswith("not valid JSON (")


def test_non_utf8_lines_are_problems(folder: Path) -> None:
    path = folder / "latin1.jsonl"
    path.write_bytes(
        json.dumps(GOOD).encode() + b"\n" + '{"query": "caf\u00e9"}'.encode("latin-1") + b"\n"
    )
    assert problems_of(path) == [(2, "not UTF-8 text (is this a binary file?).")]


@pytest.mark.parametrize("kind", ["missing", "fifo", "dev-zero", "directory"])
def test_a_data_file_that_cannot_be_read_is_one_problem(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "train.jsonl"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        os.symlink("/dev/zero", path)
    elif kind == "directory":
        path.mkdir()
    ((line, reason),) = problems_of(path)
    assert line == 0
    expected = {
        "missing": "no such file.",
        "fifo": "not a regular file",
        "dev-zero": "not a regular file",
    }
    assert expected.get(kind, "") in reason


# -- examples and the held-out split ---------------------------------------------------------------


def example(query: str) -> TrainingExample:
    return TrainingExample(MultimodalInput(text=query), (MultimodalInput(text="doc"),))


def test_an_example_needs_a_positive() -> None:
    with pytest.raises(ConfigurationError, match="at least one positive"):
        TrainingExample(MultimodalInput(text="q"), ())


def test_the_split_is_deterministic_keeps_order_and_holds_out_whole_queries() -> None:
    examples = [example(f"q{i % 20}") for i in range(40)]  # each query twice
    train, held_out = split_held_out(examples, fraction=0.1, seed=0)
    assert (len(train), len(held_out)) == (36, 4)
    assert split_held_out(examples, fraction=0.1, seed=0) == (train, held_out)
    assert split_held_out(examples, fraction=0.1, seed=1) != (train, held_out)
    held_queries = {e.query.text for e in held_out}
    assert len(held_queries) == 2
    assert not held_queries & {e.query.text for e in train}
    assert train == [e for e in examples if e.query.text not in held_queries]  # input order


def test_the_split_keeps_one_query_on_each_side() -> None:
    assert [len(part) for part in split_held_out([example("a"), example("b")], 0.01)] == [1, 1]
    assert [len(part) for part in split_held_out([example("a"), example("b")], 0.9)] == [1, 1]
    assert [len(part) for part in split_held_out([example("a")], 0.5)] == [1, 0]
    assert [len(part) for part in split_held_out([example("a"), example("b")], 0.0)] == [2, 0]
    with pytest.raises(ConfigurationError, match="fraction"):
        split_held_out([example("a")], 1.0)
