"""Folder scans: hostile trees, content-based dispatch, the per-file report, containment."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from qwen3_vl_rag.media import MediaBudget, MediaOptions, WorkerPool, scan_folder
from qwen3_vl_rag.testing import faults
from tests import media_files
from tests.conftest import write_mp4

BAD_NAME = b"bad_\xff\xfe.png"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    media_files.report_pdf(root / "a.pdf", pages=2)
    Image.new("RGB", (64, 48), "red").save(root / "sub" / "b.png")
    Image.new("RGB", (64, 48), "blue").save(root / "fake.pdf", format="PNG")
    write_mp4(root / "c.mp4", frames=12, fps=6)
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.txt").write_text("plain text is not indexed")
    (root / "broken.pdf").write_bytes(b"%PDF-1.7\n not really a pdf")
    (root / ".hidden.png").write_bytes(b"x")
    os.symlink("..", root / "sub" / "loop")  # a directory loop
    os.symlink("self", root / "self")  # a link to itself
    os.symlink(Path(__file__).resolve(), root / "outside.png")  # leads out of the folder
    os.symlink("sub/b.png", root / "again.png")  # a second path to a scanned file
    os.mkfifo(root / "pipe.pdf")  # opening it would block forever
    with open(os.fsencode(root) + b"/" + BAD_NAME, "wb") as handle:
        Image.new("RGB", (32, 32), "green").save(handle, format="PNG")
    return root


def rows(scan: Any) -> dict[str, tuple[str, Any, Any]]:
    root = scan.report.root
    return {
        Path(f.path).relative_to(root).as_posix(): (
            f.status,
            f.items,
            f.error if f.status == "failed" else f.reason,
        )
        for f in scan.report.files
    }


def test_hostile_tree_report(tree: Path) -> None:
    started = time.monotonic()
    with scan_folder(tree) as scan:
        items = list(scan)
        non_utf8 = next(i for i in items if "bad_" in i.source)
        # images decode in the scan's workers too: while it is open
        assert non_utf8.load_image().size == (32, 32)  # the real (undecodable) name is opened
    assert time.monotonic() - started < 30
    assert rows(scan) == {
        ".hidden.png": ("skipped", 0, "hidden (pass include_hidden=True to scan it)"),
        "a.pdf": ("loaded", 2, None),
        "again.png": ("skipped", 0, "same file as one already scanned (through a link)"),
        "bad_\\xff\\xfe.png": ("loaded", 1, None),
        "broken.pdf": ("failed", 0, "PdfError"),
        "c.mp4": ("loaded", 1, None),
        "empty.jpg": ("skipped", 0, "empty file"),
        "fake.pdf": ("loaded", 1, None),
        "notes.txt": ("skipped", 0, "not a PDF, image or video (by content)"),
        "outside.png": ("skipped", 0, "symbolic link leading outside the folder"),
        "pipe.pdf": ("skipped", 0, "not a regular file (a FIFO, device or socket is never opened)"),
        "self": ("skipped", 0, "symbolic link loop"),
        "sub/b.png": ("loaded", 1, None),
        "sub/loop": ("skipped", 0, "folder already scanned (a link loop or a second link)"),
    }
    assert len(items) == 6
    assert scan.report.counts() == {"loaded": 5, "skipped": 8, "failed": 1, "items": 6}
    broken = scan.report.by_status("failed")[0]
    assert (broken.stage, broken.error) == ("open", "PdfError")
    fake = next(f for f in scan.report.files if f.path.endswith("fake.pdf"))
    assert fake.kind == "image"
    assert fake.warnings == ["named .pdf but its content is PNG; loaded as image"]
    json.dumps(scan.report.to_dict())  # every string is valid UTF-8
    assert non_utf8.source.endswith("bad_\\xff\\xfe.png")


def test_items_stream_one_file_at_a_time(tree: Path) -> None:
    with scan_folder(tree) as scan:
        iterator = iter(scan)
        first = next(iterator)
        assert first.source.endswith("a.pdf")
        assert [Path(f.path).name for f in scan.report.files] == [".hidden.png", "a.pdf"]


def test_options_reach_the_loaders(tree: Path) -> None:
    options = MediaOptions(budget=MediaBudget(max_pages=1), segment_seconds=1.0)
    with scan_folder(tree, options) as scan:
        items = list(scan)
    pdf = next(f for f in scan.report.files if f.path.endswith("a.pdf"))
    assert pdf.items == 1 and pdf.warnings == ["only the first 1 of 2 pages were read (max_pages)"]
    assert sum(1 for i in items if i.kind == "clip") == 2  # 2 s of video in 1 s clips


def test_walk_switches(tree: Path) -> None:
    with scan_folder(tree, recursive=False, include_hidden=True, follow_symlinks=False) as scan:
        list(scan)
    result = rows(scan)
    assert ".hidden.png" in result and result[".hidden.png"][0] == "skipped"
    assert result[".hidden.png"][2] == "not a PDF, image or video (by content)"
    assert result["outside.png"] == ("skipped", 0, "symbolic link (not followed)")
    assert not any(name.startswith("sub/") for name in result)


def test_a_single_file_and_a_missing_root(tree: Path) -> None:
    with scan_folder(tree / "a.pdf") as scan:
        assert len(list(scan)) == 2
    with scan_folder(tree / "nowhere") as scan:
        assert list(scan) == []
    assert scan.report.files[0].status == "skipped"
    assert scan.report.files[0].reason == "cannot be read (No such file or directory)"


class FaultyRunner:
    """A worker pool where one file's PDF steps crash or hang, as a hostile file would make them."""

    def __init__(self, pool: WorkerPool, fault: str) -> None:
        self.pool, self.fault = pool, fault

    def run(
        self, step: Any, *args: Any, label: str, stage: str, timeout: float | None = None
    ) -> Any:
        if "evil" in label:
            if self.fault == "crash":
                return self.pool.run(faults.crash, label=label, stage=stage, timeout=timeout)
            return self.pool.run(faults.hang, 60, label=label, stage=stage, timeout=1.0)
        return self.pool.run(step, *args, label=label, stage=stage, timeout=timeout)


@pytest.mark.parametrize(
    ("fault", "error", "reason"),
    [
        (
            "crash",
            "DecoderCrashedError",
            "the decoding worker died during open (killed by signal SIGSEGV).",
        ),
        ("hang", "DecodeTimeoutError", "open took longer than 1 s; the worker was stopped."),
    ],
)
def test_a_crashing_or_hanging_decoder_fails_one_file_only(
    tmp_path: Path, fault: str, error: str, reason: str
) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    media_files.report_pdf(root / "1-good.pdf", pages=1)
    media_files.report_pdf(root / "2-evil.pdf", pages=1)
    media_files.report_pdf(root / "3-good.pdf", pages=2)
    with WorkerPool(workers=1, timeout=30) as pool:
        started = time.monotonic()
        with scan_folder(root, MediaOptions(runner=FaultyRunner(pool, fault))) as scan:
            items = list(scan)
        assert time.monotonic() - started < 20
    assert [(Path(f.path).name, f.status, f.items) for f in scan.report.files] == [
        ("1-good.pdf", "loaded", 1),
        ("2-evil.pdf", "failed", 0),
        ("3-good.pdf", "loaded", 2),
    ]
    evil = scan.report.files[1]
    assert (evil.stage, evil.error, evil.reason) == ("open", error, reason)
    assert len(items) == 3
