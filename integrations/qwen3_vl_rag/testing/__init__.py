"""Test helpers: offline random-weight Qwen3-VL checkpoints (and, later, fake engines).

Example:
    >>> from qwen3_vl_rag.testing import build_tiny_checkpoint
    >>> path = build_tiny_checkpoint("/tmp/tiny-reranker", kind="reranker")
"""

from __future__ import annotations

from qwen3_vl_rag.testing.checkpoints import (
    PRESETS,
    CheckpointPreset,
    build_tiny_checkpoint,
    checkpoint_fingerprint,
)

__all__ = ["PRESETS", "CheckpointPreset", "build_tiny_checkpoint", "checkpoint_fingerprint"]
