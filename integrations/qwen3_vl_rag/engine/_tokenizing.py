"""Tokenizer calls serialized per tokenizer: a fast tokenizer's call changes shared state.

transformers sets ``split_special_tokens`` (and truncation and padding) on the shared Rust
tokenizer at the start of each call and reads it during encoding. Two threads tokenizing at once
with different settings, such as a rerank call measuring its query with special tokens split
while another call tokenizes a prompt full of ``<|image_pad|>``, can each encode with the other's
setting: the prompt then loses its vision placeholders. Tokenizing is cheap next to a forward
pass, so every call of the engine goes through :func:`tokenize`, one at a time per tokenizer.
"""

from __future__ import annotations

from typing import Any

from qwen3_vl_rag.engine._shared import object_lock

__all__ = ["tokenize"]


def tokenize(tokenizer: Any, text: Any, **kwargs: Any) -> Any:
    """``tokenizer(text, **kwargs)``, never at the same time as another call of this tokenizer.

    Example:
        >>> class Words:  # any callable tokenizer
        ...     def __call__(self, text, **kwargs):
        ...         return {"input_ids": [len(word) for word in text.split()]}
        >>> tokenize(Words(), "one three")["input_ids"]
        [3, 5]
    """
    with object_lock(tokenizer):
        return tokenizer(text, **kwargs)
