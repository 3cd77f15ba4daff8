"""Prompts encoded on many threads at once keep their vision placeholders.

A transformers fast tokenizer keeps ``split_special_tokens`` as state of its shared Rust
tokenizer: a call that splits special tokens (the reranker measures its query that way, the text
budget counts long texts that way) switches it for every thread until the next call switches it
back. A prompt tokenized in between lost its ``<|image_pad|>`` tokens, and the model then failed
on a pixel/token mismatch (seen in CI as "Video features and video tokens do not match, tokens:
0" under concurrent rerank calls).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from qwen3_vl_rag import MultimodalInput, Qwen3VLEmbedder, Qwen3VLReranker
from qwen3_vl_rag.engine._encoding import EncodedSequence, SequenceEncoder, plan_items

ROUNDS = 200
PAGE = Image.new("RGB", (64, 64), (200, 30, 30))


def _pad_counts(encoder: SequenceEncoder, sequences: list[EncodedSequence]) -> list[int]:
    return [int((s.input_ids == encoder.image_pad_id).sum()) for s in sequences]


def _on_threads(task: Callable[[int], list[int]]) -> list[list[int]]:
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(task, range(ROUNDS)))


def test_rerank_prompts_keep_their_image_tokens_on_concurrent_calls(
    reranker: Qwen3VLReranker,
) -> None:
    encoder = reranker.backbone.encoder
    query, document = plan_items(
        ["which chart?", MultimodalInput(text="a page", images=[PAGE])],
        reranker.backbone.loaded.vision,
    )
    expected = document.parts[0].num_tokens
    assert expected > 0

    def encode(_: int) -> list[int]:
        return _pad_counts(encoder, encoder.encode_pairs([(query, document)] * 4, "Judge.", 8192))

    assert _on_threads(encode) == [[expected] * 4] * ROUNDS


def test_embedding_prompts_keep_their_image_tokens_beside_long_texts(
    embedder: Qwen3VLEmbedder,
) -> None:
    encoder = embedder.backbone.encoder
    vision = embedder.backbone.loaded.vision
    # a text far over max_length is measured by the text budget, special tokens split
    long_text, page = plan_items(["revenue " * 2000, MultimodalInput(images=[PAGE])], vision)
    expected = page.parts[0].num_tokens

    def encode(round_: int) -> list[int]:
        if round_ % 2:
            encoder.encode_embeddings([long_text], ["Embed."], 256)
            return []
        return _pad_counts(encoder, encoder.encode_embeddings([page] * 4, ["Embed."] * 4, 8192))

    counts = _on_threads(encode)
    assert counts[::2] == [[expected] * 4] * (ROUNDS // 2)
