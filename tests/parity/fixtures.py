"""Deterministic media for the parity cases, shared by the golden generator and the tests.

Images are drawn with Pillow and written as PNG (lossless), so every environment decodes the same
pixels. The MP4 is lossy and its encoder can change with PyAV releases, so it is committed
(``fixtures/clip.mp4``) instead of being regenerated; :func:`write_clip_mp4` is how it was made.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).parent
CLIP_MP4 = HERE / "fixtures" / "clip.mp4"
CLIP_NTSC_MP4 = HERE / "fixtures" / "clip_ntsc.mp4"


def noise_image(width: int = 224, height: int = 224, seed: int = 0) -> Image.Image:
    rng = np.random.RandomState(seed)
    return Image.fromarray((rng.rand(height, width, 3) * 255).astype("uint8"))


def chart_image() -> Image.Image:
    image = Image.new("RGB", (320, 240), "white")
    draw = ImageDraw.Draw(image)
    for i, h in enumerate([40, 120, 80, 200]):
        draw.rectangle([30 + i * 70, 230 - h, 80 + i * 70, 230], fill=(200, 40 + 50 * i, 40))
    draw.line([20, 230, 310, 230], fill="black", width=2)
    return image


def rgba_image() -> Image.Image:
    image = Image.new("RGBA", (200, 150), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse([20, 20, 180, 130], fill=(30, 90, 200, 160))
    draw.rectangle([60, 50, 140, 100], fill=(250, 200, 0, 255))
    return image


def large_image() -> Image.Image:
    """2040 x 1200 (2.4 MP) gradient with shapes: above the default max_pixels, so downscaled."""
    x = np.linspace(0, 1, 2040, dtype=np.float32)[None, :]
    y = np.linspace(0, 1, 1200, dtype=np.float32)[:, None]
    rgb = np.stack([x * 255 + 0 * y, y * 255 + 0 * x, (1 - x) * (1 - y) * 255], axis=-1)
    image = Image.fromarray(rgb.astype("uint8"))
    draw = ImageDraw.Draw(image)
    for i in range(12):
        draw.rectangle(
            [100 + 150 * i, 300, 180 + 150 * i, 300 + 60 * (i % 5 + 1)], fill=(20 * i, 0, 90)
        )
    return image


def small_image() -> Image.Image:
    """40 x 30: below min_pixels, so it is upscaled."""
    image = Image.new("RGB", (40, 30), (10, 120, 60))
    ImageDraw.Draw(image).line([0, 0, 39, 29], fill="white", width=3)
    return image


def video_frames(count: int = 6, width: int = 128, height: int = 96) -> list[Image.Image]:
    frames = []
    for t in range(count):
        frame = Image.new("RGB", (width, height), ((20 * t) % 256, 60, 120))
        x = (10 + 15 * t) % max(width - 30, 1)
        ImageDraw.Draw(frame).ellipse([x, height // 3, x + 30, height // 3 + 30], fill="yellow")
        frames.append(frame)
    return frames


def write_images(root: Path) -> dict[str, Path]:
    """Write the path-based image fixtures as PNG files into ``root``; return their paths."""
    root.mkdir(parents=True, exist_ok=True)
    paths = {
        "chart": root / "chart.png",
        "rgba": root / "rgba.png",
        "large": root / "large.png",
        "small": root / "small.png",
    }
    chart_image().save(paths["chart"])
    rgba_image().save(paths["rgba"])
    large_image().save(paths["large"])
    small_image().save(paths["small"])
    frame_dir = root / "frames"
    frame_dir.mkdir(exist_ok=True)
    for i, frame in enumerate(video_frames(4, 96, 64)):
        path = frame_dir / f"frame_{i}.png"
        frame.save(path)
        paths[f"frame_{i}"] = path
    return paths


def write_clip_mp4(
    path: Path, frames: int = 16, fps: object = 4, width: int = 128, height: int = 96
) -> Path:
    """How the committed clips were made: H.264, a bar moving right over a rising red.

    ``clip.mp4`` is ``write_clip_mp4(path)``; ``clip_ntsc.mp4`` is
    ``write_clip_mp4(path, frames=45, fps=Fraction(30000, 1001), width=160, height=90)``.
    """
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18"}
        for i in range(frames):
            array = np.zeros((height, width, 3), np.uint8)
            array[..., 0] = (i * 15) % 256
            x = (5 + i * 7) % (width - 30)
            array[height // 3 : height // 3 + 30, x : x + 30, 1] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
