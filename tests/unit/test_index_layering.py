"""The index's modules import one another one way, and the command line uses its public methods.

Every import counts: at the top, inside functions, and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import qwen3_vl_rag

PACKAGE = Path(qwen3_vl_rag.__file__).parent


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, anywhere (``from a import b`` counts ``a`` and ``a.b``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def index_graph() -> dict[str, set[str]]:
    """Which modules of ``qwen3_vl_rag.index`` each of its modules imports."""
    modules = {
        f"qwen3_vl_rag.index.{path.stem}": path
        for path in (PACKAGE / "index").glob("*.py")
        if path.stem != "__init__"
    }
    return {name: imports_of(path) & set(modules) - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph, as the modules along it, or ``None``."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for target in sorted(graph[node]):
            cycle = visit(target, [*path, node])
            if cycle:
                return cycle
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start, [])
        if cycle:
            return cycle
    return None


def test_the_index_modules_import_one_another_without_a_cycle() -> None:
    graph = index_graph()
    assert len(graph) >= 10
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_ingest_and_search_take_what_they_use_not_the_whole_index() -> None:
    graph = index_graph()
    for part in ("ingest", "search", "reopen", "recovery"):
        assert "qwen3_vl_rag.index._multimodal" not in graph[f"qwen3_vl_rag.index._{part}"], part


def test_the_model_fingerprint_is_a_leaf_of_the_standard_library() -> None:
    imported = {name.split(".")[0] for name in imports_of(PACKAGE / "model_identity.py")}
    assert imported - {"__future__"} <= set(sys.stdlib_module_names)


def test_the_command_line_reads_and_writes_an_index_through_its_methods() -> None:
    for path in (PACKAGE / "cli").glob("*.py"):
        tree = ast.parse(path.read_text())
        reached = {
            node.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr in {"manifest", "store", "_store"}
        }
        assert not reached, f"{path.name} reaches into the index: {sorted(reached)}"
        internal = {
            name
            for name in imports_of(path)
            if name.startswith("qwen3_vl_rag.index.")
            and name
            not in {"qwen3_vl_rag.index.MultimodalIndex", "qwen3_vl_rag.index.SearchResult"}
            and not name.startswith("qwen3_vl_rag.index._results")
        }
        assert not internal, f"{path.name} imports index internals: {sorted(internal)}"
