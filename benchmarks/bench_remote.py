"""Client overhead of the remote engine, as ratios against baselines run in the same process.

A vLLM server runs the tiny ``vllm``-preset checkpoint, so the server's forward pass costs little
and what is measured is the client: planning, tokenizing, decoding and resizing images, PNG
encoding, HTTP and decoding the answers.

Contenders, on the same items against the same server:

* ``ours``: ``Qwen3VLEmbedder.from_server(url).embed(items)``, default settings.
* ``raw``: the same request bodies, prepared before the clock starts (token ids, images already
  resized and PNG-encoded), posted with httpx at the same concurrency: the floor any client pays.
* ``in-process``: ``Qwen3VLEmbedder.from_pretrained`` on the same checkpoint, on this CPU.

Every contender's vectors are checked against ours first. Rounds alternate; the best is kept.

Usage: ``python benchmarks/bench_remote.py [--url URL] [--vllm-python PATH] [--rounds 3]``
(without ``--url`` it starts a server from ``--vllm-python``, default ``.venv-vllm/bin/python``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def page_like(rng: np.random.Generator, width: int, height: int) -> Any:
    """A screenshot-like picture: a tinted page, text lines, a bar chart, a little sensor noise."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), tuple(int(c) for c in rng.integers(200, 256, 3)))
    draw = ImageDraw.Draw(image)
    for row in range(8, height - 8, 14):
        draw.text((8, row), "Revenue grew 12% in Q3 " * 3, fill=(30, 30, 30))
    for bar in range(6):
        top = int(rng.integers(height // 2, height - 4))
        left = width // 2 + bar * max(4, width // 16)
        draw.rectangle((left, top, left + max(3, width // 20), height - 2), fill=(200, 40, 40))
    noise = rng.normal(0, 3, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8))


def workloads() -> dict[str, list[Any]]:
    """256 texts of 5 to 200 words; 48 page-like images of 64 to 900 pixels a side; a mix."""
    from qwen3_vl_rag import MultimodalInput

    rng = np.random.default_rng(0)
    words = "revenue growth quarter chart table figure cat report margin cost".split()
    texts = [" ".join(rng.choice(words, size=int(rng.integers(5, 200)))) for _ in range(256)]
    images = [
        page_like(rng, int(rng.integers(64, 900)), int(rng.integers(64, 900))) for _ in range(48)
    ]
    mixed = [MultimodalInput(text=t, images=[i]) for t, i in zip(texts[:48], images, strict=True)]
    return {"texts": texts, "images": images, "text+image": mixed}


def start_server(python: str, model: Path) -> tuple[str, subprocess.Popen[bytes]]:
    from qwen3_vl_rag.serving import vllm_command

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = vllm_command(
        str(model),
        kind="embedding",
        port=port,
        max_model_len=4096,
        python=python,
        extra=["--dtype", "float32", "--gpu-memory-utilization", "0.1", "--skip-mm-profiling"],
    )
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}
    log = open(Path(tempfile.gettempdir()) / "bench-remote-vllm.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the vLLM server exited; see {log.name}")
        try:
            if httpx.get(f"{url}/v1/models", timeout=2, trust_env=False).is_success:
                return url, process
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit("the vLLM server did not start in 15 minutes")


def raw_requests(embedder: Any, items: list[Any]) -> list[dict[str, Any]]:
    """The exact bodies our client sends for ``items``, built once, ahead of the clock."""
    backbone = embedder.backbone
    sequences = embedder._sequences(items, None)
    requests = backbone._plan(sequences, None)
    return [backbone._embed_request(request, sequences)[1] for request in requests]


def post_raw(url: str, bodies: list[dict[str, Any]], concurrency: int) -> int:
    async def run() -> int:
        gate = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(base_url=url, timeout=300, trust_env=False) as client:

            async def one(body: dict[str, Any]) -> int:
                async with gate:
                    response = await client.post("/v1/embeddings", json=body)
                    response.raise_for_status()
                    return len(response.json()["data"])

            return sum(await asyncio.gather(*(one(body) for body in bodies)))

    return asyncio.run(run())


def best_of(rounds: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="an embedding server already running the vllm preset")
    parser.add_argument("--model", help="the checkpoint that server runs (default: built here)")
    parser.add_argument("--vllm-python", default=str(REPO / ".venv-vllm" / "bin" / "python"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()

    from qwen3_vl_rag import Qwen3VLEmbedder
    from qwen3_vl_rag.testing import build_tiny_checkpoint

    model = Path(args.model) if args.model else None
    process = None
    if args.url:
        url = args.url
    else:
        model = build_tiny_checkpoint(Path(tempfile.mkdtemp()) / "vllm-embedding", preset="vllm")
        url, process = start_server(args.vllm_python, model)
    try:
        remote = Qwen3VLEmbedder.from_server(url, model=model)
        local = Qwen3VLEmbedder.from_pretrained(remote.backbone.loaded.source, dtype="float32")
        local.max_length = remote.max_length
        concurrency = remote.backbone.client.max_concurrency
        results: dict[str, Any] = {
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
            "server": url,
            "concurrency": concurrency,
            "workloads": {},
        }
        for name, items in workloads().items():
            ours = remote.embed(items)
            np.testing.assert_allclose(local.embed(items), ours, atol=1e-5)
            bodies = raw_requests(remote, items)
            assert post_raw(url, bodies, concurrency) == len(items)
            timing = {
                "ours": best_of(args.rounds, lambda items=items: remote.embed(items)),
                "raw": best_of(
                    args.rounds, lambda bodies=bodies: post_raw(url, bodies, concurrency)
                ),
                "in-process": best_of(args.rounds, lambda items=items: local.embed(items)),
            }
            rates = {k: len(items) / v for k, v in timing.items()}
            results["workloads"][name] = {
                "items": len(items),
                "requests": len(bodies),
                "items_per_s": {k: round(v, 1) for k, v in rates.items()},
                "ours_vs_raw": round(rates["ours"] / rates["raw"], 3),
                "ours_vs_in_process": round(rates["ours"] / rates["in-process"], 3),
            }
            print(name, json.dumps(results["workloads"][name]), flush=True)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_remote.json").write_text(json.dumps(results, indent=2) + "\n")
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=60)


if __name__ == "__main__":
    sys.exit(main())
