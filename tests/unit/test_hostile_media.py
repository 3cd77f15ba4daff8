"""Hostile media (issue 15): swapped files, lying headers, slow headers, one pixel budget, stages.

Each case is built cheaply (sparse or hand-written files) and run under bounded time and memory
where the unfixed code would hang or grow without bound.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from qwen3_vl_rag.errors import (
    ImageDecodeError,
    InputError,
    InputTooLargeError,
    UnsupportedInputError,
    VideoDecodeError,
)
from qwen3_vl_rag.media import MediaBudget, MediaOptions, WorkerPool, load_video, scan_folder
from qwen3_vl_rag.media.folders import FolderScan
from qwen3_vl_rag.media.images import load_image
from qwen3_vl_rag.video_frames import probe
from tests.bounded import run_bounded
from tests.media_files import many_page_tiff

# -- files built cheaply ---------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def grey_png(path: Path, width: int, height: int) -> Path:
    """An 8-bit grey PNG of any size, streamed through zlib (a few hundred KB on disk)."""
    compressor = zlib.compressobj(9)
    row = b"\x00" + b"\x80" * width
    rows_per_block = max(1, 4_000_000 // len(row))
    parts, left = [], height
    while left:
        count = min(left, rows_per_block)
        parts.append(compressor.compress(row * count))
        left -= count
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", b"".join(parts))
        + _chunk(b"IEND", b"")
    )
    return path


def lying_avi(path: Path) -> Path:
    """A 4-frame MJPEG AVI (a few KB) whose header claims 4,294,967,295 frames."""
    import av
    import numpy as np

    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mjpeg", rate=4)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuvj420p"
        for i in range(4):
            frame = np.full((16, 16, 3), i * 40, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = bytearray(path.read_bytes())
    main_header = data.index(b"avih")
    struct.pack_into("<I", data, main_header + 8 + 16, 0xFFFFFFFF)  # dwTotalFrames
    stream_header = data.index(b"strh")
    struct.pack_into("<I", data, stream_header + 8 + 32, 0xFFFFFFFF)  # dwLength
    path.write_bytes(bytes(data))
    return path


def swap_for_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def rows(scan: FolderScan) -> dict[str, tuple[str, str | None, str | None]]:
    root = Path(scan.report.root)
    return {
        Path(f.path).relative_to(root).as_posix(): (f.status, f.stage, f.reason)
        for f in scan.report.files
    }


class RecordingRunner:
    """A worker pool that records which steps it ran."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        self.steps: list[tuple[str, str]] = []

    def run(
        self,
        step: Callable[..., Any],
        *args: Any,
        label: str,
        stage: str,
        timeout: float | None = None,
    ) -> Any:
        self.steps.append((step.__name__, Path(label).name))
        return self.pool.run(step, *args, label=label, stage=stage, timeout=timeout)


# -- item 2: a file swapped for a FIFO never hangs a decode ----------------------------------------

FIFO_AFTER_HEADER = """
import json, os, sys
from pathlib import Path
from qwen3_vl_rag.media import scan_folder
root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path({root!r})
with scan_folder(root, isolate={isolate}) as scan:
    items = list(scan)          # headers read
    path = root / "photo.png"
    path.unlink()
    os.mkfifo(path)             # swapped for a FIFO before the pixels are decoded
    try:
        items[0].load_image()
        print(json.dumps({{"error": None}}))
    except Exception as exc:
        print(json.dumps({{"error": type(exc).__name__, "message": str(exc)}}))
"""


@pytest.mark.parametrize("isolate", [True, False])
def test_an_image_swapped_for_a_fifo_after_its_header_is_never_waited_on(
    tmp_path: Path, isolate: bool
) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(root / "photo.png")
    done = run_bounded(FIFO_AFTER_HEADER.format(root=str(root), isolate=isolate), seconds=40)
    assert not done.timed_out, "decoding waited on the FIFO"
    result = done.json()
    assert isinstance(result, dict)
    assert result["error"] == "ImageDecodeError", done.stderr[-2000:]
    assert "not a regular file" in result["message"] or "changed" in result["message"]


def test_a_file_swapped_for_a_fifo_after_the_walk_is_skipped(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    Image.new("RGB", (40, 30)).save(root / "a.png")
    with scan_folder(root, isolate=False) as scan:
        for path in scan.files():
            swap_for_fifo(path)
            assert list(scan.load_file(path)) == []
    status, stage, reason = rows(scan)["a.png"]
    assert (status, stage) == ("skipped", "open")
    assert reason is not None and "not a regular file" in reason


def test_open_checked_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    from qwen3_vl_rag.checked_files import open_checked

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(InputError, match="not a regular file"):
        open_checked(fifo, max_bytes=1000, label="pipe.png")
    assert time.monotonic() - started < 5


SNIFF_FIFO = """
import json, os
from pathlib import Path
from qwen3_vl_rag.media.sniff import sniff_file
fifo = Path({path!r})
os.mkfifo(fifo)
try:
    sniff_file(fifo)
    print(json.dumps(None))
except OSError as exc:
    print(json.dumps(exc.strerror))
"""


def test_sniffing_a_fifo_raises_instead_of_waiting(tmp_path: Path) -> None:
    done = run_bounded(SNIFF_FIFO.format(path=str(tmp_path / "pipe.png")), seconds=30)
    assert not done.timed_out, "sniffing waited on the FIFO"
    assert done.json() == "not a regular file"


# -- item 9: a swap between the walk's checks and the open is caught -------------------------------


def test_a_file_swapped_for_a_link_outside_after_the_walk_is_not_read(tmp_path: Path) -> None:
    outside = Image.new("RGB", (40, 30), (0, 0, 255))
    secret = tmp_path / "secret.png"
    outside.save(secret)
    root = tmp_path / "docs"
    root.mkdir()
    Image.new("RGB", (40, 30), (255, 0, 0)).save(root / "a.png")
    with scan_folder(root, isolate=False) as scan:
        items = []
        for path in scan.files():
            path.unlink()
            path.symlink_to(secret)  # after the walk checked a regular file inside the folder
            items += list(scan.load_file(path))
    assert items == []
    status, stage, _ = rows(scan)["a.png"]
    assert (status, stage) == ("skipped", "open")


def test_a_link_repointed_outside_after_the_walk_is_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    Image.new("RGB", (40, 30), (0, 0, 255)).save(secret)
    root = tmp_path / "docs"
    root.mkdir()
    Image.new("RGB", (40, 30), (255, 0, 0)).save(root / ".inside.png")  # reached by the link only
    (root / "link.png").symlink_to(root / ".inside.png")
    with scan_folder(root, isolate=False) as scan:
        items = []
        for path in scan.files():
            assert path.name == "link.png"
            path.unlink()
            path.symlink_to(secret)
            items += list(scan.load_file(path))
    assert items == []
    status, stage, _ = rows(scan)["link.png"]
    assert (status, stage) == ("skipped", "open")


def test_a_walk_fooled_about_a_links_target_still_reads_nothing_outside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walk's stat and realpath can each see a different target (a link swapped between
    them); the opened handle's real location is what decides."""
    secret = tmp_path / "secret.png"
    Image.new("RGB", (40, 30), (0, 0, 255)).save(secret)
    root = tmp_path / "docs"
    root.mkdir()
    (root / "link.png").symlink_to(secret)
    real_root = os.path.realpath(root)
    fooled = os.path.join(real_root, "link.png")
    original = os.path.realpath

    def racing_realpath(path: Any, *args: Any, **kwargs: Any) -> str:
        resolved = original(path, *args, **kwargs)
        return fooled if resolved == original(secret) else resolved

    monkeypatch.setattr(os.path, "realpath", racing_realpath)
    with scan_folder(root, isolate=False) as scan:
        items = list(scan)
    monkeypatch.undo()
    assert items == []
    status, stage, reason = rows(scan)["link.png"]
    assert (status, stage) == ("skipped", "open")
    assert reason is not None and "outside the folder" in reason


# -- item 3: a header claiming billions of frames costs what an honest one does --------------------

LYING_AVI = """
import json, sys
from qwen3_vl_rag.media import MediaBudget, load_video
video = load_video({path!r}, segment_seconds=1.0, budget=MediaBudget(max_clips=5))
print(json.dumps({{"clips": len(list(video)), "frames": video.header.frames,
                   "warnings": video.warnings}}))
"""


def test_a_video_header_claiming_four_billion_frames_is_cut_to_max_clips(tmp_path: Path) -> None:
    path = lying_avi(tmp_path / "lie.avi")
    assert path.stat().st_size < 20_000
    done = run_bounded(LYING_AVI.format(path=str(path)), seconds=60, address_space_mib=3072)
    assert not done.timed_out and done.returncode == 0, done.stderr[-2000:]
    result = done.json()
    assert isinstance(result, dict)
    assert result["clips"] == 5 and result["frames"] == 4_294_967_295
    assert result["warnings"] == ["only the first 5 of 1073741823 clips were kept (max_clips)"]
    assert done.peak_rss_mib is not None and done.peak_rss_mib < 600


# -- item 4: image headers are parsed once, in the worker, under the time budget -------------------


def test_image_headers_are_parsed_once_in_the_worker(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    Image.new("RGB", (40, 30)).save(root / "a.png")
    Image.new("RGB", (30, 40)).save(root / "b.jpg", "JPEG")
    with WorkerPool(workers=1, timeout=60) as pool:
        runner = RecordingRunner(pool)
        with scan_folder(root, MediaOptions(runner=runner)) as scan:
            items = list(scan)
            assert runner.steps == [("read_header", "a.png"), ("read_header", "b.jpg")]
            assert [item.load_image().size for item in items] == [(40, 30), (30, 40)]
    assert runner.steps[2:] == [("decode", "a.png"), ("decode", "b.jpg")]


def test_a_tiff_whose_pages_take_minutes_to_count_is_stopped_at_the_time_budget(
    tmp_path: Path,
) -> None:
    root = tmp_path / "scans"
    root.mkdir()
    many_page_tiff(root / "pages.tif", 25_000)  # 2.6 MB; counting its pages takes ~30 s
    options = MediaOptions(budget=MediaBudget(timeout=3.0))
    started = time.monotonic()
    with scan_folder(root, options, workers=1) as scan:
        assert list(scan) == []
    assert time.monotonic() - started < 25
    failed = scan.report.files[0]
    assert (failed.status, failed.stage, failed.error) == ("failed", "open", "DecodeTimeoutError")


# -- item 5: one pixel budget, from the header, for every entry point ------------------------------

TALL_PNG = """
import json
from pathlib import Path
from qwen3_vl_rag.media.images import load_image
try:
    load_image(Path({path!r}))
    print(json.dumps({{"error": None}}))
except Exception as exc:
    print(json.dumps({{"error": type(exc).__name__, "message": str(exc)}}))
"""


def test_a_one_pixel_wide_strip_is_refused_from_its_header(tmp_path: Path) -> None:
    path = grey_png(tmp_path / "strip.png", 1, 60_000_000)
    assert path.stat().st_size < 400_000
    done = run_bounded(TALL_PNG.format(path=str(path)), seconds=60, address_space_mib=2048)
    assert not done.timed_out, done.stderr[-2000:]
    assert done.json() == {
        "error": "UnsupportedInputError",
        "message": f"{path}: aspect ratio 60000000:1 of a 1x60000000 image exceeds 200:1. "
        "Crop or split the image (e.g. a long screenshot into pages).",
    }
    assert done.seconds < 30
    assert done.peak_rss_mib is not None and done.peak_rss_mib < 400


ENGINE_QUERY_IMAGE = """
import json
from pathlib import Path
from qwen3_vl_rag.engine._vision import VisionSettings, decode_image, plan_image
path = Path({path!r})
found = []
for call in (lambda: plan_image(path, VisionSettings()), lambda: decode_image(path),
             lambda: decode_image(path.read_bytes())):
    try:
        call()
        found.append(None)
    except Exception as exc:
        found.append(type(exc).__name__ + ": " + getattr(exc, "reason", str(exc)))
print(json.dumps(found))
"""


def test_the_engine_refuses_an_image_over_the_pixel_budget_before_decoding(
    tmp_path: Path,
) -> None:
    path = grey_png(tmp_path / "huge.png", 13_000, 13_000)  # 169 Mpx: only a warning for Pillow
    with pytest.raises(InputTooLargeError, match="169 megapixels"):
        load_image(path)  # media.load refuses it...
    done = run_bounded(ENGINE_QUERY_IMAGE.format(path=str(path)), seconds=60)
    assert not done.timed_out, done.stderr[-2000:]
    reason = (
        "InputTooLargeError: 13000x13000 is 169 megapixels once decoded, over the budget of 64."
    )
    assert done.json() == [reason, reason, reason]  # ...and so does the engine, from the header
    assert done.peak_rss_mib is not None and done.peak_rss_mib < 500


def test_the_engine_takes_a_normal_image_file_and_refuses_a_fifo(tmp_path: Path) -> None:
    from qwen3_vl_rag.engine._vision import VisionSettings, decode_image, plan_image

    path = tmp_path / "ok.png"
    Image.new("RGB", (64, 48), (1, 2, 3)).save(path)
    assert plan_image(path, VisionSettings()).width == 64
    assert decode_image(path).getpixel((0, 0)) == (1, 2, 3)
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageDecodeError, match="not a regular file"):
        plan_image(fifo, VisionSettings())


@pytest.mark.parametrize("form", ["path", "bytes", "data URI"])
def test_the_engine_reads_only_the_formats_media_load_reads(tmp_path: Path, form: str) -> None:
    import base64
    import io

    from qwen3_vl_rag.engine._vision import VisionSettings, plan_image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (9, 9, 9)).save(buffer, format="TGA")  # Pillow reads TGA
    path = tmp_path / "picture.tga"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(UnsupportedInputError):
        load_image(path)  # media.load refuses it...
    source: object = {
        "path": path,
        "bytes": buffer.getvalue(),
        "data URI": "data:image/x-tga;base64," + base64.b64encode(buffer.getvalue()).decode(),
    }[form]
    with pytest.raises(ImageDecodeError, match="readable image in a supported format"):
        plan_image(source, VisionSettings())  # ...and the engine does not decode it either


# -- item 15: size before hashing (see the integration tests), and a stage for every video failure -


def test_video_failures_carry_their_stage(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(200))
    with pytest.raises(VideoDecodeError) as probing:
        probe(junk)
    assert probing.value.stage == "probe"

    short = lying_avi(tmp_path / "short.avi")  # 4 frames, a header that claims billions
    video = load_video(short)
    with pytest.raises(VideoDecodeError, match="could be decoded") as decoding:
        video.reader.read(short, [0, 100], "short.avi")
    assert decoding.value.stage == "decode"


def test_a_folder_reports_video_failures_with_their_stage(tmp_path: Path) -> None:
    root = tmp_path / "videos"
    root.mkdir()
    (root / "junk.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(200))
    with scan_folder(root, workers=1) as scan:
        assert list(scan) == []
    failed = scan.report.files[0]
    assert (failed.status, failed.stage, failed.error) == ("failed", "probe", "VideoDecodeError")


def test_a_reopened_file_must_be_the_one_that_was_checked(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.new("RGB", (40, 30)).save(path)
    item = load_image(path)
    replacement = tmp_path / "b.png"
    Image.new("RGB", (40, 30), (9, 9, 9)).save(replacement)
    os.replace(replacement, path)  # same size, another file
    with pytest.raises(ImageDecodeError, match="changed since it was read"):
        item.load_image()
