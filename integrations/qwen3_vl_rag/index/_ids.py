"""Stable ids: the same bytes, place in the file and embedding settings give the same id.

An item's id hashes the embedding signature (model, revision, dimension, pixel and frame
budgets, instruction), the file's content hash and the item's locator (page, clip span). So
renaming a file changes nothing, re-indexing an unchanged folder embeds nothing, and any change
that would change a vector changes its id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from qwen3_vl_rag.index._signature import FINGERPRINT
from qwen3_vl_rag.media.items import MediaItem

__all__ = ["item_id", "item_locator", "locator_of", "signature_hash"]


def signature_hash(signature: Mapping[str, Any]) -> str:
    """A short, order-independent hash of the embedding signature.

    The model's fingerprint is left out: an index recorded before fingerprints gains one
    without changing its ids, and within an index the model's name already stands for it.
    """
    hashed = {key: value for key, value in signature.items() if key != FINGERPRINT}
    text = json.dumps(hashed, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def item_locator(item: MediaItem) -> str:
    """Where the item is in its file, in a form that never changes between runs."""
    return locator_of(item.kind, item.metadata)


def locator_of(kind: str, metadata: Mapping[str, Any]) -> str:
    """:func:`item_locator` from an item's kind and metadata (as the vector store keeps them).

    Raises:
        KeyError: A page without ``page``, a clip without its span.
    """
    if kind == "page":
        return f"page:{int(metadata['page'])}"
    if kind == "clip":
        return f"clip:{float(metadata['start_seconds']):.3f}-{float(metadata['end_seconds']):.3f}"
    return kind  # a whole image or video


def item_id(signature: str, file_hash: str, locator: str) -> str:
    """The item's id: 32 hex characters."""
    return hashlib.sha256(f"{signature}|{file_hash}|{locator}".encode()).hexdigest()[:32]
