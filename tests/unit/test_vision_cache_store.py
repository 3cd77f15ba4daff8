"""The store behind the vision cache: bytes bound, LRU order, a call's own entries, content keys."""

from __future__ import annotations

import threading

import pytest
import torch

from qwen3_vl_rag import ConfigurationError
from qwen3_vl_rag.engine._vision_cache import (
    DEFAULT_VISION_CACHE_BYTES,
    VisionCache,
    _Entry,
    check_cache_bytes,
    content_key,
)


def entry(nbytes: int, call: int) -> _Entry:
    return _Entry(torch.zeros(nbytes // 4), (), nbytes, call)


def test_least_recently_used_goes_first_and_the_bound_holds() -> None:
    cache = VisionCache(max_bytes=300)
    cache._put("a", entry(100, 1))
    cache._put("b", entry(100, 1))
    cache._put("c", entry(100, 1))
    assert cache._get("a", 2) is not None  # "b" is now the oldest
    cache._put("d", entry(100, 2))
    assert cache._get("b", 2) is None
    assert all(cache._get(key, 2) is not None for key in "acd")
    stats = cache.stats()
    assert (stats.entries, stats.bytes, stats.evictions) == (3, 300, 1)


def test_a_call_does_not_evict_what_it_used_itself() -> None:
    cache = VisionCache(max_bytes=200)
    cache._put("a", entry(100, 1))
    cache._put("b", entry(100, 1))
    cache._put("c", entry(100, 1))  # would push out "a", which this same call stored
    assert cache._get("c", 1) is None
    assert cache._get("a", 1) is not None and cache._get("b", 1) is not None
    cache._put("c", entry(100, 2))  # a later call evicts the oldest as usual
    assert cache._get("a", 2) is None and cache._get("c", 2) is not None
    assert cache.stats().evictions == 1


def test_an_entry_over_the_bound_is_not_kept_and_nothing_is_evicted_for_it() -> None:
    cache = VisionCache(max_bytes=150)
    cache._put("a", entry(100, 1))
    cache._put("huge", entry(400, 2))
    assert cache._get("huge", 2) is None and cache._get("a", 2) is not None


def test_new_weights_empty_the_store() -> None:
    cache = VisionCache(max_bytes=1000)
    cache._check_weights(("w", 1))
    cache._put("a", entry(100, 1))
    cache._check_weights(("w", 1))
    assert cache._get("a", 1) is not None
    cache._check_weights(("w", 2))
    assert cache._get("a", 1) is None and cache.stats().bytes == 0


def test_clear_keeps_the_counters() -> None:
    cache = VisionCache(max_bytes=1000)
    cache._put("a", entry(100, 1))
    cache._count(hits=2, misses=1)
    cache.clear()
    stats = cache.stats()
    assert (stats.entries, stats.bytes, stats.hits, stats.misses) == (0, 0, 2, 1)


def test_threads_filling_one_store_keep_its_accounting() -> None:
    cache = VisionCache(max_bytes=10 * 64)

    def fill(worker: int) -> None:
        for i in range(200):
            cache._put((worker, i % 30), entry(64, worker * 1000 + i))
            cache._get((worker, (i * 7) % 30), worker * 1000 + i)

    threads = [threading.Thread(target=fill, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = cache.stats()
    assert stats.bytes == 64 * stats.entries <= cache.max_bytes


def test_content_keys_tell_pixels_grids_and_dtypes_apart() -> None:
    patches = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    key = content_key(patches, (1, 2, 2))
    assert key == content_key(patches.clone(), (1, 2, 2))
    changed = patches.clone()
    changed[3, 5] += 1e-6
    assert key != content_key(changed, (1, 2, 2))
    assert key != content_key(patches, (1, 1, 4))
    assert key != content_key(patches.to(torch.float64), (1, 2, 2))
    assert key == content_key(patches.T.contiguous().T, (1, 2, 2))  # layout is not content


def test_cache_sizes() -> None:
    assert check_cache_bytes(None) == DEFAULT_VISION_CACHE_BYTES == 1 << 30
    assert check_cache_bytes(0) == 0
    for bad in (-1, 2.5, True, "1GB"):
        with pytest.raises(ConfigurationError, match="vision_cache_bytes"):
            check_cache_bytes(bad)  # type: ignore[arg-type]
