"""Matryoshka truncation and compact output precisions for embeddings (NumPy only).

Precisions:

====================  ===========  ==========================================================
precision             dtype        values
====================  ===========  ==========================================================
``float32``           float32      as computed
``float16``           float16      rounded to half precision
``int8``              int8         ``clip(round((x - low) / step) - 128, -128, 127)``
``uint8``             uint8        ``clip(round((x - low) / step), 0, 255)``
``binary``            int8         bits ``x > 0`` packed 8 per byte, minus 128
``ubinary``           uint8        bits ``x > 0`` packed 8 per byte
====================  ===========  ==========================================================

with ``step = (high - low) / 255`` per dimension. The integer precisions need a
:class:`QuantizationCalibration` that fixes ``low`` and ``high``: either measured on a
calibration set (:meth:`~QuantizationCalibration.from_embeddings`, recommended) or a fixed
symmetric range (:meth:`~QuantizationCalibration.symmetric`). Ranges are never taken from the
batch being encoded, which would make the same text quantize differently in different batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

import numpy as np

from qwen3_vl_rag.errors import ConfigurationError

__all__ = [
    "PRECISIONS",
    "Precision",
    "QuantizationCalibration",
    "check_dimension",
    "check_precision",
    "quantize_embeddings",
    "truncate_embeddings",
]

Precision = Literal["float32", "float16", "int8", "uint8", "binary", "ubinary"]
PRECISIONS: tuple[str, ...] = ("float32", "float16", "int8", "uint8", "binary", "ubinary")
MIN_DIMENSION = 32


@dataclass(frozen=True)
class QuantizationCalibration:
    """Per-dimension value ranges for ``int8``/``uint8`` output.

    Example:
        >>> from qwen3_vl_rag import Qwen3VLEmbedder
        >>> embedder = Qwen3VLEmbedder.from_pretrained("Qwen/Qwen3-VL-Embedding-2B")
        >>> sample = ["Revenue grew 12% in Q3.", "Open Settings, then Billing.", "A sunset."]
        >>> cal = QuantizationCalibration.from_embeddings(embedder.embed_documents(sample))
        >>> codes = embedder.embed_documents(["Invoices go out monthly."], precision="int8",
        ...                                  calibration=cal)
        >>> codes.dtype, codes.shape[0]
        (dtype('int8'), 1)
        >>> fixed = QuantizationCalibration.symmetric(0.2656)  # same range for every dimension
        >>> round(float(fixed.high[0]), 4), round(float(fixed.low[0]), 4)
        (0.2656, -0.2656)
    """

    low: np.ndarray
    high: np.ndarray

    def __post_init__(self) -> None:
        low = np.asarray(self.low, dtype=np.float32).reshape(-1)
        high = np.asarray(self.high, dtype=np.float32).reshape(-1)
        if low.shape != high.shape:
            raise ConfigurationError(f"low and high differ in shape: {low.shape} vs {high.shape}.")
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(high >= low)):
            raise ConfigurationError("calibration ranges must be finite with high >= low.")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    @classmethod
    def from_embeddings(cls, embeddings: np.ndarray) -> QuantizationCalibration:
        """Per-dimension min and max over a representative set of embeddings.

        Use embeddings made with the same ``dim`` and ``normalize`` settings as the ones you will
        quantize; a few thousand documents from your corpus are plenty.
        """
        array = np.asarray(embeddings, dtype=np.float32)
        if array.ndim != 2 or array.shape[0] < 2:
            raise ConfigurationError(
                "calibration needs a 2-D array of at least two embeddings, "
                f"got shape {array.shape}."
            )
        return cls(array.min(axis=0), array.max(axis=0))

    @classmethod
    def symmetric(cls, bound: float) -> QuantizationCalibration:
        """The fixed range ``[-bound, bound]`` for every dimension.

        The Qwen team reported learned int8 scales of 0.2656 (2B) and 0.2891 (8B) for full-size,
        normalised embeddings (QwenLM/Qwen3-VL-Embedding#40); treat them as starting points and
        prefer :meth:`from_embeddings` on your own data.
        """
        if not bound > 0:
            raise ConfigurationError(f"bound must be positive, got {bound!r}.")
        return cls(np.array([-bound], np.float32), np.array([bound], np.float32))

    def ranges_for(self, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """Low and high broadcast to ``dim`` dimensions."""
        if self.low.shape[0] == 1:
            return np.full(dim, self.low[0], np.float32), np.full(dim, self.high[0], np.float32)
        if self.low.shape[0] != dim:
            raise ConfigurationError(
                f"the calibration covers {self.low.shape[0]} dimensions but the embeddings have "
                f"{dim}; calibrate with embeddings of the same dim."
            )
        return self.low, self.high


def check_dimension(dim: int | None, full: int) -> None:
    """Raise unless ``dim`` is ``None`` or an int between 32 and ``full``."""
    if dim is None:
        return
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
        raise ConfigurationError(f"dim must be an int, got {type(dim).__name__}.")
    if not MIN_DIMENSION <= dim <= full:
        raise ConfigurationError(
            f"dim must be between {MIN_DIMENSION} and the model's {full}, got {dim}."
        )


def check_precision(precision: str, calibration: QuantizationCalibration | None) -> None:
    """Raise for an unknown precision, or an integer precision without a calibration."""
    if precision not in PRECISIONS:
        raise ConfigurationError(
            f"unknown precision {precision!r}; choose one of {list(PRECISIONS)}."
        )
    if precision in ("int8", "uint8") and calibration is None:
        raise ConfigurationError(
            f"precision={precision!r} needs a calibration: pass "
            "calibration=QuantizationCalibration.from_embeddings(sample) (recommended) or "
            "QuantizationCalibration.symmetric(bound). Ranges are never taken from the batch."
        )


def truncate_embeddings(embeddings: np.ndarray, dim: int | None, *, normalize: bool) -> np.ndarray:
    """Keep the first ``dim`` dimensions (Matryoshka) and optionally L2-normalise again.

    Raises:
        ConfigurationError: When ``dim`` is below 32 or above the embedding size.
    """
    check_dimension(dim, embeddings.shape[1])
    if dim is not None:
        embeddings = embeddings[:, :dim]
    if normalize:
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        embeddings = embeddings / np.maximum(norms, 1e-12)
    return np.ascontiguousarray(embeddings, dtype=np.float32)


def quantize_embeddings(
    embeddings: np.ndarray,
    precision: Precision | str,
    calibration: QuantizationCalibration | None = None,
) -> np.ndarray:
    """Convert float embeddings to ``precision`` (see the module docstring for the formulas).

    Raises:
        ConfigurationError: For an unknown precision, or an integer precision without calibration.
    """
    check_precision(precision, calibration)
    array = np.asarray(embeddings, dtype=np.float32)
    if precision == "float32":
        return array
    if precision == "float16":
        return array.astype(np.float16)
    if precision in ("binary", "ubinary"):
        packed = np.packbits(array > 0, axis=-1)
        return (packed.astype(np.int16) - 128).astype(np.int8) if precision == "binary" else packed
    # int8 / uint8: check_precision has ensured a calibration is present
    low, high = cast(QuantizationCalibration, calibration).ranges_for(array.shape[1])
    step = np.maximum((high - low) / 255.0, np.float32(1e-12))
    levels = np.rint((array - low) / step)
    if precision == "uint8":
        codes: np.ndarray = np.clip(levels, 0, 255).astype(np.uint8)
    else:
        codes = np.clip(levels - 128, -128, 127).astype(np.int8)
    return codes
