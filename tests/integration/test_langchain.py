"""The LangChain adapter on the tiny checkpoints: langchain-tests' standard suites, and a whole
visual RAG flow (PDF pages -> Chroma -> retrieve -> rerank -> message blocks) with numbers
checked against the engine called directly."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from langchain_chroma import Chroma
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_tests.integration_tests import EmbeddingsIntegrationTests, RetrieversIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests
from PIL import Image

from qwen3_vl_rag import Qwen3VLEmbedder, Qwen3VLReranker, Video
from qwen3_vl_rag.langchain import (
    ImageLoader,
    PDFPageImageLoader,
    Qwen3VLEmbeddings,
    Qwen3VLRerank,
    Qwen3VLRerankRetriever,
    VideoClipLoader,
    documents_to_content_blocks,
)
from qwen3_vl_rag.media import load_pdf
from tests.conftest import write_mp4
from tests.integration.test_index import CORRUPT_PNG, three_page_pdf

TOL = 1e-5
COSINE = {"hnsw": {"space": "cosine"}}


# -- langchain-tests' standard suites --------------------------------------------------------------


class TestEmbeddingsUnit(EmbeddingsUnitTests):
    """Construction without weights: the model loads on first use."""

    @property
    def embeddings_class(self) -> type[Qwen3VLEmbeddings]:
        return Qwen3VLEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": "Qwen/Qwen3-VL-Embedding-2B", "device": "cpu", "dimensions": 512}


class TestEmbeddingsIntegration(EmbeddingsIntegrationTests):
    """The real loading path (``model=`` a checkpoint directory) on the tiny checkpoint."""

    checkpoint: ClassVar[str] = ""

    @pytest.fixture(autouse=True)
    def _tiny(self, tiny_embedding_path: Path) -> None:
        type(self).checkpoint = str(tiny_embedding_path)

    @property
    def embeddings_class(self) -> type[Qwen3VLEmbeddings]:
        return Qwen3VLEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": self.checkpoint, "device": "cpu"}


class TestRerankRetriever(RetrieversIntegrationTests):
    """Recall from an in-memory store, rerank with the tiny reranker."""

    params: ClassVar[dict[str, Any]] = {}

    @pytest.fixture(autouse=True)
    def _store(self, embedder: Qwen3VLEmbedder, reranker: Qwen3VLReranker) -> None:
        store = InMemoryVectorStore(Qwen3VLEmbeddings(engine=embedder))
        store.add_texts([f"note {i} about harbour traffic and tides" for i in range(6)])
        type(self).params = {"vectorstore": store, "reranker": Qwen3VLRerank(engine=reranker)}

    @property
    def retriever_constructor(self) -> type[Qwen3VLRerankRetriever]:
        return Qwen3VLRerankRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def retriever_query_example(self) -> str:
        return "harbour traffic"


# -- the adapter equals the engine ---------------------------------------------------------------


def test_adapter_vectors_are_the_engines(embedder: Qwen3VLEmbedder, tmp_path: Path) -> None:
    png = tmp_path / "shot.png"
    Image.new("RGB", (80, 60), (30, 160, 90)).save(png)
    embeddings = Qwen3VLEmbeddings(engine=embedder)
    texts = ["a lighthouse", "tide tables"]
    assert np.allclose(embeddings.embed_documents(texts), embedder.embed_documents(texts), atol=TOL)
    assert np.allclose(
        embeddings.embed_query("a lighthouse"),
        embedder.embed_queries(["a lighthouse"])[0],
        atol=TOL,
    )
    assert np.allclose(
        embeddings.embed_image(uris=[str(png)]), embedder.embed_documents([png]), atol=TOL
    )
    small = Qwen3VLEmbeddings(engine=embedder, dimensions=32).embed_documents(texts)
    assert np.allclose(small, embedder.embed_documents(texts, dim=32), atol=TOL)


# -- a visual RAG flow end to end ----------------------------------------------------------------


@pytest.fixture
def pdf(tmp_path: Path) -> Path:
    return three_page_pdf(tmp_path / "report.pdf")


def test_pdf_pages_become_image_documents_with_pymupdf_metadata(pdf: Path, tmp_path: Path) -> None:
    loader = PDFPageImageLoader(pdf, image_dir=tmp_path / "pages")
    documents = loader.load()
    assert [d.metadata["page"] for d in documents] == [0, 1, 2]
    first = documents[0]
    assert first.page_content == first.metadata["image_path"]
    assert {k: first.metadata[k] for k in ("source", "file_path", "total_pages", "page_label")} == {
        "source": str(pdf),
        "file_path": str(pdf),
        "total_pages": 3,
        "page_label": "1",
    }
    assert "lighthouse" in first.metadata["page_text"]
    assert all(
        isinstance(v, str | int | float | bool) for d in documents for v in d.metadata.values()
    )
    # the PNG holds exactly the page the media layer renders for the embedder
    (page,) = list(load_pdf(pdf, pages=[1]))
    saved = Image.open(documents[1].metadata["image_path"])
    assert saved.size == page.image.size
    assert np.array_equal(np.asarray(saved), np.asarray(page.load_image()))
    # loading again reuses the PNGs; content="text" puts the page text in page_content
    before = {
        d.metadata["image_path"]: Path(d.metadata["image_path"]).stat().st_mtime_ns
        for d in documents
    }
    again = PDFPageImageLoader(pdf, image_dir=tmp_path / "pages", content="text").load()
    assert {
        d.metadata["image_path"]: Path(d.metadata["image_path"]).stat().st_mtime_ns for d in again
    } == before
    assert again[2].page_content.startswith("Page 3: tide tables")
    blank = tmp_path / "blank.pdf"
    import pymupdf

    document = pymupdf.open()
    document.new_page(width=200, height=200)
    document.save(blank)
    (empty,) = PDFPageImageLoader(blank, image_dir=tmp_path / "pages", content="text").load()
    assert empty.page_content == "[page 1 of blank.pdf: no text]"
    assert empty.metadata["page_text"] == ""


def test_visual_rag_flow_load_index_retrieve_rerank_answer_blocks(
    embedder: Qwen3VLEmbedder, reranker: Qwen3VLReranker, pdf: Path, tmp_path: Path
) -> None:
    pages = PDFPageImageLoader(pdf, image_dir=tmp_path / "pages").load()
    embeddings = Qwen3VLEmbeddings(engine=embedder)
    store = Chroma.from_documents(
        pages,
        embeddings,
        ids=[f"p{d.metadata['page']}" for d in pages],
        persist_directory=str(tmp_path / "chroma"),
        collection_configuration=COSINE,
    )
    # the stored vectors are the engine's vectors of the rendered pages
    stored = store.get(ids=["p0", "p1", "p2"], include=["embeddings"])
    page_items = list(load_pdf(pdf))
    direct = embedder.embed_documents(page_items)
    by_id = dict(zip(stored["ids"], stored["embeddings"], strict=True))
    assert np.allclose([by_id[f"p{i}"] for i in range(3)], direct, atol=TOL)

    # recall: cosine similarity to the query vector, best first
    query = "a bar chart of harbour traffic"
    recalled = store.similarity_search_with_relevance_scores(query, k=3)
    query_vector = embedder.embed_queries([query])[0]
    expected = sorted(range(3), key=lambda i: -float(np.dot(query_vector, direct[i])))
    assert [doc.metadata["page"] for doc, _ in recalled] == expected
    assert [score for _, score in recalled] == pytest.approx(
        [float(np.dot(query_vector, direct[i])) for i in expected], abs=1e-4
    )

    # rerank inside LangChain's compression retriever: scores are the reranker's on the pixels
    retriever = ContextualCompressionRetriever(
        base_compressor=Qwen3VLRerank(engine=reranker, top_n=2),
        base_retriever=store.as_retriever(search_kwargs={"k": 3}),
    )
    reranked = retriever.invoke(query)
    scores = reranker.score(query, page_items)
    best = sorted(range(3), key=lambda i: -scores[i])[:2]
    assert [d.metadata["page"] for d in reranked] == best
    assert [d.metadata["relevance_score"] for d in reranked] == pytest.approx(
        [scores[i] for i in best], abs=TOL
    )
    assert [d.id for d in reranked] == [f"p{i}" for i in best]

    # the answer step: the retrieved pages as image blocks for a vision chat model
    blocks = documents_to_content_blocks(reranked)
    assert [b["type"] for b in blocks] == ["text", "image", "text", "image"]
    assert blocks[0]["text"] == f"{pdf.name}, page {best[0] + 1}"
    shown = Image.open(io.BytesIO(base64.b64decode(blocks[1]["base64"])))
    assert shown.size == page_items[best[0]].image.size


def test_add_images_and_search_by_image_through_langchain_chroma(
    embedder: Qwen3VLEmbedder, reranker: Qwen3VLReranker, tmp_path: Path
) -> None:
    paths = []
    for i, colour in enumerate([(220, 20, 20), (20, 220, 20), (20, 20, 220)]):
        path = tmp_path / f"shot{i}.png"
        Image.new("RGB", (64, 48), colour).save(path)
        paths.append(path)
    store = Chroma(
        embedding_function=Qwen3VLEmbeddings(engine=embedder),
        persist_directory=str(tmp_path / "chroma"),
        collection_configuration=COSINE,
    )
    ids = store.add_images(uris=[str(p) for p in paths], metadatas=[{"n": i} for i in range(3)])
    assert len(ids) == 3
    found = store.similarity_search_by_image(str(paths[1]), k=3)
    assert found[0].metadata["n"] == 1  # the image itself is its own nearest neighbour
    assert base64.b64decode(found[0].page_content) == paths[1].read_bytes()
    # the reranker reads the base64 page content as the image it is
    kept = Qwen3VLRerank(engine=reranker, top_n=None).compress_documents(found, "a green square")
    scores = reranker.score("a green square", [paths[d.metadata["n"]] for d in found])
    assert sorted(d.metadata["relevance_score"] for d in kept) == pytest.approx(
        sorted(scores), abs=TOL
    )


def test_video_clips_embed_as_the_clips_they_name(
    embedder: Qwen3VLEmbedder, tmp_path: Path
) -> None:
    video = write_mp4(tmp_path / "talk.mp4", frames=24, fps=6)  # 4 s
    loader = VideoClipLoader(tmp_path, segment_seconds=2.0)
    clips = loader.load()
    assert [(d.metadata["start_seconds"], d.metadata["end_seconds"]) for d in clips] == [
        (0.0, 2.0),
        (2.0, 4.0),
    ]
    assert clips[1].page_content == f"{video}#t=2,4"
    vectors = Qwen3VLEmbeddings(engine=embedder).embed_documents([d.page_content for d in clips])
    direct = embedder.embed_documents(
        [Video(video, start=0.0, end=2.0), Video(video, start=2.0, end=4.0)]
    )
    assert np.allclose(vectors, direct, atol=TOL)
    assert loader.report is not None
    assert loader.report.counts()["loaded"] == 1


def test_image_loader_reports_what_it_skips_and_cannot_read(tmp_path: Path) -> None:
    folder = tmp_path / "shots"
    folder.mkdir()
    Image.new("RGB", (32, 24), (1, 2, 3)).save(folder / "a.png")
    (folder / "b.png").write_bytes(CORRUPT_PNG)
    three_page_pdf(folder / "c.pdf")
    loader = ImageLoader(folder)
    documents = loader.load()
    assert [Path(d.page_content).name for d in documents] == ["a.png"]
    assert documents[0].metadata["image_path"] == documents[0].page_content
    assert documents[0].metadata["mime_type"] == "image/png"
    assert loader.report is not None
    outcomes = {Path(f.path).name: (f.status, f.reason) for f in loader.report.files}
    assert outcomes["a.png"][0] == "loaded"
    assert outcomes["b.png"][0] == "failed"
    assert outcomes["c.pdf"] == ("skipped", "a pdf; this scan takes images")


def test_documents_without_images_are_reranked_as_text(reranker: Qwen3VLReranker) -> None:
    documents = [Document(page_content=t) for t in ("tide tables", "a lighthouse", "harbour")]
    kept = Qwen3VLRerank(engine=reranker, top_n=None).compress_documents(documents, "lighthouse")
    scores = reranker.score("lighthouse", [d.page_content for d in documents])
    assert {d.page_content: d.metadata["relevance_score"] for d in kept} == pytest.approx(
        {d.page_content: s for d, s in zip(documents, scores, strict=True)}, abs=TOL
    )
