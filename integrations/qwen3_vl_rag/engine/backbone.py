"""Run Qwen3-VL over many sequences and return each one's last-token hidden state.

Shared by the embedder (last token = pooled embedding) and the reranker (last token = judge
position). Sequences are grouped under a padded-token budget, longest first; the pixels of the
next batch are decoded while the current batch runs; on out-of-memory a batch is halved and
retried down to a single item, and later batches are kept at the size that fitted.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from qwen3_vl_rag.engine.batching import is_out_of_memory, plan_batches
from qwen3_vl_rag.engine.collate import PixelLoader, collate
from qwen3_vl_rag.engine.encoding import EncodedSequence, SequenceEncoder
from qwen3_vl_rag.engine.loading import LoadedModel
from qwen3_vl_rag.errors import ConfigurationError, ResourceExhaustedError

if TYPE_CHECKING:
    import torch

__all__ = ["Backbone", "default_batch_tokens"]

_MAX_ITEMS_PER_BATCH = 128


def default_batch_tokens(device: torch.device) -> int:
    """Padded tokens per forward pass: 16384 on accelerators, 8192 on the CPU."""
    return 16384 if device.type != "cpu" else 8192


class Backbone:
    """A loaded Qwen3-VL model plus the machinery to feed it batches.

    Args:
        loaded: Model, tokenizer and vision settings from :func:`~.loading.load_model`.
        batch_tokens: Default padded-token budget per forward pass.
        decode_workers: Threads decoding pixels ahead of the model (0: decode inline).
    """

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        batch_tokens: int | None = None,
        decode_workers: int | None = None,
    ) -> None:
        self.loaded = loaded
        self.encoder = SequenceEncoder(loaded.tokenizer)
        self.batch_tokens = _check_budget(batch_tokens or default_batch_tokens(loaded.device))
        self.decode_workers = (
            min(4, os.cpu_count() or 1) if decode_workers is None else decode_workers
        )

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
        queue = deque(plan_batches([len(s) for s in sequences], budget, _MAX_ITEMS_PER_BATCH))
        loader = PixelLoader(self.loaded.vision, sequences, self.decode_workers)
        item_cap = _MAX_ITEMS_PER_BATCH
        try:
            loader.prefetch([sequences[p] for p in queue[0]])
            while queue:
                batch = queue.popleft()
                if len(batch) > item_cap:
                    queue.extendleft(reversed(_chunks(batch, item_cap)))
                    continue
                if queue:
                    loader.prefetch([sequences[p] for p in queue[0]])
                try:
                    hidden = self._forward([sequences[p] for p in batch], batch, loader)
                except Exception as exc:
                    if not is_out_of_memory(exc):
                        raise
                    _release_memory(self.loaded.device)
                    if len(batch) == 1:
                        msg = (
                            f"item {batch[0]} ({len(sequences[batch[0]])} tokens) does not fit "
                            "in memory even alone; lower max_pixels or max_frames for it, or "
                            "use a device with more memory."
                        )
                        raise ResourceExhaustedError(msg, item_index=batch[0]) from exc
                    item_cap = max(1, len(batch) // 2)
                    queue.extendleft(reversed(_chunks(batch, item_cap)))
                    continue
                out[batch] = hidden.to(device="cpu", dtype=torch.float32)
                if progress is not None:
                    progress.update(len(batch))  # type: ignore[attr-defined]
        finally:
            loader.close()
        return out

    def _forward(
        self, batch: Sequence[EncodedSequence], positions: Sequence[int], loader: PixelLoader
    ) -> torch.Tensor:
        import torch

        encoder = self.encoder
        inputs = collate(
            batch,
            positions,
            loader,
            pad_id=encoder.pad_id,
            image_pad_id=encoder.image_pad_id,
            video_pad_id=encoder.video_pad_id,
            device=self.loaded.device,
        )
        with torch.inference_mode():
            hidden = self.loaded.model(**inputs, use_cache=False).last_hidden_state
        # right padding: a row's last real token sits at (its length - 1)
        last = inputs["attention_mask"].sum(dim=1) - 1
        pooled: torch.Tensor = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        return pooled


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
