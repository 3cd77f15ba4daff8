"""Turning what LangChain hands over (strings, Documents) into engine inputs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from qwen3_vl_rag.media.references import (
    ImageRoots,
    decode_base64_image,
    is_base64_image,
    is_data_uri,
    resolve_image_reference,
    visual_input,
    visual_with_text,
)

if TYPE_CHECKING:
    from langchain_core.documents import Document

    from qwen3_vl_rag.inputs import InputItem
    from qwen3_vl_rag.media.remote import RemotePolicy

ImageInputs = Literal["auto", "never"]

#: Metadata keys that name a document's image (ours, LangChain's ImageCaptionLoader, and common
#: custom pipelines), in the order they are looked at.
IMAGE_KEYS = ("image_path", "image_uri", "image_url", "image_source")


def text_or_visual(text: str, image_inputs: ImageInputs, roots: ImageRoots) -> InputItem:
    """``text`` itself, or the image or clip it names (``"auto"`` mode, files under ``roots``).

    Raises:
        InputError: A ``data:image/`` URI that is too big, corrupt or not an accepted image.
    """
    if image_inputs == "auto":
        visual = visual_input(text, roots=roots)
        if visual is not None:
            return visual
    return text


def document_input(
    document: Document,
    *,
    image_inputs: ImageInputs,
    with_text: bool,
    allow_remote: bool,
    policy: RemotePolicy | None,
    roots: ImageRoots,
) -> InputItem:
    """What the reranker reads for a Document: its image, its clip, or its text.

    Looked at in order: an image named in metadata (``image_path``, ``image_uri``...), page
    content that is base64 image data (what ``Chroma.add_images`` stores), page content that
    names an image file or clip, and finally the page content as text. Local files are read
    only under ``roots``.

    Raises:
        InputError: The image named in metadata, or the image data in ``page_content``, cannot
            be used (see :func:`fallback_text` for what to score instead).
    """
    content = document.page_content
    visual: InputItem | None = None
    if image_inputs == "auto":
        for key in IMAGE_KEYS:
            value = document.metadata.get(key)
            if isinstance(value, str) and value:
                visual = resolve_image_reference(
                    value, allow_remote=allow_remote, policy=policy, roots=roots
                )
                break
        content_is_reference = False
        if visual is None:
            visual = decode_base64_image(content)
            content_is_reference = visual is not None
        if visual is None:
            visual = visual_input(content, roots=roots)
            content_is_reference = visual is not None
        if visual is not None:
            text = document.metadata.get("page_text") if content_is_reference else content
            if with_text and isinstance(text, str) and text.strip():
                return visual_with_text(visual, text)
            return visual
    return content


def fallback_text(document: Document | str) -> str:
    """What a document is scored on when its image cannot be used.

    Its ``page_text`` metadata when there is some, else its ``page_content``, unless that is
    the unusable image data itself (a data URI or base64): then nothing (the engine's empty
    input).
    """
    if isinstance(document, str):
        content, page_text = document, None
    else:
        content, page_text = document.page_content, document.metadata.get("page_text")
    if isinstance(page_text, str) and page_text.strip():
        return page_text
    if is_data_uri(content) or is_base64_image(content):
        return ""
    return content
