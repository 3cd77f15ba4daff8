"""Retrieved documents as multimodal message content, for the answer step of a RAG chain."""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.documents import Document
from langchain_core.messages.content import create_image_block, create_text_block

from qwen3_vl_rag.inputs import Video
from qwen3_vl_rag.langchain._inputs import IMAGE_KEYS
from qwen3_vl_rag.media.references import decode_base64_image, visual_input
from qwen3_vl_rag.media.sniff import sniff_bytes

__all__ = ["documents_to_content_blocks"]

_MIME = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
}


def documents_to_content_blocks(
    documents: Sequence[Document],
    *,
    max_side: int | None = 1536,
    with_captions: bool = True,
) -> list[Any]:
    """Content blocks for a vision chat model: each image document as an image block.

    A document's image is found as the reranker finds it (``image_path`` / ``image_uri``
    metadata, base64 page content from ``Chroma.add_images``, or a page_content naming an
    image); a clip gives its middle sampled frame; any other document gives a text block.
    Images larger than ``max_side`` pixels on their longer side are scaled down and sent as
    JPEG (PNG when small), always base64 with their MIME type.

    Args:
        documents: Retrieved documents, best first.
        max_side: Longest side of images sent (``None`` sends them at their own size).
        with_captions: Put a short text block before each image: its source and page or time.

    Example:
        >>> from langchain_core.messages import HumanMessage
        >>> from langchain_core.messages.content import create_text_block
        >>> docs = retriever.invoke(question)
        >>> message = HumanMessage(
        ...     content_blocks=[create_text_block(question), *documents_to_content_blocks(docs)]
        ... )
        >>> answer = vision_chat_model.invoke([message])
    """
    blocks: list[Any] = []
    for document in documents:
        image = _image_of(document)
        if image is None:
            blocks.append(create_text_block(document.page_content))
            continue
        if with_captions:
            blocks.append(create_text_block(_caption(document)))
        data, mime = _encode(image, max_side)
        blocks.append(create_image_block(base64=data, mime_type=mime))
    return blocks


def _image_of(document: Document) -> Any:
    """A PIL image for the document, or ``None`` when it is text."""
    from PIL import Image

    for key in IMAGE_KEYS:
        value = document.metadata.get(key)
        if isinstance(value, str) and value and not value.startswith(("http://", "https://")):
            visual = visual_input(value)
            if visual is not None:
                return _open(visual)
    raw = decode_base64_image(document.page_content)
    if raw is not None:
        return Image.open(io.BytesIO(raw))
    visual = visual_input(document.page_content)
    return _open(visual) if visual is not None else None


def _open(visual: Any) -> Any:
    from PIL import Image

    if isinstance(visual, Video):
        return _middle_frame(visual)
    if isinstance(visual, str):  # a data: URI
        raw = base64.b64decode(visual.split(",", 1)[1])
        return Image.open(io.BytesIO(raw))
    return Image.open(visual)


def _middle_frame(video: Video) -> Any:
    from PIL import Image

    from qwen3_vl_rag.media.video import probe, read_frames

    if not isinstance(video.source, str | os.PathLike):
        raise TypeError("a clip reference names a video file")
    path = Path(video.source)
    header = probe(path)
    start = video.start or 0.0
    end = video.end if video.end is not None else header.duration
    frame = max(0, min(int((start + end) / 2 * header.fps), header.frames - 1))
    return Image.fromarray(read_frames(path, [frame])[0])


def _encode(image: Any, max_side: int | None) -> tuple[str, str]:
    from PIL import ImageOps

    image = ImageOps.exif_transpose(image)
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    if max_side is not None and max(image.size) > max_side:
        image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    small = image.size[0] * image.size[1] <= 512 * 512
    image.save(buffer, "PNG" if small else "JPEG", quality=90)
    data = buffer.getvalue()
    mime = _MIME.get(sniff_bytes(data[:64]).format or "", "image/png")
    return base64.b64encode(data).decode("ascii"), mime


def _caption(document: Document) -> str:
    meta = document.metadata
    source = str(meta.get("source") or meta.get("file_path") or "image")
    if "page_label" in meta:
        return f"{source}, page {meta['page_label']}"
    if "start_seconds" in meta and "end_seconds" in meta:
        return f"{source}, {float(meta['start_seconds']):g}-{float(meta['end_seconds']):g} s"
    return source
