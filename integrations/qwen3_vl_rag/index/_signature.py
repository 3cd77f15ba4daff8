"""The embedding signature: everything that changes a stored vector, and how two are compared.

A signature names the model (a Hub id, or the absolute path of a local folder) and records its
fingerprint (:func:`qwen3_vl_rag.model_identity.model_fingerprint`): what the model *is*. Two
signatures that both have a fingerprint describe the same model when the fingerprints agree,
wherever it lies and however its path was spelled. A signature recorded before fingerprints
existed is compared as it always was, by name (a local folder also matches itself under another
spelling of its path), and gains the fingerprint of the model that matches it the first time
the index is opened for writing; its item ids do not change (:func:`~.ids.signature_hash`
leaves the fingerprint out, since the name and revision already stand for the model there).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from qwen3_vl_rag.errors import ModelLoadError

if TYPE_CHECKING:
    from qwen3_vl_rag.engine import Qwen3VLEmbedder

__all__ = [
    "FINGERPRINT",
    "could_be_hub_id",
    "differences",
    "embedding_signature",
    "loadable_model",
    "mismatch_details",
    "recorded_name",
]

#: The signature's key for the model's fingerprint.
FINGERPRINT = "model_fingerprint"
# Where the model came from, not what it is: not compared when both sides have a fingerprint.
_PROVENANCE = frozenset({"model", "revision"})
_HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")


def embedding_signature(
    embedder: Qwen3VLEmbedder, dim: int | None, segment_seconds: float | None
) -> dict[str, Any]:
    """Everything that changes a stored vector: model, revision, dimension, budgets."""
    vision = embedder.vision
    loaded = embedder.backbone.loaded
    location = loaded.location
    signature = {
        "model": location.name if location is not None else embedder.model_id,
        "revision": getattr(loaded.config, "_commit_hash", None),
        "dimension": int(dim or embedder.dimension),
        "max_pixels": vision.max_pixels,
        "min_pixels": vision.min_pixels,
        "factor": vision.patch_size * vision.merge_size,
        "fps": vision.fps,
        "max_frames": vision.max_frames,
        "total_pixels": vision.total_pixels,
        "segment_seconds": segment_seconds,
        "instruction": embedder.document_instruction,
    }
    if location is not None:
        signature[FINGERPRINT] = location.fingerprint()
    return signature


def differences(recorded: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """The settings in which ``wanted`` differs from ``recorded``, sorted (none: the same)."""
    by_fingerprint = bool(recorded.get(FINGERPRINT)) and bool(wanted.get(FINGERPRINT))
    ignored = _PROVENANCE if by_fingerprint else {FINGERPRINT}
    changed = sorted(
        key
        for key in (set(recorded) | set(wanted)) - ignored
        if recorded.get(key) != wanted.get(key)
    )
    if "model" in changed and _same_folder(recorded.get("model"), wanted.get("model")):
        changed.remove("model")
    return changed


def mismatch_details(
    recorded: Mapping[str, Any], wanted: Mapping[str, Any], changed: list[str]
) -> str:
    """``changed`` settings as text: ``"dimension: index 64, given 32, ..."``."""
    parts = []
    for key in changed:
        if key == FINGERPRINT:
            parts.append(
                f"model: index {recorded.get('model')!r} (fingerprint "
                f"{str(recorded[key])[:12]}), given {wanted.get('model')!r} (fingerprint "
                f"{str(wanted[key])[:12]}), another checkpoint"
            )
        else:
            parts.append(f"{key}: index {recorded.get(key)!r}, given {wanted.get(key)!r}")
    return ", ".join(parts)


def recorded_name(model: str | os.PathLike[str]) -> str:
    """How to record a model given by name: a local folder as its absolute path, a Hub id as is."""
    name = os.fspath(model)
    return os.path.realpath(name) if os.path.isdir(name) else name


def could_be_hub_id(name: str) -> bool:
    """Whether ``name`` has the shape of a Hub id (``org/name``), so is not surely a path."""
    return bool(_HUB_ID.fullmatch(name)) and not name.startswith(".")


def loadable_model(name: str | None, *, local: bool, what: str, index: str) -> str | None:
    """A recorded model, to load it again; a clear error when its local folder is gone.

    Args:
        name: The recorded name (``None``: nothing recorded).
        local: Whether it was recorded as a local folder.
        what: What it is, for the message (``"embedding model"``, ``"reranker"``).
        index: The index directory, for the message.

    Raises:
        ModelLoadError: The local folder no longer exists (loading it would ask the Hub).
    """
    if not name or not local or os.path.isdir(name):
        return name
    option = "--model" if what == "embedding model" else "--reranker"
    raise ModelLoadError(
        f"the index {index} records its {what} as the local folder {name!r}, which does not "
        f"exist (moved or deleted, or the index was made from another working directory). "
        f"Give it again: `{option} PATH` on the command line, or pass the model you load from "
        "PATH to MultimodalIndex; the same checkpoint in any folder is accepted."
    )


def _same_folder(first: object, second: object) -> bool:
    """Whether two recorded names are the same existing local folder (spelled differently)."""
    if not isinstance(first, str) or not isinstance(second, str):
        return False
    try:
        return os.path.samefile(first, second) and os.path.isdir(first)
    except OSError:
        return False
