"""The two stages of a Ray run: rendering tasks, then embedding actors.

Rows carry one item each: which file (path, label, digest), which item (kind, locator), and
what the stages add: the page or image drawn as RGB bytes, then its vector, or the failure
that stopped it (error class, stage, reason). A failure is data, not an exception: it travels
to the driver, which reports the file and goes on, as a local run does.

Rendering runs in Ray tasks (any node with CPUs); each reads its files again through the media
layer (:func:`~._reload.reload_items`), decoding in worker processes under the index's time and
memory budgets, so a decoder that hangs or crashes fails its file, not the task. Videos and
clips are decoded by the embedding actor itself (the engine samples their frames), through its
own worker processes.
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from qwen3_vl_rag.errors import InputError, SourceChangedError
from qwen3_vl_rag.inputs import LazyImage, MultimodalInput
from qwen3_vl_rag.media.isolation import DecodeRunner, WorkerPool
from qwen3_vl_rag.media.items import MediaItem
from qwen3_vl_rag.media.loaders import MediaOptions

from ._reload import reload_items

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from ._engine import WorkerEngine

__all__ = ["ERROR_COLUMNS", "EmbedActor", "RunnerFactory", "isolated_decoding", "render_batch"]

logger = logging.getLogger(__name__)

Batch = dict[str, Any]
#: a row's failure: the error's class name, the stage, the reason ("" everywhere: none)
ERROR_COLUMNS = ("error", "error_stage", "error_reason")
_DRAWN = ("page", "image")  # kinds drawn by the rendering tasks; videos decode in the actor

#: Makes the runner a Ray worker decodes with (default: :func:`isolated_decoding`).
RunnerFactory = Callable[[MediaOptions], DecodeRunner]

# one runner per Ray worker process and kind (Ray reuses processes between tasks)
_RUNNERS: dict[tuple[Any, ...], DecodeRunner] = {}


def isolated_decoding(options: MediaOptions) -> DecodeRunner:
    """Worker processes under the index's time and memory budgets, as a local run decodes."""
    budget = options.budget
    return WorkerPool(1, timeout=budget.timeout, memory_limit=budget.worker_memory)


def _runner(options: MediaOptions, factory: RunnerFactory | None) -> MediaOptions:
    """``options`` decoding with this process's runner (made once, kept)."""
    factory = factory or isolated_decoding
    budget = options.budget
    key = (factory, budget.timeout, budget.worker_memory)
    if key not in _RUNNERS:
        _RUNNERS[key] = factory(options)
    return replace(options, runner=_RUNNERS[key])


def _column(batch: Batch, name: str) -> list[Any]:
    return [value.item() if isinstance(value, np.generic) else value for value in batch[name]]


def _files(batch: Batch) -> dict[tuple[bytes, str, str], list[int]]:
    """Row positions by file (path, label, digest), in order."""
    positions: dict[tuple[bytes, str, str], list[int]] = defaultdict(list)
    for position, key in enumerate(
        zip(_column(batch, "path"), _column(batch, "label"), _column(batch, "digest"), strict=True)
    ):
        positions[key].append(position)
    return positions


class _Failures:
    """The error columns of a batch, filled as rows fail."""

    def __init__(self, batch: Batch) -> None:
        size = len(batch["id"])
        self.columns = {
            name: list(_column(batch, name)) if name in batch else [""] * size
            for name in ERROR_COLUMNS
        }

    def failed(self, position: int) -> bool:
        return bool(self.columns["error"][position])

    def fail(self, position: int, err: Exception, stage: str) -> None:
        """Record why a row failed: a typed input error as it is, anything else by its class.

        A decoder's unexpected error fails the file, as in a local scan, not the run.
        """
        self.columns["error"][position] = type(err).__name__
        if isinstance(err, InputError):
            self.columns["error_stage"][position] = err.stage or stage
            self.columns["error_reason"][position] = err.reason
        else:
            self.columns["error_stage"][position] = stage
            self.columns["error_reason"][position] = f"{type(err).__name__}: {err}"


def _load_items(
    batch: Batch, positions: list[int], options: MediaOptions, failures: _Failures
) -> dict[int, MediaItem]:
    """The items at ``positions`` (one file), read again; failures recorded."""
    path, label, digest = (
        _column(batch, name)[positions[0]] for name in ("path", "label", "digest")
    )
    locators = _column(batch, "locator")
    try:
        found = reload_items(
            os.fsdecode(path),
            label=label,
            digest=digest,
            locators={locators[p] for p in positions},
            options=options,
        )
    except Exception as err:  # typed input errors, and a loader's unexpected one
        if not isinstance(err, InputError):
            logger.warning("unexpected error while reading %s", label, exc_info=True)
        for position in positions:
            failures.fail(position, err, "open" if isinstance(err, InputError) else "load")
        return {}
    items: dict[int, MediaItem] = {}
    for position in positions:
        item = found.get(locators[position])
        if item is None:
            missing = SourceChangedError(
                f"{locators[position]} is no longer in the file.", source=label, stage="open"
            )
            failures.fail(position, missing, "open")
        else:
            items[position] = item
    return items


def render_batch(
    batch: Batch,
    options: MediaOptions,
    decoding: RunnerFactory | None = None,
    thumbnails: bool = False,
) -> Batch:
    """Ray Data stage: draw each page and image of the batch (RGB bytes), or say why not.

    With ``thumbnails``, also a small JPEG of each (for a store that keeps them): made here from
    the drawn page, it spares the driver, the one writer, from drawing it again.
    """
    options = _runner(options, decoding)
    size = len(batch["id"])
    failures = _Failures(batch)
    pixels: list[bytes] = [b""] * size
    jpegs: list[bytes] = [b""] * size
    widths, heights = [0] * size, [0] * size
    kinds = _column(batch, "kind")
    labels = _column(batch, "label")
    for positions in _files(batch).values():
        drawn = [p for p in positions if kinds[p] in _DRAWN]
        if not drawn:
            continue
        for position, item in _load_items(batch, drawn, options, failures).items():
            try:
                image = item.load_image()
            except Exception as err:  # typed input errors, and a renderer's unexpected one
                failures.fail(position, err, "render")
                continue
            widths[position], heights[position] = image.size
            pixels[position] = image.convert("RGB").tobytes()
            if thumbnails:
                jpegs[position] = _thumbnail(image, labels[position])
    return {
        **batch,
        "pixels": np.array(pixels, dtype=object),
        "thumbnail": np.array(jpegs, dtype=object),
        "width": np.array(widths, dtype=np.int64),
        "height": np.array(heights, dtype=np.int64),
        **{name: np.array(values, dtype=object) for name, values in failures.columns.items()},
    }


def _thumbnail(image: PILImage.Image, label: str) -> bytes:
    """A JPEG of the drawn page, or nothing (the writer then makes it): never fails the item."""
    from qwen3_vl_rag.index._reopen import jpeg_thumbnail

    try:
        return jpeg_thumbnail(image)
    except Exception as exc:  # an encoder failure costs only the thumbnail
        logger.warning("no thumbnail made for %s: %s: %s", label, type(exc).__name__, exc)
        return b""


def _drawn_image(data: bytes, width: int, height: int, label: str) -> LazyImage:
    def load() -> PILImage.Image:
        from PIL import Image

        return Image.frombytes("RGB", (width, height), data)

    return LazyImage(width, height, load, label)


class EmbedActor:
    """Ray Data actor: holds one embedder and embeds batches of rendered rows.

    A model that cannot be loaded is not raised from here (Ray would restart the actor for
    ever): every batch then comes back marked ``fatal`` with the error, and the driver stops
    the run with it.

    Args:
        engine: How to load the embedder.
        options: The index's decoding options (for videos and clips).
        dimension: Matryoshka dimension to return.
        segment_seconds: The index's clip length (part of the settings the driver checks).
        decoding: Makes the runner videos are decoded with (default: worker processes).
    """

    def __init__(
        self,
        engine: WorkerEngine,
        options: MediaOptions,
        dimension: int,
        segment_seconds: float | None,
        decoding: RunnerFactory | None = None,
    ) -> None:
        from qwen3_vl_rag.index._precision import compute_dtype
        from qwen3_vl_rag.index._signature import embedding_signature

        self.options = options
        self.dimension = dimension
        self.decoding = decoding
        self.fatal = ""
        try:
            self.embedder = engine.load()
            signature = embedding_signature(self.embedder, dimension, segment_seconds)
        except Exception as exc:  # any failure to load: reported to the driver, never retried
            self.fatal = json.dumps({"error": type(exc).__name__, "message": str(exc)})
            return
        self.signature = json.dumps(signature, sort_keys=True)
        self.dtype = compute_dtype(self.embedder) or ""

    def __call__(self, batch: Batch) -> Batch:
        size = len(batch["id"])
        result: Batch = {"id": batch["id"]}
        if self.fatal:
            result.update(
                vector=np.zeros((size, 1), dtype=np.float32),
                fatal=np.array([self.fatal] * size, dtype=object),
                dtype=np.array([""] * size, dtype=object),
                signature=np.array([""] * size, dtype=object),
                **{name: np.array([""] * size, dtype=object) for name in ERROR_COLUMNS},
            )
            return result
        failures = _Failures(batch)
        inputs = self._inputs(batch, failures)
        vectors = np.zeros((size, self.dimension), dtype=np.float32)
        files = _column(batch, "digest")
        while inputs:
            positions = list(inputs)
            try:
                embedded = self.embedder.embed_documents(
                    [inputs[p] for p in positions], dim=self.dimension
                )
            except InputError as err:
                if err.item_index is None:
                    raise
                bad = positions[err.item_index]
                failures.fail(bad, err, "embed")
                # the file fails as a whole: its other items are not worth embedding now
                inputs = {p: i for p, i in inputs.items() if files[p] != files[bad]}
                continue
            vectors[positions] = embedded
            break
        if "thumbnail" in batch:
            result["thumbnail"] = batch["thumbnail"]
        result.update(
            vector=vectors,
            fatal=np.array([""] * size, dtype=object),
            dtype=np.array([self.dtype] * size, dtype=object),
            signature=np.array([self.signature] * size, dtype=object),
            **{name: np.array(values, dtype=object) for name, values in failures.columns.items()},
        )
        return result

    def _inputs(self, batch: Batch, failures: _Failures) -> dict[int, MediaItem | MultimodalInput]:
        """What to embed for each row that has not failed."""
        kinds = _column(batch, "kind")
        labels = _column(batch, "label")
        inputs: dict[int, MediaItem | MultimodalInput] = {}
        videos: list[int] = []
        for position, kind in enumerate(kinds):
            if failures.failed(position):
                continue
            if kind in _DRAWN:
                width, height = int(batch["width"][position]), int(batch["height"][position])
                image = _drawn_image(batch["pixels"][position], width, height, labels[position])
                inputs[position] = MultimodalInput(images=(image,))
            else:
                videos.append(position)
        if videos:
            options = _runner(self.options, self.decoding)
            by_file: dict[tuple[bytes, str, str], list[int]] = defaultdict(list)
            for key, positions in _files(batch).items():
                by_file[key] = [p for p in positions if p in set(videos)]
            for positions in by_file.values():
                if positions:
                    inputs.update(_load_items(batch, positions, options, failures))
        return dict(sorted(inputs.items()))
