"""Run Qwen3-VL over many sequences and return each one's last-token hidden state.

Shared by the embedder (last token = pooled embedding) and the reranker (last token = judge
position). Sequences are grouped under a padded-token budget, longest first; the pixels of the
next batch are decoded while the current batch runs; on out-of-memory a batch is halved and
retried down to a single item, and later batches are kept at the size that fitted.

When the sequences start with a long common prefix (the judge prompt and query of a rerank call,
the system prompt of many short texts), the prefix is run once and its key/value cache reused:
see :mod:`qwen3_vl_rag.engine._prefix`.

The vision tower's output for each image is kept in a bounded in-memory cache keyed by the
image's content (:mod:`qwen3_vl_rag.engine._vision_cache`), so pages seen by an earlier call (a
refined query, popular pages) skip the tower; images repeated within a call run it once.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qwen3_vl_rag.engine._batching import is_out_of_memory, plan_batches
from qwen3_vl_rag.engine._collate import ModelBatch, PixelLoader, collate
from qwen3_vl_rag.engine._encoding import EncodedSequence, SequenceEncoder
from qwen3_vl_rag.engine._loading import LoadedModel, PretrainedOptions, load_model
from qwen3_vl_rag.engine._prefix import shared_prefix_length, vision_blocks
from qwen3_vl_rag.engine._vision_cache import (
    CachedVisionFeatures,
    VisionCache,
    check_cache_bytes,
    install,
)
from qwen3_vl_rag.errors import ConfigurationError, ResourceExhaustedError

if TYPE_CHECKING:
    import torch

    from qwen3_vl_rag.engine._remote import RemoteBackbone
    from qwen3_vl_rag.engine._vision import VisionSettings

__all__ = ["Backbone", "HoldsBackbone", "default_batch_tokens"]

_MAX_ITEMS_PER_BATCH = 128
# Share a prefix when it is at least this many tokens and this share of all tokens (or holds a
# vision part): below that, the extra forward pass and masked attention cost more than they save.
_MIN_SHARED_TOKENS = 8
_MIN_SHARED_FRACTION = 0.15


def default_max_padding(device: torch.device) -> float:
    """Largest share of padding in a batch: 10% on the CPU, 30% on accelerators.

    A CPU computes padding at full cost and gains little from bigger batches; an accelerator
    trades some padding for being kept busy.
    """
    return 0.3 if device.type != "cpu" else 0.1


def default_batch_tokens(device: torch.device) -> int:
    """Padded tokens per forward pass: 16384 on accelerators, 2048 on the CPU.

    CPUs gain nothing from big batches (two cores saturate on one sequence) and lose cache
    locality on large activations; accelerators need large batches to be busy.
    """
    return 16384 if device.type != "cpu" else 2048


@dataclass
class _Prefix:
    """A prefix run once: its length, how many vision parts it holds, its keys/values per layer."""

    length: int
    parts: int
    layers: list[tuple[torch.Tensor, torch.Tensor]]

    def cache_for(self, rows: int) -> Any:
        from transformers import DynamicCache

        expanded = [
            (k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in self.layers
        ]
        return DynamicCache(ddp_cache_data=expanded)


class Backbone:
    """A loaded Qwen3-VL model plus the machinery to feed it batches.

    Args:
        loaded: Model, tokenizer and vision settings from :func:`~.loading.load_model`.
        batch_tokens: Default padded-token budget per forward pass.
        decode_workers: Threads decoding pixels ahead of the model (0: decode inline).
        share_prefix: Run a common prefix once (``None``: when it pays; ``False``: never).
        vision_cache_bytes: Bound of the cache of vision encodings (``None``: 1 GiB; 0: none).
    """

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        batch_tokens: int | None = None,
        decode_workers: int | None = None,
        share_prefix: bool | None = None,
        vision_cache_bytes: int | None = None,
    ) -> None:
        self.loaded = loaded
        self.encoder = SequenceEncoder(loaded.tokenizer)
        self.batch_tokens = _check_budget(batch_tokens or default_batch_tokens(loaded.device))
        self.decode_workers = (
            min(4, os.cpu_count() or 1) if decode_workers is None else decode_workers
        )
        self.share_prefix = share_prefix
        self.max_padding = default_max_padding(loaded.device)
        vocab = loaded.tokenizer.get_vocab()
        self._vision_start_id = vocab["<|vision_start|>"]
        self._vision_end_id = vocab["<|vision_end|>"]
        cache_bytes = check_cache_bytes(vision_cache_bytes)
        self.vision_features: CachedVisionFeatures | None = (
            install(loaded.model, cache_bytes) if cache_bytes else None
        )

    @classmethod
    def from_pretrained(
        cls, model_id_or_path: str | os.PathLike[str], options: PretrainedOptions
    ) -> Backbone:
        """Load a checkpoint with ``from_pretrained`` options; the one loading path of the engine.

        Raises:
            ModelLoadError: When the checkpoint cannot be found or is not a Qwen3-VL one.
        """
        loaded = load_model(model_id_or_path, options)
        return cls(
            loaded,
            batch_tokens=options.get("batch_tokens"),
            decode_workers=options.get("decode_workers"),
            vision_cache_bytes=options.get("vision_cache_bytes"),
        )

    @property
    def vision_cache(self) -> VisionCache | None:
        """The cache of vision encodings, or ``None`` when it is turned off."""
        return None if self.vision_features is None else self.vision_features.cache

    @property
    def hidden_size(self) -> int:
        """Width of the model's hidden states."""
        return int(self.loaded.config.text_config.hidden_size)

    def last_hidden_states(
        self,
        sequences: Sequence[EncodedSequence],
        *,
        batch_tokens: int | None = None,
        progress: object | None = None,
    ) -> torch.Tensor:
        """Hidden state of each sequence's last token, ``(len(sequences), hidden)`` float32, CPU.

        Args:
            sequences: Encoded model inputs; positions in this list name items in errors.
            batch_tokens: Padded-token budget per forward pass (default: the instance's).
            progress: A tqdm-like object whose ``update(n)`` is called as items finish.

        Raises:
            ResourceExhaustedError: When a single sequence does not fit in memory.
            InputError: When a vision part cannot be decoded (naming the item).
        """
        import torch

        budget = _check_budget(batch_tokens or self.batch_tokens)
        out = torch.empty((len(sequences), self.hidden_size), dtype=torch.float32)
        if not sequences:
            return out
        queue = deque(
            plan_batches(
                [len(s) for s in sequences], budget, _MAX_ITEMS_PER_BATCH, self.max_padding
            )
        )
        loader = PixelLoader(
            self.loaded.vision, sequences, self.decode_workers, keyed=self.vision_cache is not None
        )
        item_cap = _MAX_ITEMS_PER_BATCH
        call = self.vision_cache.new_call() if self.vision_cache is not None else 0
        try:
            prefix = self._shared_prefix(sequences, loader, call)
            skip = prefix.parts if prefix else 0
            loader.prefetch([sequences[p] for p in queue[0]], skip_parts=skip)
            while queue:
                batch = queue.popleft()
                if len(batch) > item_cap:
                    queue.extendleft(reversed(_chunks(batch, item_cap)))
                    continue
                if queue:
                    loader.prefetch([sequences[p] for p in queue[0]], skip_parts=skip)
                try:
                    hidden = self._forward(
                        [sequences[p] for p in batch], batch, loader, prefix, call
                    )
                except Exception as exc:
                    if not is_out_of_memory(exc):
                        raise
                    self._release_memory()
                    if len(batch) == 1:
                        raise _alone_error(batch[0], sequences[batch[0]]) from exc
                    item_cap = max(1, len(batch) // 2)
                    queue.extendleft(reversed(_chunks(batch, item_cap)))
                    continue
                out[batch] = hidden.to(device="cpu", dtype=torch.float32)
                if progress is not None:
                    progress.update(len(batch))  # type: ignore[attr-defined]
        finally:
            loader.close()
        return out

    # -- forward passes ----------------------------------------------------------------------------

    def _collate(
        self,
        batch: Sequence[EncodedSequence],
        positions: Sequence[int],
        loader: PixelLoader,
        skip_parts: int = 0,
    ) -> ModelBatch:
        encoder = self.encoder
        return collate(
            batch,
            positions,
            loader,
            pad_id=encoder.pad_id,
            image_pad_id=encoder.image_pad_id,
            video_pad_id=encoder.video_pad_id,
            device=self.loaded.device,
            skip_parts=skip_parts,
        )

    def _forward(
        self,
        batch: Sequence[EncodedSequence],
        positions: Sequence[int],
        loader: PixelLoader,
        prefix: _Prefix | None,
        call: int,
    ) -> torch.Tensor:
        import torch

        model = self.loaded.model
        inputs = self._collate(batch, positions, loader, prefix.parts if prefix else 0)
        # Right padding under causal attention: no real token ever attends to the pads after it,
        # and M-RoPE positions of real tokens do not depend on them, so no padding mask is
        # passed (it would force attention off its fast causal kernels); results are identical.
        with torch.inference_mode(), self._vision_keys(inputs, call):
            if prefix is None:
                hidden = model(
                    input_ids=inputs.input_ids,
                    mm_token_type_ids=inputs.mm_token_type_ids,
                    use_cache=False,
                    **inputs.pixels,
                ).last_hidden_state
                start = 0
            else:
                # positions come from the full rows (prefix included), then continue the cache
                full_positions, _ = model.get_rope_index(
                    inputs.input_ids,
                    inputs.mm_token_type_ids,
                    inputs.image_grids,
                    inputs.video_grids,
                    inputs.attention_mask,
                )
                start = prefix.length
                with _cache_deprecations_silenced():
                    hidden = model(
                        input_ids=inputs.input_ids[:, start:],
                        mm_token_type_ids=inputs.mm_token_type_ids[:, start:],
                        position_ids=full_positions[:, :, start:],
                        past_key_values=prefix.cache_for(len(batch)),
                        use_cache=True,
                        **inputs.pixels,
                    ).last_hidden_state
        last = inputs.attention_mask.sum(dim=1) - 1 - start
        pooled: torch.Tensor = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        return pooled

    def _vision_keys(
        self, inputs: ModelBatch, call: int
    ) -> contextlib.AbstractContextManager[None]:
        """Hand the images' content keys to the cached vision tower for this forward pass."""
        if self.vision_features is None:
            return contextlib.nullcontext()
        pixels = inputs.pixels
        return self.vision_features.supplying(
            inputs.image_keys,
            pixels.get("image_grid_thw"),
            inputs.video_keys,
            pixels.get("video_grid_thw"),
            call,
        )

    def _release_memory(self) -> None:
        """Free memory after an out-of-memory error; cached encodings are worth less than it."""
        if self.vision_cache is not None:
            self.vision_cache.clear()
        _release_memory(self.loaded.device)

    def _shared_prefix(
        self, sequences: Sequence[EncodedSequence], loader: PixelLoader, call: int
    ) -> _Prefix | None:
        """Run the sequences' common prefix once, when that saves work."""
        import torch

        if self.share_prefix is False or len(sequences) < 2:
            return None
        length = shared_prefix_length(
            sequences, vision_start_id=self._vision_start_id, vision_end_id=self._vision_end_id
        )
        parts = _parts_within(sequences[0], length, self._vision_start_id)
        total = sum(len(s) for s in sequences)
        worth = length >= _MIN_SHARED_TOKENS and (
            parts > 0 or length * len(sequences) >= _MIN_SHARED_FRACTION * total
        )
        if not (worth or (self.share_prefix and length > 0)):
            return None
        head = EncodedSequence(sequences[0].input_ids[:length], sequences[0].parts[:parts])
        inputs = self._collate([head], [0], loader)
        try:
            with (
                torch.inference_mode(),
                _cache_deprecations_silenced(),
                self._vision_keys(inputs, call),
            ):
                output = self.loaded.model(
                    input_ids=inputs.input_ids,
                    mm_token_type_ids=inputs.mm_token_type_ids,
                    use_cache=True,
                    **inputs.pixels,
                )
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            self._release_memory()
            return None  # the plain path still works, and halves its batches if it must
        return _Prefix(length, parts, _cache_tensors(output.past_key_values))


@contextlib.contextmanager
def _cache_deprecations_silenced() -> Iterator[None]:
    """Hide transformers' FutureWarnings about ``past_key_values`` around our cached passes.

    The cache is built and read here, not by the user, and the warning (transformers 5.24) names
    nothing they can change. Only FutureWarnings naming ``past_key_values`` are hidden, and the
    filters are restored on exit.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(?s).*past_key_values", category=FutureWarning)
        yield


def _parts_within(sequence: EncodedSequence, length: int, vision_start_id: int) -> int:
    """How many leading vision parts lie entirely inside the first ``length`` tokens."""
    blocks = int((sequence.input_ids[:length] == vision_start_id).sum())
    count = 0
    for part in sequence.parts:
        blocks -= vision_blocks(part)
        if blocks < 0:
            break
        count += 1
    return count


def _cache_tensors(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-layer (keys, values) of a transformers cache."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache, strict=True))  # pragma: no cover


def _alone_error(position: int, sequence: EncodedSequence) -> ResourceExhaustedError:
    return ResourceExhaustedError(
        f"a sequence of {len(sequence)} tokens does not fit in memory even alone; lower "
        "max_pixels or max_frames for it, or use a device with more memory.",
        item_index=position,
    )


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _check_budget(tokens: int) -> int:
    if tokens < 64:
        raise ConfigurationError(f"batch_tokens must be at least 64, got {tokens}.")
    return int(tokens)


def _release_memory(device: torch.device) -> None:
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


class HoldsBackbone:
    """What an engine says about the model it holds (the embedder and the reranker alike)."""

    backbone: Backbone | RemoteBackbone

    @property
    def model_id(self) -> str:
        """The checkpoint the model was loaded from."""
        return self.backbone.loaded.source

    @property
    def device(self) -> torch.device:
        """The device the model runs on (``cpu`` for a served model: where the client works)."""
        return self.backbone.loaded.device

    @property
    def server(self) -> str | None:
        """The URL of the vLLM server that runs the model, or ``None`` when it runs here."""
        return self.backbone.loaded.server

    @property
    def dtype(self) -> torch.dtype | None:
        """What the model computes in (``dtype="auto"`` resolved), or ``None`` on a server.

        A served model computes in its server's ``--dtype``, which the client cannot see.
        """
        loaded = self.backbone.loaded
        return None if loaded.server else loaded.dtype

    def _runs_where(self) -> str:
        """Where the model runs, for ``repr``: its server, or its device and dtype."""
        loaded = self.backbone.loaded
        if loaded.server:
            return f"server={loaded.server!r}"
        return f"device={loaded.device}, dtype={loaded.dtype}"

    @property
    def vision(self) -> VisionSettings:
        """Pixel and frame budgets in use (pass them on with ``MediaBudget.matching(self)``)."""
        return self.backbone.loaded.vision

    @property
    def vision_cache(self) -> VisionCache | None:
        """Vision encodings kept between calls (``stats()``, ``clear()``), or ``None``.

        ``None`` when ``vision_cache_bytes=0`` or when a server runs the model.

        Example:
            >>> from pathlib import Path
            >>> from qwen3_vl_rag import Qwen3VLReranker
            >>> reranker = Qwen3VLReranker.from_pretrained("Qwen/Qwen3-VL-Reranker-2B")
            >>> first = reranker.score("revenue", [Path("chart.png"), "Revenue table"])
            >>> again = reranker.score("revenue in 2023", [Path("chart.png"), "Revenue table"])
            >>> stats = reranker.vision_cache.stats()  # the page's vision tower ran once
            >>> stats.misses, stats.hits
            (1, 1)
        """
        backbone = self.backbone
        return backbone.vision_cache if isinstance(backbone, Backbone) else None
