"""What bfloat16 changes against float32: how far the numbers move, and how much faster it runs.

The same checkpoint is loaded twice in one process, with ``dtype="float32"`` and
``dtype="bfloat16"``, and both run the same items:

* **Vectors:** per-item cosine of the bfloat16 vector to the float32 one (min and mean), per kind
  of item: texts, queries (with the query instruction), page-like images (synthetic pages of
  448x640 px), text+page mixes and short videos. Then what survives the output options: the
  Matryoshka prefix (``dim``), ``int8`` codes (one calibration, measured on the float32
  vectors, for both) and ``binary`` codes (bits that flip).
* **Reranker scores:** max and mean absolute difference of the [0, 1] scores, over two text
  queries and one image query against texts and pages.
* **Rankings** on the synthetic held-out split (36 pages, 108 queries; see
  ``qwen3_vl_rag.testing.make_synthetic_corpus``): top-1 agreement and top-10 overlap of the
  bfloat16 ranking with the float32 one, and nDCG@5/10 in both precisions. With the preset's
  random weights (first stage only: its nDCG is noise), and with the tiny models trained on the
  synthetic corpus (both stages; ``--no-trained`` skips them; built once per recipe, cached).
* **Speed:** the embedding items, then the reranking pairs, float32 and bfloat16 interleaved
  round after round, best of ``--rounds``; the ratio is float32 seconds over bfloat16 seconds
  (above 1: bfloat16 is faster).

Whether bfloat16 is fast depends on the CPU: with AMX or AVX512-BF16 its matrix products run in
hardware; without them torch emulates them, much slower than float32. The CPU's flags are printed
with the results. Writes ``benchmarks/results/bench_precision.json``.

Usage: ``python benchmarks/bench_precision.py [--preset tiny|bench] [--rounds 3] [--no-trained]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
PRECISIONS = ("float32", "bfloat16")
CPU_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")


# -- workload ------------------------------------------------------------------------------------


def write_clip(path: Path, frames: int = 16, fps: int = 8) -> Path:
    """A 2-second 160x112 H.264 clip: a bright bar crossing a grey frame, changing colour."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 160, 112, "yuv420p"
        for i in range(frames):
            frame = np.full((112, 160, 3), 60, np.uint8)
            frame[30:80, 8 * i : 8 * i + 40] = (230, 15 * i, 255 - 15 * i)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_workload(root: Path) -> dict[str, Any]:
    """Items of each kind, queries, and a reranking list; generated offline, deterministic."""
    from PIL import Image

    from qwen3_vl_rag import MultimodalInput, Video
    from qwen3_vl_rag.testing import make_synthetic_corpus

    corpus = make_synthetic_corpus(
        root / "pages", split="pages", size=(448, 640), colours=("red", "blue")
    )
    pages = corpus.pages  # 12: six kinds in two colours
    texts = [page.caption for page in pages[:4]] + [page.text for page in pages[4:8]]
    texts += [" ".join(page.text for page in pages[8:12]), pages[0].title]
    frames = [Image.new("RGB", (128, 96), (40 * t, 90, 200 - 30 * t)) for t in range(6)]
    kinds: dict[str, list[Any]] = {
        "text": texts,
        "page": [page.image for page in pages[:8]],
        "text+page": [
            MultimodalInput(text=page.caption, images=[page.image]) for page in pages[8:12]
        ],
        "video": [Video(write_clip(root / "clip.mp4")), Video(frames)],
    }
    return {
        "kinds": kinds,
        "queries": [query.text for query in corpus.queries[::6]],
        "rerank_queries": [corpus.queries[0].text, corpus.queries[20].text, pages[3].image],
        "documents": [page.text for page in pages[:4]] + [page.image for page in pages[4:10]],
    }


# -- measurements --------------------------------------------------------------------------------


def cosines(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity."""
    dot = (reference * other).sum(axis=1)
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(other, axis=1)
    return np.asarray(dot / norms)


def cosine_row(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    values = cosines(reference, other)
    return {"min": float(values.min()), "mean": float(values.mean()), "items": len(values)}


def output_options(vectors: dict[str, np.ndarray], dim: int) -> dict[str, dict[str, float]]:
    """Matryoshka prefix, int8 and binary codes of the same vectors, bfloat16 against float32."""
    from qwen3_vl_rag import QuantizationCalibration, quantize_embeddings, truncate_embeddings

    reference, other = vectors["float32"], vectors["bfloat16"]
    calibration = QuantizationCalibration.from_embeddings(reference)
    codes = [quantize_embeddings(v, "int8", calibration).astype(int) for v in (reference, other)]
    bits = [np.unpackbits(quantize_embeddings(v, "ubinary"), axis=1) for v in (reference, other)]
    return {
        f"dim={dim}": cosine_row(
            truncate_embeddings(reference, dim, normalize=True),
            truncate_embeddings(other, dim, normalize=True),
        ),
        "int8": {
            "codes_changed": float((codes[0] != codes[1]).mean()),
            "max_step": int(np.abs(codes[0] - codes[1]).max()),
            "cosine_min": float(cosines(*[c.astype(float) for c in codes]).min()),
        },
        "binary": {
            "bits_flipped": float((bits[0] != bits[1]).mean()),
            "max_bits_flipped_per_item": int((bits[0] != bits[1]).sum(axis=1).max()),
        },
    }


def rank_agreement(reference: Any, other: Any, stage: str, k: int = 10) -> dict[str, float]:
    """Top-1 agreement and top-``k`` overlap of two evaluations' rankings of the same queries."""
    first, second = reference.stage(stage), other.stage(stage)
    queries = sorted(first.run)
    top1 = [first.ranking(q)[0] == second.ranking(q)[0] for q in queries]
    overlap = [len(set(first.ranking(q)[:k]) & set(second.ranking(q)[:k])) / k for q in queries]
    return {
        "top1_agreement": float(np.mean(top1)),
        f"top{k}_overlap": float(np.mean(overlap)),
        f"top{k}_overlap_min": float(np.min(overlap)),
    }


def retrieval_rows(
    embedders: dict[str, Any], rerankers: dict[str, Any] | None, beir: Path
) -> dict[str, Any]:
    """Evaluate both precisions on a BEIR folder: rank agreement per stage, nDCG per precision."""
    from qwen3_vl_rag.evaluate import evaluate, load_beir

    reports = {}
    with load_beir(beir) as data:
        for precision in PRECISIONS:
            reranker = rerankers[precision] if rerankers else None
            reports[precision] = evaluate(
                embedders[precision], data, reranker=reranker, k_values=(5, 10)
            )
    stages = [stage.name for stage in reports["float32"].stages]
    return {
        stage: {
            **rank_agreement(reports["float32"], reports["bfloat16"], stage),
            **{
                f"{measure}/{precision}": reports[precision].metrics[stage][measure]
                for measure in ("nDCG@5", "nDCG@10")
                for precision in PRECISIONS
            },
        }
        for stage in stages
    }


def timed_rounds(
    runs: dict[str, Callable[[], Any]], rounds: int
) -> tuple[dict[str, float], dict[str, Any]]:
    """Best wall-clock seconds of each run, interleaved round after round; first outputs kept."""
    best = dict.fromkeys(runs, float("inf"))
    outputs: dict[str, Any] = {}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            result = run()
            best[name] = min(best[name], time.perf_counter() - start)
            outputs.setdefault(name, result)
    return best, outputs


# -- models --------------------------------------------------------------------------------------


def checkpoints(preset: str, cache: Path) -> dict[str, Path]:
    """The preset's random-weight embedding and reranker checkpoints, built once into ``cache``."""
    from qwen3_vl_rag.testing import build_tiny_checkpoint

    out = {}
    for kind in ("embedding", "reranker"):
        folder = cache / f"{preset}-{kind}"
        if not (folder / "model.safetensors").exists():
            build_tiny_checkpoint(folder, kind=kind, preset=preset)
        out[kind] = folder
    return out


def trained_checkpoints() -> dict[str, Path]:
    """The tiny models trained on the synthetic corpus, where the test suite caches them."""
    from qwen3_vl_rag.testing.trained import build_trained_checkpoint, trained_recipe_digest

    root = Path(tempfile.gettempdir()) / "qwen3-vl-rag-tests"
    out: dict[str, Path] = {}
    for kind in ("embedding", "reranker"):
        folder = root / f"trained-{kind}-{trained_recipe_digest(kind)}"
        out[kind] = build_trained_checkpoint(folder, kind=kind, embedder=out.get("embedding"))
    return out


def load_pair(cls: Any, path: Path, **options: Any) -> dict[str, Any]:
    return {p: cls.from_pretrained(path, device="cpu", dtype=p, **options) for p in PRECISIONS}


# -- the run -------------------------------------------------------------------------------------


def measure_preset(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from qwen3_vl_rag import Qwen3VLEmbedder, Qwen3VLReranker
    from qwen3_vl_rag.testing import SYNTHETIC_MAX_PIXELS, make_synthetic_corpus

    start = time.perf_counter()
    paths = checkpoints(args.preset, args.cache)
    built = time.perf_counter() - start
    embedders = load_pair(Qwen3VLEmbedder, paths["embedding"])
    rerankers = load_pair(Qwen3VLReranker, paths["reranker"])
    workload = make_workload(root)
    items = [item for kind in workload["kinds"].values() for item in kind]
    for precision in PRECISIONS:  # warm up: first calls pay for lazy set-up
        embedders[precision].embed(["warm up"])
        rerankers[precision].score("warm up", ["warm up"])

    def embed(p: str) -> Callable[[], np.ndarray]:
        return lambda: embedders[p].embed(items)

    def rerank(p: str) -> Callable[[], np.ndarray]:
        documents = workload["documents"]
        return lambda: np.array(
            [rerankers[p].score(query, documents) for query in workload["rerank_queries"]]
        )

    embed_seconds, vectors = timed_rounds({p: embed(p) for p in PRECISIONS}, args.rounds)
    rerank_seconds, scores = timed_rounds({p: rerank(p) for p in PRECISIONS}, args.rounds)

    rows: dict[str, Any] = {}
    offset = 0
    for kind, members in workload["kinds"].items():
        rows[kind] = cosine_row(*(vectors[p][offset : offset + len(members)] for p in PRECISIONS))
        offset += len(members)
    queries = {p: embedders[p].embed_queries(workload["queries"]) for p in PRECISIONS}
    rows["query"] = cosine_row(queries["float32"], queries["bfloat16"])
    rows["all"] = cosine_row(vectors["float32"], vectors["bfloat16"])
    dimension = embedders["float32"].dimension
    difference = np.abs(scores["float32"] - scores["bfloat16"])

    held_out = make_synthetic_corpus(root / "held-out", split="test")
    random_models = load_pair(Qwen3VLEmbedder, paths["embedding"], max_pixels=SYNTHETIC_MAX_PIXELS)
    return {
        "build_seconds": built,
        "dimension": dimension,
        "embed_items": len(items),
        "rerank_pairs": int(scores["float32"].size),
        "cosine": rows,
        "output_options": output_options(vectors, max(32, dimension // 4)),
        "rerank": {
            "max_abs_diff": float(difference.max()),
            "mean_abs_diff": float(difference.mean()),
            "top1_agreement": float(
                np.mean(scores["float32"].argmax(1) == scores["bfloat16"].argmax(1))
            ),
        },
        "speed": {
            "embed_seconds": embed_seconds,
            "rerank_seconds": rerank_seconds,
            "embed_bf16_speedup": embed_seconds["float32"] / embed_seconds["bfloat16"],
            "rerank_bf16_speedup": rerank_seconds["float32"] / rerank_seconds["bfloat16"],
        },
        "retrieval_random_weights": retrieval_rows(
            random_models, None, held_out.write_beir(root / "beir")
        ),
    }


def measure_trained(root: Path) -> dict[str, Any]:
    from qwen3_vl_rag import Qwen3VLEmbedder, Qwen3VLReranker
    from qwen3_vl_rag.testing import SYNTHETIC_MAX_PIXELS, make_synthetic_corpus

    paths = trained_checkpoints()
    pixels = {"max_pixels": SYNTHETIC_MAX_PIXELS}
    embedders = load_pair(Qwen3VLEmbedder, paths["embedding"], **pixels)
    rerankers = load_pair(Qwen3VLReranker, paths["reranker"], **pixels)
    held_out = make_synthetic_corpus(root / "trained-held-out", split="test")
    beir = held_out.write_beir(root / "trained-beir")
    start = time.perf_counter()
    rows = retrieval_rows(embedders, rerankers, beir)
    return {**rows, "seconds": time.perf_counter() - start}


# -- output --------------------------------------------------------------------------------------


def cpu_flags() -> list[str]:
    """Those of ``CPU_FLAGS`` this CPU has, as the engine's ``dtype="auto"`` reads them."""
    from qwen3_vl_rag.engine._hardware import cpu_flags as reported

    words = reported()
    return [flag for flag in CPU_FLAGS if flag in words]


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            if value > 0.99:
                return f"{value:.6f}"
            return f"{value:.4f}" if value >= 0.01 else f"{value:.2e}"
        return str(value)

    table = [list(header)] + [[cell(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    print(f"\n{title}")
    for row in table:
        print("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)))


def print_retrieval(title: str, rows: dict[str, Any]) -> None:
    header = ["stage", "top-1 agree", "top-10 overlap", "min overlap"]
    header += ["nDCG@5 fp32", "nDCG@5 bf16", "nDCG@10 fp32", "nDCG@10 bf16"]
    print_table(
        title,
        header,
        [
            [
                stage,
                row["top1_agreement"],
                row["top10_overlap"],
                row["top10_overlap_min"],
                row["nDCG@5/float32"],
                row["nDCG@5/bfloat16"],
                row["nDCG@10/float32"],
                row["nDCG@10/bfloat16"],
            ]
            for stage, row in rows.items()
            if isinstance(row, dict)
        ],
    )


def print_report(report: dict[str, Any]) -> None:
    preset = report["preset"]
    print(f"bfloat16 against float32, preset {preset!r} ({report['dimension']} dimensions)")
    print(f"torch {report['torch']}, {report['threads']} threads, CPU flags: {report['cpu_flags']}")
    print_table(
        "vectors: cosine of bfloat16 to float32, per item",
        ["kind", "items", "min", "mean"],
        [[kind, row["items"], row["min"], row["mean"]] for kind, row in report["cosine"].items()],
    )
    options = report["output_options"]
    matryoshka = next(key for key in options if key.startswith("dim="))
    print_table(
        "output options",
        ["option", "figure"],
        [
            [f"{matryoshka}: cosine min", options[matryoshka]["min"]],
            [f"{matryoshka}: cosine mean", options[matryoshka]["mean"]],
            ["int8: codes changed (fraction)", options["int8"]["codes_changed"]],
            ["int8: largest change (steps of 255)", options["int8"]["max_step"]],
            ["int8: cosine of codes, min", options["int8"]["cosine_min"]],
            ["binary: bits flipped (fraction)", options["binary"]["bits_flipped"]],
            [
                "binary: most bits flipped in one item",
                options["binary"]["max_bits_flipped_per_item"],
            ],
        ],
    )
    rerank = report["rerank"]
    print_table(
        f"reranker scores ({report['rerank_pairs']} pairs)",
        ["max abs diff", "mean abs diff", "same top-1 per query"],
        [[rerank["max_abs_diff"], rerank["mean_abs_diff"], rerank["top1_agreement"]]],
    )
    speed = report["speed"]
    print_table(
        f"speed (best of {report['rounds']} rounds, wall seconds)",
        ["task", "float32 s", "bfloat16 s", "fp32 s / bf16 s"],
        [
            [
                f"embed {report['embed_items']} items",
                speed["embed_seconds"]["float32"],
                speed["embed_seconds"]["bfloat16"],
                speed["embed_bf16_speedup"],
            ],
            [
                f"rerank {report['rerank_pairs']} pairs",
                speed["rerank_seconds"]["float32"],
                speed["rerank_seconds"]["bfloat16"],
                speed["rerank_bf16_speedup"],
            ],
        ],
    )
    print_retrieval(
        f"rankings, {preset} random weights, synthetic held-out split",
        report["retrieval_random_weights"],
    )
    if "trained" in report:
        print_retrieval(
            "rankings, tiny models trained on the synthetic corpus, held-out split",
            report["trained"],
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="bench", choices=("tiny", "bench"))
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds; the best is kept")
    parser.add_argument("--no-trained", action="store_true", help="skip the trained tiny models")
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "qwen3vl-bench-precision"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_precision.json")
    args = parser.parse_args()

    import torch

    with tempfile.TemporaryDirectory() as scratch:
        report: dict[str, Any] = {
            "preset": args.preset,
            "rounds": args.rounds,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu_flags": cpu_flags(),
            "machine": platform.processor() or platform.machine(),
            **measure_preset(args, Path(scratch)),
        }
        if not args.no_trained:
            report["trained"] = measure_trained(Path(scratch))
    print_report(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {os.path.relpath(args.out)}")


if __name__ == "__main__":
    main()
