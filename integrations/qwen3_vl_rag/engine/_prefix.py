"""Find the token prefix that a group of sequences share, so the model computes it once.

Reranking a list of documents against one query repeats, in every pair, the judge system prompt,
the instruction and the query itself (with its image or video, whose vision encoding is the
costly part). Embedding many short texts repeats the system prompt. The shared prefix is run
once and its key/value cache reused for every sequence, which gives the same hidden states (the
later tokens attend to identical keys and values) for less compute.

A prefix is only usable when it never splits a vision block and only contains vision blocks of
parts that are literally the same for every sequence (the same planned image or video), since
their pixels are encoded once with the prefix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from qwen3_vl_rag.engine._encoding import EncodedSequence, VisionPart
from qwen3_vl_rag.engine._vision import ImagePlan

__all__ = ["shared_parts", "shared_prefix_length", "vision_blocks"]


def vision_blocks(part: VisionPart) -> int:
    """``<|vision_start|>`` blocks of a part: one per image, one per temporal group of a video."""
    return 1 if isinstance(part, ImagePlan) else part.grid[0]


def shared_parts(sequences: Sequence[EncodedSequence]) -> int:
    """How many leading vision parts are the very same object in every sequence."""
    count = 0
    for parts in zip(*(s.parts for s in sequences), strict=False):  # stops at the shortest
        if any(part is not parts[0] for part in parts[1:]):
            break
        count += 1
    return count


def shared_prefix_length(
    sequences: Sequence[EncodedSequence], *, vision_start_id: int, vision_end_id: int
) -> int:
    """Length of the longest token prefix that every sequence has and that can be run once.

    Every sequence keeps at least its last token (the one whose hidden state is wanted) out of it.
    """
    if len(sequences) < 2:
        return 0
    first = sequences[0].input_ids
    limit = min(len(s) for s in sequences) - 1
    for sequence in sequences[1:]:
        if limit <= 0:
            return 0
        differ = np.flatnonzero(sequence.input_ids[:limit] != first[:limit])
        if differ.size:
            limit = int(differ[0])
    prefix = first[: max(limit, 0)]
    starts = np.flatnonzero(prefix == vision_start_id)
    allowed = sum(vision_blocks(p) for p in sequences[0].parts[: shared_parts(sequences)])
    if starts.size > allowed:  # a block of a part that differs between sequences: stop before it
        limit = int(starts[allowed])
        prefix, starts = prefix[:limit], starts[:allowed]
    ends = np.flatnonzero(prefix == vision_end_id)
    if starts.size > ends.size:  # never end inside a block
        limit = int(starts[-1])
    return max(limit, 0)
