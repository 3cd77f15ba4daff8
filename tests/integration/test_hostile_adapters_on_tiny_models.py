"""Hostile strings against both adapters on the tiny real models (issue 15, items 10-12).

The unit tests pin the routing on fakes; these check what the real engine makes of it: a
``data:image/`` URI handed to the adapters is embedded as the image (the engine itself reads a
plain string as text), and a rerank call survives an image that passes every check but cannot
be decoded.
"""

from __future__ import annotations

import base64
import warnings
from pathlib import Path

import numpy as np
import pytest
from langchain_core.documents import Document
from llama_index.core.schema import ImageNode, NodeWithScore, QueryBundle
from PIL import Image

from qwen3_vl_rag import Qwen3VLEmbedder, Qwen3VLReranker
from qwen3_vl_rag.langchain import Qwen3VLEmbeddings, Qwen3VLRerank
from qwen3_vl_rag.llama_index import Qwen3VLEmbedding
from qwen3_vl_rag.llama_index import Qwen3VLRerank as LlamaRerank

TOL = 1e-4


@pytest.fixture
def png(tmp_path: Path) -> Path:
    path = tmp_path / "chart.png"
    Image.new("RGB", (64, 48), (200, 40, 40)).save(path)
    return path


def test_a_data_uri_is_embedded_as_its_image_not_as_text(
    embedder: Qwen3VLEmbedder, png: Path
) -> None:
    uri = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
    image = embedder.embed_documents([png])[0]
    as_text = embedder.embed_documents([uri])[0]  # the engine reads a plain string as text
    assert not np.allclose(image, as_text, atol=TOL)
    for vector in (
        Qwen3VLEmbeddings(engine=embedder).embed_documents([uri])[0],
        Qwen3VLEmbeddings(engine=embedder).embed_image([uri])[0],
        Qwen3VLEmbedding(engine=embedder).get_text_embedding(uri),
    ):
        np.testing.assert_allclose(vector, image, atol=TOL)


def test_rerank_survives_an_image_that_cannot_be_decoded(
    reranker: Qwen3VLReranker, png: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(png.read_bytes()[:80])  # a valid header, then nothing
    text = "a red chart"
    documents = [
        Document(page_content=text, metadata={"image_path": str(broken)}),
        Document(page_content="x", metadata={"image_path": str(png)}),
    ]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        rows = Qwen3VLRerank(engine=reranker, top_n=None, image_roots=[tmp_path]).rerank(
            documents, "red"
        )
        nodes = [NodeWithScore(node=ImageNode(image_path=str(broken), text=text))]
        (node,) = LlamaRerank(engine=reranker, top_n=1, image_roots=[tmp_path]).postprocess_nodes(
            nodes, QueryBundle("red")
        )
    by_index = {row["index"]: row["relevance_score"] for row in rows}
    expected = reranker.score("red", [text, png])
    assert by_index[0] == pytest.approx(expected[0], abs=TOL)  # scored on its text
    assert by_index[1] == pytest.approx(expected[1], abs=TOL)
    assert node.score == pytest.approx(expected[0], abs=TOL)
    messages = [str(w.message) for w in seen if issubclass(w.category, UserWarning)]
    assert [m.split(":")[0] for m in messages] == ["document 0", "document 0"]
    assert not any(str(tmp_path) in m for m in messages)
