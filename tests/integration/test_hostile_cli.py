"""The ``qwen3-vl-rag`` command under attack: hostile names, a closed pipe, an index in the folder.

File names and document text are data from the outside: printed raw, an escape sequence drives
the terminal and a newline forges a report line. ``index ... | head -1`` closes the output early:
the report must still be written and the command must not die with a traceback. An index kept
inside the folder it indexes must not index its own files.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from PIL import Image

from qwen3_vl_rag.cli import main as cli
from qwen3_vl_rag.cli.main import main
from qwen3_vl_rag.cli.terminal import printable

# Clears the screen, sets the window title, rings the bell; the newline then forges a report line.
EVIL = "evil\x1b[2J\x1b]0;pwned\x07\n  failed [open] forged.png: ImageDecodeError: x\u202egnp.png"
UNSAFE = ("\x1b", "\x07", "\x9b", "\x85", "\u202e", "\u2028")


def models(embedding: Path, reranker: Path) -> list[str]:
    return ["--model", str(embedding), "--reranker", str(reranker), "--device", "cpu"]


def red_and_blue(folder: Path) -> Path:
    folder.mkdir()
    Image.new("RGB", (64, 48), (220, 30, 30)).save(folder / "red.png")
    Image.new("RGB", (48, 64), (30, 30, 220)).save(folder / "blue.jpg")
    return folder


def assert_terminal_safe(text: str) -> None:
    for character in UNSAFE:
        assert character not in text, repr(character)
    assert not any(line.startswith("  failed [open] forged.png") for line in text.splitlines())


# -- control characters --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("a\x1b[31mb", "a\\x1b[31mb"),  # C0: escape
        ("a\nb\rc\td\x00", "a\\x0ab\\x0dc\\x09d\\x00"),
        ("a\x7fb", "a\\x7fb"),  # DEL
        ("a\x9b31mb\x85c", "a\\x9b31mb\\x85c"),  # C1: CSI, NEL
        ("a\u202eb\u2066c\u2069", "a\\u202eb\\u2066c\\u2069"),  # bidi override, isolates
        ("a\u2028b", "a\\u2028b"),  # line separator
        ("café 日本 ✓", "café 日本 ✓"),  # printable text stays as it is
    ],
)
def test_printable_shows_control_characters_as_escapes(raw: str, shown: str) -> None:
    assert printable(raw) == shown


def test_result_text_is_printed_terminal_safe(capsys: pytest.CaptureFixture[str]) -> None:
    page = SimpleNamespace(
        rank=1,
        score=0.9,
        vector_score=0.8,
        rerank_score=None,
        kind="page",
        source="report\x1b[8m.pdf",
        locator="page 3\u202e",
        text="Revenue\x1b]52;c;Y3VybCBldmlsLnNo\x07 grew \x9b2J by 4%",  # clipboard write, C1 CSI
        stale="file changed\x1b[2J",
    )
    cli._print_results("revenue\x1b[5m", None, [page])
    out = capsys.readouterr().out
    assert_terminal_safe(out)
    assert "report\\x1b[8m.pdf  (page 3\\u202e)" in out
    assert "Revenue]52;c;Y3VybCBldmlsLnNo grew 2J by 4%" in out  # prose: controls dropped
    assert out.startswith('1 result(s) for "revenue\\x1b[5m"')
    assert "stale: file changed\\x1b[2J (not read)" in out


def test_hostile_names_never_reach_the_terminal_raw(
    tmp_path: Path,
    tiny_embedding_path: Path,
    tiny_reranker_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    corpus = red_and_blue(tmp_path / "corpus")
    Image.new("RGB", (40, 40), (20, 200, 20)).save(corpus / "green.png")
    os.rename(corpus / "green.png", corpus / EVIL)
    (corpus / "bad\x1b[31m\u202e.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    index = tmp_path / "index"
    flags = ["--index", str(index)]

    assert (
        main(["index", str(corpus), *flags, *models(tiny_embedding_path, tiny_reranker_path)]) == 1
    )
    captured = capsys.readouterr()
    assert_terminal_safe(captured.out)
    assert "indexed 3 file(s)" in captured.out and "failed 1" in captured.out
    assert "bad\\x1b[31m\\u202e.png: ImageDecodeError" in captured.out

    assert main(["search", "green", *flags, "--no-rerank", "--top-n", "3"]) == 0
    out = capsys.readouterr().out
    assert_terminal_safe(out)
    assert "evil\\x1b[2J\\x1b]0;pwned\\x07\\x0a  failed [open] forged.png" in out

    # JSON stays valid and exact: json.dumps escapes control characters itself
    assert main(["search", "green", *flags, "--no-rerank", "--top-n", "3", "--json"]) == 0
    out = capsys.readouterr().out
    assert_terminal_safe(out)
    assert str(corpus / EVIL) in {result["source"] for result in json.loads(out)}

    (corpus / EVIL).unlink()
    assert main(["prune", *flags]) == 0
    out = capsys.readouterr().out
    assert_terminal_safe(out)
    assert "removed 1 missing file(s)" in out and "evil\\x1b[2J" in out

    assert main(["search", "--image", str(tmp_path / EVIL), *flags, "--no-rerank"]) == 2
    assert_terminal_safe(capsys.readouterr().err)  # the error names the file: escaped too


# -- a closed stdout -----------------------------------------------------------------------------


class ClosedPipe(io.RawIOBase):
    """stdout whose reader went away (``| head``): every write fails with EPIPE while closed."""

    def __init__(self) -> None:
        super().__init__()
        self.gone = True

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.gone:
            raise BrokenPipeError(32, "Broken pipe")
        return len(data)


def test_a_closed_output_still_writes_the_report(
    tmp_path: Path,
    tiny_embedding_path: Path,
    tiny_reranker_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    corpus = red_and_blue(tmp_path / "corpus")
    for number in range(100):  # 20 KB of skipped lines: well past the 8 KB stdout buffer
        (corpus / f"empty-{number:03d}-{'x' * 80}.png").write_bytes(b"")
    report = tmp_path / "report.json"
    pipe = ClosedPipe()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BufferedWriter(pipe)))
    flags = ["--index", str(tmp_path / "index"), "--quiet", "--report", str(report)]
    code = main(["index", str(corpus), *flags, *models(tiny_embedding_path, tiny_reranker_path)])
    assert code == 1  # its usual code: files were skipped
    written = json.loads(report.read_text())
    assert written["counts"]["indexed"] == 2 and written["counts"]["skipped"] == 100
    pipe.gone = False  # let the abandoned wrapper flush quietly when collected


def test_a_closed_pipe_ends_the_command_quietly(
    tmp_path: Path, tiny_embedding_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = red_and_blue(tmp_path / "corpus")
    for number in range(60):  # failed files are recorded, so prune lists them once deleted
        (corpus / f"broken-{number:03d}-{'x' * 80}.png").write_bytes(
            b"\x89PNG\r\n\x1a\n" + bytes(40)
        )
    index = tmp_path / "index"
    flags = ["--index", str(index), "--model", str(tiny_embedding_path), "--quiet"]
    assert main(["index", str(corpus), *flags]) == 1
    capsys.readouterr()
    for broken in corpus.glob("broken-*"):
        broken.unlink()
    # a real process whose stdout pipe has no reader: `qwen3-vl-rag prune | head -0`
    command = [sys.executable, "-m", "qwen3_vl_rag.cli.main", "prune", "--index", str(index)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None
    process.stdout.close()
    _, stderr = process.communicate(timeout=120)
    errors = stderr.decode(errors="replace")
    assert "Traceback" not in errors and "BrokenPipe" not in errors, errors[-2000:]
    assert process.returncode == 0
    assert main(["status", "--index", str(index), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sources"] == 2  # the prune was done


# -- the index inside the indexed folder ---------------------------------------------------------


@pytest.mark.parametrize("name", ["index", ".qwen3vl-index"])
def test_an_index_inside_the_folder_does_not_index_itself(
    tmp_path: Path,
    tiny_embedding_path: Path,
    tiny_reranker_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
) -> None:
    corpus = red_and_blue(tmp_path / "corpus")
    index = corpus / name
    flags = ["--index", str(index), *models(tiny_embedding_path, tiny_reranker_path), "--quiet"]
    assert main(["index", str(corpus), *flags]) == 0
    assert (
        "indexed 2 file(s) (2 items), unchanged 0, skipped 0, failed 0" in capsys.readouterr().out
    )

    assert main(["search", "red", "--index", str(index), "--no-rerank"]) == 0  # thumbnails
    assert any((index / "thumbnails").iterdir())
    (corpus / "shortcut").symlink_to(index / "thumbnails")  # a link into it is left out too
    report = tmp_path / "report.json"
    assert main(["index", str(corpus), *flags, "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "indexed 0 file(s) (0 items), unchanged 2, skipped 0, failed 0" in out
    paths = [file["path"] for file in json.loads(report.read_text())["files"]]
    assert sorted(Path(path).name for path in paths) == ["blue.jpg", "red.png"]


def test_a_scan_leaves_out_excluded_folders_and_everything_under_them(tmp_path: Path) -> None:
    from qwen3_vl_rag.media.folders import scan_folder

    corpus = red_and_blue(tmp_path / "corpus")
    hidden = corpus / ".index" / "thumbnails"
    hidden.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(hidden / "thumb.jpg")
    (corpus / "to-thumbs").symlink_to(hidden)
    (corpus / "to-thumb.jpg").symlink_to(hidden / "thumb.jpg")
    with scan_folder(corpus, exclude=[corpus / ".index"], isolate=False) as scan:
        found = sorted(path.name for path in scan.files())
    assert found == ["blue.jpg", "red.png"] and scan.report.files == []  # nothing else reported
    with scan_folder(hidden, exclude=[corpus / ".index"], isolate=False) as scan:
        assert list(scan.files()) == []
    assert scan.report.files[0].reason is not None and "excluded" in scan.report.files[0].reason


def test_a_report_that_cannot_be_written_is_an_error_after_the_summary(
    tmp_path: Path, tiny_embedding_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = red_and_blue(tmp_path / "corpus")
    (tmp_path / "file").write_text("not a folder")
    flags = ["--index", str(tmp_path / "index"), "--model", str(tiny_embedding_path), "--quiet"]
    assert main(["index", str(corpus), *flags, "--report", str(tmp_path / "file" / "r.json")]) == 2
    captured = capsys.readouterr()
    assert "indexed 2 file(s)" in captured.out
    assert "error: the report could not be written to" in captured.err
