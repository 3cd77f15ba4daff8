"""Matryoshka truncation and output precisions."""

from __future__ import annotations

import numpy as np
import pytest

from qwen3_vl_rag import ConfigurationError, QuantizationCalibration, quantize_embeddings
from qwen3_vl_rag.engine._quantize import truncate_embeddings


@pytest.fixture
def vectors(rng: np.random.RandomState) -> np.ndarray:
    raw = rng.standard_normal((6, 64)).astype(np.float32)
    return raw / np.linalg.norm(raw, axis=1, keepdims=True)


def test_truncate_keeps_prefix_and_renormalises(vectors: np.ndarray) -> None:
    out = truncate_embeddings(vectors, 32, normalize=True)
    assert out.shape == (6, 32)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    expected = vectors[:, :32] / np.linalg.norm(vectors[:, :32], axis=1, keepdims=True)
    np.testing.assert_allclose(out, expected, atol=1e-7)
    raw = truncate_embeddings(vectors, 32, normalize=False)
    np.testing.assert_array_equal(raw, vectors[:, :32])


@pytest.mark.parametrize("dim", [31, 65, 0, -1])
def test_dim_out_of_range(vectors: np.ndarray, dim: int) -> None:
    with pytest.raises(ConfigurationError, match="between 32 and the model's 64"):
        truncate_embeddings(vectors, dim, normalize=True)


def test_dim_must_be_int(vectors: np.ndarray) -> None:
    with pytest.raises(ConfigurationError, match="must be an int"):
        truncate_embeddings(vectors, 32.0, normalize=True)  # type: ignore[arg-type]


def test_float16(vectors: np.ndarray) -> None:
    out = quantize_embeddings(vectors, "float16")
    assert out.dtype == np.float16
    np.testing.assert_allclose(out.astype(np.float32), vectors, atol=1e-3)


def test_binary_and_ubinary_pack_sign_bits() -> None:
    x = np.array([[1, -1, 1, 1, -1, -1, -1, 1] * 2], dtype=np.float32)  # 0b10110001 twice
    ubinary = quantize_embeddings(x, "ubinary")
    assert ubinary.dtype == np.uint8
    assert ubinary.tolist() == [[0b10110001, 0b10110001]]
    binary = quantize_embeddings(x, "binary")
    assert binary.dtype == np.int8
    assert binary.tolist() == [[0b10110001 - 128, 0b10110001 - 128]]


def test_int8_and_uint8_use_the_calibration_not_the_batch() -> None:
    calibration = QuantizationCalibration(np.full(4, -1.0), np.full(4, 1.0))
    # step 2 / 255: 0.5 sits 191.25 steps above -1; values past the range are clipped
    x = np.array([[-1.0, 0.5, 1.0, 2.0]], np.float32)
    assert quantize_embeddings(x, "uint8", calibration).tolist() == [[0, 191, 255, 255]]
    assert quantize_embeddings(x, "int8", calibration).tolist() == [[-128, 63, 127, 127]]
    # the same row quantizes the same whatever else is in the batch
    other = np.array([[5.0, 5.0, 5.0, 5.0]], np.float32)
    both = quantize_embeddings(np.vstack([x, other]), "int8", calibration)
    assert both[0].tolist() == quantize_embeddings(x, "int8", calibration)[0].tolist()


def test_calibration_from_embeddings_and_round_trip_error(vectors: np.ndarray) -> None:
    calibration = QuantizationCalibration.from_embeddings(vectors)
    np.testing.assert_array_equal(calibration.low, vectors.min(axis=0))
    codes = quantize_embeddings(vectors, "uint8", calibration)
    step = (calibration.high - calibration.low) / 255
    restored = calibration.low + codes.astype(np.float32) * step
    assert np.all(np.abs(restored - vectors) <= step / 2 + 1e-6)


def test_symmetric_calibration_broadcasts(vectors: np.ndarray) -> None:
    codes = quantize_embeddings(vectors, "int8", QuantizationCalibration.symmetric(0.5))
    assert codes.shape == vectors.shape and codes.dtype == np.int8
    with pytest.raises(ConfigurationError, match="bound must be positive"):
        QuantizationCalibration.symmetric(0)


def test_integer_precisions_require_calibration(vectors: np.ndarray) -> None:
    for precision in ("int8", "uint8"):
        with pytest.raises(ConfigurationError, match="needs a calibration"):
            quantize_embeddings(vectors, precision)


def test_calibration_dimension_must_match(vectors: np.ndarray) -> None:
    calibration = QuantizationCalibration.from_embeddings(vectors[:, :32])
    with pytest.raises(ConfigurationError, match="covers 32 dimensions"):
        quantize_embeddings(vectors, "int8", calibration)


def test_calibration_validation() -> None:
    with pytest.raises(ConfigurationError, match="at least two embeddings"):
        QuantizationCalibration.from_embeddings(np.zeros((1, 8)))
    with pytest.raises(ConfigurationError, match="high >= low"):
        QuantizationCalibration(np.ones(3), np.zeros(3))


def test_unknown_precision(vectors: np.ndarray) -> None:
    with pytest.raises(ConfigurationError, match="unknown precision 'int4'"):
        quantize_embeddings(vectors, "int4")
