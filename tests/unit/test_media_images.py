"""Images and screenshots: formats, budgets, orientation and colours."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qwen3_vl_rag import ImageDecodeError, InputTooLargeError, UnsupportedInputError
from qwen3_vl_rag.media import MediaBudget, load_image
from qwen3_vl_rag.media.images import read_header
from tests import media_files


def pixels(item: object) -> np.ndarray:
    return np.asarray(item.load_image())  # type: ignore[attr-defined]


def test_png_item_metadata_and_lazy_decoding(tmp_path: Path) -> None:
    path = tmp_path / "screen.png"
    Image.new("RGB", (320, 200), (10, 20, 30)).save(path)
    item = load_image(path)
    assert item.kind == "image"
    assert item.image is not None and item.image.size == (320, 200)
    assert dict(item.metadata) == {
        "source": str(path),
        "file_type": "png",
        "image_width": 320,
        "image_height": 200,
        "original_width": 320,
        "original_height": 200,
        "frames": 1,
    }
    assert pixels(item)[0, 0].tolist() == [10, 20, 30]


@pytest.mark.parametrize("format_", ["JPEG", "WEBP", "BMP", "TIFF", "GIF"])
def test_allowed_formats_decode(tmp_path: Path, format_: str) -> None:
    path = tmp_path / f"image.{format_.lower()}"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(path, format=format_)
    item = load_image(path)
    assert item.metadata["file_type"] == format_.lower()
    assert abs(int(pixels(item)[24, 32, 0]) - 200) <= 10


def test_other_formats_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "icon.png"  # the name lies; the content is an ICO
    Image.new("RGB", (32, 32)).save(path, format="ICO")
    with pytest.raises(UnsupportedInputError, match="not an image in a supported format"):
        load_image(path)
    with pytest.raises(UnsupportedInputError):
        load_image(b"definitely not an image")


def test_cmyk_is_converted_to_rgb(tmp_path: Path) -> None:
    array = pixels(load_image(media_files.cmyk_jpeg(tmp_path / "cmyk.jpg")))
    cyan, yellow = array[50, 25].astype(int), array[50, 175].astype(int)
    assert cyan[0] < 40 and cyan[1] > 215 and cyan[2] > 215
    assert yellow[0] > 215 and yellow[1] > 215 and yellow[2] < 40


def test_sixteen_bit_is_scaled_not_clipped(tmp_path: Path) -> None:
    path = media_files.sixteen_bit_png(tmp_path / "deep.png")
    assert Image.open(path).mode.startswith("I")
    array = pixels(load_image(path))
    assert abs(float(array.mean()) - 127.5) < 1.0  # clipping would give ~254
    assert array[:, 0].max() == 0 and array[:, -1].min() == 255


def test_alpha_is_composited_on_white(tmp_path: Path) -> None:
    array = pixels(load_image(media_files.rgba_png(tmp_path / "alpha.png")))
    assert array[25, 10].tolist() == [255, 255, 255]  # transparent: white, not the hidden red
    assert array[25, 90].tolist() == [0, 0, 255]


def test_palette_with_transparency_is_composited_on_white(tmp_path: Path) -> None:
    path = tmp_path / "palette.png"
    image = Image.new("P", (10, 10), 1)
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    image.info["transparency"] = 1
    image.save(path, transparency=1)
    assert pixels(load_image(path))[5, 5].tolist() == [255, 255, 255]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    item = load_image(media_files.exif_rotated_jpeg(tmp_path / "rotated.jpg"))
    assert item.image is not None and item.image.size == (600, 800)
    assert (item.metadata["original_width"], item.metadata["original_height"]) == (800, 600)
    array = pixels(item)
    assert array.shape == (800, 600, 3)
    assert array[40, 560, 0] > 200 and array[40, 560, 1] < 60  # the marker is now top-right
    assert array[40, 40].min() > 200


def test_animated_gif_first_frame_or_frames_as_video(tmp_path: Path) -> None:
    path = media_files.animated_gif(tmp_path / "anim.gif")
    first = load_image(path)
    assert first.kind == "image" and first.metadata["frames"] == 5
    assert pixels(first)[10, 10].tolist() == [255, 0, 0]
    video = load_image(path, frames="video")
    assert video.kind == "video" and video.video is not None
    frames = list(video.video.source)  # type: ignore[arg-type]
    assert len(frames) == 5
    assert np.asarray(frames[2].load())[10, 10].tolist() == [0, 0, 255]
    capped = load_image(path, frames="video", budget=MediaBudget(max_frames=2))
    assert [f.description for f in capped.video.source] == [  # type: ignore[union-attr]
        f"{path}, frame 0",
        f"{path}, frame 4",
    ]


def test_bytes_input_and_byte_budget(tmp_path: Path) -> None:
    data = media_files.png_bytes(Image.new("RGB", (40, 30), "green"))
    item = load_image(data)
    assert item.source == f"<{len(data)} bytes>"
    assert pixels(item)[0, 0].tolist() == [0, 128, 0]
    with pytest.raises(InputTooLargeError, match="over the budget"):
        load_image(data, budget=MediaBudget(max_bytes=10))


def test_header_that_lies_fails_at_decode(tmp_path: Path) -> None:
    item = load_image(media_files.lying_png(600, 400))  # the header is fine and small enough
    with pytest.raises(ImageDecodeError, match="could not be decoded") as info:
        item.load_image()
    assert info.value.stage == "decode"


def test_large_jpeg_is_decoded_at_reduced_size(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (6000, 4000), (90, 120, 150)).save(path, quality=80)
    header = read_header(path, MediaBudget(), str(path))
    # the model uses 1664x1088 (1.8 MP); decoding keeps the JPEG scale that is not smaller (1/2)
    assert (header.decoded_width, header.decoded_height) == (3000, 2000)
    item = load_image(path)
    assert item.image is not None and item.image.size == (3000, 2000)
    assert pixels(item).shape == (2000, 3000, 3)


def test_a_file_changed_after_planning_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "changing.png"
    Image.new("RGB", (64, 64)).save(path)
    item = load_image(path)
    Image.new("RGB", (32, 32)).save(path)
    with pytest.raises(ImageDecodeError, match="changed since it was read"):
        item.load_image()


def _child_peak(code: str) -> tuple[str, float, float]:
    """Run ``code`` in a fresh interpreter: its output, peak RSS growth (MiB) and seconds."""
    script = (
        "import resource, sys, time\n"
        "import qwen3_vl_rag.media, PIL.Image, numpy\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "started = time.perf_counter()\n"
        f"{code}\n"
        "print('SECONDS', time.perf_counter() - started)\n"
        "print('PEAK', (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    lines = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    return out, float(lines["PEAK"]), float(lines["SECONDS"])


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    path = media_files.bomb_png(tmp_path / "bomb.png", side=10_000)
    assert path.stat().st_size < 100_000  # 100 megapixels in a small file: under Pillow's limit
    started = time.perf_counter()
    with pytest.raises(InputTooLargeError, match="100 megapixels once decoded, over the budget"):
        load_image(path)
    assert time.perf_counter() - started < 2.0
    out, peak, seconds = _child_peak(
        "from pathlib import Path\n"
        "from qwen3_vl_rag.media import load_image\n"
        "from qwen3_vl_rag import InputTooLargeError\n"
        "try:\n"
        f"    load_image(Path({str(path)!r}))\n"
        "except InputTooLargeError:\n"
        "    print('REFUSED yes')\n"
    )
    assert "REFUSED yes" in out
    assert peak < 30, f"peak RSS grew {peak:.0f} MiB"  # decoding would take 100 MB at least
    assert seconds < 2.0


def test_pillows_own_bomb_limit_becomes_a_typed_error(tmp_path: Path) -> None:
    path = media_files.bomb_png(tmp_path / "huge.png", side=14_000)  # 196 MP: Pillow refuses
    with pytest.raises(InputTooLargeError, match="refused as a decompression bomb"):
        load_image(path, budget=MediaBudget(max_image_pixels=10**9))


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(40), ImageDecodeError, "starts like a PNG but its header"),
        (b"\xff\xd8\xff" + bytes(30), ImageDecodeError, "starts like a JPEG but its header"),
        (b"plain text, not an image", UnsupportedInputError, "not an image in a supported"),
    ],
)
def test_a_corrupt_header_is_told_apart_from_an_unknown_format(
    tmp_path: Path, data: bytes, error: type[Exception], message: str
) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(data)
    for source in (path, data):
        with pytest.raises(error, match=message) as info:
            load_image(source)
        assert info.value.stage == "open"  # type: ignore[attr-defined]
