"""Indexing on a Ray cluster: render and embed on many workers, write from one.

``MultimodalIndex.index(paths, cluster=RayCluster(...))`` (command line: ``qwen3-vl-rag index
PATH --ray [ADDRESS]``) keeps the index's guarantees while Ray Data runs the work: this process
lists and hashes files through the manifest and writes every batch; rendering tasks draw pages
and images through the media layer (its budgets and worker processes); an actor pool, each
actor holding one embedder (a model on its CPU or GPU share, or a vLLM server), embeds them.
Needs the ``ray`` extra: ``pip install "qwen3-vl-rag[ray]"``. Importing this package does not
import Ray; connecting does.

Example:
    >>> from qwen3_vl_rag import MultimodalIndex, Qwen3VLEmbedder
    >>> from qwen3_vl_rag.distributed import RayCluster
    >>> embedder = Qwen3VLEmbedder.from_pretrained("Qwen/Qwen3-VL-Embedding-2B")
    >>> with MultimodalIndex("my-index", embedder) as index:  # doctest: +SKIP
    ...     report = index.index(["documents/"], cluster=RayCluster("auto", gpus_per_actor=1))
    >>> report.complete  # doctest: +SKIP
    True
"""

from __future__ import annotations

from ._cluster import RayCluster
from ._engine import WorkerEngine

__all__ = ["RayCluster", "WorkerEngine"]
