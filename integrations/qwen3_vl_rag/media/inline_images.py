"""Images given inline, as a ``data:image/...;base64,`` URI or plain base64 text.

An inline image is an image or a clear error, never text: its size is checked from the string's
length and its format from its first bytes before the payload is decoded, and the decoded bytes
go through the same format allowlist and pixel budget as ``media.load`` (only the header is
read). The byte cap is :data:`~qwen3_vl_rag.image_limits.MAX_INLINE_IMAGE_BYTES`, the engine's too.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import TYPE_CHECKING

from qwen3_vl_rag.errors import ImageDecodeError, InputTooLargeError, UnsupportedInputError
from qwen3_vl_rag.image_limits import MAX_INLINE_IMAGE_BYTES
from qwen3_vl_rag.media.sniff import HEAD_BYTES, sniff_bytes

if TYPE_CHECKING:
    from qwen3_vl_rag.media.budget import MediaBudget

__all__ = [
    "checked_image_bytes",
    "decode_base64_image",
    "decode_data_uri",
    "decode_inline_base64",
    "is_base64_image",
    "is_data_uri",
]

_DATA_URI_HEADER = re.compile(r"data:image/[\w.+-]+(?:;[\w.+-]+=[\w.+-]+)*;base64", re.IGNORECASE)
_HEADER_CHARS = 256  # a data: URI's header is short; its comma is looked for only this far
_HEAD_CHARS = (HEAD_BYTES // 3 + 1) * 4  # base64 characters that hold the sniffed head


def is_data_uri(text: str) -> bool:
    """Whether ``text`` claims to be an image ``data:`` URI (it may still be a broken one)."""
    return text[:11].lower() == "data:image/"


def decode_data_uri(text: str, *, max_bytes: int = MAX_INLINE_IMAGE_BYTES) -> bytes:
    """The image bytes of a ``data:image/<type>;base64,<data>`` URI, checked as ``media.load``.

    The size is checked from the string's length and the format from its first bytes before
    the whole payload is decoded, so a huge or non-image URI costs nothing.

    Raises:
        InputTooLargeError: Over ``max_bytes`` once decoded (or over the pixel budget).
        ImageDecodeError: Not base64, or an image whose header is corrupt.
        UnsupportedInputError: Not an image in an accepted format (PNG, JPEG, WebP, GIF, BMP,
            TIFF).
    """
    label = f"<data URI, {len(text)} chars>"
    comma = text.find(",", 0, _HEADER_CHARS)
    if comma < 0 or not _DATA_URI_HEADER.fullmatch(text, 0, comma):
        raise ImageDecodeError(
            "an image data: URI must read data:image/<type>;base64,<data>.",
            source=label,
            stage="decode",
        )
    return _decode_inline(text, comma + 1, label, max_bytes)


def decode_base64_image(text: str, *, max_bytes: int = MAX_INLINE_IMAGE_BYTES) -> bytes | None:
    """The bytes of an image stored as plain base64 (as langchain-chroma's ``add_images`` does).

    Returns ``None`` for text whose first bytes are not base64 of a PNG, JPEG, GIF, WebP, BMP or
    TIFF. Text that does start like one is that image or an error, as with a ``data:`` URI.

    Raises:
        InputTooLargeError, ImageDecodeError, UnsupportedInputError: See
            :func:`decode_data_uri`.
    """
    if not is_base64_image(text):
        return None
    return _decode_inline(text, 0, f"<base64 text, {len(text)} chars>", max_bytes)


def is_base64_image(text: str) -> bool:
    """Whether ``text`` starts as plain base64 of an image (it may still be a broken one)."""
    if len(text) < 16 or " " in text[:64]:
        return False
    try:
        head = base64.b64decode(text[: (HEAD_BYTES // 3) * 4], validate=True)
    except (binascii.Error, ValueError):
        return False
    return sniff_bytes(head).kind == "image"


def decode_inline_base64(
    payload: str | bytes, *, label: str, max_bytes: int = MAX_INLINE_IMAGE_BYTES
) -> bytes:
    """Base64 image data (a node's ``image``, a data URI's payload) as checked image bytes.

    Raises:
        InputTooLargeError, ImageDecodeError, UnsupportedInputError: See
            :func:`decode_data_uri`.
    """
    return _decode_inline(payload, 0, label, max_bytes)


def _decode_inline(payload: str | bytes, start: int, label: str, max_bytes: int) -> bytes:
    """``payload[start:]`` decoded; size and format are checked before the payload is copied."""
    decoded_size = (len(payload) - start) * 3 // 4
    if decoded_size > max_bytes:
        raise InputTooLargeError(
            f"about {decoded_size} bytes once decoded, over the limit of {max_bytes} for an "
            "inline image.",
            source=label,
            stage="decode",
            hint="Save the image to a file and pass its path.",
        )
    head = _b64decode(payload[start : start + _HEAD_CHARS], label, partial=True)
    if sniff_bytes(head).kind != "image":
        raise UnsupportedInputError(
            "not an image in a supported format (PNG, JPEG, WebP, GIF, BMP, TIFF).",
            source=label,
            stage="decode",
        )
    data = _b64decode(payload[start:], label)
    return checked_image_bytes(data, label=label, max_bytes=max_bytes)


def _b64decode(payload: str | bytes, label: str, *, partial: bool = False) -> bytes:
    text = payload.decode("ascii", "replace") if isinstance(payload, bytes) else payload
    for attempt in (text, "".join(text.split())):  # base64 is often wrapped in lines
        if partial:
            attempt = attempt[: len(attempt) // 4 * 4]
        try:
            return base64.b64decode(attempt, validate=True)
        except (binascii.Error, ValueError):
            continue
    raise ImageDecodeError("the image's base64 data is invalid.", source=label, stage="decode")


def checked_image_bytes(
    data: bytes,
    *,
    label: str,
    max_bytes: int = MAX_INLINE_IMAGE_BYTES,
    budget: MediaBudget | None = None,
) -> bytes:
    """``data`` if it is an image ``media.load`` would accept: format allowlist, pixel budget.

    Only the header is read; nothing is decoded.

    Raises:
        InputTooLargeError: Over ``max_bytes``, or more pixels than the budget allows.
        ImageDecodeError, UnsupportedInputError: A corrupt header, or not an accepted format.
    """
    from qwen3_vl_rag.media.budget import MediaBudget
    from qwen3_vl_rag.media.images import read_header

    if len(data) > max_bytes:
        raise InputTooLargeError(
            f"{len(data)} bytes is over the limit of {max_bytes} for an inline image.",
            source=label,
            stage="decode",
        )
    read_header(data, budget or MediaBudget(), label)
    return data
