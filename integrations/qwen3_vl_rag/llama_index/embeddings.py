"""``Qwen3VLEmbedding``: a LlamaIndex MultiModalEmbedding; text, images and clips in one space."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from llama_index.core.bridge.pydantic import Field, PrivateAttr, field_serializer
from llama_index.core.embeddings import MultiModalEmbedding
from llama_index.core.schema import BaseNode, ImageType, MetadataMode

from qwen3_vl_rag.llama_index._inputs import image_input, node_visual, text_input
from qwen3_vl_rag.media.references import ImageRoots

__all__ = ["DEFAULT_EMBEDDING_MODEL", "Qwen3VLEmbedding"]

DEFAULT_EMBEDDING_MODEL = "Qwen/Qwen3-VL-Embedding-2B"


class Qwen3VLEmbedding(MultiModalEmbedding):
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
    the model are serialized, so LlamaIndex's concurrent async batches queue rather than
    compete for memory.

    Example:
        >>> from llama_index.core import VectorStoreIndex
        >>> embed_model = Qwen3VLEmbedding(model_name="Qwen/Qwen3-VL-Embedding-2B")
        >>> pages = PDFPageImageReader().load_data("report.pdf")
        >>> index = VectorStoreIndex.from_documents(
        ...     pages, embed_model=embed_model, transformations=[embed_model]
        ... )
        >>> index.as_retriever(similarity_top_k=3).retrieve("bar chart of revenue by region")
    """

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
        "user's query.\").",
    )
    text_instruction: str | None = Field(
        default=None,
        description='Instruction for documents: text, images and clips (default: "Represent the '
        "user's input.\").",
    )
    batch_tokens: int | None = Field(
        default=None, ge=1, description="Padded tokens per forward pass (default by device)."
    )
    max_pixels: int | None = Field(
        default=None, ge=1, description="Pixel budget per image (default about 1800 tokens)."
    )
    image_inputs: Literal["auto", "never"] = Field(
        default="auto",
        description='"auto": a text that names an image file, data:image/ URI or clip (or whose '
        'first line is "image_path: ..." as our readers write) is embedded as that visual; '
        '"never": texts are always text.',
    )
    image_roots: list[Path] = Field(
        default_factory=list,
        description="Folders (or files) whose images and videos a text or a node may name, "
        "besides those our readers wrote to or read from in this process. Checked on the real "
        "path (no .. or symlink escapes); any other path in a text is text.",
    )
    allow_remote: bool = Field(
        default=False,
        description="Fetch http(s) image URLs (guarded: private and metadata addresses are "
        "refused, with size and time limits). LlamaIndex's own unguarded fetch is never used.",
    )
    model_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="More Qwen3VLEmbedder.from_pretrained options."
    )

    _engine: Any = PrivateAttr(default=None)

    def __init__(self, *, engine: Any = None, **kwargs: Any) -> None:
        """Args are the fields; ``engine`` is an already loaded ``Qwen3VLEmbedder`` to use."""
        super().__init__(**kwargs)
        self._engine = engine

    @classmethod
    def class_name(cls) -> str:
        """The name ``to_dict`` / ``from_dict`` use."""
        return "Qwen3VLEmbedding"

    @field_serializer("model_kwargs")
    def _without_secrets(self, value: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in value.items() if k != "token"}  # to_dict / to_payload

    @field_serializer("image_roots")
    def _roots_as_text(self, value: list[Path]) -> list[str]:
        return [str(root) for root in value]  # to_json / from_json round-trip

    def __getstate__(self) -> dict[Any, Any]:
        """Pickle without the loaded model; a worker process loads ``model_name`` on first use.

        ``IngestionPipeline(num_workers>1)`` pickles its transformations into worker processes.
        """
        state = super().__getstate__()
        private = dict(state.get("__pydantic_private__") or {})
        private["_engine"] = None
        state["__pydantic_private__"] = private
        return state

    @property
    def embedder(self) -> Any:
        """The embedding engine (loaded now if needed)."""
        if self._engine is None:
            from qwen3_vl_rag.engine.shared import loading_options, shared_embedder

            options = loading_options(self.device, self.dtype, self.max_pixels, self.model_kwargs)
            self._engine = shared_embedder(self.model_name, **options)
        return self._engine

    # -- text and queries --------------------------------------------------------------------------

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embed([text_input(query, self.image_inputs, self._roots())], query=True)[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_query_embedding, query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        roots = self._roots()
        return self._embed([text_input(t, self.image_inputs, roots) for t in texts], query=False)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)

    # -- images ------------------------------------------------------------------------------------

    def _get_image_embedding(self, img_file_path: ImageType) -> list[float]:
        return self._get_image_embeddings([img_file_path])[0]

    def _get_image_embeddings(self, img_file_paths: list[ImageType]) -> list[list[float]]:
        return self._embed([self._image(i) for i in img_file_paths], query=False, images=True)

    async def _aget_image_embedding(self, img_file_path: ImageType) -> list[float]:
        return await asyncio.to_thread(self._get_image_embedding, img_file_path)

    async def _aget_image_embeddings(self, img_file_paths: list[ImageType]) -> list[list[float]]:
        return await asyncio.to_thread(self._get_image_embeddings, img_file_paths)

    def get_image_query_embedding(self, image: ImageType) -> list[float]:
        """Embed an image as a *query*, with the query instruction.

        For image-to-anything search in a unified index:
        ``retriever.retrieve(QueryBundle(query_str="", embedding=...))``.
        """
        return self._embed([self._image(image)], query=True, images=True)[0]

    async def aget_image_query_embedding(self, image: ImageType) -> list[float]:
        """:meth:`get_image_query_embedding` in a worker thread."""
        return await asyncio.to_thread(self.get_image_query_embedding, image)

    # -- as a transformation ---------------------------------------------------------------------

    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        """Embed nodes in place: image nodes as images, clip nodes as clips, the rest as text.

        Nodes that already have an embedding are left as they are.
        """
        todo = [node for node in nodes if node.embedding is None]
        visuals: list[tuple[BaseNode, Any]] = []
        texts: list[BaseNode] = []
        roots = self._roots()
        for node in todo:
            visual = node_visual(node, allow_remote=self.allow_remote, policy=None, roots=roots)
            if visual is None:
                texts.append(node)
            else:
                visuals.append((node, visual))
        if texts:
            contents = [node.get_content(metadata_mode=MetadataMode.EMBED) for node in texts]
            for node, vector in zip(texts, self._get_text_embeddings(contents), strict=True):
                node.embedding = vector
        if visuals:
            vectors = self._embed([v for _, v in visuals], query=False, images=True)
            for (node, _), vector in zip(visuals, vectors, strict=True):
                node.embedding = vector
        return nodes

    async def acall(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        """:meth:`__call__` in a worker thread."""
        return await asyncio.to_thread(self.__call__, nodes, **kwargs)

    # -- internals -------------------------------------------------------------------------------

    def _roots(self) -> ImageRoots:
        return ImageRoots.trusting(self.image_roots)

    def _image(self, image: ImageType) -> Any:
        return image_input(image, allow_remote=self.allow_remote, policy=None)

    def _embed(
        self, inputs: Sequence[Any], *, query: bool, images: bool = False
    ) -> list[list[float]]:
        if not inputs:
            return []
        from qwen3_vl_rag.engine.shared import embed_in_chunks

        return embed_in_chunks(
            self.embedder,
            inputs,
            query=query,
            instruction=self.query_instruction if query else self.text_instruction,
            dim=self.dimensions,
            batch_tokens=self.batch_tokens,
            chunk_size=self.image_batch_size if images else self.embed_batch_size,
        )
