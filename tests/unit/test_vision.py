"""Smart resize, image opening, video planning and patchify (no model weights)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from qwen3_vl_rag import ImageDecodeError, UnsupportedInputError, Video, VideoDecodeError
from qwen3_vl_rag.engine._vision import (
    VisionSettings,
    load_image_pixels,
    load_video_pixels,
    patchify,
    plan_image,
    plan_video,
    smart_resize,
)
from tests.conftest import write_mp4

SETTINGS = VisionSettings()


@pytest.mark.parametrize(
    ("height", "width", "expected"),
    [
        (224, 224, (224, 224)),  # already multiples of 32
        (240, 320, (256, 320)),  # 240 / 32 = 7.5 rounds half to even: 8 * 32
        (232, 320, (224, 320)),  # 7.25 rounds to 7
        # 32 x 32 < min_pixels: beta = sqrt(4096 / 1200); ceil(30b / 32) = 2, ceil(40b / 32) = 3
        (30, 40, (64, 96)),
        # 1216 x 2048 > max_pixels: beta = sqrt(2448000 / 1843200); floor(1200 / b / 32) = 32,
        # floor(2040 / b / 32) = 55
        (1200, 2040, (1024, 1760)),
        (10, 1000, (32, 992)),  # a thin strip keeps at least one factor
    ],
)
def test_smart_resize_known_values(height: int, width: int, expected: tuple[int, int]) -> None:
    assert smart_resize(height, width, 32, 4096, 1843200) == expected


@pytest.mark.parametrize("size", [(37, 53), (999, 7), (4000, 3000), (33, 65), (100, 100)])
def test_smart_resize_invariants(size: tuple[int, int]) -> None:
    height, width = size
    h, w = smart_resize(height, width, 32, 4096, 1843200)
    assert h % 32 == 0 and w % 32 == 0
    assert 4096 <= h * w <= 1843200


def test_extreme_aspect_ratio_is_refused() -> None:
    with pytest.raises(UnsupportedInputError, match="aspect ratio 250:1"):
        smart_resize(4, 1000, 32, 4096, 1843200)


def test_settings_are_validated() -> None:
    from qwen3_vl_rag import ConfigurationError

    with pytest.raises(ConfigurationError, match="min_pixels <= max_pixels"):
        VisionSettings(min_pixels=10_000, max_pixels=5_000)
    with pytest.raises(ConfigurationError, match="max_frames at least 2"):
        VisionSettings(max_frames=1)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_plan_reads_size_from_every_source_kind(tmp_path: Path) -> None:
    image = Image.new("RGB", (320, 240), "red")
    path = tmp_path / "a.png"
    image.save(path)
    data = png_bytes(image)
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    array = np.zeros((240, 320, 3), np.uint8)
    for source in (image, path, str(path), f"file://{path}", data, uri, array):
        plan = plan_image(source, SETTINGS)
        assert (plan.height, plan.width) == (240, 320)
        assert (plan.resized_height, plan.resized_width) == (256, 320)
        assert plan.grid == (1, 16, 20)
        assert plan.num_tokens == 80


def test_planning_does_not_decode_pixels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.png"
    Image.new("RGB", (64, 64)).save(path)
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded while planning"))
    assert plan_image(path, SETTINGS).num_tokens == 4


def test_rgba_is_composited_on_white() -> None:
    image = Image.new("RGBA", (64, 64), (255, 0, 0, 0))  # fully transparent red
    pixels = load_image_pixels(plan_image(image, SETTINGS))
    assert pixels.shape == (1, 3, 64, 64)
    assert pixels.dtype == torch.uint8
    assert int(pixels.min()) == 255  # white, not red


def test_missing_and_corrupt_images_raise_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match="no such image file"):
        plan_image(tmp_path / "missing.png", SETTINGS)
    (tmp_path / "noise.png").write_bytes(b"this is not an image at all")
    with pytest.raises(ImageDecodeError, match="not a readable image"):
        plan_image(tmp_path / "noise.png", SETTINGS)
    with pytest.raises(ImageDecodeError, match="not a readable image"):
        plan_image(b"\x00\x01garbage", SETTINGS)
    with pytest.raises(ImageDecodeError, match="not a regular file"):
        plan_image(tmp_path, SETTINGS)


def test_truncated_image_fails_at_decode_with_typed_error() -> None:
    data = png_bytes(
        Image.fromarray(np.random.RandomState(0).randint(0, 255, (64, 64, 3), np.uint8))
    )
    truncated = data[: len(data) // 2]
    plan = plan_image(truncated, SETTINGS)  # the header is intact
    with pytest.raises(ImageDecodeError, match="could not be decoded"):
        load_image_pixels(plan)


def test_data_uri_must_be_base64_image() -> None:
    with pytest.raises(UnsupportedInputError, match="base64"):
        plan_image("data:image/png,rawpayload", SETTINGS)
    with pytest.raises(UnsupportedInputError, match="image/"):
        plan_image("data:text/plain;base64,aGVsbG8=", SETTINGS)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((8, 8, 3), np.float32), "must be uint8"),
        (np.zeros((8, 8, 2), np.uint8), "HxW, HxWx3 or HxWx4"),
    ],
)
def test_bad_arrays_are_refused(array: np.ndarray, message: str) -> None:
    with pytest.raises(UnsupportedInputError, match=message):
        plan_image(array, SETTINGS)


def test_frame_list_video_plan_snaps_samples_and_pads() -> None:
    frames = [Image.new("RGB", (128, 96), (i, 0, 0)) for i in range(5)]
    plan = plan_video(Video(frames), SETTINGS)
    # 5 frames padded to 6 with the last one; each snapped to 128x128 (multiples of 64), then
    # scaled up to at least 128 tokens per frame: 384x384
    assert plan.num_frames == 6
    assert plan.frame_sources[5] is plan.frame_sources[4]
    assert (plan.resized_height, plan.resized_width) == (384, 384)
    assert plan.grid == (3, 24, 24)
    assert plan.timestamps == (0.25, 1.25, 2.25)  # as if sampled at 2 fps
    assert plan.num_tokens == 3 * 144


def test_frame_list_longer_than_max_frames_is_subsampled() -> None:
    frames = [Image.new("RGB", (64, 64), (i, 0, 0)) for i in range(10)]
    plan = plan_video(Video(frames, max_frames=4), SETTINGS)
    picked = [f.source for f in plan.frame_sources]
    # np.linspace(0, 9, 4, dtype=int) == [0, 3, 6, 9]
    assert picked == [frames[0], frames[3], frames[6], frames[9]]


def test_frames_of_different_sizes_are_refused() -> None:
    frames = [Image.new("RGB", (64, 64)), Image.new("RGB", (256, 64))]
    with pytest.raises(UnsupportedInputError, match="share one size"):
        plan_video(Video(frames), SETTINGS)


def test_video_file_plan_samples_like_the_reference(tmp_path: Path) -> None:
    path = write_mp4(tmp_path / "c.mp4", frames=12, fps=6)  # 2 s
    plan = plan_video(Video(path, fps=2.0), SETTINGS)
    # 12 frames / 6 fps * 2 fps = 4 frames, spread over [0, 11] and rounded
    assert plan.frame_indices == (0, 4, 7, 11)
    assert plan.fps == 6.0
    assert plan.timestamps == pytest.approx(((0 + 4 / 6) / 2, (7 / 6 + 11 / 6) / 2))
    default = plan_video(Video(path), SETTINGS)  # 1 fps would give 2, min_frames raises it to 4
    assert default.num_frames == 4
    clip = plan_video(Video(path, fps=6.0, start=0.5, end=1.5), SETTINGS)
    assert clip.frame_indices[0] == 3 and clip.frame_indices[-1] == 9


def test_video_file_pixels_are_the_sampled_frames(tmp_path: Path) -> None:
    path = write_mp4(tmp_path / "c.mp4", frames=12, fps=6, width=128, height=128)
    plan = plan_video(Video(path, fps=2.0), SETTINGS)
    pixels = load_video_pixels(plan)
    assert pixels.shape == (4, 3, plan.resized_height, plan.resized_width)
    assert pixels.dtype == torch.float32
    red = pixels[:, 0].mean(dim=(1, 2))
    np.testing.assert_allclose(red.numpy(), [0, 40, 70, 110], atol=4)  # frame i has red 10*i


def test_total_pixels_cap_applies_to_video_files(tmp_path: Path) -> None:
    path = write_mp4(tmp_path / "c.mp4", frames=12, fps=6, width=640, height=480)
    roomy = plan_video(Video(path, fps=6.0), SETTINGS)
    tight = plan_video(Video(path, fps=6.0), VisionSettings(total_pixels=12 * 160 * 128))
    assert roomy.resized_height * roomy.resized_width > tight.resized_height * tight.resized_width
    # the per-frame cap is total_pixels / frames * 2, but never below 1.05 x the per-frame minimum
    assert tight.resized_height * tight.resized_width <= max(12 * 160 * 128 / 12 * 2, 131072 * 1.05)


def test_unreadable_videos_raise_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(VideoDecodeError, match="no such video file"):
        plan_video(Video(tmp_path / "none.mp4"), SETTINGS)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 64 + b"not a video")
    with pytest.raises(VideoDecodeError, match="could not be read"):
        plan_video(Video(junk), SETTINGS)


@pytest.mark.parametrize(
    ("suffix", "message"), [(".mp4", "no video stream"), (".mkv", "could not be read")]
)
def test_zero_frame_video_raises(tmp_path: Path, suffix: str, message: str) -> None:
    import av

    path = tmp_path / f"empty{suffix}"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=6)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()  # header only, no frame
    with pytest.raises(VideoDecodeError, match=message):
        plan_video(Video(path), SETTINGS)


def test_one_frame_video_is_too_short(tmp_path: Path) -> None:
    path = write_mp4(tmp_path / "one.mp4", frames=1)
    with pytest.raises(VideoDecodeError, match="at least 2 are needed"):
        plan_video(Video(path), SETTINGS)


def test_truncated_video_fails_at_decode(tmp_path: Path) -> None:
    path = write_mp4(tmp_path / "c.mp4", frames=24, fps=6, width=128, height=128)
    data = path.read_bytes()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(data[: int(len(data) * 0.6)])
    try:
        plan = plan_video(Video(broken, fps=6.0), SETTINGS)
    except VideoDecodeError:
        return  # refused at planning: also a typed error
    with pytest.raises(VideoDecodeError):
        load_video_pixels(plan)


def test_patchify_layout_matches_a_direct_reading() -> None:
    settings = VisionSettings()
    frames = torch.arange(2 * 3 * 64 * 64, dtype=torch.float32).reshape(2, 3, 64, 64) % 256
    patches = patchify(frames, settings)
    assert patches.shape == (1 * 4 * 4, 3 * 2 * 16 * 16)
    normalised = (frames - 127.5) / 127.5
    # patch 0 is the top-left 16x16 of both frames; patch 1 its right neighbour within the
    # first 2x2 merge window; patch 2 the one below the first
    for index, (row, col) in {0: (0, 0), 1: (0, 16), 2: (16, 0), 4: (0, 32)}.items():
        expected = normalised[:, :, row : row + 16, col : col + 16].permute(1, 0, 2, 3).reshape(-1)
        torch.testing.assert_close(patches[index], expected)


def test_patchify_repeats_a_single_frame() -> None:
    frame = torch.full((1, 3, 32, 32), 255.0)
    patches = patchify(frame, SETTINGS)
    assert patches.shape == (4, 3 * 2 * 16 * 16)
    assert torch.all(patches == 1.0)
