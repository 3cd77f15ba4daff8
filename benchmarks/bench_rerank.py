"""Reranking a search session's pages again: the vision cache on against off, in one process.

Workload (fixed seed, generated offline): ``--pages`` page-like images (A4 at 150 dpi, 1240x1754:
about 1750 visual tokens each, as the PDF loader renders pages at the pixel budget) reranked for
``--queries`` different text queries in a row, as a user refining a query does. Two rerankers
load the same random-weight checkpoint (``--preset``): one with the default vision cache, one with
``vision_cache_bytes=0``. Queries alternate between them (off, on, off, on...), so both see the
same load from other tenants of a shared host; wall-clock and CPU seconds of this process are
reported. The scores of the two are compared first.

The profile splits each rerank into the vision tower (and, inside it, attention over patches),
the language model, and the rest (tokenizing, decoding and resizing pixels, hashing them for
the cache, Python), by timing the modules' forward calls.

Measured 2026-11-30 on this project's shared 2-core AMD EPYC (AVX2, no AMX; torch 2.13 CPU), preset
``bench``, 20 pages of 1827 tokens a pair, 4 queries, float32: a cold rerank is 83% vision tower
(62% attention over patches), 16% language model, 1% the rest; with the cache, queries 2-4 ran
4.7-5.4x faster in CPU seconds (5.5-6.1x wall), the first one at 0.99x (hashing), the session
2.47x; scores identical (max difference 0.0). bfloat16 (emulated on this CPU, 2 pages, 2
queries): vision 73% (attention 29%), language model 26%; the repeat 3.4x faster (CPU s).

Usage: ``python benchmarks/bench_rerank.py [--preset bench|tiny] [--dtype float32|bfloat16]
[--pages 20] [--queries 4] [--threads N]``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

QUERIES = (
    "red bar chart of 2023 revenue",
    "bar chart of revenue by quarter in 2023",
    "quarterly revenue table with totals",
    "invoice total and payment terms",
    "team photo on the last page",
)
PARTS = ("vision", "attention", "language")


def make_pages(count: int, size: tuple[int, int]) -> list[Any]:
    """Page-like pictures: a white sheet with lines of 'text', a bar chart, a table."""
    from PIL import Image, ImageDraw

    rnd = random.Random(0)
    width, height = size
    pages = []
    for _ in range(count):
        page = Image.new("RGB", size, "white")
        draw = ImageDraw.Draw(page)
        y = 80
        while y < height - 120:
            if rnd.random() < 0.12:  # a chart
                base = y + 260
                for bar in range(rnd.randrange(4, 9)):
                    x = 120 + bar * 110
                    top = base - rnd.randrange(40, 240)
                    colour = (rnd.randrange(256), rnd.randrange(256), rnd.randrange(256))
                    draw.rectangle([x, top, x + 70, base], fill=colour)
                y = base + 60
            elif rnd.random() < 0.1:  # a table
                for row in range(rnd.randrange(3, 8)):
                    for column in range(4):
                        x0, y0 = 100 + column * 260, y + row * 40
                        draw.rectangle([x0, y0, x0 + 260, y0 + 40], outline="black")
                y += 360
            else:  # a line of text
                x = 100
                while x < width - 160:
                    word = rnd.randrange(20, 110)
                    draw.rectangle([x, y, x + word, y + 14], fill=(30, 30, 30))
                    x += word + 12
                y += 30
        pages.append(page)
    return pages


class Profile:
    """Seconds spent in the vision tower, its attention, and the language model."""

    def __init__(self, model: Any) -> None:
        self.seconds = dict.fromkeys(PARTS, 0.0)
        self._time(model.visual, "vision")
        for block in model.visual.blocks:
            self._time(block.attn, "attention")
        self._time(model.language_model, "language")

    def _time(self, module: Any, part: str) -> None:
        forward: Callable[..., Any] = module.forward

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return forward(*args, **kwargs)
            finally:
                self.seconds[part] += time.perf_counter() - start

        module.forward = timed

    def take(self) -> dict[str, float]:
        taken, self.seconds = self.seconds, dict.fromkeys(PARTS, 0.0)
        return taken


def shares(parts: dict[str, float], wall: float) -> dict[str, float]:
    return {
        "vision tower": parts["vision"] / wall,
        "attention over patches": parts["attention"] / wall,
        "language model": parts["language"] / wall,
        "other": max(0.0, wall - parts["vision"] - parts["language"]) / wall,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch

    from qwen3_vl_rag import Qwen3VLReranker
    from qwen3_vl_rag.testing import build_tiny_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    folder = Path(args.cache) / f"{args.preset}-reranker"
    checkpoint = build_tiny_checkpoint(folder, kind="reranker", preset=args.preset)
    options: dict[str, Any] = {"device": "cpu", "dtype": args.dtype}
    engines = {
        "off": Qwen3VLReranker.from_pretrained(checkpoint, vision_cache_bytes=0, **options),
        "on": Qwen3VLReranker.from_pretrained(checkpoint, **options),
    }
    profiles = {name: Profile(engine.backbone.loaded.model) for name, engine in engines.items()}
    pages = make_pages(args.pages, (args.width, args.height))
    queries = [QUERIES[i % len(QUERIES)] for i in range(args.queries)]
    for engine in engines.values():  # load kernels and allocators once, on a page not in the list
        engine.score("warm up", make_pages(1, (320, 452)))
    for profile in profiles.values():
        profile.take()
    tokens = len(engines["on"]._pair_sequences(queries[0], pages[:1], engines["on"].instruction)[0])
    rows: list[dict[str, Any]] = []
    for position, query in enumerate(queries):
        row: dict[str, Any] = {"query": query}
        for name in ("off", "on"):
            wall, cpu = time.perf_counter(), time.process_time()
            scores = engines[name].score(query, pages)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            row[name] = {"wall_s": wall, "cpu_s": cpu, "scores": scores}
            row[name]["shares"] = shares(profiles[name].take(), wall)
        row["max_abs_diff"] = float(
            np.abs(np.array(row["on"]["scores"]) - np.array(row["off"]["scores"])).max()
        )
        rows.append(row)
        off, on = row["off"]["wall_s"], row["on"]["wall_s"]
        print(
            f"query {position + 1}: off {off:7.2f} s, on {on:7.2f} s ({off / on:.2f}x), "
            f"|on - off| <= {row['max_abs_diff']:.1e}",
            flush=True,
        )
    cache = engines["on"].vision_cache
    assert cache is not None
    total = {
        name: {k: sum(r[name][k] for r in rows) for k in ("wall_s", "cpu_s")} for name in engines
    }
    return {
        "preset": args.preset,
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "pages": args.pages,
        "page_size": [args.width, args.height],
        "tokens_per_pair": tokens,
        "queries": queries,
        "rows": rows,
        "total": total,
        "gain_wall": total["off"]["wall_s"] / total["on"]["wall_s"],
        "gain_cpu": total["off"]["cpu_s"] / total["on"]["cpu_s"],
        "gain_repeat_wall": sum(r["off"]["wall_s"] for r in rows[1:])
        / max(1e-9, sum(r["on"]["wall_s"] for r in rows[1:])),
        "max_abs_diff": max(r["max_abs_diff"] for r in rows),
        "cache": cache.stats().__dict__,
    }


def report(result: dict[str, Any]) -> None:
    rows = result["rows"]
    print(
        f"\nRerank of {result['pages']} pages ({result['page_size'][0]}x{result['page_size'][1]},"
        f" {result['tokens_per_pair']} tokens a pair) for {len(rows)} queries in a row; preset "
        f"{result['preset']}, {result['dtype']}, {result['threads']} threads"
    )
    for label, row in (
        ("cold rerank, cache off", rows[0]["off"]),
        ("query 1, cache on", rows[0]["on"]),
    ):
        print(f"  profile, {label}: " + _shares(row["shares"]))
    if len(rows) > 1:
        later = {
            k: sum(r["on"]["shares"][k] * r["on"]["wall_s"] for r in rows[1:])
            / sum(r["on"]["wall_s"] for r in rows[1:])
            for k in rows[1]["on"]["shares"]
        }
        print("  profile, queries 2+, cache on: " + _shares(later))
    total = result["total"]
    print(
        f"  session: off {total['off']['wall_s']:.1f} s wall / {total['off']['cpu_s']:.1f} s CPU,"
        f" on {total['on']['wall_s']:.1f} s / {total['on']['cpu_s']:.1f} s: gain "
        f"{result['gain_wall']:.2f}x wall, {result['gain_cpu']:.2f}x CPU; queries 2+ alone "
        f"{result['gain_repeat_wall']:.2f}x"
    )
    cache = result["cache"]
    print(
        f"  cache: {cache['hits']} hits, {cache['misses']} misses, {cache['entries']} entries, "
        f"{cache['bytes'] / 2**20:.0f} MiB of {cache['max_bytes'] / 2**20:.0f} MiB; scores "
        f"on vs off: max |difference| {result['max_abs_diff']:.1e}"
    )


def _shares(values: dict[str, float]) -> str:
    return ", ".join(f"{name} {share:.0%}" for name, share in values.items())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="bench", choices=("tiny", "bench"))
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--queries", type=int, default=4)
    parser.add_argument("--width", type=int, default=1240)
    parser.add_argument("--height", type=int, default=1754)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: its default)")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "qwen3vl-bench"))
    parser.add_argument("--out", type=Path, help="also write the result as JSON")
    args = parser.parse_args()
    result = run(args)
    report(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
