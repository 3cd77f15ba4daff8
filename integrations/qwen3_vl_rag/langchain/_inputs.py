"""Turning what LangChain hands over (strings, Documents) into engine inputs."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal

from qwen3_vl_rag.errors import RemoteInputError, UnsupportedInputError
from qwen3_vl_rag.media.references import decode_base64_image, visual_input
from qwen3_vl_rag.media.sniff import sniff_bytes

if TYPE_CHECKING:
    from langchain_core.documents import Document

    from qwen3_vl_rag.media.remote import RemotePolicy

ImageInputs = Literal["auto", "never"]

#: Metadata keys that name a document's image (ours, LangChain's ImageCaptionLoader, and common
#: custom pipelines), in the order they are looked at.
IMAGE_KEYS = ("image_path", "image_uri", "image_url", "image_source")


def text_or_visual(text: str, image_inputs: ImageInputs) -> Any:
    """``text`` itself, or the image or clip it names (``"auto"`` mode)."""
    if image_inputs == "auto":
        visual = visual_input(text)
        if visual is not None:
            return visual
    return text


def image_reference(uri: str, *, allow_remote: bool, policy: RemotePolicy | None) -> Any:
    """The image (or clip) a URI names: a local path, a ``data:`` URI, or a URL when allowed.

    Raises:
        RemoteInputError: A URL while remote fetching is off (``BlockedURLError`` and
            ``FetchError`` when it is on and the fetch is refused or fails).
        UnsupportedInputError: Anything that is not an image file, clip or image URI.
    """
    if not isinstance(uri, str | os.PathLike):
        raise UnsupportedInputError(
            f"expected an image path or URI, got {type(uri).__name__}.", stage="open"
        )
    text = os.fspath(uri)
    if text.startswith(("http://", "https://")):
        if not allow_remote:
            raise RemoteInputError(
                "remote images are not fetched by default.",
                source=text,
                stage="fetch",
                hint="pass allow_remote=True (private and metadata addresses stay refused)",
            )
        from qwen3_vl_rag.media.remote import fetch

        fetched = fetch(text, policy)
        if sniff_bytes(fetched.data[:1024]).kind != "image":
            raise UnsupportedInputError("the URL did not return an image.", source=text)
        return fetched.data
    visual = visual_input(text)
    if visual is None:
        reason = "no such file" if not os.path.exists(text) else "not an image or video file"
        raise UnsupportedInputError(
            f"{reason}; expected an image path, a data:image/ URI or an http(s) URL.",
            source=text[:200],
            stage="open",
        )
    return visual


def document_input(
    document: Document,
    *,
    image_inputs: ImageInputs,
    with_text: bool,
    allow_remote: bool,
    policy: RemotePolicy | None,
) -> Any:
    """What the reranker reads for a Document: its image, its clip, or its text.

    Looked at in order: an image named in metadata (``image_path``, ``image_uri``...), page
    content that is base64 image data (what ``Chroma.add_images`` stores), page content that
    names an image file or clip, and finally the page content as text.
    """
    from qwen3_vl_rag.inputs import MultimodalInput

    content = document.page_content
    visual: Any = None
    if image_inputs == "auto":
        for key in IMAGE_KEYS:
            value = document.metadata.get(key)
            if isinstance(value, str) and value:
                visual = image_reference(value, allow_remote=allow_remote, policy=policy)
                break
        content_is_reference = False
        if visual is None:
            visual = decode_base64_image(content)
            content_is_reference = visual is not None
        if visual is None:
            visual = visual_input(content)
            content_is_reference = visual is not None
        if visual is not None:
            text = document.metadata.get("page_text") if content_is_reference else content
            if with_text and isinstance(text, str) and text.strip():
                return _with_text(MultimodalInput, text, visual)
            return visual
    return content


def _with_text(factory: Any, text: str, visual: Any) -> Any:
    from qwen3_vl_rag.inputs import Video

    if isinstance(visual, Video):
        return factory(text=text, video=visual)
    return factory(text=text, images=(visual,))
