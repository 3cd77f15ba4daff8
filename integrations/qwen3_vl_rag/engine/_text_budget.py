r"""Cut a long text before tokenizing it, so that only what truncation could keep is tokenized.

Truncation keeps at most ``max_length`` tokens of any text (an item's text, a query, a document,
an instruction). Tokenizing a 10 MB text whole to keep 8,000 of its tokens costs gigabytes, so
each text is first cut to a prefix whose tokens are *exactly* the first tokens of the whole
text, and that has more tokens than can be kept. Truncating the prefix then keeps the same ids
as truncating the whole text would.

Why the ids are the same (Qwen's tokenizer: NFC, then the regex split below, then byte-level BPE
on each piece; every check in :meth:`TextBudget.for_tokenizer`). The cut goes at a position ``b``
between ``x = text[b-1]`` and ``y = text[b]`` where the split has a boundary whatever follows:

* ``x`` is a letter or number and ``y`` is not a letter: an ASCII character, or punctuation, a
  symbol or a space separator. The piece holding ``x`` is ``\p{L}+`` (with one optional lead
  character) or a single ``\p{N}``: it ends at ``b`` and only looked at ``y`` to see that it is
  not a letter, which end-of-text tells as well. A contraction (``'ll``) needs a letter at ``b``.
* or ``y`` is a space and ``x`` a letter, number, punctuation or symbol: an
  ``[^\s\p{L}\p{N}]+[\r\n]*`` piece stops at a space too, and a lead character (``x``
  before ``\p{L}+``) needs a letter at ``b``.

Matching is left to right, so every piece before ``b`` is the same in the prefix as in the whole
text, and BPE runs on each piece alone: the prefix's ids are the whole text's first ids. NFC
does not reach across ``b`` either: ``y`` is a starter that composes with nothing before it (no
ASCII character, punctuation, symbol or space is the second half of a canonical composition),
and ``x`` is its own NFC. Classes are read from both Unicode 3.2 and the current database, so a
tokenizer built with any version in between agrees. A cut never splits an added token such as
``<tool_call>``. Pieces that follow the text (``<|im_end|>`` is a special token) start afresh.

What precedes the text in the prompt can only change the text's first piece, so the prefix's
tokens are counted from its first boundary on: the prompt has at least that many of the text's
tokens before the cut, more than truncation keeps, and everything after the cut is dropped.

A text with no such boundary for a long stretch (a 100 KB run of one letter, of spaces, of
emoji) is a single piece there; it is cut inside the run, ``RUN_MARGIN`` tokens past what can be
kept, because BPE on a prefix of a piece differs from BPE on the whole piece only in its last few
tokens (at most 4 measured on Qwen's own vocabulary with random cuts; the tests check runs of
letters, digits, spaces, newlines, CJK, emoji and mixes). A whitespace run that holds a newline
past the cut gets a newline at the cut, so that it stays one piece as in the whole text.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qwen3_vl_rag.engine._tokenizing import tokenize

__all__ = ["QWEN_SPLIT_PATTERN", "RUN_MARGIN", "TextBudget"]

#: The pre-tokenizer regex of Qwen2, Qwen2.5, Qwen3 and Qwen3-VL tokenizers.
QWEN_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

#: Extra tokens required past what can be kept when a text is cut inside one long run.
RUN_MARGIN = 64

# Characters that may follow a cut: ASCII non-letters, and the blocks where punctuation, symbols
# and space separators live (each candidate's category is still checked). Letters of other
# blocks never match, so a CJK or Cyrillic run is skipped at C speed.
_FOLLOWER = re.compile(
    r"[\x00-\x40\x5b-\x60\x7b-\x7f\u0080-\u00bf\u00d7\u00f7\u2000-\u2bff\u3000-\u303f"
    r"\ufe10-\ufe19\ufe30-\ufe6b\uff00-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65"
    r"\U0001f000-\U0001faff]"
)
# A possible cut: an alphanumeric before a possible follower, or a non-space before a space.
_CANDIDATE = re.compile(rf"(?<=[^\W_])(?:{_FOLLOWER.pattern})|(?<=\S) ")
_SCAN_CHUNK = 4096
_WHITESPACE_RUN = re.compile(r"\s*")
_NEWLINES = "\r\n"
_OLD_UNICODE: Any = unicodedata.ucd_3_2_0


def _kind(char: str) -> str:
    """The general category's class (``L``, ``N``, ``P``...), or ``?`` where versions differ."""
    new, old = unicodedata.category(char), _OLD_UNICODE.category(char)
    return new[0] if new[0] == old[0] else "?"


def _stable_starter(char: str) -> bool:
    return unicodedata.combining(char) == 0 and unicodedata.is_normalized("NFC", char)


def _safe_follower(char: str) -> bool:
    """A character that can start a piece of its own and composes with nothing before it."""
    if char.isascii():
        return not char.isalpha()
    category, old = unicodedata.category(char), _OLD_UNICODE.category(char)
    return (
        (category[0] in "PS" or category == "Zs")
        and old[0] == category[0]
        and _stable_starter(char)
    )


@dataclass(frozen=True)
class TextBudget:
    """Cuts long texts for one tokenizer (see the module docstring for why the ids are kept).

    Attributes:
        count: Number of tokens of a text tokenized alone, special-token strings as text.
        added_tokens: Contents of the tokenizer's added tokens, which a cut must not split.
    """

    count: Callable[[str], int]
    added_tokens: tuple[str, ...]

    @classmethod
    def for_tokenizer(cls, tokenizer: Any) -> TextBudget | None:
        """A budget for ``tokenizer``, or ``None`` when it is not built as the argument needs.

        The cut points are proved for Qwen's layout only: NFC (or no) normalizer, the Qwen split
        regex, byte-level pieces, BPE without dropout.
        """
        try:
            state = json.loads(tokenizer.backend_tokenizer.to_str())
        except (AttributeError, TypeError, ValueError):
            return None
        if not _is_qwen_layout(state):
            return None
        added = tuple(
            str(token.content) for token in tokenizer.added_tokens_decoder.values() if token.content
        )

        def count(text: str) -> int:
            encoded = tokenize(
                tokenizer, text, add_special_tokens=False, split_special_tokens=True, verbose=False
            )
            return len(encoded["input_ids"])

        return cls(count, added)

    def prefix(self, text: str, keep: int) -> str:
        """``text``, or a prefix of it whose tokens start the text's and number more than ``keep``.

        The work is bounded by what can be kept, whatever the length of ``text``: prefixes grow
        geometrically from about ``8 * keep`` characters until one has enough tokens.

        Args:
            text: Any text.
            keep: Most tokens of this text that truncation can keep.
        """
        window = 8 * (keep + RUN_MARGIN) + 1024
        first: int | None = None
        while window < len(text):
            if first is None:
                first = self._first_cut(text, window)
            cut = self._last_cut(text, first, window)
            if cut is not None and first is not None and self.count(text[first:cut]) > keep:
                return text[:cut]
            if window - (cut or 0) >= window // 2:
                # no boundary in the last half: the text ends in one long run; cut inside it
                head = self._run_prefix(text, window)
                if self.count(head[first or 0 :]) > keep + RUN_MARGIN:
                    return head
            window *= 2
        return text

    # -- cut points --------------------------------------------------------------------------------

    def _is_cut(self, text: str, position: int) -> bool:
        before, after = text[position - 1], text[position]
        if after == " ":
            allowed = _kind(before) in ("L", "N", "P", "S")
        else:
            allowed = _kind(before) in ("L", "N") and _safe_follower(after)
        return allowed and _stable_starter(before) and not self._splits_added(text, position)

    def _first_cut(self, text: str, stop: int) -> int | None:
        for match in _CANDIDATE.finditer(text, 1, stop):
            if self._is_cut(text, match.start()):
                return match.start()
        return None

    def _last_cut(self, text: str, first: int | None, stop: int) -> int | None:
        """The last cut point after ``first`` and before ``stop``, searched from the end."""
        if first is None:
            return None
        end = stop
        while end > first + 1:
            begin = max(first + 1, end - _SCAN_CHUNK)
            for match in reversed(list(_CANDIDATE.finditer(text, begin, end))):
                if self._is_cut(text, match.start()):
                    return match.start()
            end = begin
        return None

    def _splits_added(self, text: str, position: int) -> bool:
        for token in self.added_tokens:
            lo = max(0, position - len(token) + 1)
            found = text.find(token, lo, position + len(token) - 1)
            while found != -1 and found < position:
                if found + len(token) > position:
                    return True
                found = text.find(token, found + 1, position + len(token) - 1)
        return False

    # -- inside one long run -----------------------------------------------------------------------

    def _run_prefix(self, text: str, stop: int) -> str:
        r"""A prefix ending inside a run, shaped so its last piece starts as the whole text's does.

        A whitespace run is one ``\s*[\r\n]+`` piece up to its last newline: when that newline
        lies past the cut, a newline is put at the cut so the prefix's run is one piece too.
        """
        stop = self._before_added(text, stop)
        if text[stop - 1].isspace() and text[stop].isspace():
            run = _WHITESPACE_RUN.match(text, stop)
            end = run.end() if run is not None else stop
            if any(text.find(newline, stop, end) != -1 for newline in _NEWLINES):
                return text[:stop] + "\n"
        return text[:stop]

    def _before_added(self, text: str, position: int) -> int:
        while position > 1 and self._splits_added(text, position):
            position -= 1
        return position


def _is_qwen_layout(state: dict[str, Any]) -> bool:
    normalizer = state.get("normalizer")
    if normalizer is not None and normalizer != {"type": "NFC"}:
        return False
    pre = state.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else None
    if not steps or len(steps) != 2:
        return False
    split, byte_level = steps
    model = state.get("model") or {}
    return (
        split.get("type") == "Split"
        and split.get("pattern") == {"Regex": QWEN_SPLIT_PATTERN}
        and split.get("behavior") == "Isolated"
        and not split.get("invert")
        and byte_level.get("type") == "ByteLevel"
        and not byte_level.get("use_regex", True)
        and not byte_level.get("add_prefix_space", True)
        and model.get("type") == "BPE"
        and not model.get("dropout")
    )
