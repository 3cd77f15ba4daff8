"""Retrieved documents as multimodal message content, for the answer step of a RAG chain."""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from langchain_core.documents import Document
from langchain_core.messages.content import (
    ImageContentBlock,
    TextContentBlock,
    create_image_block,
    create_text_block,
)

from qwen3_vl_rag.errors import InputError
from qwen3_vl_rag.inputs import Video
from qwen3_vl_rag.langchain._inputs import IMAGE_KEYS, fallback_text
from qwen3_vl_rag.media.references import (
    ImageRoots,
    decode_base64_image,
    resolve_image_reference,
    visual_input,
    warn_unusable,
)
from qwen3_vl_rag.media.sniff import sniff_bytes

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

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
    image_roots: Iterable[str | os.PathLike[str]] = (),
) -> list[TextContentBlock | ImageContentBlock]:
    """Content blocks for a vision chat model: each image document as an image block.

    A document's image is found as the reranker finds it (``image_path`` / ``image_uri``
    metadata, base64 page content from ``Chroma.add_images``, or a page_content naming an
    image); a clip gives its middle sampled frame; any other document gives a text block.
    Images larger than ``max_side`` pixels on their longer side are scaled down and sent as
    JPEG (PNG when small), always base64 with their MIME type.

    A path in a document is read only when its real path lies under the folders our loaders
    wrote to or loaded from in this process, or under ``image_roots``; otherwise the document
    is text. A document whose image cannot be used gives its text (``page_text``, else
    ``page_content``; nothing when that is the broken image data) and a warning naming its
    index.

    Args:
        documents: Retrieved documents, best first.
        max_side: Longest side of images sent (``None`` sends them at their own size).
        with_captions: Put a short text block before each image: its source and page or time.
        image_roots: More folders (or files) whose images documents may name.

    Example:
        >>> from langchain_core.messages import HumanMessage
        >>> from langchain_core.messages.content import create_text_block
        >>> from qwen3_vl_rag.langchain import PDFPageImageLoader
        >>> pages = PDFPageImageLoader("report.pdf", image_dir="pages", pages=[0]).load()
        >>> blocks = documents_to_content_blocks([*pages, Document("Revenue grew 12%.")])
        >>> [block["type"] for block in blocks], blocks[0]["text"]
        (['text', 'image', 'text'], 'report.pdf, page 1')
        >>> question = "What does the chart show?"
        >>> message = HumanMessage(content_blocks=[create_text_block(question), *blocks])
        >>> # answer = vision_chat_model.invoke([message])
    """
    from PIL import Image

    roots = ImageRoots.trusting(image_roots)
    blocks: list[TextContentBlock | ImageContentBlock] = []
    for index, document in enumerate(documents):
        try:
            image = _image_of(document, roots)
            encoded = _encode(image, max_side) if image is not None else None
        except (InputError, OSError, SyntaxError, Image.DecompressionBombError):
            warn_unusable(index)
            text = fallback_text(document)
            if text:
                blocks.append(create_text_block(text))
            continue
        if encoded is None:
            blocks.append(create_text_block(document.page_content))
            continue
        if with_captions:
            blocks.append(create_text_block(_caption(document)))
        data, mime = encoded
        blocks.append(create_image_block(base64=data, mime_type=mime))
    return blocks


def _image_of(document: Document, roots: ImageRoots) -> PILImage | None:
    """A PIL image for the document, or ``None`` when it is text.

    Raises:
        InputError: The image named in metadata cannot be used, or inline image data is too
            big, corrupt or not an accepted format.
    """
    for key in IMAGE_KEYS:
        value = document.metadata.get(key)
        if isinstance(value, str) and value and not value.startswith(("http://", "https://")):
            return _open(resolve_image_reference(value, allow_remote=False, roots=roots))
    raw = decode_base64_image(document.page_content)
    if raw is not None:
        return _open(raw)
    visual = visual_input(document.page_content, roots=roots)
    return _open(visual) if visual is not None else None


def _open(visual: bytes | Path | Video) -> PILImage:
    from PIL import Image

    from qwen3_vl_rag.media.images import ALLOWED_FORMATS

    if isinstance(visual, Video):
        return _middle_frame(visual)
    source = io.BytesIO(visual) if isinstance(visual, bytes) else visual
    return Image.open(source, formats=ALLOWED_FORMATS)


def _middle_frame(video: Video) -> PILImage:
    from PIL import Image

    from qwen3_vl_rag.video_frames import probe, read_frames

    if not isinstance(video.source, str | os.PathLike):
        raise TypeError("a clip reference names a video file")
    path = Path(video.source)
    header = probe(path)
    start = video.start or 0.0
    end = video.end if video.end is not None else header.duration
    frame = max(0, min(int((start + end) / 2 * header.fps), header.frames - 1))
    return Image.fromarray(read_frames(path, [frame])[0])


def _encode(image: PILImage, max_side: int | None) -> tuple[str, str]:
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
    """``"report.pdf, page 3"``, ``"talk.mp4, 10-20 s"`` or ``"shot.png"``: names, not paths."""
    meta = document.metadata
    named = meta.get("source") or meta.get("file_path")
    source = Path(str(named)).name if named else "image"
    if "page_label" in meta:
        return f"{source}, page {meta['page_label']}"
    if "start_seconds" in meta and "end_seconds" in meta:
        return f"{source}, {float(meta['start_seconds']):g}-{float(meta['end_seconds']):g} s"
    return source
