"""sentence-transformers' Qwen3-VL path, set up to reproduce the official format, as a contender.

sentence-transformers >= 6.2 loads Qwen3-VL as ``Transformer -> Pooling(lasttoken) -> Normalize``
(embedding) and ``Transformer(any-to-any) -> LogitScore(yes, no)`` (reranking). Three settings are
needed for its outputs to equal the official ones (checked against ours before timing):

* the PIL image processor (its default torchvision one resizes with torch bicubic, which differs
  from the official Pillow resize on any resized image);
* the official pixel bounds as a ``size`` dict (the checkpoint's processor defaults differ);
* a reranker chat template rendering the official judge prompt (the models' own templates are not
  reranker templates; without one, scores come out silently wrong).

Images are passed as file paths (each contender decodes them); videos are left out (its video path
needs torchcodec and samples frames differently).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from qwen3_vl_rag.engine import _prompts as prompts

IMAGE_SIZE = {"shortest_edge": 4 * 32 * 32, "longest_edge": 1800 * 32 * 32}

_SIDE = (
    "{%- macro side(role) -%}"
    "{%- set found = namespace(n=0) -%}"
    "{%- for message in messages if message['role'] == role -%}"
    "{%- if message['content'] is string -%}"
    "{%- set found.n = found.n + 1 -%}{{- message['content'] -}}"
    "{%- else -%}"
    "{%- for kind in ['video', 'image', 'text'] -%}"
    "{%- for part in message['content'] if part['type'] == kind -%}"
    "{%- set found.n = found.n + 1 -%}"
    "{%- if kind == 'video' -%}<|vision_start|><|video_pad|><|vision_end|>"
    "{%- elif kind == 'image' -%}<|vision_start|><|image_pad|><|vision_end|>"
    "{%- else -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endfor -%}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if found.n == 0 -%}NULL{%- endif -%}"
    "{%- endmacro -%}"
)
RERANKER_TEMPLATE = (
    _SIDE + "{%- set system = messages | selectattr('role', 'eq', 'system') | list -%}"
    "{%- if system and system[0]['content'] is string -%}"
    "{%- set instruction = system[0]['content'] -%}"
    "{%- elif system -%}"
    "{%- set instruction = system[0]['content'] | selectattr('type', 'eq', 'text')"
    " | map(attribute='text') | join('') -%}"
    "{%- else -%}{%- set instruction = '" + prompts.DEFAULT_RERANK_INSTRUCTION + "' -%}"
    "{%- endif -%}"
    "{{- '<|im_start|>system\\n"
    + prompts.RERANK_SYSTEM_PROMPT.replace('"', '\\"')
    + "<|im_end|>\\n<|im_start|>user\\n<Instruct>: ' -}}"
    "{{- instruction -}}{{- '<Query>:' -}}{{- side('query') -}}"
    "{{- '\\n<Document>:' -}}{{- side('document') -}}"
    # as an expression: Jinja drops a template's literal trailing newline (the scored token)
    "{{- '<|im_end|>\\n<|im_start|>assistant\\n' -}}"
)


def _image_processor(path: str) -> Any:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    return Qwen2VLImageProcessorPil.from_pretrained(path)


def load_embedder(path: str) -> Any:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules.transformer import Transformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling

    transformer = Transformer(
        path,
        transformer_task="feature-extraction",
        processor_kwargs={"image_processor": _image_processor(path)},
        processing_kwargs={
            "chat_template": {"add_generation_prompt": True},
            "image": {"size": dict(IMAGE_SIZE)},
        },
        unpad_inputs=False,
    )
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="lasttoken")
    return SentenceTransformer(
        modules=[transformer, pooling, Normalize()],
        device="cpu",
        prompts={"document": prompts.DEFAULT_DOCUMENT_INSTRUCTION},
        default_prompt_name="document",
    )


def load_cross_encoder(path: str) -> Any:
    from sentence_transformers import CrossEncoder
    from sentence_transformers.base.modules.transformer import Transformer
    from sentence_transformers.cross_encoder.modules import LogitScore

    transformer = Transformer(
        path,
        transformer_task="any-to-any",
        processor_kwargs={"image_processor": _image_processor(path)},
        processing_kwargs={
            "chat_template": {"chat_template": "reranker"},
            "image": {"size": dict(IMAGE_SIZE)},
        },
        unpad_inputs=False,
    )
    processor = transformer.processor
    processor.chat_template = {"default": processor.chat_template, "reranker": RERANKER_TEMPLATE}
    tokenizer = transformer.tokenizer
    score = LogitScore(
        true_token_id=tokenizer.convert_tokens_to_ids("yes"),
        false_token_id=tokenizer.convert_tokens_to_ids("no"),
    )
    return CrossEncoder(modules=[transformer, score], device="cpu")  # sigmoid(yes - no) by default


def to_st(item: Any) -> Any:
    """Our input as sentence-transformers takes it (images first: dict order is content order)."""
    from qwen3_vl_rag import MultimodalInput

    if isinstance(item, Path):
        return str(item)
    if isinstance(item, MultimodalInput):
        if item.video is not None:
            raise ValueError("videos are not part of the sentence-transformers comparison")
        images = [str(i) if isinstance(i, Path) else i for i in item.images]
        return {"image": images[0] if len(images) == 1 else images, "text": item.text or ""}
    return item


def comparable(items: Sequence[Any]) -> list[Any]:
    """The items sentence-transformers can take in the official format (no videos)."""
    from qwen3_vl_rag import MultimodalInput, Video

    return [
        i
        for i in items
        if not isinstance(i, Video) and not (isinstance(i, MultimodalInput) and i.video is not None)
    ]


def contenders(
    embedder: Any, reranker: Any, workload: dict[str, Any], *, check: bool = True
) -> dict[str, Callable[[], Any]]:
    """Timed callables; first checks that they compute the official numbers (unless told not)."""
    import numpy as np

    items = comparable(workload["items"])
    documents = workload["documents"]
    st = load_embedder(embedder.model_id)
    ce = load_cross_encoder(reranker.model_id)
    st_items = [to_st(i) for i in items]
    st_pairs_text = [(workload["query_text"], to_st(d)) for d in documents]
    st_pairs_image = [({"image": str(workload["query_image"])}, to_st(d)) for d in documents]

    if check:
        difference = float(np.abs(st.encode(st_items, batch_size=8) - embedder.embed(items)).max())
        scores = ce.predict(st_pairs_text, batch_size=8)
        difference_scores = float(
            np.abs(scores - np.array(reranker.score(workload["query_text"], documents))).max()
        )
        print(
            f"sentence-transformers vs ours: embeddings {difference:.1e}, "
            f"scores {difference_scores:.1e}"
        )

    runs: dict[str, Callable[[], Any]] = {"embed-no-video/ours": lambda: embedder.embed(items)}
    for size in (8, 32):
        runs[f"embed-no-video/sentence-transformers-bs{size}"] = lambda size=size: st.encode(
            st_items, batch_size=size
        )
        runs[f"rerank-text/sentence-transformers-bs{size}"] = lambda size=size: ce.predict(
            st_pairs_text, batch_size=size
        )
        runs[f"rerank-image/sentence-transformers-bs{size}"] = lambda size=size: ce.predict(
            st_pairs_image, batch_size=size
        )
    return runs
