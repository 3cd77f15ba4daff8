"""Index a folder on the session's Ray cluster in a process of its own, to be SIGKILLed.

Usage: ``python _ray_driver.py INDEX_DIR CORPUS_DIR CHECKPOINT_DIR RAY_ADDRESS``. Items go to Ray
six at a time and come back one per batch, so they are written one after another while the
parent watches the manifest.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str]) -> int:
    from qwen3_vl_rag import Qwen3VLEmbedder
    from qwen3_vl_rag.distributed import RayCluster
    from qwen3_vl_rag.index import MultimodalIndex

    index_dir, corpus, checkpoint, address = argv[1:5]
    embedder = Qwen3VLEmbedder.from_pretrained(checkpoint, device="cpu", dtype="float32")
    cluster = RayCluster(address, actors=1, batch_size=1, render_batch=1, window=6)
    with MultimodalIndex(index_dir, embedder, workers=1) as index:
        report = index.index([corpus], cluster=cluster)
        print(json.dumps({**report.counts(), "embedded": report.embedded}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
