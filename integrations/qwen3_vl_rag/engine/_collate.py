"""Turn a batch of encoded sequences into model tensors, decoding pixels on worker threads.

Pixels of the next batch are decoded while the model runs the current one (Pillow and PyAV
release the GIL while decoding and resizing). A vision part shared by several sequences, such
as the query image of a rerank call, is decoded once and freed after its last use. When the model
caches vision encodings, the decoding threads also hash each part's patches: the cache's key.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from qwen3_vl_rag.engine._encoding import EncodedSequence, VisionPart
from qwen3_vl_rag.engine._vision import (
    ImagePlan,
    VisionSettings,
    load_image_pixels,
    load_video_pixels,
    patchify,
)
from qwen3_vl_rag.engine._vision_cache import content_key
from qwen3_vl_rag.errors import InputError

if TYPE_CHECKING:
    import torch

    _Patches = tuple[torch.Tensor, bytes | None]  # a part's patches and their content key

__all__ = ["ModelBatch", "PixelLoader", "collate"]


def _load_patches(plan: VisionPart, settings: VisionSettings) -> torch.Tensor:
    if isinstance(plan, ImagePlan):
        return patchify(load_image_pixels(plan), settings)
    return patchify(load_video_pixels(plan), settings)


def _load(plan: VisionPart, settings: VisionSettings, keyed: bool) -> _Patches:
    patches = _load_patches(plan, settings)
    return patches, content_key(patches, plan.grid) if keyed else None


class PixelLoader:
    """Decodes and patchifies vision parts ahead of use, sharing work between sequences.

    Args:
        settings: Normalisation and patch geometry.
        sequences: Every sequence of the call, to count how often each vision part is used.
        workers: Decoding threads; 0 decodes on the calling thread when a batch is collated.
        keyed: Also hash each part's patches (:func:`~._vision_cache.content_key`).
    """

    def __init__(
        self,
        settings: VisionSettings,
        sequences: Sequence[EncodedSequence],
        workers: int,
        *,
        keyed: bool = False,
    ) -> None:
        self.settings = settings
        self.keyed = keyed
        self._uses: Counter[int] = Counter(id(p) for s in sequences for p in s.parts)
        self._pending: dict[int, Future[_Patches]] = {}
        self._pool = (
            ThreadPoolExecutor(workers, thread_name_prefix="qwen3vl-pixels") if workers else None
        )

    def prefetch(self, sequences: Sequence[EncodedSequence], *, skip_parts: int = 0) -> None:
        """Start decoding the vision parts of ``sequences`` (after the first ``skip_parts``)."""
        if self._pool is None:
            return
        for sequence in sequences:
            for plan in sequence.parts[skip_parts:]:
                if id(plan) not in self._pending:
                    self._pending[id(plan)] = self._pool.submit(
                        _load, plan, self.settings, self.keyed
                    )

    def get(self, plan: VisionPart) -> torch.Tensor:
        """The patches of one vision part; released once its last user has taken them."""
        return self.get_keyed(plan)[0]

    def get_keyed(self, plan: VisionPart) -> _Patches:
        """The patches of one vision part and their content key (``None`` when not ``keyed``)."""
        key = id(plan)
        future = self._pending.get(key)
        if future is None:
            future = Future()
            try:
                future.set_result(_load(plan, self.settings, self.keyed))
            except InputError as err:
                future.set_exception(err)
            self._pending[key] = future
        self._uses[key] -= 1
        if self._uses[key] <= 0:
            del self._pending[key]
        return future.result()

    def close(self) -> None:
        """Stop the worker threads and drop decoded pixels."""
        if self._pool is not None:
            for future in self._pending.values():
                future.cancel()
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()


@dataclass
class ModelBatch:
    """Right-padded inputs for one forward pass.

    Attributes:
        input_ids: ``(rows, width)`` token ids, padded on the right.
        attention_mask: 1 for real tokens, 0 for padding.
        mm_token_type_ids: 0 text, 1 image pad, 2 video pad (transformers 5.x needs it).
        pixels: ``pixel_values``/``image_grid_thw`` and ``pixel_values_videos``/
            ``video_grid_thw`` for the vision parts after the skipped (shared) ones.
        image_grids: Grids of every image of the full rows, for position ids.
        video_grids: Grids of every video of the full rows, for position ids.
        image_keys: Content keys of the images in ``pixels``, in order (``None``: not hashed).
        video_keys: Content keys of the videos in ``pixels``, in order.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    mm_token_type_ids: torch.Tensor
    pixels: dict[str, Any] = field(default_factory=dict)
    image_grids: torch.Tensor | None = None
    video_grids: torch.Tensor | None = None
    image_keys: list[bytes] | None = None
    video_keys: list[bytes] | None = None


def collate(
    sequences: Sequence[EncodedSequence],
    positions: Sequence[int],
    loader: PixelLoader,
    *,
    pad_id: int,
    image_pad_id: int,
    video_pad_id: int,
    device: torch.device,
    skip_parts: int = 0,
) -> ModelBatch:
    """Right-padded model inputs for one batch.

    Args:
        sequences: The batch's sequences.
        positions: Each sequence's position in the caller's list (named in decode errors).
        loader: Source of decoded patches.
        pad_id: Padding token id.
        image_pad_id: Id of ``<|image_pad|>``.
        video_pad_id: Id of ``<|video_pad|>``.
        device: Where the tensors go.
        skip_parts: Leading vision parts whose pixels are not needed (a shared prefix has them).
    """
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    image_patches: list[torch.Tensor] = []
    video_patches: list[torch.Tensor] = []
    image_grids: list[tuple[int, int, int]] = []
    video_grids: list[tuple[int, int, int]] = []
    all_image_grids: list[tuple[int, int, int]] = []
    all_video_grids: list[tuple[int, int, int]] = []
    image_keys: list[bytes | None] = []
    video_keys: list[bytes | None] = []
    for row, (sequence, position) in enumerate(zip(sequences, positions, strict=True)):
        ids[row, : len(sequence)] = torch.from_numpy(sequence.input_ids)
        mask[row, : len(sequence)] = 1
        try:
            for index, part in enumerate(sequence.parts):
                is_image = isinstance(part, ImagePlan)
                (all_image_grids if is_image else all_video_grids).append(part.grid)
                if index < skip_parts:
                    continue
                patches, content = loader.get_keyed(part)
                (image_patches if is_image else video_patches).append(patches)
                (image_grids if is_image else video_grids).append(part.grid)
                (image_keys if is_image else video_keys).append(content)
        except InputError as err:
            raise err.with_item(position) from err.__cause__
    types = torch.zeros_like(ids)
    types[ids == image_pad_id] = 1
    types[ids == video_pad_id] = 2
    pixels: dict[str, Any] = {}
    if image_patches:
        pixels["pixel_values"] = torch.cat(image_patches).to(device)
        pixels["image_grid_thw"] = torch.tensor(image_grids, dtype=torch.long, device=device)
    if video_patches:
        pixels["pixel_values_videos"] = torch.cat(video_patches).to(device)
        pixels["video_grid_thw"] = torch.tensor(video_grids, dtype=torch.long, device=device)
    return ModelBatch(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        mm_token_type_ids=types.to(device),
        pixels=pixels,
        image_grids=_grids(all_image_grids, device),
        video_grids=_grids(all_video_grids, device),
        image_keys=_keys(image_keys),
        video_keys=_keys(video_keys),
    )


def _keys(keys: list[bytes | None]) -> list[bytes] | None:
    """The keys, when every part has one."""
    known = [key for key in keys if key is not None]
    return known if known and len(known) == len(keys) else None


def _grids(grids: list[tuple[int, int, int]], device: torch.device) -> torch.Tensor | None:
    import torch

    return torch.tensor(grids, dtype=torch.long, device=device) if grids else None
