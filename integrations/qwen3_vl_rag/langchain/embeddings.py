"""``Qwen3VLEmbeddings``: LangChain embeddings; text, page images and clips in one space."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_serializer

from qwen3_vl_rag.langchain._inputs import ImageInputs, text_or_visual
from qwen3_vl_rag.media.references import ImageRoots, resolve_image_reference

__all__ = ["DEFAULT_EMBEDDING_MODEL", "Qwen3VLEmbeddings"]

DEFAULT_EMBEDDING_MODEL = "Qwen/Qwen3-VL-Embedding-2B"


class Qwen3VLEmbeddings(BaseModel, Embeddings):
    """Qwen3-VL-Embedding as LangChain ``Embeddings``, with images and video clips.

    Text and images land in one vector space, so a text query finds page images, screenshots
    and clips. ``embed_image(uris=...)`` makes ``Chroma.add_images`` and
    ``similarity_search_by_image`` work unchanged, and in ``image_inputs="auto"`` mode (the
    default) a document string that is an image path, a ``data:image/`` URI or a clip reference
    (``"talk.mp4#t=10,20"``) is embedded as that image or clip, so ``Chroma.from_documents``
    over :class:`~qwen3_vl_rag.langchain.PDFPageImageLoader` documents indexes the pages' pixels.
    Files are recognised by their content, never by their name; everything else is text.

    A document's text is not trusted to pick files: a path in it is read only when its real
    path lies under the folders our loaders wrote to or loaded from in this process, or under
    ``image_roots``; any other path is text. A ``data:image/`` URI is always an image, or an
    error when it is too big, corrupt or not an accepted format. Paths passed to
    :meth:`embed_image` are the caller's own and are read wherever they are.

    The model loads on first use and is shared with every other adapter in the process that
    asks for the same checkpoint and settings; or pass a loaded one as ``engine``.

    Example:
        >>> from langchain_chroma import Chroma
        >>> embeddings = Qwen3VLEmbeddings(model="Qwen/Qwen3-VL-Embedding-2B")
        >>> store = Chroma(
        ...     embedding_function=embeddings,
        ...     persist_directory="chroma-db",
        ...     collection_configuration={"hnsw": {"space": "cosine"}},
        ... )
        >>> store.add_images(uris=["pages/report-p1.png", "pages/report-p2.png"])
        >>> store.similarity_search("bar chart of revenue by region", k=2)
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), arbitrary_types_allowed=True)

    model: str = Field(
        default=DEFAULT_EMBEDDING_MODEL,
        description="A Hub id (Qwen/Qwen3-VL-Embedding-2B or -8B) or a local checkpoint directory.",
    )
    engine: Any = Field(
        default=None,
        exclude=True,
        description="An already loaded Qwen3VLEmbedder (or an object with its methods) to use "
        "instead of loading `model`.",
    )
    device: str = Field(default="auto", description='"auto" (CUDA if present), "cpu", "cuda:0"...')
    dtype: str = Field(default="auto", description='"auto" (bfloat16 on CUDA, float32 on CPU).')
    dimensions: int | None = Field(
        default=None,
        ge=32,
        description="Keep the first N dimensions (Matryoshka), re-normalised. A vector store "
        "collection holds one dimension: a new value needs a new collection.",
    )
    query_instruction: str | None = Field(
        default=None,
        description='Instruction for queries (default: "Retrieve images or text relevant to the '
        'user\'s query."). A task-specific one such as "Find a document page that answers the '
        'question." often retrieves better.',
    )
    document_instruction: str | None = Field(
        default=None,
        description="Instruction for documents and images (default: \"Represent the user's "
        'input.").',
    )
    batch_size: int = Field(
        default=32, ge=1, description="Inputs per call into the model (bounds decoded pixels)."
    )
    batch_tokens: int | None = Field(
        default=None,
        ge=1,
        description="Padded tokens per forward pass (default 16384 on GPU, 2048 on CPU).",
    )
    max_pixels: int | None = Field(
        default=None, ge=1, description="Pixel budget per image (default about 1800 tokens)."
    )
    image_inputs: ImageInputs = Field(
        default="auto",
        description='"auto": strings naming an image file, data:image/ URI or clip are embedded '
        'as images or clips; "never": every string is text.',
    )
    image_roots: list[Path] = Field(
        default_factory=list,
        description="Folders (or files) whose images and videos a document's text may name, "
        "besides those our loaders wrote to or loaded from in this process. Checked on the real "
        "path (no .. or symlink escapes); any other path in a document is text.",
    )
    allow_remote: bool = Field(
        default=False,
        description="Let embed_image fetch http(s) URLs (private and metadata addresses stay "
        "refused, with size and time limits).",
    )
    remote_policy: Any = Field(
        default=None,
        exclude=True,
        description="A qwen3_vl_rag.media.RemotePolicy for those fetches (default limits if None).",
    )
    show_progress: bool = Field(default=False, description="Show a progress bar.")
    model_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="More Qwen3VLEmbedder.from_pretrained options (revision, cache_dir...).",
    )

    _loaded: Any = PrivateAttr(default=None)

    @field_serializer("model_kwargs")
    def _without_secrets(self, value: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in value.items() if k != "token"}  # never in a dump

    @field_serializer("image_roots")
    def _roots_as_text(self, value: list[Path]) -> list[str]:
        return [str(root) for root in value]  # to_json / from_json round-trip

    # -- the model -----------------------------------------------------------------------------

    @property
    def embedder(self) -> Any:
        """The embedding engine (loaded now if needed)."""
        if self.engine is not None:
            return self.engine
        if self._loaded is None:
            from qwen3_vl_rag.engine.shared import loading_options, shared_embedder

            options = loading_options(self.device, self.dtype, self.max_pixels, self.model_kwargs)
            self._loaded = shared_embedder(self.model, **options)
        return self._loaded

    # -- LangChain's interface -------------------------------------------------------------------

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents: text, or (in ``"auto"`` mode) the image or clip a string names.

        Raises:
            InputError: A ``data:image/`` URI that is too big, corrupt or not an accepted image.
        """
        roots = self._roots()
        return self._embed(
            [text_or_visual(t, self.image_inputs, roots) for t in texts], query=False
        )

    def embed_query(self, text: str) -> list[float]:
        """Embed a search query with the query instruction (an image path is an image query)."""
        return self._embed([text_or_visual(text, self.image_inputs, self._roots())], query=True)[0]

    def embed_image(self, uris: list[str]) -> list[list[float]]:
        """Embed images (or clips) as documents: paths, ``data:image/`` URIs, URLs if allowed.

        This is what ``Chroma.add_images(uris=...)`` and ``similarity_search_by_image`` call;
        the latter embeds the query image as a document too, which suits image-to-image search.
        For an image *query* against text and pages, use :meth:`embed_image_query`.
        """
        return self._embed([self._image(uri) for uri in uris], query=False)

    def embed_image_query(self, uri: str) -> list[float]:
        """Embed an image as a query (with the query instruction)."""
        return self._embed([self._image(uri)], query=True)[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """:meth:`embed_documents` in a worker thread (the event loop keeps running)."""
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """:meth:`embed_query` in a worker thread."""
        return await asyncio.to_thread(self.embed_query, text)

    async def aembed_image(self, uris: list[str]) -> list[list[float]]:
        """:meth:`embed_image` in a worker thread."""
        return await asyncio.to_thread(self.embed_image, uris)

    # -- internals -------------------------------------------------------------------------------

    def _roots(self) -> ImageRoots:
        return ImageRoots.trusting(self.image_roots)

    def _image(self, uri: str) -> Any:
        return resolve_image_reference(
            uri, allow_remote=self.allow_remote, policy=self.remote_policy
        )

    def _embed(self, inputs: Sequence[Any], *, query: bool) -> list[list[float]]:
        if not inputs:
            return []
        from qwen3_vl_rag.engine.shared import embed_in_chunks

        return embed_in_chunks(
            self.embedder,
            inputs,
            query=query,
            instruction=self.query_instruction if query else self.document_instruction,
            dim=self.dimensions,
            batch_tokens=self.batch_tokens,
            chunk_size=self.batch_size,
            show_progress=self.show_progress,
        )
