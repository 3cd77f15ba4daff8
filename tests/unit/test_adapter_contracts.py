"""What the four adapter classes promise alike: keywords, secrets, engines, paths, captions.

The adapters run on the fake engines here; loading is observed by replacing the process's shared
loaders, so no weights are read.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document
from PIL import Image
from pydantic import ValidationError

from qwen3_vl_rag.langchain import (
    ImageLoader,
    Qwen3VLEmbeddings,
    Qwen3VLRerank,
    documents_to_content_blocks,
)
from qwen3_vl_rag.llama_index import ImageReader, Qwen3VLEmbedding
from qwen3_vl_rag.llama_index import Qwen3VLRerank as LlamaRerank
from qwen3_vl_rag.testing.fakes import FakeEmbedder, FakeReranker
from tests.conftest import write_mp4

#: Each adapter class, the keyword that names its checkpoint (its framework's convention), the
#: spelling users bring from the other framework, and the shared loader it calls.
ADAPTERS = [
    pytest.param(Qwen3VLEmbeddings, "model", "model_name", "shared_embedder", id="langchain-emb"),
    pytest.param(Qwen3VLRerank, "model", "model_name", "shared_reranker", id="langchain-rerank"),
    pytest.param(Qwen3VLEmbedding, "model_name", "model", "shared_embedder", id="llama-emb"),
    pytest.param(LlamaRerank, "model", "model_name", "shared_reranker", id="llama-rerank"),
]

TOKEN = "hf_a1b2c3d4e5f6secret"


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, dict[str, Any]]]:
    """Every load the adapters ask for: (loader, checkpoint, options); fakes are returned."""
    from qwen3_vl_rag import engine as shared

    seen: list[tuple[str, str, dict[str, Any]]] = []

    def embedder(model: str, **options: Any) -> FakeEmbedder:
        seen.append(("shared_embedder", model, options))
        return FakeEmbedder()

    def reranker(model: str, **options: Any) -> FakeReranker:
        seen.append(("shared_reranker", model, options))
        return FakeReranker()

    monkeypatch.setattr(shared, "shared_embedder", embedder)
    monkeypatch.setattr(shared, "shared_reranker", reranker)
    return seen


def engine_of(adapter: Any) -> Any:
    return adapter.embedder if hasattr(adapter, "embedder") else adapter.reranker


# -- keywords --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("cls", "right", "wrong", "loader"), ADAPTERS)
def test_the_other_frameworks_spelling_of_the_model_is_refused_with_the_right_one(
    cls: Any, right: str, wrong: str, loader: str, loads: list[Any]
) -> None:
    with pytest.raises(ValidationError, match=f"`{right}=`") as excinfo:
        cls(**{wrong: "/x"})
    assert f"`{wrong}=`" in str(excinfo.value)
    assert loads == []  # nothing was loaded, least of all the default Hub model


@pytest.mark.parametrize(("cls", "right", "wrong", "loader"), ADAPTERS)
def test_an_unknown_keyword_raises(cls: Any, right: str, wrong: str, loader: str) -> None:
    with pytest.raises(ValidationError, match="colour"):
        cls(colour="red")


@pytest.mark.parametrize(("cls", "right", "wrong", "loader"), ADAPTERS)
def test_the_right_keyword_loads_that_checkpoint(
    cls: Any, right: str, wrong: str, loader: str, loads: list[Any]
) -> None:
    adapter = cls(**{right: "/x"}, device="cpu")
    assert getattr(adapter, right) == "/x"
    engine_of(adapter)
    assert [(name, model) for name, model, _ in loads] == [(loader, "/x")]


def test_the_llama_index_base_fields_still_work() -> None:
    from llama_index.core.callbacks import CallbackManager

    callbacks = CallbackManager()
    embed = Qwen3VLEmbedding(embed_batch_size=4, num_workers=2, callback_manager=callbacks)
    assert (embed.embed_batch_size, embed.num_workers) == (4, 2)
    assert embed.callback_manager is callbacks
    embed.callback_manager = CallbackManager()  # Settings.embed_model assigns it
    assert LlamaRerank(callback_manager=callbacks).callback_manager is callbacks
    again = Qwen3VLEmbedding.from_dict(Qwen3VLEmbedding(model_name="/x").to_dict())
    assert again.model_name == "/x"
    assert LlamaRerank.from_dict(LlamaRerank(model="/y").to_dict()).model == "/y"


# -- secrets ---------------------------------------------------------------------------------------


def views(adapter: Any) -> list[str]:
    """Every text form the framework offers of an adapter."""
    shown = [repr(adapter), str(adapter), repr(adapter.model_kwargs), str(adapter.model_dump())]
    shown.append(adapter.model_dump_json())
    for method in ("dict", "to_dict", "to_json", "to_payload"):
        if hasattr(adapter, method):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # pydantic's .dict()
                shown.append(str(getattr(adapter, method)()))
    return shown


@pytest.mark.parametrize(("cls", "right", "wrong", "loader"), ADAPTERS)
def test_the_hub_token_is_never_shown_but_reaches_the_loader(
    cls: Any, right: str, wrong: str, loader: str, loads: list[Any]
) -> None:
    adapter = cls(model_kwargs={"token": TOKEN, "revision": "main"})
    for text in views(adapter):
        assert TOKEN not in text
    assert "revision" in repr(adapter)  # the other options stay visible
    engine_of(adapter)
    ((_, _, options),) = loads
    assert options["token"] == TOKEN and options["revision"] == "main"


@pytest.mark.parametrize(("cls", "right", "wrong", "loader"), ADAPTERS)
def test_validation_errors_do_not_print_the_token(
    cls: Any, right: str, wrong: str, loader: str
) -> None:
    for bad in ({wrong: "/x"}, {"colour": "red"}, {"max_pixels": 0}):
        with pytest.raises(ValidationError) as excinfo:
            cls(**bad, model_kwargs={"token": TOKEN})
        assert TOKEN not in str(excinfo.value)


@pytest.mark.parametrize(("cls", "right", "wrong", "loader"), ADAPTERS)
def test_a_token_set_after_construction_is_hidden_too(
    cls: Any, right: str, wrong: str, loader: str, loads: list[Any]
) -> None:
    adapter = cls()
    adapter.model_kwargs = {"token": TOKEN}
    assert TOKEN not in repr(adapter)
    engine_of(adapter)
    assert loads[0][2]["token"] == TOKEN


# -- engine protocols ------------------------------------------------------------------------------


def test_the_fakes_and_the_engines_implement_the_protocols() -> None:
    from qwen3_vl_rag.engine._embedder import Qwen3VLEmbedder
    from qwen3_vl_rag.engine._reranker import Qwen3VLReranker
    from qwen3_vl_rag.protocols import EmbeddingEngine, RerankingEngine

    assert isinstance(FakeEmbedder(), EmbeddingEngine)
    assert isinstance(FakeReranker(), RerankingEngine)
    assert not isinstance(FakeReranker(), EmbeddingEngine)
    assert not isinstance(FakeEmbedder(), RerankingEngine)
    for method in ("embed_queries", "embed_documents"):
        assert callable(getattr(Qwen3VLEmbedder, method))
    assert callable(Qwen3VLReranker.score)


def test_an_engine_of_the_wrong_kind_is_refused() -> None:
    from qwen3_vl_rag.errors import ConfigurationError

    with pytest.raises(ValidationError):
        Qwen3VLEmbeddings(engine=FakeReranker())
    with pytest.raises(ValidationError):
        Qwen3VLRerank(engine=FakeEmbedder())
    with pytest.raises(ConfigurationError, match="EmbeddingEngine, got FakeReranker"):
        Qwen3VLEmbedding(engine=FakeReranker())
    with pytest.raises(ConfigurationError, match="RerankingEngine, got FakeEmbedder"):
        LlamaRerank(engine=FakeEmbedder())


def test_a_remote_policy_is_typed() -> None:
    from qwen3_vl_rag.media.remote import RemotePolicy

    policy = RemotePolicy()
    for cls in (Qwen3VLEmbeddings, Qwen3VLRerank):
        assert cls(remote_policy=policy).remote_policy is policy
        with pytest.raises(ValidationError):
            cls(remote_policy={"timeout": 1})


def test_the_protocols_module_imports_no_framework_and_no_torch() -> None:
    code = (
        "import sys, qwen3_vl_rag.protocols, qwen3_vl_rag.defaults; "
        "print(sorted(m for m in ('torch', 'langchain_core', 'llama_index', 'pydantic') "
        "if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_default_models_are_defined_once() -> None:
    import qwen3_vl_rag.langchain as lc
    import qwen3_vl_rag.llama_index as li
    from qwen3_vl_rag import defaults
    from qwen3_vl_rag.cli import main

    assert defaults.DEFAULT_EMBEDDING_MODEL == "Qwen/Qwen3-VL-Embedding-2B"
    assert defaults.DEFAULT_RERANKER_MODEL == "Qwen/Qwen3-VL-Reranker-2B"
    for module in (lc, li):
        assert module.DEFAULT_EMBEDDING_MODEL is defaults.DEFAULT_EMBEDDING_MODEL
        assert module.DEFAULT_RERANKER_MODEL is defaults.DEFAULT_RERANKER_MODEL
    assert main.DEFAULT_MODEL is defaults.DEFAULT_EMBEDDING_MODEL
    assert main.DEFAULT_RERANKER is defaults.DEFAULT_RERANKER_MODEL
    assert Qwen3VLEmbedding().model_name == Qwen3VLEmbeddings().model == lc.DEFAULT_EMBEDDING_MODEL
    assert LlamaRerank().model == Qwen3VLRerank().model == lc.DEFAULT_RERANKER_MODEL


def test_the_fakes_use_the_engines_default_instructions() -> None:
    from qwen3_vl_rag.engine import _prompts as prompts

    fake = FakeEmbedder()
    assert fake.query_instruction is prompts.DEFAULT_QUERY_INSTRUCTION
    assert fake.document_instruction is prompts.DEFAULT_DOCUMENT_INSTRUCTION


# -- pickling on fakes -----------------------------------------------------------------------------


@pytest.mark.parametrize(("cls", "right", "wrong", "loader"), ADAPTERS)
def test_a_used_adapter_pickles_without_its_engine(
    cls: Any, right: str, wrong: str, loader: str, loads: list[Any]
) -> None:
    adapter = cls(**{right: "/x"}, model_kwargs={"token": TOKEN})
    engine = engine_of(adapter)
    engine.weights = b"\0" * 1_000_000  # stands for the model: it must not travel
    data = pickle.dumps(adapter)
    assert len(data) < 20_000
    copy = pickle.loads(data)
    assert engine_of(adapter) is engine  # the original keeps its model
    assert getattr(copy, right) == "/x"
    assert engine_of(copy) is not engine  # loaded again, lazily, with the token
    assert [(model, options["token"]) for _, model, options in loads] == [("/x", TOKEN)] * 2


@pytest.mark.parametrize(("cls", "right", "wrong", "loader"), ADAPTERS)
def test_a_deep_copy_shares_the_model(
    cls: Any, right: str, wrong: str, loader: str, loads: list[Any]
) -> None:
    import copy

    adapter = cls(**{right: "/x"})
    engine = engine_of(adapter)
    assert engine_of(copy.deepcopy(adapter)) is engine
    assert len(loads) == 1


# -- paths and captions ----------------------------------------------------------------------------


def test_relative_image_folders_are_stored_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "shots").mkdir()
    Image.new("RGB", (32, 24), (10, 200, 10)).save(tmp_path / "shots" / "a.png")
    monkeypatch.chdir(tmp_path)
    (loaded,) = ImageLoader("shots").load()
    (read,) = ImageReader().load_data("shots")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for path in (loaded.page_content, loaded.metadata["image_path"], read.image_path):
        assert Path(path).is_absolute()
        assert Path(path) == (tmp_path / "shots" / "a.png").resolve()
        Image.open(path).verify()  # opens from another working directory


def test_relative_page_image_dirs_and_videos_are_stored_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qwen3_vl_rag.langchain import PDFPageImageLoader, VideoClipLoader
    from qwen3_vl_rag.llama_index import PDFPageImageReader, VideoClipReader

    (tmp_path / "videos").mkdir()
    write_mp4(tmp_path / "videos" / "talk.mp4")
    monkeypatch.chdir(tmp_path)
    loaders: list[Any] = [
        PDFPageImageLoader("r.pdf", image_dir="pages"),
        PDFPageImageReader(image_dir="pages"),
    ]
    for loader in loaders:
        assert loader.image_dir == tmp_path.resolve() / "pages"
    clips = VideoClipLoader("videos", segment_seconds=1.0).load()
    nodes = VideoClipReader(segment_seconds=1.0).load_data("videos")
    video = tmp_path.resolve() / "videos" / "talk.mp4"
    assert clips and nodes
    assert {clip.page_content.split("#")[0] for clip in clips} == {str(video)}
    assert {node.metadata["video_path"] for node in nodes} == {str(video)}


def test_image_documents_are_captioned_by_file_name_like_pages(tmp_path: Path) -> None:
    png = tmp_path / "deep" / "folder" / "shot.png"
    png.parent.mkdir(parents=True)
    Image.new("RGB", (20, 20), (0, 0, 200)).save(png)
    documents = [
        Document(page_content=str(png), metadata={"source": str(png), "image_path": str(png)}),
        Document(
            page_content=str(png),
            metadata={"source": str(tmp_path / "r.pdf"), "image_path": str(png), "page_label": "3"},
        ),
    ]
    blocks = documents_to_content_blocks(documents, image_roots=[tmp_path])
    captions = [block["text"] for block in blocks if block["type"] == "text"]
    assert captions == ["shot.png", "r.pdf, page 3"]
    assert not any(os.fspath(tmp_path) in caption for caption in captions)
