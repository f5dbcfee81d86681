"""The package's shape, pinned: no import circle, small modules, the chute file thin.

Module-level imports only (an import inside a function is how a light module defers a heavy one,
and cannot form a circle at import time).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("chutes_embeddings", "schemas")
MAX_MODULE_LINES = 400
# Modules allowed past the cap, each with its reason.
LARGER_MODULES: dict[str, str] = {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    found = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    return {**found, "my_embeddings": ROOT / "my_embeddings.py", "image": ROOT / "image.py"}


def _imported(node: ast.AST, package: str) -> list[str]:
    """What an import statement in ``package`` names, as absolute module (or module.attribute) names."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        anchor = package.split(".")
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join(anchor + ([base] if base else []))
    return [base] + [f"{base}.{a.name}" for a in node.names]


def _top_level_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``name`` imports when it is imported (not inside functions or TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for target in _imported(node, package):
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph = {name: _top_level_imports(name, path, known) for name, path in modules.items()}
    for name in list(graph):  # importing a.b.c imports a and a.b first
        parts = name.split(".")
        graph[name] |= {".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in known}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def test_no_import_circle():
    graph = _graph()
    # a package's __init__ re-exporting its own submodules is not a circle a reader must untangle
    for name in graph:
        graph[name] = {
            t for t in graph[name] if not (t.startswith(name + ".") and _modules()[name].name == "__init__.py")
        }
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("name", sorted(_modules()))
def test_modules_stay_small(name):
    lines = len(_modules()[name].read_text().splitlines())
    assert lines <= MAX_MODULE_LINES or name in LARGER_MODULES, f"{name} has {lines} lines"


def _all_imports(name: str, path: Path) -> set[str]:
    """Every module ``name`` imports anywhere (functions included), resolved to absolute names."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        found |= set(_imported(node, package))
    return found


def test_the_runtime_never_imports_the_developer_tools():
    for name, path in _modules().items():
        if name.startswith("chutes_embeddings") and not name.startswith("chutes_embeddings.tools"):
            tools = [m for m in _all_imports(name, path) if m.startswith("chutes_embeddings.tools")]
            assert tools == [], f"{name} imports {tools}"


def test_the_chute_file_declares_cords_only():
    tree = ast.parse((ROOT / "my_embeddings.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Lambda)], "a cord is a named function, not a lambda"
    cords = [n for n in tree.body if isinstance(n, ast.AsyncFunctionDef)]
    for cord in cords:
        assert ast.get_docstring(cord), f"{cord.name} needs a docstring (it is the route's summary)"
        assert len(cord.body) <= 4 or cord.name == "start", f"{cord.name} does more than call its dialect"
