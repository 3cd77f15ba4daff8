"""A self-contained tour: index PDFs and a video, search them by text and image, measure it.

Run ``python -m qwen3_vl_rag.demo`` (or ``make demo``). With no arguments it runs offline
anywhere: it trains the project's tiny embedder and reranker on a synthetic corpus (once, a few
minutes on a CPU; see :mod:`qwen3_vl_rag.testing.trained`), generates held-out pages they never
saw, indexes them with the ``qwen3-vl-rag`` command, runs a text and an image search, writes an
HTML gallery, and evaluates the retrieval on the held-out queries. The tiny models know six
kinds of page in six colours and nothing else; point the demo at the real models for real
documents::

    python -m qwen3_vl_rag.demo --model Qwen/Qwen3-VL-Embedding-2B \
        --reranker Qwen/Qwen3-VL-Reranker-2B
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import time
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main"]

_PDF_DATE = "D:20250101000000Z"


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


def _write_pdf(path: Path, title: str, pages: Sequence[tuple[str, Path | None]]) -> Path:
    import pymupdf as untyped

    pymupdf: Any = untyped  # PyMuPDF ships no type hints

    with pymupdf.open() as document:
        for number, (text, picture) in enumerate(pages, start=1):
            page = document.new_page(width=595, height=842)  # A4
            page.insert_text((56, 70), f"{title} - page {number}", fontsize=18)
            page.insert_textbox(pymupdf.Rect(56, 90, 540, 300), text, fontsize=11)
            if picture is not None:
                page.insert_image(pymupdf.Rect(56, 320, 540, 640), filename=str(picture))
        # Same corpus, same bytes: no creation time and no random /ID, so a second demo run finds
        # every file unchanged and embeds nothing again.
        document.set_metadata({"title": title, "creationDate": _PDF_DATE, "modDate": _PDF_DATE})
        document.save(path, no_new_id=True)
    return path


def make_corpus(folder: Path) -> Path:
    """A small mixed corpus: two PDFs with text, a chart and a screenshot, a photo, a video."""
    folder.mkdir(parents=True, exist_ok=True)
    art = folder.parent / "artwork"  # pictures placed in the PDFs, kept outside the corpus
    art.mkdir(exist_ok=True)
    chart = _draw_bar_chart(art / "chart.png")
    screenshot = _draw_screenshot(art / "screenshot.png")
    _write_pdf(
        folder / "annual-report.pdf",
        "Annual report",
        [
            ("Revenue grew 12% in Q4, the best quarter of the year.", chart),
            ("Costs fell in every region; the outlook for next year is cautious.", None),
            ("Headcount rose to 140 people across three offices.", None),
        ],
    )
    _write_pdf(
        folder / "billing-manual.pdf",
        "Billing manual",
        [
            ("Open Settings, then Billing, to see your plan and seats.", screenshot),
            ("Invoices are sent on the first day of each month.", None),
        ],
    )
    _draw_photo(folder / "sunset.png")
    _draw_screenshot(folder / "settings-screenshot.png")
    _write_video(folder / "square.mp4")
    return folder


def make_demo_corpus(folder: Path) -> tuple[Path, Path, Path]:
    """Held-out synthetic pages as one PDF per kind, plus a video; and their BEIR folder.

    Returns:
        ``(corpus folder, BEIR folder, one page's picture to search with)``.
    """
    from qwen3_vl_rag.testing import make_synthetic_corpus

    pages = make_synthetic_corpus(folder.parent / "held-out-pages", split="test", pdf=True)
    folder.mkdir(parents=True, exist_ok=True)
    for page in pages.pages:
        if page.pdf is not None and not (folder / page.pdf.name).exists():
            shutil.copyfile(page.pdf, folder / page.pdf.name)
    _write_video(folder / "square.mp4")
    beir = pages.write_beir(folder.parent / "held-out-beir", source="image")
    picture = next(p.image for p in pages.pages if (p.kind, p.colour) == ("pie_chart", "blue"))
    return folder, beir, picture


def drop_stale_index(index: Path, model: str | os.PathLike[str], max_pixels: int | None) -> bool:
    """Remove the demo's own index when an earlier demo built it with another model or budget.

    The demo owns ``index``: after an upgrade that changed the demo's models, indexing into the
    old one would be refused (another model), so it is rebuilt instead. Returns whether it went.
    """
    from qwen3_vl_rag.index import MultimodalIndex
    from qwen3_vl_rag.index._signature import recorded_name

    if not MultimodalIndex.exists(index):
        return False
    with MultimodalIndex(index, mode="read") as built:
        recorded = dict(built.signature)
    same = recorded.get("model") == recorded_name(model) and (
        max_pixels is None or recorded.get("max_pixels") == max_pixels
    )
    if not same:
        shutil.rmtree(index)
    return not same


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m qwen3_vl_rag.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model", help="embedding checkpoint (default: the tiny one trained on synthetic pages)"
    )
    parser.add_argument(
        "--reranker", help="reranker checkpoint (default: the tiny one trained on synthetic pages)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("demo-output"),
        help="folder for the corpus, the index, the gallery and the tiny checkpoints",
    )
    parser.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda', ...")
    args = parser.parse_args(argv)

    from qwen3_vl_rag.cli.main import main as cli
    from qwen3_vl_rag.cli.models import random_test_checkpoints
    from qwen3_vl_rag.testing import (
        SYNTHETIC_MAX_PIXELS,
        build_trained_checkpoint,
        is_synthetic_trained_checkpoint,
    )

    out = args.output
    started = time.perf_counter()
    if args.model is None or args.reranker is None:
        print(
            "the tiny models trained on the synthetic corpus: built once, then reused from "
            f"{out} (a few minutes on a CPU)..."
        )
    model = args.model or build_trained_checkpoint(
        out / "trained-embedding", kind="embedding", show_progress=True
    )
    trained = is_synthetic_trained_checkpoint(model)
    reranker = args.reranker or build_trained_checkpoint(
        out / "trained-reranker",
        kind="reranker",
        embedder=model if trained else None,
        show_progress=True,
    )
    print(f"embedding model: {model}\nreranker model:  {reranker}")
    if random_test_checkpoints([model, reranker]):
        print(
            "(random-weight test checkpoints: every step is real, the scores are not; pass "
            "--model/--reranker with the Qwen3-VL checkpoints for meaningful rankings)"
        )
    elif trained:
        print(
            "(tiny models trained here on synthetic pages: they tell bar, line and pie charts, "
            "tables, photos and screenshots apart by kind and colour, and know nothing else. "
            "The 2-layer reranker judges pairs above chance but below the embedder's own "
            "ranking, so the searches show the embedder's ranking; the evaluation below "
            "measures both stages)"
        )
    corpus, beir, picture = make_demo_corpus(out / "corpus")
    pixel_budget = SYNTHETIC_MAX_PIXELS if trained else None
    if drop_stale_index(out / "index", model, pixel_budget):
        print(f"(removed {out / 'index'}: an earlier demo built it with other models or settings)")
    index = str(out / "index")
    common = ["--index", index, "--device", args.device]
    pixels = ["--max-pixels", str(SYNTHETIC_MAX_PIXELS)] if trained else []
    models = ["--model", str(model), "--reranker", str(reranker)]
    no_rerank = ["--no-rerank"] if trained else []
    steps = [
        ["index", str(corpus), *common, *models, *pixels, "--segment-seconds", "2"],
        [
            "search",
            "red bar chart of quarterly revenue",
            *common,
            *no_rerank,
            "--html",
            str(out / "gallery.html"),
        ],
        ["search", "--image", str(picture), *common, *no_rerank, "--top-n", "3"],
        ["evaluate", str(beir), *models, *pixels, "--device", args.device, "--k", "1,5,10"],
        ["status", "--index", index],
    ]
    print(f"\nEach command below runs as printed from {shlex.quote(os.getcwd())}:")
    for step in steps:
        print(f"\n$ {shlex.join(['qwen3-vl-rag', *step])}")
        code = cli(step)
        if code not in (0, 1):
            return code
    print(f"\ndone in {time.perf_counter() - started:.1f}s; open {out / 'gallery.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
