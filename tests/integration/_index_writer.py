"""Index a folder in a process of its own, for the crash-safety test that SIGKILLs it.

Usage: ``python _index_writer.py INDEX_DIR CORPUS_DIR CHECKPOINT_DIR [BATCH_ITEMS [DELAY]]``.
``DELAY`` seconds are spent in each embedding call (after the vectors are computed), so the
parent can kill the run part-way through; nothing else about indexing is changed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str]) -> int:
    from qwen3_vl_rag import Qwen3VLEmbedder
    from qwen3_vl_rag.index import MultimodalIndex

    index_dir, corpus, checkpoint = argv[1:4]
    batch_items = int(argv[4]) if len(argv) > 4 else 4
    delay = float(argv[5]) if len(argv) > 5 else 0.0
    embedder = Qwen3VLEmbedder.from_pretrained(checkpoint, device="cpu")
    embed_documents = embedder.embed_documents

    def slowed(items: Any, **kwargs: Any) -> Any:
        vectors = embed_documents(items, **kwargs)
        time.sleep(delay)
        return vectors

    if delay:
        embedder.embed_documents = slowed  # type: ignore[method-assign]
    with MultimodalIndex(index_dir, embedder, workers=1, batch_items=batch_items) as index:
        report = index.index([corpus])
        print(json.dumps({**report.counts(), "embedded": report.embedded}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
