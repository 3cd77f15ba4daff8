"""Indexing on Ray against the plain index, on the same items, and the per-item costs behind them.

Corpus (generated offline, fixed seed, ``bench_media.py``'s generator): ``--pdfs`` PDFs of
``--pages`` A4 report pages and ``--images`` images (half 1920x1080 PNG screenshots, half
3264x2448 JPEG photos). Model: ``build_tiny_checkpoint(preset="bench")`` (random weights, float32,
CPU). Every contender indexes the same folder into a fresh index directory, in this process:

* ``plain``: ``MultimodalIndex.index(corpus)``, local, torch on all cores (the default).
* ``plain-1-thread``: the same with one torch thread: what one Ray actor gets here (Ray sets a
  worker's ``OMP_NUM_THREADS`` from its CPU share, at least 1), so ``ray-1 / plain-1-thread`` is
  Ray's own overhead and ``ray-1 / plain`` what a user of this machine sees.
* ``ray-1`` and ``ray-2``: ``index(corpus, cluster=RayCluster(actors=N, cpus_per_actor=0.5,
  render_cpus=0.5, batch_size=8, render_batch=4))`` on a Ray instance this benchmark starts on
  this machine (``ray.init(num_cpus=2)``, loopback, no dashboard) and stops at the end. Batches of
  8 (not the default 32) so that a small corpus still streams through both actors.

For each: items/s over the whole run, the time to the first write (a run's fixed start: Ray's
dataset, actors loading the model, the pipeline filling), the steady rate after it, and the
driver's CPU seconds (``time.process_time()``: listing, hashing, Ray Data's driver threads,
writes). A one-image run, plain and on Ray with one actor, gives the fixed cost of a run alone.
The indexes must hold the same ids; the largest vector difference to ``plain`` is reported.

**Per-item costs** (the README's scaling model), on the same corpus: SHA-256 of the files (MB/s,
files in the page cache), describing a PDF's pages and drawing each at the default pixel budget
in one of the media layer's worker processes (ms/page, one at a time), a Chroma upsert and a
manifest record per item (from ``plain``'s run, timed around the store's and manifest's calls),
and the bytes each stored item takes on disk: the manifest's per item from the run, Chroma's per
item measured as the growth of ``chroma/`` when ``--fill`` more vectors of the same dimension
are written (Chroma keeps float32 vectors: 4 x dimension bytes, plus its HNSW graph links and
the item's metadata and text in SQLite).

Two cores shared with other work: two actors cannot beat one by much here, and all figures come
from one run, so only the ratios between contenders of the same run compare.

Usage: ``python benchmarks/bench_ray.py [--preset bench|tiny] [--pdfs 2 --pages 6 --images 4]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _torchvision_cpu  # noqa: E402, F401  # before transformers; a no-op without torchvision
from bench_index import Stages, fill, load_models, warm_up  # noqa: E402
from bench_media import make_image_folder, make_pdf  # noqa: E402

RAY_CPUS = 2
ACTOR_CPUS = 0.5
RENDER_CPUS = 0.5


# -- instruments -----------------------------------------------------------------------------------


class Calls(Stages):
    """Wall time inside chosen callables (outer calls only), and when the first write happened."""

    def __init__(self) -> None:
        super().__init__()
        self.first_write: float | None = None
        self.first_write_items = 0

    def wrap(self, owner: Any, name: str, stage: str, *, write: bool = False) -> None:
        """Time every call of ``owner.name`` under ``stage``; with ``write``, note the first."""
        super().wrap(owner, name, stage)
        if not write:
            return
        timed = getattr(owner, name)

        def noted(*args: Any, **kwargs: Any) -> Any:
            result = timed(*args, **kwargs)
            if self.first_write is None:
                self.first_write, self.first_write_items = time.perf_counter(), len(args[0])
            return result

        setattr(owner, name, noted)


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def index_run(
    embedder: Any, corpus: Path, index_dir: Path, cluster: Any = None, *, keep: bool = False
) -> dict[str, Any]:
    """Index ``corpus`` into a fresh ``index_dir``; timings, counts and the stored vectors."""
    from qwen3_vl_rag.index import MultimodalIndex

    calls = Calls()
    with MultimodalIndex(index_dir, embedder) as index:
        calls.wrap(index.store, "upsert", "chroma upsert", write=True)
        for name in ("add_items", "finish_source", "vectors", "source", "touch_source"):
            calls.wrap(index.manifest, name, "manifest")
        wall, cpu = time.perf_counter(), time.process_time()
        report = index.index([corpus], cluster=cluster)
        end, cpu = time.perf_counter(), time.process_time() - cpu
        rows = list(index.manifest.current_items())
    if not report.complete:
        raise SystemExit(f"indexing {corpus} did not complete: {report.to_dict()}")
    seconds = end - wall
    first = (calls.first_write or end) - wall
    items = report.embedded
    result = {
        "items": items,
        "seconds": seconds,
        "items_per_s": items / seconds,
        "first_write_s": first,
        "first_write_items": calls.first_write_items,
        # the first write's items were made before it: the steady rate is of the rest
        "steady_items_per_s": (items - calls.first_write_items) / max(seconds - first, 1e-9),
        "driver_cpu_s": cpu,
        "driver_cpu_ms_per_item": cpu / items * 1000,
        "chroma_upsert_ms_per_item": calls.seconds.get("chroma upsert", 0.0) / items * 1000,
        "manifest_ms_per_item": calls.seconds.get("manifest", 0.0) / items * 1000,
        "manifest_bytes": (index_dir / "manifest.sqlite3").stat().st_size,
        "chroma_bytes": folder_bytes(index_dir / "chroma"),
        "dimension": int(rows[0].vector.shape[0]),
    }
    if keep:
        result["vectors"] = {row.id: row.vector for row in rows}
    return result


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def local_ray() -> Iterator[Any]:
    """A Ray instance on this machine for the benchmark, stopped at the end."""
    import logging

    import ray
    import ray.data

    ray.init(
        num_cpus=RAY_CPUS,
        num_gpus=0,
        include_dashboard=False,
        object_store_memory=400_000_000,
        log_to_driver=False,
        configure_logging=False,
        logging_level=logging.WARNING,
    )
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        yield ray
    finally:
        ray.shutdown()


def worker_threads(ray: Any) -> int:
    """Torch threads in a Ray worker holding ``ACTOR_CPUS`` CPUs."""

    @ray.remote(num_cpus=ACTOR_CPUS)  # type: ignore[untyped-decorator]
    def threads() -> int:
        import torch

        return int(torch.get_num_threads())

    return int(ray.get(threads.remote()))


# -- per-item costs --------------------------------------------------------------------------------


def hashing_mb_per_s(corpus: Path) -> dict[str, float]:
    from qwen3_vl_rag.checked_files import file_sha256

    files = sorted(p for p in corpus.rglob("*") if p.is_file())
    for path in files:  # into the page cache: the figure is the hash, not the disk
        path.read_bytes()
    size = sum(p.stat().st_size for p in files)
    start = time.perf_counter()
    for path in files:
        file_sha256(path)
    seconds = time.perf_counter() - start
    return {"bytes": size, "seconds": seconds, "mb_per_s": size / seconds / 1e6}


def page_costs(pdf: Path, pages: int) -> dict[str, float]:
    """Describe a PDF's pages, then draw each at the default pixel budget in one worker process."""
    from qwen3_vl_rag.media import WorkerPool, load_pdf

    with WorkerPool(1) as pool:
        for page in load_pdf(pdf, pages=[0], runner=pool):  # the worker started
            page.load_image()
        start = time.perf_counter()
        described = list(load_pdf(pdf, runner=pool))[:pages]
        describe = time.perf_counter() - start
        start = time.perf_counter()
        sizes = [page.load_image().size for page in described]
        render = time.perf_counter() - start
    return {
        "pages": len(sizes),
        "describe_ms_per_page": describe / len(sizes) * 1000,
        "render_ms_per_page": render / len(sizes) * 1000,
        "pixels_per_page": float(np.mean([w * h for w, h in sizes])),
    }


def stored_bytes(embedder: Any, index_dir: Path, extra: int) -> dict[str, float]:
    """Growth of ``chroma/`` per vector when ``extra`` vectors are added to an index."""
    from qwen3_vl_rag.index import MultimodalIndex

    with MultimodalIndex(index_dir, embedder) as index:
        before_items, before = index.store.count(), folder_bytes(index_dir / "chroma")
        filled = fill(index, before_items + extra)
        after_items = index.store.count()
    after = folder_bytes(index_dir / "chroma")
    files = {
        str(p.relative_to(index_dir / "chroma")): p.stat().st_size
        for p in (index_dir / "chroma").rglob("*")
        if p.is_file()
    }
    return {
        "items_before": before_items,
        "items_after": after_items,
        "bytes_before": before,
        "bytes_after": after,
        "bytes_per_item": (after - before) / (after_items - before_items),
        "upsert_ms_per_item_bulk": filled["seconds"] / filled["added"] * 1000,
        "files": files,
    }


# -- main ------------------------------------------------------------------------------------------


def make_corpus(root: Path, pdfs: int, pages: int, images: int) -> Path:
    corpus = root / "corpus"
    for number in range(pdfs):
        make_pdf(corpus / f"report_{number}.pdf", pages)
        if number:  # distinct bytes: the same file would be embedded once
            with (corpus / f"report_{number}.pdf").open("ab") as handle:
                handle.write(f"\n% copy {number}\n".encode())
    make_image_folder(corpus / "images", images)
    return corpus


def compare(reference: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> dict[str, Any]:
    same = sorted(reference) == sorted(other)
    diff = max(float(np.abs(reference[k] - other[k]).max()) for k in reference) if same else None
    return {"same_ids": same, "max_abs_diff": diff}


def ratio(runs: dict[str, dict[str, Any]], top: str, bottom: str, key: str) -> float | None:
    """``runs[top][key] / runs[bottom][key]``, or None where the bottom is zero."""
    below = runs[bottom][key]
    return runs[top][key] / below if below else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="bench", help="checkpoint size: tiny or bench")
    parser.add_argument("--pdfs", type=int, default=2, help="PDFs in the corpus")
    parser.add_argument("--pages", type=int, default=6, help="pages per PDF")
    parser.add_argument("--images", type=int, default=4, help="images in the corpus")
    parser.add_argument("--fill", type=int, default=5000, help="vectors added to measure Chroma")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "qwen3vl-bench"))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_ray.json")
    args = parser.parse_args()
    args.device, args.dtype = "cpu", "float32"
    from qwen3_vl_rag.distributed import RayCluster

    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_at_start": os.getloadavg(),
            "platform": platform.platform(),
        },
        "settings": {
            "preset": args.preset,
            "dtype": args.dtype,
            "pdfs": args.pdfs,
            "pages_per_pdf": args.pages,
            "images": args.images,
            "ray": {
                "num_cpus": RAY_CPUS,
                "cpus_per_actor": ACTOR_CPUS,
                "render_cpus": RENDER_CPUS,
                "batch_size": 8,
                "render_batch": 4,
            },
        },
    }
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as scratch:
        root = Path(scratch)
        print("generating the corpus ...", flush=True)
        corpus = make_corpus(root, args.pdfs, args.pages, args.images)
        single = root / "single"
        single.mkdir()
        shutil.copy(sorted((corpus / "images").iterdir())[0], single)
        embedder, _ = load_models(args)
        warm_up(embedder, corpus)

        runs: dict[str, dict[str, Any]] = {}
        contenders: dict[str, Callable[[Path], dict[str, Any]]] = {
            "plain": lambda d: index_run(embedder, corpus, d, keep=True),
        }

        def one_thread(d: Path) -> dict[str, Any]:
            with torch_threads(1):
                return index_run(embedder, corpus, d, keep=True)

        contenders["plain-1-thread"] = one_thread
        for name, run in contenders.items():
            print(f"indexing: {name} ...", flush=True)
            runs[name] = run(root / name)
            print(f"  {runs[name]['seconds']:.1f} s", flush=True)
        runs["plain-one-image"] = index_run(embedder, single, root / "plain-one-image")

        with local_ray() as ray:
            threads = worker_threads(ray)
            for actors in (1, 2):
                cluster = RayCluster(
                    actors=actors,
                    cpus_per_actor=ACTOR_CPUS,
                    render_cpus=RENDER_CPUS,
                    batch_size=8,
                    render_batch=4,
                )
                print(f"indexing: ray-{actors} ...", flush=True)
                runs[f"ray-{actors}"] = index_run(
                    embedder, corpus, root / f"ray-{actors}", cluster, keep=True
                )
                if actors == 1:
                    print("indexing: ray-1-one-image ...", flush=True)
                    runs["ray-1-one-image"] = index_run(
                        embedder, single, root / "ray-1-one-image", cluster
                    )

        print("per-item costs ...", flush=True)
        costs = {
            "hashing": hashing_mb_per_s(corpus),
            "pages": page_costs(corpus / "report_0.pdf", args.pages),
            "chroma_upsert_ms_per_item": runs["plain"]["chroma_upsert_ms_per_item"],
            "manifest_ms_per_item": runs["plain"]["manifest_ms_per_item"],
            "ray_driver_cpu_ms_per_item": runs["ray-1"]["driver_cpu_ms_per_item"],
            "ray_driver_cpu_ms_per_item_marginal": (
                (runs["ray-1"]["driver_cpu_s"] - runs["ray-1-one-image"]["driver_cpu_s"])
                / (runs["ray-1"]["items"] - 1)
                * 1000
            ),
            "plain_driver_cpu_ms_per_item": runs["plain"]["driver_cpu_ms_per_item"],
            "manifest_bytes_per_item": runs["plain"]["manifest_bytes"] / runs["plain"]["items"],
            "chroma": stored_bytes(embedder, root / "plain", args.fill),
        }

    raw = {name: {k: v for k, v in row.items() if k != "vectors"} for name, row in runs.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**results, "runs": raw, "costs": costs}, indent=2) + "\n")
    dimension = runs["plain"]["dimension"]
    reference = runs["plain"].pop("vectors")
    agreement = {
        name: compare(reference, runs[name].pop("vectors"))
        for name in ("plain-1-thread", "ray-1", "ray-2")
    }
    rate, steady = "items_per_s", "steady_items_per_s"
    ratios = {
        "ray-1 / plain-1-thread (Ray's overhead, same torch threads)": ratio(
            runs, "ray-1", "plain-1-thread", rate
        ),
        "ray-1 / plain": ratio(runs, "ray-1", "plain", rate),
        "ray-2 / ray-1 (scaling here)": ratio(runs, "ray-2", "ray-1", rate),
        "ray-2 / plain": ratio(runs, "ray-2", "plain", rate),
        "steady ray-2 / ray-1": ratio(runs, "ray-2", "ray-1", steady),
    }
    fixed = runs["ray-1-one-image"]["seconds"] - runs["plain-one-image"]["seconds"]
    chroma = costs["chroma"]
    costs["vector_bytes_float32"] = 4 * dimension
    costs["chroma_links_and_metadata_bytes_per_item"] = chroma["bytes_per_item"] - 4 * dimension
    results.update(
        runs=runs,
        ratios=ratios,
        ray_fixed_cost_per_run_s=fixed,
        ray_worker_torch_threads=threads,
        agreement=agreement,
        costs=costs,
        dimension=dimension,
        total_seconds=time.perf_counter() - began,
    )
    report(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.out}")


def report(results: dict[str, Any]) -> None:
    runs, costs = results["runs"], results["costs"]
    print(f"\n{runs['plain']['items']} items, dimension {results['dimension']}, same run:")
    print(
        f"  {'contender':18s} {'items/s':>8s} {'seconds':>8s} {'1st write s':>11s} "
        f"{'steady/s':>9s} {'driver CPU ms/item':>19s}"
    )
    for name, row in runs.items():
        print(
            f"  {name:18s} {row['items_per_s']:8.2f} {row['seconds']:8.1f} "
            f"{row['first_write_s']:11.1f} {row['steady_items_per_s']:9.2f} "
            f"{row['driver_cpu_ms_per_item']:19.1f}"
        )
    for name, value in results["ratios"].items():
        print(f"  {name}: {'n/a' if value is None else f'{value:.2f}'}")
    print(
        f"  Ray's fixed cost per run (one image, ray-1 minus plain): "
        f"{results['ray_fixed_cost_per_run_s']:.1f} s; a Ray worker with {ACTOR_CPUS} CPU runs "
        f"{results['ray_worker_torch_threads']} torch thread(s)"
    )
    for name, found in results["agreement"].items():
        same, diff = found["same_ids"], found["max_abs_diff"]
        print(f"  {name} vs plain: same ids {same}, max |diff| {diff}")
    print(
        "  2 cores shared by the driver, rendering and the actors (and other tenants): two "
        "actors cannot beat one by much here; the scaling figure is this machine's, not Ray's."
    )
    pages, chroma = costs["pages"], costs["chroma"]
    print("\nper-item costs:")
    print(f"  SHA-256 of the files: {costs['hashing']['mb_per_s']:.0f} MB/s")
    print(
        f"  a PDF page, in a worker process: describe {pages['describe_ms_per_page']:.1f} ms, "
        f"draw at the default budget {pages['render_ms_per_page']:.1f} ms "
        f"({pages['pixels_per_page'] / 1e6:.2f} Mpx)"
    )
    print(
        f"  Chroma upsert {costs['chroma_upsert_ms_per_item']:.2f} ms/item in the run "
        f"({chroma['upsert_ms_per_item_bulk']:.2f} in bulk), manifest record "
        f"{costs['manifest_ms_per_item']:.2f} ms/item"
    )
    print(
        f"  driver CPU per item: Ray run {costs['ray_driver_cpu_ms_per_item']:.1f} ms "
        f"(marginal {costs['ray_driver_cpu_ms_per_item_marginal']:.1f}), plain run "
        f"{costs['plain_driver_cpu_ms_per_item']:.1f} ms (the model included)"
    )
    print(
        f"  on disk per item: Chroma {chroma['bytes_per_item']:.0f} B (float32 vector "
        f"{costs['vector_bytes_float32']} B + links and metadata "
        f"{costs['chroma_links_and_metadata_bytes_per_item']:.0f} B), manifest "
        f"{costs['manifest_bytes_per_item']:.0f} B"
    )


if __name__ == "__main__":
    main()
