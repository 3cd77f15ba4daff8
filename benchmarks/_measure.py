"""What the engine benchmarks share: the official usage, output agreement, FLOPs, peak, timing.

It imports only numpy, torch and the engine, so it also runs where the library's other
dependencies are absent (a GPU machine with no PyAV, PyMuPDF or Chroma).

The official code (QwenLM/Qwen3-VL-Embedding) is emulated on our own preprocessing, so its outputs
can be checked equal to ours before anything is timed:

* embedding: ``process(list)`` on chunks of ``batch_size`` items in input order (its notebooks
  use 8; 1 is one item at a time), pixels decoded inline, the model's default KV cache;
* reranking: its loop, one forward pass per (query, document) pair, the query (and its image)
  prepared again for every pair; the score head in the model's dtype, as its ``score_linear``.

Its default precision is float32 (no ``torch_dtype`` passed); ``torch_dtype=bfloat16`` is the
same code with the model loaded in bfloat16, which is what loading our backbone in bfloat16 gives.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

# Outputs of a contender against the float32 reference, before any timing. Float32 against float32
# differs only by summation order (measured: below 1e-6); bfloat16 keeps 8 bits of mantissa.
FLOAT32_MAX_ABS_DIFF = 1e-4
BF16_MIN_COSINE = 0.999
BF16_MAX_SCORE_DIFF = 0.02


# -- the official usage ---------------------------------------------------------------------------


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


def official_embed(embedder: Any, items: Sequence[Any], batch_size: int = 8) -> np.ndarray:
    """The official embedding usage: fixed chunks in input order, all pixels decoded inline."""
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


def official_scores(reranker: Any, query: Any, documents: Sequence[Any]) -> list[float]:
    """The official reranker loop: every pair prepared and run on its own."""
    import torch

    from qwen3_vl_rag.engine._encoding import plan_items

    backbone = reranker.backbone
    head = reranker.score_head  # w_yes - w_no, in the model's dtype and on its device
    scores = []
    for document in documents:
        pair = tuple(plan_items([query, document], backbone.loaded.vision))
        sequences = backbone.encoder.encode_pairs([pair], reranker.instruction, reranker.max_length)
        with torch.no_grad():
            hidden = backbone.loaded.model(**_model_inputs(backbone, sequences)).last_hidden_state
        scores.append(float(torch.sigmoid((hidden[0, -1] @ head).float())))
    return scores


# -- agreement ------------------------------------------------------------------------------------


def agreement(reference: Any, output: Any) -> dict[str, float]:
    """How far ``output`` is from ``reference``: max absolute difference, and for vectors the
    lowest cosine between corresponding rows."""
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(output, dtype=np.float64)
    result = {"max_abs_diff": float(np.abs(ref - out).max())}
    if ref.ndim == 2:
        norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
        result["min_cosine"] = float(((ref * out).sum(axis=1) / norms).min())
    return result


def within_tolerance(found: dict[str, float], dtype: str) -> bool:
    """The tolerance for a contender of ``dtype`` against the float32 reference (stated above)."""
    if dtype == "float32":
        return found["max_abs_diff"] <= FLOAT32_MAX_ABS_DIFF
    if "min_cosine" in found:
        return found["min_cosine"] >= BF16_MIN_COSINE
    return found["max_abs_diff"] <= BF16_MAX_SCORE_DIFF


# -- FLOPs and peak ------------------------------------------------------------------------------


def _sdpa_flops(
    query_shape: tuple[int, ...],
    key_shape: tuple[int, ...],
    value_shape: tuple[int, ...],
    *args: Any,
    **kwargs: Any,
) -> int:
    """Q @ K^T and P @ V: the matmul work of one scaled-dot-product attention call."""
    *batch, heads, queries, dim = query_shape
    keys, value_dim = key_shape[-2], value_shape[-1]
    count = int(np.prod(batch, dtype=np.int64)) * heads * queries * keys
    return 2 * count * dim + 2 * count * value_dim


def count_flops(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``fn`` once under torch's FLOP counter; return its result and the FLOPs counted.

    torch counts matmuls, convolutions and the CUDA attention kernels; the CPU's fused attention
    kernel is added here (without it, attention on CPU would count as zero).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    extra = {}
    cpu_attention = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_attention is not None:
        extra[cpu_attention] = _sdpa_flops
    with FlopCounterMode(display=False, custom_mapping=extra) as counter:
        result = fn()
    return result, int(counter.get_total_flops())


def synchronize(device: Any) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(
    device: Any,
    dtype: str,
    sizes: Sequence[int] = (2048, 4096),
    repeats: int = 3,
    budget_s: float = 10.0,
) -> dict[str, Any]:
    """This machine's square-matmul throughput in ``dtype``, the best over ``sizes`` and repeats.

    Products are ``x @ W^T`` (``F.linear``), the layout of every projection in the model: on a CPU
    without bfloat16 hardware, torch runs that layout about 10x faster in bfloat16 than a plain
    ``a @ b`` (measured), so a plain product would understate the peak the model can reach.
    Sizes are tried from small to large, from 256; one whose products would take more than
    ``budget_s`` at the rate measured so far ends the search. The best rate is the peak.
    """
    import torch
    import torch.nn.functional as F

    torch_dtype = getattr(torch, dtype)
    best_rate, measured = 0.0, []
    for size in sorted({256, 512, 1024, *sizes}):
        flops = 2 * size**3
        if best_rate and flops * (repeats + 1) / best_rate > budget_s:
            break
        x = torch.randn(size, size, device=device).to(torch_dtype)
        weight = torch.randn(size, size, device=device).to(torch_dtype)
        F.linear(x, weight)  # warm-up: kernel selection, allocation
        synchronize(device)
        for _ in range(repeats):
            start = time.perf_counter()
            F.linear(x, weight)
            synchronize(device)
            best_rate = max(best_rate, flops / (time.perf_counter() - start))
        measured.append(size)
    return {"flops_per_second": best_rate, "sizes": measured, "repeats": repeats}


# -- timing ---------------------------------------------------------------------------------------


def time_once(fn: Callable[[], Any], device: Any) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of one call (the device's queue drained both sides)."""
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu
