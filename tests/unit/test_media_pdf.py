"""PDF pages: rendering at the embedder's size, metadata, ranges, passwords, broken files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qwen3_vl_rag import EncryptedPdfError, InputError, InputTooLargeError, PdfError
from qwen3_vl_rag.media import MediaBudget, WorkerPool, load_pdf
from tests import media_files


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return media_files.report_pdf(tmp_path_factory.mktemp("pdf") / "report.pdf")


def test_one_item_per_page_with_loader_compatible_metadata(report: Path) -> None:
    document = load_pdf(report)
    items = list(document)
    assert [item.kind for item in items] == ["page"] * 3
    assert len(document) == 3 and document.total_pages == 3 and document.warnings == []
    first = dict(items[0].metadata)
    assert first == {
        "source": str(report),
        "file_type": "pdf",
        "page": 0,
        "page_label": "A-1",
        "total_pages": 3,
        "page_width": 595.0,
        "page_height": 842.0,
        "image_width": 1152,
        "image_height": 1600,
    }
    assert items[2].metadata["page"] == 2 and items[2].locator == "page A-3"
    assert items[1].text is not None and "Quarterly report, page 2" in items[1].text
    assert "EMEA" in items[1].text


def test_pages_render_at_the_embedders_size(report: Path) -> None:
    item = next(iter(load_pdf(report)))
    assert item.image is not None
    width, height = item.image.size
    # the budget's 1800 visual tokens exactly, sides multiples of 32: no resize left to do
    assert (width % 32, height % 32) == (0, 0)
    assert width * height == 1800 * 32 * 32
    smaller = next(iter(load_pdf(report, budget=MediaBudget(max_pixels=256 * 32 * 32))))
    assert smaller.image is not None and smaller.image.size == (416, 608)


def test_the_chart_is_drawn_where_it_is_on_the_page(report: Path) -> None:
    page = list(load_pdf(report))[1]
    image = np.asarray(page.load_image()).astype(int)
    height, width, _ = image.shape
    for bar, colour in enumerate(media_files.CHART_COLOURS):
        x, y = media_files.chart_bar_centre((595, 842), bar)
        pixel = image[round(y / 842 * height), round(x / 595 * width)]
        assert np.abs(pixel - np.array(colour) * 255).max() < 8, (bar, pixel)
    assert image[round(760 / 842 * height), round(300 / 595 * width)].tolist() == [255, 255, 255]


def test_small_pages_stay_at_most_max_dpi(tmp_path: Path) -> None:
    import pymupdf

    document = pymupdf.open()
    document.new_page(width=144, height=72)  # 2 x 1 inches
    document.save(tmp_path / "card.pdf")
    item = next(iter(load_pdf(tmp_path / "card.pdf")))
    # 144 dpi gives 288 x 144 px; 144 / 32 = 4.5 blocks rounds half to even: 128
    assert item.image is not None and item.image.size == (288, 128)


def test_absurd_page_sizes_cost_a_normal_render(tmp_path: Path) -> None:
    import pymupdf

    document = pymupdf.open()
    document.new_page(width=14_400, height=14_400)  # 200 inches, the spec's maximum
    document.save(tmp_path / "poster.pdf")
    item = next(iter(load_pdf(tmp_path / "poster.pdf")))
    assert item.image is not None and item.image.size == (1344, 1344)
    assert np.asarray(item.load_image()).shape == (1344, 1344, 3)


def test_page_ranges_and_the_page_cap(report: Path) -> None:
    chosen = load_pdf(report, pages=[2, 0])
    assert [item.metadata["page"] for item in chosen] == [0, 2]
    assert [item.metadata["page"] for item in load_pdf(report, pages=range(1, 3))] == [1, 2]
    capped = load_pdf(report, budget=MediaBudget(max_pages=2))
    assert [item.metadata["page"] for item in capped] == [0, 1]
    assert capped.warnings == ["only the first 2 of 3 pages were read (max_pages)"]
    with pytest.raises(InputError, match=r"pages \[3\] do not exist"):
        load_pdf(report, pages=[3])


def test_encrypted_pdf_needs_its_password(tmp_path: Path) -> None:
    path = media_files.encrypted_pdf(tmp_path / "secret.pdf")
    with pytest.raises(EncryptedPdfError, match="encrypted") as info:
        load_pdf(path)
    assert info.value.stage == "open" and "password=" in (info.value.hint or "")
    with pytest.raises(EncryptedPdfError, match="password is wrong"):
        load_pdf(path, password="guess")
    items = list(load_pdf(path, password="s3cret"))
    assert len(items) == 1 and "secret plans" in (items[0].text or "")
    assert np.asarray(items[0].load_image()).min() < 100  # rendered, not blank


def test_files_that_are_not_pdfs(tmp_path: Path) -> None:
    png_named_pdf = tmp_path / "scan.pdf"
    png_named_pdf.write_bytes(media_files.png_bytes(media_files.Image.new("RGB", (8, 8))))
    with pytest.raises(PdfError, match=r"not a PDF \(it looks like PNG\)"):
        load_pdf(png_named_pdf)
    html_named_pdf = tmp_path / "page.pdf"
    html_named_pdf.write_text("<html><body>hello</body></html>")
    with pytest.raises(PdfError, match="not a PDF"):
        load_pdf(html_named_pdf)
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    with pytest.raises(PdfError, match="empty"):
        load_pdf(empty)
    with pytest.raises(PdfError, match="no such file"):
        load_pdf(tmp_path / "missing.pdf")


def test_truncated_pdfs(report: Path, tmp_path: Path) -> None:
    data = report.read_bytes()
    header_only = tmp_path / "header.pdf"
    header_only.write_bytes(data[:200])
    with pytest.raises(PdfError, match="not a readable PDF") as info:
        load_pdf(header_only)
    assert info.value.stage == "open"
    without_trailer = tmp_path / "cut.pdf"
    without_trailer.write_bytes(data[: int(len(data) * 0.9)])
    document = load_pdf(without_trailer)
    assert document.repaired
    assert document.warnings == [
        "the file was damaged and repaired on opening; some pages may be blank"
    ]
    items = list(document)
    assert len(items) == 3 and all(item.metadata["repaired"] is True for item in items)


def test_byte_budget(report: Path) -> None:
    with pytest.raises(InputTooLargeError, match="over the budget"):
        load_pdf(report, budget=MediaBudget(max_bytes=100))


def test_the_same_pages_from_a_worker_process(report: Path) -> None:
    local = list(load_pdf(report))
    with WorkerPool(workers=1, timeout=30) as pool:
        isolated = list(load_pdf(report, runner=pool))
        assert [dict(i.metadata) for i in isolated] == [dict(i.metadata) for i in local]
        assert [i.text for i in isolated] == [i.text for i in local]
        np.testing.assert_array_equal(
            np.asarray(isolated[1].load_image()), np.asarray(local[1].load_image())
        )


def test_missing_pymupdf_gives_the_install_hint(
    report: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    from qwen3_vl_rag import MissingDependencyError

    real_import = builtins.__import__

    def no_pymupdf(name: str, *args: object, **kwargs: object) -> object:
        if name == "pymupdf":
            raise ImportError("No module named 'pymupdf'")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_pymupdf)
    with pytest.raises(MissingDependencyError, match=r'pip install "qwen3-vl-rag\[pdf\]"'):
        load_pdf(report)
