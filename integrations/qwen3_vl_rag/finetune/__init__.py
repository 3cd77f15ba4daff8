"""Fine-tune Qwen3-VL-Embedding and Qwen3-VL-Reranker on your own documents (LoRA, peft).

Training formats its inputs with the engines' own code, so a fine-tuned model sees in training
exactly the prompts, tokens and pixels it sees at inference. The result is a checkpoint laid out
like the one it started from: ``from_pretrained``, the index and vLLM load it unchanged.

Example:
    >>> from qwen3_vl_rag.finetune import TrainingSettings, finetune_embedder, read_training_file
    >>> examples = read_training_file("train.jsonl")
    >>> result = finetune_embedder("Qwen/Qwen3-VL-Embedding-2B", examples, "tuned",
    ...                            settings=TrainingSettings(steps=2, batch_size=2))
    >>> sorted(p.name for p in result.model_dir.iterdir())[:2]
    ['chat_template.json', 'config.json']
"""

from __future__ import annotations

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
    "TrainingPrecision",
    "TrainingSettings",
    "default_matryoshka_dims",
    "finetune_embedder",
    "finetune_reranker",
]
