"""Rough edges of the media layer: page labels, unusual TIFFs, control characters, quiet scans,
names that say what they mean, and one content hash."""

from __future__ import annotations

import hashlib
import io
import logging
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import qwen3_vl_rag.media as media
from qwen3_vl_rag import ImageDecodeError, UnsupportedInputError
from qwen3_vl_rag.checked_files import file_sha256, open_checked
from qwen3_vl_rag.engine._vision import decode_image, open_image
from qwen3_vl_rag.index import FileOutcome
from qwen3_vl_rag.media import MediaOptions, load_image, load_pdf, scan_folder
from qwen3_vl_rag.media.folders import FileReport, stream_items
from qwen3_vl_rag.media.pdf_text import clean_text, decode_text_string, page_label, string_bytes

# -- PDF page labels -------------------------------------------------------------------------------


def labelled_pdf(path: Path, page_labels: str, pages: int = 14) -> Path:
    """A PDF whose catalog holds ``/PageLabels`` exactly as written (hex and literal strings)."""
    import pymupdf

    document = pymupdf.open()
    for _ in range(pages):
        document.new_page(width=200, height=200)
    document.xref_set_key(document.pdf_catalog(), "PageLabels", page_labels)
    document.save(path)
    document.close()
    return path


def test_page_labels_written_as_utf16_and_pdfdoc_strings_are_decoded(tmp_path: Path) -> None:
    # as real PDFs write them: page 10 labelled "10" by a UTF-16BE prefix alone (no style),
    # a PDFDocEncoding prefix (0x84 is an em dash there), roman and letter numbering
    nums = (
        "<</Nums[0<</S/r>>"
        "4<</S/D/St 5>>"
        "9<</P<FEFF00310030>>>"
        "10<</P<FEFF00E9>/S/D/St 3>>"
        "11<</P<4E6F7465208420>/S/A>>"
        "12<</P<EFBBBF43C3A9>/S/a/St 27>>]>>"
    )
    path = labelled_pdf(tmp_path / "labels.pdf", nums)
    labels = [item.metadata["page_label"] for item in load_pdf(path)]
    assert labels == [
        *("i", "ii", "iii", "iv"),
        *("5", "6", "7", "8", "9"),
        "10",
        "é3",
        "Note — A",
        "Céaa",
        "Cébb",
    ]


def test_a_pdf_without_labels_names_pages_by_number(tmp_path: Path) -> None:
    import pymupdf

    document = pymupdf.open()
    for _ in range(2):
        document.new_page()
    document.save(tmp_path / "plain.pdf")
    assert [i.metadata["page_label"] for i in load_pdf(tmp_path / "plain.pdf")] == ["1", "2"]


@pytest.mark.parametrize(
    ("written", "text"),
    [
        ("<FEFF00310030>", "10"),
        ("<FEFF 0031 0030>", "10"),  # white space inside hex strings is allowed
        ("<EFBBBF43C3A9>", "Cé"),  # UTF-8 with its byte-order mark (PDF 2.0)
        ("<93>", "ﬁ"),  # PDFDocEncoding
        (r"(A\(1\)\051-)", "A(1))-"),
        (r"(caf\351)", "café"),
        ("Chapter ", "Chapter "),  # parentheses already taken off (as PyMuPDF gives prefixes)
        ("<4>", "@"),  # an odd last digit is followed by 0
    ],
)
def test_pdf_text_strings_decode(written: str, text: str) -> None:
    assert decode_text_string(string_bytes(written)) == text


def test_page_label_numbering_styles() -> None:
    assert [page_label([{"startpage": 0, "style": "R", "firstpagenum": 1}], i) for i in (0, 3)] == [
        "I",
        "IV",
    ]
    assert page_label([{"startpage": 0, "style": "R", "firstpagenum": 1994}], 0) == "MCMXCIV"
    assert page_label([{"startpage": 0, "style": "A"}], 26) == "AA"
    assert page_label([{"startpage": 0, "style": "a"}], 52) == "aaa"
    assert page_label([{"startpage": 3, "style": "D"}], 1) == ""  # no rule: the caller numbers
    assert page_label([], 4) == ""


# -- control characters in PDF text ----------------------------------------------------------------


def pdf_with_text(path: Path, shown: bytes, title: str = "") -> Path:
    """One page showing ``shown`` in a font that maps every byte to the same code point.

    This is how a PDF hands control characters (U+0088, U+0001...) to text extraction.
    """
    cmap = (
        b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap "
        b"/CMapName /Latin-Identity def /CMapType 2 def "
        b"1 begincodespacerange <00> <FF> endcodespacerange "
        b"1 beginbfrange <00> <FF> <0000> endbfrange endcmap "
        b"CMapName currentdict /CMap defineresource pop end end"
    )
    escaped = shown.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
    content = b"BT /F1 12 Tf 72 720 Td (" + escaped + b") Tj ET"
    info = b"<< /Title <" + ("\ufeff" + title).encode("utf-16-be").hex().encode() + b"> >>"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /ToUnicode 6 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(cmap) + cmap + b"\nendstream",
        info,
    ]
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 7 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    path.write_bytes(bytes(out))
    return path


def test_control_characters_of_pdf_text_do_not_reach_items(tmp_path: Path) -> None:
    path = pdf_with_text(
        tmp_path / "controls.pdf", b"Total\x88 due\x01 now\x7f!\tok", title="Q3\x88 report\x00"
    )
    document = load_pdf(path)
    (page,) = list(document)
    assert page.text is not None
    assert page.text.strip() == "Total due now! ok"  # MuPDF shows the tab as a space
    assert document.metadata["title"] == "Q3 report"


def test_clean_text_keeps_tabs_and_line_breaks_only() -> None:
    assert clean_text("a\r\nb\rc\td\x00e\x85f\u2028g") == "a\nb\nc\tdef\u2028g"


# -- TIFFs that are valid but not decodable --------------------------------------------------------


def tiff_bytes(*, samples: int, bits: int, sample_format: int, planar: int = 1) -> bytes:
    """A minimal, valid little-endian TIFF of 4x4 pixels with the given sample layout."""
    width = height = 4
    data = bytes(width * height * samples * bits // 8)
    extra = b""
    entries = []
    data_at = 8

    def entry(tag: int, kind: int, values: list[int]) -> None:
        nonlocal extra
        if kind == 3 and len(values) > 2:  # SHORTs that do not fit: stored after the data
            offset = data_at + len(data) + len(extra)
            extra += struct.pack(f"<{len(values)}H", *values)
            value = struct.pack("<I", offset)
        elif kind == 3:
            value = struct.pack(f"<{len(values)}H", *values).ljust(4, b"\0")
        else:
            value = struct.pack("<I", values[0])
        entries.append(struct.pack("<HHI", tag, kind, len(values)) + value)

    entry(256, 4, [width])
    entry(257, 4, [height])
    entry(258, 3, [bits] * samples)
    entry(259, 3, [1])
    entry(262, 3, [2 if samples == 3 else 1])
    entry(273, 4, [data_at])
    entry(277, 3, [samples])
    entry(278, 4, [height])
    entry(279, 4, [len(data)])
    entry(284, 3, [planar])
    entry(339, 3, [sample_format] * samples)
    directory_at = data_at + len(data) + len(extra)
    directory = struct.pack("<H", len(entries)) + b"".join(entries) + bytes(4)
    return b"II*\0" + struct.pack("<I", directory_at) + data + extra + directory


FLOAT_PLANAR = tiff_bytes(samples=3, bits=32, sample_format=3, planar=2)
HALF_FLOAT = tiff_bytes(samples=1, bits=16, sample_format=3)


@pytest.mark.parametrize(
    ("data", "layout"),
    [
        (FLOAT_PLANAR, "3 samples per pixel of 32-bit floating-point, in separate planes"),
        (HALF_FLOAT, "1 sample per pixel of 16-bit floating-point"),
    ],
    ids=["float-planar", "half-float"],
)
def test_a_valid_tiff_pillow_cannot_decode_is_unsupported_not_corrupt(
    tmp_path: Path, data: bytes, layout: str
) -> None:
    path = tmp_path / "scan.tif"
    path.write_bytes(data)
    for source in (path, data):
        with pytest.raises(UnsupportedInputError, match="valid TIFF") as info:
            load_image(source)
        assert layout in str(info.value) and info.value.stage == "open"
        assert "corrupt" not in str(info.value)
    for source in (str(path), data):  # the engine, given the file directly
        with pytest.raises(UnsupportedInputError, match="valid TIFF") as info:
            open_image(source)
        assert layout in str(info.value)
        with pytest.raises(UnsupportedInputError, match="valid TIFF"):
            decode_image(source)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow's own, on the cut directory
def test_a_tiff_cut_short_is_still_corrupt(tmp_path: Path) -> None:
    cut = FLOAT_PLANAR[: len(FLOAT_PLANAR) - 20]  # the last directory entries are missing
    with pytest.raises(ImageDecodeError, match="starts like a TIFF but its header is corrupt"):
        load_image(cut)
    with pytest.raises(ImageDecodeError):
        open_image(cut)


def test_a_supported_tiff_layout_still_decodes() -> None:
    image = Image.new("RGB", (8, 8), (10, 20, 30))
    buffer = io.BytesIO()
    image.save(buffer, "TIFF")
    item = load_image(buffer.getvalue())
    assert item.load_image().getpixel((3, 3)) == (10, 20, 30)


def test_a_folder_scan_reports_the_unsupported_tiff_as_failed_with_its_class(
    tmp_path: Path,
) -> None:
    (tmp_path / "float.tif").write_bytes(FLOAT_PLANAR)
    with scan_folder(tmp_path, isolate=False) as scan:
        assert list(scan) == []
    (report,) = scan.report.files
    assert (report.status, report.error, report.stage) == (
        "failed",
        "UnsupportedInputError",
        "open",
    )
    assert report.reason is not None and "floating-point" in report.reason


# -- a scan's words and its console ----------------------------------------------------------------


def test_a_scan_says_loaded_not_indexed(tmp_path: Path) -> None:
    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    with scan_folder(tmp_path, isolate=False) as scan:
        assert len(list(scan)) == 1
    assert scan.report.counts() == {"loaded": 1, "skipped": 0, "failed": 0, "items": 1}
    assert [f.status for f in scan.report.by_status("loaded")] == ["loaded"]


SCAN_WITH_A_BAD_FILE = """
import sys
from qwen3_vl_rag.media import MediaOptions
from qwen3_vl_rag.media.folders import stream_items
report, items = stream_items(sys.argv[1], MediaOptions(), kinds={"image"})
print(len(list(items)), report.counts()["skipped"], report.files[-1].reason)
"""


def test_a_loader_scan_prints_nothing_on_its_own(tmp_path: Path) -> None:
    # the LangChain / LlamaIndex image loaders' scan: a skipped file is in the report, and
    # nothing reaches stderr through logging's last-resort handler
    Image.new("RGB", (16, 16)).save(tmp_path / "good.png")
    (tmp_path / "notes.png").write_bytes(b"not an image")
    run = subprocess.run(
        [sys.executable, "-c", SCAN_WITH_A_BAD_FILE, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert run.stdout.strip() == "1 1 not a PDF, image or video (by content)"
    assert run.stderr == ""


def test_an_application_that_configures_logging_still_sees_the_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    Image.new("RGB", (16, 16)).save(tmp_path / "good.png")
    (tmp_path / "notes.png").write_bytes(b"not an image")
    report, items = stream_items(tmp_path, MediaOptions(), kinds={"image"})
    with caplog.at_level(logging.WARNING, logger="qwen3_vl_rag"):
        assert len(list(items)) == 1
    assert [r.getMessage() for r in caplog.records] == [
        f"skipped {tmp_path / 'notes.png'}: not a PDF, image or video (by content)"
    ]
    assert report.counts()["skipped"] == 1


# -- names -----------------------------------------------------------------------------------------


def test_media_names_say_what_they_are() -> None:
    from qwen3_vl_rag import video_frames
    from qwen3_vl_rag.media import isolation

    assert "MediaOptions" in media.__all__ and "LoadOptions" not in media.__all__
    assert "IN_PROCESS_RUNNER" in media.__all__ and not hasattr(media, "IN_PROCESS")
    assert isinstance(media.IN_PROCESS_RUNNER, isolation.InProcessRunner)
    assert isinstance(video_frames.IN_PROCESS_READER, video_frames.InProcessReader)
    assert not hasattr(isolation, "IN_PROCESS") and not hasattr(video_frames, "IN_PROCESS")


def test_the_media_package_exports_eagerly() -> None:
    # no lazy __getattr__ left over from the import cycle: every public name is bound
    assert "__getattr__" not in vars(media)
    assert all(name in vars(media) for name in media.__all__)


def test_the_index_reports_files_with_the_scans_record() -> None:
    outcome = FileOutcome("a.png", "indexed", kind="image", items=1)
    assert isinstance(outcome, FileReport)
    assert (outcome.status, outcome.kind, outcome.items) == ("indexed", "image", 1)


# -- one content hash ------------------------------------------------------------------------------


def test_one_file_hash_for_paths_and_checked_handles(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    data = bytes(range(256)) * 9000  # over one read chunk
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert file_sha256(path) == expected
    with open_checked(path, max_bytes=len(data), label="blob") as opened:
        assert opened.sha256() == expected
