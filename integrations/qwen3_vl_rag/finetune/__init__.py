r"""Fine-tuning: training data read and checked whole, hard negatives mined from an index.

Framework-free; importing it loads neither torch nor peft.

Example:
    >>> import json
    >>> from pathlib import Path
    >>> from qwen3_vl_rag.finetune import read_training_file, split_held_out
    >>> rows = [{"query": f"chart {i}", "positives": {"image": "chart.png"}} for i in range(10)]
    >>> _ = Path("train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    >>> train, held_out = split_held_out(read_training_file("train.jsonl"), fraction=0.1)
    >>> len(train), len(held_out)
    (9, 1)
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

__all__ = [
    "MiningQuery",
    "MiningResult",
    "TrainingExample",
    "mine_hard_negatives",
    "read_mining_queries",
    "read_training_file",
    "select_negatives",
    "split_held_out",
]
