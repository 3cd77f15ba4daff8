"""The cache of vision encodings on the tiny checkpoints: same numbers, hits, bounds, isolation."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from qwen3_vl_rag import (
    ConfigurationError,
    MultimodalInput,
    Qwen3VLEmbedder,
    Qwen3VLReranker,
    Video,
)
from qwen3_vl_rag.engine import _training
from qwen3_vl_rag.engine._backbone import Backbone
from qwen3_vl_rag.engine._vision_cache import DEFAULT_VISION_CACHE_BYTES, VisionCacheStats
from qwen3_vl_rag.inputs import InputItem
from tests.conftest import write_mp4

TOL = 1e-6  # float32, with and without the cache


def noise(width: int, height: int, seed: int) -> Image.Image:
    rnd = np.random.RandomState(seed)
    return Image.fromarray(rnd.randint(0, 255, (height, width, 3), np.uint8))


PAGE_A, PAGE_B, PAGE_C = noise(160, 120, 1), noise(96, 64, 2), noise(200, 150, 3)


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> list[InputItem]:
    """Text-only items, images (one repeated, also inside a mixed item) and a video."""
    clip = write_mp4(tmp_path_factory.mktemp("clips") / "clip.mp4", frames=8, fps=4)
    return [
        PAGE_A,
        "Revenue grew 12% in Q3, driven by cloud services.",
        PAGE_B,
        MultimodalInput(text="the same chart again", images=[PAGE_A]),
        Video(clip, fps=2.0),
        "short",
        PAGE_A,
        MultimodalInput(text="two pictures", images=[PAGE_C, PAGE_B]),
    ]


def reranker(path: Path, **options: object) -> Qwen3VLReranker:
    return Qwen3VLReranker.from_pretrained(path, device="cpu", dtype="float32", **options)  # type: ignore[arg-type]


def embedder(path: Path, **options: object) -> Qwen3VLEmbedder:
    """An embedder with the cache on (it is off by default: indexing sees each page once)."""
    options = {"vision_cache_bytes": DEFAULT_VISION_CACHE_BYTES, **options}
    return Qwen3VLEmbedder.from_pretrained(path, device="cpu", dtype="float32", **options)  # type: ignore[arg-type]


def stats(engine: Qwen3VLReranker | Qwen3VLEmbedder) -> VisionCacheStats:
    cache = engine.vision_cache
    assert cache is not None
    return cache.stats()


def vision_parts(items: Sequence[InputItem]) -> int:
    """Images and videos among the items, counted per occurrence."""
    count = 0
    for item in items:
        if isinstance(item, MultimodalInput):
            count += len(item.images) + (item.video is not None)
        elif not isinstance(item, str):
            count += 1
    return count


def test_the_reranker_caches_by_default_and_the_embedder_does_not(
    tiny_reranker_path: Path, tiny_embedding_path: Path
) -> None:
    engine = reranker(tiny_reranker_path)
    assert stats(engine) == VisionCacheStats(0, 0, 0, 0, DEFAULT_VISION_CACHE_BYTES, 0)
    assert DEFAULT_VISION_CACHE_BYTES == 1 << 30
    plain = Qwen3VLEmbedder.from_pretrained(tiny_embedding_path, device="cpu", dtype="float32")
    assert plain.vision_cache is None
    sized = Qwen3VLEmbedder.from_pretrained(
        tiny_embedding_path, device="cpu", dtype="float32", vision_cache_bytes=2**20
    )
    assert stats(sized).max_bytes == 2**20


def test_rerank_scores_are_the_same_with_and_without_the_cache(
    tiny_reranker_path: Path, documents: list[InputItem]
) -> None:
    cached, plain = reranker(tiny_reranker_path), reranker(tiny_reranker_path, vision_cache_bytes=0)
    for query in ("quarterly revenue", "a refined query about cloud revenue"):
        expected = plain.score(query, documents)
        np.testing.assert_allclose(cached.score(query, documents), expected, atol=TOL, rtol=0)
        # pairs whose queries differ: no shared prefix, every row runs its own images
        pairs = [(query, d) for d in documents] + [(PAGE_B, d) for d in documents[:3]]
        np.testing.assert_allclose(
            cached.score_pairs(pairs), plain.score_pairs(pairs), atol=TOL, rtol=0
        )


def test_embeddings_are_the_same_with_and_without_the_cache(
    tiny_embedding_path: Path, documents: list[InputItem]
) -> None:
    cached, plain = (
        embedder(tiny_embedding_path),
        embedder(tiny_embedding_path, vision_cache_bytes=0),
    )
    expected = plain.embed_documents(documents)
    for _ in range(2):  # filling the cache, then served from it
        np.testing.assert_allclose(cached.embed_documents(documents), expected, atol=TOL, rtol=0)
    np.testing.assert_allclose(
        cached.embed_documents(documents, batch_tokens=64),
        plain.embed_documents(documents, batch_tokens=64),
        atol=TOL,
        rtol=0,
    )
    assert stats(cached).hits > 0


def test_a_repeated_rerank_runs_the_vision_tower_for_no_page(
    tiny_reranker_path: Path, documents: list[InputItem]
) -> None:
    engine = reranker(tiny_reranker_path)
    parts = vision_parts(documents)
    distinct = 4  # PAGE_A, PAGE_B, PAGE_C and the video
    engine.score("quarterly revenue", documents)
    first = stats(engine)
    # repeats within the call run the tower once; nothing is evicted at the default size
    assert (first.misses, first.hits, first.entries) == (distinct, parts - distinct, distinct)
    engine.rerank("a refined query", documents, top_n=3)
    second = stats(engine)
    assert (second.misses, second.hits) == (distinct, first.hits + parts)
    assert second.bytes == first.bytes > 0


def test_a_query_image_in_the_shared_prefix_goes_through_the_cache(
    tiny_reranker_path: Path,
) -> None:
    engine, plain = reranker(tiny_reranker_path), reranker(tiny_reranker_path, vision_cache_bytes=0)
    pages = [PAGE_A, PAGE_B, "a text page"]
    query_image = noise(64, 64, 9)
    engine.score(MultimodalInput(text="this chart", images=[query_image]), pages)
    before = stats(engine)
    refined = MultimodalInput(text="this chart, in 2023", images=[query_image])
    np.testing.assert_allclose(
        engine.score(refined, pages), plain.score(refined, pages), atol=TOL, rtol=0
    )
    after = stats(engine)
    assert after.misses == before.misses  # the query image too was served from the cache
    assert after.hits == before.hits + 3


def test_eviction_keeps_the_cache_under_its_bound(
    tiny_reranker_path: Path, documents: list[InputItem]
) -> None:
    probe = reranker(tiny_reranker_path)
    probe.score("q", [PAGE_C])
    one_page = stats(probe).bytes  # the largest of the pages
    bound = 2 * one_page
    engine = reranker(tiny_reranker_path, vision_cache_bytes=bound)
    plain = reranker(tiny_reranker_path, vision_cache_bytes=0)
    pages = [noise(200, 150, seed) for seed in range(10, 16)]
    for query in ("first", "second", "third"):
        np.testing.assert_allclose(
            engine.score(query, pages), plain.score(query, pages), atol=TOL, rtol=0
        )
        assert 0 < stats(engine).bytes <= bound
    engine.score("other pages", documents)
    assert stats(engine).evictions > 0
    assert stats(engine).bytes <= bound


def test_a_list_longer_than_the_cache_keeps_its_first_pages_cached(
    tiny_reranker_path: Path,
) -> None:
    pages = [noise(200, 150, seed) for seed in range(20, 26)]
    probe = reranker(tiny_reranker_path)
    probe.score("q", pages[:1])
    engine = reranker(tiny_reranker_path, vision_cache_bytes=3 * stats(probe).bytes)
    engine.score("first", pages)
    assert stats(engine).entries == 3
    engine.score("second", pages)
    # strict LRU would have cycled every page out before its next use: zero hits
    assert stats(engine).hits == 3


def test_an_entry_larger_than_the_cache_is_not_kept(tiny_reranker_path: Path) -> None:
    engine = reranker(tiny_reranker_path, vision_cache_bytes=64)
    engine.score("q", [PAGE_A, PAGE_A])
    assert (stats(engine).entries, stats(engine).bytes) == (0, 0)
    assert (stats(engine).misses, stats(engine).hits) == (1, 1)  # still computed once per call


def test_another_max_pixels_never_gets_the_encoding_made_at_the_first(
    tiny_reranker_path: Path,
) -> None:
    engine = reranker(tiny_reranker_path)
    large = [noise(640, 480, 30), noise(480, 640, 31)]
    engine.score("q", large)
    before = stats(engine)
    backbone = engine.backbone
    assert isinstance(backbone, Backbone)
    smaller = dataclasses.replace(backbone.loaded.vision, max_pixels=64 * 32 * 32)
    backbone.loaded.vision = smaller
    expected = reranker(tiny_reranker_path, max_pixels=smaller.max_pixels, vision_cache_bytes=0)
    np.testing.assert_allclose(
        engine.score("q", large), expected.score("q", large), atol=TOL, rtol=0
    )
    assert (stats(engine).hits, stats(engine).misses) == (before.hits, before.misses + 2)


def test_another_dtype_never_gets_the_encoding_made_in_the_first(
    tiny_embedding_path: Path,
) -> None:
    engine, plain = (
        embedder(tiny_embedding_path),
        embedder(tiny_embedding_path, vision_cache_bytes=0),
    )
    pages: list[InputItem] = [PAGE_A, PAGE_C]
    in_float32 = engine.embed_documents(pages)
    misses = stats(engine).misses
    for model in (engine.backbone.loaded.model, plain.backbone.loaded.model):
        model.to(torch.bfloat16)  # the same model object, now in another precision
    expected = plain.embed_documents(pages)
    assert np.abs(expected - in_float32).max() > 1e-4  # an old encoding would show
    np.testing.assert_allclose(engine.embed_documents(pages), expected, atol=TOL, rtol=0)
    assert stats(engine).misses == misses + 2


def test_weights_changed_in_place_empty_the_cache(
    tiny_reranker_path: Path, documents: list[InputItem]
) -> None:
    engine, plain = reranker(tiny_reranker_path), reranker(tiny_reranker_path, vision_cache_bytes=0)
    engine.score("q", documents)
    for model in (engine.backbone.loaded.model, plain.backbone.loaded.model):
        with torch.no_grad():  # as an optimizer step does
            model.visual.merger.linear_fc2.weight.mul_(1.5)
    np.testing.assert_allclose(
        engine.score("q", documents), plain.score("q", documents), atol=TOL, rtol=0
    )
    assert stats(engine).misses == 8  # twice the four distinct parts


def test_a_disabled_cache_holds_nothing_and_leaves_the_model_alone(
    tiny_reranker_path: Path, documents: list[InputItem]
) -> None:
    engine = reranker(tiny_reranker_path, vision_cache_bytes=0)
    engine.score("q", documents)
    assert engine.vision_cache is None
    assert "get_image_features" not in vars(engine.backbone.loaded.model)


@pytest.mark.parametrize("size", [-1, 1.5, True])
def test_a_bad_size_is_refused(tiny_reranker_path: Path, size: object) -> None:
    with pytest.raises(ConfigurationError, match="vision_cache_bytes"):
        reranker(tiny_reranker_path, vision_cache_bytes=size)


def test_the_training_forward_neither_reads_nor_fills_the_cache(
    tiny_reranker_path: Path, documents: list[InputItem]
) -> None:
    engine = reranker(tiny_reranker_path)
    engine.score("q", documents)
    filled = stats(engine)
    backbone = _training.trained_backbone(engine)
    pairs = [("q", document) for document in documents]
    sequences = _training.pair_sequences(engine, pairs, engine.instruction)
    states = _training.pooled_states(backbone, sequences)
    assert states.requires_grad
    states.sum().backward()  # type: ignore[no-untyped-call]
    assert backbone.loaded.model.visual.merger.linear_fc2.weight.grad is not None
    assert stats(engine) == filled
    # a training forward on pages never seen fills nothing either
    _training.pooled_states(backbone, _training.pair_sequences(engine, [("q", PAGE_C)], "i"))
    assert stats(engine) == filled


def test_concurrent_calls_get_the_numbers_of_a_single_one(
    tiny_reranker_path: Path, documents: list[InputItem]
) -> None:
    engine = reranker(tiny_reranker_path)
    expected = reranker(tiny_reranker_path, vision_cache_bytes=0).score("q", documents)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: engine.score("q", documents), range(8)))
    for result in results:
        np.testing.assert_allclose(result, expected, atol=TOL, rtol=0)
    counted = stats(engine)
    assert counted.hits + counted.misses == 8 * vision_parts(documents)
    assert counted.entries == 4


def test_a_copy_of_the_model_runs_without_the_cache(tiny_reranker_path: Path) -> None:
    engine = reranker(tiny_reranker_path)
    model = engine.backbone.loaded.model
    clone = copy.deepcopy(model)
    method = clone.get_image_features
    assert getattr(method, "__self__", None) is clone  # its own plain method, bound to the copy
    assert "get_image_features" in vars(model)


def test_videos_are_cached_alone_and_beside_images(
    tiny_embedding_path: Path, tmp_path: Path
) -> None:
    clip = Video(write_mp4(tmp_path / "clip.mp4", frames=8, fps=4), fps=2.0)
    engine = embedder(tiny_embedding_path)
    plain = embedder(tiny_embedding_path, vision_cache_bytes=0)
    for items in ([clip], [clip, PAGE_B], [MultimodalInput(images=[PAGE_B], video=clip)]):
        for _ in range(2):
            np.testing.assert_allclose(
                engine.embed_documents(items), plain.embed_documents(items), atol=TOL, rtol=0
            )
    assert stats(engine).misses == 2  # the clip and the page, each once
    assert stats(engine).hits == 1 + 3 + 4  # per call pair: clip; clip, then both; both twice
