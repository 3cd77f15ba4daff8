"""Test helpers: offline random-weight Qwen3-VL checkpoints (and, later, fake engines).

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

__all__ = [
    "PRESETS",
    "RANDOM_WEIGHTS_MARKER",
    "CheckpointPreset",
    "build_tiny_checkpoint",
    "checkpoint_fingerprint",
    "is_random_test_checkpoint",
]
