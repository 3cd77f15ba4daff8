"""Every public class shows how it is used: a runnable ``>>>`` example in its own docstring.

The examples run as doctests with the suite (``--doctest-modules``; see
``integrations/conftest.py``), so an example required here is also checked to be correct there.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import typing

import pytest

PUBLIC_MODULES = (
    "qwen3_vl_rag",
    "qwen3_vl_rag.index",
    "qwen3_vl_rag.finetune",
    "qwen3_vl_rag.media",
    "qwen3_vl_rag.langchain",
    "qwen3_vl_rag.llama_index",
    "qwen3_vl_rag.testing",
)


def _public_class(value: object) -> type | None:
    """The class a public name stands for: itself, or the class of a generic alias of it."""
    if not inspect.isclass(value):
        value = typing.get_origin(value)  # FileOutcome = FileReport[Outcome] is FileReport's
    if not inspect.isclass(value) or not value.__module__.startswith("qwen3_vl_rag"):
        return None  # a union, a literal, a constant or a function
    if issubclass(value, BaseException) or typing.is_typeddict(value):
        return None  # errors are documented as a hierarchy; a TypedDict is a list of options
    return value


def _public_classes() -> list[tuple[str, type]]:
    found = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            cls = _public_class(getattr(module, name))
            if cls is not None:
                found.append((f"{module_name}.{name}", cls))
    return found


PUBLIC_CLASSES = _public_classes()


def test_the_public_classes_are_found() -> None:
    names = {name for name, _ in PUBLIC_CLASSES}
    # one per kind of entry: a lazy top-level name, an alias, a protocol, each adapter, testing
    assert {
        "qwen3_vl_rag.Qwen3VLEmbedder",
        "qwen3_vl_rag.index.FileOutcome",
        "qwen3_vl_rag.media.MediaDocument",
        "qwen3_vl_rag.langchain.Qwen3VLEmbeddings",
        "qwen3_vl_rag.llama_index.Qwen3VLRerank",
        "qwen3_vl_rag.testing.CheckpointPreset",
    } <= names
    assert "qwen3_vl_rag.InputError" not in names
    assert "qwen3_vl_rag.PretrainedOptions" not in names


@pytest.mark.parametrize(
    "cls", [cls for _, cls in PUBLIC_CLASSES], ids=[name for name, _ in PUBLIC_CLASSES]
)
def test_public_class_has_a_runnable_example(cls: type) -> None:
    docstring = cls.__dict__.get("__doc__") or ""  # its own, not one inherited
    examples = doctest.DocTestParser().get_examples(docstring)
    run = [example for example in examples if not example.options.get(doctest.SKIP)]
    assert run, f"{cls.__module__}.{cls.__qualname__} has no runnable >>> example"
