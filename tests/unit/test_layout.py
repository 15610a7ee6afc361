"""The layout shows the architecture: no two glue modules import each other, not even lazily.

A pair of modules that import each other (inside functions, to dodge the import-time error) is
one module split in two; the dependency should point one way. Read from the source (AST), so it
costs no import.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def glue_imports() -> dict[str, set[str]]:
    """Module name -> the glue modules it imports anywhere in its source (TYPE_CHECKING included)."""
    files = {}
    for path in sorted((ROOT / "glue").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target not in (name, "glue"):
                    found.add(target)
        graph[name] = found
    return graph


def test_no_two_glue_modules_import_each_other() -> None:
    graph = glue_imports()
    mutual = sorted({tuple(sorted((a, b))) for a, targets in graph.items() for b in targets
                     if a in graph.get(b, set())})
    assert mutual == [], f"modules importing each other: {mutual}"


def test_the_check_sees_lazy_imports() -> None:
    graph = glue_imports()
    assert "glue.adapters.mlflow" in graph["glue.training"]  # imported inside train()
