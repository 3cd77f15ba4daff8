"""The engine's forward pass with gradients, for fine-tuning.

Training must see exactly what inference sees: the same prompts, tokens, truncation, resized
pixels and pooled position. So the sequences come from the engines' own encoders
(:meth:`Qwen3VLEmbedder._sequences`, :meth:`Qwen3VLReranker._pair_sequences`) and the batch from
the same :func:`~qwen3_vl_rag.engine._collate.collate`; only ``inference_mode`` is left out.
A test compares these states with :meth:`Qwen3VLEmbedder.embed` on the same items.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from qwen3_vl_rag.engine._backbone import Backbone
from qwen3_vl_rag.engine._collate import PixelLoader
from qwen3_vl_rag.engine._embedder import Qwen3VLEmbedder
from qwen3_vl_rag.engine._encoding import EncodedSequence, plan_items
from qwen3_vl_rag.engine._reranker import Qwen3VLReranker
from qwen3_vl_rag.errors import ConfigurationError
from qwen3_vl_rag.inputs import InputItem

if TYPE_CHECKING:
    import torch

__all__ = ["embedding_sequences", "pair_sequences", "pooled_states", "trained_backbone"]


def trained_backbone(engine: Qwen3VLEmbedder | Qwen3VLReranker) -> Backbone:
    """The in-process backbone of an engine; a served model cannot be trained here."""
    backbone = engine.backbone
    if not isinstance(backbone, Backbone):
        raise ConfigurationError(
            f"{engine.server} serves this model: fine-tune a local checkpoint (from_pretrained) "
            "and serve the merged result."
        )
    return backbone


def embedding_sequences(
    embedder: Qwen3VLEmbedder, items: Sequence[InputItem], instruction: str
) -> list[EncodedSequence]:
    """The embedder's model inputs for ``items``, as :meth:`Qwen3VLEmbedder.embed` builds them."""
    return embedder._sequences(items, instruction)


def pair_sequences(
    reranker: Qwen3VLReranker,
    pairs: Sequence[tuple[InputItem, InputItem]],
    instruction: str,
) -> list[EncodedSequence]:
    """The reranker's judge prompts for ``(query, document)`` pairs, as scoring builds them."""
    vision = trained_backbone(reranker).loaded.vision
    queries = plan_items([query for query, _ in pairs], vision)
    documents = plan_items([document for _, document in pairs], vision)
    return trained_backbone(reranker).encoder.encode_pairs(
        list(zip(queries, documents, strict=True)), instruction, reranker.max_length
    )


def pooled_states(backbone: Backbone, sequences: Sequence[EncodedSequence]) -> torch.Tensor:
    """Last-token hidden states of ``sequences`` in one forward pass, with gradients.

    Returns:
        ``(len(sequences), hidden)`` in the model's compute dtype, on its device.
    """
    import torch

    loader = PixelLoader(backbone.loaded.vision, sequences, workers=0)
    try:
        inputs = backbone._collate(sequences, list(range(len(sequences))), loader)
    finally:
        loader.close()
    # Right padding under causal attention: real tokens never see the pads after them (the
    # inference path relies on the same fact), so no mask is passed here either.
    hidden = backbone.loaded.model(
        input_ids=inputs.input_ids,
        mm_token_type_ids=inputs.mm_token_type_ids,
        use_cache=False,
        **inputs.pixels,
    ).last_hidden_state
    last = inputs.attention_mask.sum(dim=1) - 1
    pooled: torch.Tensor = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    return pooled
