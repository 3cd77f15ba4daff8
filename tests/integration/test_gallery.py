"""The HTML gallery of search results: self-contained, escaped, linked, rendered by a browser."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qwen3_vl_rag.cli.gallery import write_gallery
from qwen3_vl_rag.index._results import SearchResult

CSP = (
    '<meta http-equiv="Content-Security-Policy" '
    "content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">"
)
DATA_JPEG = "data:image/jpeg;base64,"
RED, BLUE = (255, 0, 0), (0, 0, 255)


class Tags(HTMLParser):
    """Every start tag with its attributes, as the browser's parser would read them."""

    def __init__(self, document: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(document)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {name: value or "" for name, value in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def find(self, tag: str) -> list[dict[str, str]]:
        return [attrs for name, attrs in self.tags if name == tag]


def jpeg(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (200, 150)) -> Path:
    Image.new("RGB", size, color).save(path, "JPEG", quality=95)
    return path


@pytest.fixture
def results(tmp_path: Path) -> list[SearchResult]:
    hostile = tmp_path / 'we"ird <dir>'
    hostile.mkdir()
    return [
        SearchResult(
            rank=1,
            id="p3",
            kind="page",
            source=str(hostile / "report.pdf"),
            locator="page 3",
            vector_score=0.731,
            rerank_score=0.912,
            text="Revenue   grew\n\n<script>alert(1)</script> " + "word " * 200,
            thumbnail=jpeg(tmp_path / "red.jpg", RED),
            metadata={"page": 2, "page_label": "<b>iii</b>"},
        ),
        SearchResult(
            rank=2,
            id="c1",
            kind="clip",
            source=str(tmp_path / "talk.mp4"),
            locator="0:10-0:20",
            vector_score=0.702,
            rerank_score=0.861,
            thumbnail=jpeg(tmp_path / "blue.jpg", BLUE),
            metadata={"start_seconds": 10.0, "end_seconds": 20.0},
        ),
        SearchResult(
            rank=3,
            id="i1",
            kind="image",
            source="https://example.com/charts/bar.png?x=1&y=2",
            locator="",
            vector_score=0.688,
            rerank_score=None,
            thumbnail=None,
        ),
        SearchResult(
            rank=4,
            id="x1",
            kind='"><img src=x onerror=alert(2)>',
            source="s3://bucket/other.pdf",
            locator="<i>page 1</i>",
            vector_score=0.4,
            thumbnail=tmp_path / "missing.jpg",
            metadata={"page": "0"},
        ),
    ]


def test_writes_a_self_contained_escaped_page(tmp_path: Path, results: list[SearchResult]) -> None:
    target = tmp_path / "out" / "nested" / "gallery.html"
    written = write_gallery(target, results, query="<script>alert('q')</script> revenue")
    assert written == target
    assert target.is_file()
    assert sorted(p.name for p in target.parent.iterdir()) == ["gallery.html"]  # no temp left
    document = target.read_text(encoding="utf-8")

    assert CSP in document
    assert "<script" not in document.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in document
    assert "&lt;script&gt;alert(&#x27;q&#x27;)&lt;/script&gt; revenue" in document
    assert "<i>page 1</i>" not in document
    assert '"><img src=x' not in document
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in document
    assert "url(" not in document
    tags = Tags(document)
    assert not {name for name, _ in tags.tags} & {"script", "link", "iframe", "object", "embed"}

    # Nothing is loaded from anywhere: only data: images; http(s) only in links and tooltips.
    for tag, attrs in tags.tags:
        for name, value in attrs.items():
            if name in ("src", "srcset", "poster", "data", "action", "background"):
                assert value.startswith(DATA_JPEG), (tag, name)
            if re.search(r"https?://", value):
                assert (tag == "a" and name == "href") or name == "title", (tag, name, value)
            if name == "href":
                assert tag == "a"
    assert not any(re.search(r"https?://", text) for text in tags.text)

    # The thumbnails are the original JPEG files, byte for byte; the others get a placeholder.
    images = tags.find("img")
    assert all(attrs["class"] == "thumb" for attrs in images)
    decoded = [base64.b64decode(attrs["src"][len(DATA_JPEG) :]) for attrs in images]
    assert decoded == [(tmp_path / "red.jpg").read_bytes(), (tmp_path / "blue.jpg").read_bytes()]
    assert document.count("no preview") == 2

    # Sources link to the page or the clip's start; unknown schemes get no link.
    links = [attrs["href"] for attrs in tags.find("a")]
    assert links == [
        Path(results[0].source).resolve().as_uri() + "#page=3",
        Path(results[1].source).resolve().as_uri() + "#t=10",
        "https://example.com/charts/bar.png?x=1&y=2",
    ]
    assert "&quot;" not in links[0]
    assert "%22ird%20%3Cdir%3E" in links[0]
    titles = [attrs["title"] for attrs in tags.find("div") if "title" in attrs]
    assert titles == [r.source for r in results]  # the parser reads back exactly the source

    # What each card shows.
    text = " ".join(" ".join(tags.text).split())
    assert "vector 0.731 · rerank 0.912" in text
    assert "vector 0.688" in text
    assert "rerank" not in text.split("vector 0.688")[1].split("#4")[0]
    assert "report.pdf" in text
    assert "0:10-0:20" in text
    assert "bar.png" in text
    assert "4 results" in text
    assert "Revenue grew <script>alert(1)</script> word" in text  # whitespace collapsed
    snippet = next(t for t in tags.text if "Revenue" in t)
    assert len(snippet) <= 301
    assert snippet.endswith("…")


def test_query_image_is_downscaled_and_unreadable_ones_are_skipped(tmp_path: Path) -> None:
    big = jpeg(tmp_path / "query.jpg", (0, 128, 0), size=(1200, 800))
    document = write_gallery(tmp_path / "g.html", [], query="a", query_image=big).read_text()
    (image,) = Tags(document).find("img")
    embedded = Image.open(io.BytesIO(base64.b64decode(image["src"][len(DATA_JPEG) :])))
    assert embedded.format == "JPEG"
    assert embedded.size == (256, 171)

    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image")
    for unreadable in (garbage, tmp_path / "absent.png"):
        document = write_gallery(tmp_path / "g.html", [], query_image=unreadable).read_text()
        assert "<img" not in document


def test_oversized_or_foreign_thumbnails_get_a_placeholder(tmp_path: Path) -> None:
    huge = tmp_path / "huge.jpg"
    huge.write_bytes(b"\xff\xd8\xff" + b"\0" * (2 * 1024 * 1024))
    png = tmp_path / "thumb.png"
    Image.new("RGB", (8, 8)).save(png)
    results = [
        SearchResult(rank=i, id=str(i), kind="image", source="a.png", locator="", vector_score=0.5,
                     thumbnail=thumbnail)
        for i, thumbnail in enumerate((huge, png, tmp_path), start=1)
    ]  # fmt: skip
    document = write_gallery(tmp_path / "g.html", results).read_text()
    assert 'class="thumb"' not in document
    assert document.count("no preview") == 3


def test_empty_results_and_replacing_a_file(tmp_path: Path, results: list[SearchResult]) -> None:
    target = tmp_path / "g.html"
    write_gallery(target, results)
    document = write_gallery(str(target), [], title="Nothing <here>").read_text()
    assert "No results" in document
    assert "0 results" in document
    assert "<title>Nothing &lt;here&gt;</title>" in document
    assert 'class="thumb"' not in document
    assert CSP in document
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".jpg") == [
        "g.html",
        'we"ird <dir>',
    ]


def _chromium() -> str:
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    if found is None:
        pytest.skip(
            "Debian's chromium is not installed (apt-get install chromium); "
            "the browser check needs it"
        )
    return found


def _browse(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile.mkdir()
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_a_browser_renders_every_thumbnail(tmp_path: Path, results: list[SearchResult]) -> None:
    chromium = _chromium()
    query_image = jpeg(tmp_path / "query.jpg", (0, 160, 0), size=(300, 300))
    page = write_gallery(
        tmp_path / "gallery.html", results, query="revenue", query_image=query_image
    )
    copy = tmp_path / "view" / "gallery.html"
    copy.parent.mkdir()
    shutil.copyfile(page, copy)
    url = copy.as_uri()

    dom = _browse(chromium, tmp_path / "profile-dom", "--dump-dom", url).stdout
    assert len(re.findall(r'<img class="thumb"', dom)) == 3
    assert "revenue" in dom
    assert "<script" not in dom.lower()

    shot = tmp_path / "shot.png"
    _browse(
        chromium, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1280,2000", url
    )
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(np.int16)

    def count(color: tuple[int, int, int]) -> int:
        return int((np.abs(pixels - np.array(color)).max(axis=-1) < 40).sum())

    # Each thumbnail is drawn at least about 200x150 px (scaled to its card's width).
    assert count(RED) > 20_000
    assert count(BLUE) > 20_000
    assert count((0, 160, 0)) > 5_000  # the query image, 96x96 in the header
