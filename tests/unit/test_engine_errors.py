"""Typed errors render their message from their fields, so a moved position or stage shows."""

from __future__ import annotations

import pickle
from collections.abc import Sequence

import numpy as np
import pytest

from qwen3_vl_rag.engine._shared import embed_in_chunks
from qwen3_vl_rag.errors import (
    ImageDecodeError,
    InputError,
    ResourceExhaustedError,
    UnsupportedInputError,
)


class _RefusesOneItem:
    """An engine that refuses the item ``bad`` with ``error`` (its position in the chunk)."""

    def __init__(self, bad: object, error: type[Exception]) -> None:
        self.bad = bad
        self.error = error

    def embed_documents(self, items: Sequence[object], **_: object) -> np.ndarray:
        for position, item in enumerate(items):
            if item == self.bad:
                if issubclass(self.error, InputError):
                    raise self.error("not usable.", item_index=position, stage="open")
                raise self.error("a sequence of 9 tokens does not fit.", item_index=position)
        return np.zeros((len(items), 4), dtype=np.float32)


def _chunked_failure(error: type[Exception]) -> Exception:
    items = ["a", "b", "c", "d", "e", "BAD", "g"]
    with pytest.raises(error) as info:
        embed_in_chunks(
            _RefusesOneItem("BAD", error),
            items,
            query=False,
            instruction=None,
            dim=None,
            batch_tokens=None,
            chunk_size=4,
        )
    return info.value


def test_an_input_error_of_a_later_chunk_says_its_position_in_the_whole_list() -> None:
    err = _chunked_failure(UnsupportedInputError)
    assert isinstance(err, InputError)
    assert err.item_index == 5
    assert str(err) == "item 5: not usable."
    assert err.stage == "open"


def test_an_out_of_memory_error_of_a_later_chunk_says_its_position_too() -> None:
    err = _chunked_failure(ResourceExhaustedError)
    assert isinstance(err, ResourceExhaustedError)
    assert err.item_index == 5
    assert str(err) == "item 5: a sequence of 9 tokens does not fit."


def test_the_message_follows_the_fields_when_they_change() -> None:
    err = ImageDecodeError("cannot decode.", item_index=1, source="a.png", hint="Re-save it.")
    assert str(err) == "item 1, a.png: cannot decode. Re-save it."
    err.item_index = 7
    err.hint = None
    assert str(err) == "item 7, a.png: cannot decode."


def test_replace_keeps_class_stage_source_hint_and_cause() -> None:
    cause = OSError("truncated file")
    err = ImageDecodeError(
        "cannot decode.", item_index=2, source="a.png", hint="Fix.", stage="open"
    )
    err.__cause__ = cause
    moved = err.replace(reason="the query: cannot decode.", item_index=None)
    assert type(moved) is ImageDecodeError
    assert (moved.stage, moved.source, moved.hint, moved.item_index) == (
        "open",
        "a.png",
        "Fix.",
        None,
    )
    assert moved.__cause__ is cause
    assert str(moved) == "a.png: the query: cannot decode. Fix."
    assert err.item_index == 2  # the original is left alone
    with pytest.raises(TypeError, match="no field"):
        err.replace(position=3)


def test_with_item_names_the_position_once() -> None:
    err = UnsupportedInputError("a set is not an input.", stage="plan")
    placed = err.with_item(4)
    assert (placed.item_index, placed.stage, str(placed)) == (
        4,
        "plan",
        "item 4: a set is not an input.",
    )
    assert placed.with_item(9) is placed


def test_pickling_keeps_every_field_and_the_rendered_message() -> None:
    err = ImageDecodeError("cannot decode.", item_index=3, source="b.png", stage="decode")
    err.item_index = 8
    back = pickle.loads(pickle.dumps(err))
    assert (back.item_index, back.stage, str(back)) == (8, "decode", str(err))
    oom = ResourceExhaustedError("too big.", item_index=1)
    oom.item_index = 6
    again = pickle.loads(pickle.dumps(oom))
    assert (again.item_index, str(again)) == (6, "item 6: too big.")
