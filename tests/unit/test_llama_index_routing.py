"""The LlamaIndex adapter on fake engines: routing, instructions, batching, async, events, copies.

The fakes give each (instruction, input) pair its own vector and each (query, document) pair its
own score, so each assertion pins down exactly what reached the engine.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.schema import (
    ImageNode,
    MediaResource,
    Node,
    NodeWithScore,
    QueryBundle,
    TextNode,
)
from PIL import Image
from pydantic import Field

from qwen3_vl_rag.errors import RemoteInputError
from qwen3_vl_rag.llama_index import Qwen3VLEmbedding, Qwen3VLRerank
from qwen3_vl_rag.testing.fakes import DEFAULT_DOCUMENT_INSTRUCTION as DOC
from qwen3_vl_rag.testing.fakes import DEFAULT_QUERY_INSTRUCTION as QUERY
from qwen3_vl_rag.testing.fakes import FakeEmbedder, FakeReranker
from tests.conftest import python_stdout, write_mp4


@pytest.fixture
def fake() -> FakeEmbedder:
    return FakeEmbedder(dimension=64)


@pytest.fixture
def png(tmp_path: Path) -> Path:
    path = tmp_path / "shot.png"
    Image.new("RGB", (40, 30), (20, 200, 40)).save(path)
    return path


def vector(fake: FakeEmbedder, description: str, instruction: str = DOC) -> list[float]:
    return [float(x) for x in fake.vector_of(description, instruction)]


def digest(data: bytes) -> str:
    import hashlib

    return f"image-bytes:{hashlib.sha256(data).hexdigest()[:16]}"


# -- embedding ---------------------------------------------------------------------------------


def test_queries_texts_and_images_get_the_right_instructions(fake: FakeEmbedder, png: Path) -> None:
    embed = Qwen3VLEmbedding(engine=fake)
    assert embed.get_query_embedding("tides") == vector(fake, "text:tides", QUERY)
    assert embed.get_text_embedding("tides") == vector(fake, "text:tides")
    assert embed.get_image_embedding(str(png)) == vector(fake, f"image:{png}")
    assert embed.get_image_query_embedding(str(png)) == vector(fake, f"image:{png}", QUERY)
    custom = Qwen3VLEmbedding(
        engine=fake, query_instruction="Find a chart.", text_instruction="Page."
    )
    assert custom.get_query_embedding("x") == vector(fake, "text:x", "Find a chart.")
    assert custom.get_text_embedding("x") == vector(fake, "text:x", "Page.")


def test_every_image_type_is_accepted(fake: FakeEmbedder, png: Path) -> None:
    embed = Qwen3VLEmbedding(engine=fake)
    data = png.read_bytes()
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    embed.get_image_embedding_batch(
        [str(png), png, uri, io.BytesIO(data)]  # type: ignore[list-item]
    )
    embed._get_image_embeddings([data, Image.open(png)])  # type: ignore[list-item]
    described = [d for call in fake.calls for d in call.inputs]
    assert described[:4] == [f"image:{png}", f"image:{png}", digest(data), digest(data)]
    assert described[4] == digest(data)
    assert described[5].startswith("image-pixels:")
    with pytest.raises(RemoteInputError, match="allow_remote=True"):
        embed.get_image_embedding("https://example.com/a.png")


def test_as_a_transformation_image_and_clip_nodes_are_embedded_as_visuals(
    fake: FakeEmbedder, png: Path, tmp_path: Path
) -> None:
    video = write_mp4(tmp_path / "talk.mp4")
    data = png.read_bytes()
    nodes = [
        ImageNode(image_path=str(png), text=""),
        ImageNode(image=base64.b64encode(data).decode(), text="a caption"),
        Node(image_resource=MediaResource(path=png)),
        Node(image_resource=MediaResource(data=data)),
        TextNode(
            text="clip",
            metadata={"video_path": str(video), "start_seconds": 0.0, "end_seconds": 1.0},
        ),
        TextNode(text="plain text"),
        TextNode(text="already embedded", embedding=[0.5] * 64),
    ]
    embed = Qwen3VLEmbedding(engine=fake, image_roots=[tmp_path])
    result = embed(nodes)
    assert result is nodes
    text_call, image_call = fake.calls
    assert text_call.inputs == ["text:plain text"]
    assert image_call.inputs == [
        f"image:{png}",
        digest(data),
        f"image:{png}",
        digest(data),
        f"video:{video}#0.0,1.0",
    ]
    assert nodes[0].embedding == vector(fake, f"image:{png}")
    assert nodes[5].embedding == vector(fake, "text:plain text")
    assert nodes[6].embedding == [0.5] * 64  # left alone


async def test_acall_matches_call(fake: FakeEmbedder, png: Path) -> None:
    embed = Qwen3VLEmbedding(engine=fake, image_roots=[png])
    first = [ImageNode(image_path=str(png)), TextNode(text="t")]
    second = [ImageNode(image_path=str(png)), TextNode(text="t")]
    embed(first)
    await embed.acall(second)
    assert [n.embedding for n in first] == [n.embedding for n in second]


def test_text_naming_a_visual_is_embedded_as_that_visual(
    fake: FakeEmbedder, png: Path, tmp_path: Path
) -> None:
    video = write_mp4(tmp_path / "talk.mp4")
    embed = Qwen3VLEmbedding(engine=fake, image_roots=[tmp_path])
    embed.get_text_embedding_batch(
        [f"image_path: {png}", f"video_clip: {video}#t=0,1\n\nVideo clip: talk.mp4", str(png), "x"]
    )
    assert fake.calls[0].inputs == [
        f"image:{png}",
        f"video:{video}#0.0,1.0",
        f"image:{png}",
        "text:x",
    ]
    fake.calls.clear()
    never = Qwen3VLEmbedding(engine=fake, image_inputs="never", image_roots=[tmp_path])
    never.get_text_embedding(f"image_path: {png}")
    assert fake.calls[0].inputs == [f"text:image_path: {png}"]


def test_batches_follow_the_batch_sizes_in_order(fake: FakeEmbedder, png: Path) -> None:
    embed = Qwen3VLEmbedding(engine=fake, embed_batch_size=4, image_batch_size=2)
    texts = [f"t{i}" for i in range(10)]
    vectors = embed.get_text_embedding_batch(texts)
    assert vectors == [vector(fake, f"text:{t}") for t in texts]
    fake.calls.clear()
    embed._get_image_embeddings([str(png)] * 5)
    assert [len(call.inputs) for call in fake.calls] == [2, 2, 1]


async def test_async_batches_keep_their_order_and_never_run_at_once(fake: FakeEmbedder) -> None:
    active, most = [0], [0]
    original = fake.embed_documents

    def tracked(items: Any, **kwargs: Any) -> np.ndarray:
        active[0] += 1
        most[0] = max(most[0], active[0])
        time.sleep(0.01)
        active[0] -= 1
        return original(items, **kwargs)

    fake.embed_documents = tracked  # type: ignore[method-assign]
    embed = Qwen3VLEmbedding(engine=fake, embed_batch_size=2)
    texts = [f"t{i}" for i in range(9)]
    vectors = await embed.aget_text_embedding_batch(texts)  # LlamaIndex gathers all batches
    assert vectors == [vector(fake, f"text:{t}") for t in texts]
    assert most[0] == 1
    assert await embed.aget_query_embedding("q") == vector(fake, "text:q", QUERY)


def test_to_dict_from_dict_round_trip_without_the_model(fake: FakeEmbedder) -> None:
    embed = Qwen3VLEmbedding(engine=fake, model_name="some/checkpoint", dimensions=32)
    data = embed.to_dict()
    assert data["class_name"] == "Qwen3VLEmbedding"
    assert "engine" not in data and "_engine" not in data
    again = Qwen3VLEmbedding.from_dict(data)
    assert (again.model_name, again.dimensions) == ("some/checkpoint", 32)
    assert again._engine.loaded is None  # loaded lazily, on first use
    assert Qwen3VLEmbedding.from_json(embed.to_json()).model_name == "some/checkpoint"


def test_secrets_stay_out_of_dumps_and_pickles_leave_the_model_behind(fake: FakeEmbedder) -> None:
    import pickle

    embed = Qwen3VLEmbedding(engine=fake, model_kwargs={"token": "hf_secret", "revision": "main"})
    assert embed.to_dict()["model_kwargs"] == {"revision": "main"}
    assert "hf_secret" not in embed.to_json()
    reranker = Qwen3VLRerank(engine=FakeReranker(), model_kwargs={"token": "hf_secret"})
    assert "hf_secret" not in reranker.to_json()
    copy = pickle.loads(pickle.dumps(embed))  # what IngestionPipeline(num_workers>1) does
    assert copy._engine.loaded is None and copy.model_kwargs["revision"] == "main"
    assert embed.embedder is fake  # the original keeps its model


def test_image_documents_are_embedded_as_images(fake: FakeEmbedder, png: Path) -> None:
    from llama_index.core.schema import ImageDocument

    data = png.read_bytes()
    documents = [
        ImageDocument(image_path=str(png)),
        ImageDocument(image=base64.b64encode(data).decode()),
    ]
    Qwen3VLEmbedding(engine=fake, image_roots=[png.parent])(documents)
    assert fake.calls[-1].inputs == [f"image:{png}", digest(data)]


def test_dimensions_are_passed_and_validated(fake: FakeEmbedder) -> None:
    assert len(Qwen3VLEmbedding(engine=fake, dimensions=32).get_text_embedding("x")) == 32
    with pytest.raises(ValueError, match="greater than or equal to 32"):
        Qwen3VLEmbedding(dimensions=8)


# -- reranking -----------------------------------------------------------------------------------


class Recorder(BaseEventHandler):
    events: list[str] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "Recorder"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.events.append(type(event).__name__)


def test_rerank_scores_best_first_emits_events_and_keeps_originals(png: Path) -> None:
    fake = FakeReranker()
    nodes = [
        NodeWithScore(node=TextNode(text=f"n{i}", id_=f"id{i}"), score=0.1 * i) for i in range(5)
    ]
    recorder = Recorder()
    get_dispatcher().add_event_handler(recorder)
    try:
        ranked = Qwen3VLRerank(engine=fake, top_n=3, keep_retrieval_score=True).postprocess_nodes(
            nodes, query_str="q"
        )
    finally:
        get_dispatcher().event_handlers.remove(recorder)
    expected = sorted(range(5), key=lambda i: -fake.score_of("text:q", f"text:n{i}"))[:3]
    assert [r.node.node_id for r in ranked] == [f"id{i}" for i in expected]
    assert [r.score for r in ranked] == [fake.score_of("text:q", f"text:n{i}") for i in expected]
    assert all(type(r.score) is float for r in ranked)
    assert [r.node.metadata["retrieval_score"] for r in ranked] == [0.1 * i for i in expected]
    assert all("retrieval_score" not in n.node.metadata for n in nodes)  # originals untouched
    assert "ReRankStartEvent" in recorder.events and "ReRankEndEvent" in recorder.events
    assert len(fake.calls) == 1


def test_rerank_reads_each_node_as_what_it_is(png: Path, tmp_path: Path) -> None:
    fake = FakeReranker()
    data = png.read_bytes()
    nodes = [
        ImageNode(image_path=str(png), text="caption"),
        Node(image_resource=MediaResource(data=data)),
        TextNode(text="a page", metadata={"image_path": str(png)}),
        TextNode(text="colpali style", metadata={"file_path": str(png)}),
        TextNode(text="report text", metadata={"file_path": str(tmp_path / "r.pdf")}),
    ]
    Qwen3VLRerank(engine=fake, top_n=5, image_roots=[tmp_path]).postprocess_nodes(
        [NodeWithScore(node=n) for n in nodes], QueryBundle("q", image_path=str(png))
    )
    (call,) = fake.calls
    assert call.query == f"text:q+image:{png}"
    assert call.inputs == [
        f"image:{png}",
        digest(data),
        f"image:{png}",
        f"image:{png}",
        "text:file_path: " + str(tmp_path / "r.pdf") + "\n\nreport text",
    ]


def test_rerank_reports_to_callback_handlers() -> None:
    from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler

    handler = LlamaDebugHandler()
    reranker = Qwen3VLRerank(engine=FakeReranker(), callback_manager=CallbackManager([handler]))
    reranker.postprocess_nodes([NodeWithScore(node=TextNode(text="x"))], query_str="q")
    (pair,) = handler.get_event_pairs(CBEventType.RERANKING)
    assert pair[0].payload is not None and pair[1].payload is not None
    assert len(pair[1].payload["nodes"]) == 1


def test_rerank_contract_on_edge_cases() -> None:
    reranker = Qwen3VLRerank(engine=FakeReranker())
    with pytest.raises(ValueError, match="Missing query bundle"):
        reranker.postprocess_nodes([NodeWithScore(node=TextNode(text="x"))])
    assert reranker.postprocess_nodes([], query_str="q") == []
    assert Qwen3VLRerank.class_name() == "Qwen3VLRerank"
    assert reranker.to_dict()["class_name"] == "Qwen3VLRerank"


async def test_async_rerank_matches_sync() -> None:
    fake = FakeReranker()
    nodes = [NodeWithScore(node=TextNode(text=f"n{i}", id_=f"id{i}")) for i in range(4)]
    reranker = Qwen3VLRerank(engine=fake, top_n=2)
    sync = reranker.postprocess_nodes(nodes, query_str="q")
    async_ = await reranker.apostprocess_nodes(nodes, query_str="q")
    assert [(n.node.node_id, n.score) for n in sync] == [(n.node.node_id, n.score) for n in async_]


# -- packaging -------------------------------------------------------------------------------------


def test_importing_the_adapter_loads_no_torch() -> None:
    code = (
        "import sys; import qwen3_vl_rag.llama_index; "
        "print(sorted(m for m in ('torch', 'transformers', 'chromadb', 'pymupdf', 'av', "
        "'langchain_core') if m in sys.modules))"
    )
    stdout = python_stdout(code)
    assert stdout.strip() == "[]"


def test_a_missing_extra_gives_the_install_command() -> None:
    code = (
        "import sys; sys.modules['llama_index.core'] = None\n"
        "try:\n    import qwen3_vl_rag.llama_index\n"
        "except ImportError as err:\n    print(type(err).__name__, err)\n"
    )
    stdout = python_stdout(code)
    assert "MissingDependencyError" in stdout
    assert 'pip install "qwen3-vl-rag[llamaindex]"' in stdout


def test_the_public_surface() -> None:
    import qwen3_vl_rag.llama_index as adapter

    assert sorted(adapter.__all__) == [
        "DEFAULT_EMBEDDING_MODEL",
        "DEFAULT_RERANKER_MODEL",
        "ImageReader",
        "PDFPageImageReader",
        "Qwen3VLEmbedding",
        "Qwen3VLRerank",
        "VideoClipReader",
    ]


async def test_async_embedding_does_not_block_the_event_loop(fake: FakeEmbedder, png: Path) -> None:
    import threading

    release = threading.Event()
    original = fake.embed_documents

    def slow(items: Any, **kwargs: Any) -> np.ndarray:
        release.wait(5)
        return original(items, **kwargs)

    fake.embed_documents = slow  # type: ignore[method-assign]
    embed = Qwen3VLEmbedding(engine=fake)
    task = asyncio.create_task(embed.aget_image_embedding_batch([str(png)]))
    await asyncio.sleep(0.05)
    assert not task.done()  # the loop ran this coroutine while the model "worked"
    release.set()
    assert await task == [vector(fake, f"image:{png}")]
