"""The tiny models trained on synthetic pages retrieve held-out pages for real: measured with the
evaluator, through the index, and through the LangChain and LlamaIndex adapters.

The held-out corpus is the synthetic "test" split: 36 pages (six kinds in six colours) the
models never saw, and queries that ask for a kind in a colour. Thresholds were set from
measurement with margin (see README, "A tiny model that retrieves for real").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from langchain_core.vectorstores import InMemoryVectorStore
from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.vector_stores import SimpleVectorStore

from qwen3_vl_rag import MultimodalIndex, Qwen3VLEmbedder, Qwen3VLReranker
from qwen3_vl_rag.evaluate import evaluate, load_beir
from qwen3_vl_rag.langchain import PDFPageImageLoader, Qwen3VLEmbeddings
from qwen3_vl_rag.llama_index import PDFPageImageReader, Qwen3VLEmbedding
from qwen3_vl_rag.media import MediaBudget
from qwen3_vl_rag.testing import (
    SYNTHETIC_MAX_PIXELS,
    SyntheticCorpus,
    SyntheticPage,
    make_synthetic_corpus,
)

# The first test here may train the models (about 11 minutes on 2 busy cores, once per recipe).
pytestmark = pytest.mark.timeout(1800)

PIXELS = {"max_pixels": SYNTHETIC_MAX_PIXELS, "device": "cpu"}
BUDGET = MediaBudget(max_pixels=SYNTHETIC_MAX_PIXELS)

# Measured on this project's machine (2026-11-30), then lowered for margin; random weights
# measured on the same held-out set for comparison.
MIN_TRAINED_NDCG5 = 0.5  # measured 0.665 (random weights: 0.137)
MAX_RANDOM_NDCG5 = 0.25
MIN_RERANKED_NDCG5 = 0.33  # measured 0.444: above random, below the embedder's ranking
MIN_TOP1_KIND = 0.6  # the first hit is the asked-for kind of page, over every query


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> SyntheticCorpus:
    return make_synthetic_corpus(tmp_path_factory.mktemp("held-out"), split="test", pdf=True)


@pytest.fixture(scope="module")
def trained_embedder(trained_embedding_path: Path) -> Qwen3VLEmbedder:
    return Qwen3VLEmbedder.from_pretrained(trained_embedding_path, **PIXELS)


@pytest.fixture(scope="module")
def trained_reranker(trained_reranker_path: Path) -> Qwen3VLReranker:
    return Qwen3VLReranker.from_pretrained(trained_reranker_path, **PIXELS)


def _page_of(corpus: SyntheticCorpus) -> Callable[[str, int], SyntheticPage]:
    """``(PDF file name, 0-based page)`` -> the synthetic page it holds."""
    pages = {(p.pdf.name, (p.page or 0) - 1): p for p in corpus.pages if p.pdf is not None}
    return lambda name, page: pages[(Path(name).name, page)]


def _top1_kind_rate(corpus: SyntheticCorpus, first_hit: Callable[[str], SyntheticPage]) -> float:
    hits = [first_hit(query.text).kind == query.kind for query in corpus.queries]
    return sum(hits) / len(hits)


def test_trained_models_rank_held_out_pages_far_above_random_ones(
    held_out: SyntheticCorpus,
    trained_embedder: Qwen3VLEmbedder,
    trained_reranker: Qwen3VLReranker,
    tiny_embedding_path: Path,
) -> None:
    beir = held_out.write_beir(held_out.folder / "beir")
    random_embedder = Qwen3VLEmbedder.from_pretrained(tiny_embedding_path, **PIXELS)
    with load_beir(beir) as data:
        trained = evaluate(trained_embedder, data, reranker=trained_reranker, k_values=(5, 10))
        random = evaluate(random_embedder, data, k_values=(5, 10))
    retrieval = trained.metrics["retrieval"]["nDCG@5"]
    baseline = random.metrics["retrieval"]["nDCG@5"]
    assert retrieval >= MIN_TRAINED_NDCG5, trained.table()
    assert baseline <= MAX_RANDOM_NDCG5, random.table()
    assert retrieval >= baseline + 0.2
    assert trained.metrics["reranked"]["nDCG@5"] >= MIN_RERANKED_NDCG5, trained.table()


def test_the_index_finds_the_pages_each_query_asks_for(
    held_out: SyntheticCorpus,
    trained_embedder: Qwen3VLEmbedder,
    trained_reranker: Qwen3VLReranker,
    tmp_path: Path,
) -> None:
    page_of = _page_of(held_out)
    pdfs = sorted({p.pdf for p in held_out.pages if p.pdf is not None})
    with MultimodalIndex(tmp_path / "index", trained_embedder, trained_reranker) as index:
        assert index.index(pdfs).complete

        def first_hit(query: str) -> SyntheticPage:
            (hit,) = index.search(query, top_n=1, rerank=False)
            return page_of(hit.source, int(hit.metadata["page"]))

        assert _top1_kind_rate(held_out, first_hit) >= MIN_TOP1_KIND
        assert first_hit("red bar chart of quarterly revenue").kind == "bar_chart"
        reranked = index.search("red bar chart of quarterly revenue", k=12, top_n=3)
        assert len(reranked) == 3
        assert all(h.rerank_score is not None and 0 <= h.rerank_score <= 1 for h in reranked)


def test_langchain_retrieves_the_asked_for_pages(
    held_out: SyntheticCorpus, trained_embedder: Qwen3VLEmbedder, tmp_path: Path
) -> None:
    page_of = _page_of(held_out)
    documents = [
        document
        for pdf in sorted({p.pdf for p in held_out.pages if p.pdf is not None})
        for document in PDFPageImageLoader(pdf, image_dir=tmp_path / "pages", budget=BUDGET).load()
    ]
    store = InMemoryVectorStore(Qwen3VLEmbeddings(engine=trained_embedder))
    store.add_documents(documents)

    def first_hit(query: str) -> SyntheticPage:
        (best,) = store.similarity_search(query, k=1)
        return page_of(best.metadata["source"], int(best.metadata["page"]))

    assert _top1_kind_rate(held_out, first_hit) >= MIN_TOP1_KIND


def test_llama_index_retrieves_the_asked_for_pages(
    held_out: SyntheticCorpus, trained_embedder: Qwen3VLEmbedder, tmp_path: Path
) -> None:
    page_of = _page_of(held_out)
    reader = PDFPageImageReader(image_dir=tmp_path / "pages", budget=BUDGET)
    documents = [
        document
        for pdf in sorted({p.pdf for p in held_out.pages if p.pdf is not None})
        for document in reader.load_data(pdf)
    ]
    index = VectorStoreIndex.from_documents(
        documents,
        storage_context=StorageContext.from_defaults(vector_store=SimpleVectorStore()),
        embed_model=Qwen3VLEmbedding(engine=trained_embedder),
    )
    retriever = index.as_retriever(similarity_top_k=1)

    def first_hit(query: str) -> SyntheticPage:
        (best,) = retriever.retrieve(query)
        return page_of(best.node.metadata["file_path"], int(best.node.metadata["page"]))

    assert _top1_kind_rate(held_out, first_hit) >= MIN_TOP1_KIND
