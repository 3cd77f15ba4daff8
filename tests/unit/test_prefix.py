"""The shared-prefix rule: never split a vision block, only share identical vision parts."""

from __future__ import annotations

import numpy as np

from qwen3_vl_rag.engine._encoding import EncodedSequence
from qwen3_vl_rag.engine._prefix import shared_parts, shared_prefix_length
from qwen3_vl_rag.engine._vision import ImagePlan

START, END, PAD = 90, 91, 92


def image(tokens: int = 2) -> ImagePlan:
    # a 32 x (32 * tokens) image: `tokens` merged tokens, one vision block
    return ImagePlan(object(), 32, 32 * tokens, 32, 32 * tokens, 16, 2)


def seq(ids: list[int], parts: tuple[ImagePlan, ...] = ()) -> EncodedSequence:
    return EncodedSequence(np.asarray(ids, dtype=np.int32), parts)


def length(*sequences: EncodedSequence) -> int:
    return shared_prefix_length(sequences, vision_start_id=START, vision_end_id=END)


def test_plain_common_prefix_keeps_one_own_token_per_sequence() -> None:
    assert length(seq([1, 2, 3, 4]), seq([1, 2, 3, 5])) == 3
    assert length(seq([1, 2, 3]), seq([1, 2, 3])) == 2  # identical: the last token stays out
    assert length(seq([1, 2, 3, 4, 5]), seq([1, 2])) == 1
    assert length(seq([7, 2]), seq([1, 2])) == 0
    assert length(seq([1, 2, 3])) == 0  # nothing to share with


def test_a_shared_image_may_be_inside_the_prefix() -> None:
    query = image()
    a = seq([1, START, PAD, PAD, END, 5, 6, 7], (query,))
    b = seq([1, START, PAD, PAD, END, 5, 8, 9], (query,))
    assert shared_parts([a, b]) == 1
    assert length(a, b) == 6


def test_equal_tokens_of_different_images_are_not_shared() -> None:
    # two documents whose images have the same token count: ids agree, pixels do not
    a = seq([1, 2, START, PAD, PAD, END, 3], (image(),))
    b = seq([1, 2, START, PAD, PAD, END, 4], (image(),))
    assert shared_parts([a, b]) == 0
    assert length(a, b) == 2  # stops before the first block


def test_the_prefix_never_ends_inside_a_block() -> None:
    shared = image(3)
    a = seq([1, START, PAD, PAD, PAD, END, 2], (shared,))
    b = seq([1, START, PAD, PAD, PAD, END, 3], (shared,))
    assert length(a, b) == 6
    # same image, but the rows diverge inside it (cannot happen with real plans; still safe)
    c = seq([1, START, PAD, PAD, 5, 6, END, 2], (shared,))
    assert length(a, c) == 1


def test_only_the_leading_shared_parts_count() -> None:
    query = image()
    a = seq([1, START, PAD, PAD, END, 9, START, PAD, PAD, END, 4], (query, image()))
    b = seq([1, START, PAD, PAD, END, 9, START, PAD, PAD, END, 5], (query, image()))
    assert shared_parts([a, b]) == 1
    assert length(a, b) == 6  # the query image and the 9, not the documents' images
