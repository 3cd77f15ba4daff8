"""Long texts cost what can be kept, and keep exactly the ids that whole-text truncation keeps.

Every text (an item's text, a query, a document, an instruction) is cut before tokenizing to a
prefix with the same first tokens (``engine.text_budget``). These tests compare, on the tiny
checkpoint's Qwen-layout tokenizer, the cut path with tokenizing the whole text, for adversarial
texts just under, at and over the length where cutting starts; and run 50 MB texts through the
embedder and the reranker in a child process under bounded time and memory.
"""

from __future__ import annotations

import base64
import copy
import json
import random
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qwen3_vl_rag import InputTooLongError, MultimodalInput, Qwen3VLEmbedder, Qwen3VLReranker
from qwen3_vl_rag.engine._encoding import EncodedSequence, SequenceEncoder, plan_items
from qwen3_vl_rag.engine._text_budget import RUN_MARGIN, TextBudget
from tests.bounded import run_bounded

KEEP = 64
# the length from which a text is cut, for KEEP tokens (TextBudget.prefix's first window)
WINDOW = 8 * (KEEP + RUN_MARGIN) + 1024


def _mixed(rnd: random.Random, n: int) -> str:
    pieces = ["a", "Z", " ", "  ", "\n", "\r\n", "\t", "😀", "中", "1", ".", "é", "e\u0301"]
    pieces += ["'s", "'ll", "<think>", "</tool_call>", "\uff0c", "\u3000", "\u00a0", "!?", "ß", "ǅ"]
    out: list[str] = []
    size = 0
    while size < n:
        piece = rnd.choice(pieces)
        out.append(piece)
        size += len(piece)
    return "".join(out)


def hostile_text(kind: str, n: int) -> str:
    """A text of ``kind`` at least ``n`` characters long."""
    rnd = random.Random(zlib.crc32(kind.encode()))
    reps = n // 10 + 2
    makers: dict[str, Callable[[], str]] = {
        "prose": lambda: "The quick brown fox, 42 times; jumps over it's dog.\n" * reps,
        "one_letter": lambda: "a" * n,
        "one_digit": lambda: "7" * n,
        "spaces": lambda: "x" + " " * n + "y",
        "newlines": lambda: "\n" * n,
        "newline_spaces_newline": lambda: "x\n" + " " * n + "\n" + "y",
        "tabs_and_newlines": lambda: "\t \n" * reps,
        "punctuation": lambda: "!" * n,
        "cjk": lambda: "".join(chr(0x4E00 + rnd.randrange(2000)) for _ in range(n)),
        "cjk_with_punctuation": lambda: "".join(
            chr(0x4E00 + rnd.randrange(2000)) + ("\uff0c" if rnd.random() < 0.05 else "")
            for _ in range(n)
        ),
        "emoji": lambda: "😀" * n,
        "emoji_and_letters": lambda: "a😀" * reps,
        "combining_marks": lambda: "e\u0301" * reps,
        "hangul_jamo": lambda: "\u1100\u1161" * reps,
        "base64": lambda: base64.b64encode(rnd.randbytes(n)).decode(),
        "data_uri": lambda: "data:image/png;base64," + base64.b64encode(rnd.randbytes(n)).decode(),
        "special_strings": lambda: "hello <|im_end|> world <think> x " * reps,
        "added_token_run": lambda: "<tool_call>" * reps,
        "mixed": lambda: _mixed(rnd, n),
    }
    return makers[kind]()


KINDS = [
    "prose",
    "one_letter",
    "one_digit",
    "spaces",
    "newlines",
    "newline_spaces_newline",
    "tabs_and_newlines",
    "punctuation",
    "cjk",
    "cjk_with_punctuation",
    "emoji",
    "emoji_and_letters",
    "combining_marks",
    "hangul_jamo",
    "base64",
    "data_uri",
    "special_strings",
    "added_token_run",
    "mixed",
]
# texts whose cut always falls on a word boundary, where every id of the prefix is exact
BOUNDARY_KINDS = {
    "prose",
    "one_digit",
    "cjk_with_punctuation",
    "base64",
    "data_uri",
    "special_strings",
    "mixed",
}
LENGTHS = [WINDOW - 1, WINDOW, WINDOW + 1, 3 * WINDOW, 40 * WINDOW]


@pytest.fixture(scope="module")
def encoder(embedder: Qwen3VLEmbedder) -> SequenceEncoder:
    return embedder.backbone.encoder


@pytest.fixture(scope="module")
def budget(encoder: SequenceEncoder) -> TextBudget:
    found = TextBudget.for_tokenizer(encoder.tokenizer)
    assert found is not None, "the tiny checkpoint's tokenizer has Qwen's layout"
    return found


@pytest.fixture(scope="module")
def whole(encoder: SequenceEncoder) -> SequenceEncoder:
    """The same encoder tokenizing every text whole, then truncating (the behaviour before)."""
    unbounded = copy.copy(encoder)
    unbounded._text_budget = None
    return unbounded


def _ids(encoder: SequenceEncoder, text: str) -> list[int]:
    return list(
        encoder.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    )


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("kind", KINDS)
def test_a_cut_text_starts_with_the_whole_texts_tokens(
    kind: str, length: int, encoder: SequenceEncoder, budget: TextBudget
) -> None:
    text = hostile_text(kind, length)[:length]
    cut = budget.prefix(text, KEEP)
    if len(text) <= WINDOW:
        assert cut is text  # a text that fits is never touched
        return
    full, head = _ids(encoder, text), _ids(encoder, cut)
    if cut is text:
        return
    assert len(head) > KEEP
    assert head[:KEEP] == full[:KEEP]
    if kind in BOUNDARY_KINDS:
        assert head == full[: len(head)], "a cut at a boundary keeps every id of the prefix"


def _plans(embedder: Qwen3VLEmbedder, items: list[object]) -> list:  # type: ignore[type-arg]
    return plan_items(items, embedder.backbone.loaded.vision)


def _same(a: list[EncodedSequence], b: list[EncodedSequence]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.input_ids.tolist() == y.input_ids.tolist()
        assert x.parts == y.parts


def _outcome(call: Callable[[], list[EncodedSequence]]) -> list[EncodedSequence] | str:
    try:
        return call()
    except InputTooLongError as err:
        return type(err).__name__


def _image() -> Image.Image:
    rnd = np.random.RandomState(5)
    return Image.fromarray(rnd.randint(0, 255, (64, 64, 3), np.uint8))


@pytest.mark.parametrize("length", [WINDOW + 1, 6 * WINDOW])
@pytest.mark.parametrize("kind", KINDS)
def test_embedder_keeps_the_ids_of_whole_text_truncation(
    kind: str,
    length: int,
    embedder: Qwen3VLEmbedder,
    encoder: SequenceEncoder,
    whole: SequenceEncoder,
) -> None:
    text = hostile_text(kind, length)[:length]
    items: list[object] = [text, MultimodalInput(text=text, images=[_image()]), "short text"]
    plans = _plans(embedder, items)
    instructions = ["Represent the user's input."] * len(plans)
    _same(
        encoder.encode_embeddings(plans, instructions, KEEP),
        whole.encode_embeddings(plans, instructions, KEEP),
    )
    # a long instruction is fixed prompt: refused the same way
    long_instruction = [text + "."]
    cut = _outcome(lambda: encoder.encode_embeddings(plans[2:], long_instruction, KEEP))
    assert cut == _outcome(lambda: whole.encode_embeddings(plans[2:], long_instruction, KEEP))


@pytest.mark.parametrize("length", [WINDOW + 1, 6 * WINDOW])
@pytest.mark.parametrize("kind", KINDS)
def test_reranker_keeps_the_ids_of_whole_text_truncation(
    kind: str,
    length: int,
    embedder: Qwen3VLEmbedder,
    encoder: SequenceEncoder,
    whole: SequenceEncoder,
) -> None:
    text = hostile_text(kind, length)[:length]
    short, long_ = _plans(embedder, ["what is shown", text])
    (with_image,) = _plans(embedder, [MultimodalInput(text=text, images=[_image()])])
    pairs = [(short, long_), (long_, short), (long_, long_), (short, with_image)]
    budget = 3 * KEEP  # room for the vision tokens of the pair with an image
    for instruction in ("Find it.", text):
        _same(
            encoder.encode_pairs(pairs, instruction, budget),
            whole.encode_pairs(pairs, instruction, budget),
        )


def test_a_special_token_string_past_the_cut_still_makes_the_prompt_literal(
    embedder: Qwen3VLEmbedder, encoder: SequenceEncoder, whole: SequenceEncoder
) -> None:
    # the way a prompt is tokenized is chosen from the whole text, not from what is kept
    text = "revenue grew " * 2000 + "<|im_end|>"
    plans = _plans(embedder, [text])
    _same(
        encoder.encode_embeddings(plans, ["Represent."], KEEP),
        whole.encode_embeddings(plans, ["Represent."], KEEP),
    )


def test_texts_that_fit_are_encoded_unchanged(
    embedder: Qwen3VLEmbedder, encoder: SequenceEncoder, whole: SequenceEncoder
) -> None:
    texts = [hostile_text(kind, 300)[:300] for kind in KINDS]
    plans = _plans(embedder, texts)
    instructions = ["Represent."] * len(plans)
    _same(
        encoder.encode_embeddings(plans, instructions, 8192),
        whole.encode_embeddings(plans, instructions, 8192),
    )


# -- bounded time and memory -----------------------------------------------------------------------

_FIFTY_MB_CASE = """
import json, resource, time
from qwen3_vl_rag import Qwen3VLEmbedder, Qwen3VLReranker
# max_length bounds the model's work by design; what is measured here is what comes before it
embedder = Qwen3VLEmbedder.from_pretrained({embedding!r}, device="cpu", max_length=1024)
reranker = Qwen3VLReranker.from_pretrained({reranker!r}, device="cpu", max_length=1024)
embedder.embed_documents(["warm up"]); reranker.score("warm", ["up"])
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
baseline, start = rss(), time.monotonic()
text = "Revenue grew 12% in the third quarter, driven by cloud sales. " * 800_000  # 50 MB
uri = "data:image/png;base64," + "iVBORw0KGgo" * 6_300_000  # 66 MiB, a string: text
vectors = embedder.embed_documents([text, uri, "short"])
queries = embedder.embed_queries([text])
try:
    embedder.embed_documents(["short"], instruction=uri)
    refused = None
except Exception as err:  # an instruction is never shortened: too long is an error
    refused = type(err).__name__
scores = reranker.score(text, [text, "short"], instruction=uri)
pairs = reranker.score_pairs([("short", text)])
counts = embedder.count_tokens([text, uri])
print(json.dumps({{"baseline": baseline, "peak": rss(), "seconds": time.monotonic() - start,
                  "rows": len(vectors) + len(queries), "scores": len(scores) + len(pairs),
                  "counts": counts, "refused": refused}}))
"""


def test_fifty_megabyte_texts_cost_bounded_time_and_memory(
    tiny_embedding_path: Path, tiny_reranker_path: Path
) -> None:
    done = run_bounded(
        _FIFTY_MB_CASE.format(embedding=str(tiny_embedding_path), reranker=str(tiny_reranker_path)),
        seconds=90,
    )
    assert not done.timed_out, f"still tokenizing after {done.seconds:.0f} s"
    assert done.returncode == 0, done.stderr[-3000:]
    found = done.json()
    assert isinstance(found, dict)
    assert found["rows"] == 4 and found["scores"] == 3
    assert found["counts"] == [1024, 1024]
    assert found["refused"] == "InputTooLongError"
    # the 50 MB and 66 MiB strings themselves, and nothing in proportion to their tokens
    assert found["peak"] - found["baseline"] < 400, json.dumps(found)
    assert found["seconds"] < 60, json.dumps(found)


def test_reranker_scores_a_huge_document_as_its_kept_head(reranker: Qwen3VLReranker) -> None:
    head = "Revenue grew in the third quarter. " * 400
    limited = Qwen3VLReranker(reranker.backbone, reranker.score_head, max_length=256)
    long_score, head_score = limited.score("revenue", [head * 100, head])
    assert long_score == pytest.approx(head_score, abs=1e-6)
