"""Inputs at the edges, on the tiny checkpoints.

A long query leaves rerank documents their share; errors say the position and stage they have.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from qwen3_vl_rag import (
    Qwen3VLEmbedder,
    Qwen3VLReranker,
    UnsupportedInputError,
    Video,
    VideoDecodeError,
)
from qwen3_vl_rag.engine._encoding import plan_items
from qwen3_vl_rag.engine._shared import embed_in_chunks

MAX_LENGTH = 128
LONG_QUERY = "which quarter had the highest revenue growth " * 40  # ~280 tokens
DOCUMENTS = [
    "Cats sleep sixteen hours a day.",
    "Revenue grew 12% in the third quarter.",
    "A table of rainfall by month. " * 30,
]


@pytest.fixture(scope="module")
def limited(reranker: Qwen3VLReranker) -> Qwen3VLReranker:
    return Qwen3VLReranker(reranker.backbone, reranker.score_head, max_length=MAX_LENGTH)


def _fixed_tokens(limited: Qwen3VLReranker) -> int:
    """Tokens of a pair whose query and document are empty texts, less the answer suffix."""
    encoder = limited.backbone.encoder
    plans = plan_items(["", ""], limited.vision)
    (empty,) = encoder.encode_pairs([(plans[0], plans[1])], limited.instruction, MAX_LENGTH)
    return len(empty) - encoder.suffix_length


def test_a_long_query_no_longer_gives_every_document_the_same_score(
    limited: Qwen3VLReranker,
) -> None:
    with pytest.warns(UserWarning, match="Use a shorter query, or a larger max_length") as caught:
        scores = limited.score(LONG_QUERY, DOCUMENTS)
    assert len(caught) == 1  # once per call, not once per pair
    assert len(set(scores)) == len(DOCUMENTS), scores
    room = MAX_LENGTH - _fixed_tokens(limited)
    message = str(caught[0].message)
    assert f"cut to its first {room // 2} tokens" in message
    assert f"max_length={MAX_LENGTH}" in message


def test_each_document_keeps_at_least_half_of_the_room(limited: Qwen3VLReranker) -> None:
    encoder = limited.backbone.encoder
    tokenizer = limited.backbone.loaded.tokenizer
    query, *documents = plan_items([LONG_QUERY, *DOCUMENTS], limited.vision)
    with pytest.warns(UserWarning, match="shorter query"):
        sequences = encoder.encode_pairs(
            [(query, d) for d in documents], limited.instruction, MAX_LENGTH
        )
    room = MAX_LENGTH - _fixed_tokens(limited)
    for document, sequence in zip(DOCUMENTS, sequences, strict=True):
        assert len(sequence) <= MAX_LENGTH + encoder.suffix_length
        text = tokenizer.decode(sequence.input_ids.tolist())
        kept = text.split("<Document>:", 1)[1].split("<|im_end|>", 1)[0]
        whole = len(tokenizer(document, add_special_tokens=False)["input_ids"])
        kept_tokens = len(tokenizer(kept, add_special_tokens=False)["input_ids"])
        assert kept_tokens >= min(whole, room // 2) - 1, (document, kept)
        assert kept and document.startswith(kept.strip()[:20])


def test_a_query_within_its_half_is_left_as_it_is(limited: Qwen3VLReranker) -> None:
    query = "highest revenue growth " * 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = limited.score(query, DOCUMENTS)
    prompt = limited.format_prompt(query, DOCUMENTS[0])
    assert query in prompt
    assert len(set(scores)) == len(DOCUMENTS)


def test_score_pairs_cuts_each_long_query_and_says_how_many(limited: Qwen3VLReranker) -> None:
    pairs = [(LONG_QUERY, DOCUMENTS[0]), ("short", DOCUMENTS[1]), (LONG_QUERY + "!", DOCUMENTS[2])]
    with pytest.warns(UserWarning, match="2 queries of this call were cut"):
        scores = limited.score_pairs(pairs)
    assert len(scores) == 3


def test_a_query_error_keeps_its_stage_and_says_query(
    reranker: Qwen3VLReranker, tmp_path: Path
) -> None:
    missing = Video(tmp_path / "gone.mp4")  # refused while probing: stage "probe"
    with pytest.raises(VideoDecodeError) as as_document:
        reranker.score("q", ["a", missing])
    with pytest.raises(VideoDecodeError) as as_query:
        reranker.score(missing, ["a"])
    document_error, query_error = as_document.value, as_query.value
    assert (document_error.item_index, document_error.stage) == (1, "probe")
    assert (query_error.item_index, query_error.stage) == (None, "probe")
    assert query_error.source == document_error.source
    assert str(query_error) == f"{query_error.source}: the query: no such video file."


def test_an_item_of_a_later_chunk_is_named_by_its_position_in_the_whole_list(
    embedder: Qwen3VLEmbedder,
) -> None:
    items: list[object] = ["a", "b", "c", "d", "e", {1, 2}, "g"]
    with pytest.raises(UnsupportedInputError) as info:
        embed_in_chunks(
            embedder,
            items,
            query=False,
            instruction=None,
            dim=None,
            batch_tokens=None,
            chunk_size=4,
        )
    assert info.value.item_index == 5
    assert str(info.value).startswith("item 5: ")
