"""The package's shape, read straight from the sources: one import name, layers, no cycles.

The folders are ``harness/`` and ``adapters/``, but the import name is ``advharness`` (and
``advharness.adapters``): an ``import harness`` anywhere would load a second copy of every
module when the repository root is on ``sys.path`` (as it is under pytest). Inside, one
package per layer (:data:`LAYERS`), each importing only from the layers below it.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("harness", "adapters", "tests", "benchmarks")


def imported_names(tree: ast.AST, typing: bool = True) -> list[tuple[int, str]]:
    """Every module an import statement names (also lazy ones inside functions); with
    ``typing=False``, not those under ``if TYPE_CHECKING:`` (annotations only)."""
    skip: set[int] = set()
    if not typing:
        skip = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for inner in ast.walk(node)
        }
    names: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append((node.lineno, node.module))
    return names


def test_nothing_imports_the_folders_by_their_own_names() -> None:
    files = [p for d in SOURCES for p in sorted((REPO / d).rglob("*.py"))]
    assert len(files) > 40  # the walk found the sources
    bad = [
        f"{p.relative_to(REPO)}:{line}: import {name}"
        for p in files
        for line, name in imported_names(ast.parse(p.read_text()))
        if name.split(".")[0] in ("harness", "adapters")
    ]
    assert not bad, "import advharness / advharness.adapters instead:\n" + "\n".join(bad)


def test_the_import_name_is_advharness() -> None:
    import advharness
    import advharness.adapters

    assert Path(advharness.__file__).resolve().parent == REPO / "harness"
    assert Path(advharness.adapters.__file__).resolve().parent == REPO / "adapters"
    for name in ("load_experiment", "run_experiment", "run_attacks", "wrap_model", "read_results"):
        assert callable(getattr(advharness, name)), name


#: The layers, lowest first: a module imports only from its own layer and the ones before it.
LAYERS = (
    "core",
    "config",
    "judging",
    "analytics",
    "models",
    "adapters",
    "cells",
    "zoo",
    "reporting",
    "execution",
    "cli",
)


def layer_of(module: str) -> str | None:
    """``advharness.config.spec`` -> ``config``; the top package and ``cli`` are the top."""
    parts = module.split(".")
    if parts[0] != "advharness":
        return None
    if len(parts) == 1 or parts[1] in ("cli", "__main__"):
        return "cli"
    return parts[1] if parts[1] in LAYERS else None


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    parts = ["advharness", *parts[1:]] if parts[0] == "harness" else ["advharness", *parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (lazy ones inside functions too)."""
    files = {module_name(p): p for d in ("harness", "adapters") for p in (REPO / d).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        targets = set()
        for _, name in imported_names(ast.parse(path.read_text()), typing=False):
            while name and name not in files:
                name = name.rpartition(".")[0]
            if name and name != mod and name != "advharness":
                targets.add(name)
        graph[mod] = targets
    return graph


def test_every_module_has_a_layer() -> None:
    graph = package_graph()
    assert len(graph) > 50
    assert not [m for m in graph if layer_of(m) is None]


def test_no_module_imports_from_a_higher_layer() -> None:
    upward = [
        f"{m} ({layer_of(m)}) imports {t} ({layer_of(t)})"
        for m, targets in package_graph().items()
        for t in sorted(targets)
        if LAYERS.index(layer_of(t) or "cli") > LAYERS.index(layer_of(m) or "cli")
    ]
    assert not upward, "\n".join(upward)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycles_are_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    assert cycles(package_graph()) == []


def test_no_private_names_cross_modules() -> None:
    """A name with a leading underscore stays in its module: shared helpers are public."""
    private = []
    for d in ("harness", "adapters"):
        for path in sorted((REPO / d).rglob("*.py")):
            tree = ast.parse(path.read_text())
            modules = set()  # local names bound to one of the package's modules
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("advharness"):
                    private += [
                        f"{path.relative_to(REPO)}:{node.lineno}: {node.module}.{a.name}"
                        for a in node.names
                        if a.name.startswith("_")
                    ]
                    modules |= {a.asname or a.name for a in node.names}
                elif isinstance(node, ast.Import):
                    modules |= {a.asname or a.name for a in node.names if a.name.startswith("advharness")}
            private += [
                f"{path.relative_to(REPO)}:{node.lineno}: {node.value.id}.{node.attr}"
                for node in ast.walk(tree)
                if isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in modules
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ]
    assert not private, "\n".join(private)


def test_default_locations_are_relative_to_the_repository(monkeypatch: Any) -> None:
    """Modules that find the repository from their own file (MNIST beside the checkout, the
    git commit) still find it from inside their layer's package."""
    from advharness.reporting.results import git_commit
    from advharness.zoo.data import default_mnist_dir

    monkeypatch.delenv("ADVHARNESS_MNIST_DIR", raising=False)
    assert default_mnist_dir() == REPO.parent / "shared" / "data" / "mnist"
    assert git_commit() == git_commit(REPO)
