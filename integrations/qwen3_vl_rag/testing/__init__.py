"""Test helpers: offline random-weight checkpoints, a synthetic corpus, tiny models trained on it.

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
from qwen3_vl_rag.testing.trained import (
    SYNTHETIC_MAX_PIXELS,
    SYNTHETIC_TRAINED_MARKER,
    build_trained_checkpoint,
    is_synthetic_trained_checkpoint,
)

__all__ = [
    "COLOURS",
    "PAGE_KINDS",
    "PRESETS",
    "RANDOM_WEIGHTS_MARKER",
    "SYNTHETIC_MAX_PIXELS",
    "SYNTHETIC_TRAINED_MARKER",
    "CheckpointPreset",
    "Colour",
    "PageKind",
    "SyntheticCorpus",
    "SyntheticPage",
    "SyntheticQuery",
    "build_tiny_checkpoint",
    "build_trained_checkpoint",
    "checkpoint_fingerprint",
    "is_random_test_checkpoint",
    "is_synthetic_trained_checkpoint",
    "make_synthetic_corpus",
]
