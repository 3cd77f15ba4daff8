"""The on-disk index end to end: indexing throughput and memory, and query latency at 10k items.

Corpus (generated offline, fixed seed, see ``bench_media.py``): ``--pdfs`` PDFs of ``--pages``
A4 report pages each (title, 40 lines of text, a vector bar chart, a photo on every third page)
and ``--images`` images (half 1920x1080 PNG screenshots, half 3264x2448 JPEG photos). Default:
3 x 100 pages + 24 images = 324 items.

**Indexing** (each contender in a fresh child process, models loaded and warmed up first):

* ``index``: ``MultimodalIndex.index(corpus)``, everything a user gets: scan, hash, render in
  2 worker processes, embed in batches across files, validate, write to Chroma, record in the
  manifest. Timed by stage. Then the same folder again (nothing changed: nothing embedded).
* ``engine alone`` (baseline): the same items from ``scan_folder`` embedded by
  ``Qwen3VLEmbedder.embed_documents`` in the same batches, vectors dropped: the model's own
  cost, with no index around it. The ratio between the two is what the index costs on top.

Peak memory is the whole process tree's resident memory (worker processes included) above the
child's footprint after loading the models, sampled every 5 ms.

**Query latency** (one more child): the index is filled to ``--items`` items (10,000) with
noisy copies of the real vectors (cosine about 0.9 to their original), each pointing at a real
page or image so reranking reads real pixels. Then ``search(k=20, top_n=5)`` for 5 text queries
and 2 image queries, each searched twice, timed by stage: embed the query, recall 20 from
Chroma, open the 20 items' files again, rerank them (the reranker renders the pages in its
decoding threads), make thumbnails. A query's first search may make thumbnails; a repeat finds
them on disk. Reported: medians over the queries of the repeats by stage, and of the firsts.

Usage: ``python benchmarks/bench_index.py [--preset bench|tiny|2b] [--device auto]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _torchvision_cpu  # noqa: E402, F401  # before transformers; a no-op without torchvision
from bench_media import TreePeak, make_image_folder, make_pdf  # noqa: E402

RENDER = "  of which pixels (render/decode, resize; all threads)"
TEXT_QUERIES = (
    "bar chart of quarterly revenue by region",
    "customer churn forecast table",
    "a photo of the landscape",
    "settings screen with a list of rows",
    "margin growth in the pipeline section",
)

# -- stage timing ----------------------------------------------------------------------------------


class Stages:
    """Wall time spent inside chosen callables, by stage (an outer call's own time only)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.inner: dict[str, float] = {}
        self._depth = 0

    def wrap(self, owner: Any, name: str, stage: str) -> None:
        """Time every call of ``owner.name`` under ``stage``."""
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._depth:  # a stage inside a stage is the outer one's time
                return original(*args, **kwargs)
            self._depth += 1
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self._depth -= 1
                self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start

        setattr(owner, name, timed)

    def within(self, owner: Any, name: str, label: str) -> None:
        """Also sum the time of ``owner.name`` in any thread, inside stages (reported apart)."""
        original = getattr(owner, name)
        lock = threading.Lock()

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                with lock:
                    self.inner[label] = self.inner.get(label, 0.0) + time.perf_counter() - start

        setattr(owner, name, timed)

    def reset(self) -> None:
        self.seconds = {}
        self.inner = {}

    def shares(self, total: float, rest: str) -> dict[str, dict[str, float]]:
        """Seconds and share of ``total`` per stage; what no stage covers goes to ``rest``."""
        rows = dict(self.seconds)
        rows[rest] = max(0.0, total - sum(rows.values()))
        return {
            stage: {"seconds": seconds, "share": seconds / total if total else 0.0}
            for stage, seconds in rows.items()
        }


def time_pixels(stages: Stages) -> None:
    """Sum the time the engine's decoding threads spend producing pixels (pages rendered here)."""
    import importlib

    collate = importlib.import_module("qwen3_vl_rag.engine._collate")
    stages.within(collate, "load_image_pixels", RENDER)
    stages.within(collate, "load_video_pixels", RENDER)


# -- children --------------------------------------------------------------------------------------


def load_models(args: argparse.Namespace, *, reranker: bool = False) -> tuple[Any, Any]:
    from qwen3_vl_rag import Qwen3VLEmbedder, Qwen3VLReranker
    from qwen3_vl_rag.testing import build_tiny_checkpoint

    cache = Path(args.cache) / args.preset
    path = build_tiny_checkpoint(cache / "embedding", kind="embedding", preset=args.preset)
    embedder = Qwen3VLEmbedder.from_pretrained(path, device=args.device, dtype=args.dtype)
    scorer = None
    if reranker:
        path = build_tiny_checkpoint(cache / "reranker", kind="reranker", preset=args.preset)
        scorer = Qwen3VLReranker.from_pretrained(path, device=args.device, dtype=args.dtype)
    return embedder, scorer


def warm_up(embedder: Any, corpus: Path) -> None:
    """One page and one image through the model: first-call costs are not the workload's."""
    from qwen3_vl_rag.media import scan_folder

    with scan_folder(corpus) as scan:
        first: dict[str, Any] = {}
        for item in scan:
            first.setdefault(item.kind, item)
            if len(first) == 2:
                break
        embedder.embed_documents(list(first.values()))


def child_index(args: argparse.Namespace) -> dict[str, Any]:
    from qwen3_vl_rag.index import MultimodalIndex

    embedder, _ = load_models(args)
    warm_up(embedder, args.corpus)
    stages = Stages()
    with MultimodalIndex(args.index_dir, embedder, batch_items=args.batch) as index:
        stages.wrap(embedder, "embed_documents", "embedding (model; pixels made in its threads)")
        stages.wrap(index.store, "upsert", "vector store writes (Chroma)")
        stages.wrap(index.store, "delete", "vector store writes (Chroma)")
        for name in ("add_items", "finish_source", "vectors", "source", "touch_source"):
            stages.wrap(index.manifest, name, "manifest (SQLite)")
        time_pixels(stages)
        with TreePeak() as peak:
            report = index.index([args.corpus])
        first = report.seconds
        breakdown = stages.shares(first, "scan, hash, load and bookkeeping")
        rendering = dict(stages.inner)
        stages.reset()
        again = index.index([args.corpus])
        status = index.status()
    counts = report.counts()
    return {
        "items": counts["items"],
        "files": len(report.files),
        "embedded": report.embedded,
        "seconds": first,
        "items_per_s": report.embedded / first,
        "peak_above_models_mib": (peak.peak - peak.start) / 2**20,
        "stages": breakdown,
        "inside_stages_s": rendering,
        "rerun_seconds": again.seconds,
        "rerun_embedded": again.embedded,
        "rerun_unchanged": again.counts()["unchanged"],
        "vectors": status.vectors,
        "bytes_on_disk": status.bytes_on_disk,
    }


def child_engine(args: argparse.Namespace) -> dict[str, Any]:
    from qwen3_vl_rag.media import scan_folder

    embedder, _ = load_models(args)
    warm_up(embedder, args.corpus)
    items = 0
    with TreePeak() as peak:
        start = time.perf_counter()
        with scan_folder(args.corpus) as scan:
            batch: list[Any] = []
            for item in scan:
                batch.append(item)
                if len(batch) == args.batch:
                    embedder.embed_documents(batch)
                    items += len(batch)
                    batch = []
            if batch:
                embedder.embed_documents(batch)
                items += len(batch)
        seconds = time.perf_counter() - start
    return {
        "items": items,
        "seconds": seconds,
        "items_per_s": items / seconds,
        "peak_above_models_mib": (peak.peak - peak.start) / 2**20,
    }


def fill(index: Any, total: int) -> dict[str, float]:
    """Add noisy copies of the indexed items' vectors until the store holds ``total``."""
    import hashlib

    rows = list(index.manifest.current_items())
    rng = np.random.default_rng(0)
    needed = total - index.store.count()
    written, start = 0, time.perf_counter()
    while written < needed:
        count = min(index.store.max_batch, needed - written)
        picks = rng.integers(0, len(rows), size=count)
        base = np.stack([rows[i].vector for i in picks]).astype(np.float32)
        base /= np.linalg.norm(base, axis=1, keepdims=True)
        noise = rng.normal(size=base.shape).astype(np.float32)
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        vectors = 0.9 * base + np.sqrt(1 - 0.81) * noise
        ids = [
            hashlib.sha256(f"filler-{written + i}".encode()).hexdigest()[:32] for i in range(count)
        ]
        index.store.upsert(
            ids,
            vectors,
            [rows[i].metadata for i in picks],
            [rows[i].text for i in picks],
        )
        written += count
    seconds = time.perf_counter() - start
    return {"added": written, "seconds": seconds, "vectors_per_s": written / seconds}


def child_query(args: argparse.Namespace) -> dict[str, Any]:
    import importlib

    from qwen3_vl_rag.index import MultimodalIndex
    from qwen3_vl_rag.index._reopen import Reopener

    search_module = importlib.import_module("qwen3_vl_rag.index._search")

    embedder, reranker = load_models(args, reranker=True)
    warm_up(embedder, args.corpus)
    images = sorted(p for p in args.corpus.rglob("*") if p.suffix in (".png", ".jpg"))
    queries: list[tuple[str | None, Path | None]] = [(text, None) for text in TEXT_QUERIES]
    queries += [(None, images[0]), (None, images[1])]
    with MultimodalIndex(args.index_dir, embedder, reranker) as index:
        filled = fill(index, args.items)
        stored = index.store.count()
        stages = Stages()
        stages.wrap(embedder, "embed_queries", "embed the query")
        stages.wrap(index.store, "query", "recall 20 (Chroma)")
        # reopening: each file checked (roots, regular file, hash), copied, decoded in workers
        stages.wrap(Reopener, "rerank_input", "open the 20 items' files again (verified)")
        stages.wrap(reranker, "score", "rerank 20 (model; pixels made in its threads)")
        time_pixels(stages)
        stages.wrap(search_module, "_thumbnail", "thumbnails")
        index.search("warm up", k=20, top_n=5)
        rows: dict[str, list[dict[str, Any]]] = {"text": [], "image": []}
        for text, image in queries:
            for attempt in ("first", "repeat"):
                stages.reset()
                start = time.perf_counter()
                results = index.search(text, image, k=20, top_n=5)
                seconds = time.perf_counter() - start
                if len(results) != 5 or any(r.rerank_score is None for r in results):
                    raise SystemExit(f"search returned {results!r}")
                rows["image" if image else "text"].append(
                    {
                        "attempt": attempt,
                        "seconds": seconds,
                        "stages": stages.shares(seconds, "other (sorting, results)"),
                        "inside_stages_s": dict(stages.inner),
                    }
                )
    return {"items": stored, "fill": filled, "searches": rows}


# -- parent ----------------------------------------------------------------------------------------


def run_child(args: argparse.Namespace, mode: str, corpus: Path, index_dir: Path) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--corpus",
        str(corpus),
        "--index-dir",
        str(index_dir),
        *("--preset", args.preset, "--device", args.device, "--dtype", args.dtype),
        *("--cache", args.cache, "--batch", str(args.batch), "--items", str(args.items)),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{mode} child failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def summarize_searches(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over queries: repeated searches by stage, and first searches (thumbnails made)."""
    repeats = [row for row in rows if row["attempt"] == "repeat"]
    firsts = [row for row in rows if row["attempt"] == "first"]
    median = statistics.median(row["seconds"] for row in repeats)
    stage_s = {
        name: statistics.median(row["stages"][name]["seconds"] for row in repeats)
        for name in repeats[0]["stages"]
    }
    stage_s[RENDER] = statistics.median(row["inside_stages_s"].get(RENDER, 0.0) for row in repeats)
    return {
        "queries": len(repeats),
        "median_s": median,
        "median_first_s": statistics.median(row["seconds"] for row in firsts),
        "median_stage_s": stage_s,
        "median_stage_share": {name: value / median for name, value in stage_s.items()},
    }


def print_stages(stages: dict[str, float], total: float) -> None:
    for name, seconds in stages.items():
        print(f"    {name:56s} {seconds * 1000:9.0f} ms {seconds / total:6.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="bench", help="checkpoint size: tiny, bench or 2b")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--pdfs", type=int, default=3, help="PDFs in the corpus")
    parser.add_argument("--pages", type=int, default=100, help="pages per PDF")
    parser.add_argument("--images", type=int, default=24, help="images in the corpus")
    parser.add_argument("--items", type=int, default=10_000, help="index size for queries")
    parser.add_argument("--batch", type=int, default=32, help="items per embedding batch")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "qwen3vl-bench"))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_index.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--index-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run: Callable[[argparse.Namespace], dict[str, Any]] = {
            "index": child_index,
            "engine": child_engine,
            "query": child_query,
        }[args.child]
        print(json.dumps(run(args)))
        return

    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "settings": {
            "preset": args.preset,
            "device": args.device,
            "pdfs": args.pdfs,
            "pages_per_pdf": args.pages,
            "images": args.images,
            "batch": args.batch,
        },
    }
    with tempfile.TemporaryDirectory(prefix="bench-index-") as scratch:
        root = Path(scratch)
        corpus = root / "corpus"
        print(f"generating the corpus in {corpus} ...", flush=True)
        for number in range(args.pdfs):
            make_pdf(corpus / f"report_{number}.pdf", args.pages)
        make_image_folder(corpus / "images", args.images)
        # distinct PDFs: the same bytes would be embedded once (and the benchmark flattered)
        for number in range(1, args.pdfs):
            with (corpus / f"report_{number}.pdf").open("ab") as handle:
                handle.write(f"\n% copy {number}\n".encode())
        index_dir = root / "index"

        print("indexing (fresh process) ...", flush=True)
        index = run_child(args, "index", corpus, index_dir)
        print("engine alone, same items and batches (fresh process) ...", flush=True)
        engine = run_child(args, "engine", corpus, index_dir)
        index["vs_engine_alone"] = index["items_per_s"] / engine["items_per_s"]
        results["indexing"] = {"index": index, "engine_alone": engine}

        print(f"\nindexing {index['items']} items from {index['files']} files, end to end:")
        print(f"  {'contender':36s} {'items/s':>8s} {'seconds':>8s} {'peak MiB':>9s}")
        for name, row in (("MultimodalIndex.index", index), ("engine alone (baseline)", engine)):
            print(
                f"  {name:36s} {row['items_per_s']:8.2f} {row['seconds']:8.1f} "
                f"{row['peak_above_models_mib']:9.0f}"
            )
        print(f"  index throughput / engine alone: {index['vs_engine_alone']:.2f}")
        print("  time by stage:")
        by_stage = {k: v["seconds"] for k, v in index["stages"].items()}
        print_stages({**by_stage, **index["inside_stages_s"]}, index["seconds"])
        print(
            f"  the same folder again: {index['rerun_seconds'] * 1000:.0f} ms, "
            f"{index['rerun_embedded']} embedded, {index['rerun_unchanged']} files unchanged"
        )

        print(f"\nfilling the index to {args.items} items and searching (fresh process) ...")
        query = run_child(args, "query", corpus, index_dir)
        fill_rate = query["fill"]["vectors_per_s"]
        print(f"  {query['items']} items; vectors written at {fill_rate:.0f}/s")
        summary = {kind: summarize_searches(rows) for kind, rows in query["searches"].items()}
        for kind, row in summary.items():
            print(
                f"  {kind} query, k=20, rerank 20, top 5: median {row['median_s'] * 1000:.0f} ms "
                f"(first search of a query: {row['median_first_s'] * 1000:.0f} ms)"
            )
            print_stages(row["median_stage_s"], row["median_s"])
        results["query"] = {"items": query["items"], "fill": query["fill"], **summary}
        results["query_raw"] = query["searches"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
