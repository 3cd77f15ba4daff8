"""The LangChain adapter on fake engines: routing, instructions, batching, async, errors, copies.

The fakes give each (instruction, input) pair its own vector and each (query, document) pair its
own score, so every assertion below pins down exactly what reached the engine.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.documents import Document
from PIL import Image

from qwen3_vl_rag.errors import (
    ConfigurationError,
    InputError,
    RemoteInputError,
    UnsupportedInputError,
)
from qwen3_vl_rag.inputs import Video
from qwen3_vl_rag.langchain import Qwen3VLEmbeddings, Qwen3VLRerank, documents_to_content_blocks
from qwen3_vl_rag.media.references import (
    ImageRoots,
    clip_reference,
    decode_base64_image,
    visual_input,
)
from qwen3_vl_rag.testing.fakes import (
    DEFAULT_DOCUMENT_INSTRUCTION as DOC,
)
from qwen3_vl_rag.testing.fakes import (
    DEFAULT_QUERY_INSTRUCTION as QUERY,
)
from qwen3_vl_rag.testing.fakes import FakeEmbedder, FakeReranker
from tests.conftest import python_stdout, write_mp4


@pytest.fixture
def fake() -> FakeEmbedder:
    return FakeEmbedder(dimension=16)


@pytest.fixture
def png(tmp_path: Path) -> Path:
    path = tmp_path / "chart.png"
    Image.new("RGB", (40, 30), (200, 30, 30)).save(path)
    return path


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def as_list(vector: np.ndarray) -> list[float]:
    return [float(x) for x in vector]


# -- references ------------------------------------------------------------------------------------


def test_strings_name_images_and_clips_by_content_not_by_name(tmp_path: Path, png: Path) -> None:
    roots = ImageRoots.trusting([tmp_path])
    assert visual_input("a bar chart of revenue", roots=roots) is None
    assert visual_input(str(png), roots=roots) == png
    assert visual_input(f"file://{png}", roots=roots) == png
    disguised = tmp_path / "notes.txt"
    disguised.write_bytes(png.read_bytes())
    assert visual_input(str(disguised), roots=roots) == disguised  # a PNG whatever its name
    text_file = tmp_path / "image.png"
    text_file.write_text("not an image at all")
    assert visual_input(str(text_file), roots=roots) is None
    assert visual_input(str(tmp_path / "missing.png"), roots=roots) is None
    assert visual_input(f"{png}\nsecond line", roots=roots) is None
    assert visual_input(data_uri(png)) == png.read_bytes()  # checked, decoded image bytes

    video = write_mp4(tmp_path / "talk.mp4")
    whole = visual_input(str(video), roots=roots)
    assert isinstance(whole, Video)
    assert (whole.start, whole.end) == (None, None)
    reference = clip_reference(video, 1.0, 2.5)
    assert reference == f"{video}#t=1,2.5"
    clip = visual_input(reference, roots=roots)
    assert isinstance(clip, Video)
    assert (Path(clip.source), clip.start, clip.end) == (video, 1.0, 2.5)
    assert visual_input(f"{png}#t=1,2", roots=roots) is None  # an image has no clips


def test_base64_images_are_recognised_and_nothing_else_is(png: Path) -> None:
    encoded = base64.b64encode(png.read_bytes()).decode()
    assert decode_base64_image(encoded) == png.read_bytes()
    assert decode_base64_image(base64.b64encode(b"%PDF-1.7 " * 50).decode()) is None
    assert decode_base64_image("plain text that is not base64 at all") is None
    assert decode_base64_image("QUJD") is None  # too short to be an image


# -- embeddings ----------------------------------------------------------------------------------


def test_queries_and_documents_get_their_own_instructions(fake: FakeEmbedder) -> None:
    embeddings = Qwen3VLEmbeddings(engine=fake)
    documents = embeddings.embed_documents(["alpha", "beta"])
    query = embeddings.embed_query("alpha")
    assert documents == [
        as_list(fake.vector_of("text:alpha", DOC)),
        as_list(fake.vector_of("text:beta", DOC)),
    ]
    assert query == as_list(fake.vector_of("text:alpha", QUERY))
    assert query != documents[0]
    assert [call.method for call in fake.calls] == ["embed_documents", "embed_queries"]
    assert all(type(x) is float for x in query)  # Python floats, as langchain-tests asserts


def test_custom_instructions_and_dimensions_reach_the_engine() -> None:
    fake = FakeEmbedder(dimension=64)
    embeddings = Qwen3VLEmbeddings(
        engine=fake,
        query_instruction="Find a chart that answers the question.",
        document_instruction="Represent this page.",
        dimensions=32,
    )
    (document,) = embeddings.embed_documents(["x"])
    query = embeddings.embed_query("x")
    assert len(document) == len(query) == 32
    assert document == as_list(fake.vector_of("text:x", "Represent this page.", 32))
    assert query == as_list(fake.vector_of("text:x", "Find a chart that answers the question.", 32))
    assert fake.calls[0].kwargs == {"instruction": "Represent this page.", "dim": 32}


def test_auto_mode_embeds_image_paths_data_uris_and_clips_as_visuals(
    fake: FakeEmbedder, png: Path, tmp_path: Path
) -> None:
    video = write_mp4(tmp_path / "talk.mp4")
    clip = clip_reference(video, 0.0, 1.0)
    embeddings = Qwen3VLEmbeddings(engine=fake, image_roots=[tmp_path])
    embeddings.embed_documents([str(png), data_uri(png), clip, "just text", str(tmp_path)])
    assert fake.calls[0].inputs == [
        f"image:{png}",
        f"image-bytes:{__import__('hashlib').sha256(png.read_bytes()).hexdigest()[:16]}",
        f"video:{video}#0.0,1.0",
        "text:just text",
        f"text:{tmp_path}",  # a folder is not an image
    ]
    embeddings.embed_query(str(png))  # an image path as the query: an image query
    assert fake.calls[1].method == "embed_queries"
    assert fake.calls[1].inputs == [f"image:{png}"]


def test_never_mode_keeps_every_string_as_text(
    fake: FakeEmbedder, png: Path, tmp_path: Path
) -> None:
    embeddings = Qwen3VLEmbeddings(engine=fake, image_inputs="never", image_roots=[tmp_path])
    embeddings.embed_documents([str(png)])
    assert fake.calls[0].inputs == [f"text:{png}"]


def test_embed_image_takes_paths_and_data_uris_as_documents(fake: FakeEmbedder, png: Path) -> None:
    embeddings = Qwen3VLEmbeddings(engine=fake)
    vectors = embeddings.embed_image(uris=[str(png), data_uri(png)])
    assert vectors[0] == as_list(fake.vector_of(f"image:{png}", DOC))
    assert fake.calls[0].method == "embed_documents"
    query = embeddings.embed_image_query(str(png))
    assert query == as_list(fake.vector_of(f"image:{png}", QUERY))


def test_embed_image_refuses_what_is_not_an_image(fake: FakeEmbedder, tmp_path: Path) -> None:
    embeddings = Qwen3VLEmbeddings(engine=fake)
    with pytest.raises(UnsupportedInputError, match="no such file"):
        embeddings.embed_image(uris=[str(tmp_path / "missing.png")])
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello")
    with pytest.raises(UnsupportedInputError, match="not an image"):
        embeddings.embed_image(uris=[str(text_file)])
    with pytest.raises(RemoteInputError, match="allow_remote=True"):
        embeddings.embed_image(uris=["https://example.com/chart.png"])
    assert fake.calls == []  # refused before the model was asked


def test_embed_image_fetches_urls_only_through_the_guarded_fetcher(
    fake: FakeEmbedder, png: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qwen3_vl_rag.media import remote

    fetched: list[str] = []

    def fake_fetch(url: str, policy: Any = None) -> remote.Fetched:
        fetched.append(url)
        return remote.Fetched(url, png.read_bytes(), "image/png")

    monkeypatch.setattr(remote, "fetch", fake_fetch)
    embeddings = Qwen3VLEmbeddings(engine=fake, allow_remote=True)
    embeddings.embed_image(uris=["https://example.com/chart.png"])
    assert fetched == ["https://example.com/chart.png"]
    assert fake.calls[0].inputs[0].startswith("image-bytes:")


def test_inputs_go_to_the_engine_in_batches_in_order(fake: FakeEmbedder) -> None:
    embeddings = Qwen3VLEmbeddings(engine=fake, batch_size=3)
    texts = [f"t{i}" for i in range(8)]
    vectors = embeddings.embed_documents(texts)
    assert [len(call.inputs) for call in fake.calls] == [3, 3, 2]
    assert vectors == [as_list(fake.vector_of(f"text:{t}", DOC)) for t in texts]
    assert embeddings.embed_documents([]) == []
    assert len(fake.calls) == 3  # nothing asked for nothing


def test_an_input_error_names_the_position_in_the_callers_list(fake: FakeEmbedder) -> None:
    def failing(items: Any, **kwargs: Any) -> np.ndarray:
        raise InputError("bad item", item_index=1)

    fake.embed_documents = failing  # type: ignore[method-assign]
    embeddings = Qwen3VLEmbeddings(engine=fake, batch_size=2)
    with pytest.raises(InputError) as excinfo:
        embeddings.embed_documents(["a", "b", "c", "d"])
    assert excinfo.value.item_index == 1
    fake2 = FakeEmbedder()
    calls = []

    def second_batch_fails(items: Any, **kwargs: Any) -> np.ndarray:
        calls.append(len(items))
        if len(calls) == 2:
            raise InputError("bad item", item_index=1)
        return np.ones((len(items), 16), dtype=np.float32)

    fake2.embed_documents = second_batch_fails  # type: ignore[method-assign]
    with pytest.raises(InputError) as excinfo:
        Qwen3VLEmbeddings(engine=fake2, batch_size=2).embed_documents(["a", "b", "c", "d"])
    assert excinfo.value.item_index == 3


async def test_async_twins_do_not_block_the_event_loop(fake: FakeEmbedder) -> None:
    release = threading.Event()
    original = fake.embed_documents

    def slow(items: Any, **kwargs: Any) -> np.ndarray:
        release.wait(5)
        return original(items, **kwargs)

    fake.embed_documents = slow  # type: ignore[method-assign]
    embeddings = Qwen3VLEmbeddings(engine=fake)
    task = asyncio.create_task(embeddings.aembed_documents(["a", "b"]))
    await asyncio.sleep(0.05)
    assert not task.done()  # the loop ran this coroutine while the model "worked"
    release.set()
    vectors = await task
    assert vectors == [as_list(fake.vector_of(f"text:{t}", DOC)) for t in "ab"]
    assert await embeddings.aembed_query("a") == as_list(fake.vector_of("text:a", QUERY))


async def test_concurrent_calls_into_one_engine_are_serialized(fake: FakeEmbedder) -> None:
    active, most = [0], [0]
    original = fake.embed_documents

    def tracked(items: Any, **kwargs: Any) -> np.ndarray:
        active[0] += 1
        most[0] = max(most[0], active[0])
        time.sleep(0.02)
        active[0] -= 1
        return original(items, **kwargs)

    fake.embed_documents = tracked  # type: ignore[method-assign]
    embeddings = Qwen3VLEmbeddings(engine=fake)
    results = await asyncio.gather(*(embeddings.aembed_documents([f"t{i}"]) for i in range(6)))
    assert most[0] == 1
    assert [r[0] for r in results] == [as_list(fake.vector_of(f"text:t{i}", DOC)) for i in range(6)]


def test_fields_are_validated_and_serializable(fake: FakeEmbedder) -> None:
    with pytest.raises(ValueError, match="extra"):
        Qwen3VLEmbeddings(modle="typo")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="greater than or equal"):
        Qwen3VLEmbeddings(dimensions=8)  # Matryoshka starts at 32
    embeddings = Qwen3VLEmbeddings(engine=fake, dimensions=64, model_kwargs={"token": "hf_x"})
    dumped = embeddings.model_dump()
    assert dumped["model_kwargs"] == {}  # a Hub token never lands in a dump
    assert "engine" not in dumped
    assert dumped["model"] == "Qwen/Qwen3-VL-Embedding-2B"
    assert dumped["dimensions"] == 64


def test_no_model_is_loaded_until_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    from qwen3_vl_rag import engine as shared

    loaded: list[tuple[str, dict[str, Any]]] = []

    def fake_shared(model: str, **options: Any) -> FakeEmbedder:
        loaded.append((model, options))
        return FakeEmbedder()

    monkeypatch.setattr(shared, "shared_embedder", fake_shared)
    embeddings = Qwen3VLEmbeddings(model="some/checkpoint", device="cpu", max_pixels=602112)
    assert loaded == []
    embeddings.embed_query("x")
    embeddings.embed_query("y")
    assert loaded == [("some/checkpoint", {"device": "cpu", "dtype": "auto", "max_pixels": 602112})]


def test_adapters_with_the_same_settings_share_one_loaded_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from qwen3_vl_rag.engine import _shared as shared
    from qwen3_vl_rag.engine._embedder import Qwen3VLEmbedder

    loads: list[tuple[str, dict[str, Any]]] = []

    def load(cls: Any, model: str, **options: Any) -> FakeEmbedder:
        loads.append((model, options))
        return FakeEmbedder()

    monkeypatch.setattr(shared, "_loaded", {})
    monkeypatch.setattr(Qwen3VLEmbedder, "from_pretrained", classmethod(load))
    first = Qwen3VLEmbeddings(model="some/checkpoint", device="cpu")
    second = Qwen3VLEmbeddings(model="some/checkpoint", device="cpu")
    other = Qwen3VLEmbeddings(model="some/checkpoint", device="cpu", max_pixels=602112)
    assert first.embedder is second.embedder
    assert other.embedder is not first.embedder
    assert [options.get("max_pixels") for _, options in loads] == [None, 602112]


def test_the_public_surface() -> None:
    import qwen3_vl_rag.langchain as adapter

    assert sorted(adapter.__all__) == [
        "DEFAULT_EMBEDDING_MODEL",
        "DEFAULT_RERANKER_MODEL",
        "ImageLoader",
        "PDFPageImageLoader",
        "Qwen3VLEmbeddings",
        "Qwen3VLRerank",
        "Qwen3VLRerankRetriever",
        "VideoClipLoader",
        "default_image_dir",
        "documents_to_content_blocks",
    ]


# -- reranker --------------------------------------------------------------------------------------


def test_compress_documents_returns_scored_copies_best_first_keeping_ids() -> None:
    fake = FakeReranker()
    documents = [
        Document(page_content=f"doc {i}", metadata={"n": i}, id=f"id-{i}") for i in range(5)
    ]
    reranker = Qwen3VLRerank(engine=fake, top_n=3)
    kept = reranker.compress_documents(documents, "query")
    expected = sorted(
        ((fake.score_of("text:query", f"text:doc {i}"), i) for i in range(5)), key=lambda p: -p[0]
    )[:3]
    assert [d.id for d in kept] == [f"id-{i}" for _, i in expected]
    assert [d.metadata["relevance_score"] for d in kept] == [s for s, _ in expected]
    assert all(type(d.metadata["relevance_score"]) is float for d in kept)
    assert all("relevance_score" not in d.metadata for d in documents)  # originals untouched
    assert len(fake.calls) == 1  # one batched call for all pairs


def test_rerank_returns_indices_and_respects_top_n() -> None:
    fake = FakeReranker()
    reranker = Qwen3VLRerank(engine=fake, top_n=2)
    rows = reranker.rerank(["a", "b", "c"], "q")
    assert len(rows) == 2
    assert reranker.rerank(["a", "b", "c"], "q", top_n=None)[:2] == rows
    assert len(reranker.rerank(["a", "b", "c"], "q", top_n=None)) == 3
    assert reranker.rerank([], "q") == []
    assert fake.calls[-1].inputs == ["text:a", "text:b", "text:c"]
    with pytest.raises(ConfigurationError):
        reranker.rerank(["a"], "q", top_n=-2)


def test_each_document_is_read_as_what_it_is(png: Path, tmp_path: Path) -> None:
    fake = FakeReranker()
    video = write_mp4(tmp_path / "talk.mp4")
    encoded = base64.b64encode(png.read_bytes()).decode()
    documents = [
        Document(page_content="page text", metadata={"image_path": str(png)}),
        Document(page_content=encoded),  # as Chroma.add_images stores an image
        Document(page_content=str(png)),
        Document(page_content=clip_reference(video, 0, 1)),
        Document(page_content="plain prose"),
    ]
    Qwen3VLRerank(engine=fake, top_n=None, image_roots=[tmp_path]).compress_documents(
        documents, "q"
    )
    assert fake.calls[0].inputs == [
        f"image:{png}",
        f"image-bytes:{__import__('hashlib').sha256(png.read_bytes()).hexdigest()[:16]}",
        f"image:{png}",
        f"video:{video}#0.0,1.0",
        "text:plain prose",
    ]
    fake.calls.clear()
    reranker = Qwen3VLRerank(engine=fake, with_text=True, image_roots=[tmp_path])
    reranker.compress_documents(documents[:1], str(png))
    assert fake.calls[0].query == f"image:{png}"  # an image path as the query: an image query
    assert fake.calls[0].inputs == [f"text:page text+image:{png}"]


async def test_acompress_documents_matches_the_sync_result() -> None:
    fake = FakeReranker()
    documents = [Document(page_content=f"d{i}") for i in range(4)]
    reranker = Qwen3VLRerank(engine=fake, top_n=2)
    assert await reranker.acompress_documents(documents, "q") == reranker.compress_documents(
        documents, "q"
    )


# -- message blocks --------------------------------------------------------------------------------


def test_documents_become_image_and_text_blocks(png: Path, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    Image.new("RGB", (3000, 2000), (10, 120, 200)).save(big)
    documents = [
        Document(
            page_content=str(big),
            metadata={"image_path": str(big), "source": "r.pdf", "page_label": "3"},
        ),
        Document(page_content=base64.b64encode(png.read_bytes()).decode()),
        Document(page_content="a text chunk"),
    ]
    blocks = documents_to_content_blocks(documents, max_side=900, image_roots=[tmp_path])
    kinds = [block["type"] for block in blocks]
    assert kinds == ["text", "image", "text", "image", "text"]
    assert blocks[0]["text"] == "r.pdf, page 3"
    first = Image.open(__import__("io").BytesIO(base64.b64decode(blocks[1]["base64"])))
    assert first.size == (900, 600)
    assert blocks[1]["mime_type"] == "image/jpeg"
    assert blocks[3]["mime_type"] == "image/png"
    assert blocks[4]["text"] == "a text chunk"
    bare = documents_to_content_blocks(documents[1:2], with_captions=False)
    assert [block["type"] for block in bare] == ["image"]


# -- packaging -------------------------------------------------------------------------------------


def test_importing_the_adapter_loads_no_torch() -> None:
    code = (
        "import sys; import qwen3_vl_rag.langchain; "
        "print(sorted(m for m in ('torch', 'transformers', 'chromadb', 'pymupdf', 'av') "
        "if m in sys.modules))"
    )
    stdout = python_stdout(code)
    assert stdout.strip() == "[]"


def test_a_missing_extra_gives_the_install_command() -> None:
    code = (
        "import sys; sys.modules['langchain_core'] = None\n"
        "try:\n    import qwen3_vl_rag.langchain\n"
        "except ImportError as err:\n    print(type(err).__name__, err)\n"
    )
    stdout = python_stdout(code)
    assert "MissingDependencyError" in stdout
    assert 'pip install "qwen3-vl-rag[langchain]"' in stdout
