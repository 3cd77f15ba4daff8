"""The dtype an index's vectors were computed in, and what a query in another one means.

Vectors computed in bfloat16 and in float32 by the same model differ a little (cosine to each
other about 0.999 and up; README "Precision"), so an index keeps searching across the two, but
says so: a score near a threshold may land on the other side of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qwen3_vl_rag.engine import Qwen3VLEmbedder

__all__ = ["COMPUTE_DTYPES", "SERVED", "compute_dtype", "precision_mismatch", "with_dtype"]

#: The manifest setting that lists the dtypes the stored vectors were computed in.
COMPUTE_DTYPES = "compute_dtypes"
#: Recorded for vectors a vLLM server computed: its ``--dtype`` is not visible to the client.
SERVED = "server"


def compute_dtype(embedder: Qwen3VLEmbedder) -> str:
    """``"float32"``, ``"bfloat16"``, ``"float16"``, or ``"server"`` for a served model."""
    dtype = embedder.dtype
    return SERVED if dtype is None else str(dtype).removeprefix("torch.")


def with_dtype(recorded: Sequence[str], dtype: str) -> tuple[str, ...]:
    """``recorded`` with ``dtype`` added, sorted and without repeats.

    Example:
        >>> with_dtype(("float32",), "bfloat16")
        ('bfloat16', 'float32')
    """
    return tuple(sorted({*recorded, dtype}))


def precision_mismatch(recorded: Sequence[str], query_dtype: str) -> str | None:
    """A note when queries are embedded in another dtype than the stored vectors, else ``None``.

    Example:
        >>> precision_mismatch(("float32",), "float32") is None
        True
        >>> print(precision_mismatch(("float32",), "bfloat16"))  # doctest: +ELLIPSIS
        the index's vectors were computed in float32 and this query in bfloat16: ...
    """
    known = [dtype for dtype in recorded if dtype != SERVED]
    if not known or query_dtype == SERVED or query_dtype in known:
        return None
    return (
        f"the index's vectors were computed in {' and '.join(known)} and this query in "
        f"{query_dtype}: scores may differ from a query in {known[0]} by about 0.001 and close "
        f"ranks may swap. For the index's own numbers load the embedder with "
        f"dtype={known[0]!r} (command line: --dtype {known[0]})."
    )
