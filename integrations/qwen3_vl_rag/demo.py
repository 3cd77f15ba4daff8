"""A self-contained tour: embed text, images and a video into one space, then rerank.

Run ``python -m qwen3_vl_rag.demo`` (or ``make demo``). With no arguments it builds tiny
random-weight checkpoints offline, so it runs anywhere in seconds; the rankings are then
meaningless, but every step is the real pipeline. Point it at the real models for real results::

    python -m qwen3_vl_rag.demo --model Qwen/Qwen3-VL-Embedding-2B \
        --reranker Qwen/Qwen3-VL-Reranker-2B
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from qwen3_vl_rag.inputs import InputItem, MultimodalInput, Video

__all__ = ["main"]


def _draw_bar_chart(path: Path) -> Path:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (640, 420), "white")
    draw = ImageDraw.Draw(image)
    draw.text((20, 12), "Revenue by quarter (EUR m)", fill="black")
    for i, height in enumerate((120, 180, 150, 290)):
        left = 80 + i * 130
        draw.rectangle([left, 380 - height, left + 80, 380], fill=(200, 50 + 40 * i, 40))
        draw.text((left + 25, 388), f"Q{i + 1}", fill="black")
    draw.line([60, 380, 620, 380], fill="black", width=2)
    image.save(path)
    return path


def _draw_screenshot(path: Path) -> Path:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (800, 500), (245, 246, 250))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 0, 800, 48], fill=(40, 60, 120))
    draw.text((16, 16), "Settings  >  Billing", fill="white")
    for row, label in enumerate(("Plan: Team", "Seats: 12", "Next invoice: 1 Dec", "Total: 480")):
        draw.rectangle([40, 80 + row * 90, 760, 150 + row * 90], outline=(180, 180, 190), width=2)
        draw.text((60, 105 + row * 90), label, fill=(30, 30, 30))
    image.save(path)
    return path


def _draw_photo(path: Path) -> Path:
    from PIL import Image, ImageDraw

    y = np.linspace(0, 1, 360, dtype=np.float32)[:, None, None]
    sky = (1 - y) * np.array([255, 150, 60], np.float32) + y * np.array([40, 20, 90], np.float32)
    image = Image.fromarray(np.broadcast_to(sky, (360, 540, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.ellipse([220, 170, 320, 270], fill=(255, 220, 120))
    draw.rectangle([0, 280, 540, 360], fill=(20, 30, 40))
    image.save(path)
    return path


def _write_video(path: Path) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(8))
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(32):  # 4 seconds: a square crossing the frame
            frame = np.full((240, 320, 3), (30, 90, 40), np.uint8)
            x = 10 + i * 9
            frame[90:150, x : x + 60] = (240, 240, 240)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([line, rule, *body])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m qwen3_vl_rag.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", help="embedding checkpoint (default: a tiny offline one)")
    parser.add_argument("--reranker", help="reranker checkpoint (default: a tiny offline one)")
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("demo-output"),
        help="folder for the generated media and tiny checkpoints",
    )
    parser.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda', ...")
    args = parser.parse_args(argv)

    from qwen3_vl_rag import Qwen3VLEmbedder, Qwen3VLReranker
    from qwen3_vl_rag.testing import build_tiny_checkpoint

    out = args.output
    media = out / "media"
    media.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model = args.model or build_tiny_checkpoint(out / "tiny-embedding", kind="embedding")
    reranker_model = args.reranker or build_tiny_checkpoint(out / "tiny-reranker", kind="reranker")
    tiny = args.model is None
    print(f"embedding model: {model}\nreranker model:  {reranker_model}")
    if tiny:
        print(
            "(tiny random-weight checkpoints: every step is real, the scores are not; pass "
            "--model/--reranker with the Qwen3-VL checkpoints for meaningful rankings)"
        )

    chart = _draw_bar_chart(media / "revenue-chart.png")
    screenshot = _draw_screenshot(media / "billing-screenshot.png")
    photo = _draw_photo(media / "sunset.png")
    clip = _write_video(media / "square.mp4")
    corpus: list[tuple[str, str, InputItem]] = [
        (
            "text",
            "Revenue grew 12% in Q4, the best quarter of the year.",
            "Revenue grew 12% in Q4, the best quarter of the year.",
        ),
        (
            "text",
            "The team plan costs 40 per seat and month.",
            "The team plan costs 40 per seat and month.",
        ),
        (
            "text",
            "Sunsets are redder when dust fills the air.",
            "Sunsets are redder when dust fills the air.",
        ),
        ("image", chart.name, chart),
        ("image", screenshot.name, screenshot),
        ("image", photo.name, photo),
        ("video", f"{clip.name} (1 fps)", Video(clip)),
        (
            "image+text",
            f"{chart.name} + caption",
            MultimodalInput(text="Quarterly revenue chart", images=[chart]),
        ),
    ]

    embedder = Qwen3VLEmbedder.from_pretrained(model, device=args.device)
    reranker = Qwen3VLReranker.from_pretrained(reranker_model, device=args.device)
    print(f"\n{embedder}\n{reranker}")

    t0 = time.perf_counter()
    documents = embedder.embed_documents([item for _, _, item in corpus], show_progress=True)
    embed_seconds = time.perf_counter() - t0
    tokens = embedder.count_tokens([item for _, _, item in corpus])
    print(
        f"\nembedded {len(corpus)} items ({sum(tokens)} tokens) into {documents.shape[1]} "
        f"dimensions in {embed_seconds:.2f}s"
    )

    queries: list[InputItem] = ["bar chart of quarterly revenue", MultimodalInput(images=[photo])]
    query_labels = ["text: 'bar chart of quarterly revenue'", f"image: {photo.name}"]
    query_vectors = embedder.embed_queries(queries)
    for label, query, vector in zip(query_labels, queries, query_vectors, strict=True):
        similarity = documents @ vector
        candidates = [int(i) for i in np.argsort(-similarity)[:5]]
        ranked = reranker.rerank(query, [corpus[i][2] for i in candidates])
        rows = [
            [
                str(rank),
                corpus[candidates[r.index]][0],
                corpus[candidates[r.index]][1][:52],
                f"{similarity[candidates[r.index]]:+.3f}",
                f"{r.score:.3f}",
            ]
            for rank, r in enumerate(ranked, start=1)
        ]
        print(f"\nquery ({label}): top 5 by cosine, reranked")
        print(_table(["#", "kind", "item", "cosine", "rerank"], rows))

    print(f"\ndone in {time.perf_counter() - started:.1f}s; media and checkpoints in {out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
