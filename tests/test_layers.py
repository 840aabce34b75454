"""The package's shape: one import name (``advharness``), read straight from the sources.

The folders are ``harness/`` and ``adapters/``, but the import name is ``advharness`` (and
``advharness.adapters``): an ``import harness`` anywhere would load a second copy of every
module when the repository root is on ``sys.path`` (as it is under pytest).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("harness", "adapters", "tests", "benchmarks")


def imported_names(tree: ast.AST) -> list[tuple[int, str]]:
    """Every module an import statement names (also lazy ones inside functions)."""
    names: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append((node.lineno, node.module))
    return names


def test_nothing_imports_the_folders_by_their_own_names() -> None:
    files = [p for d in SOURCES for p in sorted((REPO / d).rglob("*.py"))]
    assert len(files) > 40  # the walk found the sources
    bad = [f"{p.relative_to(REPO)}:{line}: import {name}"
           for p in files for line, name in imported_names(ast.parse(p.read_text()))
           if name.split(".")[0] in ("harness", "adapters")]
    assert not bad, "import advharness / advharness.adapters instead:\n" + "\n".join(bad)


def test_the_import_name_is_advharness() -> None:
    import advharness
    import advharness.adapters

    assert Path(advharness.__file__).resolve().parent == REPO / "harness"
    assert Path(advharness.adapters.__file__).resolve().parent == REPO / "adapters"
    for name in ("load_experiment", "run_experiment", "run_attacks", "wrap_model", "read_results"):
        assert callable(getattr(advharness, name)), name
