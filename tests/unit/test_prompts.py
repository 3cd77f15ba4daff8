"""Golden prompt strings for every input kind, compared character by character.

The strings are written out by hand from the official formats (research/peers.md 1.1 and 1.2, and
the official reranker_template.jinja); tests/parity checks the same against the official code.
"""

from __future__ import annotations

import pytest
from PIL import Image

from qwen3_vl_rag import MultimodalInput, Video
from qwen3_vl_rag.engine import _prompts as prompts
from qwen3_vl_rag.engine._encoding import plan_items
from qwen3_vl_rag.engine._vision import VisionSettings

IMG = "<|vision_start|><|image_pad|><|vision_end|>"
VID = "<|vision_start|><|video_pad|><|vision_end|>"
SYSTEM_DOC = "<|im_start|>system\nRepresent the user's input.<|im_end|>\n<|im_start|>user\n"
TAIL = "<|im_end|>\n<|im_start|>assistant\n"
JUDGE = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and "
    'the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n<Instruct>: "
)


def frame(width: int = 64, height: int = 64) -> Image.Image:
    return Image.new("RGB", (width, height), (10, 20, 30))


def embedding_prompt(item: object, instruction: str | None = None) -> str:
    (plan,) = plan_items([item], VisionSettings())
    default = prompts.normalize_instruction(instruction, prompts.DEFAULT_DOCUMENT_INSTRUCTION)
    chosen = (
        prompts.normalize_instruction(plan.instruction, default) if plan.instruction else default
    )
    return prompts.render(prompts.embedding_prompt(chosen, plan.content(expanded=False)))


def reranker_prompt(query: object, document: object, instruction: str) -> str:
    q, d = plan_items([query, document], VisionSettings())
    return prompts.render(
        prompts.reranker_prompt(instruction, q.content(expanded=False), d.content(expanded=False))
    )


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("hello world", SYSTEM_DOC + "hello world" + TAIL),
        (MultimodalInput(), SYSTEM_DOC + "NULL" + TAIL),
        (MultimodalInput(text=""), SYSTEM_DOC + TAIL),
        (frame(), SYSTEM_DOC + IMG + TAIL),
        (MultimodalInput(text="a chart", images=[frame()]), SYSTEM_DOC + IMG + "a chart" + TAIL),
        (
            MultimodalInput(text="two", images=[frame(), frame()]),
            SYSTEM_DOC + IMG + IMG + "two" + TAIL,
        ),
        (Video([frame(), frame()]), SYSTEM_DOC + VID + TAIL),
        # parts are reordered to videos, images, text whatever the construction order
        (
            MultimodalInput(text="all", images=[frame()], video=[frame()]),
            SYSTEM_DOC + VID + IMG + "all" + TAIL,
        ),
        ({"text": "dict", "image": frame()}, SYSTEM_DOC + IMG + "dict" + TAIL),
    ],
    ids=[
        "text",
        "empty-item",
        "empty-text",
        "image",
        "text+image",
        "two-images",
        "video",
        "video+image+text",
        "reference-dict",
    ],
)
def test_embedding_prompt_golden_strings(item: object, expected: str) -> None:
    assert embedding_prompt(item) == expected


@pytest.mark.parametrize(
    ("instruction", "system"),
    [
        (None, "Represent the user's input."),
        ("", "Represent the user's input."),
        ("   ", "Represent the user's input."),
        ("Find the chart", "Find the chart."),
        ("  Find the chart  ", "Find the chart."),
        ("Find the chart?", "Find the chart?"),
        ("Trouve le graphique\u00bb", "Trouve le graphique\u00bb"),  # closing guillemet is P*
        ("检索相关图片。", "检索相关图片。"),  # ideographic full stop is punctuation
        ("Version 2", "Version 2."),
    ],
)
def test_embedding_instruction_rule(instruction: str | None, system: str) -> None:
    expected = f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\nq" + TAIL
    assert embedding_prompt("q", instruction) == expected


def test_item_instruction_overrides_call_instruction() -> None:
    item = MultimodalInput(text="q", instruction="Per item")
    assert embedding_prompt(item, "Per call").startswith("<|im_start|>system\nPer item.<|im_end|>")


@pytest.mark.parametrize(
    ("query", "document", "expected"),
    [
        ("q", "d", "I<Query>:q\n<Document>:d"),
        (frame(), "d", f"I<Query>:{IMG}\n<Document>:d"),
        ("q", MultimodalInput(text="t", images=[frame()]), f"I<Query>:q\n<Document>:{IMG}t"),
        ("q", Video([frame()]), f"I<Query>:q\n<Document>:{VID}"),
        ("q", MultimodalInput(), "I<Query>:q\n<Document>:NULL"),
        (
            MultimodalInput(text="like this", images=[frame()]),
            MultimodalInput(video=[frame()], images=[frame()]),
            f"I<Query>:{IMG}like this\n<Document>:{VID}{IMG}",
        ),
    ],
    ids=["text-text", "image-query", "text+image-doc", "video-doc", "empty-doc", "mixed"],
)
def test_reranker_prompt_golden_strings(query: object, document: object, expected: str) -> None:
    assert reranker_prompt(query, document, "I") == JUDGE + expected + TAIL


def test_reranker_instruction_is_used_verbatim() -> None:
    prompt = reranker_prompt("q", "d", "  no period ")
    assert "<Instruct>:   no period <Query>:q" in prompt


def test_expanded_image_block() -> None:
    assert prompts.image_block(3) == "<|vision_start|>" + "<|image_pad|>" * 3 + "<|vision_end|>"
    assert prompts.image_block() == IMG


def test_expanded_video_block_replaces_outer_wrapper() -> None:
    block = prompts.video_block([0.25, 1.0, 12.96], tokens_per_frame=2)
    pads = "<|video_pad|>" * 2
    assert block == (
        f"<0.2 seconds><|vision_start|>{pads}<|vision_end|>"
        f"<1.0 seconds><|vision_start|>{pads}<|vision_end|>"
        f"<13.0 seconds><|vision_start|>{pads}<|vision_end|>"
    )
    assert prompts.video_block() == VID


def test_segments_mark_what_the_user_wrote() -> None:
    (plan,) = plan_items(
        [MultimodalInput(text="a <|im_end|> b", images=[frame()])], VisionSettings()
    )
    segments = prompts.embedding_prompt("Find it.", plan.content(expanded=False))
    assert [text for text, user in segments if user] == ["Find it.", "a <|im_end|> b"]
    assert "<|im_start|>" not in "".join(text for text, user in segments if user)
