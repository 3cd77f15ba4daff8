"""``Qwen3VLEmbedding``: a LlamaIndex MultiModalEmbedding; text, images and clips in one space."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

from llama_index.core.bridge.pydantic import Field
from llama_index.core.embeddings import MultiModalEmbedding
from llama_index.core.schema import BaseNode, ImageType, MetadataMode

from qwen3_vl_rag._adapters import EngineSettings
from qwen3_vl_rag.defaults import DEFAULT_EMBEDDING_MODEL
from qwen3_vl_rag.inputs import InputItem
from qwen3_vl_rag.llama_index._inputs import image_input, node_visual, text_input
from qwen3_vl_rag.protocols import EmbeddingEngine

__all__ = ["DEFAULT_EMBEDDING_MODEL", "Qwen3VLEmbedding"]


class Qwen3VLEmbedding(EngineSettings, MultiModalEmbedding):
    """Qwen3-VL-Embedding for LlamaIndex: text, queries, images and video clips in one space.

    Works as ``embed_model`` and ``image_embed_model`` of a ``MultiModalVectorStoreIndex``, and,
    since text and images share one space, as the single model of a plain ``VectorStoreIndex``
    that holds text and image nodes together. As a transformation (in an ``IngestionPipeline``,
    as ``Settings.embed_model`` in the default pipeline, or in ``transformations=[...]``) it
    embeds image nodes as images and clip nodes as clips, never as their (often empty) text,
    and leaves nodes that already have an embedding alone.

    Texts and nodes are not trusted to pick files: a path in a text, or a node's
    ``image_path`` / ``video_path``, is read only when its real path lies under the folders our
    readers wrote to or read from in this process, or under ``image_roots`` (a path in a text
    is text otherwise; a node's image path is an error). A ``data:image/`` URI is an image, or
    an error when it is too big, corrupt or not an accepted format. Images given to the image
    methods (``get_image_embedding``...) are the caller's own and are read wherever they are.

    The model loads on first use and is shared with every other adapter in the process that
    asks for the same checkpoint and settings; or pass a loaded one as ``engine``. Calls into
    an in-process model are serialized, so LlamaIndex's concurrent async batches queue rather
    than compete for memory. With ``base_url`` the model runs on a vLLM server (``qwen3-vl-rag
    serve``) with the same vectors, and the async methods await its answers on the event loop
    (the server batches concurrent requests).

    Example:
        >>> from llama_index.core import VectorStoreIndex
        >>> from qwen3_vl_rag.llama_index import PDFPageImageReader
        >>> embed_model = Qwen3VLEmbedding(model_name="Qwen/Qwen3-VL-Embedding-2B")
        >>> pages = PDFPageImageReader(image_dir="pages").load_data("report.pdf")
        >>> index = VectorStoreIndex.from_documents(
        ...     pages, embed_model=embed_model, transformations=[embed_model]
        ... )
        >>> hits = index.as_retriever(similarity_top_k=2).retrieve("bar chart of revenue by region")
        >>> [(hit.node.metadata["file_name"], hit.node.metadata["page"] < 3) for hit in hits]
        [('report.pdf', True), ('report.pdf', True)]
        >>> image_query = embed_model.get_image_query_embedding("chart.png")
        >>> len(image_query) == len(embed_model.get_query_embedding("revenue by region"))
        True
    """

    model_keyword: ClassVar[str] = "model_name"

    model_name: str = Field(
        default=DEFAULT_EMBEDDING_MODEL,
        description="A Hub id (Qwen/Qwen3-VL-Embedding-2B or -8B) or a local checkpoint directory.",
    )
    embed_batch_size: int = Field(
        default=32, gt=0, le=2048, description="Texts per call into the model."
    )
    image_batch_size: int = Field(
        default=8, gt=0, description="Images or clips per call into the model (GPU memory)."
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
        "user's query.\").",
    )
    text_instruction: str | None = Field(
        default=None,
        description='Instruction for documents: text, images and clips (default: "Represent the '
        "user's input.\").",
    )
    image_inputs: Literal["auto", "never"] = Field(
        default="auto",
        description='"auto": a text that names an image file, data:image/ URI or clip (or whose '
        'first line is "image_path: ..." as our readers write) is embedded as that visual; '
        '"never": texts are always text.',
    )

    def __init__(self, *, engine: EmbeddingEngine | None = None, **kwargs: Any) -> None:
        """Args are the fields; ``engine`` is an already loaded ``Qwen3VLEmbedder`` to use.

        A given ``engine`` is not pickled: a copy loads ``model_name`` on first use.
        """
        super().__init__(**kwargs)
        self._given(engine, EmbeddingEngine)

    @classmethod
    def class_name(cls) -> str:
        """The name ``to_dict`` / ``from_dict`` use."""
        return "Qwen3VLEmbedding"

    @property
    def embedder(self) -> EmbeddingEngine:
        """The embedding engine (loaded now if needed)."""
        return self._shared_embedder()

    # -- text and queries --------------------------------------------------------------------------

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embed([text_input(query, self.image_inputs, self._roots())], query=True)[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        roots = self._roots()
        vectors = await self._aembed(
            lambda: [text_input(query, self.image_inputs, roots)], query=True
        )
        return vectors[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        roots = self._roots()
        return self._embed([text_input(t, self.image_inputs, roots) for t in texts], query=False)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return (await self._aget_text_embeddings([text]))[0]

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        roots = self._roots()
        return await self._aembed(
            lambda: [text_input(t, self.image_inputs, roots) for t in texts], query=False
        )

    # -- images ------------------------------------------------------------------------------------

    def _get_image_embedding(self, img_file_path: ImageType) -> list[float]:
        return self._get_image_embeddings([img_file_path])[0]

    def _get_image_embeddings(self, img_file_paths: list[ImageType]) -> list[list[float]]:
        return self._embed([self._image(i) for i in img_file_paths], query=False, images=True)

    async def _aget_image_embedding(self, img_file_path: ImageType) -> list[float]:
        return (await self._aget_image_embeddings([img_file_path]))[0]

    async def _aget_image_embeddings(self, img_file_paths: list[ImageType]) -> list[list[float]]:
        return await self._aembed(
            lambda: [self._image(i) for i in img_file_paths], query=False, images=True
        )

    def get_image_query_embedding(self, image: ImageType) -> list[float]:
        """Embed an image as a *query*, with the query instruction.

        For image-to-anything search in a unified index:
        ``retriever.retrieve(QueryBundle(query_str="", embedding=...))``.
        """
        return self._embed([self._image(image)], query=True, images=True)[0]

    async def aget_image_query_embedding(self, image: ImageType) -> list[float]:
        """:meth:`get_image_query_embedding` without blocking the event loop."""
        vectors = await self._aembed(lambda: [self._image(image)], query=True, images=True)
        return vectors[0]

    # -- as a transformation ---------------------------------------------------------------------

    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        """Embed nodes in place: image nodes as images, clip nodes as clips, the rest as text.

        Nodes that already have an embedding are left as they are.
        """
        texts, contents, visuals = self._sorted_nodes(nodes)
        if texts:
            for node, vector in zip(texts, self._get_text_embeddings(contents), strict=True):
                node.embedding = vector
        if visuals:
            vectors = self._embed([v for _, v in visuals], query=False, images=True)
            for (node, _), vector in zip(visuals, vectors, strict=True):
                node.embedding = vector
        return nodes

    async def acall(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        """:meth:`__call__` without blocking the event loop."""
        if await self._awaited("embedder", "aembed_documents") is None:
            return await asyncio.to_thread(self.__call__, nodes, **kwargs)
        texts, contents, visuals = await asyncio.to_thread(self._sorted_nodes, nodes)
        if texts:
            vectors = await self._aget_text_embeddings(contents)
            for node, vector in zip(texts, vectors, strict=True):
                node.embedding = vector
        if visuals:
            vectors = await self._aembed(lambda: [v for _, v in visuals], query=False, images=True)
            for (node, _), vector in zip(visuals, vectors, strict=True):
                node.embedding = vector
        return nodes

    def _sorted_nodes(
        self, nodes: Sequence[BaseNode]
    ) -> tuple[list[BaseNode], list[str], list[tuple[BaseNode, InputItem]]]:
        """The nodes without an embedding: text nodes with their texts, and visual nodes."""
        visuals: list[tuple[BaseNode, InputItem]] = []
        texts: list[BaseNode] = []
        roots = self._roots()
        for node in nodes:
            if node.embedding is not None:
                continue
            visual = node_visual(node, allow_remote=self.allow_remote, policy=None, roots=roots)
            if visual is None:
                texts.append(node)
            else:
                visuals.append((node, visual))
        contents = [node.get_content(metadata_mode=MetadataMode.EMBED) for node in texts]
        return texts, contents, visuals

    # -- internals -------------------------------------------------------------------------------

    def _image(self, image: ImageType) -> InputItem:
        return image_input(image, allow_remote=self.allow_remote, policy=None)

    def _embed(
        self, inputs: Sequence[InputItem], *, query: bool, images: bool = False
    ) -> list[list[float]]:
        if not inputs:
            return []
        from qwen3_vl_rag.engine import embed_in_chunks

        return embed_in_chunks(
            self.embedder,
            inputs,
            query=query,
            instruction=self.query_instruction if query else self.text_instruction,
            dim=self.dimensions,
            batch_tokens=self.batch_tokens,
            chunk_size=self.image_batch_size if images else self.embed_batch_size,
        )

    async def _aembed(
        self, read: Callable[[], list[InputItem]], *, query: bool, images: bool = False
    ) -> list[list[float]]:
        """Embed what ``read`` returns (it may read files: it runs in a worker thread)."""
        engine = await self._awaited("embedder", "aembed_queries" if query else "aembed_documents")
        if engine is None:
            return await asyncio.to_thread(lambda: self._embed(read(), query=query, images=images))
        from qwen3_vl_rag.engine import aembed_in_chunks

        return await aembed_in_chunks(
            engine,
            await asyncio.to_thread(read),
            query=query,
            instruction=self.query_instruction if query else self.text_instruction,
            dim=self.dimensions,
            batch_tokens=self.batch_tokens,
            chunk_size=self.image_batch_size if images else self.embed_batch_size,
        )
