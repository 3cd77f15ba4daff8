"""The house's layers, read from the source: who may import whom, and no cycles between parts.

Every import counts, wherever it is written (module level, inside a function, under
``TYPE_CHECKING``, or ``importlib.import_module`` with a literal name): a cycle hidden in a
function is still a cycle for the reader and for the next refactoring.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

import qwen3_vl_rag

PACKAGE = "qwen3_vl_rag"
ROOT = Path(qwen3_vl_rag.__file__).resolve().parent
FRAMEWORKS = ("langchain", "langchain_core", "langchain_community", "llama_index")
ADAPTERS = ("langchain", "llama_index")

#: part -> the parts of the package (and frameworks) it must never import
FORBIDDEN = {
    "engine": ("media", "index", "finetune", "evaluate", "distributed", "cli", *ADAPTERS),
    "media": ("engine", "index", "finetune", "evaluate", "distributed", "cli", *ADAPTERS),
    "index": ("finetune", "evaluate", "distributed", "cli", *ADAPTERS),
    "finetune": ("cli", "distributed", *ADAPTERS),
    "evaluate": ("finetune", "cli", "distributed", *ADAPTERS),
    "distributed": ("finetune", "evaluate", "cli", *ADAPTERS),
    "langchain": ("llama_index",),
    "llama_index": ("langchain",),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> Iterator[tuple[str, int]]:
    """``(absolute module name, line)`` of every import written in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield module, node.lineno
            for alias in node.names:  # ``from qwen3_vl_rag.media import video`` names a module
                yield f"{module}.{alias.name}", node.lineno
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value, node.lineno


def _part(module: str) -> str | None:
    """The top-level part of the package a module belongs to (``None``: outside it)."""
    head, _, rest = module.partition(".")
    if head != PACKAGE:
        return None
    return rest.partition(".")[0] or PACKAGE  # the package's own __init__ is the facade


def _existing_part(module: str) -> str | None:
    """Like :func:`_part`, for names that are modules or packages of the package."""
    part = _part(module)
    if part is None or part == PACKAGE:
        return part
    if (ROOT / part).is_dir() or (ROOT / f"{part}.py").is_file():
        return part
    return PACKAGE  # ``from qwen3_vl_rag import Name``: a name of the facade


@cache
def _edges() -> dict[str, dict[str, list[str]]]:
    """part -> imported part -> where (``file:line``) the imports are written."""
    edges: dict[str, dict[str, list[str]]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        source = _part(_module_name(path))
        assert source is not None
        for module, line in _imports(path):
            target = _existing_part(module)
            where = f"{path.relative_to(ROOT.parent)}:{line}"
            if target is None:
                top = module.partition(".")[0]
                if top in FRAMEWORKS:
                    places = edges.setdefault(source, {}).setdefault(f"<{top}>", [])
                    if where not in places:
                        places.append(where)
                continue
            if target != source:
                places = edges.setdefault(source, {}).setdefault(target, [])
                if where not in places:
                    places.append(where)
    return edges


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(part: str) -> None:
    imported = _edges().get(part, {})
    forbidden = set(FORBIDDEN[part])
    if part in ("engine", "media", "index"):
        forbidden |= {f"<{framework}>" for framework in FRAMEWORKS}
    wrong = {target: imported[target] for target in sorted(forbidden & set(imported))}
    assert wrong == {}, f"{part} imports {sorted(wrong)} at {wrong}"


def test_engine_media_and_index_import_no_framework() -> None:
    for part in ("engine", "media", "index", "errors", "inputs"):
        frameworks = [name for name in _edges().get(part, {}) if name.startswith("<")]
        assert frameworks == [], f"{part} imports {frameworks}"


def _cycle(edges: dict[str, dict[str, list[str]]]) -> list[str] | None:
    """One import cycle between parts, as the parts along it; ``None`` when there is none."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for target in sorted(edges.get(node, {})):
            found = visit(target)
            if found:
                return found
        path.pop()
        done.add(node)
        return None

    for node in sorted(edges):
        found = visit(node)
        if found:
            return found
    return None


def test_the_parts_of_the_package_import_each_other_without_cycles() -> None:
    edges = _edges()
    cycle = _cycle(edges)
    if cycle is not None:
        steps = [f"{a} -> {b} ({edges[a][b][0]})" for a, b in itertools.pairwise(cycle)]
        pytest.fail("import cycle between parts of the package: " + "; ".join(steps))


def test_the_cycle_finder_finds_a_cycle() -> None:
    # the finder itself, on a small graph: a -> b -> c -> a, and d outside the cycle
    graph = {"a": {"b": ["x"]}, "b": {"c": ["x"]}, "c": {"a": ["x"]}, "d": {"a": ["x"]}}
    assert _cycle(graph) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b": ["x"]}, "b": {}}) is None


def test_the_graph_sees_imports_inside_functions_and_type_checking_blocks() -> None:
    # the facade's lazy names (importlib) and TYPE_CHECKING imports are edges too
    facade = _edges()[PACKAGE]
    assert {"engine", "index", "errors", "inputs"} <= set(facade)
