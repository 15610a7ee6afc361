"""The MLflow run-context plugin through its installed entry point, whatever the import order.

Each case runs in a fresh interpreter (MLflow builds its provider registry once, at import time),
from a notebook-like folder inside a temporary glue project that is also a git repository, with a
plain ``mlflow.start_run()`` against a temporary SQLite tracking store given by the environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from glue import lineage

pytestmark = pytest.mark.slow

# What a user writes; argv[1] says which import comes first. Prints the new run's tags as JSON.
_SCRIPT = """
import json, sys
if sys.argv[1] == "plugin-first":
    import mlflow_plugins.lineage  # noqa: F401
    import mlflow
else:
    import mlflow
    import mlflow_plugins.lineage  # noqa: F401
from mlflow.tracking.context.registry import _run_context_provider_registry
with mlflow.start_run() as run:
    pass
print(json.dumps({
    "providers": [type(p).__name__ for p in _run_context_provider_registry],
    "tags": mlflow.get_run(run.info.run_id).data.tags,
}))
"""

_FAILURE = "Failure attempting to register"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
                          cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def _start_run(order: str, cwd: Path, tracking_dir: Path) -> tuple[dict, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLUE_", "MLFLOW_"))}
    env.update(
        MLFLOW_TRACKING_URI=f"sqlite:///{tracking_dir / 'mlflow.db'}",
        PYTHONWARNINGS="default",  # MLflow reports a provider it could not load as a warning
    )
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, order], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


@pytest.fixture
def git_project(tmp_project: Path) -> Path:
    """The temporary glue project as a clean git repository with a DVC record of the raw data."""
    (tmp_project / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  demo_data:\n    cmd: glue demo-data\n    outs:\n"
        "    - path: data/raw\n      md5: feedbeef.dir\n"
    )
    _git(tmp_project, "init", "-q")
    _git(tmp_project, "add", ".")
    _git(tmp_project, "commit", "-qm", "project")
    return tmp_project


def test_entry_point_is_installed() -> None:
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="mlflow.run_context_provider") if e.name == "glue_lineage"]
    assert entry.value == "mlflow_plugins.lineage:GlueLineageRunContext"


@pytest.mark.parametrize("order", ["plugin-first", "mlflow-first"])
def test_plain_start_run_gets_glue_tags(order: str, git_project: Path, tmp_path: Path) -> None:
    notebooks = git_project / "notebooks"  # the project is found from any folder inside it
    notebooks.mkdir()
    tracking = tmp_path / "tracking"
    tracking.mkdir()

    out, stderr = _start_run(order, notebooks, tracking)

    assert _FAILURE not in stderr, stderr[-3000:]
    assert "GlueLineageRunContext" in out["providers"]
    tags = out["tags"]
    assert tags[lineage.PROFILE] == "local"
    assert tags[lineage.PROJECT_DIR] == str(git_project.resolve())
    assert tags[lineage.DVC_DATA_VERSION] == "feedbeef.dir"
    assert tags[lineage.GIT_DIRTY] == "false"


def test_plugin_first_outside_a_project_never_raises(tmp_path: Path) -> None:
    """No glue project around: the provider is registered, adds nothing, and the run still starts."""
    out, stderr = _start_run("plugin-first", tmp_path, tmp_path)

    assert _FAILURE not in stderr, stderr[-3000:]
    assert "GlueLineageRunContext" in out["providers"]
    assert not [k for k in out["tags"] if k.startswith(lineage.TAG_PREFIX)]
