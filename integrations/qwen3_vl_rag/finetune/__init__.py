r"""Fine-tune Qwen3-VL-Embedding and Qwen3-VL-Reranker on your own documents (LoRA, peft).

Training data is read and checked whole before any model loads (:func:`read_training_file`), or
mined from an existing index with the technical report's hard-negative filter
(:func:`mine_hard_negatives`). Training formats its inputs with the engines' own code, so a
fine-tuned model sees in training exactly the prompts, tokens and pixels it sees at inference.
The result is a checkpoint laid out like the one it started from: ``from_pretrained``, the index
and vLLM load it unchanged.

Importing this package loads neither torch nor peft.

Example:
    >>> import json
    >>> from pathlib import Path
    >>> from qwen3_vl_rag.finetune import (
    ...     TrainingSettings, finetune_embedder, read_training_file, split_held_out)
    >>> rows = [{"query": f"chart {i}", "positives": {"image": "chart.png"}} for i in range(10)]
    >>> _ = Path("train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    >>> train, held_out = split_held_out(read_training_file("train.jsonl"), fraction=0.1)
    >>> len(train), len(held_out)
    (9, 1)
    >>> result = finetune_embedder("Qwen/Qwen3-VL-Embedding-2B", train, "tuned",
    ...                            settings=TrainingSettings(steps=2, batch_size=2))
    >>> result.steps, result.model_dir.name, result.adapter_dir.name
    (2, 'model', 'adapter')
"""

from __future__ import annotations

from qwen3_vl_rag.finetune._data import TrainingExample, read_training_file, split_held_out
from qwen3_vl_rag.finetune._mining import (
    MiningQuery,
    MiningResult,
    mine_hard_negatives,
    read_mining_queries,
    select_negatives,
)
from qwen3_vl_rag.finetune._settings import (
    LoraSettings,
    TrainingPrecision,
    TrainingSettings,
    default_matryoshka_dims,
)
from qwen3_vl_rag.finetune._trainer import FinetuneResult, finetune_embedder, finetune_reranker

__all__ = [
    "FinetuneResult",
    "LoraSettings",
    "MiningQuery",
    "MiningResult",
    "TrainingExample",
    "TrainingPrecision",
    "TrainingSettings",
    "default_matryoshka_dims",
    "finetune_embedder",
    "finetune_reranker",
    "mine_hard_negatives",
    "read_mining_queries",
    "read_training_file",
    "select_negatives",
    "split_held_out",
]
