"""From inputs to token sequences: plan the vision parts, render the prompt, tokenize, truncate.

Everything here runs before any pixel is decoded: image sizes come from headers and video frame
counts from containers, so each sequence's exact length is known up front and batches can be
planned by tokens.

Truncation never removes vision tokens or the chat suffix (whose last token is the one pooled or
scored):

* embedder: only the user's text is shortened, from its end; if the vision tokens and the fixed
  prompt alone exceed ``max_length``, :class:`~qwen3_vl_rag.errors.InputTooLongError` says which
  knob to lower. (The official embedder truncates the tail, cutting the pooled suffix.)
* reranker: the official rule: the five suffix tokens stay, and the rest keeps every special
  token plus the first ``max_length`` minus that many other tokens. One addition, so that a long
  query cannot push every document out of its pairs (they would all get the same score): the
  room a pair has for its query and document is ``max_length`` less the judge prompt and the
  instruction (about 50 tokens with the default one); a query whose text and vision tokens take
  more than half of that room has its text cut from its end to fit in that half (vision tokens
  are never cut), with a warning. Each document so keeps at least the other half.

Text is text: when a text or instruction contains a special-token string (``<|im_end|>``,
``<|image_pad|>``...), that prompt's user-written pieces are tokenized with special tokens split,
so a document about tokenizers cannot rewrite the prompt or break the vision token count. (The
official pipeline reads them as control tokens.) Every other prompt is tokenized in one piece,
exactly as the official pipeline does.

Only what truncation can keep is tokenized: a text or instruction longer than ``max_length``
tokens is first cut to a prefix with exactly the same first tokens (see
:mod:`~qwen3_vl_rag.engine._text_budget`), so a 100 MB text costs what an 8,000-token one does and
keeps the same ids as tokenizing it whole would.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np

from qwen3_vl_rag.engine import _prompts as prompts
from qwen3_vl_rag.engine._text_budget import TextBudget
from qwen3_vl_rag.engine._tokenizing import tokenize
from qwen3_vl_rag.engine._vision import ImagePlan, VideoPlan, VisionSettings, plan_image, plan_video
from qwen3_vl_rag.errors import InputError, InputTooLongError, UnsupportedInputError
from qwen3_vl_rag.inputs import MultimodalInput, as_multimodal_input, is_single_image

__all__ = ["EncodedSequence", "ItemPlan", "SequenceEncoder", "VisionPart", "plan_items"]

VisionPart = ImagePlan | VideoPlan

# Prompts are tokenized this many at a time, so a call with many large images never holds every
# expanded prompt and Python-int token list at once.
_TOKENIZE_CHUNK = 256
_T = TypeVar("_T")

_QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)


@dataclass(frozen=True)
class ItemPlan:
    """One item with its vision parts planned (sizes and token counts known, nothing decoded)."""

    videos: tuple[VideoPlan, ...]
    images: tuple[ImagePlan, ...]
    text: str | None
    instruction: str | None = None

    @property
    def parts(self) -> tuple[VisionPart, ...]:
        """Vision parts in the order their tokens appear: the video, then the images."""
        return (*self.videos, *self.images)

    def content(self, *, expanded: bool) -> list[prompts.Segment]:
        """This item's part of the prompt, with vision placeholders bare or expanded."""
        if expanded:
            videos = [prompts.video_block(v.timestamps, v.tokens_per_frame) for v in self.videos]
            images = [prompts.image_block(i.num_tokens) for i in self.images]
        else:
            videos = [prompts.video_block() for _ in self.videos]
            images = [prompts.image_block() for _ in self.images]
        return prompts.content(videos, images, self.text)


@dataclass(frozen=True, eq=False)
class EncodedSequence:
    """Token ids of one model input, with its vision parts in the order their tokens appear."""

    input_ids: np.ndarray  # int32, compact: a 1800-token image costs 7 KB, not 50 KB of ints
    parts: tuple[VisionPart, ...]

    def __len__(self) -> int:
        return len(self.input_ids)


def plan_items(
    items: Sequence[object], settings: VisionSettings, *, first_index: int = 0
) -> list[ItemPlan]:
    """Coerce and plan every item; an error names the item's position in the caller's list.

    Raises:
        UnsupportedInputError: When ``items`` is a single item rather than a list of items.
    """
    if (
        isinstance(items, (str, bytes, bytearray, MultimodalInput, Mapping))
        or not isinstance(items, (Sequence, Iterable))
        or is_single_image(items)
    ):
        raise UnsupportedInputError(
            f"expected a list of items, got a single {type(items).__name__}.",
            hint="Wrap it in a list, e.g. embed([item]).",
        )
    plans = []
    for offset, item in enumerate(items):
        try:
            plans.append(plan_item(as_multimodal_input(item), settings))
        except InputError as err:
            raise err.with_item(first_index + offset) from err.__cause__
    return plans


def plan_item(item: MultimodalInput, settings: VisionSettings) -> ItemPlan:
    """Plan one item's video and images (headers only)."""
    video = item.as_video()
    videos = (plan_video(video, settings),) if video is not None else ()
    images = tuple(plan_image(source, settings) for source in item.images)
    return ItemPlan(videos, images, item.text, item.instruction)


class SequenceEncoder:
    """Renders prompts and tokenizes them exactly as the official implementation does."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        vocab = tokenizer.get_vocab()
        self.image_pad_id = vocab[prompts.IMAGE_PAD]
        self.video_pad_id = vocab[prompts.VIDEO_PAD]
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else vocab["<|endoftext|>"]
        special = set(tokenizer.all_special_tokens) | {
            t for t in _QWEN_SPECIAL_TOKENS if t in vocab
        }
        self.protected_ids = frozenset(vocab[t] for t in special if t in vocab) | frozenset(
            tokenizer.all_special_ids
        )
        self._special_text = re.compile("|".join(re.escape(t) for t in sorted(special)))
        self.suffix_length = len(self.suffix_ids())
        self._text_budget = TextBudget.for_tokenizer(tokenizer)

    def suffix_ids(self) -> list[int]:
        """Token ids of the chat suffix that ends every prompt."""
        return self._tokenize([prompts.ASSISTANT_SUFFIX])[0]

    def _tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        # verbose=False: texts over the tokenizer's model_max_length are cut right after, by us;
        # transformers' "sequence length is longer than the specified maximum" would mislead
        encoded = tokenize(self.tokenizer, list(texts), verbose=False)
        return [list(ids) for ids in encoded["input_ids"]]

    def _has_special_text(self, texts: Iterable[str | None], cache: dict[int, bool]) -> bool:
        """Whether any of these user-written (uncut) texts contains a special-token string."""
        for text in texts:
            if text:
                if id(text) not in cache:  # a rerank call's query is in every pair
                    cache[id(text)] = self._special_text.search(text) is not None
                if cache[id(text)]:
                    return True
        return False

    def _bounded(self, text: str, max_length: int, cache: dict[int, str]) -> str:
        """``text``, or a prefix of it with the same first tokens and more than can be kept."""
        if self._text_budget is None:
            return text
        key = id(text)  # the same query text is in every pair of a rerank call
        if key not in cache:
            cache[key] = self._text_budget.prefix(text, max_length)
        return cache[key]

    def _bounded_plan(self, plan: ItemPlan, max_length: int, cache: dict[int, str]) -> ItemPlan:
        if plan.text is None:
            return plan
        return replace(plan, text=self._bounded(plan.text, max_length, cache))

    def _tokenize_prompts(
        self, prompts_: Sequence[list[prompts.Segment]], literal: Sequence[bool]
    ) -> list[tuple[list[int], list[tuple[int, int]] | None]]:
        """Token ids of each prompt, with per-segment spans where it was tokenized in pieces.

        ``literal`` says, per prompt, whether its user-written texts (uncut) contain a
        special-token string, so that the prompt is tokenized piece by piece.
        """
        results: list[tuple[list[int], list[tuple[int, int]] | None]] = []
        whole = [p for p, split in zip(prompts_, literal, strict=True) if not split]
        tokenized = iter(self._tokenize([prompts.render(p) for p in whole]))
        for segments, split in zip(prompts_, literal, strict=True):
            results.append(self._tokenize_literally(segments) if split else (next(tokenized), None))
        return results

    def _tokenize_literally(
        self, segments: Sequence[prompts.Segment]
    ) -> tuple[list[int], list[tuple[int, int]]]:
        """Piece by piece, user-written pieces with special tokens split (taken as plain text)."""
        ids: list[int] = []
        spans = []
        for text, user in segments:
            piece: list[int] = []
            if text:
                encoded = tokenize(self.tokenizer, text, split_special_tokens=user, verbose=False)
                piece = list(encoded["input_ids"])
            spans.append((len(ids), len(ids) + len(piece)))
            ids.extend(piece)
        return ids, spans

    # -- embedder --------------------------------------------------------------------------------

    def embedding_prompt(self, plan: ItemPlan, instruction: str, *, expanded: bool = False) -> str:
        """The item's full prompt (vision placeholders bare unless ``expanded``)."""
        return prompts.render(
            prompts.embedding_prompt(instruction, plan.content(expanded=expanded))
        )

    def encode_embeddings(
        self, plans: Sequence[ItemPlan], instructions: Sequence[str], max_length: int
    ) -> list[EncodedSequence]:
        """Token sequences for the embedder; ``instructions`` are already normalised."""
        sequences = []
        cache: dict[int, str] = {}
        special: dict[int, bool] = {}
        for start, chunk in _chunked(list(zip(plans, instructions, strict=True))):
            literal = [self._has_special_text((ins, p.text), special) for p, ins in chunk]
            cut = [
                (self._bounded_plan(p, max_length, cache), self._bounded(ins, max_length, cache))
                for p, ins in chunk
            ]
            segments = [prompts.embedding_prompt(ins, p.content(expanded=True)) for p, ins in cut]
            for offset, ((plan, _), parts, (ids, spans)) in enumerate(
                zip(chunk, segments, self._tokenize_prompts(segments, literal), strict=True)
            ):
                if len(ids) > max_length:
                    positions = self._text_positions(parts, spans)
                    ids = self._shorten_text(ids, positions, plan, max_length, start + offset)
                sequences.append(EncodedSequence(np.asarray(ids, dtype=np.int32), plan.parts))
        return sequences

    def _text_positions(
        self, segments: list[prompts.Segment], spans: list[tuple[int, int]] | None
    ) -> list[int]:
        """Token positions of the item's own text (the piece before the chat suffix)."""
        text, written_by_user = segments[-2]
        if not written_by_user:
            return []  # an empty item ("NULL"): nothing to shorten
        if spans is not None:
            return list(range(*spans[-2]))
        prompt = prompts.render(segments)
        text_end = len(prompt) - len(segments[-1][0])
        text_start = text_end - len(text)
        encoded = tokenize(self.tokenizer, prompt, return_offsets_mapping=True, verbose=False)
        offsets = encoded["offset_mapping"]
        return [i for i, (lo, hi) in enumerate(offsets) if lo >= text_start and hi <= text_end]

    def _shorten_text(
        self, ids: list[int], text_positions: list[int], plan: ItemPlan, max_length: int, index: int
    ) -> list[int]:
        """Drop tokens from the end of the user's text until the sequence fits."""
        excess = len(ids) - max_length
        if excess > len(text_positions):
            fixed = len(ids) - len(text_positions)
            raise InputTooLongError(
                f"its vision tokens and the fixed prompt alone take {fixed} tokens, over "
                f"max_length={max_length}.",
                item_index=index,
                hint=_too_long_hint(plan),
            )
        dropped = set(text_positions[len(text_positions) - excess :])
        return [token for i, token in enumerate(ids) if i not in dropped]

    # -- reranker --------------------------------------------------------------------------------

    def reranker_prompt(
        self, query: ItemPlan, document: ItemPlan, instruction: str, *, expanded: bool = False
    ) -> str:
        """The pair's full judge prompt (vision placeholders bare unless ``expanded``)."""
        return prompts.render(
            prompts.reranker_prompt(
                instruction, query.content(expanded=expanded), document.content(expanded=expanded)
            )
        )

    def encode_pairs(
        self,
        pairs: Sequence[tuple[ItemPlan, ItemPlan]],
        instruction: str,
        max_length: int,
    ) -> list[EncodedSequence]:
        """Token sequences for the reranker, one per (query, document) pair."""
        sequences = []
        cache: dict[int, str] = {}
        special: dict[int, bool] = {}
        bounded_instruction = self._bounded(instruction, max_length, cache)
        room = max_length - self._fixed_pair_tokens(bounded_instruction)
        cut: dict[int, tuple[ItemPlan, _QueryCut | None]] = {}
        pairs = [(self._query_within(q, room, max_length, cache, cut), d) for q, d in pairs]
        _warn_cut_queries([found for _, found in cut.values() if found is not None], max_length)
        for start, chunk in _chunked(list(pairs)):
            literal = [
                self._has_special_text((instruction, q.text, d.text), special) for q, d in chunk
            ]
            segments = [
                prompts.reranker_prompt(
                    bounded_instruction,
                    self._bounded_plan(q, max_length, cache).content(expanded=True),
                    self._bounded_plan(d, max_length, cache).content(expanded=True),
                )
                for q, d in chunk
            ]
            for offset, ((query, document), (ids, _)) in enumerate(
                zip(chunk, self._tokenize_prompts(segments, literal), strict=True)
            ):
                ids = self._truncate_pair(ids, max_length, start + offset, query, document)
                sequences.append(
                    EncodedSequence(np.asarray(ids, dtype=np.int32), query.parts + document.parts)
                )
        return sequences

    def _fixed_pair_tokens(self, instruction: str) -> int:
        """Tokens of a pair's judge prompt and instruction alone (no query, no document)."""
        nothing = prompts.content([], [], "")
        segments = prompts.reranker_prompt(instruction, nothing, nothing)
        return len(self._tokenize([prompts.render(segments)])[0]) - self.suffix_length

    def _query_within(
        self,
        query: ItemPlan,
        room: int,
        max_length: int,
        cache: dict[int, str],
        done: dict[int, tuple[ItemPlan, _QueryCut | None]],
    ) -> ItemPlan:
        """The query, its text cut so that text and vision take at most half of ``room``."""
        key = id(query)  # a rerank call's query plan is in every pair: measured once
        if key not in done:
            done[key] = self._cut_query(query, room, max_length, cache)
        return done[key][0]

    def _cut_query(
        self, query: ItemPlan, room: int, max_length: int, cache: dict[int, str]
    ) -> tuple[ItemPlan, _QueryCut | None]:
        if not query.text:
            return query, None
        vision = sum(part.num_tokens for part in query.parts)
        budget = max(0, room // 2 - vision)
        text = self._bounded(query.text, max_length, cache)
        encoded = tokenize(
            self.tokenizer,
            text,
            add_special_tokens=False,
            split_special_tokens=True,
            return_offsets_mapping=True,
            verbose=False,
        )
        offsets = encoded["offset_mapping"]
        if len(offsets) <= budget:
            return query, None
        kept = text[: offsets[budget - 1][1]] if budget else ""
        counted = len(offsets) if text is query.text else None  # else cut before tokenizing
        return replace(query, text=kept), _QueryCut(counted, vision, budget)

    def _truncate_pair(
        self, ids: list[int], max_length: int, index: int, query: ItemPlan, document: ItemPlan
    ) -> list[int]:
        body, suffix = ids[: -self.suffix_length], ids[-self.suffix_length :]
        if len(body) <= max_length:
            return ids
        protected = self.protected_ids
        special = sum(1 for token in body if token in protected)
        if special > max_length:
            raise InputTooLongError(
                f"the pair's vision and special tokens alone take {special} tokens, over "
                f"max_length={max_length}.",
                item_index=index,
                hint=_too_long_hint(query, document),
            )
        budget = max_length - special
        kept = []
        for token in body:
            if token in protected:
                kept.append(token)
            elif budget > 0:
                kept.append(token)
                budget -= 1
        return kept + suffix


@dataclass(frozen=True)
class _QueryCut:
    """A query cut to half of ``max_length``: its text tokens (``None``: too many to count)."""

    text_tokens: int | None
    vision_tokens: int
    kept_text_tokens: int


def _warn_cut_queries(cuts: Sequence[_QueryCut], max_length: int) -> None:
    """One warning per call, with the numbers of its first cut query."""
    if not cuts:
        return
    first = cuts[0]
    count = f"{first.text_tokens} text tokens" if first.text_tokens else "a very long text"
    vision = f" and {first.vision_tokens} vision tokens" if first.vision_tokens else ""
    others = f" ({len(cuts)} queries of this call were cut)" if len(cuts) > 1 else ""
    warnings.warn(
        f"the query has {count}{vision}, more than half of what max_length={max_length} leaves "
        f"after the judge prompt: its text was cut to its first {first.kept_text_tokens} tokens "
        f"so that each document keeps the other half of its pair{others}. Use a shorter query, "
        "or a larger max_length (from_pretrained(..., max_length=...)).",
        UserWarning,
        stacklevel=5,  # the caller of score(), rerank() or score_pairs()
    )


def _chunked(items: list[_T]) -> Iterator[tuple[int, list[_T]]]:
    for start in range(0, len(items), _TOKENIZE_CHUNK):
        yield start, items[start : start + _TOKENIZE_CHUNK]


def _too_long_hint(*plans: ItemPlan) -> str:
    has_video = any(p.videos for p in plans)
    has_image = any(p.images for p in plans)
    knobs = []
    if has_image:
        knobs.append("max_pixels (fewer tokens per image)")
    if has_video:
        knobs.append("fps, max_frames or total_pixels (fewer video tokens)")
    if not knobs:
        return "Raise max_length."
    return "Lower " + ", ".join(knobs) + ", or raise max_length."
