"""Speed and memory of the engine, as ratios against baselines run in the same process.

Workload (fixed seed, generated offline): texts of varied length, images of varied size (up to
above the 1.8 MP cap) and short videos, embedded with a random-weight Qwen3-VL checkpoint large
enough that compute, not Python, dominates (``preset="bench"`` on CPU; ``--preset 2b`` on a GPU).

Contenders:

* ``ours``: ``Qwen3VLEmbedder.embed`` (token-budget batches, longest first, pixels decoded ahead).
* ``naive``: the official usage: fixed batches of 8 in input order, fp32, pixels decoded inline,
  the model's default KV cache, built from the same preprocessing so outputs are identical.
* ``sentence-transformers``: only when ``--st`` is given and it imports (see benchmarks/README.md).
* reranking: ``Qwen3VLReranker.score`` over a top-20 list vs one forward per pair (the official
  loop, which also re-decodes an image query for every pair).

Peak memory is measured per contender in a fresh child process (``--child``), since an allocator
that keeps freed memory would flatter whichever contender runs later.

Usage: ``python benchmarks/bench_engine.py [--preset bench|tiny|2b] [--device cpu] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


# -- workload ------------------------------------------------------------------------------------


def make_workload(root: Path, scale: int = 1) -> dict[str, Any]:
    """Texts (5-600 words), images (48 px to 1600x1200), two videos; mixed, in a shuffled order."""
    import av
    from PIL import Image, ImageDraw

    from qwen3_vl_rag import MultimodalInput, Video

    rnd = random.Random(0)
    words = ("revenue growth chart quarter table figure report page screenshot invoice total "
             "street people night camera model vision language retrieval").split()
    texts = [" ".join(rnd.choice(words) for _ in range(n))
             for n in [5, 8, 12, 20, 30, 45, 60, 90, 120, 200, 350, 600] * 4 * scale]
    sizes = [(48, 48), (96, 64), (160, 120), (224, 224), (320, 240), (480, 360), (640, 480),
             (800, 600), (1024, 768), (1280, 720), (1600, 1200), (300, 900)] * 2 * scale
    images = []
    for i, (w, h) in enumerate(sizes):
        array = np.random.RandomState(i).randint(0, 255, (h // 8 + 1, w // 8 + 1, 3), np.uint8)
        image = Image.fromarray(array).resize((w, h))
        ImageDraw.Draw(image).rectangle([w // 4, h // 4, w // 2, h // 2], fill=(200, 40, 40))
        path = root / f"image-{i}.png"
        image.save(path)
        images.append(path)
    clip = root / "clip.mp4"
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(32):
            frame = np.full((240, 320, 3), 40, np.uint8)
            frame[80:160, 8 * i : 8 * i + 60] = 230
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    frames = [Image.new("RGB", (160, 120), (30 * t, 80, 120)) for t in range(6)]
    items: list[Any] = [*texts, *images, Video(clip), Video(frames)]
    items += [MultimodalInput(text=texts[i], images=[images[i]]) for i in range(4 * scale)]
    rnd.shuffle(items)
    query_image = images[5]
    documents = [texts[i] for i in range(0, 24, 2)] + images[:8]
    return {"items": items, "documents": documents, "query_text": "quarterly revenue chart",
            "query_image": query_image}


# -- contenders ------------------------------------------------------------------------------------


def naive_embed(embedder: Any, items: Sequence[Any], batch_size: int = 8) -> np.ndarray:
    """The official usage: fixed batches in input order, all pixels decoded inline per batch."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    from qwen3_vl_rag.engine.collate import PixelLoader, collate
    from qwen3_vl_rag.engine.encoding import plan_items

    backbone = embedder.backbone
    encoder, loaded = backbone.encoder, backbone.loaded
    out = []
    for start in range(0, len(items), batch_size):
        plans = plan_items(items[start : start + batch_size], loaded.vision)
        sequences = encoder.encode_embeddings(plans, [embedder.document_instruction] * len(plans),
                                              embedder.max_length)
        loader = PixelLoader(loaded.vision, sequences, workers=0)
        inputs = collate(sequences, range(len(sequences)), loader, pad_id=encoder.pad_id,
                         image_pad_id=encoder.image_pad_id, video_pad_id=encoder.video_pad_id,
                         device=loaded.device)
        with torch.no_grad():
            hidden = loaded.model(**inputs).last_hidden_state
        last = inputs["attention_mask"].sum(dim=1) - 1
        pooled = hidden[torch.arange(hidden.shape[0]), last]
        out.append(F.normalize(pooled.float(), dim=-1).cpu())
    return torch.cat(out).numpy()


def per_pair_scores(reranker: Any, query: Any, documents: Sequence[Any]) -> list[float]:
    """The official reranker loop: every pair prepared and run on its own."""
    import torch

    from qwen3_vl_rag.engine.collate import PixelLoader, collate
    from qwen3_vl_rag.engine.encoding import plan_items

    backbone = reranker.backbone
    encoder, loaded = backbone.encoder, backbone.loaded
    head = reranker.score_head.float().cpu()
    scores = []
    for document in documents:
        pair = tuple(plan_items([query, document], loaded.vision))
        sequences = encoder.encode_pairs([pair], reranker.instruction, reranker.max_length)
        loader = PixelLoader(loaded.vision, sequences, workers=0)
        inputs = collate(sequences, [0], loader, pad_id=encoder.pad_id,
                         image_pad_id=encoder.image_pad_id, video_pad_id=encoder.video_pad_id,
                         device=loaded.device)
        with torch.no_grad():
            hidden = loaded.model(**inputs).last_hidden_state[:, -1]
        scores.append(float(torch.sigmoid(hidden.float().cpu() @ head)))
    return scores


# -- measurement -----------------------------------------------------------------------------------


def best_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


class PeakRss:
    """Peak resident memory of this process during a block, sampled every 5 ms."""

    def __enter__(self) -> PeakRss:
        import psutil

        self._process = psutil.Process()
        self.start = self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def delta_mib(self) -> float:
        return (self.peak - self.start) / 2**20


def load_models(args: argparse.Namespace, root: Path) -> tuple[Any, Any]:
    from qwen3_vl_rag import Qwen3VLEmbedder, Qwen3VLReranker
    from qwen3_vl_rag.testing import build_tiny_checkpoint

    cache = Path(args.cache) / args.preset
    embedding = build_tiny_checkpoint(cache / "embedding", kind="embedding", preset=args.preset)
    reranking = build_tiny_checkpoint(cache / "reranker", kind="reranker", preset=args.preset)
    embedder = Qwen3VLEmbedder.from_pretrained(embedding, device=args.device, dtype=args.dtype)
    reranker = Qwen3VLReranker.from_pretrained(reranking, device=args.device, dtype=args.dtype)
    return embedder, reranker


def run_child(args: argparse.Namespace) -> None:
    """Measure one contender's peak memory in this (fresh) process and print it as JSON."""
    root = Path(tempfile.mkdtemp(prefix="qwen3vl-bench-"))
    workload = make_workload(root, args.scale)
    embedder, reranker = load_models(args, root)
    fn = contenders(embedder, reranker, workload, args)[args.child]
    fn()  # warm up: allocator pools and kernel caches, as in a long-running service
    with PeakRss() as rss:
        fn()
    print(json.dumps({"peak_rss_delta_mib": round(rss.delta_mib, 1)}))


def contenders(embedder: Any, reranker: Any, workload: dict[str, Any],
               args: argparse.Namespace) -> dict[str, Callable[[], Any]]:
    items, documents = workload["items"], workload["documents"]
    text_query, image_query = workload["query_text"], workload["query_image"]
    return {
        "embed/ours": lambda: embedder.embed(items),
        "embed/naive": lambda: naive_embed(embedder, items),
        "rerank-text/ours": lambda: reranker.score(text_query, documents),
        "rerank-text/per-pair": lambda: per_pair_scores(reranker, text_query, documents),
        "rerank-image/ours": lambda: reranker.score(image_query, documents),
        "rerank-image/per-pair": lambda: per_pair_scores(reranker, image_query, documents),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="bench", help="checkpoint size: tiny, bench or 2b")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the best is kept")
    parser.add_argument("--scale", type=int, default=1, help="multiply the workload size")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "qwen3vl-bench"))
    parser.add_argument("--no-memory", action="store_true", help="skip the child-process memory runs")
    parser.add_argument("--st", action="store_true", help="also time sentence-transformers")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_engine.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return

    import torch

    root = Path(tempfile.mkdtemp(prefix="qwen3vl-bench-"))
    workload = make_workload(root, args.scale)
    embedder, reranker = load_models(args, root)
    items = workload["items"]
    tokens = embedder.count_tokens(items)
    print(f"{embedder}\nworkload: {len(items)} items, {sum(tokens)} tokens "
          f"(min {min(tokens)}, max {max(tokens)}); reranking {len(workload['documents'])} documents")
    runs = contenders(embedder, reranker, workload, args)

    # correctness first: the baselines compute the same thing
    ours, naive = runs["embed/ours"](), runs["embed/naive"]()
    embed_diff = float(np.abs(ours - naive).max())
    rerank_diff = max(
        float(np.abs(np.array(runs[f"{q}/ours"]()) - np.array(runs[f"{q}/per-pair"]())).max())
        for q in ("rerank-text", "rerank-image"))
    print(f"max |ours - baseline|: embeddings {embed_diff:.1e}, scores {rerank_diff:.1e}")

    results: dict[str, Any] = {}
    for name, fn in runs.items():
        seconds, _ = best_time(fn, args.repeats)
        count = len(items) if name.startswith("embed") else len(workload["documents"])
        results[name] = {"seconds": round(seconds, 4), "items_per_second": round(count / seconds, 2)}
        print(f"{name:24s} {seconds:8.3f} s   {count / seconds:8.2f} items/s")

    if args.st:
        from st_contender import sentence_transformers_contenders

        for name, fn in sentence_transformers_contenders(embedder, reranker, workload).items():
            seconds, _ = best_time(fn, args.repeats)
            count = len(items) if name.startswith("embed") else len(workload["documents"])
            results[name] = {"seconds": round(seconds, 4),
                             "items_per_second": round(count / seconds, 2)}
            print(f"{name:24s} {seconds:8.3f} s   {count / seconds:8.2f} items/s")

    if not args.no_memory:
        for name in runs:
            child = [sys.executable, __file__, "--child", name, "--preset", args.preset,
                     "--device", args.device, "--dtype", args.dtype, "--cache", args.cache,
                     "--scale", str(args.scale)]
            output = subprocess.run(child, check=True, capture_output=True, text=True).stdout
            results[name].update(json.loads(output.strip().splitlines()[-1]))

    def ratio(fast: str, slow: str) -> float:
        return round(results[slow]["seconds"] / results[fast]["seconds"], 2)

    ratios = {
        "embed: ours vs naive (x faster)": ratio("embed/ours", "embed/naive"),
        "rerank text query: ours vs per-pair (x faster)":
            ratio("rerank-text/ours", "rerank-text/per-pair"),
        "rerank image query: ours vs per-pair (x faster)":
            ratio("rerank-image/ours", "rerank-image/per-pair"),
    }
    for name in [n for n in results if n.startswith("embed/sentence-transformers")]:
        ratios[f"embed: ours vs {name.split('/')[1]} (x faster)"] = ratio("embed/ours", name)
    for name in [n for n in results if n.startswith("rerank-text/sentence-transformers")]:
        ratios[f"rerank text: ours vs {name.split('/')[1]} (x faster)"] = ratio(
            "rerank-text/ours", name)
    print("\nratios")
    for name, value in ratios.items():
        print(f"  {name:55s} {value:6.2f}")
    if not args.no_memory:
        print("\npeak RSS increase while running (fresh process each)")
        for name, row in results.items():
            if "peak_rss_delta_mib" in row:
                print(f"  {name:24s} {row['peak_rss_delta_mib']:8.1f} MiB")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "device": str(embedder.device),
                    "dtype": str(embedder.backbone.loaded.dtype)},
        "preset": args.preset, "workload_items": len(items), "workload_tokens": sum(tokens),
        "max_abs_diff": {"embeddings": embed_diff, "scores": rerank_diff},
        "results": results, "ratios": ratios,
    }, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
