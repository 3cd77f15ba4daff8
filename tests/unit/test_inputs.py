"""Coercion of user items into MultimodalInput, and the refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qwen3_vl_rag import MultimodalInput, RemoteInputError, UnsupportedInputError, Video
from qwen3_vl_rag.inputs import as_multimodal_input


def test_str_is_always_text_even_if_it_looks_like_a_path() -> None:
    assert as_multimodal_input("photo.png") == MultimodalInput(text="photo.png")
    assert as_multimodal_input("https://example.com/a.png").text == "https://example.com/a.png"


def test_path_is_image_or_video_by_extension() -> None:
    image = as_multimodal_input(Path("scan.PNG"))
    assert image.images == (Path("scan.PNG"),)
    video = as_multimodal_input(Path("clip.MP4"))
    assert video.video == Video(Path("clip.MP4"))
    assert video.images == ()


def test_image_like_values_become_single_image_items() -> None:
    pil = Image.new("RGB", (4, 4))
    array = np.zeros((4, 4, 3), np.uint8)
    assert as_multimodal_input(pil).images == (pil,)
    assert as_multimodal_input(b"\x89PNG...").images == (b"\x89PNG...",)
    item = as_multimodal_input(array)
    assert item.images[0] is array


def test_single_image_is_wrapped_in_multimodal_input() -> None:
    assert MultimodalInput(images="a.png").images == ("a.png",)
    assert MultimodalInput(images=Path("a.png")).images == (Path("a.png"),)
    assert MultimodalInput(images=["a.png", "b.png"]).images == ("a.png", "b.png")


def test_reference_style_dicts_are_accepted() -> None:
    item = as_multimodal_input({"text": ["a", "b"], "image": "x.png", "instruction": "Find it"})
    assert item == MultimodalInput(text="ab", images=("x.png",), instruction="Find it")
    assert as_multimodal_input({"images": ["x.png", "y.png"]}).images == ("x.png", "y.png")
    assert as_multimodal_input({}).is_empty


def test_unknown_dict_keys_are_refused() -> None:
    with pytest.raises(UnsupportedInputError, match=r"unknown keys \['txt'\]"):
        as_multimodal_input({"txt": "oops"})


@pytest.mark.parametrize("value", [3, 2.5, None, object(), ["a", "b"]])
def test_unsupported_types_are_refused_with_a_hint(value: object) -> None:
    with pytest.raises(UnsupportedInputError, match="unsupported item type") as info:
        as_multimodal_input(value)
    assert "MultimodalInput" in str(info.value)


@pytest.mark.parametrize(
    "item",
    [
        MultimodalInput(images=["https://example.com/a.png"]),
        MultimodalInput(images=["HTTP://example.com/a.png"]),
        MultimodalInput(video="https://example.com/v.mp4"),
        MultimodalInput(video=["s3://bucket/frame.png"]),
        {"image": "http://169.254.169.254/latest/meta-data"},
    ],
)
def test_remote_urls_are_refused(item: object) -> None:
    with pytest.raises(RemoteInputError, match="remote fetching is not enabled"):
        as_multimodal_input(item)


def test_empty_item_and_empty_text_differ() -> None:
    assert MultimodalInput().is_empty
    assert not MultimodalInput(text="").is_empty


def test_video_validation() -> None:
    with pytest.raises(UnsupportedInputError, match="fps must be positive"):
        Video("a.mp4", fps=0)
    with pytest.raises(UnsupportedInputError, match="max_frames must be at least 2"):
        Video("a.mp4", max_frames=1)
    with pytest.raises(UnsupportedInputError, match="must be before end"):
        Video("a.mp4", start=5, end=2)
    assert Video("a.mp4").is_file
    assert not Video([Image.new("RGB", (2, 2))]).is_file


def test_frame_list_video_needs_frames() -> None:
    with pytest.raises(UnsupportedInputError, match="at least one frame"):
        as_multimodal_input(MultimodalInput(video=[]))


def test_text_and_instruction_types_are_checked() -> None:
    with pytest.raises(UnsupportedInputError, match="text must be a str"):
        MultimodalInput(text=5)  # type: ignore[arg-type]
    with pytest.raises(UnsupportedInputError, match="instruction must be a str"):
        MultimodalInput(text="a", instruction=["x"])  # type: ignore[arg-type]
