"""The parity cases, written in the official reference's input format.

The golden generator feeds these dicts to the reference; the tests turn the same dicts into our
inputs. Paths come from :func:`fixtures.write_images` (regenerated losslessly per run) and the
committed MP4 clips.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fixtures


def embedding_cases(paths: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """One reference input dict per case name."""
    noise = fixtures.noise_image()
    return {
        "text": {"text": "What was the quarterly revenue growth?"},
        "text_instruction": {
            "text": "red bar chart",
            "instruction": "Retrieve images that match the query",
        },
        "text_instruction_punctuated": {"text": "cat", "instruction": "  Find the photo!  "},
        "pil_image": {"image": noise},
        "image_path": {"image": str(paths["chart"])},
        "rgba_image_path": {"image": str(paths["rgba"])},
        "small_image_upscaled": {"image": str(paths["small"])},
        "large_image_downscaled": {"image": str(paths["large"])},
        "text_image": {"text": "A bar chart", "image": str(paths["chart"])},
        "several_images": {"text": "compare these", "image": [noise, str(paths["chart"])]},
        "frames_video": {"video": fixtures.video_frames()},
        "frame_paths_video": {"video": [str(paths[f"frame_{i}"]) for i in range(4)]},
        "long_frames_video": {"video": fixtures.video_frames(70, 64, 48)},
        "mp4_video": {"video": str(fixtures.CLIP_MP4), "fps": 2.0, "max_frames": 8},
        "mp4_video_defaults": {"video": str(fixtures.CLIP_MP4)},
        "ntsc_mp4_video": {"video": str(fixtures.CLIP_NTSC_MP4), "fps": 3.0},
        "video_image_text": {
            "text": "a clip, a chart and words",
            "image": str(paths["chart"]),
            "video": fixtures.video_frames(4),
        },
        "empty": {},
        "empty_text": {"text": ""},
    }


def reranker_cases(paths: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """One reference ``process()`` input per case name."""
    noise = fixtures.noise_image()
    documents = [
        {"text": "Revenue grew 12% in Q3."},
        {"image": str(paths["chart"])},
        {"text": "bar chart", "image": noise},
        {"video": fixtures.video_frames()},
        {"video": str(fixtures.CLIP_MP4)},
        {},
    ]
    return {
        "text_query": {
            "instruction": "Retrieve relevant charts.",
            "query": {"text": "quarterly revenue chart"},
            "documents": documents,
            "fps": 2.0,
            "max_frames": 8,
        },
        "image_query": {
            "instruction": "Retrieve relevant charts.",
            "query": {"image": noise, "text": "like this"},
            "documents": documents[:3],
        },
        "default_instruction": {
            "query": {"text": "a yellow shape"},
            "documents": [{"text": "yellow circle"}, {"image": str(paths["rgba"])}],
        },
        "video_query": {
            "query": {"video": str(fixtures.CLIP_NTSC_MP4)},
            "documents": [{"text": "a moving green square"}, {"image": str(paths["small"])}],
        },
    }
