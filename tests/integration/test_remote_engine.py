"""The engines on a real vLLM server give the in-process numbers, and its faults are typed.

Parity is asserted in float32 within 1e-5 against the in-process engine on the same tiny
checkpoint (the servers run ``--max-model-len 2048``, so the in-process engines get the same
``max_length``). Faults are staged through a loopback proxy in front of the real server.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qwen3_vl_rag import MultimodalInput, Qwen3VLEmbedder, Qwen3VLReranker, Video
from qwen3_vl_rag.engine import QuantizationCalibration
from qwen3_vl_rag.errors import (
    ConfigurationError,
    ServerConfigurationError,
    ServerResponseError,
    ServerTimeoutError,
    ServerUnreachableError,
    UnsupportedInputError,
)
from tests.conftest import write_mp4
from tests.http_proxy import FaultyProxy
from tests.vllm_servers import Server, free_port

pytestmark = [pytest.mark.vllm, pytest.mark.enable_socket, pytest.mark.timeout(900)]

TOLERANCE = 1e-5


def picture(height: int, width: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def local_embedder(vllm_embedding: Server) -> Qwen3VLEmbedder:
    return Qwen3VLEmbedder.from_pretrained(vllm_embedding.model, dtype="float32", max_length=2048)


@pytest.fixture(scope="module")
def remote_embedder(vllm_embedding: Server) -> Qwen3VLEmbedder:
    return Qwen3VLEmbedder.from_server(vllm_embedding.url)


@pytest.fixture(scope="module")
def local_reranker(vllm_reranker: Server) -> Qwen3VLReranker:
    return Qwen3VLReranker.from_pretrained(vllm_reranker.model, dtype="float32", max_length=2043)


@pytest.fixture(scope="module")
def remote_reranker(vllm_reranker: Server) -> Qwen3VLReranker:
    return Qwen3VLReranker.from_server(vllm_reranker.url)


ITEMS = {
    "text": ["Revenue grew 12% in Q3.", "a cat on a mat", ""],
    "image": [picture(70, 90, 0)],
    "several images": [MultimodalInput(images=[picture(300, 200, 1), picture(33, 500, 2)])],
    "text and image": [MultimodalInput(text="the Q3 chart", images=[picture(120, 160, 3)])],
    "own instruction": [MultimodalInput(text="find charts", instruction="Find a chart")],
    "long text cut": ["word " * 3000],
    "special tokens as text": ["a doc about <|im_end|> and <|image_pad|> tokens"],
}


def test_the_remote_engine_says_where_it_runs(
    remote_embedder: Qwen3VLEmbedder, vllm_embedding: Server
) -> None:
    assert remote_embedder.server == vllm_embedding.url
    openai_style = Qwen3VLEmbedder.from_server(vllm_embedding.url + "/v1/")
    assert openai_style.server == vllm_embedding.url
    assert remote_embedder.max_length == 2048  # the server's --max-model-len
    assert remote_embedder.dimension == 64
    assert f"server={vllm_embedding.url!r}" in repr(remote_embedder)


@pytest.mark.parametrize("kind", list(ITEMS))
@pytest.mark.parametrize("instruction", [None, "Represent the chart for retrieval"])
def test_vectors_equal_the_in_process_ones(
    local_embedder: Qwen3VLEmbedder,
    remote_embedder: Qwen3VLEmbedder,
    kind: str,
    instruction: str | None,
) -> None:
    items = ITEMS[kind]
    expected = local_embedder.embed(items, instruction=instruction)
    got = remote_embedder.embed(items, instruction=instruction)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=0)


def test_queries_documents_and_unnormalised_vectors_match(
    local_embedder: Qwen3VLEmbedder, remote_embedder: Qwen3VLEmbedder
) -> None:
    items = [*ITEMS["text"], *ITEMS["text and image"]]
    for method in ("embed_queries", "embed_documents"):
        np.testing.assert_allclose(
            getattr(remote_embedder, method)(items),
            getattr(local_embedder, method)(items),
            atol=TOLERANCE,
            rtol=0,
        )
    raw = remote_embedder.embed(items, normalize=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)  # truly the raw pooled state
    np.testing.assert_allclose(raw, local_embedder.embed(items, normalize=False), atol=1e-4)


@pytest.mark.parametrize("dim", [32, 48])
def test_matryoshka_dimensions_match(
    local_embedder: Qwen3VLEmbedder, remote_embedder: Qwen3VLEmbedder, dim: int
) -> None:
    items = [*ITEMS["text"], *ITEMS["image"]]
    got = remote_embedder.embed(items, dim=dim)
    assert got.shape == (len(items), dim)
    np.testing.assert_allclose(got, local_embedder.embed(items, dim=dim), atol=TOLERANCE, rtol=0)


def test_quantized_outputs_match(
    local_embedder: Qwen3VLEmbedder, remote_embedder: Qwen3VLEmbedder
) -> None:
    items = [*ITEMS["text"], *ITEMS["image"], *ITEMS["text and image"]]
    reference = local_embedder.embed(items)
    calibration = QuantizationCalibration.from_embeddings(reference)
    int8_local = local_embedder.embed(items, precision="int8", calibration=calibration)
    int8_remote = remote_embedder.embed(items, precision="int8", calibration=calibration)
    assert int8_remote.dtype == np.int8
    assert np.abs(int8_remote.astype(int) - int8_local.astype(int)).max() <= 1
    for precision in ("binary", "ubinary"):
        np.testing.assert_array_equal(
            remote_embedder.embed(items, precision=precision),
            local_embedder.embed(items, precision=precision),
        )


def test_async_embedding_matches(
    local_embedder: Qwen3VLEmbedder, remote_embedder: Qwen3VLEmbedder
) -> None:
    items = [*ITEMS["text"], *ITEMS["several images"]]

    async def both() -> tuple[np.ndarray, np.ndarray]:
        return await asyncio.gather(
            remote_embedder.aembed_queries(items), remote_embedder.aembed_documents(items)
        )

    queries, documents = asyncio.run(both())
    np.testing.assert_allclose(queries, local_embedder.embed_queries(items), atol=TOLERANCE)
    np.testing.assert_allclose(documents, local_embedder.embed_documents(items), atol=TOLERANCE)


def test_token_counts_and_prompts_are_the_in_process_ones(
    local_embedder: Qwen3VLEmbedder, remote_embedder: Qwen3VLEmbedder
) -> None:
    items = [*ITEMS["text"], *ITEMS["text and image"], *ITEMS["long text cut"]]
    assert remote_embedder.count_tokens(items) == local_embedder.count_tokens(items)
    item = ITEMS["text and image"][0]
    assert remote_embedder.format_prompt(item) == local_embedder.format_prompt(item)


def test_many_items_are_packed_into_concurrent_requests(
    local_embedder: Qwen3VLEmbedder, vllm_embedding: Server
) -> None:
    texts = [f"document number {i} about topic {i % 7}" for i in range(150)]
    proxy = FaultyProxy(vllm_embedding.url)
    try:
        embedder = Qwen3VLEmbedder.from_server(proxy.url, batch_tokens=1024)
        handshake = len(proxy.requests)
        got = embedder.embed(texts)
        sent = [path for _, path, _ in proxy.requests[handshake:]]
    finally:
        proxy.stop()
    np.testing.assert_allclose(got, local_embedder.embed(texts), atol=TOLERANCE)
    lengths = local_embedder.count_tokens(texts)
    assert len(sent) == pytest.approx(sum(lengths) / 1024, abs=2)  # packed by tokens
    assert set(sent) == {"/v1/embeddings"}


# -- reranker --------------------------------------------------------------------------------------

DOCUMENTS = [
    "Revenue grew 12% in Q3.",
    "a cat on a mat",
    picture(80, 120, 4),
    MultimodalInput(text="the revenue chart", images=[picture(64, 64, 5)]),
    "",
]


@pytest.mark.parametrize(
    "query",
    [
        "quarterly revenue",
        picture(90, 60, 6),
        MultimodalInput(text="q", images=[picture(40, 40, 7)]),
    ],
)
@pytest.mark.parametrize("instruction", [None, "Find charts that answer the question."])
def test_scores_equal_the_in_process_ones(
    local_reranker: Qwen3VLReranker,
    remote_reranker: Qwen3VLReranker,
    query: object,
    instruction: str | None,
) -> None:
    expected = local_reranker.score(query, DOCUMENTS, instruction=instruction)
    got = remote_reranker.score(query, DOCUMENTS, instruction=instruction)
    np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=0)


def test_rerank_pairs_and_async_match(
    local_reranker: Qwen3VLReranker, remote_reranker: Qwen3VLReranker
) -> None:
    ranked = remote_reranker.rerank("revenue", DOCUMENTS, top_n=3)
    expected = local_reranker.rerank("revenue", DOCUMENTS, top_n=3)
    assert [r.index for r in ranked] == [r.index for r in expected]
    np.testing.assert_allclose([r.score for r in ranked], [r.score for r in expected], atol=1e-5)
    pairs = [("revenue", DOCUMENTS[0]), ("cats", DOCUMENTS[1]), ("chart", DOCUMENTS[3])]
    np.testing.assert_allclose(
        remote_reranker.score_pairs(pairs), local_reranker.score_pairs(pairs), atol=TOLERANCE
    )
    scores = asyncio.run(remote_reranker.ascore("revenue", DOCUMENTS))
    np.testing.assert_allclose(scores, local_reranker.score("revenue", DOCUMENTS), atol=TOLERANCE)


def test_a_long_query_and_document_are_cut_as_in_process(
    local_reranker: Qwen3VLReranker, remote_reranker: Qwen3VLReranker
) -> None:
    query = "revenue " * 1500
    documents = ["growth " * 3000, "short"]
    with pytest.warns(UserWarning, match="cut"):
        expected = local_reranker.score(query, documents)
    with pytest.warns(UserWarning, match="cut"):
        got = remote_reranker.score(query, documents)
    np.testing.assert_allclose(got, expected, atol=TOLERANCE)


# -- what cannot be sent unchanged is refused, never sent to come back different -------------------


def test_video_is_refused_with_the_reason(
    remote_embedder: Qwen3VLEmbedder, remote_reranker: Qwen3VLReranker, tmp_path: Path
) -> None:
    clip = write_mp4(tmp_path / "clip.mp4")
    with pytest.raises(UnsupportedInputError, match="samples and resizes frames") as caught:
        remote_embedder.embed(["text first", Video(clip)])
    assert caught.value.item_index == 1
    assert "in process" in str(caught.value)
    with pytest.raises(UnsupportedInputError, match="samples and resizes frames"):
        remote_reranker.score("q", [Video(clip)])


def test_special_tokens_next_to_an_image_are_refused(remote_embedder: Qwen3VLEmbedder) -> None:
    item = MultimodalInput(text="see <|im_end|> here", images=[picture(64, 64, 8)])
    with pytest.raises(UnsupportedInputError, match="special-token string") as caught:
        remote_embedder.embed(["fine", item])
    assert caught.value.item_index == 1


# -- the handshake ---------------------------------------------------------------------------------


def test_another_model_is_refused(vllm_embedding: Server, vllm_reranker: Server) -> None:
    with pytest.raises(ServerConfigurationError, match="--model") as caught:
        Qwen3VLEmbedder.from_server(vllm_embedding.url, model=vllm_reranker.model)
    assert str(vllm_reranker.model) in str(caught.value)
    assert caught.value.url == vllm_embedding.url


def test_an_embedding_server_is_no_reranker(vllm_embedding: Server) -> None:
    with pytest.raises(ServerConfigurationError, match="hf-overrides"):
        Qwen3VLReranker.from_server(vllm_embedding.url)


def test_a_reranker_server_is_no_embedder(vllm_reranker: Server) -> None:
    with pytest.raises(ServerConfigurationError, match="--runner pooling"):
        Qwen3VLEmbedder.from_server(vllm_reranker.url)


def test_a_reranker_without_our_template_is_refused(
    vllm_reranker_without_template: Server,
) -> None:
    with pytest.raises(ServerConfigurationError, match="--chat-template") as caught:
        Qwen3VLReranker.from_server(vllm_reranker_without_template.url)
    assert "reranker_template" in str(caught.value)


@pytest.mark.parametrize("kind", ["embedding", "reranker"])
def test_a_server_refusing_our_image_settings_names_the_flag(
    vllm_embedding: Server, vllm_reranker: Server, kind: str
) -> None:
    server = vllm_embedding if kind == "embedding" else vllm_reranker
    engine = Qwen3VLEmbedder if kind == "embedding" else Qwen3VLReranker
    proxy = FaultyProxy(server.url)
    # vLLM's answer to per-request mm_processor_kwargs without --trust-request-mm-kwargs (0.32)
    proxy.refuse = (
        b'"mm_processor_kwargs"',
        400,
        "Per-request mm_processor_kwargs are disabled by default because they can change "
        "multimodal preprocessing resource usage. Start the server with "
        "--trust-request-mm-kwargs only when clients are trusted.",
    )
    try:
        with pytest.raises(ServerConfigurationError, match="--trust-request-mm-kwargs") as caught:
            engine.from_server(proxy.url)
    finally:
        proxy.stop()
    assert "resize" in str(caught.value)


def test_more_tokens_than_the_server_takes_is_refused(vllm_embedding: Server) -> None:
    with pytest.raises(ServerConfigurationError, match="--max-model-len 4096"):
        Qwen3VLEmbedder.from_server(vllm_embedding.url, max_length=4096)


def test_an_unknown_option_is_a_type_error(vllm_embedding: Server) -> None:
    with pytest.raises(TypeError, match="max_pixel"):
        Qwen3VLEmbedder.from_server(vllm_embedding.url, max_pixel=1000)  # type: ignore[call-arg]


# -- faults ----------------------------------------------------------------------------------------


def test_a_server_that_is_not_there_is_named() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServerUnreachableError) as caught:
        Qwen3VLEmbedder.from_server(url, max_retries=1)
    assert url in str(caught.value)


def test_a_server_that_goes_down_mid_run_is_named(vllm_embedding: Server) -> None:
    proxy = FaultyProxy(vllm_embedding.url)
    try:
        embedder = Qwen3VLEmbedder.from_server(proxy.url, max_retries=1, batch_tokens=256)
        proxy.forward_after = 2  # two more requests, then the server is gone
        texts = [f"text {i} " * 20 for i in range(60)]
        with pytest.raises(ServerUnreachableError, match=proxy.url):
            embedder.embed(texts)
    finally:
        proxy.stop()  # already down when the test passes; closed however it ends


def test_a_slow_server_times_out(vllm_embedding: Server) -> None:
    proxy = FaultyProxy(vllm_embedding.url)
    try:
        embedder = Qwen3VLEmbedder.from_server(proxy.url, timeout=1.0, max_retries=1)
        proxy.delay = 2.5
        with pytest.raises(ServerTimeoutError, match="timeout"):
            embedder.embed(["slow"])
    finally:
        proxy.delay = 0
        proxy.stop()


def test_503_then_success_is_retried(
    local_embedder: Qwen3VLEmbedder, vllm_embedding: Server
) -> None:
    proxy = FaultyProxy(vllm_embedding.url)
    try:
        embedder = Qwen3VLEmbedder.from_server(proxy.url, max_retries=3)
        before = len(proxy.requests)
        proxy.fail.extend([503, 429])
        got = embedder.embed(["retried"])
        assert len(proxy.requests) - before == 3  # two refusals, then the answer
    finally:
        proxy.stop()
    np.testing.assert_allclose(got, local_embedder.embed(["retried"]), atol=TOLERANCE)


def test_an_error_that_retrying_cannot_fix_is_not_retried(vllm_embedding: Server) -> None:
    proxy = FaultyProxy(vllm_embedding.url)
    try:
        embedder = Qwen3VLEmbedder.from_server(proxy.url, max_retries=3)
        before = len(proxy.requests)
        proxy.fail.append(400)
        with pytest.raises(ServerResponseError, match="staged failure"):
            embedder.embed(["refused"])
        assert len(proxy.requests) - before == 1
    finally:
        proxy.stop()


def test_the_api_key_is_sent_and_never_shown(vllm_embedding: Server) -> None:
    proxy = FaultyProxy(vllm_embedding.url)
    try:
        embedder = Qwen3VLEmbedder.from_server(proxy.url, api_key="sk-secret-123")
        assert all(h.get("Authorization") == "Bearer sk-secret-123" for _, _, h in proxy.requests)
        assert "sk-secret-123" not in repr(embedder)
        assert "sk-secret-123" not in repr(embedder.backbone.client)
        proxy.fail.append(401)
        with pytest.raises(ServerResponseError) as caught:
            embedder.embed(["x"])
        assert "sk-secret-123" not in str(caught.value)
    finally:
        proxy.stop()


def test_a_ten_megabyte_image_is_resized_here_and_matches(
    local_embedder: Qwen3VLEmbedder, remote_embedder: Qwen3VLEmbedder, tmp_path: Path
) -> None:
    big = picture(1900, 1900, 9)
    path = tmp_path / "big.png"
    big.save(path, format="PNG", compress_level=0)
    assert path.stat().st_size > 10_000_000
    np.testing.assert_allclose(
        remote_embedder.embed([path]), local_embedder.embed([path]), atol=TOLERANCE
    )


def test_an_image_given_as_bytes_matches(
    local_embedder: Qwen3VLEmbedder, remote_embedder: Qwen3VLEmbedder
) -> None:
    buffer = io.BytesIO()
    picture(50, 70, 10).save(buffer, format="JPEG")
    data = buffer.getvalue()
    np.testing.assert_allclose(
        remote_embedder.embed([data]), local_embedder.embed([data]), atol=TOLERANCE
    )


# -- the index -------------------------------------------------------------------------------------


def test_an_index_built_on_the_server_equals_one_built_here(
    local_embedder: Qwen3VLEmbedder,
    remote_embedder: Qwen3VLEmbedder,
    local_reranker: Qwen3VLReranker,
    remote_reranker: Qwen3VLReranker,
    tmp_path: Path,
) -> None:
    from qwen3_vl_rag import MultimodalIndex
    from tests.integration.test_index import png_folder, three_page_pdf

    corpus = tmp_path / "corpus"
    png_folder(corpus, 4)
    three_page_pdf(corpus / "report.pdf")
    vectors = {}
    for name, embedder in (("here", local_embedder), ("server", remote_embedder)):
        with MultimodalIndex(tmp_path / name, embedder) as index:
            assert index.index([corpus]).complete
            vectors[name] = {item.id: item.vector for item in index.store.items()}
    assert vectors["here"].keys() == vectors["server"].keys()  # ids name the same model
    for item_id, vector in vectors["here"].items():
        np.testing.assert_allclose(vectors["server"][item_id], vector, atol=TOLERANCE)
    # the index built here, searched through the servers, finds what it finds here
    with MultimodalIndex(tmp_path / "here", local_embedder, local_reranker, mode="read") as index:
        expected = index.search("Page 2", top_n=3)
    with MultimodalIndex(tmp_path / "here", remote_embedder, remote_reranker, mode="read") as index:
        got = index.search("Page 2", top_n=3)
    assert [hit.id for hit in got] == [hit.id for hit in expected]
    np.testing.assert_allclose(
        [h.rerank_score for h in got], [h.rerank_score for h in expected], atol=TOLERANCE
    )


def test_images_sent_as_png_match_too(
    local_embedder: Qwen3VLEmbedder, vllm_embedding: Server
) -> None:
    embedder = Qwen3VLEmbedder.from_server(vllm_embedding.url, image_format="png")
    items = [*ITEMS["image"], *ITEMS["text and image"]]
    np.testing.assert_allclose(embedder.embed(items), local_embedder.embed(items), atol=TOLERANCE)
    with pytest.raises(ConfigurationError, match="image_format"):
        Qwen3VLEmbedder.from_server(vllm_embedding.url, image_format="jpeg")  # type: ignore[typeddict-item]
