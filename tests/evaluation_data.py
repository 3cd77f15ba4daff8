"""Generated BEIR folders for the evaluation tests: texts, images and PDF pages, and bad ones."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from tests.media_files import report_pdf


def write_beir(
    folder: Path,
    corpus: Sequence[dict[str, Any] | str],
    queries: Sequence[dict[str, Any] | str],
    qrels: Sequence[str],
    *,
    split: str = "test",
    header: bool = True,
) -> Path:
    """A BEIR folder; rows given as strings are written as they are (bad lines on purpose)."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)

    def lines(rows: Sequence[dict[str, Any] | str]) -> str:
        return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)

    (folder / "corpus.jsonl").write_text(lines(corpus))
    (folder / "queries.jsonl").write_text(lines(queries))
    head = ["query-id\tcorpus-id\tscore"] if header else []
    (folder / "qrels" / f"{split}.tsv").write_text("".join(f"{line}\n" for line in [*head, *qrels]))
    return folder


def picture_beir(folder: Path) -> Path:
    """Two texts, two images and two pages of a 3-page PDF; a text and an image query, graded."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (96, 64), (220, 30, 30)).save(folder / "images" / "red.png")
    Image.new("RGB", (64, 96), (30, 30, 220)).save(folder / "images" / "blue.png")
    report_pdf(folder / "report.pdf")
    corpus = [
        {"_id": "t-revenue", "title": "Revenue", "text": "Revenue grew 12% in Q3."},
        {"_id": "t-weather", "text": "Rain is expected on Tuesday."},
        {"_id": "i-red", "image": "images/red.png", "text": "a red square"},
        {"_id": "i-blue", "image": "images/blue.png"},
        {"_id": "p-1", "pdf": "report.pdf", "page": 1},
        {"_id": "p-2", "pdf": "report.pdf", "page": 2, "title": "the chart page"},
    ]
    queries = [
        {"_id": "q-chart", "text": "bar chart of quarterly revenue"},
        {"_id": "q-red", "image": "images/red.png", "text": "this colour"},
        {"_id": "q-other-split", "text": "not judged in test"},
    ]
    qrels = ["q-chart\tp-2\t2", "q-chart\tt-revenue\t1", "q-chart\tp-1\t0", "q-red\ti-red\t1"]
    return write_beir(folder, corpus, queries, qrels)
