"""``qwen3-vl-rag index --ray [ADDRESS]``: the options of a Ray run, translated to a RayCluster."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qwen3_vl_rag.distributed import RayCluster
    from qwen3_vl_rag.engine import Qwen3VLEmbedder

__all__ = ["add_ray_options", "ray_cluster"]

RAY_EPILOG = (
    "With --ray, Ray Data renders and embeds on a cluster while this process lists, hashes and "
    "writes (pip install 'qwen3-vl-rag[ray]'). Put --ray after the paths, or give it an "
    "address: `index docs/ --ray`, `index --ray auto docs/`. Every node needs qwen3-vl-rag and "
    "must see the files, and a local model folder, at the same paths."
)


def add_ray_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--ray`` and its settings to the ``index`` command."""
    group = parser.add_argument_group("Ray cluster (distributed indexing)")
    group.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="render and embed on a Ray cluster: 'auto' (the one `ray start` runs here), "
        "HOST:PORT or ray://HOST:PORT; alone, the cluster RAY_ADDRESS names, else a new local one",
    )
    group.add_argument(
        "--ray-actors",
        type=int,
        metavar="N",
        help="embedding actors, each holding one model (default: one per GPU share, else 1)",
    )
    group.add_argument(
        "--ray-cpus-per-actor",
        type=float,
        default=1.0,
        metavar="CPUS",
        help="CPUs each actor reserves (default 1)",
    )
    group.add_argument(
        "--ray-gpus-per-actor",
        type=float,
        metavar="GPUS",
        help="GPUs each actor reserves, e.g. 0.5 for two per GPU (default: 1 on a cluster with "
        "GPUs, else 0)",
    )
    group.add_argument(
        "--ray-batch-size",
        type=int,
        default=32,
        metavar="N",
        help="items per embedding call of an actor (default 32)",
    )


def ray_cluster(args: argparse.Namespace, embedder: Qwen3VLEmbedder) -> RayCluster | None:
    """The cluster the options ask for (``None`` without ``--ray``).

    Actors load this command's model with its budgets; with ``--dtype auto`` each resolves the
    precision on its own hardware (bfloat16 on a GPU), as this command would there.
    """
    if args.ray is None:
        return None
    from qwen3_vl_rag.distributed import RayCluster, WorkerEngine

    engine = WorkerEngine.like(embedder)
    if engine.source == "pretrained":
        engine = engine.with_options(dtype=args.dtype)
    return RayCluster(
        address=args.ray or None,
        actors=args.ray_actors,
        cpus_per_actor=args.ray_cpus_per_actor,
        gpus_per_actor=args.ray_gpus_per_actor,
        batch_size=args.ray_batch_size,
        engine=engine,
    )
