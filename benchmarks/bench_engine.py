"""Speed and memory of the engine, as ratios against baselines run in the same process.

Workload (fixed seed, generated offline): texts of varied length, images of varied size (up to
above the 1.8 MP cap) and short videos, embedded with a random-weight Qwen3-VL checkpoint large
enough that compute, not Python, dominates (``--preset bench`` on CPU; ``--preset 2b`` on a GPU).

Contenders:

* ``ours``: ``Qwen3VLEmbedder.embed`` / ``Qwen3VLReranker.score`` with default settings.
* ``naive``: the official usage: fixed batches of 8 in input order, fp32, pixels decoded inline,
  the model's default KV cache, built from the same preprocessing so outputs are identical.
* ``per-pair``: the official reranker loop, one forward pass per (query, document) pair, the
  query (and its image) prepared again for every pair.
* ``sentence-transformers`` (``--st``): its Qwen3-VL path set up to reproduce the official format
  (see st_contender.py); videos are left out of that comparison.

Every contender's outputs are first checked against ours. Contenders run interleaved, round
after round, and the best round is kept, in wall-clock seconds and in CPU seconds of this
process (which time stolen by other tenants of a shared host does not inflate). Peak memory is
measured per contender in a fresh child process (``--child``), since an allocator that keeps
freed memory would flatter whichever contender runs later: the peak resident memory over two runs,
above the footprint of the loaded models.

Usage: ``python benchmarks/bench_engine.py [--preset bench|tiny|2b] [--device cpu] [--rounds 3]``
"""

from __future__ import annotations

import _torchvision_cpu  # noqa: F401  # before transformers; a no-op without torchvision

# isort: split

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
    words = (
        "revenue growth chart quarter table figure report page screenshot invoice total "
        "street people night camera model vision language retrieval"
    ).split()
    texts = [
        " ".join(rnd.choice(words) for _ in range(n))
        for n in [5, 8, 12, 20, 30, 45, 60, 90, 120, 200, 350, 600] * 4 * scale
    ]
    sizes = (
        [
            (48, 48),
            (96, 64),
            (160, 120),
            (224, 224),
            (320, 240),
            (480, 360),
            (640, 480),
            (800, 600),
            (1024, 768),
            (1280, 720),
            (1600, 1200),
            (300, 900),
        ]
        * 2
        * scale
    )
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
    documents = [texts[i] for i in range(0, 24, 2)] + images[:8]
    return {
        "items": items,
        "documents": documents,
        "query_text": "quarterly revenue chart",
        "query_image": images[5],
    }


# -- baselines ------------------------------------------------------------------------------------


def _model_inputs(backbone: Any, sequences: Sequence[Any]) -> dict[str, Any]:
    from qwen3_vl_rag.engine._collate import PixelLoader, collate

    encoder, loaded = backbone.encoder, backbone.loaded
    loader = PixelLoader(loaded.vision, sequences, workers=0)
    batch = collate(
        sequences,
        range(len(sequences)),
        loader,
        pad_id=encoder.pad_id,
        image_pad_id=encoder.image_pad_id,
        video_pad_id=encoder.video_pad_id,
        device=loaded.device,
    )
    return {
        "input_ids": batch.input_ids,
        "attention_mask": batch.attention_mask,
        "mm_token_type_ids": batch.mm_token_type_ids,
        **batch.pixels,
    }


def naive_embed(embedder: Any, items: Sequence[Any], batch_size: int = 8) -> np.ndarray:
    """The official usage: fixed batches in input order, all pixels decoded inline per batch."""
    import torch
    import torch.nn.functional as F

    from qwen3_vl_rag.engine._encoding import plan_items

    backbone = embedder.backbone
    out = []
    for start in range(0, len(items), batch_size):
        plans = plan_items(items[start : start + batch_size], backbone.loaded.vision)
        sequences = backbone.encoder.encode_embeddings(
            plans, [embedder.document_instruction] * len(plans), embedder.max_length
        )
        inputs = _model_inputs(backbone, sequences)
        with torch.no_grad():
            hidden = backbone.loaded.model(**inputs).last_hidden_state
        last = inputs["attention_mask"].sum(dim=1) - 1
        pooled = hidden[torch.arange(hidden.shape[0]), last]
        out.append(F.normalize(pooled.float(), dim=-1).cpu())
    return torch.cat(out).numpy()


def per_pair_scores(reranker: Any, query: Any, documents: Sequence[Any]) -> list[float]:
    """The official reranker loop: every pair prepared and run on its own."""
    import torch

    from qwen3_vl_rag.engine._encoding import plan_items

    backbone = reranker.backbone
    head = reranker.score_head.float().cpu()
    scores = []
    for document in documents:
        pair = tuple(plan_items([query, document], backbone.loaded.vision))
        sequences = backbone.encoder.encode_pairs([pair], reranker.instruction, reranker.max_length)
        with torch.no_grad():
            hidden = backbone.loaded.model(**_model_inputs(backbone, sequences)).last_hidden_state
        scores.append(float(torch.sigmoid(hidden[0, -1].float().cpu() @ head)))
    return scores


# -- measurement ----------------------------------------------------------------------------------


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


def load_models(args: argparse.Namespace) -> tuple[Any, Any]:
    from qwen3_vl_rag import Qwen3VLEmbedder, Qwen3VLReranker
    from qwen3_vl_rag.testing import build_tiny_checkpoint

    cache = Path(args.cache) / args.preset
    embedding = build_tiny_checkpoint(cache / "embedding", kind="embedding", preset=args.preset)
    reranking = build_tiny_checkpoint(cache / "reranker", kind="reranker", preset=args.preset)
    embedder = Qwen3VLEmbedder.from_pretrained(embedding, device=args.device, dtype=args.dtype)
    reranker = Qwen3VLReranker.from_pretrained(reranking, device=args.device, dtype=args.dtype)
    return embedder, reranker


def contenders(
    embedder: Any, reranker: Any, workload: dict[str, Any]
) -> dict[str, Callable[[], Any]]:
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


def run_child(args: argparse.Namespace) -> None:
    """Measure one contender's peak working memory in this (fresh) process; print it as JSON."""
    workload = make_workload(Path(tempfile.mkdtemp(prefix="qwen3vl-bench-")), args.scale)
    embedder, reranker = load_models(args)
    runs = contenders(embedder, reranker, workload)
    if args.child not in runs:
        from st_contender import contenders as st_contenders

        runs.update(st_contenders(embedder, reranker, workload, check=False))
    fn = runs[args.child]
    # From the loaded model's footprint: the peak over a first run and a second, warm one.
    with PeakRss() as rss:
        fn()
        fn()
    print(json.dumps({"peak_rss_delta_mib": round(rss.delta_mib, 1)}))


def check_outputs(runs: dict[str, Callable[[], Any]]) -> dict[str, float]:
    """Max absolute difference between each baseline and ours (they must compute the same)."""
    diffs = {}
    for task, baseline in (
        ("embed", "naive"),
        ("rerank-text", "per-pair"),
        ("rerank-image", "per-pair"),
    ):
        ours = np.asarray(runs[f"{task}/ours"]())
        other = np.asarray(runs[f"{task}/{baseline}"]())
        diffs[task] = float(np.abs(ours - other).max())
    return diffs


def timed_rounds(runs: dict[str, Callable[[], Any]], rounds: int) -> dict[str, dict[str, float]]:
    """Each contender once per round, interleaved; keep the best wall and CPU time."""
    best = {name: {"seconds": float("inf"), "cpu_seconds": float("inf")} for name in runs}
    for round_index in range(rounds):
        for name, fn in runs.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            best[name]["seconds"] = min(best[name]["seconds"], wall)
            best[name]["cpu_seconds"] = min(best[name]["cpu_seconds"], cpu)
            print(
                f"  round {round_index + 1}  {name:44s} {wall:7.2f} s wall {cpu:7.2f} s cpu",
                flush=True,
            )
    return best


def measure_memory(results: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    """Each contender's peak working memory, measured in its own fresh process."""
    for name in results:
        child = [
            sys.executable,
            __file__,
            "--child",
            name,
            "--preset",
            args.preset,
            "--device",
            args.device,
            "--dtype",
            args.dtype,
            "--cache",
            args.cache,
            "--scale",
            str(args.scale),
        ]
        output = subprocess.run(child, check=True, capture_output=True, text=True).stdout
        results[name].update(json.loads(output.strip().splitlines()[-1]))


def print_memory(results: dict[str, dict[str, float]]) -> None:
    print("\npeak memory above the loaded models (fresh process, two runs)")
    for name, row in results.items():
        if "peak_rss_delta_mib" in row:
            print(f"  {name:44s} +{row['peak_rss_delta_mib']:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="bench", help="checkpoint size: tiny, bench or 2b")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds; the best is kept")
    parser.add_argument("--scale", type=int, default=1, help="multiply the workload size")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "qwen3vl-bench"))
    parser.add_argument("--no-memory", action="store_true", help="skip the memory runs")
    parser.add_argument(
        "--memory-only",
        action="store_true",
        help="only (re)measure peak memory for the contenders of an existing --out",
    )
    parser.add_argument("--st", action="store_true", help="also time sentence-transformers")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_engine.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return
    if args.memory_only:
        report = json.loads(args.out.read_text())
        measure_memory(report["results"], args)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print_memory(report["results"])
        return

    import torch

    workload = make_workload(Path(tempfile.mkdtemp(prefix="qwen3vl-bench-")), args.scale)
    embedder, reranker = load_models(args)
    items = workload["items"]
    tokens = embedder.count_tokens(items)
    print(
        f"{embedder}\nworkload: {len(items)} items, {sum(tokens)} tokens (min {min(tokens)}, "
        f"max {max(tokens)}); reranking {len(workload['documents'])} documents"
    )
    runs = contenders(embedder, reranker, workload)
    diffs = check_outputs(runs)
    print("max |ours - baseline|: " + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))
    if args.st:
        from st_contender import contenders as st_contenders

        runs.update(st_contenders(embedder, reranker, workload))

    counts = {
        name: len(items) if name.startswith("embed/") else len(workload["documents"])
        for name in runs
    }
    if "embed-no-video/ours" in runs:
        from st_contender import comparable

        for name in runs:
            if name.startswith("embed-no-video/"):
                counts[name] = len(comparable(items))
    results = timed_rounds(runs, args.rounds)
    for name, row in results.items():
        row["items_per_second"] = round(counts[name] / row["seconds"], 2)
        row["seconds"], row["cpu_seconds"] = round(row["seconds"], 3), round(row["cpu_seconds"], 3)

    if not args.no_memory:
        measure_memory(results, args)

    ratios: dict[str, dict[str, float]] = {}
    for name in results:
        task, who = name.split("/")
        if who != "ours" and f"{task}/ours" in results:
            ours = results[f"{task}/ours"]
            ratios[f"{task}: ours vs {who}"] = {
                "wall": round(results[name]["seconds"] / ours["seconds"], 2),
                "cpu": round(results[name]["cpu_seconds"] / ours["cpu_seconds"], 2),
            }
    print("\nspeed-up of ours (x; above 1 means ours is faster)")
    for name, value in ratios.items():
        print(f"  {name:50s} wall {value['wall']:5.2f}   cpu {value['cpu']:5.2f}")
    print("\nthroughput (best round)")
    for name, row in results.items():
        memory = (
            f"   peak +{row['peak_rss_delta_mib']:.0f} MiB" if "peak_rss_delta_mib" in row else ""
        )
        print(f"  {name:44s} {row['items_per_second']:8.2f} items/s{memory}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": {
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                    "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                    "device": str(embedder.device),
                    "dtype": str(embedder.backbone.loaded.dtype),
                },
                "preset": args.preset,
                "rounds": args.rounds,
                "workload": {
                    "items": len(items),
                    "tokens": sum(tokens),
                    "rerank_documents": len(workload["documents"]),
                },
                "max_abs_diff_vs_baselines": diffs,
                "results": results,
                "speedup_of_ours": ratios,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
