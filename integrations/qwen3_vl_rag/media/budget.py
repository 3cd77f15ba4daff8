"""Budgets: how much work one input may cost, and the size pages and images are made for."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

from qwen3_vl_rag.errors import ConfigurationError
from qwen3_vl_rag.image_limits import MAX_IMAGE_PIXELS


class _VisionLimits(Protocol):
    """What a budget reads of the engine's ``VisionSettings`` (media does not import the engine)."""

    @property
    def max_pixels(self) -> int: ...
    @property
    def min_pixels(self) -> int: ...
    @property
    def patch_size(self) -> int: ...
    @property
    def merge_size(self) -> int: ...
    @property
    def max_frames(self) -> int: ...


class _HasVision(Protocol):
    @property
    def vision(self) -> _VisionLimits: ...


__all__ = ["MediaBudget"]


@dataclass(frozen=True)
class MediaBudget:
    """Limits applied while turning files into items.

    The first three fields describe the embedder the items are for: pages are rendered straight at
    the size it will use (no render-big-then-shrink). The defaults are the official
    Qwen3-VL-Embedding settings; pass the same ``max_pixels`` you give the embedder.

    Args:
        max_pixels: Target area of a rendered page or a decoded image (1800 visual tokens).
        min_pixels: Lower bound on that area (4 visual tokens).
        factor: Side multiple the model needs (patch 16 x merge 2 for Qwen3-VL).
        max_dpi: Upper bound on a page's rendering resolution, for small pages.
        max_image_pixels: Largest image (after JPEG draft reduction) that is decoded at all;
            bigger ones are refused from their header, before any pixel is decoded. The default
            is :data:`~qwen3_vl_rag.image_limits.MAX_IMAGE_PIXELS`, the limit the engine applies
            to image files, bytes and ``data:`` URIs it is given directly.
        max_pages: Pages read per PDF; the rest are left out and reported.
        max_frames: Frames sampled per video or clip.
        max_clips: Clips cut per video in segments mode.
        max_bytes: Largest file read, and largest remote download.
        max_text_chars: Longest page text kept (for citations; not used for retrieval).
        timeout: Seconds one decoding step may take (open a PDF, render a page, parse an
            image's header, decode an image, read a video's header, decode a clip's frames)
            before its worker is stopped.
        worker_memory: Address-space limit of a decoding worker process, in bytes (Linux).

    Example:
        >>> from qwen3_vl_rag import Qwen3VLEmbedder
        >>> embedder = Qwen3VLEmbedder.from_pretrained(
        ...     "Qwen/Qwen3-VL-Embedding-2B", max_pixels=602112
        ... )
        >>> budget = MediaBudget.matching(embedder, max_pages=500)  # pages at about 600 tokens
    """

    max_pixels: int = 1800 * 32 * 32
    min_pixels: int = 4 * 32 * 32
    factor: int = 32
    max_dpi: float = 144.0
    max_image_pixels: int = MAX_IMAGE_PIXELS
    max_pages: int = 2000
    max_frames: int = 64
    max_clips: int = 2000
    max_bytes: int = 512 * 1024 * 1024
    max_text_chars: int = 200_000
    timeout: float = 60.0
    worker_memory: int = 4 * 1024**3

    def __post_init__(self) -> None:
        positive = {
            name: getattr(self, name)
            for name in (
                "max_pixels",
                "min_pixels",
                "factor",
                "max_dpi",
                "max_image_pixels",
                "max_pages",
                "max_frames",
                "max_clips",
                "max_bytes",
                "max_text_chars",
                "timeout",
                "worker_memory",
            )
        }
        bad = [f"{name}={value!r}" for name, value in positive.items() if not value > 0]
        if bad:
            raise ConfigurationError(f"budget values must be positive: {', '.join(bad)}.")
        if self.min_pixels > self.max_pixels:
            raise ConfigurationError(
                f"min_pixels ({self.min_pixels}) must not exceed max_pixels ({self.max_pixels})."
            )
        if self.max_frames < 2:
            raise ConfigurationError(f"max_frames must be at least 2, got {self.max_frames}.")

    @classmethod
    def matching(cls, model: _HasVision | _VisionLimits, **changes: Any) -> MediaBudget:
        """A budget whose pages, images and frame counts fit ``model`` exactly.

        Args:
            model: An embedder or reranker (anything with ``.vision``), or its
                :class:`~qwen3_vl_rag.VisionSettings`.
            **changes: Other fields to set (``max_pages``, ``timeout``...).
        """
        settings = model.vision if hasattr(model, "vision") else model
        fitted = cls(
            max_pixels=settings.max_pixels,
            min_pixels=settings.min_pixels,
            factor=settings.patch_size * settings.merge_size,
            max_frames=settings.max_frames,
        )
        return replace(fitted, **changes)
