"""dvc.yaml's deps are complete: every glue module a stage's code imports is a dependency of it.

DVC re-runs a stage only when a dependency changes; a module the stage imports but does not list
would let `dvc repro` call a stage up to date after its code changed. The closure is computed from
the source (every import, including the lazy ones inside functions; not those only for type
checking), starting at the module that implements the stage's command.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("glue", "monitoring")
# The module behind each stage's `glue <command>` (glue/cli.py calls into it and nothing else).
STAGE_MODULES = {
    "demo_data": "glue.project_code",
    "validate": "glue.validation",
    "features": "glue.features",
    "train": "glue.training",
    "evaluate": "glue.promotion",
    "promote": "glue.promotion",
}


def _module_file(name: str) -> Path | None:
    path = ROOT.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
    """Modules of our packages imported by a file, outside `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES and _module_file(name)}


def closure(module: str) -> set[Path]:
    """The files of every module of ours that `module` imports, directly or not."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_imports(_module_file(name)))
    return {_module_file(name).relative_to(ROOT) for name in seen}


def _deps(stage: dict) -> list[Path]:
    body = stage.get("do", stage)
    return [Path(d) for d in body.get("deps", [])]


@pytest.mark.parametrize("stage", sorted(STAGE_MODULES))
def test_every_imported_module_is_a_dependency(stage: str) -> None:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    deps = _deps(stages[stage])
    missing = sorted(str(f) for f in closure(STAGE_MODULES[stage])
                     if not any(f == d or d in f.parents for d in deps))
    assert not missing, f"dvc.yaml stage {stage}: add to deps {missing}"


def test_the_closure_follows_lazy_imports() -> None:
    files = {str(f) for f in closure("glue.training")}
    assert {"glue/training.py", "glue/features.py", "glue/adapters/feast.py",
            "glue/adapters/mlflow.py"} <= files
