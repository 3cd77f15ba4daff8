"""Parity with the official Qwen3-VL-Embedding / Qwen3-VL-Reranker implementation.

The golden file holds what the official code (transformers 4.57.3, qwen-vl-utils 0.0.14, decord)
produced on the same tiny checkpoints and inputs: the rendered prompt, the token ids, the patch
grids, a SHA-256 of the pixel tensors, the embeddings and the scores. See README.md here.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qwen3_vl_rag import MultimodalInput, Qwen3VLEmbedder, Qwen3VLReranker, Video
from qwen3_vl_rag.engine import _prompts as prompts
from qwen3_vl_rag.engine._encoding import plan_items
from qwen3_vl_rag.engine._vision import load_image_pixels, load_video_pixels, patchify
from qwen3_vl_rag.testing import checkpoint_fingerprint

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import cases  # noqa: E402
import fixtures  # noqa: E402

GOLDENS = json.loads((HERE / "goldens" / "reference_outputs.json").read_text())
TOLERANCE = 1e-5


def to_input(
    reference_item: dict[str, Any], fps: float | None = None, max_frames: int | None = None
) -> MultimodalInput:
    """The reference's dict format, as our typed input."""
    item = dict(reference_item)
    images = item.pop("image", None)
    if images is not None and not isinstance(images, list):
        images = [images]
    video = item.pop("video", None)
    fps = item.pop("fps", fps)
    max_frames = item.pop("max_frames", max_frames)
    if isinstance(video, str):
        video = Video(video, fps=fps, max_frames=max_frames)
    return MultimodalInput(
        text=item.pop("text", None),
        images=images or (),
        video=video,
        instruction=item.pop("instruction", None),
    )


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return fixtures.write_images(tmp_path_factory.mktemp("parity-media"))


def test_checkpoints_are_the_ones_the_goldens_were_made_with(
    tiny_embedding_path: Path, tiny_reranker_path: Path
) -> None:
    meta = GOLDENS["meta"]
    assert meta["transformers"] == "4.57.3"
    assert checkpoint_fingerprint(tiny_embedding_path) == meta["embedding_checkpoint_sha256"], (
        "the tiny embedding checkpoint changed; regenerate the goldens (tests/parity/README.md)"
    )
    assert checkpoint_fingerprint(tiny_reranker_path) == meta["reranker_checkpoint_sha256"]


def test_parity_runs_in_float32_the_official_default(
    embedder: Qwen3VLEmbedder, reranker: Qwen3VLReranker
) -> None:
    """The goldens are the official code's float32 numbers; ``dtype="auto"`` may be bf16."""
    assert str(embedder.dtype) == str(reranker.dtype) == "torch.float32"


EMBEDDING_CASES = sorted(GOLDENS["embedding"])


@pytest.mark.parametrize("name", EMBEDDING_CASES)
def test_embedding_matches_reference(
    name: str, embedder: Qwen3VLEmbedder, paths: dict[str, Path]
) -> None:
    golden = GOLDENS["embedding"][name]
    item = to_input(cases.embedding_cases(paths)[name])
    vision = embedder.backbone.loaded.vision

    # 1. the prompt, character by character
    assert embedder.format_prompt(item) == golden["prompt"]

    # 2. the token ids (placeholders expanded, video in the 4.57 layout)
    (plan,) = plan_items([item], vision)
    instruction = prompts.normalize_instruction(item.instruction, embedder.document_instruction)
    (sequence,) = embedder.backbone.encoder.encode_embeddings([plan], [instruction], 8192)
    assert list(sequence.input_ids) == golden["input_ids"]
    assert embedder.count_tokens([item]) == [len(golden["input_ids"])]

    # 3. the pixels, bit for bit
    if plan.images:
        assert [list(i.grid) for i in plan.images] == golden["image_grid_thw"]
        pixels = np.concatenate(
            [patchify(load_image_pixels(i), vision).numpy() for i in plan.images]
        )
        assert hashlib.sha256(pixels.tobytes()).hexdigest() == golden["pixel_values"]["sha256"]
    if plan.videos:
        assert [list(v.grid) for v in plan.videos] == golden["video_grid_thw"]
        pixels = np.concatenate(
            [patchify(load_video_pixels(v), vision).numpy() for v in plan.videos]
        )
        assert (
            hashlib.sha256(pixels.tobytes()).hexdigest() == golden["pixel_values_videos"]["sha256"]
        )

    # 4. the vector
    vector = embedder.embed([item])[0]
    np.testing.assert_allclose(vector, golden["embedding"], atol=TOLERANCE, rtol=0)


def test_all_embedding_cases_in_one_call_match_reference(
    embedder: Qwen3VLEmbedder, paths: dict[str, Path]
) -> None:
    """Batched (sorted, padded, several per forward) gives the same vectors as the reference."""
    items = {name: to_input(ref) for name, ref in cases.embedding_cases(paths).items()}
    vectors = embedder.embed(list(items.values()), batch_tokens=2048)
    for name, vector in zip(items, vectors, strict=True):
        np.testing.assert_allclose(
            vector, GOLDENS["embedding"][name]["embedding"], atol=TOLERANCE, rtol=0, err_msg=name
        )


def _reranker_request(request: dict[str, Any]) -> tuple[MultimodalInput, list[MultimodalInput]]:
    # the reference applies the request's fps/max_frames to every video file
    fps, max_frames = request.get("fps"), request.get("max_frames")
    query = to_input(request["query"], fps, max_frames)
    documents = [to_input(d, fps, max_frames) for d in request["documents"]]
    return query, documents


@pytest.mark.parametrize("name", sorted(GOLDENS["reranker"]))
def test_reranker_matches_reference(
    name: str, reranker: Qwen3VLReranker, paths: dict[str, Path]
) -> None:
    golden = GOLDENS["reranker"][name]
    request = cases.reranker_cases(paths)[name]
    query, documents = _reranker_request(request)
    instruction = request.get("instruction")
    vision = reranker.backbone.loaded.vision

    (query_plan,) = plan_items([query], vision)
    document_plans = plan_items(documents, vision)
    sequences = reranker.backbone.encoder.encode_pairs(
        [(query_plan, d) for d in document_plans],
        instruction or reranker.instruction,
        reranker.max_length,
    )
    for document, sequence, pair in zip(documents, sequences, golden["pairs"], strict=True):
        assert reranker.format_prompt(query, document, instruction=instruction) == pair["prompt"]
        assert list(sequence.input_ids) == pair["input_ids"]

    scores = reranker.score(query, documents, instruction=instruction)
    np.testing.assert_allclose(scores, golden["scores"], atol=TOLERANCE, rtol=0)
