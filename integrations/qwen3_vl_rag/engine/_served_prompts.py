"""Our exact token ids, as requests a vLLM server turns back into the same ids.

The client decides every token: it renders the prompt, applies the instruction rule, cuts long
text and counts vision tokens (:mod:`._encoding`). A sequence without images goes to the server as
those token ids. A sequence with images cannot (vLLM takes images only with a chat prompt it renders
and tokenizes itself), so its ids are turned back into text: the vision pads collapse to one
placeholder per image, the rest is decoded, and that text, tokenized as the server will tokenize
it, must give exactly our ids. When it does not (a text holding special-token strings such as
``<|im_end|>``, which a server reads as control tokens, or a text cut inside a character), the item
is refused with a clear error instead of being sent to come back as a different vector.

Example:
    >>> from qwen3_vl_rag.engine._prompts import IMAGE_PLACEHOLDER, embedding_prompt, render
    >>> prompt = render(embedding_prompt("Represent the user's input.", [(IMAGE_PLACEHOLDER, False),
    ...                                                                  ("a chart", True)]))
    >>> split_embedding_prompt(prompt, images=1)
    ("Represent the user's input.", 'a chart')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from qwen3_vl_rag.engine import _prompts as prompts
from qwen3_vl_rag.engine._encoding import EncodedSequence
from qwen3_vl_rag.engine._tokenizing import tokenize
from qwen3_vl_rag.engine._vision import ImagePlan, VideoPlan
from qwen3_vl_rag.errors import UnsupportedInputError

__all__ = [
    "PairText",
    "ServedText",
    "prompt_text",
    "refuse_video",
    "split_embedding_prompt",
    "split_pair_prompt",
]

_EMBEDDING_HEAD = "<|im_start|>system\n"
_EMBEDDING_USER = "<|im_end|>\n<|im_start|>user\n"
_PAIR_HEAD = (
    f"<|im_start|>system\n{prompts.RERANK_SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n<Instruct>: "
)
_QUERY = "<Query>:"
_DOCUMENT = "\n<Document>:"


@dataclass(frozen=True)
class ServedText:
    """A sequence's prompt as text, with its images, ready for a chat request."""

    prompt: str
    images: tuple[ImagePlan, ...]


@dataclass(frozen=True)
class PairText:
    """A judge prompt split the way vLLM's ``/score`` composes it back."""

    instruction: str
    query: str
    document: str
    query_images: tuple[ImagePlan, ...]
    document_images: tuple[ImagePlan, ...]


def refuse_video(sequences: Sequence[EncodedSequence], *, first_index: int = 0) -> None:
    """Raise for the first sequence holding a video: a server would not see our frames.

    Raises:
        UnsupportedInputError: Naming the item and what to do instead.
    """
    for offset, sequence in enumerate(sequences):
        if any(isinstance(part, VideoPlan) for part in sequence.parts):
            raise UnsupportedInputError(
                "video is not sent to a vLLM server: the server samples and resizes frames "
                "itself, so its vectors would differ from the official ones (our frame sampling "
                "and the per-frame timestamps cannot be passed through its API).",
                item_index=first_index + offset,
                hint="Embed or rerank videos in process (from_pretrained), or give the video's "
                "frames as images.",
            )


def prompt_text(
    sequence: EncodedSequence, tokenizer: Any, image_pad_id: int, *, item_index: int
) -> ServedText:
    """The sequence's prompt as text that the server tokenizes back to exactly its ids.

    Raises:
        UnsupportedInputError: When no text gives these ids (see the module docstring).
    """
    collapsed = _collapse_pads(sequence.input_ids.tolist(), image_pad_id)
    text = tokenizer.decode(
        collapsed, skip_special_tokens=False, clean_up_tokenization_spaces=False
    )
    if list(tokenize(tokenizer, [text], verbose=False)["input_ids"][0]) != collapsed:
        raise UnsupportedInputError(
            "its text or instruction cannot be sent to a vLLM server unchanged: it holds a "
            "special-token string (such as <|im_end|> or <|image_pad|>), which the server's "
            "chat prompt would read as a control token, or it was cut inside a character.",
            item_index=item_index,
            hint="Text-only items are always exact (they go as token ids); for an item with "
            "images, remove the special-token strings, shorten its text, or use the in-process "
            "engine (from_pretrained).",
        )
    images = tuple(part for part in sequence.parts if isinstance(part, ImagePlan))
    return ServedText(text, images)


def split_embedding_prompt(prompt: str, *, images: int) -> tuple[str, str]:
    """``(instruction, text)`` of an embedding prompt whose user turn starts with ``images``.

    The model's chat template renders ``[system: instruction, user: images + text]`` back to it.
    """
    if not prompt.startswith(_EMBEDDING_HEAD) or not prompt.endswith(prompts.ASSISTANT_SUFFIX):
        raise ValueError("not an embedding prompt")  # our own rendering: a bug if reached
    body = prompt[len(_EMBEDDING_HEAD) : -len(prompts.ASSISTANT_SUFFIX)]
    instruction, _, user = body.partition(_EMBEDDING_USER)
    lead = prompts.IMAGE_PLACEHOLDER * images
    if not user.startswith(lead):
        raise ValueError("images are not at the start of the user turn")
    return instruction, user[len(lead) :]


def split_pair_prompt(served: ServedText) -> PairText:
    """The instruction, query and document of a judge prompt, placeholders left in place.

    vLLM's ``/score`` renders the instruction, ``<Query>:``, the query, a newline,
    ``<Document>:`` and the document (our template), and keeps placeholders found in each
    side's text, so where the split falls inside a text that itself contains ``<Query>:``
    changes nothing: the joined prompt is the same, and the images stay in order.
    """
    prompt = served.prompt
    if not prompt.startswith(_PAIR_HEAD) or not prompt.endswith(prompts.ASSISTANT_SUFFIX):
        raise ValueError("not a judge prompt")
    body = prompt[len(_PAIR_HEAD) : -len(prompts.ASSISTANT_SUFFIX)]
    instruction, _, rest = body.partition(_QUERY)
    query, _, document = rest.partition(_DOCUMENT)
    in_query = query.count(prompts.IMAGE_PLACEHOLDER)
    return PairText(
        instruction,
        query,
        document,
        served.images[:in_query],
        served.images[in_query:],
    )


def _collapse_pads(ids: list[int], pad: int) -> list[int]:
    """Each run of image pads becomes one (the server expands it again from the image)."""
    out: list[int] = []
    for token in ids:
        if token == pad and out and out[-1] == pad:
            continue
        out.append(token)
    return out
