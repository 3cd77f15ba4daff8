"""What one training step computes for each model, and how each model is evaluated on held-out rows.

Both objectives build their model inputs with the engines' own encoders (see
:mod:`qwen3_vl_rag.engine._training`), so a fine-tuned model is trained on exactly the prompts,
tokens and pixels it will see at inference. Held-out evaluation runs the real inference path
(:meth:`Qwen3VLEmbedder.embed_queries`, :meth:`Qwen3VLReranker.score`) on the model being trained.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from qwen3_vl_rag.engine._training import (
    embedding_sequences,
    pair_sequences,
    pooled_states,
    trained_backbone,
)
from qwen3_vl_rag.finetune._losses import contrastive_loss, yes_no_loss
from qwen3_vl_rag.inputs import InputItem, MultimodalInput

if TYPE_CHECKING:
    import torch

    from qwen3_vl_rag.engine._embedder import Qwen3VLEmbedder
    from qwen3_vl_rag.engine._reranker import Qwen3VLReranker

__all__ = ["EmbeddingObjective", "Example", "Objective", "RerankingObjective", "held_out_run"]

#: Measures reported by the held-out evaluation.
HELD_OUT_MEASURES = ("nDCG@10", "R@1", "R@5", "RR@10")
#: Candidates a held-out query is ranked against by the reranker: its own documents and the
#: positives of this many other held-out rows.
_RERANK_DISTRACTORS = 7


class Example(Protocol):
    """One training row: a query, its positives, its hard negatives, an optional instruction."""

    @property
    def query(self) -> MultimodalInput: ...
    @property
    def positives(self) -> tuple[MultimodalInput, ...]: ...
    @property
    def negatives(self) -> tuple[MultimodalInput, ...]: ...
    @property
    def instruction(self) -> str | None: ...


class Objective(Protocol):
    """A model's loss on a batch of examples and its held-out evaluation."""

    def loss(self, batch: Sequence[Example], rng: random.Random) -> torch.Tensor: ...

    def run(self, held_out: Sequence[Example]) -> dict[str, dict[str, float]]: ...


@dataclass
class EmbeddingObjective:
    """InfoNCE with in-batch and hard negatives over Matryoshka dimensions."""

    embedder: Qwen3VLEmbedder
    temperature: float
    dims: tuple[int, ...]
    margin: float
    hard_negatives: int

    def loss(self, batch: Sequence[Example], rng: random.Random) -> torch.Tensor:
        """The batch's contrastive loss (one positive per example, chosen by ``rng``)."""
        backbone = trained_backbone(self.embedder)
        queries = [_with_instruction(e.query, e.instruction) for e in batch]
        positives = [e.positives[rng.randrange(len(e.positives))] for e in batch]
        negatives = [n for e in batch for n in e.negatives[: self.hard_negatives]]
        q = pooled_states(
            backbone, embedding_sequences(self.embedder, queries, self.embedder.query_instruction)
        )
        d = pooled_states(
            backbone,
            embedding_sequences(
                self.embedder, [*positives, *negatives], self.embedder.document_instruction
            ),
        )
        return contrastive_loss(
            q,
            d[: len(batch)],
            d[len(batch) :],
            temperature=self.temperature,
            dims=self.dims,
            margin=self.margin,
        )

    def run(self, held_out: Sequence[Example]) -> dict[str, dict[str, float]]:
        """Each held-out query's documents ranked among every held-out document, by cosine."""
        corpus, qrels, _ = _held_out_corpus(held_out)
        queries = [_with_instruction(e.query, e.instruction) for e in held_out]
        q = self.embedder.embed_queries(queries)
        d = self.embedder.embed_documents(list(corpus.values()))
        scores = q @ d.T
        ids = list(corpus)
        run = {
            qid: {ids[j]: float(scores[i, j]) for j in np.argsort(-scores[i])[:100]}
            for i, qid in enumerate(qrels)
        }
        return held_out_run(run, qrels)


@dataclass
class RerankingObjective:
    """Yes/no cross-entropy on the judge prompt: positives "yes", hard negatives "no"."""

    reranker: Qwen3VLReranker
    hard_negatives: int

    def loss(self, batch: Sequence[Example], rng: random.Random) -> torch.Tensor:
        """Binary cross-entropy of ``l_yes - l_no`` over the batch's labelled pairs.

        A row without hard negatives gets another row's positive as its negative (in-batch).
        """
        import torch

        pairs: list[tuple[InputItem, InputItem]] = []
        labels: list[float] = []
        instructions: list[str] = []
        for position, example in enumerate(batch):
            instruction = example.instruction or self.reranker.instruction
            positive = example.positives[rng.randrange(len(example.positives))]
            negatives = list(example.negatives[: self.hard_negatives])
            if not negatives:
                other = batch[(position + 1 + rng.randrange(len(batch) - 1)) % len(batch)]
                negatives = [other.positives[0]]
            for document, label in [(positive, 1.0), *((n, 0.0) for n in negatives)]:
                pairs.append((example.query, document))
                labels.append(label)
                instructions.append(instruction)
        groups: dict[str, list[int]] = {}  # one encoder call per instruction
        for position, instruction in enumerate(instructions):
            groups.setdefault(instruction, []).append(position)
        sequences = []
        order: list[int] = []
        for instruction, positions in groups.items():
            chosen = [pairs[p] for p in positions]
            sequences.extend(pair_sequences(self.reranker, chosen, instruction))
            order.extend(positions)
        hidden = pooled_states(trained_backbone(self.reranker), sequences)
        logits = hidden @ self.reranker._head().to(hidden.dtype)
        target = torch.tensor([labels[p] for p in order], device=logits.device)
        return yes_no_loss(logits, target)

    def run(self, held_out: Sequence[Example]) -> dict[str, dict[str, float]]:
        """Each held-out query's documents ranked by the reranker among a few other rows' ones."""
        corpus, qrels, documents_of = _held_out_corpus(held_out)
        run: dict[str, dict[str, float]] = {}
        for position, (qid, example) in enumerate(zip(qrels, held_out, strict=True)):
            others = [
                documents_of[(position + step) % len(held_out)][0]
                for step in range(1, min(_RERANK_DISTRACTORS, len(held_out) - 1) + 1)
            ]
            candidates = list(dict.fromkeys([*documents_of[position], *others]))
            scores = self.reranker.score(
                example.query,
                [corpus[c] for c in candidates],
                instruction=example.instruction or None,
            )
            run[qid] = dict(zip(candidates, scores, strict=True))
        return held_out_run(run, qrels)


def held_out_run(
    run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]
) -> dict[str, dict[str, float]]:
    """The held-out measures of a run, averaged over its queries, under ``"mean"``."""
    from qwen3_vl_rag.evaluate import score_run

    return {"mean": score_run(run, qrels, HELD_OUT_MEASURES)}


def _with_instruction(item: MultimodalInput, instruction: str | None) -> MultimodalInput:
    if instruction is None or item.instruction is not None:
        return item
    return MultimodalInput(
        text=item.text, images=item.images, video=item.video, instruction=instruction
    )


def _held_out_corpus(
    held_out: Sequence[Example],
) -> tuple[dict[str, MultimodalInput], dict[str, dict[str, int]], list[list[str]]]:
    """The held-out documents (each distinct one once), qrels, and each row's document ids."""
    corpus: dict[str, MultimodalInput] = {}
    ids: dict[object, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    documents_of: list[list[str]] = []
    for row, example in enumerate(held_out):
        own = []
        for document in (*example.positives, *example.negatives):
            key = _identity(document)
            if key not in ids:
                ids[key] = f"d{len(ids)}"
                corpus[ids[key]] = document
            own.append(ids[key])
        documents_of.append(list(dict.fromkeys(own)))
        qrels[f"q{row}"] = {ids[_identity(p)]: 1 for p in example.positives}
    return corpus, qrels, documents_of


def _identity(item: MultimodalInput) -> object:
    """Items naming the same text and files are one document; anything else is itself."""
    if all(isinstance(image, (str, os.PathLike)) for image in item.images) and item.video is None:
        return (item.text, tuple(os.fspath(image) for image in item.images))  # type: ignore[arg-type]
    return id(item)
