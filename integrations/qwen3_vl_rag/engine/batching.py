"""Token-budget batching: group sequences so each forward pass stays under a padded-token budget.

Sequences are sorted longest first, so padding waste is small and an out-of-memory error, if any,
shows up on the first batch. Callers get results back in input order.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["is_out_of_memory", "plan_batches"]


def plan_batches(lengths: Sequence[int], budget_tokens: int, max_items: int) -> list[list[int]]:
    """Split item positions into batches whose padded size ``items x longest`` fits the budget.

    An item longer than the budget gets a batch of its own.

    Args:
        lengths: Token count of each item.
        budget_tokens: Upper bound on ``len(batch) * max(lengths in batch)``.
        max_items: Upper bound on items per batch.

    Returns:
        Lists of positions into ``lengths``, longest items first.

    Example:
        >>> plan_batches([10, 300, 12, 280], budget_tokens=600, max_items=8)
        [[1, 3], [2, 0]]
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for position in order:
        # sorted longest first, so the batch's padded width is its first item's length
        width = lengths[current[0]] if current else lengths[position]
        if current and (len(current) >= max_items or (len(current) + 1) * width > budget_tokens):
            batches.append(current)
            current = []
        current.append(position)
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
