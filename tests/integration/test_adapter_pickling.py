"""The four adapter classes pickle before and after use, without their model, on tiny checkpoints.

A pickle carries the settings only (far smaller than the weights); the copy loads its model again
on first use and gives the same results as the original. Processes that pickle adapters
(``IngestionPipeline(num_workers>1)``, multiprocessing pools, caches) depend on this.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document
from llama_index.core.schema import NodeWithScore, TextNode

from qwen3_vl_rag.langchain import Qwen3VLEmbeddings, Qwen3VLRerank, Qwen3VLRerankRetriever
from qwen3_vl_rag.llama_index import Qwen3VLEmbedding
from qwen3_vl_rag.llama_index import Qwen3VLRerank as LlamaRerank

TEXTS = ["a red bar chart of revenue", "minutes of the board meeting", "a cat on a sofa"]
QUERY = "revenue by region"


def weight_bytes(checkpoint: Path) -> int:
    return sum(path.stat().st_size for path in checkpoint.glob("*.safetensors"))


def forget_loaded_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh process: the shared models loaded so far are not there."""
    from qwen3_vl_rag.engine import _shared as shared

    monkeypatch.setattr(shared, "_loaded", {})


def langchain_embed(adapter: Any) -> list[Any]:
    return [adapter.embed_documents(TEXTS), adapter.embed_query(QUERY)]


def langchain_rerank(adapter: Any) -> list[Any]:
    return adapter.rerank([Document(page_content=t) for t in TEXTS], QUERY, top_n=None)


def llama_embed(adapter: Any) -> list[Any]:
    return [adapter.get_text_embedding_batch(TEXTS), adapter.get_query_embedding(QUERY)]


def llama_rerank(adapter: Any) -> list[Any]:
    nodes = [NodeWithScore(node=TextNode(text=t, id_=str(i))) for i, t in enumerate(TEXTS)]
    ranked = adapter.postprocess_nodes(nodes, query_str=QUERY)
    return [(n.node.node_id, n.score) for n in ranked]


CASES = [
    pytest.param(Qwen3VLEmbeddings, "model", "embedding", langchain_embed, id="langchain-emb"),
    pytest.param(Qwen3VLRerank, "model", "reranker", langchain_rerank, id="langchain-rerank"),
    pytest.param(Qwen3VLEmbedding, "model_name", "embedding", llama_embed, id="llama-emb"),
    pytest.param(LlamaRerank, "model", "reranker", llama_rerank, id="llama-rerank"),
]


@pytest.mark.parametrize(("cls", "keyword", "kind", "use"), CASES)
def test_pickles_before_and_after_use_without_the_model(
    cls: Any,
    keyword: str,
    kind: str,
    use: Any,
    tiny_embedding_path: Path,
    tiny_reranker_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checkpoint = tiny_embedding_path if kind == "embedding" else tiny_reranker_path
    forget_loaded_models(monkeypatch)
    adapter = cls(**{keyword: str(checkpoint)}, device="cpu")
    unused = pickle.loads(pickle.dumps(adapter))

    before = use(adapter)  # loads the model
    data = pickle.dumps(adapter)
    assert len(data) < 20_000 < weight_bytes(checkpoint) // 10
    forget_loaded_models(monkeypatch)  # as in another process
    used = pickle.loads(data)
    assert use(used) == before
    assert use(unused) == before
    assert use(adapter) == before  # the original keeps working with its own model


def test_a_retriever_pickles_without_its_reranker_model(
    tiny_embedding_path: Path, tiny_reranker_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from langchain_core.vectorstores import InMemoryVectorStore

    forget_loaded_models(monkeypatch)
    embeddings = Qwen3VLEmbeddings(model=str(tiny_embedding_path), device="cpu")
    store = InMemoryVectorStore.from_texts(TEXTS, embeddings)
    retriever = Qwen3VLRerankRetriever(
        vectorstore=store, reranker=Qwen3VLRerank(model=str(tiny_reranker_path)), k=2
    )
    before = [(d.page_content, d.metadata["relevance_score"]) for d in retriever.invoke(QUERY)]
    data = pickle.dumps(retriever)
    assert len(data) < 100_000 < weight_bytes(tiny_reranker_path) // 10
    forget_loaded_models(monkeypatch)
    again = pickle.loads(data)
    after = [(d.page_content, d.metadata["relevance_score"]) for d in again.invoke(QUERY)]
    assert after == before
