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
    assert tags[lineage.DVC_LOCK_DATA_VERSION] == "feedbeef.dir"
    assert tags[lineage.GIT_DIRTY] == "false"


def test_plugin_first_outside_a_project_never_raises(tmp_path: Path) -> None:
    """No glue project around: the provider is registered, adds nothing, and the run still starts."""
    out, stderr = _start_run("plugin-first", tmp_path, tmp_path)

    assert _FAILURE not in stderr, stderr[-3000:]
    assert "GlueLineageRunContext" in out["providers"]
    assert not [k for k in out["tags"] if k.startswith(lineage.TAG_PREFIX)]


# A run logging a training set with glue's dataset source, read back in another interpreter
# through MLflow's registry of sources (which loads the entry point): argv[1] is the import order.
_DATASET_SCRIPT = """
import json, sys
if sys.argv[1] == "plugin-first":
    import mlflow_plugins.dataset_source as plugin
    import mlflow
else:
    import mlflow
    import mlflow_plugins.dataset_source as plugin
import pandas as pd
source = plugin.FeastDvcDatasetSource("fraud_model_v1", "fraud", "data/raw", "feedbeef.dir",
                                      ".glue/dvc-remote", "2026-01-01T00:00:00", "2026-01-24T00:00:00")
df = pd.DataFrame({"x": [1.0, 2.0], "y": [0, 1]})
with mlflow.start_run() as run:
    mlflow.log_input(mlflow.data.from_pandas(df, source=source, targets="y", name="fraud_model_v1:training"),
                     context="training")
print(run.info.run_id)
"""

_READ_SCRIPT = """
import json, sys
import mlflow
(ds,) = mlflow.get_run(sys.argv[1]).inputs.dataset_inputs
source = mlflow.data.get_source(ds)
print(json.dumps({"type": ds.dataset.source_type, "class": type(source).__name__, "source": source.to_dict(),
                  "context": {t.key: t.value for t in ds.tags}}))
"""


@pytest.mark.parametrize("order", ["plugin-first", "mlflow-first"])
def test_the_dataset_source_names_the_feature_service_and_data_version(order: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLUE_", "MLFLOW_"))}
    env.update(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}", PYTHONWARNINGS="default")

    def run(script: str, *args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-c", script, *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    logged = run(_DATASET_SCRIPT, order)
    assert "Failure attempting to register dataset" not in logged.stderr, logged.stderr[-3000:]
    read = json.loads(run(_READ_SCRIPT, logged.stdout.split()[-1]).stdout.splitlines()[-1])
    assert read["type"] == "glue_feast_dvc" and read["class"] == "FeastDvcDatasetSource"
    assert read["source"]["feature_service"] == "fraud_model_v1"
    assert read["source"]["dvc_data_version"] == "feedbeef.dir"
    assert read["context"]["mlflow.data.context"] == "training"
