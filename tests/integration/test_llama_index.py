"""The LlamaIndex adapter on the tiny checkpoints: readers, both index routes over embedded
Chroma, text-to-image and image-to-image retrieval, reranking in a query engine, an ingestion
pipeline with its cache, and numbers checked against the engine called directly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import chromadb
import numpy as np
import pytest
from llama_index.core import Settings, SimpleDirectoryReader, StorageContext, VectorStoreIndex
from llama_index.core.indices import MultiModalVectorStoreIndex
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import Document, ImageDocument, ImageNode, MetadataMode, QueryBundle
from llama_index.vector_stores.chroma import ChromaVectorStore
from PIL import Image

from qwen3_vl_rag import Qwen3VLEmbedder, Qwen3VLReranker, Video
from qwen3_vl_rag.llama_index import (
    ImageReader,
    PDFPageImageReader,
    Qwen3VLEmbedding,
    Qwen3VLRerank,
    VideoClipReader,
)
from qwen3_vl_rag.media import load_pdf
from tests.conftest import write_mp4
from tests.integration.test_index import three_page_pdf

TOL = 1e-5
TEXTS = ("tide tables for the winter harbour", "a lighthouse keeper's log")


def chroma(path: Path, name: str) -> ChromaVectorStore:
    client = chromadb.PersistentClient(path=str(path))
    collection = client.get_or_create_collection(name, configuration={"hnsw": {"space": "cosine"}})
    return ChromaVectorStore(chroma_collection=collection)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture
def pdf(tmp_path: Path) -> Path:
    return three_page_pdf(tmp_path / "report.pdf")


@pytest.fixture
def pages(pdf: Path, tmp_path: Path) -> list[ImageDocument]:
    return PDFPageImageReader(image_dir=tmp_path / "pages").load_data(pdf)


@pytest.fixture
def restore_settings() -> Iterator[None]:
    saved = Settings._embed_model
    yield
    Settings._embed_model = saved


def test_adapter_vectors_are_the_engines(embedder: Qwen3VLEmbedder, tmp_path: Path) -> None:
    png = tmp_path / "shot.png"
    Image.new("RGB", (80, 60), (30, 160, 90)).save(png)
    embed = Qwen3VLEmbedding(engine=embedder)
    assert np.allclose(
        embed.get_text_embedding_batch(list(TEXTS)), embedder.embed_documents(list(TEXTS)), atol=TOL
    )
    assert np.allclose(
        embed.get_query_embedding(TEXTS[0]), embedder.embed_queries([TEXTS[0]])[0], atol=TOL
    )
    assert np.allclose(
        embed.get_image_embedding(str(png)), embedder.embed_documents([png])[0], atol=TOL
    )
    assert np.allclose(
        embed.get_image_query_embedding(str(png)), embedder.embed_queries([png])[0], atol=TOL
    )
    small = Qwen3VLEmbedding(engine=embedder, dimensions=32).get_text_embedding(TEXTS[0])
    assert np.allclose(small, embedder.embed_documents([TEXTS[0]], dim=32)[0], atol=TOL)


def test_pdf_reader_yields_flat_image_documents(
    pdf: Path, pages: list[ImageDocument], tmp_path: Path
) -> None:
    assert [type(d) for d in pages] == [ImageDocument] * 3
    first = pages[0]
    assert first.image_path == first.metadata["image_path"]
    assert {
        k: first.metadata[k]
        for k in ("file_path", "file_name", "page", "page_label", "total_pages")
    } == {
        "file_path": str(pdf),
        "file_name": "report.pdf",
        "page": 0,
        "page_label": "1",
        "total_pages": 3,
    }
    assert all(isinstance(v, str | int | float) for d in pages for v in d.metadata.values())
    assert len({d.metadata["image_fingerprint"] for d in pages}) == 3
    assert "image_path" not in first.get_content(MetadataMode.LLM)
    assert "lighthouse" in first.get_content(MetadataMode.LLM)  # the page text is there for the LLM
    (page,) = list(load_pdf(pdf, pages=[1]))
    assert np.array_equal(
        np.asarray(Image.open(pages[1].image_path)), np.asarray(page.load_image())
    )
    # as a file extractor of SimpleDirectoryReader, with its file metadata
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "report.pdf").write_bytes(pdf.read_bytes())
    Image.new("RGB", (32, 24), (5, 5, 5)).save(folder / "shot.png")
    loaded = SimpleDirectoryReader(
        str(folder),
        file_extractor={
            ".pdf": PDFPageImageReader(image_dir=tmp_path / "pages"),
            ".png": ImageReader(),
        },
    ).load_data()
    assert sorted((d.metadata["file_name"], d.metadata.get("page", -1)) for d in loaded) == [
        ("report.pdf", 0),
        ("report.pdf", 1),
        ("report.pdf", 2),
        ("shot.png", -1),
    ]
    assert all("file_size" in d.metadata for d in loaded)


def test_multimodal_index_over_chroma_retrieves_and_reranks(
    embedder: Qwen3VLEmbedder,
    reranker: Qwen3VLReranker,
    pdf: Path,
    pages: list[ImageDocument],
    tmp_path: Path,
) -> None:
    embed = Qwen3VLEmbedding(engine=embedder)
    storage = StorageContext.from_defaults(
        vector_store=chroma(tmp_path / "chroma", "text"),
        image_store=chroma(tmp_path / "chroma", "images"),
    )
    index = MultiModalVectorStoreIndex.from_documents(
        [*pages, *(Document(text=t) for t in TEXTS)],
        storage_context=storage,
        embed_model=embed,
        image_embed_model=embed,
    )
    page_items = list(load_pdf(pdf))
    direct = embedder.embed_documents(page_items)
    retriever = index.as_retriever(similarity_top_k=2, image_similarity_top_k=3)

    # text -> image: the pages by cosine similarity to the query vector
    query = "a bar chart of harbour traffic"
    hits = retriever.text_to_image_retrieve(query)
    query_vector = embedder.embed_queries([query])[0]
    expected = sorted(range(3), key=lambda i: -cosine(query_vector, direct[i]))
    assert [h.node.metadata["page"] for h in hits] == expected
    assert all(isinstance(h.node, ImageNode) for h in hits)

    # image -> image: a page finds itself first
    found = retriever.image_to_image_retrieve(pages[1].image_path)
    assert found[0].node.metadata["page"] == 1

    # rerank in a query engine: the reranker's scores on the pages' pixels, best first
    engine = RetrieverQueryEngine.from_args(
        retriever=index.as_retriever(similarity_top_k=1, image_similarity_top_k=3),
        llm=MockLLM(),
        node_postprocessors=[Qwen3VLRerank(engine=reranker, top_n=2)],
    )
    response = engine.query(query)
    candidates = index.as_retriever(similarity_top_k=1, image_similarity_top_k=3).retrieve(query)
    assert len(candidates) == 4  # one text node and three pages reached the reranker
    read_as = [
        Path(c.node.image_path) if isinstance(c.node, ImageNode) else c.node.get_content()
        for c in candidates
    ]
    scores = reranker.score(query, read_as)
    assert [s.score for s in response.source_nodes] == pytest.approx(
        sorted(scores, reverse=True)[:2], abs=TOL
    )


def test_one_unified_index_holds_text_and_pages(
    embedder: Qwen3VLEmbedder, pages: list[ImageDocument], tmp_path: Path
) -> None:
    embed = Qwen3VLEmbedding(engine=embedder)
    store = chroma(tmp_path / "chroma", "unified")
    index = VectorStoreIndex.from_documents(
        [*pages, *(Document(text=t) for t in TEXTS)],
        storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=embed,  # no transformations given: the plain route
    )
    stored = store._collection.get(include=["embeddings", "metadatas"])
    page_vectors = embedder.embed_documents([Path(d.image_path) for d in pages])
    by_page = {
        int(meta["page"]): vector
        for meta, vector in zip(stored["metadatas"], stored["embeddings"], strict=True)
        if "page" in meta
    }
    assert np.allclose([by_page[i] for i in range(3)], page_vectors, atol=TOL)  # pixels, not text
    # a text query and an image query (as a query) over the one space
    hits = index.as_retriever(similarity_top_k=5).retrieve("harbour")
    assert {type(h.node).__name__ for h in hits} == {"ImageNode", "TextNode"}
    image_query = QueryBundle(
        query_str="", embedding=embed.get_image_query_embedding(pages[2].image_path)
    )
    best = index.as_retriever(similarity_top_k=1).retrieve(image_query)[0]
    query_vector = embedder.embed_queries([Path(pages[2].image_path)])[0]
    best_possible = max(cosine(query_vector, np.asarray(v)) for v in stored["embeddings"])
    assert best.score == pytest.approx(best_possible, abs=1e-4)


def test_ingestion_cache_keeps_pages_with_the_same_text_apart(
    embedder: Qwen3VLEmbedder, tmp_path: Path, restore_settings: None
) -> None:
    import pymupdf

    paths = []
    for name, colour in (("red", (0.9, 0.1, 0.1)), ("blue", (0.1, 0.1, 0.9))):
        document = pymupdf.open()
        page = document.new_page(width=300, height=400)
        page.insert_text((30, 60), "Quarterly figures", fontsize=12)  # the same text
        page.draw_rect(pymupdf.Rect(60, 120, 220, 320), color=colour, fill=colour)
        document.save(tmp_path / f"{name}.pdf")
        paths.append(tmp_path / f"{name}.pdf")
    reader = PDFPageImageReader(image_dir=tmp_path / "pages")
    red, blue = (reader.load_data(p)[0] for p in paths)
    assert red.text == blue.text and red.metadata["page_text"] == blue.metadata["page_text"]

    Settings.embed_model = Qwen3VLEmbedding(engine=embedder)
    pipeline = IngestionPipeline()  # default: a splitter and Settings.embed_model, cache on
    (first,) = pipeline.run(documents=[red])
    (second,) = pipeline.run(documents=[blue])
    assert second.image_path == blue.image_path  # not the cached red page
    expected = embedder.embed_documents([Path(red.image_path), Path(blue.image_path)])
    assert np.allclose([first.embedding, second.embedding], expected, atol=TOL)


def test_video_clips_embed_as_the_clips_they_name(
    embedder: Qwen3VLEmbedder, tmp_path: Path
) -> None:
    video = write_mp4(tmp_path / "talk.mp4", frames=24, fps=6)
    reader = VideoClipReader(segment_seconds=2.0)
    clips = reader.load_data(tmp_path)
    assert [(d.metadata["start_seconds"], d.metadata["end_seconds"]) for d in clips] == [
        (0.0, 2.0),
        (2.0, 4.0),
    ]
    assert clips[0].text == "Video clip: talk.mp4, 0-2 s"
    nodes = Qwen3VLEmbedding(engine=embedder)(clips)
    direct = embedder.embed_documents(
        [Video(video, start=0.0, end=2.0), Video(video, start=2.0, end=4.0)]
    )
    assert np.allclose([n.embedding for n in nodes], direct, atol=TOL)
    assert reader.report is not None and reader.report.counts()["loaded"] == 1
