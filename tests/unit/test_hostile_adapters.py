"""Hostile strings against both adapters, on fake engines (issue 15, items 10-12).

* Item 10: a document's text or metadata must not make the adapters read a local file the user
  did not place in reach (absolute paths, ``..``, ``file://``, symlinks out of a root).
* Item 11: a ``data:image/`` URI is an image or a typed error, never text; it is checked like
  ``media.load`` (format allowlist, byte cap before decoding).
* Item 12: a reranker call with one unusable image scores that document on its text, warns
  with its index, and says the same thing whether the file is missing, not an image or not
  allowed.

The fakes describe what reached the engine: ``text:...`` for a string (as the engine reads a
top-level string), ``image:<path>`` for a file, ``image-bytes:<hash>`` for decoded bytes.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tracemalloc
import warnings
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document
from llama_index.core.schema import ImageNode, NodeWithScore, QueryBundle, TextNode
from PIL import Image

from qwen3_vl_rag.errors import (
    ImageDecodeError,
    InputError,
    InputTooLargeError,
    UnsupportedInputError,
)
from qwen3_vl_rag.langchain import (
    ImageLoader,
    Qwen3VLEmbeddings,
    Qwen3VLRerank,
    documents_to_content_blocks,
)
from qwen3_vl_rag.llama_index import ImageReader, Qwen3VLEmbedding
from qwen3_vl_rag.llama_index import Qwen3VLRerank as LlamaRerank
from qwen3_vl_rag.media.references import UNUSABLE_VISUAL, ImageRoots, visual_input
from qwen3_vl_rag.testing.fakes import FakeEmbedder, FakeReranker


def png_bytes(color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), color).save(buffer, "PNG")
    return buffer.getvalue()


def digest(data: bytes) -> str:
    return f"image-bytes:{hashlib.sha256(data).hexdigest()[:16]}"


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """An allowed folder with a page, and a secret image outside it (plus a link to it)."""
    allowed = tmp_path / "allowed"
    outside = tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    page = allowed / "page.png"
    page.write_bytes(png_bytes((10, 120, 200)))
    secret = outside / "secret.png"
    secret.write_bytes(png_bytes((1, 2, 3)))
    link = allowed / "link.png"
    link.symlink_to(secret)
    return {"allowed": allowed, "outside": outside, "page": page, "secret": secret, "link": link}


def hostile_names(layout: dict[str, Path], cwd: Path) -> list[str]:
    """Every way a document's text named the secret image in the hostile run."""
    secret, allowed = layout["secret"], layout["allowed"]
    return [
        str(secret),
        f"file://{secret}",
        f"{allowed}/../outside/secret.png",  # climbs out of an allowed folder
        str(layout["link"]),  # a symlink inside an allowed folder, leading out
        f"file://{layout['link']}",
        str(Path("..") / secret.relative_to(cwd.parent)),  # relative, from the working folder
    ]


@pytest.fixture
def in_allowed(layout: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(layout["allowed"])
    return layout["allowed"]


# -- item 10: strings in documents do not pick local files --------------------------------------


def test_langchain_embeddings_read_no_file_a_document_names_outside_the_roots(
    layout: dict[str, Path], in_allowed: Path
) -> None:
    names = hostile_names(layout, in_allowed)
    fake = FakeEmbedder()
    Qwen3VLEmbeddings(engine=fake, image_roots=[layout["allowed"]]).embed_documents(names)
    assert fake.calls[-1].inputs == [f"text:{name}" for name in names]
    Qwen3VLEmbeddings(engine=fake).embed_query(str(layout["secret"]))
    assert fake.calls[-1].inputs == [f"text:{layout['secret']}"]
    Qwen3VLEmbeddings(engine=fake).embed_documents([str(layout["page"])])  # no root given
    assert fake.calls[-1].inputs == [f"text:{layout['page']}"]


def test_an_allowed_root_is_read_by_its_real_path(layout: dict[str, Path]) -> None:
    (layout["allowed"] / "sub").mkdir()
    fake = FakeEmbedder()
    embeddings = Qwen3VLEmbeddings(engine=fake, image_roots=[layout["allowed"]])
    dotted = f"{layout['allowed']}/./sub/../page.png"
    embeddings.embed_documents([str(layout["page"]), f"file://{layout['page']}", dotted])
    assert fake.calls[-1].inputs == [f"image:{layout['page']}"] * 3
    roots = ImageRoots.trusting([layout["allowed"]])
    assert visual_input(str(layout["link"]), roots=roots) is None
    assert roots.resolve(str(layout["allowed"])) is None  # a folder is not a file


def test_a_fifo_or_a_device_in_an_allowed_root_is_text_and_never_waited_on(
    layout: dict[str, Path],
) -> None:
    fifo = layout["allowed"] / "pipe.png"
    os.mkfifo(fifo)
    fake = FakeEmbedder()
    embeddings = Qwen3VLEmbeddings(engine=fake, image_roots=[layout["allowed"], "/dev"])
    embeddings.embed_documents([str(fifo), "/dev/zero", f"{fifo}#t=0,1"])
    assert fake.calls[-1].inputs == [f"text:{fifo}", "text:/dev/zero", f"text:{fifo}#t=0,1"]


def test_our_loaders_folders_are_trusted_so_their_documents_embed_as_images(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "shots"
    folder.mkdir()
    (folder / "a.png").write_bytes(png_bytes())
    fake = FakeEmbedder()
    embeddings = Qwen3VLEmbeddings(engine=fake)
    assert embeddings.embed_documents([str(folder / "a.png")]) is not None
    assert fake.calls[-1].inputs == [f"text:{folder / 'a.png'}"]  # not yet loaded by us
    documents = ImageLoader(folder).load()
    embeddings.embed_documents([d.page_content for d in documents])
    assert fake.calls[-1].inputs == [f"image:{folder / 'a.png'}"]
    other = tmp_path / "other.png"
    other.write_bytes(png_bytes())
    embeddings.embed_documents([str(other)])
    assert fake.calls[-1].inputs == [f"text:{other}"]  # a sibling of the folder is not in it


def test_content_blocks_send_no_pixels_of_a_file_outside_the_roots(
    layout: dict[str, Path],
) -> None:
    secret = str(layout["secret"])
    documents = [
        Document(page_content=secret),
        Document(page_content="a caption", metadata={"image_path": secret, "page_text": "p"}),
        Document(page_content=str(layout["page"])),
    ]
    with pytest.warns(UserWarning, match="document 1: its image or video cannot be used"):
        blocks = documents_to_content_blocks(documents, image_roots=[layout["allowed"]])
    assert [b["type"] for b in blocks] == ["text", "text", "text", "image"]
    assert blocks[0]["text"] == secret  # the document's own text, nothing read
    assert blocks[1]["text"] == "p"


def test_llama_index_embedding_reads_no_file_a_text_or_node_names_outside_the_roots(
    layout: dict[str, Path], in_allowed: Path
) -> None:
    names = hostile_names(layout, in_allowed)
    fake = FakeEmbedder()
    embed = Qwen3VLEmbedding(engine=fake, image_roots=[layout["allowed"]])
    embed.get_text_embedding_batch([*names, f"image_path: {layout['secret']}"])
    assert fake.calls[-1].inputs == [f"text:{n}" for n in names] + [
        f"text:image_path: {layout['secret']}"
    ]
    embed.get_query_embedding(str(layout["secret"]))
    assert fake.calls[-1].inputs == [f"text:{layout['secret']}"]
    for node in (
        ImageNode(image_path=str(layout["secret"])),
        ImageNode(image_path=str(layout["link"])),
        TextNode(text="clip", metadata={"video_path": str(layout["secret"])}),
    ):
        with pytest.raises(UnsupportedInputError) as excinfo:
            embed([node])
        assert str(layout["outside"]) not in str(excinfo.value)
    assert embed([ImageNode(image_path=str(layout["page"]))])[0].embedding is not None


def test_image_roots_survive_serialization(tmp_path: Path) -> None:
    import pickle

    for cls in (Qwen3VLEmbedding, LlamaRerank):
        adapter = cls(image_roots=[tmp_path])
        assert cls.from_json(adapter.to_json()).image_roots == [tmp_path]
        assert pickle.loads(pickle.dumps(adapter)).image_roots == [tmp_path]
    for model in (Qwen3VLEmbeddings, Qwen3VLRerank):
        dumped = model(image_roots=[tmp_path]).model_dump_json()
        assert model.model_validate_json(dumped).image_roots == [tmp_path]


def test_llama_index_readers_register_what_they_read(tmp_path: Path) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    (folder / "b.png").write_bytes(png_bytes())
    fake = FakeEmbedder()
    embed = Qwen3VLEmbedding(engine=fake)
    with pytest.raises(UnsupportedInputError):
        embed([ImageNode(image_path=str(folder / "b.png"))])
    documents = ImageReader().load_data(folder)
    embed(documents)
    assert fake.calls[-1].inputs == [f"image:{folder / 'b.png'}"]


def test_rerankers_read_no_file_a_document_names_outside_the_roots(
    layout: dict[str, Path], in_allowed: Path
) -> None:
    names = hostile_names(layout, in_allowed)
    fake = FakeReranker()
    Qwen3VLRerank(engine=fake, top_n=None).rerank(names, str(layout["secret"]))
    assert fake.calls[-1].query == f"text:{layout['secret']}"
    assert fake.calls[-1].inputs == [f"text:{name}" for name in names]
    nodes = [NodeWithScore(node=TextNode(text="t", metadata={"file_path": n})) for n in names]
    LlamaRerank(engine=fake, top_n=len(nodes)).postprocess_nodes(nodes, QueryBundle("q"))
    assert not any(d.startswith("image") for d in fake.calls[-1].inputs)


# -- item 11: data URIs are images or clear errors -------------------------------------------------


def test_data_uris_are_embedded_as_images_by_every_entry_point() -> None:
    data = png_bytes()
    uri = data_uri(data)
    fake = FakeEmbedder()
    langchain = Qwen3VLEmbeddings(engine=fake)
    langchain.embed_documents([uri])
    langchain.embed_image([uri])
    langchain.embed_query(uri)
    llama = Qwen3VLEmbedding(engine=fake)
    llama.get_text_embedding(uri)
    llama.get_query_embedding(uri)
    llama.get_image_embedding(uri)
    assert [call.inputs for call in fake.calls] == [[digest(data)]] * 6
    wrapped = "data:image/png;base64," + "\n".join(
        base64.b64encode(data).decode()[i : i + 76] for i in range(0, 400, 76)
    )
    langchain.embed_documents([wrapped])  # line-wrapped base64 is still that image
    assert fake.calls[-1].inputs == [digest(data)]


@pytest.mark.parametrize(
    ("uri", "error"),
    [
        ("data:image/png;base64,iVBORw0KGgo%%%%not-base64", ImageDecodeError),
        (data_uri(png_bytes()[:40]), ImageDecodeError),  # a PNG cut inside its header
        (
            data_uri(b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
            UnsupportedInputError,
        ),
        ("data:image/png,rawbytes", ImageDecodeError),  # not base64
    ],
)
def test_a_broken_data_uri_is_a_typed_error_never_text(uri: str, error: type[Exception]) -> None:
    fake = FakeEmbedder()
    for call in (
        Qwen3VLEmbeddings(engine=fake).embed_documents,
        Qwen3VLEmbeddings(engine=fake).embed_image,
        Qwen3VLEmbedding(engine=fake).get_text_embedding_batch,
    ):
        with pytest.raises(InputError) as excinfo:
            call([uri])
        assert isinstance(excinfo.value, error)
    assert fake.calls == []


def test_a_data_uri_in_a_format_media_load_refuses_is_refused() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(buffer, "TGA")
    for mime in ("image/x-tga", "image/png"):  # the declared type does not matter
        uri = data_uri(buffer.getvalue(), mime)
        with pytest.raises(UnsupportedInputError, match="supported format"):
            Qwen3VLEmbeddings(engine=FakeEmbedder()).embed_documents([uri])
        with pytest.raises(UnsupportedInputError, match="supported format"):
            Qwen3VLEmbedding(engine=FakeEmbedder()).get_text_embedding(uri)


def test_a_data_uri_over_the_pixel_budget_is_refused_from_its_header() -> None:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)  # 10 Gpx, 60 bytes
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")
    with pytest.raises(InputTooLargeError):
        Qwen3VLEmbeddings(engine=FakeEmbedder()).embed_documents([data_uri(bomb)])


def test_a_66_mib_data_uri_is_refused_before_it_is_decoded() -> None:
    uri = "data:image/png;base64,iVBORw0KGgo" + "A" * (66 * 1024 * 1024)
    fake = FakeEmbedder()
    calls = (
        Qwen3VLEmbeddings(engine=fake).embed_documents,
        Qwen3VLEmbeddings(engine=fake).embed_image,
        Qwen3VLEmbedding(engine=fake).get_text_embedding_batch,
    )
    tracemalloc.start()
    try:
        for call in calls:
            with pytest.raises(InputTooLargeError, match="inline image"):
                call([uri])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024  # not one copy of the 66 MiB string, let alone its tokens
    assert fake.calls == []


# -- item 12: an unusable image in a rerank call ------------------------------------------------


def unusable_documents(layout: dict[str, Path]) -> list[Document]:
    not_an_image = layout["allowed"] / "notes.png"
    not_an_image.write_text("just words")
    return [
        Document(page_content="fine text"),
        Document(page_content="t1", metadata={"image_path": str(layout["allowed"] / "gone.png")}),
        Document(page_content="t2", metadata={"image_path": str(not_an_image)}),
        Document(page_content="t3", metadata={"image_path": str(layout["secret"])}),
        Document(page_content="t4", metadata={"image_path": str(layout["page"])}),
        Document(page_content="data:image/png;base64,AAAA", metadata={"page_text": "t5"}),
    ]


def caught(fn: Any, *args: Any) -> tuple[Any, list[str]]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = fn(*args)
    return result, [str(w.message) for w in seen]


def test_langchain_rerank_scores_an_unusable_image_on_its_text_and_warns_alike(
    layout: dict[str, Path],
) -> None:
    fake = FakeReranker()
    reranker = Qwen3VLRerank(engine=fake, top_n=None, image_roots=[layout["allowed"]])
    ranked, messages = caught(reranker.compress_documents, unusable_documents(layout), "q")
    assert len(ranked) == 6
    assert fake.calls[-1].inputs == [
        "text:fine text",
        "text:t1",
        "text:t2",
        "text:t3",
        f"image:{layout['page']}",
        "text:t5",
    ]
    assert messages == [
        f"document {i}: {UNUSABLE_VISUAL}; it is scored on its text." for i in (1, 2, 3, 5)
    ]
    assert not any(str(layout["allowed"]) in m or str(layout["outside"]) in m for m in messages)


def test_llama_index_rerank_scores_an_unusable_image_on_its_text_and_warns_alike(
    layout: dict[str, Path],
) -> None:
    not_an_image = layout["allowed"] / "notes.png"
    not_an_image.write_text("just words")
    nodes = [
        TextNode(text="fine text"),
        ImageNode(image_path=str(layout["allowed"] / "gone.png"), text="t1"),
        ImageNode(image_path=str(not_an_image), text="t2"),
        ImageNode(image_path=str(layout["secret"]), text="t3"),
        ImageNode(image_path=str(layout["page"]), text="t4"),
        TextNode(text="t5", metadata={"video_path": str(layout["secret"])}),
    ]
    fake = FakeReranker()
    reranker = LlamaRerank(engine=fake, top_n=6, image_roots=[layout["allowed"]])
    ranked, messages = caught(
        reranker.postprocess_nodes, [NodeWithScore(node=n) for n in nodes], QueryBundle("q")
    )
    assert len(ranked) == 6
    assert fake.calls[-1].inputs[0] == "text:fine text"
    assert fake.calls[-1].inputs[4] == f"image:{layout['page']}"
    assert fake.calls[-1].inputs[1:4] == ["text:t1", "text:t2", "text:t3"]
    assert fake.calls[-1].inputs[5].startswith("text:") and "t5" in fake.calls[-1].inputs[5]
    assert messages == [
        f"document {i}: {UNUSABLE_VISUAL}; it is scored on its text." for i in (1, 2, 3, 5)
    ]


def test_an_image_the_engine_cannot_decode_falls_back_to_text_too(
    layout: dict[str, Path],
) -> None:
    class Picky(FakeReranker):
        def score(self, query: Any, documents: Any, **kwargs: Any) -> list[float]:
            for index, document in enumerate(documents):
                if not isinstance(document, str):
                    raise ImageDecodeError("no such image file.", item_index=index, source="x")
            return super().score(query, documents, **kwargs)

    fake = Picky()
    documents = [Document(page_content="p", metadata={"image_path": str(layout["page"])})]
    reranker = Qwen3VLRerank(engine=fake, image_roots=[layout["allowed"]])
    ranked, messages = caught(reranker.compress_documents, documents, "q")
    assert fake.calls[-1].inputs == ["text:p"]
    assert messages == [f"document 0: {UNUSABLE_VISUAL}; it is scored on its text."]
    nodes = [NodeWithScore(node=ImageNode(image_path=str(layout["page"]), text="p"))]
    ranked, messages = caught(
        LlamaRerank(engine=fake, image_roots=[layout["allowed"]]).postprocess_nodes,
        nodes,
        QueryBundle("q"),
    )
    assert len(ranked) == 1 and messages[0].startswith("document 0:")
    with pytest.raises(InputError):  # a broken query is the caller's to fix
        Qwen3VLRerank(engine=FakeReranker()).rerank(["a"], "data:image/png;base64,AAAA")
