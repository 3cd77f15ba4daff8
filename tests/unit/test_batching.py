"""Token-budget batch planning and out-of-memory detection."""

from __future__ import annotations

import random

import pytest
import torch

from qwen3_vl_rag.engine._batching import is_out_of_memory, plan_batches


def test_docstring_example() -> None:
    assert plan_batches([10, 300, 12, 280], budget_tokens=600, max_items=8) == [[1, 3], [2, 0]]


@pytest.mark.parametrize("seed", range(5))
def test_every_item_once_budget_respected_longest_first(seed: int) -> None:
    rnd = random.Random(seed)
    lengths = [rnd.choice([5, 20, 80, 400, 2000, 9000]) + rnd.randint(0, 9) for _ in range(200)]
    budget, max_items = 4096, 16
    batches = plan_batches(lengths, budget, max_items)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(len(lengths)))
    widths = [max(lengths[i] for i in batch) for batch in batches]
    assert widths == sorted(widths, reverse=True)
    for batch in batches:
        width = max(lengths[i] for i in batch)
        assert len(batch) <= max_items
        assert len(batch) == 1 or len(batch) * width <= budget


def test_item_over_budget_gets_its_own_batch() -> None:
    assert plan_batches([50, 10_000, 40], budget_tokens=1000, max_items=8) == [[1], [0, 2]]


def test_equal_lengths_keep_input_order_within_batches() -> None:
    assert plan_batches([7] * 5, budget_tokens=1000, max_items=2) == [[0, 1], [2, 3], [4]]


def test_empty() -> None:
    assert plan_batches([], budget_tokens=100, max_items=4) == []


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
        (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1"), True),
        (RuntimeError("MPS backend out of memory"), True),
        (MemoryError(), True),
        (RuntimeError("shape mismatch"), False),
        (ValueError("out of memory"), False),
    ],
)
def test_is_out_of_memory(exc: BaseException, expected: bool) -> None:
    assert is_out_of_memory(exc) is expected


def test_padding_cap_splits_uneven_neighbours() -> None:
    lengths = [100, 96, 60, 58, 57, 20]
    assert plan_batches(lengths, 10_000, 8, max_padding=0.1) == [[0, 1], [2, 3, 4], [5]]
    assert plan_batches(lengths, 10_000, 8) == [[0, 1, 2, 3, 4, 5]]


@pytest.mark.parametrize("seed", range(3))
def test_padding_cap_is_respected(seed: int) -> None:
    rnd = random.Random(seed)
    lengths = [rnd.randint(5, 3000) for _ in range(300)]
    for batch in plan_batches(lengths, 8192, 64, max_padding=0.2):
        width = max(lengths[i] for i in batch)
        padded = len(batch) * width
        assert len(batch) == 1 or 1 - sum(lengths[i] for i in batch) / padded <= 0.2
