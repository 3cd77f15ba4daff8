"""Text out of PDFs as people read it: text strings decoded, page labels built, controls removed.

A PDF *text string* (a page label's prefix, a title) is UTF-16BE after a byte-order mark, UTF-8
after one (PDF 2.0), or else PDFDocEncoding, a Latin-1 variant with typographic characters in
``0x18-0x1F`` and ``0x80-0x9F`` (PDF 32000-1, Annex D). PyMuPDF hands page label prefixes over
as written in the file (``<FEFF00310030>`` for "10"); they are decoded here.

Extracted text may carry control characters (a font without a usable Unicode map yields U+0088
and the like); they would reach snippets, stores and galleries, so only tabs and line breaks
are kept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["clean_text", "decode_text_string", "page_label", "string_bytes"]

# PDFDocEncoding where it differs from Latin-1 (PDF 32000-1:2008, Annex D.2, Table D.2).
_PDFDOC = {
    0x18: "\u02d8",  # breve
    0x19: "\u02c7",  # caron
    0x1A: "\u02c6",  # circumflex
    0x1B: "\u02d9",  # dot accent
    0x1C: "\u02dd",  # double acute (hungarumlaut)
    0x1D: "\u02db",  # ogonek
    0x1E: "\u02da",  # ring
    0x1F: "\u02dc",  # small tilde
    0x80: "\u2022",  # bullet
    0x81: "\u2020",  # dagger
    0x82: "\u2021",  # double dagger
    0x83: "\u2026",  # ellipsis
    0x84: "\u2014",  # em dash
    0x85: "\u2013",  # en dash
    0x86: "\u0192",  # florin
    0x87: "\u2044",  # fraction slash
    0x88: "\u2039",  # single left angle quote
    0x89: "\u203a",  # single right angle quote
    0x8A: "\u2212",  # minus
    0x8B: "\u2030",  # per mille
    0x8C: "\u201e",  # double low-9 quote
    0x8D: "\u201c",  # left double quote
    0x8E: "\u201d",  # right double quote
    0x8F: "\u2018",  # left single quote
    0x90: "\u2019",  # right single quote
    0x91: "\u201a",  # single low-9 quote
    0x92: "\u2122",  # trade mark
    0x93: "\ufb01",  # fi ligature
    0x94: "\ufb02",  # fl ligature
    0x95: "\u0141",  # L with stroke
    0x96: "\u0152",  # OE
    0x97: "\u0160",  # S with caron
    0x98: "\u0178",  # Y with diaeresis
    0x99: "\u017d",  # Z with caron
    0x9A: "\u0131",  # dotless i
    0x9B: "\u0142",  # l with stroke
    0x9C: "\u0153",  # oe
    0x9D: "\u0161",  # s with caron
    0x9E: "\u017e",  # z with caron
    0xA0: "\u20ac",  # euro sign
}
_PDFDOC_TABLE = str.maketrans({chr(code): text for code, text in _PDFDOC.items()})

# C0 and C1 controls and DEL, except tab and line feed (carriage returns become line feeds first)
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_LITERAL_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}
_ESCAPE = re.compile(r"\\([0-7]{1,3}|\r\n|.)", re.DOTALL)


def clean_text(text: str) -> str:
    r"""Text with line breaks as ``\n`` and no control characters other than tabs and breaks.

    Example:
        >>> clean_text("Total\x88 due:\r\n12\x00 EUR")
        'Total due:\n12 EUR'
    """
    return _CONTROLS.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def decode_text_string(raw: bytes) -> str:
    r"""A PDF text string's bytes as text (UTF-16BE, UTF-8 or PDFDocEncoding).

    UTF-16BE and UTF-8 are told by their byte-order mark; anything else is PDFDocEncoding.

    Example:
        >>> decode_text_string(bytes.fromhex("FEFF00310030"))
        '10'
        >>> decode_text_string(b"\x93nal \x84 draft")
        'ﬁnal — draft'
    """
    if raw.startswith(b"\xfe\xff"):
        return raw[2:].decode("utf-16-be", "replace")
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8", "replace")
    return raw.decode("latin-1").translate(_PDFDOC_TABLE)


def string_bytes(written: str) -> bytes:
    r"""The bytes of a PDF string as written in the file: ``<hex>``, ``(literal)`` or bare.

    A literal's escapes (``\n``, ``\(``, octal ``\351``...) are resolved; a bare text (the
    parentheses already taken off, as PyMuPDF does) is read as a literal's content.

    Example:
        >>> string_bytes("<FEFF0041>"), string_bytes(r"(A\051-)")
        (b'\xfe\xff\x00A', b'A)-')
    """
    text = written
    stripped = written.strip()
    if stripped.startswith("<") and stripped.endswith(">") and not stripped.startswith("<<"):
        digits = "".join(stripped[1:-1].split())
        if len(digits) % 2:
            digits += "0"  # a final odd digit counts as followed by 0 (PDF 32000-1, 7.3.4.3)
        try:
            return bytes.fromhex(digits)
        except ValueError:
            pass  # not hexadecimal after all: read it as text
    if stripped.startswith("(") and stripped.endswith(")"):
        text = stripped[1:-1]
    return _ESCAPE.sub(_unescape, text).encode("latin-1", "replace")


def _unescape(match: re.Match[str]) -> str:
    escaped = match.group(1)
    if escaped[0] in "01234567":
        return chr(int(escaped, 8) & 0xFF)
    if escaped in ("\n", "\r", "\r\n"):
        return ""  # a line continuation
    return _LITERAL_ESCAPES.get(escaped, escaped)


def page_label(rules: Sequence[Mapping[str, Any]], index: int) -> str:
    """The label of 0-based page ``index`` under a document's page label rules.

    Args:
        rules: PyMuPDF's ``Document.get_page_labels()``: ``startpage``, ``prefix`` (as written
            in the file), ``style`` (``D``, ``r``, ``R``, ``a``, ``A`` or none) and
            ``firstpagenum``.
        index: The page.

    Returns:
        The label (decoded prefix, then the number in its style), or ``""`` when no rule
        covers the page.

    Example:
        >>> rules = [{"startpage": 0, "style": "r"}, {"startpage": 9, "prefix": "<FEFF0041>"}]
        >>> [page_label(rules, i) for i in (0, 3, 9)]
        ['i', 'iv', 'A']
    """
    covering = [rule for rule in rules if int(rule.get("startpage", 0)) <= index]
    if not covering:
        return ""
    rule = max(covering, key=lambda r: int(r.get("startpage", 0)))
    prefix = clean_text(decode_text_string(string_bytes(str(rule.get("prefix") or ""))))
    number = index - int(rule.get("startpage", 0)) + int(rule.get("firstpagenum") or 1)
    return prefix + _numeral(str(rule.get("style") or ""), number)


def _numeral(style: str, number: int) -> str:
    if style == "D":
        return str(number)
    if style in ("r", "R") and number > 0:
        roman = _roman(number)
        return roman.lower() if style == "r" else roman
    if style in ("a", "A") and number > 0:
        # A..Z, then AA..ZZ, then AAA..ZZZ (PDF 32000-1, 12.4.2)
        letters = chr(ord("A") + (number - 1) % 26) * ((number - 1) // 26 + 1)
        return letters.lower() if style == "a" else letters
    return ""  # no style: the prefix alone


_ROMAN = (
    (1000, "M"),
    (900, "CM"),
    (500, "D"),
    (400, "CD"),
    (100, "C"),
    (90, "XC"),
    (50, "L"),
    (40, "XL"),
    (10, "X"),
    (9, "IX"),
    (5, "V"),
    (4, "IV"),
    (1, "I"),
)


def _roman(number: int) -> str:
    parts = []
    for value, letters in _ROMAN:
        count, number = divmod(number, value)
        parts.append(letters * count)
    return "".join(parts)
