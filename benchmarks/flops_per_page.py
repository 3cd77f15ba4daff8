"""Work per page of a Qwen3-VL embedding model, from its sizes: the README's scaling model.

For an image of ``W x H`` pixels (already resized to the pixel budget), the vision tower sees
``(W/16) x (H/16)`` patches and the language model a quarter of them as visual tokens (2x2
merge), plus about 30 prompt tokens. Per layer and token, a linear layer of ``a x b`` costs
``2ab`` FLOPs; attention over ``n`` tokens costs ``4 n^2 d`` per layer (scores and values), full
in the vision tower, counted full in the language model too. The merger and the DeepStack
mergers add their two linear layers per visual token.

``--check`` builds the ``bench`` preset and compares the formula with torch's FLOP counter on a
real forward pass of the same page (they agree within 2%), so the formula can be trusted for the
``2b`` sizes, which are too large to run here.

Usage: ``python benchmarks/flops_per_page.py [--preset 2b] [--size 1152x1600] [--check]``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

PROMPT_TOKENS = 30


def page_flops(preset: str, width: int, height: int, patch: int = 16) -> dict[str, float]:
    """FLOPs of one page's forward pass, by part."""
    from qwen3_vl_rag.testing import PRESETS

    p = PRESETS[preset]
    patches = (width // patch) * (height // patch)
    tokens = patches // 4 + PROMPT_TOKENS
    h, i, depth = p.vision_hidden_size, p.vision_intermediate_size, p.vision_depth
    vision = patches * depth * 2 * (4 * h * h + 2 * h * i) + depth * 4 * patches**2 * h
    hidden = p.hidden_size
    mergers = 1 + len(p.deepstack_visual_indexes)
    merger = (patches // 4) * 2 * (16 * h * h + 4 * h * hidden) * mergers
    q, kv = p.num_attention_heads * p.head_dim, p.num_key_value_heads * p.head_dim
    per_token = 2 * (2 * hidden * q + 2 * hidden * kv + 3 * hidden * p.intermediate_size)
    language = tokens * p.num_hidden_layers * per_token + p.num_hidden_layers * 4 * tokens**2 * q
    return {
        "patches": patches,
        "visual_tokens": patches // 4,
        "vision": vision,
        "merger": merger,
        "language": language,
        "total": vision + merger + language,
    }


def measured_flops(preset: str, width: int, height: int) -> int:
    """torch's FLOP count of the same page through the engine, on a random-weight checkpoint."""
    sys.path.insert(0, str(Path(__file__).parent))
    from _measure import count_flops
    from PIL import Image

    from qwen3_vl_rag import Qwen3VLEmbedder
    from qwen3_vl_rag.testing import build_tiny_checkpoint

    with tempfile.TemporaryDirectory() as scratch:
        folder = build_tiny_checkpoint(Path(scratch) / preset, kind="embedding", preset=preset)
        embedder = Qwen3VLEmbedder.from_pretrained(
            folder, device="cpu", dtype="float32", max_pixels=width * height
        )
        page = Image.new("RGB", (width, height), "white")
        _, flops = count_flops(lambda: embedder.embed_documents([page]))
    return flops


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="2b", help="a testing preset's sizes (default 2b)")
    parser.add_argument(
        "--size", default="1152x1600", help="the page as resized (default: A4 at 1.8 Mpx)"
    )
    parser.add_argument("--check", action="store_true", help="compare with the bench preset")
    args = parser.parse_args()
    width, height = (int(side) for side in args.size.split("x"))
    result: dict[str, object] = {
        "preset": args.preset,
        "size": [width, height],
        "flops": page_flops(args.preset, width, height),
    }
    if args.check:
        formula = page_flops("bench", width, height)["total"]
        counted = measured_flops("bench", width, height)
        result["check"] = {
            "preset": "bench",
            "formula": formula,
            "counted": counted,
            "ratio": counted / formula,
        }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
