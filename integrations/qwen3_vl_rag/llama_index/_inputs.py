"""Turning what LlamaIndex hands over (image types, nodes, query bundles) into engine inputs."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

from llama_index.core.schema import BaseNode, ImageNode, MetadataMode, QueryBundle

from qwen3_vl_rag.errors import UnsupportedInputError
from qwen3_vl_rag.inputs import InputItem, MultimodalInput, Video
from qwen3_vl_rag.media.references import (
    UNUSABLE_VISUAL,
    ImageRoots,
    decode_inline_base64,
    resolve_image_reference,
    visual_input,
    visual_with_text,
)

if TYPE_CHECKING:
    from qwen3_vl_rag.inputs import ImageSource
    from qwen3_vl_rag.media.remote import RemotePolicy

#: Metadata keys our video reader sets: a node that has them is that clip.
VIDEO_PATH, CLIP_START, CLIP_END = "video_path", "start_seconds", "end_seconds"

#: First lines of the embedding text our readers give their documents.
_REFERENCE_PREFIXES = ("image_path: ", "video_clip: ")


def text_input(text: str, image_inputs: Literal["auto", "never"], roots: ImageRoots) -> InputItem:
    """``text`` itself, or (``"auto"``) the image or clip it names.

    A text names a visual when it is a ``data:image/`` URI, an image file path or a clip
    reference under ``roots``, or when its first line is ``"image_path: <path>"`` /
    ``"video_clip: <clip>"`` with such a path, the embedding text of our readers' documents (how
    a plain ``VectorStoreIndex``, which embeds only node text, still embeds their pixels).

    Raises:
        InputError: A ``data:image/`` URI that is too big, corrupt or not an accepted image.
    """
    if image_inputs == "auto":
        for prefix in _REFERENCE_PREFIXES:
            if text.startswith(prefix):
                end = text.find("\n")  # the first line, without splitting a long text
                first = text[len(prefix) : end if end >= 0 else len(text)]
                visual = visual_input(first.strip(), roots=roots)
                if visual is not None:
                    return visual
        visual = visual_input(text, roots=roots)
        if visual is not None:
            return visual
    return text


def image_input(image: object, *, allow_remote: bool, policy: RemotePolicy | None) -> InputItem:
    """An image in any form LlamaIndex or a user passes, as the engine takes it.

    Accepts a path (``str`` or ``Path``), a ``data:`` URI, an http(s) URL (only with
    ``allow_remote``, through the guarded fetcher), ``bytes``, a ``BytesIO`` (read from its
    start) and a PIL image.
    """
    if isinstance(image, io.BytesIO):
        return image.getvalue()
    if isinstance(image, bytes | bytearray):
        return bytes(image)
    if isinstance(image, str | os.PathLike):
        resolved: InputItem = resolve_image_reference(
            image, allow_remote=allow_remote, policy=policy
        )
        return resolved
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        pil: InputItem = image  # type: ignore[assignment]
        return pil
    raise UnsupportedInputError(
        f"expected an image path, URL, bytes, BytesIO or PIL image, got {type(image).__name__}.",
        stage="open",
    )


def node_visual(
    node: BaseNode, *, allow_remote: bool, policy: RemotePolicy | None, roots: ImageRoots
) -> InputItem | None:
    """The image or clip a node carries, or ``None`` for a text node.

    An ``ImageNode`` / ``ImageDocument`` (its base64 ``image``, ``image_path`` or
    ``image_url``), a node's ``image_resource`` (data, path or URL), or a clip from our video
    reader (``video_path`` with start and end in metadata). A node's paths are read only under
    ``roots``; URLs are fetched only when allowed, never by LlamaIndex's own unguarded
    ``requests.get``; inline data is checked like a ``data:`` URI.

    Raises:
        InputError: The node names a visual that cannot be used (the same message for a
            missing file, a file that is not an image and one outside ``roots``).
    """
    metadata = node.metadata
    if isinstance(metadata.get(VIDEO_PATH), str):
        path = roots.resolve(metadata[VIDEO_PATH])
        if path is None:
            raise UnsupportedInputError(f"{UNUSABLE_VISUAL}.", stage="open")
        start, end = metadata.get(CLIP_START), metadata.get(CLIP_END)
        return Video(
            path,
            start=float(start) if start is not None else None,
            end=float(end) if end is not None else None,
        )
    if isinstance(node, ImageNode):
        if node.image:
            return decode_inline_base64(node.image, label="<ImageNode.image>")
        for reference in (node.image_path, node.image_url):
            if reference:
                return _referenced(reference, allow_remote, policy, roots)
    resource = getattr(node, "image_resource", None)
    if resource is not None:
        if resource.data:  # MediaResource keeps data base64-encoded
            return decode_inline_base64(resource.data, label="<image_resource.data>")
        for reference in (resource.path, resource.url):
            if reference:
                return _referenced(reference, allow_remote, policy, roots)
    return None


def _referenced(
    reference: object, allow_remote: bool, policy: RemotePolicy | None, roots: ImageRoots
) -> InputItem:
    visual: InputItem = resolve_image_reference(
        str(reference), allow_remote=allow_remote, policy=policy, roots=roots
    )
    return visual


def rerank_input(
    node: BaseNode,
    *,
    allow_remote: bool,
    policy: RemotePolicy | None,
    with_text: bool,
    roots: ImageRoots,
) -> InputItem:
    """What the reranker reads for a node: its image or clip, or its text.

    Besides :func:`node_visual`, a text node whose ``metadata["image_path"]`` (or, ColPali's
    convention, ``metadata["file_path"]``) is an image file under ``roots`` is read as that
    image.

    Raises:
        InputError: See :func:`node_visual` (score :func:`rerank_text` instead).
    """
    visual = node_visual(node, allow_remote=allow_remote, policy=policy, roots=roots)
    if visual is None:
        for key in ("image_path", "file_path"):
            value = node.metadata.get(key)
            named = _local_image(value, roots) if isinstance(value, str) else None
            if named is not None:
                visual = named
                break
    text = rerank_text(node)
    if visual is None:
        return text
    if with_text and text.strip():
        return visual_with_text(visual, text)
    return visual


def rerank_text(node: BaseNode) -> str:
    """A node's text as the reranker reads it."""
    return node.get_content(metadata_mode=MetadataMode.EMBED)


def fallback_text(node: BaseNode) -> str:
    """What a node is scored on when its visual cannot be used: ``page_text``, else its text."""
    page_text = node.metadata.get("page_text")
    if isinstance(page_text, str) and page_text.strip():
        return page_text
    return rerank_text(node)


def _local_image(value: str, roots: ImageRoots) -> Path | None:
    if value.lower().startswith("data:"):
        return None  # metadata is not where a node keeps its image data
    named = visual_input(value, roots=roots)
    return named if isinstance(named, Path) else None  # a PDF or a video here stays text


def query_input(
    bundle: QueryBundle, *, allow_remote: bool, policy: RemotePolicy | None
) -> InputItem:
    """The query of a bundle: its text, its image (``image_path``), or both together."""
    image = None
    if bundle.image_path:
        image = image_input(bundle.image_path, allow_remote=allow_remote, policy=policy)
    text = bundle.query_str.strip() if bundle.query_str else ""
    if image is None:
        return text
    return MultimodalInput(text=text or None, images=(cast("ImageSource", image),))
