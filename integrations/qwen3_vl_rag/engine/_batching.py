"""Token-budget batching: group sequences so each forward pass stays under a padded-token budget.

Sequences are sorted longest first, so padding waste is small and an out-of-memory error, if any,
shows up on the first batch. Callers get results back in input order.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["is_out_of_memory", "plan_batches"]


def plan_batches(
    lengths: Sequence[int], budget_tokens: int, max_items: int, max_padding: float = 1.0
) -> list[list[int]]:
    """Split item positions into batches whose padded size ``items x longest`` fits the budget.

    Items are taken longest first. A batch is closed when the next item would overflow the budget
    or the item cap, or would raise the share of padding tokens in the batch above
    ``max_padding``. An item longer than the budget gets a batch of its own.

    Args:
        lengths: Token count of each item.
        budget_tokens: Upper bound on ``len(batch) * max(lengths in batch)``.
        max_items: Upper bound on items per batch.
        max_padding: Upper bound on padding tokens / padded size (1.0: no bound).

    Returns:
        Lists of positions into ``lengths``, longest items first.

    Example:
        >>> plan_batches([10, 300, 12, 280], budget_tokens=600, max_items=8)
        [[1, 3], [2, 0]]
        >>> plan_batches([10, 300, 12, 280], budget_tokens=600, max_items=8, max_padding=0.05)
        [[1, 3], [2], [0]]
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    real = 0
    for position in order:
        length = lengths[position]
        if current:
            # sorted longest first, so the batch's padded width is its first item's length
            width = lengths[current[0]]
            size = (len(current) + 1) * width
            padding = 1 - (real + length) / size
            if len(current) >= max_items or size > budget_tokens or padding > max_padding:
                batches.append(current)
                current, real = [], 0
        current.append(position)
        real += length
    if current:
        batches.append(current)
    return batches


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether an exception is an accelerator or host out-of-memory error."""
    import torch

    oom_type = getattr(torch, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, RuntimeError):
        message = str(exc).lower()
        return "out of memory" in message or "can't allocate memory" in message
    return False
