"""bfloat16 against float32 on the same checkpoint: how far vectors, scores and rankings move.

Each model is loaded twice, with ``dtype="float32"`` and ``dtype="bfloat16"``, and both run the
same items. torch runs bfloat16 on any CPU (in hardware with AMX or AVX512-BF16, emulated and
slower elsewhere), so these tests run everywhere; they assert deviations, never speed.

Bounds come from measurement with margin: ``benchmarks/bench_precision.py --preset tiny``
(2026-11-30, torch 2.13 CPU; the figures are in the comments). The ``bench`` preset is measured
by that script only (``--preset bench``): where bfloat16 is emulated it takes minutes, not
seconds. Its deviations are of the same size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from qwen3_vl_rag import (
    MultimodalInput,
    QuantizationCalibration,
    Qwen3VLEmbedder,
    Qwen3VLReranker,
    Video,
)
from qwen3_vl_rag.evaluate import EvaluationReport, evaluate, load_beir
from qwen3_vl_rag.testing import SYNTHETIC_MAX_PIXELS, SyntheticCorpus, make_synthetic_corpus
from tests.conftest import write_mp4

PRECISIONS = ("float32", "bfloat16")

# Vectors, per item, tiny random checkpoint: measured min 0.99992, mean 0.99994 for every kind.
MIN_COSINE = 0.9995
MIN_MEAN_COSINE = 0.9998
# bfloat16 really ran: float32 run twice gives cosine 1 to 1e-7; bfloat16 is 6e-5 away or more.
MAX_COSINE_IF_BF16_RAN = 1 - 1e-6
# Output options on the same items: a 32-dimension prefix (min cosine 0.99991), int8 codes
# (calibrated on the float32 vectors: codes move by up to 7 of 255 steps, cosine of codes
# 0.99975) and binary codes (0.2% of bits flip, at most 1 of 64 per item).
MIN_COSINE_INT8_CODES = 0.998
MAX_INT8_STEP = 16
MAX_BITS_FLIPPED = 0.01
# Reranker scores in [0, 1]: max abs difference 0.0059, mean 0.0012.
MAX_SCORE_DIFFERENCE = 0.02
# Rankings of the trained tiny models, held-out split (36 queries, reranking the top 10):
# the same first page for 36 of 36 queries (first stage) and 34 of 36 (reranked), top-10
# overlap 0.994 in both stages, nDCG@5/10 within 0.007 of float32.
MIN_TOP1_AGREEMENT = {"retrieval": 0.9, "reranked": 0.85}
MIN_TOP10_OVERLAP = 0.95
MAX_NDCG_DIFFERENCE = 0.03
MIN_BF16_NDCG5 = 0.5  # as float32 must reach in test_trained_retrieval.py


def cosines(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    dot = (reference * other).sum(axis=1)
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(other, axis=1)
    return np.asarray(dot / norms)


def loaded_twice(cls: Any, path: Path, **options: Any) -> dict[str, Any]:
    return {p: cls.from_pretrained(path, device="cpu", dtype=p, **options) for p in PRECISIONS}


@pytest.fixture(scope="module")
def embedders(tiny_embedding_path: Path) -> dict[str, Qwen3VLEmbedder]:
    return loaded_twice(Qwen3VLEmbedder, tiny_embedding_path)


@pytest.fixture(scope="module")
def rerankers(tiny_reranker_path: Path) -> dict[str, Qwen3VLReranker]:
    return loaded_twice(Qwen3VLReranker, tiny_reranker_path)


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> SyntheticCorpus:
    """Twelve page-like images (448x640 px): six kinds of figure in two colours."""
    folder = tmp_path_factory.mktemp("pages")
    return make_synthetic_corpus(folder, split="pages", size=(448, 640), colours=("red", "blue"))


@pytest.fixture(scope="module")
def items(pages: SyntheticCorpus, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Any]]:
    """Items by kind: texts from short to long, pages, text+page mixes and two short videos."""
    clip = write_mp4(tmp_path_factory.mktemp("video") / "clip.mp4")
    frames = [page.image for page in pages.pages[:4]]
    texts = [page.caption for page in pages.pages[:4]] + [page.text for page in pages.pages[4:8]]
    return {
        "text": [*texts, " ".join(page.text for page in pages.pages[8:])],
        "page": [page.image for page in pages.pages[:8]],
        "text+page": [MultimodalInput(text=p.caption, images=[p.image]) for p in pages.pages[8:]],
        "video": [Video(clip), Video(frames)],
    }


@pytest.fixture(scope="module")
def vectors(
    embedders: dict[str, Qwen3VLEmbedder], items: dict[str, list[Any]]
) -> dict[str, dict[str, np.ndarray]]:
    """``{kind: {precision: vectors}}``, queries (with the query instruction) included."""
    out = {
        kind: {p: embedders[p].embed(group) for p in PRECISIONS} for kind, group in items.items()
    }
    queries = ["red bar chart of quarterly revenue", "a table with a blue header row"]
    out["query"] = {p: embedders[p].embed_queries(queries) for p in PRECISIONS}
    return out


def sample(items: dict[str, list[Any]]) -> list[Any]:
    """Two items of each kind: the output options are checked on fewer items."""
    return [item for group in items.values() for item in group[:2]]


def test_bfloat16_really_runs_in_bfloat16(
    embedders: dict[str, Qwen3VLEmbedder], rerankers: dict[str, Qwen3VLReranker]
) -> None:
    for engines in (embedders, rerankers):
        assert engines["float32"].backbone.loaded.dtype == torch.float32
        assert engines["bfloat16"].backbone.loaded.dtype == torch.bfloat16
        assert next(engines["bfloat16"].backbone.loaded.model.parameters()).dtype == torch.bfloat16


@pytest.mark.parametrize("kind", ["text", "query", "page", "text+page", "video"])
def test_bfloat16_vectors_point_where_float32_ones_do(
    vectors: dict[str, dict[str, np.ndarray]], kind: str
) -> None:
    reference, other = vectors[kind]["float32"], vectors[kind]["bfloat16"]
    assert other.dtype == np.float32  # vectors come out in float32 whatever the model runs in
    similarity = cosines(reference, other)
    assert similarity.min() >= MIN_COSINE, similarity
    assert similarity.mean() >= MIN_MEAN_COSINE, similarity
    assert similarity.min() <= MAX_COSINE_IF_BF16_RAN, "the two precisions gave the same vectors"


def test_a_matryoshka_prefix_keeps_the_agreement(
    embedders: dict[str, Qwen3VLEmbedder], items: dict[str, list[Any]]
) -> None:
    prefix = {p: embedders[p].embed(sample(items), dim=32) for p in PRECISIONS}
    assert prefix["float32"].shape == (len(sample(items)), 32)
    similarity = cosines(prefix["float32"], prefix["bfloat16"])
    assert MIN_COSINE <= similarity.min() <= MAX_COSINE_IF_BF16_RAN
    assert similarity.mean() >= MIN_MEAN_COSINE


def test_int8_and_binary_codes_barely_move(
    embedders: dict[str, Qwen3VLEmbedder],
    items: dict[str, list[Any]],
    vectors: dict[str, dict[str, np.ndarray]],
) -> None:
    reference = np.concatenate([group["float32"] for group in vectors.values()])
    calibration = QuantizationCalibration.from_embeddings(reference)
    chosen = sample(items)

    int8 = {
        p: embedders[p].embed(chosen, precision="int8", calibration=calibration).astype(int)
        for p in PRECISIONS
    }
    assert np.abs(int8["float32"] - int8["bfloat16"]).max() <= MAX_INT8_STEP
    assert cosines(int8["float32"], int8["bfloat16"]).min() >= MIN_COSINE_INT8_CODES

    bits = {
        p: np.unpackbits(embedders[p].embed(chosen, precision="ubinary"), axis=1)
        for p in PRECISIONS
    }
    assert bits["float32"].shape == (len(chosen), embedders["float32"].dimension)
    assert (bits["float32"] != bits["bfloat16"]).mean() <= MAX_BITS_FLIPPED


@pytest.mark.parametrize("query", ["text", "image"])
def test_bfloat16_rerank_scores_stay_close(
    rerankers: dict[str, Qwen3VLReranker], pages: SyntheticCorpus, query: str
) -> None:
    asked = "red bar chart of quarterly revenue" if query == "text" else pages.pages[3].image
    documents = [page.text for page in pages.pages[:4]] + [page.image for page in pages.pages[4:]]
    scores = {p: np.array(rerankers[p].score(asked, documents)) for p in PRECISIONS}
    difference = np.abs(scores["float32"] - scores["bfloat16"])
    assert 0 < difference.max() <= MAX_SCORE_DIFFERENCE, difference


# -- rankings of the trained tiny models -----------------------------------------------------------


def overlap(first: Sequence[str], second: Sequence[str]) -> float:
    return len(set(first) & set(second)) / len(first)


@pytest.fixture(scope="module")
def held_out_reports(
    trained_embedding_path: Path,
    trained_reranker_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, EvaluationReport]:
    """Both precisions evaluated on the held-out split: 36 pages, one query per class."""
    folder = tmp_path_factory.mktemp("held-out")
    corpus = make_synthetic_corpus(folder, split="test", queries_per_class=1)
    pixels = {"max_pixels": SYNTHETIC_MAX_PIXELS}
    embedders = loaded_twice(Qwen3VLEmbedder, trained_embedding_path, **pixels)
    rerankers = loaded_twice(Qwen3VLReranker, trained_reranker_path, **pixels)
    with load_beir(corpus.write_beir(folder / "beir")) as data:
        return {
            p: evaluate(embedders[p], data, reranker=rerankers[p], k_values=(5, 10), rerank_top=10)
            for p in PRECISIONS
        }


@pytest.mark.timeout(1800)  # the first use of the trained models may train them
@pytest.mark.parametrize("stage", ["retrieval", "reranked"])
def test_bfloat16_ranks_held_out_pages_as_float32_does(
    held_out_reports: dict[str, EvaluationReport], stage: str
) -> None:
    reference, other = (held_out_reports[p].stage(stage) for p in PRECISIONS)
    queries = sorted(reference.run)
    assert len(queries) == 36
    first = [reference.ranking(q)[0] == other.ranking(q)[0] for q in queries]
    top10 = [overlap(reference.ranking(q)[:10], other.ranking(q)[:10]) for q in queries]
    assert np.mean(first) >= MIN_TOP1_AGREEMENT[stage], first
    assert np.mean(top10) >= MIN_TOP10_OVERLAP, top10
    for measure in ("nDCG@5", "nDCG@10"):
        difference = other.metrics[measure] - reference.metrics[measure]
        assert abs(difference) <= MAX_NDCG_DIFFERENCE, (measure, reference.metrics, other.metrics)


@pytest.mark.timeout(1800)
def test_bfloat16_keeps_the_trained_models_retrieving(
    held_out_reports: dict[str, EvaluationReport],
) -> None:
    assert held_out_reports["bfloat16"].metrics["retrieval"]["nDCG@5"] >= MIN_BF16_NDCG5
