"""The training objectives of the Qwen3-VL technical report (arXiv 2601.04720).

Embedder: InfoNCE. Each query scores its positive against every other candidate of the batch:
the other queries' positives, every hard negative, and the other queries themselves (the
report's in-batch terms). A candidate that scores above the positive by more than a margin is
probably another relevant document (a false negative) and is masked out. The loss is averaged
over a set of Matryoshka dimensions: each prefix, re-normalised, is trained to work alone.

Reranker: cross-entropy over the two answers, "yes" for a positive pair and "no" for a negative
one. With the score head ``w_yes - w_no`` the two-way softmax is ``sigmoid(h . (w_yes - w_no))``,
the score inference reports, so the loss is binary cross-entropy on that logit.

Example:
    >>> import torch
    >>> from qwen3_vl_rag.finetune._losses import contrastive_loss
    >>> queries = torch.eye(4)
    >>> documents = torch.eye(4)  # each query's positive is its own direction
    >>> loss = contrastive_loss(queries, documents, torch.empty(0, 4),
    ...                         temperature=0.05, dims=(4,), margin=0.1)
    >>> round(float(loss), 4)
    0.0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["contrastive_loss", "yes_no_loss"]


def contrastive_loss(
    queries: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    *,
    temperature: float,
    dims: Sequence[int],
    margin: float,
) -> torch.Tensor:
    """InfoNCE with in-batch and hard negatives, a false-negative mask, over Matryoshka dims.

    Args:
        queries: ``(B, H)`` pooled query states (not normalised).
        positives: ``(B, H)`` pooled states of each query's positive.
        negatives: ``(N, H)`` pooled states of every hard negative of the batch; each is a
            candidate for every query (another query's hard negatives are in-batch ones).
        temperature: Softmax temperature on cosine similarities.
        dims: Matryoshka prefix sizes; the loss is their mean.
        margin: A candidate scoring above the positive by more than this is masked out.
    """
    import torch
    import torch.nn.functional as F

    batch = queries.shape[0]
    losses = []
    for dim in dims:
        q = F.normalize(queries[:, :dim].float(), dim=-1)
        d = F.normalize(torch.cat([positives, negatives])[:, :dim].float(), dim=-1)
        to_documents = q @ d.T  # (B, B + N): column i is query i's positive
        to_queries = q @ q.T  # (B, B): the report's query-query in-batch terms
        positive = to_documents[torch.arange(batch), torch.arange(batch)]
        threshold = (positive + margin).detach().unsqueeze(1)
        own = torch.zeros_like(to_documents, dtype=torch.bool)
        own[torch.arange(batch), torch.arange(batch)] = True
        documents_masked = (to_documents.detach() > threshold) & ~own
        queries_masked = (to_queries.detach() > threshold) | torch.eye(
            batch, dtype=torch.bool, device=q.device
        )
        logits = torch.cat(
            [
                to_documents.masked_fill(documents_masked, float("-inf")),
                to_queries.masked_fill(queries_masked, float("-inf")),
            ],
            dim=1,
        )
        target = torch.arange(batch, device=q.device)
        losses.append(F.cross_entropy(logits / temperature, target))
    return torch.stack(losses).mean()


def yes_no_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the "yes" (label 1) / "no" (label 0) answer from ``l_yes - l_no``."""
    import torch.nn.functional as F

    return F.binary_cross_entropy_with_logits(logits.float(), labels.float())
