"""Test helpers: offline random-weight Qwen3-VL checkpoints, and a synthetic corpus to train on.

Example:
    >>> from qwen3_vl_rag.testing import build_tiny_checkpoint
    >>> path = build_tiny_checkpoint("/tmp/tiny-reranker", kind="reranker")
"""

from __future__ import annotations

from qwen3_vl_rag.testing.checkpoints import (
    PRESETS,
    RANDOM_WEIGHTS_MARKER,
    CheckpointPreset,
    build_tiny_checkpoint,
    checkpoint_fingerprint,
    is_random_test_checkpoint,
)
from qwen3_vl_rag.testing.synthetic import (
    COLOURS,
    PAGE_KINDS,
    Colour,
    PageKind,
    SyntheticCorpus,
    SyntheticPage,
    SyntheticQuery,
    make_synthetic_corpus,
)

__all__ = [
    "COLOURS",
    "PAGE_KINDS",
    "PRESETS",
    "RANDOM_WEIGHTS_MARKER",
    "CheckpointPreset",
    "Colour",
    "PageKind",
    "SyntheticCorpus",
    "SyntheticPage",
    "SyntheticQuery",
    "build_tiny_checkpoint",
    "checkpoint_fingerprint",
    "is_random_test_checkpoint",
    "make_synthetic_corpus",
]
