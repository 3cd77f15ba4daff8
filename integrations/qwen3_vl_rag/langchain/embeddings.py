"""``Qwen3VLEmbeddings``: LangChain embeddings; text, page images and clips in one space."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from langchain_core.embeddings import Embeddings
from pydantic import Field, InstanceOf

from qwen3_vl_rag._adapters import EngineSettings
from qwen3_vl_rag.defaults import DEFAULT_EMBEDDING_MODEL
from qwen3_vl_rag.inputs import InputItem
from qwen3_vl_rag.langchain._inputs import ImageInputs, text_or_visual
from qwen3_vl_rag.media.references import resolve_image_reference
from qwen3_vl_rag.media.remote import RemotePolicy
from qwen3_vl_rag.protocols import EmbeddingEngine

__all__ = ["DEFAULT_EMBEDDING_MODEL", "Qwen3VLEmbeddings"]


class Qwen3VLEmbeddings(EngineSettings, Embeddings):
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
    asks for the same checkpoint and settings; or pass a loaded one as ``engine``. With
    ``base_url`` the model runs on a vLLM server (``qwen3-vl-rag serve``) and the vectors are
    the same: only the forward pass is sent there. The async methods then await the server's
    answers on the event loop; with an in-process model they run in a worker thread.

    Example:
        >>> from langchain_chroma import Chroma
        >>> embeddings = Qwen3VLEmbeddings(model="Qwen/Qwen3-VL-Embedding-2B")
        >>> store = Chroma(
        ...     embedding_function=embeddings,
        ...     persist_directory="chroma-db",
        ...     collection_configuration={"hnsw": {"space": "cosine"}},
        ... )
        >>> ids = store.add_images(uris=["p1.png", "p7.png"])
        >>> len(store.similarity_search("bar chart of revenue by region", k=2))
        2
        >>> query, (image,) = embeddings.embed_query("revenue"), embeddings.embed_image(["p1.png"])
        >>> len(query) == len(image), type(query[0])
        (True, <class 'float'>)
    """

    model: str = Field(
        default=DEFAULT_EMBEDDING_MODEL,
        description="A Hub id (Qwen/Qwen3-VL-Embedding-2B or -8B) or a local checkpoint directory.",
    )
    engine: EmbeddingEngine | None = Field(
        default=None,
        exclude=True,
        description="An already loaded Qwen3VLEmbedder (or an object with its methods) to use "
        "instead of loading `model`; not pickled (a copy loads `model`).",
    )
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
    image_inputs: ImageInputs = Field(
        default="auto",
        description='"auto": strings naming an image file, data:image/ URI or clip are embedded '
        'as images or clips; "never": every string is text.',
    )
    remote_policy: InstanceOf[RemotePolicy] | None = Field(
        default=None,
        exclude=True,
        description="A qwen3_vl_rag.media.RemotePolicy for those fetches (default limits if None).",
    )
    show_progress: bool = Field(default=False, description="Show a progress bar.")

    # -- the model -----------------------------------------------------------------------------

    @property
    def embedder(self) -> EmbeddingEngine:
        """The embedding engine: ``engine``, or ``model`` (loaded now if needed)."""
        return self.engine if self.engine is not None else self._shared_embedder()

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
        """:meth:`embed_documents` without blocking the event loop.

        A server engine's requests are awaited; an in-process model runs in a worker thread.
        """
        roots = self._roots()
        return await self._aembed(
            lambda: [text_or_visual(t, self.image_inputs, roots) for t in texts], query=False
        )

    async def aembed_query(self, text: str) -> list[float]:
        """:meth:`embed_query` without blocking the event loop."""
        roots = self._roots()
        vectors = await self._aembed(
            lambda: [text_or_visual(text, self.image_inputs, roots)], query=True
        )
        return vectors[0]

    async def aembed_image(self, uris: list[str]) -> list[list[float]]:
        """:meth:`embed_image` without blocking the event loop."""
        return await self._aembed(lambda: [self._image(uri) for uri in uris], query=False)

    # -- internals -------------------------------------------------------------------------------

    def _image(self, uri: str) -> InputItem:
        image: InputItem = resolve_image_reference(
            uri, allow_remote=self.allow_remote, policy=self.remote_policy
        )
        return image

    def _embed(self, inputs: Sequence[InputItem], *, query: bool) -> list[list[float]]:
        if not inputs:
            return []
        from qwen3_vl_rag.engine import embed_in_chunks

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

    async def _aembed(
        self, read: Callable[[], list[InputItem]], *, query: bool
    ) -> list[list[float]]:
        """Embed what ``read`` returns (it may read files: it runs in a worker thread)."""
        engine = await self._awaited("embedder", "aembed_queries" if query else "aembed_documents")
        if engine is None:
            return await asyncio.to_thread(lambda: self._embed(read(), query=query))
        from qwen3_vl_rag.engine import aembed_in_chunks

        return await aembed_in_chunks(
            engine,
            await asyncio.to_thread(read),
            query=query,
            instruction=self.query_instruction if query else self.document_instruction,
            dim=self.dimensions,
            batch_tokens=self.batch_tokens,
            chunk_size=self.batch_size,
        )
