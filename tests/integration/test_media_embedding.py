"""Media items straight into the embedder: pages, images, GIFs as video, clips, folder scans.

Each item must embed exactly like the pixels it stands for, given to the embedder directly: the
media layer adds files, budgets and isolation, never a different input.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from PIL import Image, ImageSequence

from qwen3_vl_rag import ConfigurationError, MultimodalInput, Qwen3VLEmbedder, Video
from qwen3_vl_rag.media import (
    MediaBudget,
    MediaOptions,
    WorkerPool,
    load_image,
    load_pdf,
    load_video,
    scan_folder,
)
from qwen3_vl_rag.media.isolation import IN_PROCESS_RUNNER
from tests import media_files
from tests.conftest import write_mp4

T = TypeVar("T")
TOL = 1e-5


@pytest.fixture
def budget(embedder: Qwen3VLEmbedder) -> MediaBudget:
    # Small pages keep the tiny model fast; the embedder must not resize them again.
    return MediaBudget.matching(embedder, max_pixels=48 * 32 * 32)


class RecordingRunner:
    """Runs steps in a worker pool and records which thread asked for each step."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        self.calls: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def run(self, step: Any, *args: Any, label: str, stage: str, timeout: Any = None) -> Any:
        with self._lock:
            self.calls.append((stage, threading.get_ident()))
        return self.pool.run(step, *args, label=label, stage=stage, timeout=timeout)


def test_budget_matching_copies_the_embedders_vision_settings(embedder: Qwen3VLEmbedder) -> None:
    vision = embedder.vision
    budget = MediaBudget.matching(embedder, max_pages=7)
    assert (budget.max_pixels, budget.min_pixels, budget.max_frames) == (
        vision.max_pixels,
        vision.min_pixels,
        vision.max_frames,
    )
    assert budget.factor == vision.patch_size * vision.merge_size
    assert budget.max_pages == 7
    assert MediaBudget.matching(vision) == MediaBudget.matching(embedder)


def test_pdf_pages_embed_as_their_rendered_images(
    embedder: Qwen3VLEmbedder, budget: MediaBudget, tmp_path: Path
) -> None:
    pages = list(load_pdf(media_files.report_pdf(tmp_path / "r.pdf"), budget=budget))
    images = [page.load_image() for page in pages]
    for image in images:
        # rendered on the model's grid, inside the budget: the embedder uses it as it is
        assert image.width % budget.factor == 0
        assert image.height % budget.factor == 0
        assert image.width * image.height <= budget.max_pixels
    assert embedder.count_tokens(pages) == embedder.count_tokens(images)
    vectors = embedder.embed_documents(pages)
    np.testing.assert_allclose(vectors, embedder.embed_documents(images), atol=TOL)
    # the chart page is not the text-only pages
    assert float(vectors[0] @ vectors[1]) < float(vectors[0] @ vectors[2])


def test_page_text_is_added_only_on_request(
    embedder: Qwen3VLEmbedder, budget: MediaBudget, tmp_path: Path
) -> None:
    page = next(iter(load_pdf(media_files.report_pdf(tmp_path / "r.pdf", pages=1), budget=budget)))
    assert page.text
    assert "Quarterly report, page 1" in page.text
    with_text = embedder.embed([page.to_input(with_text=True)])
    expected = embedder.embed([MultimodalInput(text=page.text, images=[page.load_image()])])
    np.testing.assert_allclose(with_text, expected, atol=TOL)
    assert not np.allclose(with_text, embedder.embed([page]), atol=1e-3)


def test_pages_render_in_workers_while_the_embedder_decodes_in_threads(
    embedder: Qwen3VLEmbedder, budget: MediaBudget, tmp_path: Path
) -> None:
    path = media_files.report_pdf(tmp_path / "r.pdf", pages=6)
    expected = embedder.embed_documents(list(load_pdf(path, budget=budget)))
    with WorkerPool(workers=2, timeout=30) as pool:
        runner = RecordingRunner(pool)
        pages = list(load_pdf(path, budget=budget, runner=runner))
        vectors = embedder.embed_documents(pages)
    np.testing.assert_allclose(vectors, expected, atol=TOL)
    renders = [thread for stage, thread in runner.calls if stage == "render"]
    assert len(renders) == 6  # each page rendered once, in a worker
    assert threading.get_ident() not in renders  # asked for by the embedder's decoding threads


def test_a_page_rendered_after_its_pool_closed_is_a_clear_usage_error(
    embedder: Qwen3VLEmbedder, budget: MediaBudget, tmp_path: Path
) -> None:
    path = media_files.report_pdf(tmp_path / "r.pdf", pages=1)
    with WorkerPool(workers=1, timeout=30) as pool:
        pages = list(load_pdf(path, budget=budget, runner=pool))
    with pytest.raises(ConfigurationError, match=r"worker pool is closed.*inside the `with` block"):
        embedder.embed_documents(pages)


def test_images_embed_as_the_decoded_pixels(
    embedder: Qwen3VLEmbedder, budget: MediaBudget, tmp_path: Path
) -> None:
    rotated = media_files.exif_rotated_jpeg(tmp_path / "rot.jpg")
    rgba = media_files.rgba_png(tmp_path / "a.png")
    items = [load_image(rotated, budget=budget), load_image(rgba, budget=budget)]
    decoded = [item.load_image() for item in items]
    np.testing.assert_allclose(
        embedder.embed_documents(items), embedder.embed_documents(decoded), atol=TOL
    )


def test_an_animated_gif_embeds_as_a_video_of_its_frames(
    embedder: Qwen3VLEmbedder, budget: MediaBudget, tmp_path: Path
) -> None:
    path = media_files.animated_gif(tmp_path / "a.gif")
    item = load_image(path, budget=budget, frames="video")
    assert item.kind == "video"
    with Image.open(path) as gif:
        frames = [frame.convert("RGB") for frame in ImageSequence.Iterator(gif)]
    expected = embedder.embed([Video(frames, max_frames=budget.max_frames)])
    np.testing.assert_allclose(embedder.embed([item]), expected, atol=TOL)
    first = load_image(path, budget=budget)
    np.testing.assert_allclose(embedder.embed([first]), embedder.embed([frames[0]]), atol=TOL)


def test_clips_embed_like_the_same_stretch_given_directly(
    embedder: Qwen3VLEmbedder, budget: MediaBudget, tmp_path: Path
) -> None:
    path = write_mp4(tmp_path / "v.mp4", frames=36, fps=6)  # 6 s, red rising
    clips = list(load_video(path, fps=2.0, segment_seconds=2, budget=budget))
    assert [(c.metadata["start_seconds"], c.metadata["end_seconds"]) for c in clips] == [
        (0.0, 2.0),
        (2.0, 4.0),
        (4.0, 6.0),
    ]
    direct = [
        Video(path, fps=2.0, max_frames=budget.max_frames, start=start, end=end)
        for start, end in ((0.0, 2.0), (2.0, 4.0), (4.0, 6.0))
    ]
    vectors = embedder.embed_documents(clips)
    np.testing.assert_allclose(vectors, embedder.embed_documents(direct), atol=TOL)
    assert not np.allclose(vectors[0], vectors[2], atol=1e-3)  # the clips see different frames
    with WorkerPool(workers=2, timeout=30) as pool:
        isolated = list(load_video(path, fps=2.0, segment_seconds=2, budget=budget, runner=pool))
        np.testing.assert_allclose(embedder.embed_documents(isolated), vectors, atol=TOL)


def test_a_scanned_folder_embeds_every_item_it_reports(
    embedder: Qwen3VLEmbedder, budget: MediaBudget, tmp_path: Path
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    media_files.report_pdf(folder / "report.pdf", pages=2)
    Image.new("RGB", (120, 80), (20, 140, 220)).save(folder / "screen.png")
    write_mp4(folder / "clip.mp4", frames=12, fps=6)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with scan_folder(folder, MediaOptions(budget=budget, segment_seconds=1.0)) as scan:
        items = list(scan)
        vectors = embedder.embed_documents(items)
    counts = scan.report.counts()
    assert counts == {"loaded": 3, "skipped": 0, "failed": 1, "items": len(items)}
    assert [item.kind for item in items] == ["clip", "clip", "page", "page", "image"]
    assert vectors.shape == (5, embedder.dimension)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    (failed,) = scan.report.by_status("failed")
    assert failed.path.endswith("broken.png")
    assert failed.error == "ImageDecodeError"

    # the same items loaded in this process give the same vectors
    options = MediaOptions(budget=budget, segment_seconds=1.0, runner=IN_PROCESS_RUNNER)
    with scan_folder(folder, options) as plain:
        np.testing.assert_allclose(embedder.embed_documents(list(plain)), vectors, atol=TOL)
