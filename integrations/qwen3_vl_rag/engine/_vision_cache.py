"""Vision-tower outputs kept in memory, keyed by the content of the pixels.

The vision encoding of a page depends on its pixels and the model, never on the query or the
prompt around it. A search session that reranks the same pages again (a refined query, popular
pages recalled again) should not pay for their vision tower twice: at the ``bench`` preset on a
CPU the tower is about 80% of a rerank (``benchmarks/bench_rerank.py``).

How it hooks in: :func:`install` puts two small callables on the loaded model *instance* (not its
class) in place of ``get_image_features`` and ``get_video_features``, which the model's
``forward`` calls. They use the cache only when the engine's inference path hands them the content
keys of exactly the images of that call (:meth:`CachedVisionFeatures.supplying`); any other call
(fine-tuning, with gradients; a user calling the model) runs the original method untouched. On a
call with keys, each image is looked up, the tower runs once on the misses (concatenated, each
image still attends only to itself), and the per-image results are put back in order. Videos go
through the same tower and are cached the same way.

Keys: the SHA-256 of the image's patch tensor (after our exact preprocessing, so ``max_pixels``
and the normalisation are in it) and grid, computed on the decoding threads; plus the tower's
dtype, device and attention kernel. A cache belongs to one model object, and it empties itself
when the tower's weights change (an optimizer step, ``load_state_dict``, a move or a cast, a LoRA
adapter added), so a model being fine-tuned never serves an older encoding.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qwen3_vl_rag.errors import ConfigurationError

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_VISION_CACHE_BYTES",
    "CachedVisionFeatures",
    "VisionCache",
    "VisionCacheStats",
    "check_cache_bytes",
    "content_key",
    "install",
]

#: The reranker's default, 1 GiB. A full-size page (1800 visual tokens) costs its merged
#: embedding and three deepstack features per token: 16 KiB a token, 29 MB a page for the 2B model
#: in bfloat16 (36 pages fit: a top-20 list with room), twice that in float32 or for the 8B model
#: (18 pages). A list longer than the cache still keeps its first pages (see VisionCache).
DEFAULT_VISION_CACHE_BYTES = 1 << 30


def check_cache_bytes(value: int | None) -> int:
    """The cache size to use: the default for ``None``; 0 disables it.

    Raises:
        ConfigurationError: For a negative or non-integer size.
    """
    if value is None:
        return DEFAULT_VISION_CACHE_BYTES
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(
            f"vision_cache_bytes must be a whole number of bytes >= 0 (0 turns the cache off), "
            f"got {value!r}."
        )
    return value


def content_key(patches: torch.Tensor, grid: Sequence[int]) -> bytes:
    """SHA-256 of one image's (or video's) patch tensor and grid: what the tower is given.

    Example:
        >>> import torch
        >>> key = content_key(torch.zeros(4, 6), (1, 2, 2))
        >>> len(key), key == content_key(torch.zeros(4, 6), (1, 2, 2))
        (32, True)
        >>> key == content_key(torch.ones(4, 6), (1, 2, 2))
        False
    """
    import torch

    digest = hashlib.sha256()
    header = (tuple(int(g) for g in grid), tuple(patches.shape), str(patches.dtype))
    digest.update(repr(header).encode())
    flat = patches.detach().to("cpu").contiguous().view(torch.uint8).numpy()
    digest.update(flat.data)  # hashlib releases the GIL while it reads a large buffer
    return digest.digest()


@dataclass(frozen=True)
class VisionCacheStats:
    """What a :class:`VisionCache` holds and how often it saved the vision tower.

    Attributes:
        hits: Images (or videos) served without running the tower for them, counted per
            occurrence: a page repeated within one call is one miss and then hits.
        misses: Images the tower ran for.
        entries: Encodings held now.
        bytes: Their size in memory.
        max_bytes: The bound on ``bytes``.
        evictions: Encodings dropped to stay under the bound.

    Example:
        >>> stats = VisionCacheStats(3, misses=1, entries=1, bytes=64, max_bytes=1024, evictions=0)
        >>> stats.hits / (stats.hits + stats.misses)
        0.75
    """

    hits: int
    misses: int
    entries: int
    bytes: int
    max_bytes: int
    evictions: int


@dataclass(frozen=True)
class _Entry:
    """One image's merged visual embeddings and its deepstack features, as the tower made them."""

    embeds: torch.Tensor
    deepstack: tuple[torch.Tensor, ...]
    nbytes: int
    call: int  # the engine call that last used it (not evicted to make room within that call)


class VisionCache:
    """A thread-safe, least-recently-used store of vision encodings, bounded in bytes.

    One engine call never evicts what it used itself: when a list of pages is larger than the
    cache, the first pages stay cached (and hit next time) instead of each page pushing out the
    one the next call needs first.

    Args:
        max_bytes: Upper bound on the bytes of the tensors held.

    Example:
        >>> from qwen3_vl_rag import Qwen3VLReranker
        >>> reranker = Qwen3VLReranker.from_pretrained(
        ...     "Qwen/Qwen3-VL-Reranker-2B", vision_cache_bytes=2**28
        ... )
        >>> cache = reranker.vision_cache
        >>> cache.max_bytes, cache.stats().entries
        (268435456, 0)
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Any, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._bytes = 0
        self._hits = self._misses = self._evictions = 0
        self._weights: object = None
        self._calls = 0

    def stats(self) -> VisionCacheStats:
        """Counters and size, read at once."""
        with self._lock:
            return VisionCacheStats(
                hits=self._hits,
                misses=self._misses,
                entries=len(self._entries),
                bytes=self._bytes,
                max_bytes=self.max_bytes,
                evictions=self._evictions,
            )

    def clear(self) -> None:
        """Drop every encoding (the counters stay)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def new_call(self) -> int:
        """A number naming one engine call, so that the call never evicts its own encodings."""
        with self._lock:
            self._calls += 1
            return self._calls

    def _check_weights(self, weights: object) -> None:
        """Empty the cache when the model's weights are not those its encodings were made with."""
        with self._lock:
            if weights != self._weights:
                self._entries.clear()
                self._bytes = 0
                self._weights = weights

    def _get(self, key: Any, call: int) -> _Entry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries[key] = entry = _Entry(entry.embeds, entry.deepstack, entry.nbytes, call)
            self._entries.move_to_end(key)
            return entry

    def _put(self, key: Any, entry: _Entry) -> None:
        with self._lock:
            if entry.nbytes > self.max_bytes or key in self._entries:
                return
            while self._bytes + entry.nbytes > self.max_bytes:
                oldest_key, oldest = next(iter(self._entries.items()))
                if oldest.call == entry.call:
                    return  # everything left was used by this call: keep it, skip the newcomer
                del self._entries[oldest_key]
                self._bytes -= oldest.nbytes
                self._evictions += 1
            self._entries[key] = entry
            self._bytes += entry.nbytes

    def _count(self, hits: int, misses: int) -> None:
        with self._lock:
            self._hits += hits
            self._misses += misses


class _Supplied:
    """Keys handed over by the engine for the next tower call of one modality."""

    def __init__(self, grids: list[list[int]], keys: list[bytes], call: int) -> None:
        self.grids = grids
        self.keys = keys
        self.call = call


class CachedVisionFeatures:
    """The model's vision feature methods, looking each image up in a :class:`VisionCache`.

    Installed on one model by :func:`install`; the engine wraps each forward pass in
    :meth:`supplying` to hand over the content keys of the images in it.

    Example:
        >>> from qwen3_vl_rag import Qwen3VLReranker
        >>> reranker = Qwen3VLReranker.from_pretrained("Qwen/Qwen3-VL-Reranker-2B")
        >>> features = reranker.backbone.vision_features
        >>> features.cache is reranker.vision_cache
        True
    """

    def __init__(self, model: Any, cache: VisionCache) -> None:
        self.model = model
        self.cache = cache
        self._local = threading.local()
        self._originals = {m: _plain_method(model, m) for m in ("image", "video")}

    @contextmanager
    def supplying(
        self,
        image_keys: Sequence[bytes] | None,
        image_grids: torch.Tensor | None,
        video_keys: Sequence[bytes] | None,
        video_grids: torch.Tensor | None,
        call: int,
    ) -> Iterator[None]:
        """Within the block, this thread's next tower call per modality may use the cache."""
        supplied: dict[str, _Supplied] = {}
        for modality, keys, grids in (
            ("image", image_keys, image_grids),
            ("video", video_keys, video_grids),
        ):
            if keys is not None and grids is not None:
                supplied[modality] = _Supplied(grids.tolist(), list(keys), call)
        self._local.supplied = supplied
        try:
            yield
        finally:
            self._local.supplied = {}

    def features(
        self,
        modality: str,
        pixel_values: torch.Tensor,
        grid_thw: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        """What the original ``get_<modality>_features`` returns, computed only for misses."""
        original = self._originals[modality]
        supplied = self._take(modality, grid_thw)
        if supplied is None or grid_thw is None:
            return original(pixel_values, grid_thw, **kwargs)
        self.cache._check_weights(self._weights())
        visual = self.model.visual
        settings = (str(visual.dtype), str(pixel_values.device), _attention(visual))
        keys = [(key, *settings) for key in supplied.keys]
        found: dict[Any, _Entry] = {}
        for key in dict.fromkeys(keys):
            entry = self.cache._get(key, supplied.call)
            if entry is not None:
                found[key] = entry
        misses: list[int] = []  # first occurrences of the keys not found
        seen = set(found)
        for index, key in enumerate(keys):
            if key not in seen:
                seen.add(key)
                misses.append(index)
        hits = len(keys) - len(misses)
        if misses:
            computed = self._compute(original, pixel_values, grid_thw, misses, kwargs)
            if computed is None:  # a transformers whose output we do not know: run it plainly
                return original(pixel_values, grid_thw, **kwargs)
            for index, (embeds, deepstack) in zip(misses, computed, strict=True):
                nbytes = embeds.nbytes + sum(d.nbytes for d in deepstack)
                entry = _Entry(embeds, deepstack, nbytes, supplied.call)
                found[keys[index]] = entry
                self.cache._put(keys[index], entry)
        self.cache._count(hits, len(misses))
        return _output([found[key] for key in keys])

    def _take(self, modality: str, grid_thw: torch.Tensor | None) -> _Supplied | None:
        """The keys for this call, when the engine supplied them for exactly these images."""
        import torch

        if torch.is_grad_enabled() or self.model.training or grid_thw is None:
            return None  # training, or a call the engine did not make: never read or fill
        if getattr(self._local, "computing", False):
            return None  # the original video method calls the image one: that is not a new call
        supplied: dict[str, _Supplied] = getattr(self._local, "supplied", {})
        candidate = supplied.get(modality)
        if candidate is None or grid_thw.tolist() != candidate.grids:
            return None
        del supplied[modality]  # one tower call per modality and forward pass
        return candidate

    def _compute(
        self,
        original: Any,
        pixel_values: torch.Tensor,
        grid_thw: torch.Tensor,
        misses: list[int],
        kwargs: dict[str, Any],
    ) -> list[tuple[torch.Tensor, tuple[torch.Tensor, ...]]] | None:
        import torch

        rows = grid_thw.prod(-1).tolist()
        if len(misses) == len(rows):
            pixels, grids = pixel_values, grid_thw
        else:
            chunks = torch.split(pixel_values, rows)
            pixels = torch.cat([chunks[i] for i in misses])
            grids = grid_thw[misses]
        self._local.computing = True
        try:
            output = original(pixels, grids, **kwargs)
        finally:
            self._local.computing = False
        embeds = getattr(output, "pooler_output", None)
        deepstack = getattr(output, "deepstack_features", None)
        if not isinstance(embeds, (tuple, list)) or deepstack is None:
            return None
        # clones: a slice would keep the whole batch's tensor alive behind a small entry
        return [
            (embeds[j].clone(), tuple(level[j].clone() for level in deepstack))
            for j in range(len(misses))
        ]

    def _weights(self) -> tuple[tuple[int, int, int], ...]:
        """Identity, in-place version and storage of every tensor of the vision tower."""
        visual = self.model.visual
        tensors = [*visual.parameters(), *visual.buffers()]
        return tuple((id(t), t._version, t.data_ptr()) for t in tensors)


class _Hook:
    """Stands in for ``model.get_<modality>_features`` on one model instance."""

    def __init__(self, features: CachedVisionFeatures, modality: str) -> None:
        self.features = features
        self.modality = modality

    def __call__(self, pixel_values: Any, grid_thw: Any = None, **kwargs: Any) -> Any:
        return self.features.features(self.modality, pixel_values, grid_thw, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        # a copy (deepcopy, pickle) of the model gets the plain method: no shared cache
        return (_plain_method, (self.features.model, self.modality))


def _plain_method(model: Any, modality: str) -> Any:
    """``model``'s own ``get_<modality>_features``, bound to it."""
    return getattr(type(model), f"get_{modality}_features").__get__(model)


def install(model: Any, max_bytes: int) -> CachedVisionFeatures:
    """Route ``model``'s vision feature methods through a new cache (or its existing one).

    Only this model object changes; the class and other models are untouched.
    """
    existing = model.__dict__.get("get_image_features")
    if isinstance(existing, _Hook):
        return existing.features
    features = CachedVisionFeatures(model, VisionCache(max_bytes))
    for modality in ("image", "video"):
        model.__dict__[f"get_{modality}_features"] = _Hook(features, modality)
    return features


def _attention(visual: Any) -> str:
    return str(getattr(visual.config, "_attn_implementation", ""))


def _output(entries: list[_Entry]) -> Any:
    """The tower's output for these images, in the form ``Qwen3VLModel.forward`` reads."""
    from transformers.models.qwen3_vl.modeling_qwen3_vl import (
        BaseModelOutputWithDeepstackFeatures,
    )

    levels = len(entries[0].deepstack) if entries else 0
    per_image: Any = tuple(e.embeds for e in entries)  # what get_image_features splits it into
    per_level: Any = [tuple(e.deepstack[level] for e in entries) for level in range(levels)]
    return BaseModelOutputWithDeepstackFeatures(
        pooler_output=per_image, deepstack_features=per_level
    )
