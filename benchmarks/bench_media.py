"""Speed and memory of the media layer: PDF pages rendered per second, and flat streaming memory.

Corpus (generated offline, fixed seed): A4 report pages with a title, 40 lines of text, a vector
bar chart and, on every third page, an embedded 1200x900 photo; and a folder of images,
half 1920x1080 PNG screenshots and half 3264x2448 JPEG photos.

**Rendering speed** (same process, contenders interleaved, best of ``--rounds``):

* ``ours``: ``load_pdf(path)`` and ``page.load_image()``: every page rendered once, straight at
  the size the embedder uses (A4: 1152x1600 at the default budget).
* ``ours, 2 workers (started)``: the same through a running ``WorkerPool(2)``, pages asked for
  from two threads (as the embedder's decoding threads do): the isolated path of folder
  ingestion, in steady state. Starting the two workers (paid once per scan) is timed apart.
* ``render at 200 dpi, then resize``: the common pipeline (pdf2image's default resolution,
  then the model's resize to the same size), with PyMuPDF so only the method differs. The
  render alone, without the resize the model needs, is shown too: most of the baseline's time
  is the resize.

**Memory** (each run in a fresh child process, sampled every 5 ms over the whole process tree,
workers included): the peak resident memory above the child's footprint before the scan, while
``scan_folder`` streams a PDF of 100 and of 500 pages, and folders of 50 and 200 images, every
item's pixels decoded and dropped. The ``hold every page`` contender keeps the rendered pages in
a list, as ``pdf2image.convert_from_path`` does, to show what unbounded growth looks like.

Usage: ``python benchmarks/bench_media.py [--rounds 3] [--pages 500] [--images 200]``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
BASELINE_DPI = 200  # pdf2image's default, used by many PDF-to-image RAG pipelines

# -- corpus --------------------------------------------------------------------------------------


def make_pdf(path: Path, pages: int) -> Path:
    """A4 report pages: title, 40 lines of text, a bar chart, a photo on every third page."""
    import pymupdf
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    photo = _photo(rng, 1200, 900)
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "JPEG", quality=85)
    photo_bytes = buffer.getvalue()
    words = "revenue growth quarter region margin forecast customers churn pipeline".split()
    document = pymupdf.open()
    photo_xref = 0
    for number in range(pages):
        page = document.new_page(width=595, height=842)
        page.insert_text((60, 70), f"Quarterly report, section {number + 1}", fontsize=18)
        for line in range(40):
            text = " ".join(words[(number + line + k) % len(words)] for k in range(11))
            page.insert_text((60, 100 + line * 11.5), text, fontsize=8.5)
        for bar in range(5):
            height = 40 + 25 * ((number + bar) % 5)
            left = 80 + bar * 60
            colour = (0.2 + 0.15 * bar, 0.3, 0.8 - 0.12 * bar)
            page.draw_rect(
                pymupdf.Rect(left, 780 - height, left + 40, 780), color=colour, fill=colour
            )
        if number % 3 == 0:
            rect = pymupdf.Rect(380, 600, 540, 720)
            if photo_xref:
                page.insert_image(rect, xref=photo_xref)
            else:
                photo_xref = page.insert_image(rect, stream=photo_bytes)
    document.save(path, garbage=3, deflate=True)
    document.close()
    return path


def make_image_folder(folder: Path, count: int) -> Path:
    """Half 1920x1080 PNG screenshots, half 3264x2448 JPEG photos."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    photo = _photo(rng, 3264, 2448)
    for index in range(count):
        if index % 2:
            shifted = np.roll(photo, index * 37, axis=1)
            Image.fromarray(shifted).save(folder / f"photo_{index:03d}.jpg", quality=90)
        else:
            screen = Image.new("RGB", (1920, 1080), (245, 246, 248))
            draw = ImageDraw.Draw(screen)
            draw.rectangle((0, 0, 1920, 56), fill=(32, 40, 64))
            for row in range(24):
                y = 90 + row * 38
                draw.rectangle((40, y, 1880, y + 30), outline=(200, 204, 210))
                draw.text((52, y + 8), f"row {row} of screen {index}: status ok", fill=(20, 20, 20))
            screen.save(folder / f"screen_{index:03d}.png")
    return folder


def _photo(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A smooth, photo-like image (gradients and soft blobs plus sensor noise)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            128 + 100 * np.sin(x / width * 6.0 + y / height * 2.0),
            128 + 100 * np.cos(y / height * 5.0),
            128 + 100 * np.sin((x + y) / (width + height) * 9.0),
        ],
        axis=-1,
    )
    noise = rng.normal(0, 6, size=base.shape).astype(np.float32)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


# -- rendering speed -------------------------------------------------------------------------------


def render_ours(path: Path) -> int:
    from qwen3_vl_rag.media import load_pdf

    count = 0
    for page in load_pdf(path):
        image = page.load_image()
        count += image.width > 0
    return count


def render_in_workers(path: Path, pool: Any) -> int:
    from qwen3_vl_rag.media import load_pdf

    pages = list(load_pdf(path, runner=pool))
    with ThreadPoolExecutor(2) as threads:
        return sum(image.width > 0 for image in threads.map(lambda p: p.load_image(), pages))


def pool_start_seconds(path: Path) -> float:
    """Time to start two workers and render a first page in each (paid once per scan)."""
    from qwen3_vl_rag.media import WorkerPool, load_pdf

    start = time.perf_counter()
    with WorkerPool(workers=2) as pool:
        pages = list(load_pdf(path, pages=[0, 1], runner=pool))
        with ThreadPoolExecutor(2) as threads:
            list(threads.map(lambda p: p.load_image(), pages))
        return time.perf_counter() - start


def render_big_then_resize(path: Path, *, resize: bool = True) -> int:
    """Render at 200 dpi, then resize to the size the model uses (the same size as ours)."""
    import pymupdf
    from PIL import Image

    from qwen3_vl_rag.media import MediaBudget
    from qwen3_vl_rag.media.pdf import _render_size

    budget = MediaBudget()
    count = 0
    with pymupdf.open(path) as document:
        for page in document:
            pixmap = page.get_pixmap(dpi=BASELINE_DPI, alpha=False)
            image = Image.frombytes("RGB", (pixmap.width, pixmap.height), pixmap.samples)
            if resize:
                size = _render_size(page.rect.width, page.rect.height, budget)
                image = image.resize(size, Image.Resampling.BICUBIC)
            count += image.width > 0
    return count


def make_video(path: Path, seconds: int, fps: int = 25) -> Path:
    """640x360 H.264 (a moving scene), a keyframe every 10 s as camera and screen recorders do."""
    import av

    rng = np.random.default_rng(0)
    width, height = 640, 360
    scene = _photo(rng, width * 2, height)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "g": str(10 * fps), "bf": "2"}
        for i in range(seconds * fps):
            shift = (i * 2) % width
            frame = np.ascontiguousarray(scene[:, shift : shift + width])
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def clip_frames(path: Path, segment_seconds: float, *, from_start: bool) -> int:
    """Decode the frames the engine samples for every clip; return how many."""
    import av

    from qwen3_vl_rag import video_frames as media_video
    from qwen3_vl_rag.engine._vision import VisionSettings, plan_video
    from qwen3_vl_rag.media import load_video

    media_video._TIMELINES.clear()  # each run pays for reading the file's timeline once
    count = 0
    for clip in load_video(path, segment_seconds=segment_seconds):
        assert clip.video is not None
        indices = list(plan_video(clip.video, VisionSettings()).frame_indices)
        if from_start:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                count += len(media_video._decode_from_start(container, stream, indices))
        else:
            count += len(media_video.read_frames(path, indices))
    return count


def timed_rounds(runs: dict[str, Callable[[], int]], rounds: int) -> dict[str, dict[str, float]]:
    best: dict[str, dict[str, float]] = {}
    for _ in range(rounds):
        for name, run in runs.items():
            start, cpu = time.perf_counter(), time.process_time()
            pages = run()
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
            if name not in best or wall < best[name]["wall_s"]:
                best[name] = {"wall_s": wall, "cpu_s": cpu, "pages": pages}
    for result in best.values():
        result["pages_per_s"] = result["pages"] / result["wall_s"]
    return best


# -- memory (child processes) ----------------------------------------------------------------------


class TreePeak:
    """Peak resident memory of this process and its children, sampled every 5 ms."""

    def __enter__(self) -> TreePeak:
        import psutil

        self._process = psutil.Process()
        self.start = self.peak = self._now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _now(self) -> int:
        import psutil

        total = self._process.memory_info().rss
        for child in self._process.children(recursive=True):
            with contextlib.suppress(psutil.Error):  # a worker that just exited
                total += child.memory_info().rss
        return total

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._now())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._now())


def child(mode: str, target: Path) -> None:
    """Stream (or hold) every item of ``target``; print the peak memory and the time as JSON."""
    from qwen3_vl_rag.media import scan_folder

    held = []
    checksum = 0.0
    with TreePeak() as peak:
        start = time.perf_counter()
        with scan_folder(target) as scan:
            for item in scan:
                image = item.load_image()
                checksum += float(np.asarray(image)[::64, ::64].mean())
                if mode == "hold":
                    held.append(image)
        seconds = time.perf_counter() - start
    counts = scan.report.counts()
    print(
        json.dumps(
            {
                "items": counts["items"],
                "failed": counts["failed"],
                "seconds": seconds,
                "peak_above_start_mib": (peak.peak - peak.start) / 2**20,
                "start_mib": peak.start / 2**20,
                "checksum": checksum,
            }
        )
    )


def measure(mode: str, target: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(target)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# -- main ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--speed-pages", type=int, default=60, help="pages in the speed PDF")
    parser.add_argument("--pages", type=int, default=500, help="largest PDF for memory")
    parser.add_argument("--images", type=int, default=200, help="largest image folder")
    parser.add_argument("--video-seconds", type=int, default=300, help="video cut into clips")
    parser.add_argument("--no-hold", action="store_true", help="skip the hold-every-page runs")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_media.json")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return

    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        }
    }
    with tempfile.TemporaryDirectory(prefix="bench-media-") as scratch:
        root = Path(scratch)
        print(f"generating the corpus in {root} ...", flush=True)
        speed_pdf = make_pdf(root / "speed.pdf", args.speed_pages)
        small_pages = max(1, args.pages // 5)
        pdfs = {n: make_pdf(root / f"pdf{n}" / "report.pdf", n) for n in (small_pages, args.pages)}
        small_images = max(1, args.images // 4)
        folders = {
            n: make_image_folder(root / f"images{n}", n) for n in (small_images, args.images)
        }

        from qwen3_vl_rag.media import WorkerPool

        pool = WorkerPool(workers=2)
        render_in_workers(speed_pdf, pool)  # start the workers: steady state is timed below
        runs = {
            "ours": lambda: render_ours(speed_pdf),
            "ours, 2 workers (started)": lambda: render_in_workers(speed_pdf, pool),
            f"render at {BASELINE_DPI} dpi, then resize": lambda: render_big_then_resize(speed_pdf),
            f"render at {BASELINE_DPI} dpi only (no resize)": lambda: render_big_then_resize(
                speed_pdf, resize=False
            ),
        }
        speed = timed_rounds(runs, args.rounds)
        pool.close()
        startup = min(pool_start_seconds(speed_pdf) for _ in range(args.rounds))
        baseline = speed[f"render at {BASELINE_DPI} dpi, then resize"]["wall_s"]
        print(f"\nrendering {args.speed_pages} A4 pages at the default budget (1152x1600):")
        print(f"  {'contender':40s} {'pages/s':>8s} {'CPU s':>7s} {'speed-up':>9s}")
        for name, result in speed.items():
            ratio = baseline / result["wall_s"]
            result["speedup_vs_render_then_resize"] = ratio
            print(f"  {name:40s} {result['pages_per_s']:8.1f} {result['cpu_s']:7.2f} {ratio:8.2f}x")
        print(f"  starting 2 workers and rendering a first page in each: {startup:.2f} s")
        results["render_speed"] = speed
        results["worker_start_s"] = startup

        video = make_video(root / "recording.mp4", args.video_seconds)
        clip_runs = {
            "ours: from the nearest keyframe": lambda: clip_frames(video, 10, from_start=False),
            "decode from the start (reference)": lambda: clip_frames(video, 10, from_start=True),
        }
        clips = timed_rounds(clip_runs, args.rounds)
        reference = clips["decode from the start (reference)"]["wall_s"]
        print(f"\ncutting a {args.video_seconds} s 640x360 video into 10 s clips, frames decoded:")
        print(f"  {'contender':40s} {'seconds':>8s} {'speed-up':>9s}")
        for name, result in clips.items():
            result["frames"] = result.pop("pages")
            del result["pages_per_s"]
            result["speedup_vs_from_start"] = reference / result["wall_s"]
            print(f"  {name:40s} {result['wall_s']:8.2f} {result['speedup_vs_from_start']:8.2f}x")
        results["video_clips"] = clips

        memory: dict[str, Any] = {}
        cases = [("stream", f"pdf, {n} pages", pdfs[n].parent) for n in pdfs]
        if not args.no_hold:
            cases += [("hold", f"pdf, {n} pages, hold every page", pdfs[n].parent) for n in pdfs]
        cases += [("stream", f"images, {n} files", folders[n]) for n in folders]
        print("\npeak memory while scanning (process tree, above the start of the scan):")
        print(f"  {'corpus':34s} {'items':>6s} {'items/s':>8s} {'peak MiB':>9s}")
        for mode, name, target in cases:
            result = measure(mode, target)
            memory[name] = result
            print(
                f"  {name:34s} {result['items']:6d} {result['items'] / result['seconds']:8.1f} "
                f"{result['peak_above_start_mib']:9.0f}"
            )
        results["memory"] = memory
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
