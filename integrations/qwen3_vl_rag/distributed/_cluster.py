"""``RayCluster``: an index's items embedded by Ray Data, with the index's guarantees kept.

The driver (the process that opened the index) lists and hashes files, describes their items
and skips what is unchanged or already recorded, exactly as a local run. The items still to
embed go to Ray in windows: a dataset of one row per item, mapped by rendering tasks, then by
an actor pool in which each actor holds one embedder, and streamed back to the driver, the
index's one writer, which writes and records each batch as it arrives. So:

* a batch is recorded only after the store acknowledged it (the index's write protocol);
* a killed actor is restarted by Ray and its batch retried; a killed driver loses nothing
  acknowledged, and a re-run reuses every recorded vector and embeds only the rest;
* a file that fails (a decoder crash in a task, a page too large) is reported with its stage
  and keeps its previous vectors, and the run goes on;
* the vectors are those of a local run: workers load the same model with the same settings
  and precision, decode the same bytes (checked by hash) with the same loaders, and the driver
  refuses vectors of a worker whose settings differ.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from qwen3_vl_rag.errors import ClusterError, ConfigurationError, MissingDependencyError
from qwen3_vl_rag.index._embedding import (
    EmbeddedBatch,
    EmbeddingJob,
    EmbeddingResult,
    ItemFailure,
    PendingItem,
)
from qwen3_vl_rag.index._ids import item_locator

from ._engine import WorkerEngine
from ._stages import ERROR_COLUMNS, EmbedActor, RunnerFactory, render_batch

__all__ = ["RayCluster"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RayCluster:
    """Where and how an index's items are embedded on Ray.

    Pass it to :meth:`MultimodalIndex.index <qwen3_vl_rag.MultimodalIndex.index>` as
    ``cluster=``; the command line's ``qwen3-vl-rag index --ray [ADDRESS]`` builds one. Every node
    needs qwen3-vl-rag installed and must see the files (and a local model folder) at the
    paths this process sees them.

    Args:
        address: The cluster: ``"auto"`` (the one ``ray start`` runs on this machine),
            ``"HOST:PORT"`` or ``"ray://HOST:PORT"``; ``None`` starts a Ray instance on this
            machine for the run. Ignored when this process already called ``ray.init``.
        actors: Embedding actors, each holding one model (default: one per GPU share when
            ``gpus_per_actor`` is set, else one).
        cpus_per_actor: CPUs each actor reserves (its torch threads on a CPU).
        gpus_per_actor: GPUs each actor reserves; a fraction puts several actors on one GPU
            (default: 1 when the cluster has GPUs, else 0).
        batch_size: Items per embedding call of an actor (the engine still batches by tokens).
        render_cpus: CPUs each rendering task reserves.
        render_memory: Memory each rendering task reserves, in bytes (measured: up to 317 MiB
            for tasks of 4 pages at the default budget, with MuPDF and the decoding worker).
        render_batch: Items per rendering task.
        window: Items handed to Ray per dataset; the driver keeps this many rows in memory.
            Actors are started once per window.
        engine: How actors load their embedder (default: the index's model, precision and
            budgets, :meth:`WorkerEngine.like`).
        decoding: Makes the runner each Ray worker decodes with (default: worker processes
            under the index's time and memory budgets, as a local run); it must be picklable,
            e.g. :class:`qwen3_vl_rag.testing.faults.CrashingDecoder` in tests.
        init_options: Extra keyword arguments for ``ray.init`` (e.g. ``runtime_env``).

    Example:
        >>> from qwen3_vl_rag import MultimodalIndex, Qwen3VLEmbedder
        >>> from qwen3_vl_rag.distributed import RayCluster
        >>> cluster = RayCluster(address="auto", actors=4, gpus_per_actor=0.5, batch_size=64)
        >>> cluster.actors, cluster.gpus_per_actor
        (4, 0.5)
        >>> embedder = Qwen3VLEmbedder.from_pretrained("Qwen/Qwen3-VL-Embedding-2B")
        >>> with MultimodalIndex("my-index", embedder) as index:  # doctest: +SKIP
        ...     report = index.index(["documents/"], cluster=cluster)
    """

    address: str | None = None
    actors: int | None = None
    cpus_per_actor: float = 1.0
    gpus_per_actor: float | None = None
    batch_size: int = 32
    render_cpus: float = 1.0
    render_memory: int = 512 * 1024**2
    render_batch: int = 8
    window: int = 4096
    engine: WorkerEngine | None = None
    decoding: RunnerFactory | None = None
    init_options: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        checks = {
            "actors": self.actors is None or self.actors >= 1,
            "cpus_per_actor": self.cpus_per_actor >= 0,
            "gpus_per_actor": self.gpus_per_actor is None or self.gpus_per_actor >= 0,
            "batch_size": self.batch_size >= 1,
            "render_cpus": self.render_cpus > 0,
            "render_memory": self.render_memory > 0,
            "render_batch": self.render_batch >= 1,
            "window": self.window >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigurationError(
                    f"RayCluster {name}={getattr(self, name)!r} cannot work: actors, batch sizes "
                    "and the window must be at least 1, CPUs and GPUs not negative, and "
                    "rendering tasks need some CPU and memory."
                )

    def embedding(self, job: EmbeddingJob) -> RayEmbedding:
        """The embedding of ``job``'s items on the cluster (see the index's ``cluster=``).

        It connects when there is something to embed: a run that finds every file unchanged
        never reaches the cluster.

        Raises:
            MissingDependencyError: Ray is not installed.
        """
        return RayEmbedding(self, job)


def _ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise MissingDependencyError("ray", "ray", "Indexing on a Ray cluster") from exc
    return ray


class RayEmbedding:
    """The embedding of one indexing run on Ray (made by :meth:`RayCluster.embedding`)."""

    def __init__(self, cluster: RayCluster, job: EmbeddingJob) -> None:
        self.ray = _ray()
        self.job = job
        self.requested = cluster
        self.owned = False
        self.connected = False
        # workers get the options without this process's decoding pool (they start their own)
        self.options = replace(job.media_options, runner=None)
        self.engine = cluster.engine or WorkerEngine.like(job.embedder)

    def _ensure_connected(self) -> RayCluster:
        """Connect on first use: a run with nothing to embed never needs the cluster."""
        if not self.connected:
            self._connect(self.requested)
            try:
                self.cluster = self._settle(self.requested)
            except BaseException:
                self.close()
                raise
            self.connected = True
        return self.cluster

    # -- connection ------------------------------------------------------------------------------

    def _connect(self, cluster: RayCluster) -> None:
        ray = self.ray
        if not ray.is_initialized():  # else the caller's own connection, kept as it is
            self._init(cluster)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the index shows its own
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)

    def _init(self, cluster: RayCluster) -> None:
        ray = self.ray
        options: dict[str, Any] = {
            "log_to_driver": False,
            "configure_logging": False,
            "logging_level": logging.WARNING,
            **cluster.init_options,
        }
        if cluster.address is None:
            options.setdefault("include_dashboard", False)
        where = cluster.address or "a new local instance"
        if cluster.address:
            _probe(cluster.address)  # Ray itself waits minutes for an address where none answers
        try:
            ray.init(address=cluster.address, **options)
        except Exception as exc:  # ConnectionError, an auth failure, a version mismatch...
            raise ClusterError(
                f"could not connect to the Ray cluster at {where} ({type(exc).__name__}: "
                f"{str(exc)[:300]}). Start one with `ray start --head`, and give its address "
                "(--ray HOST:PORT, or RayCluster(address=...)); with token authentication, "
                "set RAY_AUTH_TOKEN as the cluster's nodes have it."
            ) from exc
        self.owned = True

    def _settle(self, cluster: RayCluster) -> RayCluster:
        """Fill the defaults from the cluster's resources; refuse what can never be scheduled.

        Ray waits for ever for resources no node has, so asking for them is an error here.
        """
        resources = self.ray.cluster_resources()
        cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
        gpus_per_actor = cluster.gpus_per_actor
        if gpus_per_actor is None:
            gpus_per_actor = 1.0 if gpus >= 1 else 0.0
        actors = cluster.actors
        if actors is None:
            actors = max(1, math.floor(gpus / gpus_per_actor)) if gpus_per_actor else 1
        settled = replace(cluster, actors=actors, gpus_per_actor=gpus_per_actor)
        needed_gpus = actors * gpus_per_actor
        if needed_gpus > gpus + 1e-9:
            raise ClusterError(
                f"{actors} actor(s) with gpus_per_actor={gpus_per_actor:g} need {needed_gpus:g} "
                f"GPU(s), and the cluster has {gpus:g}: lower --ray-actors or "
                "--ray-gpus-per-actor (0 runs on CPUs)."
            )
        needed_cpus = actors * cluster.cpus_per_actor + cluster.render_cpus
        if needed_cpus > cpus + 1e-9:
            raise ClusterError(
                f"{actors} actor(s) with cpus_per_actor={cluster.cpus_per_actor:g}, and rendering "
                f"tasks of render_cpus={cluster.render_cpus:g}, need {needed_cpus:g} CPU(s) at "
                f"once, and the cluster has {cpus:g}: lower --ray-actors, --ray-cpus-per-actor "
                "or the rendering CPUs, or add nodes."
            )
        return settled

    def close(self) -> None:
        """Disconnect (and stop the local instance) if this run connected."""
        if self.owned:
            self.ray.shutdown()
            self.owned = False
        self.connected = False

    # -- embedding -------------------------------------------------------------------------------

    @property
    def window(self) -> int:
        """Items per dataset."""
        return self.requested.window

    def embed(self, items: Sequence[PendingItem], dimension: int) -> Iterator[EmbeddingResult]:
        """Render and embed ``items`` on the cluster; results stream back as batches finish.

        Raises:
            ClusterError: The cluster cannot be reached, lacks the CPUs or GPUs asked for, an
                actor cannot load its model, or the run failed.
        """
        ray = self.ray
        cluster = self._ensure_connected()
        rows = [_row(pending) for pending in items]
        # one block per rendering task: results then stream back batch by batch (in fewer,
        # larger blocks they would all come back at the end)
        blocks = max(1, math.ceil(len(rows) / cluster.render_batch))
        dataset = ray.data.from_items(rows, override_num_blocks=blocks)
        dataset = dataset.map_batches(
            render_batch,
            fn_kwargs={
                "options": self.options,
                "decoding": cluster.decoding,
                "thumbnails": self.job.thumbnails,
            },
            batch_size=cluster.render_batch,
            num_cpus=cluster.render_cpus,
            # reserving memory also keeps rendering in tasks of its own: Ray Data fuses a
            # stage into the next one when they ask for the same resources
            memory=cluster.render_memory,
            batch_format="numpy",
        )
        dataset = dataset.map_batches(
            EmbedActor,
            fn_constructor_kwargs={
                "engine": self.engine,
                "options": self.options,
                "dimension": dimension,
                "segment_seconds": self.job.segment_seconds,
                "decoding": cluster.decoding,
            },
            batch_size=cluster.batch_size,
            compute=ray.data.ActorPoolStrategy(size=cluster.actors),
            num_cpus=cluster.cpus_per_actor,
            num_gpus=cluster.gpus_per_actor or None,
            batch_format="numpy",
        )
        batches = iter(dataset.iter_batches(batch_size=None, batch_format="numpy"))
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except Exception as exc:
                raise ClusterError(
                    f"the Ray run failed ({type(exc).__name__}: {_first_line(exc)}). What was "
                    "written before stays; run the same command again to finish."
                ) from exc
            yield from self._results(batch)

    def _results(self, batch: dict[str, Any]) -> Iterator[EmbeddingResult]:
        fatal = next((text for text in batch["fatal"] if text), "")
        if fatal:
            failure = json.loads(fatal)
            raise ClusterError(
                f"a Ray actor could not load {self.engine.describe()}: {failure['error']}: "
                f"{failure['message']} Every node needs qwen3-vl-rag installed and the model "
                "(a Hub id it can reach, or a folder at the same path)."
            )
        ids = [str(value) for value in batch["id"]]
        errors = [str(value) for value in batch[ERROR_COLUMNS[0]]]
        good = [position for position, error in enumerate(errors) if not error]
        if good:
            jpegs = batch.get("thumbnail")
            yield EmbeddedBatch(
                [ids[p] for p in good],
                np.asarray(batch["vector"][good], dtype=np.float32),
                dtype=str(batch["dtype"][good[0]]) or None,
                signature=json.loads(str(batch["signature"][good[0]])),
                thumbnails=(
                    {ids[p]: bytes(jpegs[p]) for p in good if jpegs[p]}
                    if jpegs is not None
                    else None
                ),
            )
        for position, error in enumerate(errors):
            if error:
                yield ItemFailure(
                    ids[position],
                    str(batch["error_reason"][position]),
                    str(batch["error_stage"][position]),
                    error,
                )


def _row(pending: PendingItem) -> dict[str, Any]:
    """One item as a dataset row: where its file is and what it was, where the item is in it."""
    return {
        "id": pending.id,
        "path": os.fsencode(pending.path),
        "label": pending.item.source,
        "digest": pending.digest,
        "kind": pending.item.kind,
        "locator": item_locator(pending.item),
    }


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fail at once when nothing listens at a ``HOST:PORT`` address (``"auto"`` is Ray's)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", "local": Ray looks for the cluster itself, and says so quickly
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ClusterError(
            f"nothing answers at the Ray address {address} ({exc.strerror or exc}). Start the "
            "cluster with `ray start --head --port PORT`, and give its head's HOST:PORT (--ray "
            "HOST:PORT, or RayCluster(address=...))."
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
