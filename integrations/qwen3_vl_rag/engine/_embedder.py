"""``Qwen3VLEmbedder``: text, images, video and mixes into one vector space."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from qwen3_vl_rag.engine import _prompts as prompts
from qwen3_vl_rag.engine._backbone import Backbone, HoldsBackbone
from qwen3_vl_rag.engine._encoding import EncodedSequence, ItemPlan, plan_items
from qwen3_vl_rag.engine._loading import PretrainedOptions, check_options
from qwen3_vl_rag.engine._quantize import (
    Precision,
    QuantizationCalibration,
    check_dimension,
    check_precision,
    quantize_embeddings,
    truncate_embeddings,
)
from qwen3_vl_rag.errors import ConfigurationError
from qwen3_vl_rag.inputs import InputItem

if TYPE_CHECKING:
    import torch
    from typing_extensions import Unpack

    from qwen3_vl_rag.engine._remote import RemoteBackbone, ServerOptions


__all__ = ["Qwen3VLEmbedder"]


class Qwen3VLEmbedder(HoldsBackbone):
    """Embeds text, images, screenshots, PDF pages, video and mixes with Qwen3-VL-Embedding.

    Produces exactly the official implementation's vectors (same prompt, preprocessing, pooling and
    normalisation) while batching by tokens, so mixed workloads run several times faster.

    Use :meth:`from_pretrained` to load a checkpoint.

    Example:
        >>> from pathlib import Path
        >>> from qwen3_vl_rag import Qwen3VLEmbedder, MultimodalInput
        >>> embedder = Qwen3VLEmbedder.from_pretrained("Qwen/Qwen3-VL-Embedding-2B")
        >>> docs = embedder.embed_documents([
        ...     "Revenue grew 12% in Q3.",
        ...     Path("report/page-3.png"),
        ...     MultimodalInput(text="Q3 chart", images=[Path("chart.png")]),
        ... ])
        >>> query = embedder.embed_queries(["quarterly revenue chart"])
        >>> scores = query @ docs.T  # cosine similarities (vectors are L2-normalised)
    """

    def __init__(
        self,
        backbone: Backbone | RemoteBackbone,
        *,
        max_length: int = 8192,
        query_instruction: str = prompts.DEFAULT_QUERY_INSTRUCTION,
        document_instruction: str = prompts.DEFAULT_DOCUMENT_INSTRUCTION,
    ) -> None:
        if max_length < 32:
            raise ConfigurationError(f"max_length must be at least 32, got {max_length}.")
        self.backbone = backbone
        self.max_length = max_length
        self.query_instruction = query_instruction
        self.document_instruction = document_instruction

    @classmethod
    def from_pretrained(
        cls,
        model_id_or_path: str | os.PathLike[str],
        *,
        max_length: int = 8192,
        query_instruction: str = prompts.DEFAULT_QUERY_INSTRUCTION,
        document_instruction: str = prompts.DEFAULT_DOCUMENT_INSTRUCTION,
        **options: Unpack[PretrainedOptions],
    ) -> Qwen3VLEmbedder:
        """Load a Qwen3-VL-Embedding checkpoint (2B or 8B) from the Hub or a local directory.

        Args:
            model_id_or_path: A Hub id such as ``"Qwen/Qwen3-VL-Embedding-2B"`` or a local path.
            max_length: Tokens per item; longer text is cut from its end, never the vision
                tokens nor the pooled suffix.
            query_instruction: Instruction used by :meth:`embed_queries` by default.
            document_instruction: Instruction used by :meth:`embed` and :meth:`embed_documents`.
            **options: How to load and run it, the same for the reranker: ``device``,
                ``dtype``, ``attn_implementation``, the pixel and frame budgets
                (``min_pixels``, ``max_pixels``, ``total_pixels``, ``fps``, ``max_frames``),
                ``batch_tokens``, ``decode_workers``, the memory for vision encodings kept
                between calls (``vision_cache_bytes``: off by default for the embedder, which
                usually sees each page once), and where to find it (``revision``,
                ``cache_dir``, ``local_files_only``, ``token``); see
                :class:`~qwen3_vl_rag.PretrainedOptions` for each one and its default.

        Raises:
            ModelLoadError: When the checkpoint cannot be found or loaded; the message says
                why (not in the cache while offline, the Hub unreachable, no such model...).
            TypeError: For a keyword that is not an option.

        Example:
            >>> embedder = Qwen3VLEmbedder.from_pretrained(
            ...     "Qwen/Qwen3-VL-Embedding-2B", device="cpu", max_pixels=602112, batch_tokens=4096
            ... )
            >>> embedder.vision.max_pixels, embedder.backbone.batch_tokens
            (602112, 4096)
        """
        check_options(options, "from_pretrained")
        # indexing sees each page once: kept encodings would only hold memory (opt in to reuse)
        options = {"vision_cache_bytes": 0, **options}
        return cls(
            Backbone.from_pretrained(model_id_or_path, options),
            max_length=max_length,
            query_instruction=query_instruction,
            document_instruction=document_instruction,
        )

    @classmethod
    def from_server(
        cls,
        url: str,
        *,
        model: str | os.PathLike[str] | None = None,
        served_model: str | None = None,
        api_key: str | None = None,
        max_length: int | None = None,
        query_instruction: str = prompts.DEFAULT_QUERY_INSTRUCTION,
        document_instruction: str = prompts.DEFAULT_DOCUMENT_INSTRUCTION,
        **options: Unpack[ServerOptions],
    ) -> Qwen3VLEmbedder:
        """Use a Qwen3-VL-Embedding model that a vLLM server runs, with the official numbers.

        Only the forward pass runs on the server. Prompts, the instruction rule, truncation,
        image decoding and resizing, normalising, Matryoshka ``dim`` and quantization run here,
        in the same code as :meth:`from_pretrained`, so the vectors are the in-process ones (to
        about 1e-6 in float32). Start the server with ``qwen3-vl-rag serve``; connecting checks
        that it runs the model with the flags this needs. Video is refused (vLLM samples frames
        itself); text and images of any mix are exact.

        Args:
            url: The server, e.g. ``"http://127.0.0.1:8000"`` (or ending in ``/v1``).
            model: The checkpoint the client reads its tokenizer and image geometry from (a few
                MB): a Hub id or a local folder. Defaults to the one the server was started with.
                A server running another model is refused.
            served_model: The server's name for the model, when it serves it under another name
                than ``model`` (``--served-model-name``) or serves several.
            api_key: Sent as a bearer token (vLLM's ``--api-key``); never shown or logged.
            max_length: Tokens per item (default: 8192, or the server's ``--max-model-len`` when
                lower). More than the server's limit is refused.
            query_instruction: Instruction used by :meth:`embed_queries` by default.
            document_instruction: Instruction used by :meth:`embed` and :meth:`embed_documents`.
            **options: Pixel and frame budgets, request packing and HTTP settings (``timeout``,
                ``max_retries``, ``max_concurrency``, ``batch_tokens``), and where to find the
                tokenizer; see :class:`~qwen3_vl_rag.ServerOptions`.

        Raises:
            ServerUnreachableError: Nothing answers at ``url`` (the message names it).
            ServerConfigurationError: The server runs another model, or lacks a flag parity
                needs (the message names the flag).
            ModelLoadError: The checkpoint's tokenizer files cannot be read.

        Example:
            >>> from qwen3_vl_rag import Qwen3VLEmbedder
            >>> embedder = Qwen3VLEmbedder.from_server("http://127.0.0.1:8000")  # doctest: +SKIP
            >>> embedder.server  # doctest: +SKIP
            'http://127.0.0.1:8000'
            >>> embedder.embed_documents(["Revenue grew."], dim=256).shape  # doctest: +SKIP
            (1, 256)
        """
        from qwen3_vl_rag.engine._remote import RemoteBackbone, ServerOptions

        check_options(options, "from_server", ServerOptions)
        backbone = RemoteBackbone.connect(
            url,
            "embedding",
            model=model,
            served_model=served_model,
            api_key=api_key,
            options=options,
        )
        return cls(
            backbone,
            max_length=backbone.max_length_within(max_length, 8192),
            query_instruction=query_instruction,
            document_instruction=document_instruction,
        )

    # -- properties ------------------------------------------------------------------------------

    @property
    def dimension(self) -> int:
        """Size of the full embeddings (2048 for the 2B model, 4096 for the 8B)."""
        return self.backbone.hidden_size

    def __repr__(self) -> str:
        return (
            f"Qwen3VLEmbedder(model={self.model_id!r}, dimension={self.dimension}, "
            f"{self._runs_where()})"
        )

    # -- embedding -------------------------------------------------------------------------------

    def embed(
        self,
        items: Sequence[InputItem],
        *,
        instruction: str | None = None,
        dim: int | None = None,
        precision: Precision = "float32",
        normalize: bool = True,
        calibration: QuantizationCalibration | None = None,
        batch_tokens: int | None = None,
        show_progress: bool = False,
    ) -> np.ndarray:
        """Embed items; one row per item, in input order.

        Args:
            items: Text (``str``), images (PIL, ``pathlib.Path``, bytes, arrays), videos
                (:class:`~qwen3_vl_rag.Video`), or :class:`~qwen3_vl_rag.MultimodalInput` mixes.
            instruction: System instruction for every item (an item's own ``instruction`` wins).
                Defaults to the document instruction, "Represent the user's input.". A trailing
                period is added when it does not end with punctuation, as the official code does.
            dim: Keep the first ``dim`` dimensions (Matryoshka, 32 up to :attr:`dimension`),
                re-normalised when ``normalize`` is true.
            precision: ``"float32"``, ``"float16"``, ``"int8"``, ``"uint8"``, ``"binary"`` or
                ``"ubinary"`` (packed bits); see :mod:`qwen3_vl_rag.engine._quantize`.
            normalize: L2-normalise the vectors (the official default).
            calibration: Value ranges for ``int8``/``uint8`` (required for them).
            batch_tokens: Padded tokens per forward pass, for this call only.
            show_progress: Show a progress bar.

        Returns:
            An array of shape ``(len(items), dim or dimension)`` (``dim / 8`` bytes per row for the
            binary precisions).

        Raises:
            InputError: For an item that cannot be used; its ``item_index`` names it. No item is
                ever replaced by a placeholder vector.
            ConfigurationError: For an invalid ``dim``, ``precision`` or missing calibration.
        """
        check_dimension(dim, self.dimension)  # before touching any file
        check_precision(precision, calibration)
        sequences = self._sequences(items, instruction)
        from tqdm.auto import tqdm

        with tqdm(
            total=len(sequences), desc="Embedding", unit="item", disable=not show_progress
        ) as bar:
            hidden = self.backbone.last_hidden_states(
                sequences, batch_tokens=batch_tokens, progress=bar
            )
        return _finish(hidden, dim, normalize, precision, calibration)

    async def aembed(
        self,
        items: Sequence[InputItem],
        *,
        instruction: str | None = None,
        dim: int | None = None,
        precision: Precision = "float32",
        normalize: bool = True,
        calibration: QuantizationCalibration | None = None,
        batch_tokens: int | None = None,
    ) -> np.ndarray:
        """:meth:`embed` for asyncio code: the event loop stays free while it runs.

        A server engine (:meth:`from_server`) sends its requests concurrently without a
        thread per request; an in-process one runs in a worker thread.

        Example:
            >>> import asyncio
            >>> from qwen3_vl_rag import Qwen3VLEmbedder
            >>> embedder = Qwen3VLEmbedder.from_pretrained("Qwen/Qwen3-VL-Embedding-2B")
            >>> asyncio.run(embedder.aembed(["a text"])).shape == (1, embedder.dimension)
            True
        """
        check_dimension(dim, self.dimension)
        check_precision(precision, calibration)
        sequences = await asyncio.to_thread(self._sequences, items, instruction)
        backbone = self.backbone
        if isinstance(backbone, Backbone):
            hidden = await asyncio.to_thread(
                backbone.last_hidden_states, sequences, batch_tokens=batch_tokens
            )
        else:
            hidden = await backbone.alast_hidden_states(sequences, batch_tokens=batch_tokens)
        return _finish(hidden, dim, normalize, precision, calibration)

    async def aembed_queries(
        self, items: Sequence[InputItem], *, instruction: str | None = None, **kwargs: Any
    ) -> np.ndarray:
        """:meth:`embed_queries` for asyncio code (keyword arguments of :meth:`aembed`)."""
        return await self.aembed(items, instruction=instruction or self.query_instruction, **kwargs)

    async def aembed_documents(
        self, items: Sequence[InputItem], *, instruction: str | None = None, **kwargs: Any
    ) -> np.ndarray:
        """:meth:`embed_documents` for asyncio code (keyword arguments of :meth:`aembed`)."""
        return await self.aembed(
            items, instruction=instruction or self.document_instruction, **kwargs
        )

    def embed_queries(
        self, items: Sequence[InputItem], *, instruction: str | None = None, **kwargs: Any
    ) -> np.ndarray:
        """Embed search queries with the query instruction.

        The default is "Retrieve images or text relevant to the user's query."; pass a task
        instruction such as "Find a document image that matches the given query." to focus it.
        Other keyword arguments are those of :meth:`embed`.
        """
        return self.embed(items, instruction=instruction or self.query_instruction, **kwargs)

    def embed_documents(
        self, items: Sequence[InputItem], *, instruction: str | None = None, **kwargs: Any
    ) -> np.ndarray:
        """Embed documents (the corpus side) with the document instruction.

        Other keyword arguments are those of :meth:`embed`.
        """
        return self.embed(items, instruction=instruction or self.document_instruction, **kwargs)

    def count_tokens(
        self, items: Sequence[InputItem], *, instruction: str | None = None
    ) -> list[int]:
        """Exact token count of each item's model input, computed without decoding pixels."""
        return [len(s) for s in self._sequences(items, instruction)]

    def format_prompt(self, item: InputItem, *, instruction: str | None = None) -> str:
        """The item's prompt as the model sees it, with vision placeholders not expanded."""
        (plan,) = plan_items([item], self.backbone.loaded.vision)
        default = prompts.normalize_instruction(instruction, self.document_instruction)
        return self.backbone.encoder.embedding_prompt(plan, self._instructions([plan], default)[0])

    # -- internals ---------------------------------------------------------------------------------

    @staticmethod
    def _instructions(plans: Sequence[ItemPlan], default: str) -> list[str]:
        return [
            prompts.normalize_instruction(p.instruction, default) if p.instruction else default
            for p in plans
        ]

    def _sequences(
        self, items: Sequence[InputItem], instruction: str | None
    ) -> list[EncodedSequence]:
        """Plan and tokenize the items (headers only, no pixels)."""
        plans = plan_items(items, self.backbone.loaded.vision)
        default = prompts.normalize_instruction(instruction, self.document_instruction)
        return self.backbone.encoder.encode_embeddings(
            plans, self._instructions(plans, default), self.max_length
        )


def _finish(
    hidden: torch.Tensor,
    dim: int | None,
    normalize: bool,
    precision: Precision,
    calibration: QuantizationCalibration | None,
) -> np.ndarray:
    """Pooled hidden states to the vectors asked for: truncated, normalised, quantized."""
    vectors = truncate_embeddings(hidden.numpy(), dim, normalize=normalize)
    return quantize_embeddings(vectors, precision, calibration)
