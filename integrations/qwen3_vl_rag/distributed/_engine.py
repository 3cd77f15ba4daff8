"""How each worker of a cluster loads its embedder: the same model and settings as the index's.

A worker cannot be handed the driver's model (gigabytes, and maybe another device), so it is
handed a recipe: the checkpoint (a Hub id, or a folder every node sees at the same path) or the
vLLM server, with the options that change vectors. :meth:`WorkerEngine.like` derives the recipe
from the embedder the index was opened with; the index then checks each worker's settings
against its own before it writes a vector (a node holding another model is refused).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from qwen3_vl_rag.errors import ConfigurationError

if TYPE_CHECKING:
    from qwen3_vl_rag.engine import Qwen3VLEmbedder

__all__ = ["WorkerEngine"]

# Loading options that change no vector: left to each worker (its own device and memory).
_PER_WORKER = ("device", "batch_tokens", "decode_workers", "vision_cache_bytes")


@dataclass(frozen=True)
class WorkerEngine:
    """The embedder each worker loads: a checkpoint with options, or a vLLM server.

    Args:
        model: A Hub id or a local folder (at the same path on every node); for ``"server"``,
            the checkpoint the client reads its tokenizer from (``None``: the server's).
        source: ``"pretrained"`` (the model runs in the worker, on its CPU or GPU share) or
            ``"server"`` (the worker sends the forward pass to ``url``).
        url: The vLLM server, for ``"server"``.
        options: Keyword options of ``Qwen3VLEmbedder.from_pretrained`` (``dtype``,
            ``max_pixels``...) or ``from_server``.

    Example:
        >>> from qwen3_vl_rag import Qwen3VLEmbedder
        >>> from qwen3_vl_rag.distributed import WorkerEngine
        >>> engine = WorkerEngine("Qwen/Qwen3-VL-Embedding-2B", options={"dtype": "bfloat16"})
        >>> engine
        WorkerEngine(model='Qwen/Qwen3-VL-Embedding-2B', source='pretrained', url=None)
        >>> embedder = Qwen3VLEmbedder.from_pretrained("Qwen/Qwen3-VL-Embedding-2B")
        >>> WorkerEngine.like(embedder).options["dtype"]  # the index's own precision
        'float32'
    """

    model: str | None
    source: Literal["pretrained", "server"] = "pretrained"
    url: str | None = None
    options: dict[str, Any] = field(default_factory=dict, repr=False)  # may hold a token

    def __post_init__(self) -> None:
        if self.source not in ("pretrained", "server"):
            raise ConfigurationError(
                f"WorkerEngine source must be 'pretrained' or 'server', got {self.source!r}."
            )
        if self.source == "server" and not self.url:
            raise ConfigurationError("WorkerEngine(source='server') needs the server's url.")
        if self.source == "pretrained" and not self.model:
            raise ConfigurationError("WorkerEngine needs the model: a Hub id or a folder.")

    @classmethod
    def like(cls, embedder: Qwen3VLEmbedder) -> WorkerEngine:
        """The recipe for ``embedder``'s model, precision, budgets and instructions.

        Each worker picks its own device (a GPU when it was given one) and batch size; the
        precision is the embedder's, so the vectors are the ones this process would compute.
        """
        loaded = embedder.backbone.loaded
        vision = embedder.vision
        options: dict[str, Any] = {
            "min_pixels": vision.min_pixels,
            "max_pixels": vision.max_pixels,
            "total_pixels": vision.total_pixels,
            "fps": vision.fps,
            "max_frames": vision.max_frames,
            "max_length": embedder.max_length,
            "query_instruction": embedder.query_instruction,
            "document_instruction": embedder.document_instruction,
        }
        if loaded.server:
            backbone: Any = embedder.backbone
            # the worker's client must authenticate as this one does (the key is never shown)
            options["api_key"] = getattr(backbone.client, "_api_key", None)
            options["served_model"] = backbone.served.name
            options = {k: v for k, v in options.items() if v is not None}
            return cls(loaded.source, source="server", url=loaded.server, options=options)
        location = loaded.location
        model = location.name if location is not None else loaded.source
        hub = loaded.hub
        options.update(
            dtype=str(loaded.dtype).removeprefix("torch."),
            revision=hub.revision,
            cache_dir=os.fspath(hub.cache_dir) if hub.cache_dir is not None else None,
            local_files_only=hub.local_files_only,
            token=hub.token,
        )
        return cls(model, options={k: v for k, v in options.items() if v is not None})

    def with_options(self, **changes: Any) -> WorkerEngine:
        """The same recipe with some options changed (``dtype="bfloat16"`` on GPU workers)."""
        return WorkerEngine(self.model, self.source, self.url, {**self.options, **changes})

    def load(self, *, device: str | None = None) -> Qwen3VLEmbedder:
        """Load the embedder (in a worker).

        Args:
            device: Where it runs, unless the options name one (``None``: ``"auto"``).
        """
        from qwen3_vl_rag.engine import Qwen3VLEmbedder

        options = dict(self.options)
        if self.source == "server":
            assert self.url is not None
            options = {k: v for k, v in options.items() if k not in _PRETRAINED_ONLY}
            return Qwen3VLEmbedder.from_server(self.url, model=self.model, **options)
        assert self.model is not None
        if device is not None:
            options.setdefault("device", device)
        return Qwen3VLEmbedder.from_pretrained(self.model, **options)

    def describe(self) -> str:
        """A short name for messages (never the token)."""
        return f"the server {self.url}" if self.source == "server" else f"the model {self.model}"


# from_server reads its budgets from the checkpoint and the server; these it does not take
_PRETRAINED_ONLY = frozenset(
    {*_PER_WORKER, "dtype", "revision", "cache_dir", "local_files_only", "token"}
)
