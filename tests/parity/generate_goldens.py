"""Run the official Qwen3-VL-Embedding reference on the parity cases and write its outputs as JSON.

This is a maintenance script, not a test: ``regenerate.sh`` (next to it) builds the reference's own
environment (transformers 4.57.3, qwen-vl-utils 0.0.14, decord) and runs it. The reference's source
is read from ``--reference-src`` (a checkout of QwenLM/Qwen3-VL-Embedding); none of it is copied
into this repository.

Environment shims, all test-side and none changing the reference's numbers:

* torchvision: the registry only has a CUDA-built ``torchvision==0.28.0``; its C extension cannot
  load next to CPU torch, and its import then dies registering fake kernels for two operators.
  Defining those two operator schemas first lets the pure-Python transforms import (only they are
  used by qwen-vl-utils and the Qwen3-VL processors).
* transformers 5.x only (not needed with the locked 4.57.3): the reference reranker leaves
  ``mm_token_type_ids`` as an unpadded list, which 5.x requires as a tensor; it is rebuilt from the
  final ``input_ids``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def make_torchvision_importable() -> None:
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    for location in spec.submodule_search_locations:
        for name in os.listdir(location):
            if name.startswith("_C.") and name.endswith(".so"):
                try:
                    torch.ops.load_library(os.path.join(location, name))
                    return  # a working build: nothing to do
                except (OSError, RuntimeError):
                    pass
    library = torch.library.Library("torchvision", "FRAGMENT")
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    make_torchvision_importable.library = library  # type: ignore[attr-defined]  # keep alive


def tensor_summary(tensor: Any) -> dict[str, Any]:
    import torch

    t = tensor.detach().to(torch.float32).contiguous()
    return {
        "shape": list(t.shape),
        "sha256": hashlib.sha256(t.numpy().tobytes()).hexdigest(),
        "sum": float(t.double().sum()),
        "abs_sum": float(t.double().abs().sum()),
    }


def record_inputs(inputs: Any) -> dict[str, Any]:
    record: dict[str, Any] = {}
    ids = inputs["input_ids"]
    record["input_ids"] = [list(map(int, row)) for row in ids]
    for key in ("image_grid_thw", "video_grid_thw"):
        if inputs.get(key) is not None:
            record[key] = [list(map(int, row)) for row in inputs[key]]
    for key in ("pixel_values", "pixel_values_videos"):
        if inputs.get(key) is not None:
            record[key] = tensor_summary(inputs[key])
    return record


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--reference-src",
        required=True,
        type=Path,
        help="checkout of QwenLM/Qwen3-VL-Embedding (its src/models is imported)",
    )
    parser.add_argument("--embedding-ckpt", required=True, type=Path)
    parser.add_argument("--reranker-ckpt", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()

    make_torchvision_importable()
    import torch
    import transformers
    from qwen_vl_utils import vision_process

    sys.path.insert(0, str(args.reference_src / "src" / "models"))
    import cases
    import fixtures
    from qwen3_vl_embedding import Qwen3VLEmbedder
    from qwen3_vl_reranker import Qwen3VLReranker

    sys.path.insert(0, str(HERE.parents[1] / "integrations"))
    from qwen3_vl_rag.testing import checkpoint_fingerprint

    transformers_major = int(transformers.__version__.split(".")[0])
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="qwen3vl-parity-"))
    paths = fixtures.write_images(work)

    # -- embedder -------------------------------------------------------------------------------
    embedder = Qwen3VLEmbedder(str(args.embedding_ckpt))
    captured: dict[str, Any] = {}
    original_preprocess = Qwen3VLEmbedder._preprocess_inputs

    def preprocess(self: Any, conversations: list[Any]) -> Any:
        captured["prompt"] = self.processor.apply_chat_template(
            conversations, add_generation_prompt=True, tokenize=False
        )
        inputs = original_preprocess(self, conversations)
        captured["inputs"] = inputs
        return inputs

    Qwen3VLEmbedder._preprocess_inputs = preprocess  # type: ignore[method-assign]
    embedding_out: dict[str, Any] = {}
    for name, item in cases.embedding_cases(paths).items():
        vector = embedder.process([item])[0]
        record = record_inputs(captured["inputs"])
        record["input_ids"] = record["input_ids"][0]
        record["prompt"] = captured["prompt"][0]
        record["embedding"] = [float(x) for x in vector]
        embedding_out[name] = record
        tokens = len(record["input_ids"])
        print(f"embedding {name:28s} tokens={tokens:5d} first={record['embedding'][:3]}")

    # -- reranker -------------------------------------------------------------------------------
    reranker = Qwen3VLReranker(str(args.reranker_ckpt))
    pairs: list[dict[str, Any]] = []
    original_tokenize = Qwen3VLReranker.tokenize

    def tokenize(self: Any, batch: list[Any], **kwargs: Any) -> Any:
        prompt = self.processor.apply_chat_template(
            batch, tokenize=False, add_generation_prompt=True
        )
        inputs = original_tokenize(self, batch, **kwargs)
        if transformers_major >= 5:
            ids = inputs["input_ids"]
            types = torch.zeros_like(ids)
            types[ids == self.processor.image_token_id] = 1
            types[ids == self.processor.video_token_id] = 2
            inputs["mm_token_type_ids"] = types
        record = record_inputs(inputs)
        record["input_ids"] = record["input_ids"][0]
        record["prompt"] = prompt[0]
        pairs.append(record)
        return inputs

    Qwen3VLReranker.tokenize = tokenize  # type: ignore[method-assign]
    reranker_out: dict[str, Any] = {}
    for name, request in cases.reranker_cases(paths).items():
        pairs.clear()
        scores = reranker.process(request)
        reranker_out[name] = {"scores": [float(s) for s in scores], "pairs": list(pairs)}
        print(f"reranker {name:20s} scores={[round(s, 6) for s in scores]}")

    result = {
        "meta": {
            "reference": "QwenLM/Qwen3-VL-Embedding src/models (see README.md for the commit)",
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "qwen_vl_utils": importlib.metadata.version("qwen-vl-utils"),
            "video_backend": vision_process.get_video_reader_backend(),
            "embedding_checkpoint_sha256": checkpoint_fingerprint(args.embedding_ckpt),
            "reranker_checkpoint_sha256": checkpoint_fingerprint(args.reranker_ckpt),
        },
        "embedding": embedding_out,
        "reranker": reranker_out,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
