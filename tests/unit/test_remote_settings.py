"""The adapters' ``base_url`` and ``api_key``, without a server: validation, secrets, routing.

Connecting is observed by replacing the process's server engines (``server_embedder``,
``server_reranker``) with fakes, so nothing is sent anywhere; the fakes below that have a
``server`` and coroutine methods stand for a remote engine, and show which path an async
method takes. The command's refusal of an unreachable server uses a closed loopback port.
"""

from __future__ import annotations

import asyncio
import pickle
import socket
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.documents import Document
from llama_index.core.schema import NodeWithScore, TextNode
from pydantic import ValidationError

from qwen3_vl_rag.errors import ConfigurationError, InputError
from qwen3_vl_rag.langchain import Qwen3VLEmbeddings, Qwen3VLRerank
from qwen3_vl_rag.llama_index import Qwen3VLEmbedding
from qwen3_vl_rag.llama_index import Qwen3VLRerank as LlamaRerank
from qwen3_vl_rag.testing.fakes import FakeEmbedder, FakeReranker

URL = "http://127.0.0.1:8000"
KEY = "sk-vllm-a1b2c3d4e5f6secret"

#: Each adapter class, the keyword of its checkpoint, the process-wide connector it calls.
ADAPTERS = [
    pytest.param(Qwen3VLEmbeddings, "model", "server_embedder", id="langchain-emb"),
    pytest.param(Qwen3VLRerank, "model", "server_reranker", id="langchain-rerank"),
    pytest.param(Qwen3VLEmbedding, "model_name", "server_embedder", id="llama-emb"),
    pytest.param(LlamaRerank, "model", "server_reranker", id="llama-rerank"),
]


class RemoteEmbedder(FakeEmbedder):
    """A fake with what a server engine adds: a URL and awaitable methods (recorded)."""

    def __init__(self, server: str | None = URL) -> None:
        super().__init__()
        self.server = server
        self.awaited: list[tuple[str, str]] = []  # (method, thread it ran on)
        self.threads: list[str] = []  # threads the synchronous methods ran on

    def embed_documents(self, items: Sequence[Any], **kwargs: Any) -> np.ndarray:
        self.threads.append(threading.current_thread().name)
        return super().embed_documents(items, **kwargs)

    def embed_queries(self, items: Sequence[Any], **kwargs: Any) -> np.ndarray:
        self.threads.append(threading.current_thread().name)
        return super().embed_queries(items, **kwargs)

    async def aembed_documents(self, items: Sequence[Any], **kwargs: Any) -> np.ndarray:
        self.awaited.append(("aembed_documents", threading.current_thread().name))
        return FakeEmbedder.embed_documents(self, items, **kwargs)

    async def aembed_queries(self, items: Sequence[Any], **kwargs: Any) -> np.ndarray:
        self.awaited.append(("aembed_queries", threading.current_thread().name))
        return FakeEmbedder.embed_queries(self, items, **kwargs)


class RemoteReranker(FakeReranker):
    """A reranking fake with a URL and an awaitable ``ascore`` (recorded)."""

    def __init__(self, server: str | None = URL) -> None:
        super().__init__()
        self.server = server
        self.awaited: list[str] = []

    async def ascore(self, query: Any, documents: Sequence[Any], **kwargs: Any) -> list[float]:
        self.awaited.append(threading.current_thread().name)
        return self.score(query, documents, **kwargs)


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, dict[str, Any]]]:
    """Every connection the adapters ask for: (connector, url, options); fakes are returned."""
    from qwen3_vl_rag import engine

    seen: list[tuple[str, str, dict[str, Any]]] = []

    def embedder(url: str, **options: Any) -> RemoteEmbedder:
        seen.append(("server_embedder", url, options))
        return RemoteEmbedder()

    def reranker(url: str, **options: Any) -> RemoteReranker:
        seen.append(("server_reranker", url, options))
        return RemoteReranker()

    monkeypatch.setattr(engine, "server_embedder", embedder)
    monkeypatch.setattr(engine, "server_reranker", reranker)
    monkeypatch.delenv("QWEN3_VL_RAG_API_KEY", raising=False)
    return seen


def engine_of(adapter: Any) -> Any:
    return adapter.embedder if hasattr(adapter, "embedder") else adapter.reranker


def views(adapter: Any) -> list[str]:
    """Every text form the frameworks offer of an adapter."""
    shown = [repr(adapter), str(adapter), str(adapter.model_dump()), adapter.model_dump_json()]
    for method in ("dict", "to_dict", "to_json", "to_payload"):
        if hasattr(adapter, method):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # pydantic's .dict()
                shown.append(str(getattr(adapter, method)()))
    return shown


# -- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("cls", "keyword", "connector"), ADAPTERS)
def test_base_url_is_an_http_address(cls: Any, keyword: str, connector: str) -> None:
    assert cls(base_url="https://vllm.internal:8443/").base_url == "https://vllm.internal:8443"
    assert cls(base_url=" http://127.0.0.1:8000 ").base_url == URL
    for bad in ("127.0.0.1:8000", "ftp://host", "http://", "file:///tmp/x", ""):
        with pytest.raises(ValidationError, match="http:// or https:// address"):
            cls(base_url=bad)


@pytest.mark.parametrize(("cls", "keyword", "connector"), ADAPTERS)
def test_a_refused_base_url_is_not_repeated(cls: Any, keyword: str, connector: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        cls(base_url="ftp://user:hunter2@host")
    assert "hunter2" not in str(excinfo.value)


@pytest.mark.parametrize(("cls", "keyword", "connector"), ADAPTERS)
def test_an_api_key_needs_a_base_url(cls: Any, keyword: str, connector: str) -> None:
    with pytest.raises(ValidationError, match="set base_url too") as excinfo:
        cls(api_key=KEY)
    assert KEY not in str(excinfo.value)


def test_an_engine_and_a_base_url_are_refused_together() -> None:
    with pytest.raises(ValidationError, match="an `engine` or a `base_url`, not both"):
        Qwen3VLEmbeddings(engine=FakeEmbedder(), base_url=URL)
    with pytest.raises(ValidationError, match="not both"):
        Qwen3VLRerank(engine=FakeReranker(), base_url=URL)
    with pytest.raises(ConfigurationError, match="not both"):
        Qwen3VLEmbedding(engine=FakeEmbedder(), base_url=URL)
    with pytest.raises(ConfigurationError, match="not both"):
        LlamaRerank(engine=FakeReranker(), base_url=URL)


# -- what reaches from_server ----------------------------------------------------------------------


@pytest.mark.parametrize(("cls", "keyword", "connector"), ADAPTERS)
def test_the_server_model_is_used_unless_a_checkpoint_is_named(
    cls: Any, keyword: str, connector: str, connects: list[Any]
) -> None:
    engine_of(cls(base_url=URL))
    engine_of(cls(base_url=URL, **{keyword: "/ckpt"}))
    default = cls.model_fields[keyword].default
    engine_of(cls(base_url=URL, **{keyword: default}))  # named, even if it is the default
    assert [(c, url, o["model"]) for c, url, o in connects] == [
        (connector, URL, None),
        (connector, URL, "/ckpt"),
        (connector, URL, default),
    ]


@pytest.mark.parametrize(("cls", "keyword", "connector"), ADAPTERS)
def test_server_options_pass_through_and_device_and_dtype_are_ignored(
    cls: Any, keyword: str, connector: str, connects: list[Any]
) -> None:
    adapter = cls(
        base_url=URL,
        device="cuda:1",
        dtype="bfloat16",
        max_pixels=602112,
        batch_tokens=4096,
        model_kwargs={"token": "hf_secret", "min_pixels": 8192, "timeout": 30.0},
    )
    assert isinstance(engine_of(adapter), RemoteEmbedder | RemoteReranker)
    ((_, url, options),) = connects
    assert url == URL
    assert options == {
        "model": None,
        "api_key": None,
        "max_pixels": 602112,
        "token": "hf_secret",  # the Hub token, for the tokenizer files: unwrapped here only
        "min_pixels": 8192,
        "timeout": 30.0,
    }


@pytest.mark.parametrize(("cls", "keyword", "connector"), ADAPTERS)
def test_the_api_key_is_never_shown_nor_dumped_but_reaches_the_server(
    cls: Any, keyword: str, connector: str, connects: list[Any]
) -> None:
    adapter = cls(base_url=URL, api_key=KEY)
    for text in views(adapter):
        assert KEY not in text
    assert "api_key" not in adapter.model_dump()  # a dump does not carry it at all
    assert URL in repr(adapter)  # the rest stays visible
    engine_of(adapter)
    ((_, _, options),) = connects
    assert options["api_key"] == KEY


@pytest.mark.parametrize(("cls", "keyword", "connector"), ADAPTERS)
def test_a_key_set_after_construction_is_hidden_too(
    cls: Any, keyword: str, connector: str, connects: list[Any]
) -> None:
    adapter = cls(base_url=URL)
    adapter.api_key = KEY
    assert KEY not in repr(adapter)
    engine_of(adapter)
    assert connects[0][2]["api_key"] == KEY


@pytest.mark.parametrize(("cls", "keyword", "connector"), ADAPTERS)
def test_the_key_comes_from_the_environment_when_not_given(
    cls: Any, keyword: str, connector: str, connects: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QWEN3_VL_RAG_API_KEY", "from-env")
    engine_of(cls(base_url=URL))
    engine_of(cls(base_url=URL, api_key=KEY))
    assert [options["api_key"] for _, _, options in connects] == ["from-env", KEY]


@pytest.mark.parametrize(("cls", "keyword", "connector"), ADAPTERS)
def test_a_pickle_keeps_the_key_and_the_model_rule_and_connects_again(
    cls: Any, keyword: str, connector: str, connects: list[Any]
) -> None:
    adapter = cls(base_url=URL, api_key=KEY)
    engine = engine_of(adapter)
    copy = pickle.loads(pickle.dumps(adapter))
    assert engine_of(copy) is not engine  # the connection stays behind, the settings travel
    assert [(url, o["api_key"], o["model"]) for _, url, o in connects] == [(URL, KEY, None)] * 2
    assert KEY not in repr(copy)


@pytest.mark.parametrize(("cls", "keyword", "connector"), ADAPTERS)
def test_a_given_remote_engine_is_used_as_it_is(
    cls: Any, keyword: str, connector: str, connects: list[Any]
) -> None:
    remote = RemoteEmbedder() if connector == "server_embedder" else RemoteReranker()
    assert engine_of(cls(engine=remote)) is remote
    assert connects == []


# -- the server engines are shared ----------------------------------------------------------------


def test_adapters_with_the_same_server_and_settings_share_one_engine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from qwen3_vl_rag.engine import _embedder, _shared

    opened: list[tuple[str, dict[str, Any]]] = []

    def from_server(url: str, **options: Any) -> RemoteEmbedder:
        opened.append((url, options))
        return RemoteEmbedder()

    monkeypatch.setattr(_shared, "_loaded", {})
    monkeypatch.setattr(_embedder.Qwen3VLEmbedder, "from_server", from_server)
    monkeypatch.delenv("QWEN3_VL_RAG_API_KEY", raising=False)
    first = Qwen3VLEmbeddings(base_url=URL, api_key=KEY).embedder
    assert Qwen3VLEmbedding(base_url=URL + "/", api_key=KEY).embedder is first  # LlamaIndex too
    assert Qwen3VLEmbeddings(base_url=URL, api_key="other").embedder is not first
    assert Qwen3VLEmbeddings(base_url=URL, api_key=KEY, max_pixels=4096).embedder is not first
    assert len(opened) == 3
    assert KEY not in repr(list(_shared._loaded))  # the cache's keys hold a digest of the key


# -- async methods await a server engine ----------------------------------------------------------


def test_async_embeddings_await_a_server_engine_on_the_event_loop() -> None:
    remote = RemoteEmbedder()
    langchain, llama = Qwen3VLEmbeddings(engine=remote), Qwen3VLEmbedding(engine=remote)

    async def run() -> tuple[Any, ...]:
        loop_thread = threading.current_thread().name
        vectors = (
            await langchain.aembed_documents(["a", "b"]),
            await langchain.aembed_query("q"),
            await llama.aget_text_embedding_batch(["a", "b"]),
            await llama.aget_query_embedding("q"),
        )
        return loop_thread, vectors

    loop_thread, (docs, query, llama_docs, llama_query) = asyncio.run(run())
    assert remote.threads == []  # no synchronous call, so no worker thread ran the model
    assert [m for m, _ in remote.awaited] == [
        "aembed_documents",
        "aembed_queries",
        "aembed_documents",
        "aembed_queries",
    ]
    assert {thread for _, thread in remote.awaited} == {loop_thread}
    assert docs == llama_docs == langchain.embed_documents(["a", "b"])
    assert query == llama_query == langchain.embed_query("q")


def test_an_in_process_engine_runs_in_a_worker_thread_under_its_lock() -> None:
    local = RemoteEmbedder(server=None)  # coroutine methods, but it computes in this process
    adapter = Qwen3VLEmbeddings(engine=local)
    vectors = asyncio.run(adapter.aembed_documents(["a"]))
    assert local.awaited == []
    assert len(local.threads) == 1 and local.threads[0] != threading.current_thread().name
    assert vectors == adapter.embed_documents(["a"])


def test_engines_without_async_methods_keep_the_thread_path() -> None:
    fake = FakeEmbedder()
    adapter = Qwen3VLEmbedding(engine=fake)
    vectors = asyncio.run(adapter.aget_text_embedding_batch(["a", "b"]))
    assert vectors == adapter.get_text_embedding_batch(["a", "b"])
    assert [call.method for call in fake.calls] == ["embed_documents"] * 2


def test_async_chunks_report_the_position_in_the_whole_call() -> None:
    class Failing(RemoteEmbedder):
        async def aembed_documents(self, items: Sequence[Any], **kwargs: Any) -> np.ndarray:
            if "bad" in items:
                raise InputError("cannot be used", item_index=list(items).index("bad"))
            return await super().aembed_documents(items, **kwargs)

    adapter = Qwen3VLEmbeddings(engine=Failing(), batch_size=2)
    with pytest.raises(InputError) as excinfo:
        asyncio.run(adapter.aembed_documents(["a", "b", "c", "bad"]))
    assert excinfo.value.item_index == 3


def test_async_reranking_awaits_a_server_engine() -> None:
    remote = RemoteReranker()
    documents = ["a chart", "a cat", "a table"]
    langchain = Qwen3VLRerank(engine=remote, top_n=None)
    llama = LlamaRerank(engine=remote, top_n=3)
    nodes = [NodeWithScore(node=TextNode(text=t, id_=str(i))) for i, t in enumerate(documents)]

    async def run() -> tuple[Any, ...]:
        return (
            await langchain.arerank(documents, "revenue"),
            await langchain.acompress_documents([Document(page_content=d) for d in documents], "q"),
            await llama.apostprocess_nodes(nodes, query_str="revenue"),
            threading.current_thread().name,
        )

    rows, compressed, llama_nodes, loop_thread = asyncio.run(run())
    assert remote.awaited == [loop_thread] * 3
    assert rows == langchain.rerank(documents, "revenue")
    assert [d.metadata["relevance_score"] for d in compressed] == [
        r["relevance_score"] for r in langchain.rerank(documents, "q")
    ]
    assert [(n.node.node_id, n.score) for n in llama_nodes] == [
        (str(r["index"]), r["relevance_score"]) for r in rows
    ]


def test_async_reranking_scores_an_unusable_image_on_its_text(tmp_path: Path) -> None:
    class Refusing(RemoteReranker):
        async def ascore(self, query: Any, documents: Sequence[Any], **kwargs: Any) -> list[float]:
            for index, document in enumerate(documents):
                if not isinstance(document, str):
                    raise InputError("gone", item_index=index)
            return await super().ascore(query, documents, **kwargs)

    page = tmp_path / "page.png"
    from PIL import Image

    Image.new("RGB", (32, 32), "red").save(page)
    document = Document(page_content="page text", metadata={"image_path": str(page)})
    adapter = Qwen3VLRerank(engine=Refusing(), image_roots=[tmp_path], top_n=None)
    with pytest.warns(UserWarning, match="document 1: .* scored on its text"):
        rows = asyncio.run(adapter.arerank([Document(page_content="x"), document], "q"))
    assert sorted(r["index"] for r in rows) == [0, 1]


# -- the command -----------------------------------------------------------------------------------


def test_the_help_names_the_key_variable_and_there_is_no_key_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from qwen3_vl_rag.cli.main import main

    for command in ("index", "search"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "QWEN3_VL_RAG_API_KEY" in text and "--server URL" in text
        assert "--api-key " not in text.replace("(its --api-key)", "")
    with pytest.raises(SystemExit):
        main(["search", "q", "--api-key", KEY])


@pytest.mark.enable_socket
def test_index_with_an_unreachable_server_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from qwen3_vl_rag.cli.main import main

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    (tmp_path / "notes.txt").write_text("hello")
    code = main(["index", str(tmp_path), "--index", str(tmp_path / "ix"), "--server", url])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 2 and err[0] == f"connecting to {url} ..."
    assert err[1].startswith("error: ServerUnreachableError: ") and url in err[1]
    assert not (tmp_path / "ix").exists()


def test_a_dump_of_a_server_adapter_names_no_model_it_was_not_given(connects: list[Any]) -> None:
    unnamed = Qwen3VLEmbedding(base_url=URL)
    named = Qwen3VLEmbedding(base_url=URL, model_name="/ckpt")
    assert "model_name" not in unnamed.to_dict()
    assert named.to_dict()["model_name"] == "/ckpt"
    assert Qwen3VLEmbedding().to_dict()["model_name"] == "Qwen/Qwen3-VL-Embedding-2B"
    for adapter in (unnamed, named):
        engine_of(Qwen3VLEmbedding.from_dict(adapter.to_dict()))
    assert [options["model"] for _, _, options in connects] == [None, "/ckpt"]
    langchain = Qwen3VLRerank.model_validate(Qwen3VLRerank(base_url=URL).model_dump())
    assert langchain.base_url == URL and "model" not in langchain.model_fields_set


def test_the_command_reads_the_key_from_the_environment_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from qwen3_vl_rag.cli.main import main
    from qwen3_vl_rag.engine import _embedder
    from qwen3_vl_rag.errors import ServerUnreachableError

    seen: list[tuple[str, dict[str, Any]]] = []

    def from_server(url: str, **options: Any) -> Any:
        seen.append((url, options))
        raise ServerUnreachableError(f"cannot reach {url}", url=url)

    monkeypatch.setattr(_embedder.Qwen3VLEmbedder, "from_server", from_server)
    monkeypatch.setenv("QWEN3_VL_RAG_API_KEY", KEY)
    flags = ["--index", str(tmp_path / "ix"), "--server", URL, "--device", "cuda", "--quiet"]
    assert main(["index", str(tmp_path), *flags]) == 2
    assert main(["index", str(tmp_path), *flags, "--model", "/ckpt", "--max-pixels", "4096"]) == 2
    assert seen == [
        (URL, {"model": None, "api_key": KEY, "max_pixels": None}),  # no device: the server's
        (URL, {"model": "/ckpt", "api_key": KEY, "max_pixels": 4096}),
    ]
    assert KEY not in capsys.readouterr().err


def test_the_retrievers_async_path_gives_the_sync_result() -> None:
    from langchain_core.vectorstores import InMemoryVectorStore

    from qwen3_vl_rag.langchain import Qwen3VLRerankRetriever

    texts = ["Q1 churn was 4%.", "Q2 churn was 7%.", "The office moved.", "Q3 churn was 3%."]
    for embedder, reranker in (
        (FakeEmbedder(), FakeReranker()),
        (RemoteEmbedder(), RemoteReranker()),
    ):
        store = InMemoryVectorStore.from_texts(texts, Qwen3VLEmbeddings(engine=embedder))
        retriever = Qwen3VLRerankRetriever(
            vectorstore=store, reranker=Qwen3VLRerank(engine=reranker), k=2, fetch_k=3
        )
        for kwargs in ({}, {"k": 1}):
            got = asyncio.run(retriever.ainvoke("churn", **kwargs))
            expected = retriever.invoke("churn", **kwargs)
            assert [(d.page_content, d.metadata) for d in got] == [
                (d.page_content, d.metadata) for d in expected
            ]
            assert len(got) == kwargs.get("k", 2)
    assert reranker.awaited and embedder.awaited  # the server fakes were awaited
