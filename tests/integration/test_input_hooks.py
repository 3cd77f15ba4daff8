"""Engine hooks for the media layer: lazy images and pluggable video readers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qwen3_vl_rag import ImageDecodeError, MultimodalInput, Qwen3VLEmbedder, Video
from qwen3_vl_rag.inputs import LazyImage
from qwen3_vl_rag.video_frames import VideoHeader, probe, read_frames
from tests.conftest import write_mp4

TOL = 1e-5


def test_lazy_image_is_planned_from_its_size_and_loaded_once(embedder: Qwen3VLEmbedder) -> None:
    image = Image.fromarray(np.random.RandomState(0).randint(0, 255, (96, 160, 3), np.uint8))
    calls: list[int] = []

    def load() -> Image.Image:
        calls.append(1)
        return image

    lazy = LazyImage(160, 96, load, "page 1")
    assert embedder.count_tokens([lazy]) == embedder.count_tokens([image])
    assert calls == []  # planning never loads
    vector = embedder.embed([lazy])
    assert len(calls) == 1
    np.testing.assert_allclose(vector, embedder.embed([image]), atol=TOL)
    mixed = embedder.embed([MultimodalInput(text="a page", images=[lazy])])
    assert mixed.shape == (1, embedder.dimension)


def test_lazy_image_of_the_wrong_size_is_a_typed_error(embedder: Qwen3VLEmbedder) -> None:
    lazy = LazyImage(64, 64, lambda: Image.new("RGB", (32, 32)), "page 9")
    with pytest.raises(ImageDecodeError, match=r"page 9.*expected RGB 64x64") as info:
        embedder.embed(["fine", lazy])
    assert info.value.item_index == 1


class CountingReader:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def probe(self, path: Path, label: str) -> VideoHeader:
        self.calls.append("probe")
        return probe(path, label)

    def read(self, path: Path, indices: Sequence[int], label: str) -> np.ndarray:
        self.calls.append("read")
        return read_frames(path, indices, label)


def test_video_reader_is_used_for_probe_and_frames(
    embedder: Qwen3VLEmbedder, tmp_path: Path
) -> None:
    clip = write_mp4(tmp_path / "c.mp4", frames=12, fps=6)
    reader = CountingReader()
    with_reader = embedder.embed([Video(clip, fps=2.0, reader=reader)])
    assert reader.calls == ["probe", "read"]
    np.testing.assert_allclose(with_reader, embedder.embed([Video(clip, fps=2.0)]), atol=TOL)
