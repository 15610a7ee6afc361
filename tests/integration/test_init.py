"""`glue init` around a Feast repo that is not the demo's: a device-failure project.

The repo is built here, in tmp_path: one entity `device` (join key `device_id`, Int64), a file
source of a parquet feature table, a feature view, a label view `device_failures` (fields `failed`
and `downtime_hours`, file batch source with event and label timestamps) and a feature service.
Feast parses it in-process (~10 s for the first parse: Feast's import); nothing is registered.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from glue.errors import GlueError

GLUE = str(Path(sys.executable).with_name("glue"))

FEATURE_STORE_YAML = """\
project: devices
provider: local
registry: ../.glue/feast/registry.db
offline_store:
    type: file
online_store:
    type: sqlite
    path: ../.glue/feast/online_store.db
entity_key_serialization_version: 3
"""

DEFINITIONS = '''\
"""Device telemetry features and failure labels."""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.labeling.label_view import LabelView
from feast.types import Float64, Int64

device = Entity(name="device", join_keys=["device_id"], value_type=ValueType.INT64,
                description="A monitored machine")

device_daily_source = FileSource(
    name="device_daily_source",
    path="../data/features/device_daily.parquet",
    timestamp_field="event_timestamp",
)

device_daily = FeatureView(
    name="device_daily",
    entities=[device],
    ttl=timedelta(days=2),
    schema=[
        Field(name="temperature_mean_1d", dtype=Float64),
        Field(name="error_count_1d", dtype=Int64),
    ],
    source=device_daily_source,
    online=True,
)

device_failures = LabelView(
    name="device_failures",
    entities=[device],
    schema=[
        Field(name="device_id", dtype=Int64),
        Field(name="failed", dtype=Int64),
        Field(name="downtime_hours", dtype=Float64),
    ],
    source=FileSource(
        name="device_failures_source",
        path="../data/raw/failures",
        timestamp_field="event_timestamp",
        created_timestamp_column="label_timestamp",
    ),
    online=False,
)
'''

SERVICE = '''
device_model_v1 = FeatureService(name="device_model_v1", features=[device_daily])
'''

TRANSFORM = '''\
"""raw device events -> the daily table device_daily_source reads (the snapshot at day D covers D-1)."""

import pandas as pd


def build_tables(inputs) -> dict:
    df = inputs.events.copy()  # glue.features.TransformInputs: the validated events, raw_dir, project_dir
    df["day"] = pd.to_datetime(df["event_timestamp"], utc=True).dt.floor("D") + pd.Timedelta(days=1)
    out = df.groupby(["device_id", "day"]).agg(temperature_mean_1d=("temperature", "mean"),
                                               error_count_1d=("errors", "sum")).reset_index()
    out = out.rename(columns={"day": "event_timestamp"})
    out["error_count_1d"] = out["error_count_1d"].astype("int64")
    return {"device_daily_source": out}
'''


def device_repo(root: Path, *, service: bool = True, transform: bool = False) -> Path:
    """A small Feast repo of its own, with the parquet feature table its file source reads."""
    import pandas as pd

    repo = root / "feature_repo"
    repo.mkdir(parents=True)
    (repo / "feature_store.yaml").write_text(FEATURE_STORE_YAML)
    (repo / "definitions.py").write_text(DEFINITIONS + (SERVICE if service else ""))
    if transform:
        (repo / "transform.py").write_text(TRANSFORM)
        (repo / ".feastignore").write_text("transform.py\n")
    table = root / "data" / "features" / "device_daily.parquet"
    table.parent.mkdir(parents=True)
    pd.DataFrame({"device_id": [1, 2], "event_timestamp": pd.to_datetime(["2026-01-02"] * 2, utc=True),
                  "temperature_mean_1d": [40.5, 38.0], "error_count_1d": [0, 3]}).to_parquet(table)
    return repo


def init(*args: str) -> tuple[int, str, BaseException | None]:
    """`glue init ...` in-process (one Feast import for the whole file); exit code, output, error."""
    from glue.cli import cli

    result = CliRunner().invoke(cli, ["init", *args], catch_exceptions=True)
    return result.exit_code, result.output, result.exception


MODEL = ("--name", "device-failure", "--feature-service", "device_model_v1",
         "--label", "device_failures:failed")


def test_init_makes_a_project_that_loads(tmp_path: Path) -> None:
    from glue.settings import load_params

    repo = device_repo(tmp_path / "src")
    project = tmp_path / "project"
    code, out, error = init(str(project), "--feature-repo", str(repo), *MODEL,
                            "--name", "device-downtime", "--feature-service", "device_model_v1",
                            "--label", "device_failures:downtime_hours")
    assert code == 0, (out, error)
    for name in ("params.yaml", "dvc.yaml", "README.md", ".gitignore", ".dvcignore", ".dvc/config",
                 "feature_repo/definitions.py", "feature_repo/feature_store.yaml"):
        assert (project / name).is_file(), name
    assert sorted(p.name for p in (project / "dags").glob("*.py")) == \
        sorted(p.name for p in (Path(__file__).parents[2] / "dags").glob("*.py"))

    params = load_params(project / "params.yaml")
    failure, downtime = params.model("device-failure"), params.model("device-downtime")
    assert (failure.feature_service, failure.task) == ("device_model_v1", "binary_classification")
    assert (failure.label.view, failure.label.field) == ("device_failures", "failed")
    assert downtime.task == "regression"  # a Float64 label
    assert failure.gate.metric == "average_precision" and downtime.gate.metric == "rmse"

    # the validation suite comes from the Feast schema: the join key (Int64) and the event time
    rules = params.validation.columns
    assert set(rules) == {"device_id", "event_timestamp"}
    assert (rules["device_id"].dtype, rules["device_id"].nullable) == ("int", False)
    assert (rules["event_timestamp"].dtype, rules["event_timestamp"].nullable) == ("datetime", False)
    assert params.validation.timestamp_column == "event_timestamp"
    assert params.data.generator is None

    # the pipeline is the demo's, minus its generator and glue's own sources
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    demo = yaml.safe_load((Path(__file__).parents[2] / "dvc.yaml").read_text())["stages"]
    assert set(stages) == set(demo) - {"demo_data"}
    text = (project / "dvc.yaml").read_text()
    assert " glue/" not in text and "glue demo-data" not in text and "feature_definitions.py" not in text
    assert "# The Great Expectations gate" in text  # comments kept
    readme = (project / "README.md").read_text()
    assert "dvc add data/raw" in readme and "glue run" in readme and "glue serve" in readme

    # a second init refuses to overwrite, naming the file (the real console script)
    again = subprocess.run([GLUE, "init", str(project), "--feature-repo", str(repo), *MODEL],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode != 0
    assert f"{project / 'params.yaml'} already exists" in again.stderr
    assert "Traceback" not in again.stderr


def test_without_models_params_is_a_template_to_fill_in(tmp_path: Path) -> None:
    from glue.settings import load_params

    repo = device_repo(tmp_path / "src")
    project = tmp_path / "project"
    code, out, error = init(str(project), "--feature-repo", str(repo))
    assert code == 0, (out, error)
    text = (project / "params.yaml").read_text()
    assert "models: {}" in text and "#   feature_service: device_model_v1" in text
    assert "device_failures (failed, downtime_hours)" in text
    with pytest.raises(GlueError, match="declares no model"):
        load_params(project / "params.yaml")


def test_init_names_what_is_missing(tmp_path: Path) -> None:
    repo = device_repo(tmp_path / "src")
    project = tmp_path / "project"

    code, _, error = init(str(project), "--feature-repo", str(repo), "--name", "m", "--feature-service",
                          "device_model_v1", "--label", "device_failures:nope")
    assert code != 0 and isinstance(error, GlueError)
    assert "no field 'nope' in label view 'device_failures' (fields: failed, downtime_hours)" in str(error)

    code, _, error = init(str(project), "--feature-repo", str(repo), "--name", "m", "--feature-service",
                          "device_model_v1", "--label", "failures:failed")
    assert "no label view 'failures' (label views: device_failures)" in str(error)

    code, _, error = init(str(project), "--feature-repo", str(repo), "--name", "m", "--feature-service",
                          "device_model_v2", "--label", "device_failures:failed")
    assert "no feature service 'device_model_v2' (feature services: device_model_v1)" in str(error)

    code, _, error = init(str(project), "--feature-repo", str(repo), "--name", "m", "--label",
                          "device_failures:failed")
    assert "once per model" in str(error)
    assert not project.exists()  # nothing written by a refused init

    bare = device_repo(tmp_path / "bare", service=False)
    code, _, error = init(str(tmp_path / "p2"), "--feature-repo", str(bare))
    assert code != 0 and f"feature repo {bare} has no feature service" in str(error)
    assert not (tmp_path / "p2").exists()


# --- the whole loop on the new project ------------------------------------------------------------


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLUE_")}
    path = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return {**env, "PATH": path, "GLUE_PROJECT_DIR": str(root), "TQDM_DISABLE": "1"}


def _device_data(project: Path, days: int = 30, devices: int = 80) -> None:
    """Daily event batches in data/raw/events/ and failure labels where the label view reads them."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(3)
    start = pd.Timestamp("2026-01-01", tz="UTC")
    (project / "data" / "raw" / "events").mkdir(parents=True)
    (project / "data" / "raw" / "failures").mkdir(parents=True)
    wear = rng.uniform(0, 1, devices)
    for day in range(days):
        when = start + pd.Timedelta(days=day)
        ids = np.repeat(np.arange(devices), 3)
        events = pd.DataFrame({
            "device_id": ids.astype("int64"),
            "event_timestamp": when + pd.to_timedelta(rng.integers(0, 86_400, ids.size), unit="s"),
            "temperature": 35 + 10 * wear[ids] + rng.normal(0, 1, ids.size),
            "errors": rng.poisson(0.2 + 3 * wear[ids]).astype("int64"),
        })
        events.to_parquet(project / "data" / "raw" / "events" / f"{when.date()}.parquet", index=False)
        failed = (rng.uniform(0, 1, devices) < 0.1 + 0.6 * wear).astype("int64")
        if day == 0:  # no snapshot before the first day: its events have no features to train on
            continue
        labels = pd.DataFrame({
            "device_id": np.arange(devices, dtype="int64"),
            "event_timestamp": when + pd.Timedelta(hours=12),
            "failed": failed,
            "downtime_hours": failed * rng.uniform(1, 10, devices),
            "label_timestamp": when + pd.Timedelta(days=2),
        })
        labels.to_parquet(project / "data" / "raw" / "failures" / f"{when.date()}.parquet", index=False)


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.timeout(1200)
def test_a_new_project_runs_the_loop_and_serves(tmp_path: Path) -> None:
    repo = device_repo(tmp_path / "src", transform=True)
    project = tmp_path / "project"
    run = lambda *a, **kw: subprocess.run(list(a), cwd=project, env=_env(project), capture_output=True,  # noqa: E731
                                          text=True, timeout=kw.get("timeout", 900))
    made = subprocess.run([GLUE, "init", str(project), "--feature-repo", str(repo), "--git", *MODEL],
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    params_file = project / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params["features"]["transform"] = "feature_repo/transform.py:build_tables"
    params["models"]["device-failure"]["validation_days"] = 5
    params["models"]["device-failure"]["gate"]["floors"] = {}
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    _device_data(project)
    added = run(sys.executable, "-m", "dvc", "add", "-q", "data/raw")
    assert added.returncode == 0, added.stderr

    loop = run(GLUE, "run")
    assert loop.returncode == 0, f"glue run failed:\n{loop.stdout[-4000:]}\n{loop.stderr[-4000:]}"
    assert "device-failure version 1" in loop.stdout

    os.environ["GLUE_PROJECT_DIR"] = str(project)
    try:
        from fastapi.testclient import TestClient

        from glue import serving
        from glue.settings import get_settings

        get_settings.cache_clear()
        app = serving.create_app(get_settings()) if hasattr(serving, "create_app") else serving.app
        with TestClient(app) as client:
            deadline = time.monotonic() + 90  # the champion loads in the background
            while (ready := client.get("/ready")).status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.3)
            assert ready.status_code == 200, ready.text
            answer = client.post("/predict", json={"device_id": 1})
            assert answer.status_code == 200, answer.text
    finally:
        os.environ.pop("GLUE_PROJECT_DIR", None)
        from glue.settings import get_settings

        get_settings.cache_clear()
