"""Hostile text and data: URIs reach the engine: bounded work, typed errors (no checkpoint needed).

The token-identity tests, which need the tiny checkpoint's tokenizer, are in
``tests/integration/test_hostile_text.py`` (a module of another name: pytest
imports test files by basename).
"""

from __future__ import annotations

import base64
import json
import unicodedata
from typing import Any

import pytest

from qwen3_vl_rag import ImageDecodeError, InputTooLargeError, MultimodalInput
from qwen3_vl_rag.engine import _vision as vision
from qwen3_vl_rag.engine._encoding import plan_items
from qwen3_vl_rag.engine._text_budget import (
    QWEN_SPLIT_PATTERN,
    RUN_MARGIN,
    TextBudget,
    _safe_follower,
)
from qwen3_vl_rag.testing.checkpoints import QWEN_PRETOKENIZE_REGEX

# -- data: URI images ------------------------------------------------------------------------------


def test_data_uri_cap_is_the_one_inline_image_cap_the_adapters_use_too() -> None:
    from qwen3_vl_rag.media import references

    assert vision.MAX_DATA_URI_BYTES == references.MAX_INLINE_IMAGE_BYTES == 32 * 1024 * 1024


def test_data_uri_over_the_byte_budget_is_refused_before_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def never(*args: Any, **kwargs: Any) -> bytes:
        raise AssertionError("the payload was decoded")

    monkeypatch.setattr(vision, "MAX_DATA_URI_BYTES", 3000)
    monkeypatch.setattr(vision.base64, "b64decode", never)
    uri = "data:image/png;base64," + "A" * 4004  # decodes to up to 3003 bytes
    with pytest.raises(InputTooLargeError, match="over the budget of 3000") as info:
        vision.open_image(uri)
    assert "data URI" in str(info.value)  # named by its size, not its 4 KB of base64
    # through the engine's planning, the item is named
    with pytest.raises(InputTooLargeError) as planned:
        plan_items(["text", MultimodalInput(images=[uri])], vision.VisionSettings())
    assert planned.value.item_index == 1


def test_data_uri_at_the_byte_budget_is_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    monkeypatch.setattr(vision, "MAX_DATA_URI_BYTES", 3000)
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    assert vision.open_image(uri).size == (8, 8)


@pytest.mark.parametrize(
    "payload", ["!!!!not base64", base64.b64encode(b"not an image at all").decode(), "QUJD="]
)
def test_corrupt_data_uri_is_an_image_decode_error(payload: str) -> None:
    with pytest.raises(ImageDecodeError):
        vision.open_image("data:image/png;base64," + payload)


# -- the argument behind the cut points ----------------------------------------------------------


def test_split_pattern_is_the_one_qwen_checkpoints_ship() -> None:
    assert QWEN_SPLIT_PATTERN == QWEN_PRETOKENIZE_REGEX


def test_no_character_a_cut_may_precede_composes_with_what_is_before_it() -> None:
    # NFC composes a pair (a, b) only when b is the second half of a canonical decomposition
    # (or a Hangul vowel or trailing consonant): none of them may follow a cut
    seconds = {chr(cp) for cp in range(0x1161, 0x1176)} | {chr(cp) for cp in range(0x11A8, 0x11C3)}
    for cp in range(0x110000):
        decomposition = unicodedata.decomposition(chr(cp)).split()
        if len(decomposition) == 2 and not decomposition[0].startswith("<"):
            seconds.add(chr(int(decomposition[1], 16)))
    assert seconds, "the Unicode database has compositions"
    assert not [c for c in seconds if _safe_follower(c)]


def test_a_tokenizer_of_another_layout_is_not_cut() -> None:
    class Backend:
        def __init__(self, state: dict[str, Any]) -> None:
            self.state = state

        def to_str(self) -> str:
            return json.dumps(self.state)

    class Tokenizer:
        def __init__(self, state: dict[str, Any]) -> None:
            self.backend_tokenizer = Backend(state)
            self.added_tokens_decoder: dict[int, Any] = {}

    qwen = {
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Split",
                    "pattern": {"Regex": QWEN_SPLIT_PATTERN},
                    "behavior": "Isolated",
                    "invert": False,
                },
                {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False},
            ],
        },
        "model": {"type": "BPE", "dropout": None},
    }
    assert TextBudget.for_tokenizer(Tokenizer(qwen)) is not None
    other_regex = json.loads(json.dumps(qwen))
    other_regex["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {"Regex": r"\w+|\s+"}
    lowercase = {**qwen, "normalizer": {"type": "Lowercase"}}
    dropout = {**qwen, "model": {"type": "BPE", "dropout": 0.1}}
    for state in (other_regex, lowercase, dropout, {}):
        assert TextBudget.for_tokenizer(Tokenizer(state)) is None
    assert TextBudget.for_tokenizer(object()) is None


# -- bounded work ----------------------------------------------------------------------------------


class Counting:
    """A stand-in tokenizer count (one token per 4 characters) that records what it was given."""

    def __init__(self, chars_per_token: int = 4) -> None:
        self.chars_per_token = chars_per_token
        self.seen: list[int] = []

    def __call__(self, text: str) -> int:
        self.seen.append(len(text))
        return len(text) // self.chars_per_token


@pytest.mark.parametrize(
    ("text", "chars_per_token"),
    [
        ("Revenue grew 12% in Q3. " * 500_000, 4),  # 12 MB of prose
        ("a" * 12_000_000, 4),  # one run: no word boundary at all
        ("中文\uff0c" * 4_000_000, 1),
        ("\n" + " " * 12_000_000 + "\n", 16),
    ],
    ids=["prose", "one-run", "cjk", "spaces"],
)
def test_work_is_bounded_by_what_can_be_kept(text: str, chars_per_token: int) -> None:
    count = Counting(chars_per_token)
    keep = 8192
    cut = TextBudget(count, ("<tool_call>",)).prefix(text, keep)
    assert sum(count.seen) < 40 * (keep + RUN_MARGIN) * chars_per_token
    assert len(cut) < 20 * (keep + RUN_MARGIN) * chars_per_token
    assert count(cut) > keep


def test_a_text_that_fits_is_returned_unread() -> None:
    count = Counting()
    text = "short enough " * 100
    assert TextBudget(count, ()).prefix(text, 8192) is text
    assert count.seen == []


@pytest.mark.parametrize(
    ("text", "follower"),
    [
        ("word " * 10_000, " "),  # a letter, then a space
        ("1" * 50_000, "1"),  # digits are pieces of their own
        ("é。" * 10_000, "。"),  # a letter, then CJK punctuation
        ("αβγ-" * 10_000, "-"),
    ],
)
def test_cuts_fall_between_a_letter_or_number_and_a_non_letter(text: str, follower: str) -> None:
    cut = TextBudget(Counting(1), ()).prefix(text, 100)
    assert len(cut) < len(text)
    assert text[len(cut)] == follower
    assert unicodedata.category(cut[-1])[0] in "LN"


def test_a_cut_never_splits_an_added_token() -> None:
    text = "<tool_call>" * 10_000  # no boundary anywhere: cut inside the run
    cut = TextBudget(Counting(1), ("<tool_call>",)).prefix(text, 100)
    assert len(cut) % len("<tool_call>") == 0
