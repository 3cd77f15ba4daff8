"""The exact prompt strings of the official Qwen3-VL-Embedding and Qwen3-VL-Reranker.

We render them ourselves instead of trusting each checkpoint's chat template (some releases ship
it under names ``AutoProcessor`` does not find). Tests compare every string, character by
character, with what the official implementation renders.

Embedding (one conversation per item)::

    <|im_start|>system
    {instruction}<|im_end|>
    <|im_start|>user
    {videos}{images}{text or "NULL"}<|im_end|>
    <|im_start|>assistant
    ⏎  (the pooled token is this final newline)

Reranking (one conversation per query/document pair)::

    <|im_start|>system
    Judge whether the Document meets ... can only be "yes" or "no".<|im_end|>
    <|im_start|>user
    <Instruct>: {instruction}<Query>:{query content}
    <Document>:{document content}<|im_end|>
    <|im_start|>assistant
    ⏎
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

__all__ = [
    "ASSISTANT_SUFFIX",
    "DEFAULT_DOCUMENT_INSTRUCTION",
    "DEFAULT_QUERY_INSTRUCTION",
    "DEFAULT_RERANK_INSTRUCTION",
    "IMAGE_PLACEHOLDER",
    "RERANK_SYSTEM_PROMPT",
    "VIDEO_PLACEHOLDER",
    "Segment",
    "content",
    "embedding_prompt",
    "image_block",
    "normalize_instruction",
    "render",
    "reranker_prompt",
    "video_block",
]

DEFAULT_DOCUMENT_INSTRUCTION = "Represent the user's input."
DEFAULT_QUERY_INSTRUCTION = "Retrieve images or text relevant to the user's query."
DEFAULT_RERANK_INSTRUCTION = (
    "Given a search query, retrieve relevant candidates that answer the query."
)
RERANK_SYSTEM_PROMPT = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".'
)
EMPTY_CONTENT = "NULL"

VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"
IMAGE_PLACEHOLDER = VISION_START + IMAGE_PAD + VISION_END
VIDEO_PLACEHOLDER = VISION_START + VIDEO_PAD + VISION_END

#: A piece of a prompt and whether the caller wrote it (text, instructions) rather than the
#: template. The model sees the joined string; the flag lets user text containing special-token
#: strings such as ``<|im_end|>`` be tokenized as plain text (see ``SequenceEncoder``).
Segment = tuple[str, bool]

#: The fixed tail of every prompt; its final newline is the pooled (embedder) or scored (reranker)
#: position. Five tokens with the Qwen tokenizer: ``<|im_end|> \n <|im_start|> assistant \n``.
ASSISTANT_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n"


def normalize_instruction(instruction: str | None, default: str) -> str:
    """The embedder's instruction rule: strip it, end it with punctuation, else use the default.

    A trailing ``"."`` is added when the last character is not Unicode punctuation (category P*).
    An empty or blank instruction means the default.

    Example:
        >>> normalize_instruction("  Find the chart ", "Represent the user's input.")
        'Find the chart.'
        >>> normalize_instruction("Find the chart?", "Represent the user's input.")
        'Find the chart?'
    """
    if instruction:
        instruction = instruction.strip()
        if instruction and not unicodedata.category(instruction[-1]).startswith("P"):
            instruction += "."
    return instruction or default


def image_block(num_tokens: int | None = None) -> str:
    """An image in the prompt: the bare placeholder, or expanded to ``num_tokens`` pads."""
    if num_tokens is None:
        return IMAGE_PLACEHOLDER
    return VISION_START + IMAGE_PAD * num_tokens + VISION_END


def video_block(timestamps: Sequence[float] | None = None, tokens_per_frame: int = 0) -> str:
    """A video in the prompt: the bare placeholder, or one block per temporal group.

    Expanded, each group is ``<{t:.1f} seconds><|vision_start|>{pads}<|vision_end|>`` and the
    blocks *replace* the outer ``<|vision_start|>...<|vision_end|>``: the layout of transformers
    4.57, which the released models were built with (5.x keeps an extra outer pair).
    """
    if timestamps is None:
        return VIDEO_PLACEHOLDER
    return "".join(
        f"<{t:.1f} seconds>{VISION_START}{VIDEO_PAD * tokens_per_frame}{VISION_END}"
        for t in timestamps
    )


def content(
    video_blocks: Sequence[str], image_blocks: Sequence[str], text: str | None
) -> list[Segment]:
    """One side's content in the official order: videos, then images, then text.

    An item with nothing at all becomes ``"NULL"``; an empty string is kept as empty text.
    """
    if not video_blocks and not image_blocks and text is None:
        return [(EMPTY_CONTENT, False)]
    return [("".join(video_blocks) + "".join(image_blocks), False), (text or "", True)]


def embedding_prompt(instruction: str, user_content: Sequence[Segment]) -> list[Segment]:
    """The full embedding prompt for one item."""
    return [
        ("<|im_start|>system\n", False),
        (instruction, True),
        ("<|im_end|>\n<|im_start|>user\n", False),
        *user_content,
        (ASSISTANT_SUFFIX, False),
    ]


def reranker_prompt(
    instruction: str, query_content: Sequence[Segment], document_content: Sequence[Segment]
) -> list[Segment]:
    """The full judge prompt for one query/document pair."""
    return [
        (
            f"<|im_start|>system\n{RERANK_SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n<Instruct>: ",
            False,
        ),
        (instruction, True),
        ("<Query>:", False),
        *query_content,
        ("\n<Document>:", False),
        *document_content,
        (ASSISTANT_SUFFIX, False),
    ]


def render(segments: Sequence[Segment]) -> str:
    """The prompt string."""
    return "".join(text for text, _ in segments)
