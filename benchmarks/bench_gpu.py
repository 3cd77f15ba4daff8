"""The engine on a GPU at the Qwen3-VL-2B sizes, against the official usage: one prepared run.

``make bench-gpu`` (``PYTHONPATH=integrations python3 benchmarks/bench_gpu.py``): no virtual
environment, only what a GPU machine with PyTorch already has (torch, transformers, tokenizers,
safetensors, huggingface_hub, pillow, numpy). Nothing is downloaded: the model is a random-weight
checkpoint with the 2B sizes, built here (``build_tiny_checkpoint(preset="2b")``), and the pages are
drawn here. Under 8 minutes on an H200, building included.

Workloads:

* ``embed-pages``: page-like images (A4 at 150 dpi: a title, lines of text, a bar chart, a photo),
  the engine's default pixel budget (about 1,800 visual tokens a page);
* ``embed-texts``: texts of 10 to 400 words;
* ``rerank-pages``: a text query against a top-20 list of those pages.

Contenders: ``ours`` (the library's defaults: bfloat16 on CUDA), and the official usage emulated on
the same preprocessing (``_measure.py``): chunks of 8 in input order for embedding and one forward
pass per pair for reranking, in float32 (its default) and in bfloat16 (``torch_dtype=bfloat16``).

Each contender runs once under torch's FLOP counter (its warm-up; its outputs compared with the
official float32 ones), then in timed rounds, interleaved; the best round is kept (the GPU's queue
drained before and after each). The fraction of peak is the counted FLOPs per second over this
GPU's square-matmul throughput in the same precision, measured first. A contender that fails (out
of memory, say) is reported and the others still run.

``--preset tiny --device cpu --quick`` runs the same code in seconds, on a CPU (the test suite's
smoke test).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from _measure import (
    agreement,
    count_flops,
    matmul_peak,
    official_embed,
    official_scores,
    time_once,
)

HERE = Path(__file__).resolve().parent
# what the engine needs; PyAV, PyMuPDF and Chroma are not used by this benchmark
NEEDED = ("torch", "transformers", "tokenizers", "safetensors", "huggingface_hub", "PIL", "numpy")


def check_imports() -> None:
    """Stop with a clear message when a package this run needs is missing."""
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        raise SystemExit(
            f"bench_gpu needs {', '.join(missing)} (not importable by {sys.executable}); "
            "install them, or run with a Python that has PyTorch and transformers"
        )
    if importlib.util.find_spec("qwen3_vl_rag") is None:
        raise SystemExit(
            "qwen3_vl_rag is not importable: run from the repository root with "
            "PYTHONPATH=integrations (make bench-gpu does), or install the package"
        )


# -- workload ------------------------------------------------------------------------------------


def draw_page(index: int, size: tuple[int, int]) -> Any:
    """A report page: title bar, lines of text, a bar chart, a photo-like block."""
    import numpy as np
    from PIL import Image, ImageDraw

    width, height = size
    rng = np.random.RandomState(index)
    page = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(page)
    margin, unit = width // 12, max(height // 60, 4)
    draw.rectangle([margin, margin, width - margin, margin + 2 * unit], fill=(30, 60, 120))
    draw.text((margin + unit, margin + unit // 2), f"Quarterly report, page {index + 1}", "white")
    words = "revenue growth table figure quarter region total margin cost forecast".split()
    y = margin + 4 * unit
    for _ in range(18):
        line = " ".join(words[i] for i in rng.randint(0, len(words), 12))
        draw.text((margin, y), line, fill=(20, 20, 20))
        y += unit
    chart_top, chart_bottom = y + unit, y + 14 * unit
    bars = rng.randint(1, 10, 8)
    bar_width = (width - 2 * margin) // 16
    for i, value in enumerate(bars):
        left = margin + 2 * i * bar_width
        top = chart_bottom - (chart_bottom - chart_top) * int(value) // 10
        draw.rectangle([left, top, left + bar_width, chart_bottom], fill=(200, 60 + 20 * i, 40))
    photo = rng.randint(0, 255, (8, 12, 3)).astype(np.uint8)
    photo_box = (width - 2 * margin, max(height - chart_bottom - 2 * margin, unit))
    page.paste(Image.fromarray(photo).resize(photo_box), (margin, chart_bottom + margin))
    return page


def make_workload(root: Path, pages: int, texts: int, page_size: tuple[int, int]) -> dict[str, Any]:
    import random

    paths = []
    for i in range(pages):
        path = root / f"page-{i}.png"
        draw_page(i, page_size).save(path)
        paths.append(path)
    rnd = random.Random(0)
    words = (
        "revenue growth chart quarter table figure report page invoice total region margin "
        "forecast cost people street camera model vision language retrieval"
    ).split()
    lengths = [10, 25, 50, 100, 200, 400]
    documents = [
        " ".join(rnd.choice(words) for _ in range(lengths[i % len(lengths)])) for i in range(texts)
    ]
    return {
        "pages": paths,
        "texts": documents,
        "query": "which quarter had the highest revenue growth?",
        "rerank": paths[:20],
    }


# -- models --------------------------------------------------------------------------------------


def build_checkpoints(cache: Path, preset: str) -> tuple[Path, Path]:
    """The embedding and reranker checkpoints, built in two processes at once (the 2B sizes take
    a minute each), or reused when an earlier run left them complete."""
    from qwen3_vl_rag.testing import build_tiny_checkpoint

    folders = {kind: cache / preset / kind for kind in ("embedding", "reranker")}
    todo = [kind for kind, folder in folders.items() if not (folder / ".complete").exists()]
    if todo:
        start = time.perf_counter()
        # spawned, not forked: nothing of this process's state (threads, a CUDA context) is copied
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(len(todo), mp_context=spawn) as pool:
            jobs = {
                kind: pool.submit(build_tiny_checkpoint, folders[kind], kind=kind, preset=preset)
                for kind in todo
            }
            for kind, job in jobs.items():
                job.result()
                (folders[kind] / ".complete").touch()
        print(f"built the {preset} checkpoints in {time.perf_counter() - start:.0f} s", flush=True)
    return folders["embedding"], folders["reranker"]


def load(embedding: Path, reranking: Path, device: str, dtype: str) -> tuple[Any, Any]:
    from qwen3_vl_rag import Qwen3VLEmbedder, Qwen3VLReranker

    return (
        Qwen3VLEmbedder.from_pretrained(embedding, device=device, dtype=dtype),
        # a cold search every round (bench_rerank.py measures the vision cache on repeats)
        Qwen3VLReranker.from_pretrained(
            reranking, device=device, dtype=dtype, vision_cache_bytes=0
        ),
    )


def dtype_name(model: Any) -> str:
    return str(model.backbone.loaded.dtype).removeprefix("torch.")


# -- running -------------------------------------------------------------------------------------


def run_contender(
    fn: Callable[[], Any], device: str, rounds: int, deadline: float
) -> tuple[Any, int, list[tuple[float, float]]]:
    """Its outputs and FLOPs (one counted run, the warm-up), then its timed rounds; rounds after
    the deadline are skipped, but one always runs."""
    output, flops = count_flops(fn)
    times = [time_once(fn, device)]
    while len(times) < rounds and time.perf_counter() < deadline:
        times.append(time_once(fn, device))
    return output, flops, times


def free_memory(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="2b", help="checkpoint sizes: 2b (default) or tiny")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="a small workload, one round")
    parser.add_argument("--pages", type=int, help="pages to embed (default 32; --quick 3)")
    parser.add_argument("--texts", type=int, help="texts to embed (default 256; --quick 8)")
    parser.add_argument("--rounds", type=int, help="timed rounds, the best kept (default 2)")
    parser.add_argument(
        "--budget-s", type=float, default=420.0, help="no new timed round after this many seconds"
    )
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "qwen3vl-bench"))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_gpu.json")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    check_imports()

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(
            f"no CUDA device visible to torch {torch.__version__}; on a CPU run "
            "--preset tiny --device cpu --quick (a smoke test), or benchmarks/bench_engine.py"
        )
    pages = args.pages or (3 if args.quick else 32)
    texts = args.texts or (8 if args.quick else 256)
    rounds = args.rounds or (1 if args.quick else 2)
    page_size = (310, 438) if args.quick else (1240, 1754)

    embedding, reranking = build_checkpoints(Path(args.cache), args.preset)
    cuda = args.device.startswith("cuda")
    gpu = torch.cuda.get_device_name() if cuda else platform.processor() or "cpu"
    print(f"{gpu}; torch {torch.__version__}; preset {args.preset}", flush=True)
    sizes, budget = ((4096, 8192), 10.0) if cuda else ((1024,), 2.0 if args.quick else 10.0)
    peaks = {
        dtype: matmul_peak(args.device, dtype, sizes=sizes, budget_s=budget)
        for dtype in ("bfloat16", "float32")
    }
    for dtype, peak in peaks.items():
        print(
            f"matmul peak {dtype}: {peak['flops_per_second'] / 1e12:.3g} TFLOP/s "
            f"({time.perf_counter() - started:.0f} s since the start)",
            flush=True,
        )

    workload = make_workload(
        Path(tempfile.mkdtemp(prefix="qwen3vl-bench-gpu-")), pages, texts, page_size
    )
    if len(workload["rerank"]) < 20:
        print(f"reranking {len(workload['rerank'])} pages (fewer than 20: --pages)")

    ours = load(embedding, reranking, args.device, "auto")
    models = {"auto": ours, dtype_name(ours[0]): ours}
    for dtype in ("float32", "bfloat16"):
        if dtype not in models:
            models[dtype] = load(embedding, reranking, args.device, dtype)
    print(f"ours: {ours[0]}", flush=True)

    query, top = workload["query"], workload["rerank"]
    runs: dict[str, tuple[str, Callable[[], Any]]] = {}
    for task, items in (("embed-pages", workload["pages"]), ("embed-texts", workload["texts"])):
        runs[f"{task}/ours"] = ("auto", lambda x=items: ours[0].embed(x))
        for dtype in ("float32", "bfloat16"):
            embedder = models[dtype][0]
            runs[f"{task}/official-chunks8-{dtype}"] = (
                dtype,
                lambda e=embedder, x=items: official_embed(e, x, batch_size=8),
            )
    runs["rerank-pages/ours"] = ("auto", lambda: ours[1].score(query, top))
    for dtype in ("float32", "bfloat16"):
        reranker = models[dtype][1]
        runs[f"rerank-pages/official-per-pair-{dtype}"] = (
            dtype,
            lambda r=reranker: official_scores(r, query, top),
        )
    counts = {
        "embed-pages": len(workload["pages"]),
        "embed-texts": len(workload["texts"]),
        "rerank-pages": len(top),
    }

    deadline = started + args.budget_s
    bf16_peak = peaks["bfloat16"]["flops_per_second"]
    results: dict[str, dict[str, Any]] = {}
    outputs: dict[str, Any] = {}
    for name, (dtype, fn) in runs.items():
        task = name.split("/")[0]
        precision = dtype_name(models[dtype][0])
        try:
            outputs[name], flops, times = run_contender(fn, args.device, rounds, deadline)
        except Exception as exc:  # out of memory, say: report it, run the others
            results[name] = {"dtype": precision, "error": f"{type(exc).__name__}: {exc}"[:500]}
            print(f"  {name:44s} FAILED: {results[name]['error']}", flush=True)
            free_memory(args.device)
            continue
        seconds = min(wall for wall, _ in times)
        results[name] = {
            "dtype": precision,
            "items_per_second": round(counts[task] / seconds, 3),
            "seconds": round(seconds, 4),
            "cpu_seconds": round(min(cpu for _, cpu in times), 4),
            "rounds": len(times),
            "tflop": float(f"{flops / 1e12:.4g}"),
            "fraction_of_peak": round(flops / seconds / peaks[precision]["flops_per_second"], 3),
            "fraction_of_bf16_peak": round(flops / seconds / bf16_peak, 3),
        }
        print(
            f"  {name:44s} {results[name]['items_per_second']:9.2f}/s "
            f"({time.perf_counter() - started:.0f} s since the start)",
            flush=True,
        )
        free_memory(args.device)

    # agreement with the official default (float32): reported, not enforced (random weights
    # through 28 layers; on a CPU, bench_engine.py enforces equality before timing)
    for name, output in outputs.items():
        reference = outputs.get(f"{name.split('/')[0]}/official-chunks8-float32")
        reference = outputs.get(f"{name.split('/')[0]}/official-per-pair-float32", reference)
        if reference is not None:
            results[name]["agreement_with_official_float32"] = agreement(reference, output)

    speedups: dict[str, float] = {}
    for name, row in results.items():
        task, who = name.split("/")
        mine = results.get(f"{task}/ours", {})
        if who != "ours" and "seconds" in row and "seconds" in mine:
            speedups[f"{task}: ours vs {who}"] = round(row["seconds"] / mine["seconds"], 2)

    units = {"embed-pages": "pages/s", "embed-texts": "texts/s", "rerank-pages": "pairs/s"}
    print(
        f"\n{'contender':44s} {'dtype':9s} {'throughput':>16s} {'TFLOP':>8s} {'of bf16 peak':>13s}"
    )
    for name, row in results.items():
        if "error" in row:
            print(f"{name:44s} {row['dtype']:9s} failed: {row['error'][:60]}")
            continue
        rate = f"{row['items_per_second']:.2f} {units[name.split('/')[0]]}"
        print(
            f"{name:44s} {row['dtype']:9s} {rate:>16s} {row['tflop']:9.3g} "
            f"{row['fraction_of_bf16_peak']:13.3f}"
        )
    print("\nspeed-up of ours (x; above 1: ours faster)")
    for name, value in speedups.items():
        print(f"  {name:56s} {value:6.2f}")
    for name, row in results.items():
        if "agreement_with_official_float32" in row:
            found = row["agreement_with_official_float32"]
            cosine = f", min cosine {found['min_cosine']:.5f}" if "min_cosine" in found else ""
            print(f"  agreement {name}: max |diff| {found['max_abs_diff']:.2e}{cosine}")

    report = {
        "machine": {
            "device": gpu,
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "platform": platform.platform(),
            "tf32_matmul": bool(getattr(torch.backends.cuda.matmul, "allow_tf32", False)),
        },
        "preset": args.preset,
        "matmul_peak": peaks,
        "workload": {"pages": pages, "page_size": page_size, "texts": texts, "rerank": len(top)},
        "results": results,
        "speedup_of_ours": speedups,
        "seconds_total": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{report['seconds_total']:.0f} s in all; wrote {args.out}")
    return 1 if any("error" in row for row in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
