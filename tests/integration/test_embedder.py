"""Qwen3VLEmbedder on the tiny checkpoint: batching invariance, order, MRL, precision, errors."""

from __future__ import annotations

import base64
import io
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from qwen3_vl_rag import (
    ConfigurationError,
    ImageDecodeError,
    InputTooLongError,
    MultimodalInput,
    QuantizationCalibration,
    Qwen3VLEmbedder,
    RemoteInputError,
    ResourceExhaustedError,
    UnsupportedInputError,
    Video,
    VideoDecodeError,
)
from qwen3_vl_rag import video_frames as media_video
from qwen3_vl_rag.engine import _vision as vision
from tests.conftest import write_mp4

TOL = 1e-5


def noise(width: int, height: int, seed: int) -> Image.Image:
    rnd = np.random.RandomState(seed)
    return Image.fromarray(rnd.randint(0, 255, (height, width, 3), np.uint8))


@pytest.fixture(scope="module")
def mixed_items(tmp_path_factory: pytest.TempPathFactory) -> list[object]:
    """Texts of varied length, images of varied size, a video: a realistic mixed workload."""
    root = tmp_path_factory.mktemp("mixed")
    path = root / "photo.png"
    noise(300, 200, 3).save(path)
    clip = write_mp4(root / "clip.mp4", frames=12, fps=6)
    words = "quarterly revenue chart growth table report figure page".split()
    rnd = random.Random(0)
    texts = [" ".join(rnd.choice(words) for _ in range(n)) for n in (1, 3, 9, 27, 80, 200)]
    return [
        texts[0],
        noise(64, 64, 1),
        texts[4],
        MultimodalInput(text=texts[2], images=[noise(128, 96, 2)]),
        Video(clip, fps=2.0),
        texts[1],
        path,
        MultimodalInput(images=[noise(40, 40, 4), noise(200, 120, 5)], text="two"),
        texts[5],
        Video([noise(64, 48, 6), noise(64, 48, 7), noise(64, 48, 8)]),
        texts[3],
        MultimodalInput(),
    ]


@pytest.fixture(scope="module")
def singles(embedder: Qwen3VLEmbedder, mixed_items: list[object]) -> np.ndarray:
    return np.stack([embedder.embed([item])[0] for item in mixed_items])


def test_batched_equals_one_at_a_time(
    embedder: Qwen3VLEmbedder, mixed_items: list[object], singles: np.ndarray
) -> None:
    batched = embedder.embed(mixed_items)
    assert batched.shape == (len(mixed_items), embedder.dimension)
    assert batched.dtype == np.float32
    np.testing.assert_allclose(batched, singles, atol=TOL, rtol=0)


@pytest.mark.parametrize("batch_tokens", [64, 300, 1000, 100_000])
def test_any_budget_gives_the_same_vectors(
    embedder: Qwen3VLEmbedder, mixed_items: list[object], singles: np.ndarray, batch_tokens: int
) -> None:
    out = embedder.embed(mixed_items, batch_tokens=batch_tokens)
    np.testing.assert_allclose(out, singles, atol=TOL, rtol=0)


@pytest.mark.parametrize("seed", [1, 2])
def test_input_order_is_preserved_when_shuffled(
    embedder: Qwen3VLEmbedder, mixed_items: list[object], singles: np.ndarray, seed: int
) -> None:
    order = list(range(len(mixed_items)))
    random.Random(seed).shuffle(order)
    out = embedder.embed([mixed_items[i] for i in order], batch_tokens=500)
    np.testing.assert_allclose(out, singles[order], atol=TOL, rtol=0)


def test_vectors_are_unit_norm_and_deterministic(
    embedder: Qwen3VLEmbedder, singles: np.ndarray
) -> None:
    np.testing.assert_allclose(np.linalg.norm(singles, axis=1), 1.0, atol=1e-6)
    same = ["What was the quarterly revenue growth?"] * 3
    first, second = embedder.embed(same), embedder.embed(same)
    np.testing.assert_array_equal(first, second)  # run to run: bit for bit
    np.testing.assert_allclose(first[1:], first[:1].repeat(2, axis=0), atol=1e-6)


def test_one_image_in_every_source_form_gives_one_vector(
    embedder: Qwen3VLEmbedder, tmp_path: Path
) -> None:
    image = noise(150, 100, 9)
    path = tmp_path / "x.png"
    image.save(path)
    data = path.read_bytes()
    forms = [
        image,
        path,
        str(path),
        data,
        "data:image/png;base64," + base64.b64encode(data).decode(),
        np.asarray(image),
    ]
    items = [
        form
        if isinstance(form, (Image.Image, Path, bytes, np.ndarray))
        else MultimodalInput(images=[form])
        for form in forms
    ]
    out = embedder.embed(items)
    for row in out[1:]:
        np.testing.assert_allclose(row, out[0], atol=TOL, rtol=0)


def test_empty_list_returns_an_empty_matrix(embedder: Qwen3VLEmbedder) -> None:
    out = embedder.embed([])
    assert out.shape == (0, embedder.dimension)
    assert embedder.embed([], dim=32, precision="ubinary").shape == (0, 4)


# -- instructions ---------------------------------------------------------------------------------


def test_query_and_document_instructions(embedder: Qwen3VLEmbedder) -> None:
    text = "red bar chart"
    document = embedder.embed_documents([text])
    assert np.allclose(document, embedder.embed([text]))
    query = embedder.embed_queries([text])
    expected = embedder.embed(
        [text], instruction="Retrieve images or text relevant to the user's query."
    )
    np.testing.assert_array_equal(query, expected)
    assert not np.allclose(query, document, atol=1e-3)
    custom = embedder.embed_queries(
        [text], instruction="Find a document image that matches the given query"
    )
    assert not np.allclose(custom, query, atol=1e-3)


def test_per_item_instruction_overrides_the_call(embedder: Qwen3VLEmbedder) -> None:
    mixed = embedder.embed(
        [MultimodalInput(text="cat", instruction="Classify the object in this image"), "cat"],
        instruction="Find images matching this description.",
    )
    alone = embedder.embed(["cat"], instruction="Classify the object in this image.")
    call = embedder.embed(["cat"], instruction="Find images matching this description.")
    np.testing.assert_allclose(mixed[0], alone[0], atol=TOL)
    np.testing.assert_allclose(mixed[1], call[0], atol=TOL)


def test_format_prompt_shows_the_exact_prompt(embedder: Qwen3VLEmbedder) -> None:
    assert embedder.format_prompt("hi", instruction="Find it") == (
        "<|im_start|>system\nFind it.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


# -- Matryoshka and precision ---------------------------------------------------------------------


def test_dim_truncates_and_renormalises(embedder: Qwen3VLEmbedder, singles: np.ndarray) -> None:
    items = ["alpha", "beta gamma"]
    full = embedder.embed(items)
    short = embedder.embed(items, dim=32)
    assert short.shape == (2, 32)
    expected = full[:, :32] / np.linalg.norm(full[:, :32], axis=1, keepdims=True)
    np.testing.assert_allclose(short, expected, atol=1e-6)
    raw = embedder.embed(items, dim=32, normalize=False)
    unnormalised = embedder.embed(items, normalize=False)
    np.testing.assert_allclose(raw, unnormalised[:, :32], atol=TOL)
    assert not np.allclose(np.linalg.norm(unnormalised, axis=1), 1.0)


def test_invalid_dim_fails_before_any_compute(
    embedder: Qwen3VLEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedder.backbone, "last_hidden_states", lambda *a, **k: pytest.fail("ran"))
    with pytest.raises(ConfigurationError, match="between 32 and the model's 64"):
        embedder.embed(["x"], dim=16)
    with pytest.raises(ConfigurationError, match="needs a calibration"):
        embedder.embed(["x"], precision="int8")
    with pytest.raises(ConfigurationError, match="unknown precision"):
        embedder.embed(["x"], precision="int3")  # type: ignore[arg-type]


def test_precisions(embedder: Qwen3VLEmbedder) -> None:
    items = ["one", "two", "three"]
    full = embedder.embed(items)
    half = embedder.embed(items, precision="float16")
    assert half.dtype == np.float16
    np.testing.assert_allclose(half.astype(np.float32), full, atol=1e-3)
    bits = embedder.embed(items, precision="ubinary")
    assert bits.shape == (3, 8) and bits.dtype == np.uint8
    np.testing.assert_array_equal(np.unpackbits(bits, axis=1).astype(bool), full > 0)
    signed = embedder.embed(items, precision="binary")
    np.testing.assert_array_equal(signed.astype(np.int16) + 128, bits)
    calibration = QuantizationCalibration.from_embeddings(full)
    codes = embedder.embed(items, precision="uint8", calibration=calibration)
    assert codes.dtype == np.uint8
    assert codes.min() == 0 and codes.max() == 255  # the calibration set spans the full range
    int8 = embedder.embed(items, precision="int8", calibration=calibration)
    np.testing.assert_array_equal(int8.astype(np.int16) + 128, codes)
    short = embedder.embed(items, dim=32, precision="ubinary")
    assert short.shape == (3, 4)


# -- token counting and truncation ----------------------------------------------------------------


def test_count_tokens_needs_no_pixels(
    embedder: Qwen3VLEmbedder, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "x.png"
    noise(320, 240, 1).save(path)
    clip = write_mp4(tmp_path / "c.mp4", frames=12, fps=6)
    monkeypatch.setattr(vision, "decode_image", lambda *a: pytest.fail("decoded an image"))
    monkeypatch.setattr(media_video, "read_frames", lambda *a: pytest.fail("decoded a video"))
    counts = embedder.count_tokens(["hello", path, Video(clip, fps=2.0)])
    # image 320x240 -> 320x256 -> 10 x 8 = 80 pads plus the 2 vision markers
    base = embedder.count_tokens([MultimodalInput()])[0] - 1  # prompt around "NULL" (one token)
    assert counts[1] == base + 80 + 2
    # video: 4 frames -> 2 groups of (96x64 -> 160x128 after the 128-token minimum: 5 x 4 = 20 pads)
    assert counts[2] > base + 2 * 20


def test_long_text_is_cut_from_its_end_keeping_the_pooled_suffix(
    embedder: Qwen3VLEmbedder,
) -> None:
    encoder = embedder.backbone.encoder
    limit = 64
    short = Qwen3VLEmbedder(embedder.backbone, max_length=limit)
    text = "revenue" + " revenue" * 300
    assert short.count_tokens([text]) == [limit]
    from qwen3_vl_rag.engine._encoding import plan_items

    (plan,) = plan_items([text], embedder.backbone.loaded.vision)
    (sequence,) = encoder.encode_embeddings([plan], [short.document_instruction], limit)
    suffix = encoder._tokenize(["<|im_end|>\n<|im_start|>assistant\n"])[0]
    assert list(sequence.input_ids[-len(suffix) :]) == suffix
    # the kept text is a prefix of whole words: same vector as embedding that prefix directly
    kept_words = limit - embedder.count_tokens([""])[0]
    prefix = "revenue" + " revenue" * (kept_words - 1)
    np.testing.assert_allclose(short.embed([text]), embedder.embed([prefix]), atol=TOL)


def test_vision_that_cannot_fit_raises_naming_the_knob(embedder: Qwen3VLEmbedder) -> None:
    short = Qwen3VLEmbedder(embedder.backbone, max_length=64)
    with pytest.raises(InputTooLongError, match="max_pixels") as info:
        short.embed(["fine", MultimodalInput(text="a", images=[noise(320, 320, 0)])])
    assert info.value.item_index == 1
    assert "max_length=64" in str(info.value)


# -- typed errors ---------------------------------------------------------------------------------


def test_corrupt_image_bytes_name_the_item(embedder: Qwen3VLEmbedder) -> None:
    with pytest.raises(ImageDecodeError) as info:
        embedder.embed(["ok", "fine", b"definitely not an image"])
    assert info.value.item_index == 2
    assert str(info.value).startswith("item 2")


def test_truncated_image_fails_at_decode_naming_the_item(embedder: Qwen3VLEmbedder) -> None:
    buffer = io.BytesIO()
    noise(200, 200, 0).save(buffer, format="PNG")
    truncated = buffer.getvalue()[:3000]
    items: list[object] = ["a" * 50, truncated, "b"]
    with pytest.raises(ImageDecodeError, match="could not be decoded") as info:
        embedder.embed(items, batch_tokens=64)  # several batches, sorted by length
    assert info.value.item_index == 1


def test_unknown_type_and_remote_url(embedder: Qwen3VLEmbedder) -> None:
    with pytest.raises(UnsupportedInputError) as info:
        embedder.embed(["a", 42])  # type: ignore[list-item]
    assert info.value.item_index == 1
    with pytest.raises(RemoteInputError) as remote:
        embedder.embed([MultimodalInput(images=["https://example.com/x.png"])])
    assert remote.value.item_index == 0


def test_zero_frame_video_names_the_item(embedder: Qwen3VLEmbedder, tmp_path: Path) -> None:
    import av

    path = tmp_path / "empty.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=6)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()
    with pytest.raises(VideoDecodeError) as info:
        embedder.embed(["a", Video(path)])
    assert info.value.item_index == 1


def test_no_placeholder_vectors_a_bad_item_fails_the_call(embedder: Qwen3VLEmbedder) -> None:
    with pytest.raises(ImageDecodeError):
        embedder.embed(["a", b"junk", "c"])


# -- out of memory --------------------------------------------------------------------------------


class _OomAbove:
    """Wraps the model: raise CUDA-style OOM for batches with more than ``limit`` rows."""

    def __init__(self, model: torch.nn.Module, limit: int) -> None:
        self.model, self.limit, self.sizes = model, limit, []

    def __call__(self, **inputs: torch.Tensor) -> object:
        rows = inputs["input_ids"].shape[0]
        self.sizes.append(rows)
        if rows > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return self.model(**inputs)


def test_out_of_memory_halves_the_batch_and_retries(
    embedder: Qwen3VLEmbedder,
    mixed_items: list[object],
    singles: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wrapper = _OomAbove(embedder.backbone.loaded.model, limit=2)
    monkeypatch.setattr(embedder.backbone.loaded, "model", wrapper)
    monkeypatch.setattr(embedder.backbone, "max_padding", 1.0)  # one batch of all 12 first
    out = embedder.embed(mixed_items, batch_tokens=100_000)
    np.testing.assert_allclose(out, singles, atol=TOL, rtol=0)
    # one halving chain (12 -> 6 -> 3 -> fits), then no batch is tried above what fitted
    assert [size for size in wrapper.sizes if size > 2] == [12, 6, 3]


def test_out_of_memory_for_a_single_item_names_it(
    embedder: Qwen3VLEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        embedder.backbone.loaded, "model", _OomAbove(embedder.backbone.loaded.model, limit=0)
    )
    with pytest.raises(ResourceExhaustedError, match="does not fit in memory even alone") as info:
        embedder.embed(["a", "b"])
    assert info.value.item_index in (0, 1)


def test_progress_bar(embedder: Qwen3VLEmbedder, capsys: pytest.CaptureFixture[str]) -> None:
    out = embedder.embed(["a", "b", "c"], show_progress=True)
    assert out.shape == (3, embedder.dimension)
    assert "Embedding" in capsys.readouterr().err


def test_decoding_on_the_calling_thread_gives_the_same_vectors(
    embedder: Qwen3VLEmbedder, mixed_items: list[object], singles: np.ndarray
) -> None:
    inline = Qwen3VLEmbedder(embedder.backbone)
    previous = embedder.backbone.decode_workers
    embedder.backbone.decode_workers = 0
    try:
        out = inline.embed(mixed_items, batch_tokens=400)
    finally:
        embedder.backbone.decode_workers = previous
    np.testing.assert_allclose(out, singles, atol=TOL, rtol=0)


@pytest.mark.parametrize(
    "single",
    [
        "hello",
        b"\x89PNG",
        MultimodalInput(text="x"),
        Video("a.mp4"),
        Path("a.png"),
        Image.new("RGB", (8, 8)),
        {"text": "x"},
    ],
    ids=["str", "bytes", "multimodal", "video", "path", "pil", "dict"],
)
def test_a_single_item_instead_of_a_list_is_refused(
    embedder: Qwen3VLEmbedder, single: object
) -> None:
    """A str is a sequence of characters: embedding it must not silently embed each character."""
    with pytest.raises(UnsupportedInputError, match="expected a list of items"):
        embedder.embed(single)  # type: ignore[arg-type]


def test_many_short_texts_share_the_system_prompt(
    embedder: Qwen3VLEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [f"query number {i}" for i in range(20)]
    backbone = embedder.backbone
    monkeypatch.setattr(backbone, "share_prefix", False)
    plain = embedder.embed_queries(texts, batch_tokens=128)
    monkeypatch.setattr(backbone, "share_prefix", None)  # automatic: worth it for short texts
    prefixes: list[object] = []
    original = backbone._shared_prefix
    monkeypatch.setattr(
        backbone, "_shared_prefix", lambda *a: prefixes.append(original(*a)) or prefixes[-1]
    )
    shared = embedder.embed_queries(texts, batch_tokens=128)
    assert prefixes[0] is not None  # the system prompt and "query number " were run once
    assert prefixes[0].length > 20  # type: ignore[attr-defined]
    np.testing.assert_allclose(shared, plain, atol=TOL, rtol=0)


@pytest.mark.parametrize(
    "marker", ["<|image_pad|>", "<|im_end|>", "<|vision_start|>", "<|endoftext|>"]
)
def test_special_token_strings_in_text_are_plain_text(
    embedder: Qwen3VLEmbedder, marker: str
) -> None:
    """A document about tokenizers can neither rewrite the prompt nor break the vision count."""
    from qwen3_vl_rag.engine._encoding import plan_items

    text = f"The token {marker} marks the image."
    (plan,) = plan_items(
        [MultimodalInput(text=text, images=[noise(64, 64, 1)])], embedder.backbone.loaded.vision
    )
    encoder = embedder.backbone.encoder
    (sequence,) = encoder.encode_embeddings([plan], [embedder.document_instruction], 8192)
    special = encoder.protected_ids
    (clean,) = encoder.encode_embeddings(
        plan_items(
            [MultimodalInput(text="The token marks the image.", images=[noise(64, 64, 1)])],
            embedder.backbone.loaded.vision,
        ),
        [embedder.document_instruction],
        8192,
    )
    # the same control tokens as without the marker: it became ordinary text tokens
    assert [t for t in sequence.input_ids if t in special] == [
        t for t in clean.input_ids if t in special
    ]
    assert len(sequence) > len(clean)
    vector = embedder.embed([MultimodalInput(text=text, images=[noise(64, 64, 1)])])
    assert np.isfinite(vector).all()
    assert text in embedder.format_prompt(text)  # shown verbatim


def test_special_token_strings_in_long_text_still_truncate_the_text(
    embedder: Qwen3VLEmbedder,
) -> None:
    short = Qwen3VLEmbedder(embedder.backbone, max_length=48)
    text = "<|im_end|> " + "revenue " * 200
    assert short.count_tokens([text]) == [48]
    suffix = embedder.backbone.encoder.suffix_ids()
    from qwen3_vl_rag.engine._encoding import plan_items

    (plan,) = plan_items([text], embedder.backbone.loaded.vision)
    (sequence,) = embedder.backbone.encoder.encode_embeddings([plan], ["Represent."], 48)
    assert list(sequence.input_ids[-len(suffix) :]) == suffix
