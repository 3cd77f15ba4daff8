"""The four adapters on real vLLM servers give the in-process numbers, sync and async.

Each adapter is built twice over the same tiny ``vllm``-preset checkpoint: with ``base_url`` (or
a passed ``from_server`` engine) and with the in-process engine, in float32. Vectors and scores
agree within 1e-5 and rankings are equal. The async methods are checked to go through the
server engine's own async methods (spies), never its synchronous ones.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.documents import Document
from llama_index.core.schema import ImageNode, NodeWithScore, TextNode
from PIL import Image

from qwen3_vl_rag import Qwen3VLEmbedder, Qwen3VLReranker
from qwen3_vl_rag.langchain import Qwen3VLEmbeddings, Qwen3VLRerank, Qwen3VLRerankRetriever
from qwen3_vl_rag.llama_index import Qwen3VLEmbedding
from qwen3_vl_rag.llama_index import Qwen3VLRerank as LlamaRerank
from tests.vllm_servers import Server

pytestmark = [pytest.mark.vllm, pytest.mark.enable_socket, pytest.mark.timeout(900)]

TOLERANCE = 1e-5
TEXTS = ["a red bar chart of revenue", "minutes of the board meeting", "a cat on a sofa"]
QUERY = "revenue by region"
KEY = "sk-test-a1b2c3d4e5f6secret"  # the test servers take any bearer token


@pytest.fixture(scope="module")
def local_embedder(vllm_embedding: Server) -> Qwen3VLEmbedder:
    return Qwen3VLEmbedder.from_pretrained(vllm_embedding.model, dtype="float32", max_length=2048)


@pytest.fixture(scope="module")
def local_reranker(vllm_reranker: Server) -> Qwen3VLReranker:
    return Qwen3VLReranker.from_pretrained(vllm_reranker.model, dtype="float32", max_length=2043)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pictures")
    Image.new("RGB", (200, 150), (220, 30, 30)).save(folder / "red.png")
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, size=(96, 128, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "noise.png")
    return folder


@pytest.fixture
def fresh_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    """No server engine shared from earlier tests: each async test runs in its own event loop."""
    from qwen3_vl_rag.engine import _shared

    monkeypatch.setattr(_shared, "_loaded", {})


def close(a: Any, b: Any) -> bool:
    return bool(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b)).max() <= TOLERANCE)


def spied(engine: Any, names: list[str]) -> list[str]:
    """Record each awaited call of ``names`` on ``engine``; its sync methods must not run."""
    calls: list[str] = []

    def spy(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        async def awaited(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return await method(*args, **kwargs)

        return awaited

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a synchronous engine method ran inside an async call")

    for name in names:
        setattr(engine, name, spy(name, getattr(engine, name)))
        setattr(engine, name[1:], refused)  # aembed_documents -> embed_documents...
    return calls


# -- embeddings ------------------------------------------------------------------------------------


def test_langchain_embeddings_on_a_server_give_the_in_process_vectors(
    vllm_embedding: Server, local_embedder: Qwen3VLEmbedder, pictures: Path
) -> None:
    local = Qwen3VLEmbeddings(engine=local_embedder, image_roots=[pictures])
    remote = Qwen3VLEmbeddings(base_url=vllm_embedding.url, image_roots=[pictures])
    assert remote.embedder.server == vllm_embedding.url
    assert remote.embedder.model_id == str(vllm_embedding.model)  # the server's own model
    images = [str(pictures / "red.png"), str(pictures / "noise.png")]
    for method, argument in [
        ("embed_documents", TEXTS),
        ("embed_query", QUERY),
        ("embed_image", images),
        ("embed_image_query", images[1]),
        ("embed_documents", [images[0], "text beside an image path"]),  # "auto": an image
    ]:
        assert close(getattr(remote, method)(argument), getattr(local, method)(argument)), method
    small = Qwen3VLEmbeddings(base_url=vllm_embedding.url, dimensions=32)
    vectors = small.embed_documents(TEXTS)
    assert np.asarray(vectors).shape == (3, 32)
    assert close(
        vectors, Qwen3VLEmbeddings(engine=local_embedder, dimensions=32).embed_documents(TEXTS)
    )


def test_llama_index_embedding_on_a_server_gives_the_in_process_vectors(
    vllm_embedding: Server, local_embedder: Qwen3VLEmbedder, pictures: Path
) -> None:
    local = Qwen3VLEmbedding(engine=local_embedder)
    named = Qwen3VLEmbedding(base_url=vllm_embedding.url, model_name=str(vllm_embedding.model))
    passed = Qwen3VLEmbedding(engine=Qwen3VLEmbedder.from_server(vllm_embedding.url))
    image = pictures / "noise.png"
    for remote in (named, passed):
        assert remote.embedder.server == vllm_embedding.url
        assert close(remote.get_text_embedding_batch(TEXTS), local.get_text_embedding_batch(TEXTS))
        assert close(remote.get_query_embedding(QUERY), local.get_query_embedding(QUERY))
        assert close(remote.get_image_embedding(image), local.get_image_embedding(image))
        assert close(
            remote.get_image_query_embedding(image), local.get_image_query_embedding(image)
        )
    nodes = [TextNode(text=TEXTS[0]), ImageNode(image_path=str(image))]
    Qwen3VLEmbedding(engine=local_embedder, image_roots=[pictures])(nodes)
    expected = [node.embedding for node in nodes]
    for node in nodes:
        node.embedding = None
    Qwen3VLEmbedding(base_url=vllm_embedding.url, image_roots=[pictures])(nodes)
    assert close([node.embedding for node in nodes], expected)


def test_adapters_on_one_server_share_one_engine_and_hide_the_key(
    vllm_embedding: Server, fresh_engines: None
) -> None:
    first = Qwen3VLEmbeddings(base_url=vllm_embedding.url, api_key=KEY)
    second = Qwen3VLEmbedding(base_url=vllm_embedding.url + "/", api_key=KEY)
    assert first.embedder is second.embedder
    assert Qwen3VLEmbeddings(base_url=vllm_embedding.url).embedder is not first.embedder
    for adapter in (first, second):
        shown = [repr(adapter), str(adapter), str(adapter.model_dump()), adapter.model_dump_json()]
        shown.append(repr(adapter.embedder))
        assert all(KEY not in text for text in shown)
    assert second.to_json().count(KEY) == 0


def test_async_embeddings_await_the_server_engine(
    vllm_embedding: Server, local_embedder: Qwen3VLEmbedder, pictures: Path, fresh_engines: None
) -> None:
    langchain = Qwen3VLEmbeddings(base_url=vllm_embedding.url)
    llama = Qwen3VLEmbedding(base_url=vllm_embedding.url)
    assert langchain.embedder is llama.embedder
    calls = spied(langchain.embedder, ["aembed_documents", "aembed_queries"])
    image = str(pictures / "red.png")

    async def run() -> list[Any]:
        return [
            await langchain.aembed_documents(TEXTS),
            await langchain.aembed_query(QUERY),
            await langchain.aembed_image([image]),
            await llama.aget_text_embedding_batch(TEXTS),
            await llama.aget_query_embedding(QUERY),
            await llama.aget_image_embedding(image),
            await llama.aget_image_query_embedding(image),
        ]

    got = asyncio.run(run())
    assert calls == ["aembed_documents", "aembed_queries", "aembed_documents"] * 2 + [
        "aembed_queries"
    ]
    local = Qwen3VLEmbeddings(engine=local_embedder)
    expected = [
        local.embed_documents(TEXTS),
        local.embed_query(QUERY),
        local.embed_image([image]),
        local.embed_documents(TEXTS),
        local.embed_query(QUERY),
        local.embed_image([image])[0],
        local.embed_image_query(image),
    ]
    for index, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert close(a, b), index


# -- rerankers -------------------------------------------------------------------------------------


def documents(pictures: Path) -> list[Document]:
    texts = [Document(page_content=text) for text in TEXTS]
    page = Document(
        page_content="a scanned page", metadata={"image_path": str(pictures / "red.png")}
    )
    return [*texts, page]


def nodes(pictures: Path) -> list[NodeWithScore]:
    found = [NodeWithScore(node=TextNode(text=t, id_=f"t{i}")) for i, t in enumerate(TEXTS)]
    image = ImageNode(image_path=str(pictures / "noise.png"), id_="image")
    return [*found, NodeWithScore(node=image)]


def ranking(rows: list[dict[str, Any]]) -> tuple[list[int], list[float]]:
    return [row["index"] for row in rows], [row["relevance_score"] for row in rows]


def test_langchain_rerank_on_a_server_gives_the_in_process_order_and_scores(
    vllm_reranker: Server, local_reranker: Qwen3VLReranker, pictures: Path
) -> None:
    local = Qwen3VLRerank(engine=local_reranker, top_n=None, image_roots=[pictures])
    for remote in (
        Qwen3VLRerank(base_url=vllm_reranker.url, top_n=None, image_roots=[pictures]),
        Qwen3VLRerank(
            engine=Qwen3VLReranker.from_server(vllm_reranker.url),
            top_n=None,
            image_roots=[pictures],
        ),
    ):
        assert remote.reranker.server == vllm_reranker.url
        for query in (QUERY, str(pictures / "noise.png")):  # a text and an image query
            order, scores = ranking(remote.rerank(documents(pictures), query))
            expected_order, expected_scores = ranking(local.rerank(documents(pictures), query))
            assert order == expected_order and close(scores, expected_scores)


def test_llama_index_rerank_on_a_server_gives_the_in_process_order_and_scores(
    vllm_reranker: Server, local_reranker: Qwen3VLReranker, pictures: Path
) -> None:
    local = LlamaRerank(engine=local_reranker, top_n=4, image_roots=[pictures])
    remote = LlamaRerank(base_url=vllm_reranker.url, top_n=4, image_roots=[pictures])
    got = remote.postprocess_nodes(nodes(pictures), query_str=QUERY)
    expected = local.postprocess_nodes(nodes(pictures), query_str=QUERY)
    assert [n.node.node_id for n in got] == [n.node.node_id for n in expected]
    assert close([n.score for n in got], [n.score for n in expected])


def test_async_reranking_awaits_the_server_engine(
    vllm_embedding: Server,
    vllm_reranker: Server,
    local_embedder: Qwen3VLEmbedder,
    local_reranker: Qwen3VLReranker,
    pictures: Path,
    fresh_engines: None,
) -> None:
    from langchain_core.vectorstores import InMemoryVectorStore

    langchain = Qwen3VLRerank(base_url=vllm_reranker.url, top_n=None, image_roots=[pictures])
    llama = LlamaRerank(base_url=vllm_reranker.url, top_n=4, image_roots=[pictures])
    embeddings = Qwen3VLEmbeddings(base_url=vllm_embedding.url)
    store = InMemoryVectorStore.from_texts(TEXTS, embeddings)
    retriever = Qwen3VLRerankRetriever(vectorstore=store, reranker=langchain, k=2, fetch_k=3)
    assert langchain.reranker is llama.reranker
    calls = spied(langchain.reranker, ["ascore"])
    embedding_calls = spied(embeddings.embedder, ["aembed_queries"])

    async def run() -> list[Any]:
        return [
            await langchain.arerank(documents(pictures), QUERY),
            await langchain.acompress_documents(documents(pictures), QUERY),
            await llama.apostprocess_nodes(nodes(pictures), query_str=QUERY),
            await retriever.ainvoke(QUERY),
        ]

    rows, compressed, ranked_nodes, retrieved = asyncio.run(run())
    assert calls == ["ascore"] * 4 and embedding_calls == ["aembed_queries"]
    local = Qwen3VLRerank(engine=local_reranker, top_n=None, image_roots=[pictures])
    expected_order, expected_scores = ranking(local.rerank(documents(pictures), QUERY))
    assert ranking(rows)[0] == expected_order and close(ranking(rows)[1], expected_scores)
    assert close([d.metadata["relevance_score"] for d in compressed], expected_scores)
    local_nodes = LlamaRerank(engine=local_reranker, top_n=4, image_roots=[pictures])
    expected_nodes = local_nodes.postprocess_nodes(nodes(pictures), query_str=QUERY)
    assert [n.node.node_id for n in ranked_nodes] == [n.node.node_id for n in expected_nodes]
    assert close([n.score for n in ranked_nodes], [n.score for n in expected_nodes])
    local_store = InMemoryVectorStore.from_texts(TEXTS, Qwen3VLEmbeddings(engine=local_embedder))
    in_process = Qwen3VLRerankRetriever(vectorstore=local_store, reranker=local, k=2, fetch_k=3)
    expected_documents = in_process.invoke(QUERY)
    assert [d.page_content for d in retrieved] == [d.page_content for d in expected_documents]
    assert close(
        [d.metadata["relevance_score"] for d in retrieved],
        [d.metadata["relevance_score"] for d in expected_documents],
    )


@pytest.fixture(autouse=True)
def _no_key_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QWEN3_VL_RAG_API_KEY", raising=False)
