"""The dtype an index's vectors were computed in, and what a query in another one means.

Vectors computed in bfloat16 and in float32 by the same model differ a little (cosine to each
other about 0.9999; README "Precision"), so an index keeps searching across the two, but says so:
a score near a threshold may land on the other side of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qwen3_vl_rag.engine import Qwen3VLEmbedder

__all__ = ["COMPUTE_DTYPES", "compute_dtype", "precision_mismatch", "with_dtype"]

#: The manifest setting that lists the dtypes the stored vectors were computed in.
COMPUTE_DTYPES = "compute_dtypes"


def compute_dtype(embedder: Qwen3VLEmbedder) -> str | None:
    """``"float32"``, ``"bfloat16"``, ``"float16"``; ``None`` where it is not known.

    A served model computes in its server's ``--dtype``, which the client cannot see; an
    embedder of another kind (a test double, a wrapper) may not say.
    """
    dtype = getattr(embedder, "dtype", None)
    return None if dtype is None else str(dtype).removeprefix("torch.")


def with_dtype(recorded: Sequence[str], dtype: str | None) -> tuple[str, ...]:
    """``recorded`` with ``dtype`` added (when known), sorted and without repeats.

    Example:
        >>> with_dtype(("float32",), "bfloat16")
        ('bfloat16', 'float32')
        >>> with_dtype(("float32",), None)
        ('float32',)
    """
    known = set(recorded) if dtype is None else {*recorded, dtype}
    return tuple(sorted(known))


def precision_mismatch(recorded: Sequence[str], query_dtype: str | None) -> str | None:
    """A note when queries are embedded in another dtype than the stored vectors, else ``None``.

    Example:
        >>> precision_mismatch(("float32",), "float32") is None
        True
        >>> print(precision_mismatch(("float32",), "bfloat16"))  # doctest: +ELLIPSIS
        the index's vectors were computed in float32 and this query in bfloat16: ...
    """
    if not recorded or query_dtype is None or query_dtype in recorded:
        return None
    return (
        f"the index's vectors were computed in {' and '.join(recorded)} and this query in "
        f"{query_dtype}: scores may differ from a query in {recorded[0]} by about 0.001 and "
        f"close ranks may swap. For the index's own numbers load the embedder with "
        f"dtype={recorded[0]!r} (command line: --dtype {recorded[0]})."
    )
